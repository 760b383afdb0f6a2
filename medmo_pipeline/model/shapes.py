"""Layer structure of the released Qwen3-VL models, in the tiny model's spec keys (``model.tiny``).

``QWEN3_VL`` holds the published 2B and 8B shapes (their config.json values); ``scaled_down`` keeps a
shape's structure (text and vision depth, DeepStack taps, attention-head grouping, MLP ratio, patch
and merge sizes) and shrinks only the widths, so that a model with the 8B's 36 text and 27 vision
layers runs on a CPU. Used by the scale rehearsal and by ``benches/gpu_throughput.py``.
"""

from __future__ import annotations

from typing import Any

QWEN3_VL: dict[str, dict[str, Any]] = {
    "2b": {
        "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "mrope_section": [24, 20, 20],
        "vision_depth": 24, "vision_hidden_size": 1024, "vision_intermediate_size": 4096, "vision_num_heads": 16,
        "deepstack_visual_indexes": [5, 11, 17], "num_position_embeddings": 2304,
    },
    "8b": {
        "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "mrope_section": [24, 20, 20],
        "vision_depth": 27, "vision_hidden_size": 1152, "vision_intermediate_size": 4304, "vision_num_heads": 16,
        "deepstack_visual_indexes": [8, 16, 24], "num_position_embeddings": 2304,
    },
}
# Shared by both sizes.
COMMON = {"patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "rope_theta": 5_000_000.0,
          "max_position_embeddings": 262144}


def full_spec(name: str) -> dict[str, Any]:
    """The published shape ``name`` ("2b" or "8b") as a tiny-model spec."""
    if name not in QWEN3_VL:
        raise ValueError(f"unknown Qwen3-VL shape {name!r}; known: {sorted(QWEN3_VL)}")
    return {**QWEN3_VL[name], **COMMON}


def scaled_down(name: str, *, head_dim: int = 16, heads: int = 4, vision_heads: int = 4,
                vocab_size: int = 512) -> dict[str, Any]:
    """Shape ``name`` with every layer kept and the widths shrunk: ``heads`` query heads of ``head_dim``
    (key/value heads shrunk by the same factor, so grouped-query attention keeps its grouping), MLPs
    at the published width ratio, a vision tower of ``vision_heads`` heads, an 8x8 position grid."""
    full = full_spec(name)
    hidden = heads * head_dim
    vision_hidden = vision_heads * head_dim
    kv_heads = max(1, full["num_key_value_heads"] * heads // full["num_attention_heads"])
    quarter = head_dim // 2
    return {
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": round(hidden * full["intermediate_size"] / full["hidden_size"]),
        "num_hidden_layers": full["num_hidden_layers"],
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "max_position_embeddings": 2048,
        "rope_theta": full["rope_theta"],
        "mrope_section": [quarter - 2 * (quarter // 4), quarter // 4, quarter // 4],  # sums to head_dim / 2
        "vision_depth": full["vision_depth"],
        "vision_hidden_size": vision_hidden,
        "vision_intermediate_size": round(vision_hidden * full["vision_intermediate_size"]
                                          / full["vision_hidden_size"]),
        "vision_num_heads": vision_heads,
        "patch_size": full["patch_size"],
        "spatial_merge_size": full["spatial_merge_size"],
        "temporal_patch_size": full["temporal_patch_size"],
        "deepstack_visual_indexes": list(full["deepstack_visual_indexes"]),
        "num_position_embeddings": 64,
    }
