"""NIH ChestX-ray14 ``BBox_List_2017.csv``: ``Image Index, Finding Label, Bbox [x, y, w, h]``
(the header spreads the box over four columns), x/y the top-left corner and w/h the size, in
pixels of the 1024 x 1024 PNGs under ``images/``. Each box row is checked by itself, with
curation's rule: one no row could keep (NaN, no width or height, far outside its image) is
quarantined by its own CSV row, and the image keeps its other boxes of that label."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medmo_pipeline.data.outcomes import RowFiltered

from .common import (
    RecordOptions,
    guarded,
    limited,
    load_image,
    origin_of,
    read_records,
    rows_only,
    text,
    validated,
)
from .grounding import grounding_outcomes, own_box, xywh_to_xyxy
from .records import RecordFormat

# The published header: "Image Index,Finding Label,Bbox [x,y,w,h],,," (the box name spans four
# columns, the last three headed by nothing); read by position.
COLUMNS = 6
NO_FINDING = ("no finding", "no_finding")


class Options(RecordOptions):
    file: str = "BBox_List_2017.csv"
    format: RecordFormat = "csv"
    image_dir: str = "images"
    modality: str = "xray"


@validated(Options)
def iter_outcomes(root: Path, options: Options) -> Iterator:
    boxes: dict[str, list] = {}  # image -> (origin, (label, x1, y1, x2, y2)) of each of its box rows

    def collect(index: int, record: dict) -> list:  # a bad CSV row is quarantined by guarded; the others go on
        values = list(record.values())
        if len(values) < COLUMNS or any(value is None for value in values[:COLUMNS]):
            raise ValueError(f"{len(values)} columns, expected {COLUMNS}")
        image, label, *xywh = (text(value) for value in values[:COLUMNS])
        if not image or not label:
            raise KeyError("Image Index / Finding Label")
        if label.casefold() in NO_FINDING and not any(value.strip() for value in xywh[:4] if value != "nan"):
            return [RowFiltered("no_finding", f"{image}: {label}")]  # a negative image: its box is empty or NaN
        # before the image gets an entry: a bad box gives it none, and costs its own row only
        box = (label, *own_box(xywh_to_xyxy(*xywh), f"{image} {label}"))
        boxes.setdefault(image, []).append((origin_of(record, options.file, index), box))
        return []

    yield from guarded(enumerate(read_records(root, options)), options.file, collect, collecting=True)

    def convert(image: str, placed: list) -> list:  # a box row outside the image is quarantined by its row
        return grounding_outcomes(image, load_image(root, image, options), placed, options)

    yield from guarded((pair for _, pair in limited(iter(boxes.items()), options)), options.file, convert)


iter_samples = rows_only(iter_outcomes)
