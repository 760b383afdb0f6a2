"""DeepLesion ``DL_info.csv`` with its 16-bit PNG slices.

Conventions of the release: ``File_name`` ``PPPPPP_SS_EE_NNN.png`` is slice ``NNN.png`` of folder
``Images_png/PPPPPP_SS_EE/``; ``Bounding_boxes`` is the string ``"x1, y1, x2, y2"`` in pixels;
``Image_size`` is ``"rows, cols"``; ``Spacing_mm_px_`` is mm per pixel (kept out of the box);
``DICOM_windows`` is ``"low, high"`` in HU; ``Train_Val_Test`` is 1/2/3; ``Coarse_lesion_type``
is 1-8 or -1 (unknown). Pixels are stored as HU + 32768. Boxes are given on ``Image_size``; if the
PNG has another size they are scaled to it. Each CSV row's box is checked by itself, with
curation's rule: one no row could keep (NaN, reversed, far outside its slice) is quarantined by its
own row, and the slice keeps its other lesions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medmo_pipeline.data.outcomes import RowError, RowQuarantined

from .common import (
    AdapterOptions,
    coordinates,
    guarded,
    limited,
    load_image,
    number,
    origin_of,
    row_problem,
    rows_only,
    text,
    with_columns,
)
from .grounding import grounding_outcomes, own_box
from .records import iter_records

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


def iter_outcomes(root: Path, options: Options | dict) -> Iterator:
    """Rows, and the outcome (quarantined / filtered) of each record that gives none."""
    options = Options.model_validate(options)
    slices: dict[str, list[tuple]] = {}
    for index, record in enumerate(with_columns(iter_records(root, options.file, "csv"),
                                                ["File_name", "Bounding_boxes"], options.file, "csv")):
        if isinstance(record, RowQuarantined):
            yield record
            continue
        origin = origin_of(record, options.file, index)
        try:  # each CSV row is checked on its own: a broken one is quarantined, its slice goes on
            file_name = text(record["File_name"])
            if not file_name.lower().endswith(".png") or "_" not in file_name:
                raise ValueError(f"File_name {file_name!r} is not PPPPPP_SS_EE_NNN.png")
            box = coordinates(numbers(record["Bounding_boxes"]), "Bounding_boxes")
            if len(box) != 4:
                raise ValueError(f"Bounding_boxes has {len(box)} numbers, expected 4")
            box = own_box(box, f"{file_name} Bounding_boxes")
            subset = _subset(record)  # read here: a bad one costs its own row, not its slice's other lesions
            slices.setdefault(file_name, []).append((record, box, origin, subset))
        except Exception as error:  # noqa: BLE001 - quarantined with its file and row
            yield row_problem(error, *origin)

    def convert(file_name: str, records: list[tuple]) -> list:
        first = records[0][0]
        entry = load_image(root, slice_path(file_name), options, png16_offset=HU_OFFSET,
                           window=_window(first, options))
        sx, sy = _scale(first, entry)
        placed = [(origin, (_label(record, options), x1 * sx, y1 * sy, x2 * sx, y2 * sy))
                  for record, (x1, y1, x2, y2), origin, _ in records]
        split = "eval" if records[0][3] in options.eval_subsets else "train"
        return grounding_outcomes(file_name.removesuffix(".png"), entry, placed, options, split=split)

    yield from guarded((pair for _, pair in limited(iter(slices.items()), options)), options.file, convert)


def slice_path(file_name: str) -> str:
    """``000001_01_01_103.png`` -> ``000001_01_01/103.png``."""
    folder, _, slice_name = file_name.rpartition("_")
    return f"{folder}/{slice_name}"


def numbers(value: str) -> list[float]:
    """``"226.2, 187.5, 260.3, 220.9"`` -> floats (NaN for empty parts, caught by curation)."""
    return [float(part) if part.strip() else float("nan") for part in str(value).split(",")]


def _window(record: dict, options: Options) -> tuple[float, float]:
    try:
        low, high = coordinates(numbers(record.get("DICOM_windows", ""))[:2], "DICOM_windows")
    except ValueError:
        return options.default_window
    return ((low + high) / 2, high - low) if high > low else options.default_window


def _scale(record: dict, entry: dict) -> tuple[float, float]:
    """Factors from the CSV's Image_size (rows, cols) to the decoded PNG, 1 when unknown."""
    try:
        rows, cols = coordinates(numbers(record.get("Image_size", ""))[:2], "Image_size")
    except ValueError:
        return 1.0, 1.0
    if not entry["width"] or not rows or not cols:
        return 1.0, 1.0
    return entry["width"] / cols, entry["height"] / rows


def _subset(record: dict) -> int:
    """``Train_Val_Test``: 1, 2 or 3 (blank reads as 1, training); RowError('bad_number') otherwise."""
    value = text(record.get("Train_Val_Test"))
    if not value:
        return 1
    subset = number(value, "Train_Val_Test")
    if subset not in (1, 2, 3):
        raise RowError("bad_number", f"Train_Val_Test is {value!r}, not 1, 2 or 3")
    return int(subset)


def _label(record: dict, options: Options) -> str:
    if not options.typed_labels:
        return "lesion"
    try:
        return LESION_TYPES.get(int(float(record.get("Coarse_lesion_type", -1))), "lesion")
    except (ValueError, TypeError, OverflowError):
        return "lesion"


iter_samples = rows_only(iter_outcomes)
