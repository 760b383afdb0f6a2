"""Image-only Qwen3-VL processor for the tiny offline model.

`Qwen3VLProcessor` insists on a video processor; ours has no video data, so a subclass whose
`__init__` leaves it out. It is registered with `AutoProcessor` (under its own sentinel config,
so real Qwen3-VL checkpoints keep their stock processor) and reloads from a saved directory.
"""

from __future__ import annotations

from transformers import AutoProcessor, PreTrainedConfig
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

from .tokenizer import CHAT_TEMPLATE


class ImageOnlyQwen3VLProcessor(Qwen3VLProcessor):
    """Qwen3-VL processor (images + text) without a video processor."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # ProcessorMixin derives its sub-processors from this signature: image_processor, tokenizer.
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class _ImageOnlyProcessorKey(PreTrainedConfig):
    # Sentinel key: registering under Qwen3VLConfig would replace the stock processor for every
    # Qwen3-VL checkpoint in the process. AutoProcessor also resolves registered classes by the
    # `processor_class` name saved in processor_config.json, which is all reloading needs.
    model_type = "medmo_image_only_qwen3_vl"


AutoProcessor.register(_ImageOnlyProcessorKey, ImageOnlyQwen3VLProcessor, exist_ok=True)


def build_image_processor(
    *, patch_size: int, merge_size: int, temporal_patch_size: int, min_pixels: int, max_pixels: int
) -> Qwen2VLImageProcessorPil:
    # PIL backend: no torchvision needed (it cannot be imported next to the CPU torch build here).
    return Qwen2VLImageProcessorPil(
        patch_size=patch_size,
        merge_size=merge_size,
        temporal_patch_size=temporal_patch_size,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
    )


def build_processor(tokenizer, image_processor) -> ImageOnlyQwen3VLProcessor:
    return ImageOnlyQwen3VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )
