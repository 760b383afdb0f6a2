"""Instance segmentation shipped as NumPy ``.npz`` arrays, as DeepCell publishes TissueNet
(``tissuenet_v1.1_train.npz``: ``X`` [n, H, W, 2] float images, ``y`` [n, H, W, 2] integer instance
ids, 0 = background; a pickled ``meta`` table beside them is not read). Each sample becomes a
grounding row: one channel of ``X`` windowed to 8 bits (its 0.5-99.5 percentiles) and one box per
instance id of one channel of ``y``. TissueNet's ``X`` is (nucleus, cell) but its ``y`` is (cell,
nucleus): nuclei are ``image_channel: 0`` with ``label_channel: 1``.

The archive is read one sample at a time from its ``X.npy`` / ``y.npy`` members (stored or
deflated alike), never whole: the training split is gigabytes. Pickled arrays are refused, and so
is an archive whose zip directory declares more than ``MAX_DIRECTORY_BYTES`` (``zipfile`` reads the
directory whole and makes an object per member: 300,000 empty members took 1.6 s and 167 MiB).
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from medmo_pipeline.data.image_limits import ImageError, check_pixels, limits_in_force
from medmo_pipeline.data.outcomes import RowError, RowFiltered
from medmo_pipeline.data.pixels import percentile_uint8, png_entry

from .common import AdapterOptions, guarded, limited, rows_only, validated
from .grounding import grounding_rows
from .masks import boxes_of_ids, ids_problem
from .records import SourceLayoutError, layout_path

MAX_DIRECTORY_BYTES = 1 << 20  # an .npz of a few arrays: a few hundred bytes
_END, _END64, _LOCATOR64 = b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07"


class Options(AdapterOptions):
    file: str = "tissuenet_v1.1_train.npz"
    image_key: str = "X"
    label_key: str = "y"
    image_channel: int = 0
    label_channel: int = 1
    label: str = "cell nucleus"
    modality: str = "microscopy"


@validated(Options)
def iter_outcomes(root: Path, options: Options) -> Iterator:
    path = layout_path(root, options.file)

    def convert(index: int, sample: tuple[np.ndarray, np.ndarray]) -> list[dict]:
        image, ids = sample
        if not np.isfinite(image).all():
            raise RowError("bad_number", f"sample {index}: {options.image_key} holds NaN or infinite values")
        if (problem := ids_problem(ids)) is not None:
            raise RowError("bad_number", f"sample {index}: {options.label_key} holds {problem}")
        entry = png_entry(percentile_uint8(image), path=f"{options.file}#{index}")
        boxes = [(options.label, *box) for box in boxes_of_ids(ids)]
        if not boxes:  # an empty field of view: nothing to ground, counted
            return [RowFiltered("no_finding", f"sample {index}: no {options.label} instance")]
        return list(grounding_rows(f"{Path(options.file).stem}:{index}", entry, boxes, options))

    yield from guarded(limited(_samples(path, options), options), options.file, convert)


def _directory_bytes(path: Path) -> int:
    """The size a zip archive's end record declares for its central directory (ZIP64 too); 0 when
    no end record is found (``zipfile`` then says the file is no archive)."""
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - 22 - 0xFFFF))  # the end record, and a comment of at most 64 KiB
        tail = handle.read()
        at = tail.rfind(_END)
        if at < 0 or at + 22 > len(tail):
            return 0
        declared = struct.unpack_from("<I", tail, at + 12)[0]
        if declared == 0xFFFFFFFF and at >= 20 and tail[at - 20:at - 16] == _LOCATOR64:
            handle.seek(struct.unpack_from("<Q", tail, at - 12)[0])
            record = handle.read(56)
            if record[:4] == _END64 and len(record) == 56:
                declared = struct.unpack_from("<Q", record, 40)[0]
        return declared


def _samples(path: Path, options: Options) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(image plane, instance-id plane) per sample, read in step from the two members."""
    if (declared := _directory_bytes(path)) > MAX_DIRECTORY_BYTES:
        raise SourceLayoutError(f"{options.file}: its zip directory declares {declared} bytes, over the "
                                f"{MAX_DIRECTORY_BYTES} an .npz of a few arrays needs")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise SourceLayoutError(f"{options.file} is not an .npz archive: {error}") from None
    with archive:
        images, labels = _member(archive, options.image_key, options), _member(archive, options.label_key, options)
        with images, labels:
            image_shape, image_type = _header(images, options.image_key, options)
            label_shape, label_type = _header(labels, options.label_key, options)
            if image_shape[:3] != label_shape[:3]:
                raise SourceLayoutError(f"{options.file}: {options.image_key} {image_shape} and {options.label_key} "
                                        f"{label_shape} do not pair up sample by sample")
            limits = limits_in_force()
            try:  # a sample's channels are read whole, as a multi-frame image's frames are counted
                for key, shape in ((options.image_key, image_shape), (options.label_key, label_shape)):
                    check_pixels(shape[2], shape[1], limits, frames=shape[3] if len(shape) == 4 else 1,
                                 what=f"{options.file} {key} samples")
            except ImageError as error:
                raise SourceLayoutError(error.detail) from None
            for key, shape, dtype in ((options.image_key, image_shape, image_type),
                                      (options.label_key, label_shape, label_type)):
                # and its bytes, as a deflated DICOM's: a float64 image and int64 ids of max_pixels
                # (a 1 MB archive of deflated zeros) are 512 MB each, and the pair took 1.5 GiB
                if (size := _sample_bytes(shape, dtype)) > limits.max_inflated_bytes:
                    raise SourceLayoutError(f"{options.file}: a {key} sample of {shape[1:]} {dtype} holds {size} "
                                            f"bytes, over the {limits.max_inflated_bytes} of max_pixels at 16 bits "
                                            f"a pixel (max_inflated_bytes)")
            for _ in range(image_shape[0]):
                image = _next_sample(images, image_shape, image_type, options.file)
                ids = _next_sample(labels, label_shape, label_type, options.file)
                yield _channel(image, options.image_channel, options), _channel(ids, options.label_channel, options)


def _member(archive: zipfile.ZipFile, key: str, options: Options):
    try:
        return archive.open(f"{key}.npy")
    except KeyError:
        raise SourceLayoutError(f"{options.file} has no array {key!r} (members: {archive.namelist()})") from None


def _header(stream, key: str, options: Options) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a .npy header; arrays of anything but numbers (objects are pickles;
    records and raw bytes may be of any size) and Fortran order are refused."""
    try:
        version = np.lib.format.read_magic(stream)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read:
            raise ValueError(f".npy format version {version}")
        shape, fortran_order, dtype = read[version](stream)
    except ValueError as error:
        raise SourceLayoutError(f"{options.file}: {key}.npy has no valid header ({error})") from None
    if dtype.kind not in "biuf" or fortran_order or len(shape) not in (3, 4):  # numbers: no pickles, no records
        raise SourceLayoutError(f"{options.file}: {key}.npy is {dtype} {shape}"
                                f"{' in Fortran order' if fortran_order else ''}, not [n, H, W(, channels)] numbers")
    if 0 in shape[1:]:  # a sample of no bytes: 10**12 of them read "whole" from a 450-byte file, forever
        raise SourceLayoutError(f"{options.file}: {key}.npy is {shape}: its samples hold no pixel")
    return shape, dtype


def _sample_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return int(np.prod(shape[1:], dtype=object)) * dtype.itemsize  # Python ints: no overflow


def _next_sample(stream, shape: tuple[int, ...], dtype: np.dtype, file: str) -> np.ndarray:
    size = _sample_bytes(shape, dtype)
    data = stream.read(size)
    if len(data) != size:
        raise SourceLayoutError(f"{file} ends inside a sample: the archive is truncated")
    return np.frombuffer(data, dtype=dtype).reshape(shape[1:])


def _channel(sample: np.ndarray, channel: int, options: Options) -> np.ndarray:
    if sample.ndim == 2:
        return sample
    if not 0 <= channel < sample.shape[2]:
        raise SourceLayoutError(f"{options.file}: channel {channel} asked, samples have {sample.shape[2]}")
    return sample[..., channel]


iter_samples = rows_only(iter_outcomes)
