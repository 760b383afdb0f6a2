"""Local image folders: JPEG/PNG, DICOM (rescaled and windowed to 8-bit) and 16-bit PNG (with an
intensity offset), one row per image, labelled by the name of the folder that holds it (the
ImageFolder convention) or captioned by a sidecar ``<stem>.txt``. Used for the sets MedTrinity
draws from (TCGA, KIPA22, LLD-MMRI, ...) when mirrored locally."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field

from medmo_pipeline.data.characters import stripped
from medmo_pipeline.data.outcomes import RowError
from medmo_pipeline.safe_paths import safe_glob, safe_join

from .common import (
    AdapterOptions,
    guarded,
    limited,
    load_image,
    make_row,
    record_file_text,
    rows_only,
    text,
    turn,
)
from .records import SourceLayoutError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".bmp", ".tif", ".tiff")


class Options(AdapterOptions):
    pattern: str = "**/*"
    text_from: Literal["folder", "sidecar"] = "folder"
    question: str = "What does this image show?"
    reply_template: str = "{label}"
    png16_offset: int | None = None  # set for 16-bit PNG (e.g. 32768 for HU + 32768)
    default_window: tuple[float, float] | None = None
    # the label each class folder stands for, where its name is no word for it (a class index "0",
    # an abbreviation): {folder name: label}; a folder not listed is read as its own name
    class_names: dict[str, str] = Field(default_factory=dict)


def iter_outcomes(root: Path, options: Options | dict) -> Iterator:
    """Rows, and the outcome (quarantined / filtered) of each record that gives none."""
    options = Options.model_validate(options)
    base = safe_join(root, options.image_dir) if options.image_dir else Path(root)
    if not base.is_dir():
        raise SourceLayoutError(f"{options.image_dir or '.'} is missing under {root}")
    files = [p for p in safe_glob(base, options.pattern, refuse_outside=False, root=root)
             if p.suffix.lower() in IMAGE_SUFFIXES and (p.is_file() or p.is_symlink())]

    def inside_root(relative: str) -> Path:
        """``relative`` (under ``image_dir``) joined under the dataset root: a folder linked elsewhere
        inside the root is read, a symlink out of the root is quarantined here."""
        return safe_join(root, f"{options.image_dir.rstrip('/')}/{relative}" if options.image_dir else relative)

    def convert(relative: str, path: Path) -> list[dict]:
        inside_root(relative)
        entry = load_image(root, relative, options, png16_offset=options.png16_offset,
                           window=options.default_window)
        if options.text_from == "sidecar":
            sidecar_name = str(Path(relative).with_suffix(".txt"))
            sidecar = inside_root(sidecar_name)  # a caption linked out of the root is quarantined too
            if sidecar.exists() and not sidecar.is_file():  # a folder, a FIFO, a device: never read
                raise RowError("unreadable_file", f"{sidecar_name} is not a regular file")
            label = text(record_file_text(sidecar, sidecar_name)) if sidecar.is_file() else ""
        else:
            label = folder_label(relative, options.class_names)
        task = "caption" if options.text_from == "sidecar" else "vqa"
        return [make_row(relative, task, options, turn(options.question, options.reply_template.format(label=label)),
                         images=[entry])]

    records = ((path.relative_to(base).as_posix(), path) for _, path in limited(iter(files), options))
    yield from guarded(records, options.image_dir or ".", convert)


# folder names that are a split of a release, never a class ("images/train/NORMAL/x.png": the
# class would have read "train", and test images would train)
SPLIT_FOLDERS = {"train", "training", "test", "testing", "val", "valid", "validation", "dev", "eval"}
# "0_normal", "1-benign": a number written before a class name to sort the folders, not part of it
ORDER_PREFIX = re.compile(r"^\d+[_-](?=[^\d_-])")


def folder_label(relative: str, class_names: dict[str, str] | None = None) -> str:
    """The class of an image at ``relative`` (under ``image_dir``): the first folder of its path, as
    ImageFolder reads it (an image in folders below its class keeps that class), named by
    ``class_names`` or written as words (``_`` a space, a sorting number "0_" dropped). An image
    outside any folder, in a hidden one (``.ipynb_checkpoints``), in a split folder ("train") or in
    a folder named by a number alone ("0", a class index) has none: RowError('missing_field')."""
    folder, _, rest = relative.partition("/")
    if not rest or not stripped(folder) or folder.startswith("."):
        raise RowError("missing_field", f"{relative} is not in a class folder under the image folder")
    if class_names and folder in class_names:
        return stripped(class_names[folder])
    if stripped(folder).casefold() in SPLIT_FOLDERS:
        raise RowError("missing_field", f"{relative} is in the split folder {folder!r}, not a class folder: "
                                        f"point image_dir at the split's class folders")
    if stripped(folder).isdigit():
        raise RowError("missing_field", f"{relative} is in folder {folder!r}, a class index with no name: "
                                        f"name it in class_names")
    return stripped(ORDER_PREFIX.sub("", stripped(folder)).replace("_", " "))


iter_samples = rows_only(iter_outcomes)
