"""Cell microscopy with instance masks (DeepCell/TissueNet exports, the Bacteria and Cell Tracking
Challenge sets): ``images/<stem>.<ext>`` beside ``masks/<stem><suffix>`` whose pixel value is the
instance id (0 = background), or, with ``pattern`` and ``mask_name``, a release's own tree (the Cell
Tracking Challenge's ``<dataset>/01/t000.tif`` beside ``<dataset>/01_GT/SEG/man_seg000.tif``). Each
instance becomes one box (its tight pixel extent, x2/y2 exclusive)."""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import field_validator

from medmo_pipeline.data.image_limits import (
    ImageError,
    ImageLimits,
    decoder_error,
    limits_in_force,
    open_image,
    read_image_file,
)
from medmo_pipeline.data.outcomes import RowError, RowFiltered, RowQuarantined
from medmo_pipeline.data.pixels import failed_entry
from medmo_pipeline.safe_paths import check_relative, safe_glob, safe_join

from .common import (
    AdapterOptions,
    guarded,
    limited,
    load_image,
    make_row,
    other_part,
    rows_only,
    turn,
)
from .grounding import QUESTION, grounding_rows
from .records import layout_path

MASK_NAME_FIELDS = ("folder", "stem", "number")  # what a ``mask_name`` template may name


class Options(AdapterOptions):
    image_dir: str = "images"
    # the images under image_dir ("*": its files); a release keeping its frames in folders names them
    # (the Cell Tracking Challenge: "*/[0-9][0-9]/t*.tif", <dataset>/<sequence>/tNNN.tif)
    pattern: str = "*"
    masks_dir: str = "masks"
    mask_suffix: str = ".png"
    # an image's mask, relative to the dataset root: "" is masks_dir/<stem><mask_suffix>; else a
    # template of {folder} (the image's folder under the root), {stem} and {number} (the stem's last
    # digits): the Cell Tracking Challenge's gold segmentation "{folder}_GT/SEG/man_seg{number}.tif"
    mask_name: str = ""
    label: str = "cell"
    modality: str = "microscopy"
    # An image without its mask: a broken copy (quarantine), or a frame the release does not annotate
    # (filter, reason "unannotated": the Cell Tracking Challenge's gold segmentation covers some frames)
    unannotated: Literal["quarantine", "filter"] = "quarantine"

    @field_validator("pattern")
    @classmethod
    def _relative_pattern(cls, value: str) -> str:
        check_relative(value)  # absolute or '..': refused at load, naming the option (was at curation)
        return value

    @field_validator("mask_name")
    @classmethod
    def _template(cls, value: str) -> str:
        """Only ``{folder}``, ``{stem}`` and ``{number}``, plain, in a relative path: another field was a
        KeyError at every image, an attribute (``{stem.__class__}``) read Python's objects into the
        name, a width (``{number:>999999999}``) a gigabyte a row."""
        if not value:
            return value
        try:
            parts = list(string.Formatter().parse(value))
        except ValueError as error:  # an unmatched brace
            raise ValueError(f"{value!r} is no template ({error})") from None
        for _, field, spec, conversion in parts:
            if field is not None and (field not in MASK_NAME_FIELDS or spec or conversion):
                raise ValueError(f"{value!r} names {{{field}{'!' + conversion if conversion else ''}"
                                 f"{':' + spec if spec else ''}}}; a mask name names only "
                                 f"{', '.join('{' + name + '}' for name in MASK_NAME_FIELDS)}, as they are")
        check_relative(value.format(folder="f", stem="s", number="0"))  # absolute or '..': out of the root
        return value


def iter_outcomes(root: Path, options: Options | dict) -> Iterator:
    """Rows, and the outcome (quarantined / filtered) of each record that gives none."""
    options = Options.model_validate(options)
    image_dir = layout_path(root, options.image_dir, folder=True)
    # each keyed by its path under image_dir less its suffix: the stem in a flat folder, and frames
    # of two sequences (01/t000.tif, 02/t000.tif) stay two records
    images = [path for path in safe_glob(image_dir, options.pattern, refuse_outside=False, root=root)
              if path.is_file()]
    others = {path for path in images if other_part(_key(path, image_dir), options)}
    if others:  # the other part of a held-out split: counted, not read
        yield RowFiltered("subset", f"{len(others)} images outside the {options.holdout_part} part", rows=len(others))
        images = [path for path in images if path not in others]

    def convert(where: str, image_path: Path) -> list:
        relative, key = _relative(image_path, image_dir), _key(image_path, image_dir)
        mask_name = _mask_name(relative, image_path, options)
        mask_path = safe_join(root, mask_name)
        if not mask_path.is_file():  # an image without its mask: nothing to ground, said so
            if options.unannotated == "filter":
                return [RowFiltered("unannotated", f"{where}: no mask {mask_name}")]
            return [RowQuarantined("missing_join_key", f"{where}: no mask {mask_name}", options.image_dir or ".",
                                   where)]
        entry = load_image(root, relative, options)
        try:
            mask = _mask_pixels(read_image_file(mask_path, mask_name), limits_in_force())
            boxes = [(options.label, *box) for box in boxes_of_ids(mask)]
        except ImageError as error:  # one row, quarantined with the mask's reason; the source goes on
            failed = failed_entry(ImageError(error.reason, f"{mask_name}: {error.detail}"),
                                  entry["path"])
            return [make_row(f"{key}:{options.label}", "grounding", options,
                             turn(QUESTION.format(label=options.label), "unreadable mask"), images=[failed])]
        if not boxes:  # an empty field of view: nothing to ground, counted
            return [RowFiltered("no_finding", f"{where}: no {options.label} instance in {mask_name}")]
        if entry["width"] and (mask.shape[1], mask.shape[0]) != (entry["width"], entry["height"]):
            raise RowError("image_size_mismatch", f"{mask_name} is {mask.shape[1]} x {mask.shape[0]}, its image "
                                                  f"{entry['width']} x {entry['height']}: its boxes would be misplaced")
        return list(grounding_rows(key, entry, boxes, options))

    named = ((_relative(path, image_dir), path) for _, path in limited(iter(images), options))
    records = ((f"{options.image_dir.rstrip('/')}/{relative}" if options.image_dir else relative, path)
               for relative, path in named)
    yield from guarded(records, options.image_dir or ".", convert)


def _relative(path: Path, image_dir: Path) -> str:
    """``path`` under the image folder, as the glob found it (a symlink not followed)."""
    return path.relative_to(image_dir).as_posix()


def _key(path: Path, image_dir: Path) -> str:
    """An image's record key: its path under the image folder less the suffix (its stem when flat)."""
    return _relative(path.with_suffix(""), image_dir)


def _mask_name(relative: str, image_path: Path, options: Options) -> str:
    """The mask of the image at ``relative`` (under image_dir), relative to the dataset root."""
    if not options.mask_name:
        return f"{options.masks_dir}/{image_path.stem}{options.mask_suffix}"
    folder = "/".join(part for part in (options.image_dir.strip("/"), relative.rpartition("/")[0]) if part)
    number = re.search(r"\d*$", image_path.stem).group()
    return options.mask_name.format(folder=folder, stem=image_path.stem, number=number)


def instance_boxes(mask_bytes: bytes, limits: ImageLimits | None = None) -> list[tuple[int, int, int, int]]:
    """Tight (x1, y1, x2, y2) of each non-zero instance id, ordered by id.

    The mask's declared size is checked against the pixel budget before decoding (ImageError), and
    the extents come from one pass over the pixels whatever the number of instances (the ids of
    each band of rows, ``np.unique`` over its labelled pixels), so the cost is linear in pixels, not
    instances x pixels, and its memory is one band's.
    """
    return boxes_of_ids(_mask_pixels(mask_bytes, limits or limits_in_force()))


# Instances one mask may hold: a field of view of the cell sets holds hundreds of cells, and ten
# thousand boxes already make a reply of about 200,000 characters. A colour-coded mask can give every
# pixel its own id (an 8.7 KB PNG made a row of a million boxes and 22 MB of reply).
MAX_MASK_INSTANCES = 10_000
_BAND_PIXELS = 1 << 20  # pixels of a mask walked at a time: about 40 bytes each while it is


def boxes_of_ids(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Tight (x1, y1, x2, y2) of each non-zero instance id of a 2-D id plane, ordered by id; the
    ids compared as stored (a float id beyond int64 stays itself). Walked a band of rows at a time,
    so its memory is bounded whatever the mask's size; more than ``MAX_MASK_INSTANCES`` ids raise
    ImageError."""
    rows = max(1, _BAND_PIXELS // max(1, mask.shape[1]))
    parts = [extents for top in range(0, mask.shape[0], rows)
             if (extents := _extents(mask[top:top + rows], top)) is not None]
    if not parts:
        return []
    ids, *corners = (np.concatenate(column) for column in zip(*parts))
    present, inverse = _instances(ids)
    low, high = np.full((2, len(present)), np.iinfo(np.int64).max), np.full((2, len(present)), -1)
    for axis in (0, 1):  # x, y: each band's extent of an id merged into the whole mask's
        np.minimum.at(low[axis], inverse, corners[axis])
        np.maximum.at(high[axis], inverse, corners[axis + 2])
    return [(int(a), int(b), int(c) + 1, int(d) + 1) for a, b, c, d in zip(low[0], low[1], high[0], high[1])]


def _extents(band: np.ndarray, top: int) -> tuple[np.ndarray, ...] | None:
    """(ids, x1, y1, x2, y2, inclusive) of the instances of one band of rows starting at row ``top``."""
    ys, xs = np.nonzero(band)
    if not len(ys):
        return None
    present, inverse = _instances(band[ys, xs])
    low, high = np.full((2, len(present)), np.iinfo(np.int64).max), np.full((2, len(present)), -1)
    for axis, where in ((0, xs), (1, ys + top)):
        np.minimum.at(low[axis], inverse, where)
        np.maximum.at(high[axis], inverse, where)
    return present, low[0], low[1], high[0], high[1]


def _instances(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ids (sorted) and each value's index among them; ImageError past the bound."""
    present, inverse = np.unique(ids, return_inverse=True)
    if len(present) > MAX_MASK_INSTANCES:
        raise ImageError("image_too_costly", f"mask: more than {MAX_MASK_INSTANCES} instances, each a box of "
                                             "one row")
    return present, inverse.ravel()


def ids_problem(ids: np.ndarray) -> str | None:
    """Why an array is no plane of instance ids (whole, finite, not negative), or None: a float id
    of 0.5 would be cut to 0, the background, and NaN made an instance of its own."""
    rows = max(1, _BAND_PIXELS // max(1, ids[:1].size))  # bands: ``floor`` of a whole float mask is a copy
    for top in range(0, len(ids), rows):
        band = ids[top:top + rows]
        if band.dtype.kind == "f" and not (np.isfinite(band).all() and (band == np.floor(band)).all()):
            return "values that are no instance ids (fractions, NaN or infinity)"
    if ids.dtype.kind in "fi" and any((ids[top:top + rows] < 0).any() for top in range(0, len(ids), rows)):
        return "negative instance ids"
    return None


def _mask_pixels(mask_bytes: bytes, limits: ImageLimits) -> np.ndarray:
    """The instance-id plane of a mask, its size checked from the header before decoding."""
    image = open_image(mask_bytes, limits, "mask")
    with image:
        if (lossy := _lossy_format(image, mask_bytes)) is not None:
            raise ImageError("image_undecodable", f"mask: {lossy}, whose compression changes the ids along every "
                                                  "edge (a 2-instance mask gave boxes of other ids and stretched "
                                                  "ones); a mask must be lossless: PNG or TIFF")
        try:
            # only the first page would be read: its others' instances lost. Whether there is a
            # second, not how many: PIL's count reads every directory of a TIFF in Python (9,000
            # pages, 0.9 MB: 0.6 s), and a page PIL cannot read raised out of here unnamed
            if getattr(image, "is_animated", False):
                raise ImageError("image_undecodable", "mask: 2 pages or more; a mask is one plane of ids")
            mask = _id_plane(image)
        except ImageError:
            raise
        except Exception as error:  # noqa: BLE001 - decoders raise many types on bad data
            raise decoder_error(error, f"mask: {type(error).__name__}: {error}") from None
    if mask.dtype.kind == "f" and (problem := ids_problem(mask)) is not None:
        raise ImageError("image_undecodable", f"mask: {problem}")
    return mask


def _lossy_format(image: Image.Image, data: bytes) -> str | None:
    """The name of a lossy format (JPEG, a WebP of lossy VP8 data) ``image`` is in; None otherwise."""
    if image.format in ("JPEG", "MPO"):
        return "a JPEG"
    if image.format == "WEBP" and bytes(data[12:16]) == b"VP8 ":  # "VP8L": lossless; "VP8X": either, rare
        return "a lossy WebP"
    return None


def _id_plane(image: Image.Image) -> np.ndarray:
    """A mask image's ids, read from the decoded image a band of rows at a time: ``np.asarray`` of
    the whole held the decoded image, its bytes and the array at once, and a colour-coded mask's
    ids took whole-mask temporaries besides (a 187 KB PNG of 8000 x 8000: 1,160 MiB; an int32 TIFF
    of that size, 736 MiB). An alpha channel is no id; grey stored as colour keeps its one channel;
    a colour-coded mask makes each colour an instance (4 bytes a pixel, not int64's 8 per channel)."""
    width, height = image.size
    rows = max(1, _BAND_PIXELS // max(1, width))
    plane, grey = None, True
    for top in range(0, height, rows):
        band = np.asarray(image.crop((0, top, width, min(height, top + rows))))
        if band.ndim == 3 and band.shape[-1] >= 3:
            grey = grey and all(np.array_equal(band[..., 0], band[..., channel]) for channel in (1, 2))
            colour = band[..., :3].astype(np.uint32)
            band = colour[..., 0] << 16 | colour[..., 1] << 8 | colour[..., 2]
        elif band.ndim == 3:
            band = band[..., 0]
        if plane is None:
            plane = np.empty((height, width), band.dtype)
        plane[top:top + len(band)] = band
    if plane is not None and grey and plane.dtype == np.uint32:  # grey as colour: v << 16 | v << 8 | v
        return np.bitwise_and(plane, 0xFF, out=plane).astype(np.uint8)
    return plane if plane is not None else np.zeros((height, width), np.uint8)


iter_samples = rows_only(iter_outcomes)
