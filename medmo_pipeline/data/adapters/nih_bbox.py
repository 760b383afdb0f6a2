"""NIH ChestX-ray14 ``BBox_List_2017.csv``: ``Image Index, Finding Label, Bbox [x, y, w, h]``
(the header spreads the box over four columns), x/y the top-left corner and w/h the size, in
pixels of the 1024 x 1024 PNGs under ``images/``."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from medmo_pipeline.data.paths import safe_join

from .common import AdapterOptions, limited, load_image
from .grounding import grounding_rows, xywh_to_xyxy


class Options(AdapterOptions):
    file: str = "BBox_List_2017.csv"
    image_dir: str = "images"
    modality: str = "xray"


def iter_samples(root: Path, options: Options | dict) -> Iterator[dict]:
    options = Options.model_validate(options)
    boxes: dict[str, list] = {}
    with open(safe_join(root, options.file), encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)  # header
        for row in reader:
            if len(row) >= 6 and row[0].strip():
                image, label, *xywh = (cell.strip() for cell in row[:6])
                boxes.setdefault(image, []).append((label, *xywh_to_xyxy(*(float(v) for v in xywh))))
    for _, (image, labelled) in limited(iter(boxes.items()), options):
        yield from grounding_rows(image, load_image(root, image, options), labelled, options)
