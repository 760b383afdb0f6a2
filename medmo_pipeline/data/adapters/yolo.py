"""YOLO text labels as in GRAZPEDWRI-DX: ``images/<stem>.png`` + ``labels/<stem>.txt`` with one
``class cx cy w h`` line per box, centre and size normalised to 0-1 by the image's width/height.
Class names come from the options or from a ``names:`` YAML (the dataset's ``meta.yaml``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import yaml

from medmo_pipeline.data.outcomes import RowError, RowFiltered
from medmo_pipeline.safe_paths import safe_join

from .common import AdapterOptions, coordinates, guarded, limited, load_image, rows_only
from .grounding import grounding_rows
from .records import layout_path

GRAZPEDWRI_CLASSES = ["boneanomaly", "bonelesion", "foreignbody", "fracture", "metal", "periostealreaction",
                      "pronatorsign", "softtissue", "text"]


class Options(AdapterOptions):
    image_dir: str = "images"
    labels_dir: str = "labels"
    image_suffix: str = ".png"
    classes: list[str] = []
    classes_file: str = ""  # YAML with a 'names' list or {index: name} mapping
    modality: str = "xray"
    skip_classes: list[str] = []  # e.g. ["text"]: burnt-in markers, not findings


def iter_outcomes(root: Path, options: Options | dict) -> Iterator:
    """Rows, and the outcome (quarantined / filtered) of each record that gives none."""
    options = Options.model_validate(options)
    classes = _classes(root, options)
    labels_dir = layout_path(root, options.labels_dir, folder=True)
    labels = sorted(labels_dir.glob("*.txt"))

    def convert(_, label_file: Path) -> list:
        entry = load_image(root, label_file.stem + options.image_suffix, options)
        width, height = entry["width"], entry["height"]
        labelled, skipped = [], set()
        for number, line in enumerate(label_file.read_bytes().decode("utf-8").splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 5 or not parts[0].isdigit():
                raise RowError("malformed_record", f"line {number}: {line.strip()[:80]!r} is not 'class cx cy w h'")
            index, (cx, cy, w, h) = int(parts[0]), coordinates(parts[1:], f"line {number}")
            name = classes[index] if 0 <= index < len(classes) else str(index)
            if name in options.skip_classes:
                skipped.add(name)
            else:
                labelled.append((name, (cx - w / 2) * width, (cy - h / 2) * height,
                                 (cx + w / 2) * width, (cy + h / 2) * height))
        filtered = [RowFiltered("class", f"{label_file.stem}: {name}") for name in sorted(skipped)]
        return [*grounding_rows(label_file.stem, entry, labelled, options), *filtered]

    records = ((f"{options.labels_dir}/{path.name}", path) for _, path in limited(iter(labels), options))
    yield from guarded(records, options.labels_dir, convert)


def _classes(root: Path, options: Options) -> list[str]:
    if not options.classes_file:
        return list(options.classes)
    names = yaml.safe_load(safe_join(root, options.classes_file).read_text(encoding="utf-8"))["names"]
    if isinstance(names, dict):  # {index: name}, indices possibly sparse: a class keeps its index
        table = {int(index): str(name) for index, name in names.items()}
        return [table.get(index, str(index)) for index in range(max(table, default=-1) + 1)]
    return list(names)


iter_samples = rows_only(iter_outcomes)
