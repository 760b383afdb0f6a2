"""Image-caption pairs: ROCO / ROCO-v2 (``image, caption``), MedTrinity (``image, caption``; the full
release's ``file_name, caption, source`` with ``image_lookup: tree``), PMC-OA (``image, caption``
JSONL), FairVLMed (fundus image + clinical note), MEDPIX-ClinQA.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from medmo_pipeline.data.outcomes import RowError, RowFiltered

from .common import (
    ImageRecordOptions,
    each_file_record,
    load_image,
    make_row,
    record_images,
    rows_only,
    shown,
    text,
    turn,
)
from .image_tree import MAX_FOUND, tree_index
from .records import SourceLayoutError


class Options(ImageRecordOptions):
    caption_field: str = "caption"
    question: str = "Describe this medical image."
    # "path": image_field holds a path under image_dir (or an embedded image). "tree": a bare file name,
    # found wherever it sits below image_dir (MedTrinity-25M's 25M_accessible shards unpacked into
    # 25M_accessible_unzipped/, images six folders deep); a name in no folder there is an image the
    # release does not ship (filtered, image_not_released), one in two folders is image_ambiguous.
    image_lookup: Literal["path", "tree"] = "path"
    source_field: str = ""  # the record's own origin column, named in an image_not_released detail

    def named_columns(self) -> list[str]:
        return [*super().named_columns(), self.image_field, self.caption_field, self.source_field]


def iter_outcomes(root: Path, options: Options | dict) -> Iterator:
    """Rows, and the outcome (quarantined / filtered) of each record that gives none."""
    options = Options.model_validate(options)
    if options.image_lookup == "tree":
        yield from _tree_outcomes(root, options)
        return

    def convert(index: int, record: dict) -> list[dict]:
        images = record_images(root, record, options)
        local_id = record.get(options.id_field) if options.id_field else index
        return [make_row(local_id, "caption", options, turn(options.question, text(record.get(options.caption_field))),
                         images=images)]

    yield from each_file_record(root, options, convert)


def _tree_outcomes(root: Path, options: Options) -> Iterator:
    """``image_lookup: tree``: each record's image looked up by name in the index of ``image_dir``
    (built once, on the first record that needs it). When records were looked up and none found its
    image (the shards not unpacked there, or unpacked elsewhere), a training source stops, as the
    registry stops any source none of whose records finds its image."""
    looked, found, first = 0, 0, ""
    tree = None

    def convert(index: int, record: dict) -> list:
        nonlocal looked, found, first, tree
        name = text(record.get(options.image_field))
        if not name:
            raise RowError("missing_field", f"no image name in {options.image_field!r}")
        caption = text(record.get(options.caption_field))
        if tree is None:
            tree = tree_index(root, options.image_dir)
        paths = tree.find(name)
        looked += 1
        first = first or name
        if not paths:
            origin = f"{options.source_field}={shown(text(record.get(options.source_field)))}: " \
                if options.source_field else ""
            return [RowFiltered("image_not_released", f"{origin}no file {shown(name)} under {options.image_dir}/")]
        found += 1
        if len(paths) > 1:
            count = f"{len(paths)}" if len(paths) <= MAX_FOUND else f"more than {MAX_FOUND}"
            raise RowError("image_ambiguous", f"image name {shown(name)} names {count} files under "
                                              f"{options.image_dir}/: {', '.join(paths[:5])}")
        local_id = record.get(options.id_field) if options.id_field else index
        return [make_row(local_id, "caption", options, turn(options.question, caption),
                         images=[load_image(root, paths[0], options)])]

    yield from each_file_record(root, options, convert)
    if looked and not found and options.split == "train":
        size = len(tree) if tree is not None else 0
        raise SourceLayoutError(
            f"none of its {looked} records found its image file: {options.image_dir}/ holds {size} files, none "
            f"named as a record's {options.image_field} (the first looked for: {first}); unpack each image "
            f"shard (tar --zstd -xf) into {options.image_dir}/")


iter_samples = rows_only(iter_outcomes)
