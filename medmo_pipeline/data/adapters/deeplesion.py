"""DeepLesion ``DL_info.csv`` with its 16-bit PNG slices.

Conventions of the release: ``File_name`` ``PPPPPP_SS_EE_NNN.png`` is slice ``NNN.png`` of folder
``Images_png/PPPPPP_SS_EE/``; ``Bounding_boxes`` is the string ``"x1, y1, x2, y2"`` in pixels;
``Image_size`` is ``"rows, cols"``; ``Spacing_mm_px_`` is mm per pixel (kept out of the box);
``DICOM_windows`` is ``"low, high"`` in HU; ``Train_Val_Test`` is 1/2/3; ``Coarse_lesion_type``
is 1-8 or -1 (unknown). Pixels are stored as HU + 32768. Boxes are given on ``Image_size``; if the
PNG has another size they are scaled to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .common import AdapterOptions, iter_records, limited, load_image, text
from .grounding import grounding_rows

LESION_TYPES = {1: "bone lesion", 2: "abdomen lesion", 3: "mediastinum lesion", 4: "liver lesion",
                5: "lung lesion", 6: "kidney lesion", 7: "soft tissue lesion", 8: "pelvis lesion"}
HU_OFFSET = 32768


class Options(AdapterOptions):
    file: str = "DL_info.csv"
    image_dir: str = "Images_png"
    modality: str = "ct"
    default_window: tuple[float, float] = (40.0, 400.0)  # soft tissue, when DICOM_windows is absent
    eval_subsets: list[int] = [3]  # Train_Val_Test values that go to the eval split
    typed_labels: bool = True  # "liver lesion" from Coarse_lesion_type, else plain "lesion"


def iter_samples(root: Path, options: Options | dict) -> Iterator[dict]:
    options = Options.model_validate(options)
    slices: dict[str, list[dict]] = {}
    for record in iter_records(root, options.file, "csv"):
        slices.setdefault(text(record["File_name"]), []).append(record)
    for _, (file_name, records) in limited(iter(slices.items()), options):
        first = records[0]
        entry = load_image(root, slice_path(file_name), options, png16_offset=HU_OFFSET,
                           window=_window(first, options))
        sx, sy = _scale(first, entry)
        labelled = []
        for record in records:
            x1, y1, x2, y2 = numbers(record["Bounding_boxes"])
            labelled.append((_label(record, options), x1 * sx, y1 * sy, x2 * sx, y2 * sy))
        subset = int(float(text(first.get("Train_Val_Test")) or 1))
        split = "eval" if subset in options.eval_subsets else "train"
        yield from grounding_rows(file_name.removesuffix(".png"), entry, labelled, options, split=split)


def slice_path(file_name: str) -> str:
    """``000001_01_01_103.png`` -> ``000001_01_01/103.png``."""
    folder, _, slice_name = file_name.rpartition("_")
    return f"{folder}/{slice_name}"


def numbers(value: str) -> list[float]:
    """``"226.2, 187.5, 260.3, 220.9"`` -> floats (NaN for empty parts, caught by curation)."""
    return [float(part) if part.strip() else float("nan") for part in str(value).split(",")]


def _window(record: dict, options: Options) -> tuple[float, float]:
    try:
        low, high = numbers(record.get("DICOM_windows", ""))[:2]
    except ValueError:
        return options.default_window
    return ((low + high) / 2, high - low) if high > low else options.default_window


def _scale(record: dict, entry: dict) -> tuple[float, float]:
    """Factors from the CSV's Image_size (rows, cols) to the decoded PNG, 1 when unknown."""
    try:
        rows, cols = numbers(record.get("Image_size", ""))[:2]
    except ValueError:
        return 1.0, 1.0
    if not entry["width"] or not rows or not cols:
        return 1.0, 1.0
    return entry["width"] / cols, entry["height"] / rows


def _label(record: dict, options: Options) -> str:
    if not options.typed_labels:
        return "lesion"
    try:
        return LESION_TYPES.get(int(float(record.get("Coarse_lesion_type", -1))), "lesion")
    except ValueError:
        return "lesion"
