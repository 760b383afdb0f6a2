"""Image-caption pairs: ROCO / ROCO-v2 (``image, caption``), MedTrinity (``image, caption``),
PMC-OA (``image, caption`` JSONL), FairVLMed (fundus image + clinical note), MEDPIX-ClinQA.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .common import (
    ImageRecordOptions,
    as_list,
    iter_records,
    limited,
    load_image,
    make_row,
    text,
    turn,
)


class Options(ImageRecordOptions):
    caption_field: str = "caption"
    question: str = "Describe this medical image."


def iter_samples(root: Path, options: Options | dict) -> Iterator[dict]:
    options = Options.model_validate(options)
    for index, record in limited(iter_records(root, options.file, options.format), options):
        images = [load_image(root, value, options) for value in as_list(record.get(options.image_field))]
        local_id = record.get(options.id_field) if options.id_field else index
        yield make_row(local_id, "caption", options, turn(options.question, text(record.get(options.caption_field))),
                       images=images)
