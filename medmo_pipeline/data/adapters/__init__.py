"""Adapters by format family: each module has an ``Options`` model,
``iter_outcomes(root, options)`` yielding sample-contract rows plus a ``RowQuarantined`` /
``RowFiltered`` (``data.outcomes``) for each record that gives no row, and ``iter_samples``
yielding the rows alone (see ``common``).

The registry names a family per dataset; ``ADAPTERS`` maps family names to modules.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from . import (
    box_json,
    caption,
    coco,
    conversation,
    deeplesion,
    image_folder,
    instruction,
    labels,
    masks,
    multiple_choice,
    nih_bbox,
    npz_masks,
    report,
    vqa,
    yolo,
)

ADAPTERS: dict[str, ModuleType] = {
    "llava_json": conversation,
    "vqa": vqa,
    "caption": caption,
    "report": report,
    "coco": coco,
    "box_json_per_image": box_json,
    "nih_bbox_csv": nih_bbox,
    "deeplesion_csv": deeplesion,
    "yolo": yolo,
    "instance_masks": masks,
    "multiple_choice": multiple_choice,
    "text_instruction": instruction,
    "image_folder": image_folder,
    "label_csv": labels,
    "instance_masks_npz": npz_masks,
}


def adapter(family: str) -> ModuleType:
    if family not in ADAPTERS:
        raise ValueError(f"unknown adapter family {family!r}; known: {sorted(ADAPTERS)}")
    return ADAPTERS[family]


def iter_samples(family: str, root: Path, options: dict) -> Iterator[dict]:
    """Rows of the dataset at ``root`` read by adapter ``family`` with ``options``."""
    return adapter(family).iter_samples(Path(root), options)


def iter_outcomes(family: str, root: Path, options: dict) -> Iterator:
    """Rows and record outcomes (quarantined / filtered) of the dataset at ``root``."""
    return adapter(family).iter_outcomes(Path(root), options)
