"""Patch embedding as one matrix product.

Qwen-VL vision towers embed patches with a Conv3d whose kernel equals its stride and each input is
exactly one patch, so the convolution is a linear map of the flattened patch. On CPU, PyTorch's
Conv3d backward for that shape costs about as much as the rest of the tiny model's step; a linear
layer computes the same values with the same parameters, so checkpoints are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class PatchwiseConv3d(torch.nn.Conv3d):
    """A Conv3d that, on inputs of exactly one kernel-sized patch, runs as a linear layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != tuple(self.kernel_size):
            return super().forward(x)
        n = x.shape[0]
        flat = F.linear(x.reshape(n, -1), self.weight.reshape(self.out_channels, -1), self.bias)
        return flat.view(n, self.out_channels, 1, 1, 1)


def is_patchwise(conv: torch.nn.Module) -> bool:
    return (
        type(conv) is torch.nn.Conv3d
        and tuple(conv.kernel_size) == tuple(conv.stride)
        and all(p == 0 for p in conv.padding)
        and conv.groups == 1
        and tuple(conv.dilation) == (1, 1, 1)
        and conv.padding_mode == "zeros"
    )


def use_patchwise_projection(model: torch.nn.Module) -> int:
    """Switch every patch-embedding Conv3d (kernel == stride, no padding) in `model` to
    `PatchwiseConv3d`, in place. Returns how many were switched (0 for models without one)."""
    switched = 0
    for module in model.modules():
        if is_patchwise(module):
            module.__class__ = PatchwiseConv3d
            switched += 1
    return switched
