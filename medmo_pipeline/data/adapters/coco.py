"""COCO detection JSON: ``images[{id, file_name, width, height}]``, ``annotations[{image_id,
category_id, bbox: [x, y, w, h] in pixels, iscrowd}]``, ``categories[{id, name}]``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from medmo_pipeline.data.outcomes import RowQuarantined
from medmo_pipeline.safe_paths import safe_join

from .common import AdapterOptions, guarded, limited, load_image, row_problem, rows_only
from .grounding import grounding_rows, xywh_to_xyxy
from .records import SourceLayoutError


class Options(AdapterOptions):
    file: str
    skip_crowd: bool = True


def iter_outcomes(root: Path, options: Options | dict) -> Iterator:
    """Rows, and the outcome (quarantined / filtered) of each record that gives none."""
    options = Options.model_validate(options)
    path = safe_join(root, options.file)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        names = {category["id"]: category["name"] for category in data.get("categories", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise SourceLayoutError(f"{options.file} is not a readable COCO file ({error})") from None
    boxes: dict = {}
    for index, annotation in enumerate(data.get("annotations", [])):
        try:
            if options.skip_crowd and annotation.get("iscrowd"):
                continue
            label = names.get(annotation["category_id"], str(annotation["category_id"]))
            boxes.setdefault(annotation["image_id"], []).append((label, *xywh_to_xyxy(*annotation["bbox"])))
        except Exception as error:  # noqa: BLE001 - this annotation is quarantined; the others go on
            yield row_problem(error, options.file, f"annotation {index}")

    def convert(_, image: dict) -> list:
        if image["id"] not in boxes:
            return [RowQuarantined("missing_join_key", f"image {image['id']} has no annotation", options.file,
                                   f"image {image['id']}")]
        entry = load_image(root, image["file_name"], options)
        return list(grounding_rows(str(image["id"]), entry, boxes[image["id"]], options))

    yield from guarded(limited(iter(data.get("images", [])), options), options.file, convert)


iter_samples = rows_only(iter_outcomes)
