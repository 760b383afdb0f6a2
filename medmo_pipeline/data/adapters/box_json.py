"""One JSON box file per image folder, as SLAKE ships them: ``imgs/<folder>/source.jpg`` beside
``imgs/<folder>/detection.json`` holding ``[{"<label>": [x, y, w, h]}, ...]`` in pixels.

Each item of the list is checked by itself, with curation's rule: one that is not an object of
``[x, y, w, h]`` boxes, or holds a box no row could keep (NaN, no width or height, far outside the
image), is quarantined by the file and its ``item N`` (counted from 0), and the image keeps its
other boxes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from medmo_pipeline.data.outcomes import RowError
from medmo_pipeline.safe_paths import safe_glob, safe_join

from .common import (
    AdapterOptions,
    guarded,
    limited,
    load_image,
    record_file_text,
    row_problem,
    rows_only,
    shown,
    validated,
)
from .grounding import bad_box, grounding_outcomes, own_box, xywh_to_xyxy
from .records import layout_path


class Options(AdapterOptions):
    image_dir: str = "imgs"
    boxes_file: str = "detection.json"
    image_file: str = "source.jpg"


@validated(Options)
def iter_outcomes(root: Path, options: Options) -> Iterator:
    base = layout_path(root, options.image_dir, folder=True)
    # each box file as the folder names it (the pattern matches it in any case)
    found = safe_glob(base, f"*/{options.boxes_file}", refuse_outside=False)

    def convert(where: str, found_file: Path) -> list:
        folder, name = found_file.parent, f"{found_file.parent.name}/{found_file.name}"
        # every member of an item is a box: a label named twice in one item keeps both (json.loads
        # kept the last, and the other box was gone uncounted)
        items = json.loads(record_file_text(safe_join(base, name), where), object_pairs_hook=_Boxes)
        if not isinstance(items, list) or isinstance(items, _Boxes):
            raise RowError("malformed_record", f"{name} is not a list of objects")
        placed, problems = [], []
        for index, item in enumerate(items):
            origin = (where, f"item {index}")
            try:  # an item is a box: a bad one costs that item, not the image's other boxes
                if not isinstance(item, _Boxes):
                    raise RowError("malformed_record", f"{shown(item, 40)} is not an object of boxes")
                placed += [(origin, (label, *own_box(xywh_to_xyxy(*_four(box)), f"{label} box")))
                           for label, box in item]
            except RowError as error:
                bad_box(problems, error, *origin, "items")
        try:  # the image's rows; its bad items are named above whatever becomes of it
            entry = load_image(root, f"{folder.name}/{options.image_file}", options)
            rows = grounding_outcomes(folder.name, entry, placed, options)
        except Exception as error:  # noqa: BLE001 - quarantined as the box file, as guarded would
            rows = [row_problem(error, options.boxes_file, where)]
        return [*problems, *rows]

    records = ((f"{options.image_dir}/{path.parent.name}/{path.name}", path) for _, path in
               limited(iter(found), options))
    yield from guarded(records, options.boxes_file, convert)


class _Boxes(list):
    """A JSON object's (label, box) members, in order, a label named twice included."""


def _four(box) -> list:
    if isinstance(box, _Boxes) or not isinstance(box, (list, tuple)) or len(box) != 4:  # an object is no box
        raise RowError("malformed_record", f"box {shown(box, 60)} is not [x, y, w, h]")
    return list(box)


iter_samples = rows_only(iter_outcomes)
