"""Under ZeRO-3 every rank runs the vision tower on every forward pass, images or not.

ZeRO-3 gathers each module's weight partitions from all ranks when the module runs, so all ranks
must run the same modules in the same order. A Qwen-VL model runs its vision tower only for a batch
with images: in a stage that mixes text-only rows with image rows (the paper recipe's stage 3 draws
PMC-OA captions beside text QA), one rank's micro-batch can hold an image while another's does not,
and their collectives no longer match (with gloo: "Received data size doesn't match expected size").
The scale rehearsal hit exactly this in stage 3.

``run_vision_tower_on_every_rank`` makes a text-only forward pass also run the tower, on one dummy
image of a single merged patch whose features reach the language model as zero rows: the same
values, the tower's weights gathered on every rank in the same order as for an image batch, and
zero gradients for them on the ranks without images. Decoding steps (one new token) are left alone:
every rank is in the same situation there.
"""

from __future__ import annotations

import functools


def run_vision_tower_on_every_rank(model) -> bool:
    """Patch ``model`` (a Qwen3-VL ...ForConditionalGeneration) in place; False when it has no vision
    tower where expected (nothing patched).

    On a text-only forward pass the tower runs on the dummy image just before the language model is
    called (after the token embedding, as for an image batch), and its features enter the language
    model through the same operations as real image features, cut to zero rows (the placeholder
    scatter into the embeddings, the DeepStack additions at visual positions, of which there are
    none). So every rank gathers the same modules in the same order, forward and backward, and the
    values are unchanged."""
    import torch

    inner = getattr(model, "model", None)
    visual = getattr(inner, "visual", None)
    language_model = getattr(inner, "language_model", None)
    if visual is None or language_model is None:
        return False
    original = inner.forward
    pending = {"text_only": False}

    @functools.wraps(original)
    def forward(*args, **kwargs):
        pending["text_only"] = (kwargs.get("pixel_values") is None and kwargs.get("pixel_values_videos") is None
                                and kwargs.get("mm_encoder_outputs") is None and _sequence_length(kwargs) > 1)
        try:
            return original(*args, **kwargs)
        finally:
            pending["text_only"] = False

    def before_language_model(module, args, kwargs):
        if not pending["text_only"] or kwargs.get("visual_pos_masks") is not None:
            return None
        pending["text_only"] = False
        embeds = kwargs["inputs_embeds"]
        pooled, deepstack = _zero_row_features(visual)
        no_positions = torch.zeros(embeds.shape[:2], dtype=torch.bool, device=embeds.device)
        kwargs["inputs_embeds"] = embeds.masked_scatter(no_positions[..., None].expand_as(embeds),
                                                        pooled.to(embeds.device, embeds.dtype))
        kwargs["visual_pos_masks"] = no_positions
        kwargs["deepstack_visual_embeds"] = deepstack
        return args, kwargs

    inner.forward = forward
    language_model.register_forward_pre_hook(before_language_model, with_kwargs=True)
    return True


def _sequence_length(kwargs: dict) -> int:
    for name in ("input_ids", "inputs_embeds"):
        value = kwargs.get(name)
        if value is not None:
            return int(value.shape[1])
    return 0


def _zero_row_features(visual):
    """The vision tower's outputs for one image of a single merged patch, cut to zero rows: the
    merged features and each DeepStack layer's."""
    import torch

    config = visual.config
    merge = config.spatial_merge_size
    patch_values = config.in_channels * config.temporal_patch_size * config.patch_size ** 2
    device = next(visual.parameters()).device
    pixels = torch.zeros(merge * merge, patch_values, dtype=visual.dtype, device=device)
    out = visual(pixels, grid_thw=torch.tensor([[1, merge, merge]], device=device), return_dict=True)
    return out.pooler_output[:0], [feature[:0] for feature in out.deepstack_features]
