"""Image-caption pairs: ROCO / ROCO-v2 (``image, caption``), MedTrinity (``image, caption``),
PMC-OA (``image, caption`` JSONL), FairVLMed (fundus image + clinical note), MEDPIX-ClinQA.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .common import ImageRecordOptions, each_file_record, make_row, record_images, rows_only, text, turn


class Options(ImageRecordOptions):
    caption_field: str = "caption"
    question: str = "Describe this medical image."

    def named_columns(self) -> list[str]:
        return [*super().named_columns(), self.image_field, self.caption_field]


def iter_outcomes(root: Path, options: Options | dict) -> Iterator:
    """Rows, and the outcome (quarantined / filtered) of each record that gives none."""
    options = Options.model_validate(options)
    def convert(index: int, record: dict) -> list[dict]:
        images = record_images(root, record, options)
        local_id = record.get(options.id_field) if options.id_field else index
        return [make_row(local_id, "caption", options, turn(options.question, text(record.get(options.caption_field))),
                         images=images)]

    yield from each_file_record(root, options, convert)


iter_samples = rows_only(iter_outcomes)
