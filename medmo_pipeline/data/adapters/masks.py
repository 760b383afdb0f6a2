"""Cell microscopy with instance masks (DeepCell/TissueNet exports, the Bacteria and Cell Tracking
Challenge sets): ``images/<stem>.<ext>`` beside ``masks/<stem><suffix>`` whose pixel value is the
instance id (0 = background). Each instance becomes one box (its tight pixel extent, x2/y2
exclusive)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from medmo_pipeline.data.outcomes import RowFiltered, RowQuarantined
from medmo_pipeline.data.paths import safe_join

from .common import AdapterOptions, SourceLayoutError, guarded, limited, load_image, rows_only
from .grounding import grounding_rows


class Options(AdapterOptions):
    image_dir: str = "images"
    masks_dir: str = "masks"
    mask_suffix: str = ".png"
    label: str = "cell"
    modality: str = "microscopy"
    # An image without its mask: a broken copy (quarantine), or a frame the release does not annotate
    # (filter, reason "unannotated": the Cell Tracking Challenge's gold segmentation covers some frames)
    unannotated: Literal["quarantine", "filter"] = "quarantine"


def iter_outcomes(root: Path, options: Options | dict) -> Iterator:
    """Rows, and the outcome (quarantined / filtered) of each record that gives none."""
    options = Options.model_validate(options)
    image_dir = safe_join(root, options.image_dir)
    if not image_dir.is_dir():
        raise SourceLayoutError(f"{options.image_dir} is missing under {root}")
    images = sorted(p for p in image_dir.iterdir() if p.is_file())

    def convert(where: str, image_path: Path) -> list:
        mask_name = f"{options.masks_dir}/{image_path.stem}{options.mask_suffix}"
        mask_path = safe_join(root, mask_name)
        if not mask_path.is_file():  # an image without its mask: nothing to ground, said so
            if options.unannotated == "filter":
                return [RowFiltered("unannotated", f"{where}: no mask {mask_name}")]
            return [RowQuarantined("missing_join_key", f"{where}: no mask {mask_name}", options.image_dir, where)]
        entry = load_image(root, image_path.name, options)
        boxes = [(options.label, *box) for box in instance_boxes(mask_path.read_bytes())]
        return list(grounding_rows(image_path.stem, entry, boxes, options))

    records = ((f"{options.image_dir}/{path.name}", path) for _, path in limited(iter(images), options))
    yield from guarded(records, options.image_dir, convert)


def instance_boxes(mask_bytes: bytes) -> list[tuple[int, int, int, int]]:
    """Tight (x1, y1, x2, y2) of each non-zero instance id, ordered by id."""
    with Image.open(io.BytesIO(mask_bytes)) as image:
        mask = np.asarray(image)
    if mask.ndim == 3:
        mask = mask[..., 0]
    boxes = []
    for instance in np.unique(mask):
        if instance == 0:
            continue
        ys, xs = np.nonzero(mask == instance)
        boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    return boxes


iter_samples = rows_only(iter_outcomes)
