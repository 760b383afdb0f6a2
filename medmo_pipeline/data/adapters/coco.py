"""COCO detection JSON: ``images[{id, file_name, width, height}]``, ``annotations[{image_id,
category_id, bbox: [x, y, w, h] in pixels, iscrowd}]``, ``categories[{id, name}]``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from medmo_pipeline.data.paths import safe_join

from .common import AdapterOptions, limited, load_image
from .grounding import grounding_rows, xywh_to_xyxy


class Options(AdapterOptions):
    file: str
    skip_crowd: bool = True


def iter_samples(root: Path, options: Options | dict) -> Iterator[dict]:
    options = Options.model_validate(options)
    data = json.loads(safe_join(root, options.file).read_text(encoding="utf-8"))
    names = {category["id"]: category["name"] for category in data.get("categories", [])}
    boxes: dict = {}
    for annotation in data.get("annotations", []):
        if options.skip_crowd and annotation.get("iscrowd"):
            continue
        label = names.get(annotation["category_id"], str(annotation["category_id"]))
        boxes.setdefault(annotation["image_id"], []).append((label, *xywh_to_xyxy(*annotation["bbox"])))
    for _, image in limited(iter(data.get("images", [])), options):
        if image["id"] in boxes:
            entry = load_image(root, image["file_name"], options)
            yield from grounding_rows(str(image["id"]), entry, boxes[image["id"]], options)

