"""COCO detection JSON: ``images[{id, file_name, width, height}]``, ``annotations[{image_id,
category_id, bbox: [x, y, w, h] in pixels, iscrowd}]``, ``categories[{id, name}]``.

The file is read three times, a record at a time (``annotations.json_items``): the categories,
then the annotations (their boxes kept by image), then the images, each converted as it is read.
Memory holds the boxes, not the file's whole object tree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medmo_pipeline.data.annotations import UnreadableRecord, json_items
from medmo_pipeline.data.outcomes import RowFiltered, RowQuarantined
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
        names = {}
        for _, category in json_items(path, options.file, "categories", required=False):
            if isinstance(category, UnreadableRecord):  # every label depends on the categories
                raise ValueError(category.problem)
            names[category["id"]] = category["name"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SourceLayoutError(f"{options.file} is not a readable COCO file ({error})") from None
    boxes: dict = {}
    crowded: set = set()  # images with a crowd annotation skipped
    for index, annotation in json_items(path, options.file, "annotations", required=False):
        if isinstance(annotation, UnreadableRecord):
            yield RowQuarantined("malformed_record", annotation.problem, options.file, f"annotation {index}")
            continue
        try:
            if options.skip_crowd and annotation.get("iscrowd"):
                crowded.add(annotation["image_id"])
                continue
            label = names.get(annotation["category_id"], str(annotation["category_id"]))
            boxes.setdefault(annotation["image_id"], []).append((label, *xywh_to_xyxy(*annotation["bbox"])))
        except Exception as error:  # noqa: BLE001 - this annotation is quarantined; the others go on
            yield row_problem(error, options.file, f"annotation {index}")

    def convert(_, image: dict) -> list:
        if image["id"] not in boxes:  # nothing to ground: left out on purpose, and counted
            if image["id"] in crowded:
                return [RowFiltered("crowd", f"image {image['id']}: only crowd annotations (skip_crowd)")]
            return [RowFiltered("no_finding", f"image {image['id']}: no annotation")]
        entry = load_image(root, image["file_name"], options)
        return list(grounding_rows(str(image["id"]), entry, boxes[image["id"]], options))

    images = (RowQuarantined("malformed_record", image.problem, options.file, f"image {index}")
              if isinstance(image, UnreadableRecord) else image
              for index, image in json_items(path, options.file, "images", required=False))
    yield from guarded(limited(images, options), options.file, convert)


iter_samples = rows_only(iter_outcomes)
