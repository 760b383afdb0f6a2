"""The embedded default base model: a tiny, randomly initialised Qwen3-VL built offline.

Same architecture and classes as Qwen3-VL-8B-Instruct, scaled down (~0.5M parameters) so a few CPU
minutes of SFT really teach it grounding and VQA on the synthetic corpus. Patch 16 keeps the image
token count small (16 merged tokens for a 128x128 image), which learned grounding better than patch 8.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DEFAULT_SPEC: dict[str, Any] = {
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 192,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 2048,
    "rope_theta": 5_000_000.0,
    "mrope_section": [4, 2, 2],  # sums to head_dim / 2
    "vision_depth": 2,
    "vision_hidden_size": 64,
    "vision_intermediate_size": 128,
    "vision_num_heads": 4,
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "deepstack_visual_indexes": [0],  # must index layers below vision_depth
    "num_position_embeddings": 64,  # 8x8 learned grid, interpolated for other sizes
    "min_pixels": 32 * 32,
    "max_pixels": 128 * 128,
}


# The tiny model is built in memory in float32 on whatever machine runs base_model: a spec asking for
# more is a model for ``base_model.source: hub``
MAX_TINY_PARAMETERS = 1_000_000_000


def resolve_spec(spec: dict[str, Any] | None) -> dict[str, Any]:
    """The full spec (``DEFAULT_SPEC`` with ``spec``'s keys over it), checked: known keys, each of the
    default's type (sizes positive whole numbers, ``rope_theta`` a positive number, the lists of
    whole numbers), the architecture's constraints, and at most ``MAX_TINY_PARAMETERS``. Raises
    ValueError naming the key; ``config.load_recipe`` runs this, so a recipe fails when it loads."""
    spec = dict(spec or {})
    unknown = sorted(set(spec) - set(DEFAULT_SPEC))
    if unknown:
        raise ValueError(f"unknown tiny-model spec keys: {unknown}; known: {sorted(DEFAULT_SPEC)}")
    for key, value in spec.items():
        _check_value(key, value, DEFAULT_SPEC[key])
    merged = {**DEFAULT_SPEC, **spec}
    if sum(merged["mrope_section"]) * 2 != merged["head_dim"]:
        raise ValueError(
            f"mrope_section {merged['mrope_section']} must sum to head_dim/2 ({merged['head_dim'] // 2})"
        )
    if any(i >= merged["vision_depth"] for i in merged["deepstack_visual_indexes"]):
        raise ValueError("deepstack_visual_indexes must be below vision_depth")
    side = round(merged["num_position_embeddings"] ** 0.5)
    if side * side != merged["num_position_embeddings"]:
        raise ValueError("num_position_embeddings must be a perfect square (a 2-D grid)")
    if merged["num_attention_heads"] % merged["num_key_value_heads"]:
        raise ValueError(f"num_attention_heads ({merged['num_attention_heads']}) is not a multiple of "
                         f"num_key_value_heads ({merged['num_key_value_heads']}): query heads share key/value "
                         "heads in groups")
    if merged["min_pixels"] > merged["max_pixels"]:
        raise ValueError(f"min_pixels {merged['min_pixels']} is over max_pixels {merged['max_pixels']}")
    if (parameters := approximate_parameters(merged)) > MAX_TINY_PARAMETERS:
        raise ValueError(f"this spec makes a model of about {parameters:.2g} parameters, over the "
                         f"{MAX_TINY_PARAMETERS:.0e} the tiny model is built with in memory; use "
                         "base_model.source: hub for a model of that size")
    return merged


def _check_value(key: str, value: Any, default: Any) -> None:
    """``value`` of the type of ``default``: a positive whole number, a positive finite number, or a
    list of whole numbers (never a bool for a number)."""
    def whole(item: Any, least: int) -> bool:
        return type(item) is int and item >= least

    if isinstance(default, list):
        fine = isinstance(value, list) and all(whole(item, 0) for item in value)
        wanted = "a list of whole numbers"
    elif isinstance(default, float):
        fine = type(value) in (int, float) and math.isfinite(value) and value > 0
        wanted = "a positive number"
    else:
        fine, wanted = whole(value, 1), "a positive whole number"
    if not fine:
        raise ValueError(f"tiny-model spec key {key!r} must be {wanted}, got {value!r}")


def approximate_parameters(spec: dict[str, Any]) -> int:
    """The parameter count a resolved spec builds, within a few percent (embeddings, attention and
    MLP weights of both towers; norms and biases left out)."""
    hidden, head, layers = spec["hidden_size"], spec["head_dim"], spec["num_hidden_layers"]
    attention = hidden * head * (2 * spec["num_attention_heads"] + 2 * spec["num_key_value_heads"])
    text = 2 * spec["vocab_size"] * hidden + layers * (attention + 3 * hidden * spec["intermediate_size"])
    vision_hidden = spec["vision_hidden_size"]
    vision = spec["vision_depth"] * (4 * vision_hidden ** 2 + 2 * vision_hidden * spec["vision_intermediate_size"])
    return text + vision + vision_hidden * spec["patch_size"] ** 2 * spec["temporal_patch_size"] * 3


def build_config(spec: dict[str, Any], token_ids: dict[str, int]):
    """Qwen3VLConfig from a resolved spec and the tokenizer's special-token ids."""
    from transformers import Qwen3VLConfig

    text_config = {
        "vocab_size": spec["vocab_size"],
        "hidden_size": spec["hidden_size"],
        "intermediate_size": spec["intermediate_size"],
        "num_hidden_layers": spec["num_hidden_layers"],
        "num_attention_heads": spec["num_attention_heads"],
        "num_key_value_heads": spec["num_key_value_heads"],
        "head_dim": spec["head_dim"],
        "max_position_embeddings": spec["max_position_embeddings"],
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": spec["rope_theta"],
            "mrope_section": list(spec["mrope_section"]),
            "mrope_interleaved": True,
        },
        "bos_token_id": token_ids["bos_token_id"],
        "eos_token_id": token_ids["eos_token_id"],
        "pad_token_id": token_ids["pad_token_id"],
    }
    vision_config = {
        "depth": spec["vision_depth"],
        "hidden_size": spec["vision_hidden_size"],
        "intermediate_size": spec["vision_intermediate_size"],
        "num_heads": spec["vision_num_heads"],
        "patch_size": spec["patch_size"],
        "spatial_merge_size": spec["spatial_merge_size"],
        "temporal_patch_size": spec["temporal_patch_size"],
        "out_hidden_size": spec["hidden_size"],
        "num_position_embeddings": spec["num_position_embeddings"],
        "deepstack_visual_indexes": list(spec["deepstack_visual_indexes"]),
    }
    return Qwen3VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=token_ids["image_token_id"],
        video_token_id=token_ids["video_token_id"],
        vision_start_token_id=token_ids["vision_start_token_id"],
        vision_end_token_id=token_ids["vision_end_token_id"],
        bos_token_id=token_ids["bos_token_id"],
        eos_token_id=token_ids["eos_token_id"],
        pad_token_id=token_ids["pad_token_id"],
        tie_word_embeddings=False,
    )


def build_tiny_base_model(
    out_dir: Path, *, texts: Iterable[str], spec: dict | None = None, seed: int = 42
) -> Path:
    """Train the tokenizer on `texts`, build a seeded random Qwen3-VL and save model + processor.

    `out_dir` becomes an ordinary Hugging Face directory (safetensors) that `load_model` /
    `load_processor` (or the Auto classes) reload offline. Returns `out_dir`.
    """
    import torch
    from transformers import GenerationConfig, Qwen3VLForConditionalGeneration, set_seed

    from .loading import save_model_and_processor
    from .processor import build_image_processor, build_processor
    from .tokenizer import special_token_ids, train_tokenizer

    spec = resolve_spec(spec)
    tokenizer = train_tokenizer(
        texts, vocab_size=spec["vocab_size"], model_max_length=spec["max_position_embeddings"]
    )
    if len(tokenizer) > spec["vocab_size"]:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens, more than vocab_size {spec['vocab_size']}")
    token_ids = special_token_ids(tokenizer)
    processor = build_processor(
        tokenizer,
        build_image_processor(
            patch_size=spec["patch_size"],
            merge_size=spec["spatial_merge_size"],
            temporal_patch_size=spec["temporal_patch_size"],
            min_pixels=spec["min_pixels"],
            max_pixels=spec["max_pixels"],
        ),
    )

    config = build_config(spec, token_ids)
    set_seed(seed)
    # Build under a fixed default dtype so the weights do not depend on the caller's torch settings.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        model = Qwen3VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config = GenerationConfig(
        bos_token_id=token_ids["bos_token_id"],
        # Chat turns end with <|im_end|>; <|endoftext|> also stops.
        eos_token_id=[token_ids["eos_token_id"], token_ids["pad_token_id"]],
        pad_token_id=token_ids["pad_token_id"],
        do_sample=False,
    )
    out_dir = Path(out_dir)
    save_model_and_processor(model, processor, out_dir)
    return out_dir


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
