"""Base-model loading and the offline tiny Qwen3-VL factory.

Exports resolve lazily so `import medmo_pipeline.model` stays cheap and works without torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "build_tiny_base_model": "tiny",
    "DEFAULT_SPEC": "tiny",
    "count_parameters": "tiny",
    "load_model": "loading",
    "load_processor": "loading",
    "set_image_resolution": "loading",
    "image_resolution": "loading",
    "save_model_and_processor": "loading",
    "UnsafeCheckpointError": "loading",
    "ImageOnlyQwen3VLProcessor": "processor",
    "train_tokenizer": "tokenizer",
    "CHAT_TEMPLATE": "tokenizer",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
