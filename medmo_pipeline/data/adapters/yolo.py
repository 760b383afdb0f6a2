"""YOLO text labels as in GRAZPEDWRI-DX: ``images/<stem>.png`` + ``labels/<stem>.txt`` with one
``class cx cy w h`` line per box, centre and size normalised to 0-1 by the image's width/height.
Class names come from the options or from a ``names:`` YAML (the dataset's ``meta.yaml``).

Each line is a box of its own, checked with curation's rule: a line that is not ``class cx cy w h``,
names no class of the layout, or holds a box no row could keep (NaN, no width or height, far outside
the image) is quarantined by the label file and its ``line N``, and the image keeps its other boxes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medmo_pipeline.data.outcomes import RowError, RowFiltered
from medmo_pipeline.safe_paths import safe_glob, safe_join
from medmo_pipeline.safe_yaml import YamlRefused, read_yaml

from .common import (
    AdapterOptions,
    coordinates,
    guarded,
    limited,
    load_image,
    record_file_text,
    row_problem,
    rows_only,
    shown,
)
from .grounding import bad_box, grounding_outcomes, own_box
from .records import SourceLayoutError, layout_path

MAX_CLASS_NODES = 100_000  # a classes file names a few to a few hundred classes

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
    labels = safe_glob(labels_dir, "*.txt", refuse_outside=False)

    def convert(where: str, label_file: Path) -> list:
        label_file = safe_join(labels_dir, label_file.name)  # a label file linking out of the root: quarantined
        placed, problems, skipped = [], [], set()
        # lines numbered as an editor shows them (at LF); within one, the boxes Ultralytics reads
        # (``splitlines``: a form feed or U+2028 there also ends a box, and shifted every later number)
        text = record_file_text(label_file, where)
        lines = [(number, box) for number, line in enumerate(text.split("\n"), start=1) for box in line.splitlines()]
        for number, line in lines:
            try:  # a line is one box: a bad one costs that line, not the file's other boxes
                if (read := _line(line, classes)) is None:
                    continue
                name, (cx, cy, w, h) = read
                if name in options.skip_classes:
                    skipped.add(name)
                    continue
                box = own_box((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), f"{name} box")  # still 0-1
                placed.append(((where, f"line {number}"), (name, *box)))
            except ValueError as error:  # RowError, or int() of a digit Python cannot read
                bad_box(problems, error, where, f"line {number}", "lines")
        filtered = [RowFiltered("class", f"{label_file.stem}: {name}") for name in sorted(skipped)]
        try:  # the image's rows; its bad lines are named above whatever becomes of it
            entry = load_image(root, label_file.stem + options.image_suffix, options)
            width, height = entry["width"], entry["height"]
            pixels = [(origin, (name, x1 * width, y1 * height, x2 * width, y2 * height))
                      for origin, (name, x1, y1, x2, y2) in placed]
            rows = grounding_outcomes(label_file.stem, entry, pixels, options)
        except Exception as error:  # noqa: BLE001 - quarantined as the label file, as guarded would
            rows = [row_problem(error, options.labels_dir, where)]
        return [*problems, *rows, *filtered]

    def records() -> Iterator:
        # Label files are the records; an image without one is YOLO's background image (no objects),
        # counted as an empty label file is.
        stems = {path.stem for path in labels}
        background = [path for path in _images(root, options) if path.stem not in stems]
        for _, path in limited(iter([*labels, *background]), options):
            if path.stem in stems:
                yield f"{options.labels_dir}/{path.name}", path
            else:
                yield 0, RowFiltered("no_row", f"{options.image_dir}/{path.name}: no {options.labels_dir}/"
                                               f"{path.stem}.txt, a background image: nothing to train on")

    yield from guarded(records(), options.labels_dir, convert)


def _line(line: str, classes: list[str]) -> tuple[str, tuple[float, ...]] | None:
    """(class name, (cx, cy, w, h)) of one label line, None for a blank one; RowError says what is wrong."""
    parts = line.split(None, 5)  # one more piece at most: a line of millions is not split further
    if not parts:
        return None
    if len(parts) != 5 or not parts[0].isdigit():
        raise RowError("malformed_record", f"{line.strip()[:80]!r} is not 'class cx cy w h'")
    index, numbers = int(parts[0]), coordinates(parts[1:])
    if classes and not index < len(classes):  # a label of no class: its box would train a number
        raise RowError("malformed_record", f"class {parts[0][:20]} is not one of the {len(classes)} classes "
                                           "of the layout")
    return (classes[index] if classes else str(index)), numbers


def _images(root: Path, options: Options) -> list[Path]:
    """The layout's images; none when its image folder is missing (each record then says so)."""
    images_dir = safe_join(root, options.image_dir) if options.image_dir else Path(root)
    return safe_glob(images_dir, f"*{options.image_suffix}", refuse_outside=False) if images_dir.is_dir() else []


def _classes(root: Path, options: Options) -> list[str]:
    if not options.classes_file:
        return list(options.classes)
    try:
        names = read_yaml(layout_path(root, options.classes_file), max_nodes=MAX_CLASS_NODES,
                          unique_keys=False)["names"]  # a dataset's own file: read as Ultralytics reads it
    except (YamlRefused, KeyError, TypeError) as error:
        raise SourceLayoutError(f"{options.classes_file} is not a YOLO classes file with a 'names' list or "
                                f"mapping ({type(error).__name__}: {error})") from None
    if not isinstance(names, (list, dict)):
        raise SourceLayoutError(f"{options.classes_file}: 'names' is a {type(names).__name__}, not a list or mapping")
    odd = [name for name in (names.values() if isinstance(names, dict) else names) if not isinstance(name, str)]
    if odd:  # YAML reads no / off / ~ as a boolean or None: str() would make the labels 'False', 'None'
        raise SourceLayoutError(f"{options.classes_file}: class names must be text, not {shown(odd[0], 40)} "
                                "(quote names YAML reads as booleans, numbers or null)")
    if isinstance(names, dict):  # {index: name}, indices possibly sparse: a class keeps its index
        try:
            table = {int(index): name for index, name in names.items()}
        except (TypeError, ValueError) as error:
            raise SourceLayoutError(f"{options.classes_file}: a class index is not a number ({error})") from None
        if table and not (min(table) >= 0 and max(table) < MAX_CLASS_NODES):
            raise SourceLayoutError(f"{options.classes_file}: class indices run {min(table)}..{max(table)}, "
                                    f"outside 0..{MAX_CLASS_NODES - 1}")
        return [table.get(index, str(index)) for index in range(max(table, default=-1) + 1)]
    return list(names)


iter_samples = rows_only(iter_outcomes)
