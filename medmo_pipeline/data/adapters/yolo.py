"""YOLO text labels as in GRAZPEDWRI-DX: ``images/<stem>.png`` + ``labels/<stem>.txt`` with one
``class cx cy w h`` line per box, centre and size normalised to 0-1 by the image's width/height.
Class names come from the options or from a ``names:`` YAML (the dataset's ``meta.yaml``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import yaml

from medmo_pipeline.data.paths import safe_join

from .common import AdapterOptions, limited, load_image
from .grounding import grounding_rows

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


def iter_samples(root: Path, options: Options | dict) -> Iterator[dict]:
    options = Options.model_validate(options)
    classes = _classes(root, options)
    labels = sorted(safe_join(root, options.labels_dir).glob("*.txt"))
    for _, label_file in limited(iter(labels), options):
        entry = load_image(root, label_file.stem + options.image_suffix, options)
        width, height = entry["width"], entry["height"]
        labelled = []
        for line in label_file.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) != 5:
                continue
            index, (cx, cy, w, h) = int(parts[0]), (float(v) for v in parts[1:])
            name = classes[index] if 0 <= index < len(classes) else str(index)
            if name not in options.skip_classes:
                labelled.append((name, (cx - w / 2) * width, (cy - h / 2) * height,
                                 (cx + w / 2) * width, (cy + h / 2) * height))
        yield from grounding_rows(label_file.stem, entry, labelled, options)


def _classes(root: Path, options: Options) -> list[str]:
    if not options.classes_file:
        return list(options.classes)
    names = yaml.safe_load(safe_join(root, options.classes_file).read_text(encoding="utf-8"))["names"]
    return [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
