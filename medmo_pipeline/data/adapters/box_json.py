"""One JSON box file per image folder, as SLAKE ships them: ``imgs/<folder>/source.jpg`` beside
``imgs/<folder>/detection.json`` holding ``[{"<label>": [x, y, w, h]}, ...]`` in pixels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from medmo_pipeline.data.paths import safe_glob, safe_join

from .common import AdapterOptions, limited, load_image
from .grounding import grounding_rows, xywh_to_xyxy


class Options(AdapterOptions):
    image_dir: str = "imgs"
    boxes_file: str = "detection.json"
    image_file: str = "source.jpg"


def iter_samples(root: Path, options: Options | dict) -> Iterator[dict]:
    options = Options.model_validate(options)
    base = safe_join(root, options.image_dir)
    folders = [p.parent for p in safe_glob(base, f"*/{options.boxes_file}")]
    for _, folder in limited(iter(folders), options):
        items = json.loads((folder / options.boxes_file).read_text(encoding="utf-8"))
        labelled = [(label, *xywh_to_xyxy(*box)) for item in items for label, box in item.items()]
        entry = load_image(root, f"{folder.name}/{options.image_file}", options)
        yield from grounding_rows(folder.name, entry, labelled, options)
