"""COCO detection JSON: ``images[{id, file_name, width, height}]``, ``annotations[{image_id,
category_id, bbox: [x, y, w, h] in pixels, iscrowd}]``, ``categories[{id, name}]``.

The file is read three times, a record at a time (``annotations.json_items``): the categories,
then the annotations (their boxes kept by image), then the images, each converted as it is read.
Memory holds the boxes, not the file's whole object tree. Each annotation's box is checked by
itself, with curation's rule: one no row could keep (NaN, of no width or height, far outside its
image) is quarantined as that annotation, and the image keeps its other boxes of the category. A
category id listed twice stops the source: which name its annotations mean would be a guess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medmo_pipeline.data.annotations import UnreadableRecord, json_items
from medmo_pipeline.data.characters import stripped
from medmo_pipeline.data.outcomes import RowError, RowFiltered, RowQuarantined
from medmo_pipeline.safe_paths import safe_join

from .common import AdapterOptions, guarded, limited, load_image, row_problem, rows_only
from .grounding import grounding_outcomes, own_box, xywh_to_xyxy
from .records import SourceLayoutError


class Options(AdapterOptions):
    file: str
    skip_crowd: bool = True


def iter_outcomes(root: Path, options: Options | dict) -> Iterator:
    """Rows, and the outcome (quarantined / filtered) of each record that gives none."""
    options = Options.model_validate(options)
    path = safe_join(root, options.file)
    try:
        names, listed = {}, set()
        for _, category in json_items(path, options.file, "categories", required=False):
            if isinstance(category, UnreadableRecord):  # every label depends on the categories
                raise ValueError(category.problem)
            if (key := _key(category["id"])) in listed:
                raise ValueError(f"category id {key!r} is listed twice")
            listed.add(key)
            if isinstance(category.get("name"), str) and stripped(category["name"]):  # else: no label of its
                names[key] = stripped(category["name"])  # annotations are quarantined
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SourceLayoutError(f"{options.file} is not a readable COCO file ({error})") from None
    boxes: dict = {}
    crowded: set = set()  # images with a crowd annotation skipped
    for index, annotation in json_items(path, options.file, "annotations", required=False):
        if isinstance(annotation, UnreadableRecord):
            yield RowQuarantined("malformed_record", annotation.problem, options.file, f"annotation {index}")
            continue
        try:
            image_id = _key(annotation["image_id"])
            if options.skip_crowd and _flag(annotation.get("iscrowd")):
                crowded.add(image_id)
                continue
            if (label := names.get(_key(annotation["category_id"]))) is None:
                raise RowError("malformed_record", f"category_id {annotation['category_id']!r} names no category "
                                                   "of the file (or one without a name)")
            box = (label, *own_box(xywh_to_xyxy(*annotation["bbox"]), f"bbox {annotation['bbox']!r}"))
            boxes.setdefault(image_id, []).append(((options.file, f"annotation {index}"), box))
        except Exception as error:  # noqa: BLE001 - this annotation is quarantined; the others go on
            yield row_problem(error, options.file, f"annotation {index}")
    seen: set = set()

    def convert(_, image: dict) -> list:
        image_id = _key(image["id"])
        seen.add(image_id)
        if image_id not in boxes:  # nothing to ground: left out on purpose, and counted
            if image_id in crowded:
                return [RowFiltered("crowd", f"image {image_id}: only crowd annotations (skip_crowd)")]
            return [RowFiltered("no_finding", f"image {image_id}: no annotation")]
        entry = load_image(root, image["file_name"], options)  # an annotation outside it is quarantined as itself
        return grounding_outcomes(image_id, entry, boxes[image_id], options)

    images = (RowQuarantined("malformed_record", image.problem, options.file, f"image {index}")
              if isinstance(image, UnreadableRecord) else image
              for index, image in json_items(path, options.file, "images", required=False))
    yield from guarded(limited(images, options), options.file, convert)
    if options.limit is None:  # annotations of no image of the file: said so, each by its place
        for image_id in boxes.keys() - seen:
            for (file, where), _ in boxes[image_id]:
                yield RowQuarantined("missing_join_key", f"{file} {where}: image_id {image_id} "
                                     "names no image of the file", file, where)


def _key(value) -> str:
    """An image or category id as the key annotations and images meet on (0 and "0" are one id);
    RowError('missing_field') for none."""
    if value is None or isinstance(value, (dict, list, bool)) or not stripped(str(value)):
        raise RowError("missing_field", f"id {value!r} is not an id")
    return stripped(str(value))  # an image id goes into its rows' ids: stripped as curation strips them


def _flag(value) -> bool:
    """``iscrowd`` as the file means it: 1, "1", true; 0, "0", false and absent are not crowd."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "0.0", "false")
    return bool(value)


iter_samples = rows_only(iter_outcomes)
