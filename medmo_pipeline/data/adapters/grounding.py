"""Grounding rows from pixel boxes: shared by every detection format (COCO, CSV lists, YOLO, masks).

One row per (image, label): the question names the label, the answer is MedMO's
``label <box>[[x1, y1, x2, y2], ...]</box>`` on Qwen3-VL's 0-1000 scale, and the ``boxes`` column
keeps the pixel boxes of the original image. Boxes are passed through unchanged: clipping and
quarantine of bad boxes is curation's job, so it can count them. Box lists that name where each box
was read (a CSV row, an annotation, a YOLO label line, a box JSON item) apply curation's rule to each
box first (``own_box``, ``grounding_outcomes``): a box no row could keep, or one without a label, is
quarantined by its own record, and the image keeps its other boxes of that label.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from medmo_pipeline.data.characters import stripped
from medmo_pipeline.data.image_limits import limits_in_force
from medmo_pipeline.data.images import inspect_image
from medmo_pipeline.data.outcomes import RowError, RowQuarantined
from medmo_pipeline.schema.boxes import (
    BoxRefused,
    checked_box,
    clip_box,
    format_box_answer,
    pixels_to_relative,
)

from .common import AdapterOptions, coordinates, make_row, row_problem, turn

QUESTION = "Locate every {label} in this image and give their bounding boxes."
# Bad boxes of one record file (a YOLO label file, a box JSON) quarantined one by one; a real file
# holds a few boxes, so past this many it is no box file, quarantined whole (one record, not millions)
MAX_BAD_BOXES = 1_000


def grounding_rows(image_id: str, image: dict, labelled_boxes: Iterable[tuple[str, float, float, float, float]],
                   options: AdapterOptions, *, split: str | None = None) -> Iterator[dict]:
    """Rows for one image; ``labelled_boxes`` are (label, x1, y1, x2, y2) in pixels, any order. An
    image of unknown size (its file missing, its header unreadable) raises RowError saying so:
    without its size no reply can be written, and an empty reply would be reported instead."""
    if image.get("width", 0) <= 0 or image.get("height", 0) <= 0:
        name = image.get("path") or "the image"
        if not image.get("bytes"):
            raise RowError("image_missing", f"{name}: no such file", path=image.get("path") or "")
        inspect_image(image["bytes"], limits_in_force())  # raises the reason curation would give
        raise RowError("image_undecodable", f"{name}: its size is unreadable")
    by_label: dict[str, list[tuple[float, float, float, float]]] = {}
    for label, *box in labelled_boxes:
        if not (name := stripped(str(label))):  # the question would name nothing to locate
            raise RowError("missing_field", f"a box without a label: {box}")
        by_label.setdefault(name, []).append(coordinates(box))
    for label, boxes in sorted(by_label.items()):
        records = [{"label": label, "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3]} for b in boxes]
        reply = box_answer(label, boxes, image["width"], image["height"])
        yield make_row(f"{image_id}:{label}", "grounding", options, turn(QUESTION.format(label=label), reply),
                       images=[image], boxes=records, split=split)


def grounding_outcomes(image_id: str, image: dict, placed: Iterable[tuple[tuple[str, str], tuple]],
                       options: AdapterOptions, *, split: str | None = None) -> list:
    """``grounding_rows`` of ``placed``, (origin, (label, x1, y1, x2, y2)) pairs whose origin is the
    (file, record) the box was read from, after a quarantine outcome naming that record for each box
    curation would refuse on this image (far outside it) and each box without a label. The boxes kept
    go on unchanged: curation clips and counts them. An image of unknown size keeps them all, and
    grounding_rows refuses it."""
    kept, refused = [], []
    known = image.get("width", 0) > 0 and image.get("height", 0) > 0
    for (file, where), labelled in placed:
        if not stripped(str(labelled[0])):  # its question would name nothing: the box goes, not the image
            refused.append(RowQuarantined("missing_field", f"{file} {where}: a box without a label", file, where))
            continue
        try:
            if known:
                clip_box(labelled[1:], image["width"], image["height"])
            kept.append(labelled)
        except BoxRefused as problem:
            refused.append(RowQuarantined(problem.reason, f"{file} {where}: {labelled[0]} {problem.detail}",
                                          file, where))
    return [*refused, *grounding_rows(image_id, image, kept, options, split=split)]


def bad_box(problems: list, error: Exception, file: str, record: str, unit: str) -> None:
    """Add the quarantine of one bad box of a record file, named by its own ``record`` (a line, an
    item), to ``problems``; past ``MAX_BAD_BOXES`` of them the file is no box file: RowError for the
    whole of it (``unit`` names what it holds: lines, items)."""
    problems.append(row_problem(error, file, record))
    if len(problems) > MAX_BAD_BOXES:
        raise RowError("malformed_record", f"more than {MAX_BAD_BOXES} bad {unit}")


def own_box(box: Sequence[float], what: str) -> tuple[float, float, float, float]:
    """``box`` when a row could keep it on some image (finite, of positive width and height); else
    RowError with curation's reason, so the record holding it is quarantined by itself."""
    try:
        return checked_box(box)
    except BoxRefused as problem:
        raise RowError(problem.reason, f"{what}: {problem.detail}") from None


def box_answer(label: str, boxes: list[tuple[float, float, float, float]], width: int, height: int) -> str:
    """The answer text; '' when the image size is unknown (curation quarantines that image anyway)."""
    if width <= 0 or height <= 0:
        return ""
    try:
        return format_box_answer(label, [pixels_to_relative(b, width, height) for b in boxes])
    except ValueError:  # NaN coordinates: curation reports the box
        return ""


def xywh_to_xyxy(x, y, w, h) -> tuple[float, float, float, float]:
    """Top-left corner plus size (COCO, NIH, SLAKE) -> corners; raises RowError on a value that is
    not a finite number (so the record is quarantined naming itself)."""
    x, y, w, h = coordinates((x, y, w, h))
    return x, y, x + w, y + h
