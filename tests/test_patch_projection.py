"""The patch embedding switched to a matrix product computes what the Conv3d computed."""

import torch

from medmo_pipeline.model.patch_projection import PatchwiseConv3d, use_patchwise_projection


def _pair():
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(3, 8, kernel_size=(2, 4, 4), stride=(2, 4, 4), bias=True)
    fast = torch.nn.Conv3d(3, 8, kernel_size=(2, 4, 4), stride=(2, 4, 4), bias=True)
    fast.load_state_dict(conv.state_dict())
    return conv, fast


def test_same_values_and_gradients_as_the_convolution():
    conv, fast = _pair()
    holder = torch.nn.Sequential(fast)
    assert use_patchwise_projection(holder) == 1
    assert type(fast) is PatchwiseConv3d
    x = torch.randn(10, 3, 2, 4, 4)
    a, b = conv(x), fast(x)
    assert a.shape == b.shape == (10, 8, 1, 1, 1)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    a.square().sum().backward()
    b.square().sum().backward()
    torch.testing.assert_close(conv.weight.grad, fast.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(conv.bias.grad, fast.bias.grad, rtol=1e-4, atol=1e-5)
    assert list(fast.state_dict()) == list(conv.state_dict())  # checkpoints are unchanged


def test_larger_inputs_still_convolve():
    conv, fast = _pair()
    use_patchwise_projection(torch.nn.Sequential(fast))
    x = torch.randn(2, 3, 4, 8, 8)  # 2 x 2 x 2 patches: not one patch per input
    torch.testing.assert_close(conv(x), fast(x), rtol=1e-5, atol=1e-5)


def test_other_convolutions_are_left_alone():
    padded = torch.nn.Conv3d(3, 8, kernel_size=3, stride=3, padding=1)
    overlapping = torch.nn.Conv3d(3, 8, kernel_size=3, stride=1)
    plain = torch.nn.Conv2d(3, 8, kernel_size=4, stride=4)
    assert use_patchwise_projection(torch.nn.Sequential(padded, overlapping, plain)) == 0
    assert type(padded) is torch.nn.Conv3d and type(overlapping) is torch.nn.Conv3d
