"""One JSON box file per image folder, as SLAKE ships them: ``imgs/<folder>/source.jpg`` beside
``imgs/<folder>/detection.json`` holding ``[{"<label>": [x, y, w, h]}, ...]`` in pixels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from medmo_pipeline.data.outcomes import RowError
from medmo_pipeline.safe_paths import safe_glob, safe_join

from .common import AdapterOptions, guarded, limited, load_image, record_file_text, rows_only, validated
from .grounding import grounding_rows, xywh_to_xyxy
from .records import layout_path


class Options(AdapterOptions):
    image_dir: str = "imgs"
    boxes_file: str = "detection.json"
    image_file: str = "source.jpg"


@validated(Options)
def iter_outcomes(root: Path, options: Options) -> Iterator:
    base = layout_path(root, options.image_dir, folder=True)
    folders = [p.parent for p in safe_glob(base, f"*/{options.boxes_file}", refuse_outside=False)]

    def convert(_, folder: Path) -> list[dict]:
        name = f"{folder.name}/{options.boxes_file}"
        items = json.loads(record_file_text(safe_join(base, name), f"{options.image_dir}/{name}"))
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise RowError("malformed_record", f"{folder.name}/{options.boxes_file} is not a list of objects")
        labelled = [(label, *xywh_to_xyxy(*_four(box))) for item in items for label, box in item.items()]
        entry = load_image(root, f"{folder.name}/{options.image_file}", options)
        return list(grounding_rows(folder.name, entry, labelled, options))

    records = ((f"{options.image_dir}/{folder.name}/{options.boxes_file}", folder) for _, folder in
               limited(iter(folders), options))
    yield from guarded(records, options.boxes_file, convert)


def _four(box) -> list:
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise RowError("malformed_record", f"box {box!r} is not [x, y, w, h]")
    return list(box)


iter_samples = rows_only(iter_outcomes)
