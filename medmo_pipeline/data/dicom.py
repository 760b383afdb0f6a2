"""DICOM files read within the pixel budget: the size is read from the header (rows x columns x
frames) and refused over ``ImageLimits.max_pixels`` before the pixel data is decoded; a deflated
file (the whole data set zlib-compressed) is inflated within ``ImageLimits.max_inflated_bytes``
first, since pydicom would inflate it whole before reading even the header; a data set of more
than ``ImageLimits.max_chunks`` elements, or encapsulated pixel data of more fragments, is refused
before pydicom reads them; a multi-frame file decodes its middle frame only. A compressed frame is
held to the size the data set declares before it is decoded: a JPEG's frame header, an RLE frame's
segments (``_check_rle_frame``).
"""

from __future__ import annotations

import io
import logging
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice, pairwise
from typing import BinaryIO

import numpy as np

from medmo_pipeline.data.image_limits import (
    ImageError,
    ImageLimits,
    check_jpeg_scans,
    check_pixels,
    decoder_error,
    jpeg_frame,
    without_address,
)

DEFLATED = "1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian
IMPLICIT_LITTLE, EXPLICIT_BIG = "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"
NATIVE = (IMPLICIT_LITTLE, "1.2.840.10008.1.2.1", EXPLICIT_BIG)  # pixel data stored as it is, uncompressed
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
_RLE_HEADER = 64  # an RLE frame's header: its segment count and 15 offsets, 32 bits each
_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)  # (Float, Double Float) Pixel Data
_META_START = 132  # 128-byte preamble + "DICM"
_PIXEL_DATA, _UNDEFINED_LENGTH = 0x7FE00010, 0xFFFFFFFF
_EXTENDED_OFFSETS = 0x7FE00001  # (7FE0,0001) Extended Offset Table, with its lengths at (7FE0,0002)
_LONG_VRS = (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")


def is_dicom(data: bytes) -> bool:
    """A DICOM Part 10 file (preamble and "DICM" magic)."""
    return data[128:132] == b"DICM"


def read_dicom(data: bytes, limits: ImageLimits, path: str = ""):
    """(dataset, pixels) of a DICOM file: the dataset (rescale, window, photometric tags) and the
    pixels of its middle frame, as stored (before any rescale). Raises ImageError naming ``path``."""
    import pydicom
    from pydicom.pixels import pixel_array

    name = f"DICOM {path}".rstrip()
    syntax = ""  # a data set without the Part 10 preamble names none
    try:
        if is_dicom(data):
            syntax, meta_end = _file_meta(data)
            dataset = io.BytesIO(_check_inflated_size(data, meta_end, limits, name) if syntax == DEFLATED else data)
            dataset.seek(0 if syntax == DEFLATED else meta_end)  # the data set, not a copy of it
            _check_element_count(dataset, syntax, limits, name)
        header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=not is_dicom(data))
        header.buffer = None  # pydicom keeps the stream it read, and so the file's bytes, for deferred reads
        rows, columns = int(header.get("Rows", 0) or 0), int(header.get("Columns", 0) or 0)
        frames = int(header.get("NumberOfFrames", 1) or 1)
    except ImageError:
        raise
    except Exception as error:  # noqa: BLE001 - pydicom raises many types on damaged headers
        raise decoder_error(error, without_address(f"{name}: {type(error).__name__}: {error}")) from None
    if not rows or not columns:
        raise ImageError("image_undecodable", f"{name}: no Rows/Columns (no image in this file)")
    check_pixels(columns, rows, limits, frames, what=name)
    # Pixel data beyond NumberOfFrames is not read as more frames: pydicom's default returned all of
    # them, and a 64 x 64 file of 976 frames came out 64 wide and 976 tall
    frame = {"index": frames // 2 if frames > 1 else None, "allow_excess_frames": False, "view_only": True}
    with _plugin_failures() as failures:
        try:
            pixels = _native_frame(data, frame) if syntax in NATIVE else None
            if pixels is not None:
                dataset = header
            else:  # compressed, or a native frame that could not be read so (reading it whole says why)
                dataset = pydicom.dcmread(io.BytesIO(data), force=not is_dicom(data))
                dataset.buffer = None  # as the header's
                _check_compressed_frame(dataset, frames, (columns, rows), limits, name)
                pixels = np.asarray(pixel_array(dataset, **frame))
                for tag in _PIXEL_TAGS:  # decoded: the caller needs the data set's other elements only
                    dataset.pop(tag, None)
        except ImageError:
            raise
        except Exception as error:  # noqa: BLE001 - pydicom and its pixel handlers raise many types
            error = _plugin_error(error, failures)
            # PIL's messages name the stream by its address: the same file, another detail each run
            raise decoder_error(error, without_address(f"{name}: {type(error).__name__}: {error}")) from None
    if pixels.shape[:2] != (rows, columns):
        raise ImageError("image_undecodable", f"{name}: its pixel data decodes to {pixels.shape}, not the "
                                              f"{rows} x {columns} frame its header declares")
    return dataset, pixels


@contextmanager
def _plugin_failures() -> Iterator[list[Exception]]:
    """The exceptions pydicom's decoding plugins raise in this thread while the block runs: pydicom
    logs each and raises a RuntimeError of their messages alone, so a MemoryError (whose message is
    empty) read "pydicom: " and was taken for a damaged file."""
    failures: list[Exception] = []
    thread = threading.get_ident()

    class Failures(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == thread and record.exc_info and isinstance(record.exc_info[1], Exception):
                failures.append(record.exc_info[1])

    handler, logger = Failures(logging.ERROR), logging.getLogger("pydicom")
    logger.addHandler(handler)
    try:
        yield failures
    finally:
        logger.removeHandler(handler)


def _plugin_error(error: Exception, failures: list[Exception]) -> Exception:
    """The exception to report for ``error``: a plugin's MemoryError, or the one plugin's exception
    where one failed (its type and message, not pydicom's summary of it), else ``error``."""
    memory = [failure for failure in failures if isinstance(failure, MemoryError)]
    return memory[0] if memory else failures[0] if len(failures) == 1 else error


def _native_frame(data: bytes, frame: dict) -> np.ndarray | None:
    """The frame of an uncompressed data set, read straight from the file's bytes: a data set read
    whole holds a copy of its pixel data beside the frame (a 250 MB colour file took 750 MB at
    once). None where that fails: pydicom, reading the data set whole, then says why more plainly
    (a pixel data shorter than its header declares: a truncated file)."""
    from pydicom.pixels import pixel_array

    try:
        return np.asarray(pixel_array(io.BytesIO(data), **frame))
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - the whole read decides, and names the fault
        return None


def _check_compressed_frame(dataset, frames: int, size: tuple[int, int], limits: ImageLimits, name: str) -> None:
    """The decode cost of the frame to be decoded, where its pixels are a compressed stream: a JPEG
    (the JPEG transfer syntaxes) is held to ``limits.max_jpeg_scans`` like a JPEG file, and a JPEG
    or JPEG 2000 frame must declare the data set's ``size`` (columns, rows). The decoder allocates what the
    frame's own header says: a 3 KB file of 64 x 64 pixels whose JPEG frame declared 12000 x 12000
    took 1.4 GiB before the size mismatch was found. An RLE frame's segments must each decode to
    ``size`` (``_check_rle_frame``)."""
    from pydicom.encaps import get_frame

    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_encapsulated or "PixelData" not in dataset:
        return
    index = frames // 2 if frames > 1 else 0
    # the frame pydicom will decode: it finds it through the Extended Offset Table where there is
    # one, so a table pointing past the frame checked here (a 64 x 64 JPEG, then one declaring
    # 12000 x 12000: 1.4 GiB) had the check pass and the decoder allocate the other
    extended = ((dataset.ExtendedOffsetTable, dataset.ExtendedOffsetTableLengths)
                if _EXTENDED_OFFSETS in dataset else None)
    frame = get_frame(dataset.PixelData, index, number_of_frames=frames, extended_offsets=extended)
    if syntax == RLE_LOSSLESS:
        samples, bits = int(dataset.get("SamplesPerPixel") or 1), int(dataset.get("BitsAllocated") or 8)
        _check_rle_frame(frame, size[0] * size[1], samples * -(-bits // 8), f"{name}: RLE frame {index}")
        return
    check_jpeg_scans(frame, limits, f"{name}:")
    declared = _frame_size(frame) or _frame_header_size(frame, limits.max_chunks)
    if declared is not None and declared != size:
        raise ImageError("image_undecodable", f"{name}: its compressed frame declares {declared[0]}x{declared[1]} "
                                              f"pixels, the data set {size[0]}x{size[1]}")


RLE_PADDING_SHARE = 16  # a segment may decode to 1/16 more than its plane (a byte a row, for 16 columns or more)


def _check_rle_frame(frame: bytes, plane: int, segments: int, name: str) -> None:
    """Refuse an RLE Lossless frame (DICOM PS3.5 Annex G) unless its header lists the ``segments``
    its pixels take (one per byte of each sample) and each decodes to ``plane`` bytes (rows x
    columns), before pydicom decodes it: its decoder (Python) expands a whole segment before
    comparing lengths, and keeps one too long with a warning (an 8 MiB segment of "repeat the next
    byte 128 times" for a 64 x 64 frame took 664 MiB). Each segment's runs are walked, up to the
    first byte past ``plane`` and the ``_most_packbits(plane)`` bytes its encoding may take."""
    if len(frame) < _RLE_HEADER:
        raise ImageError("image_undecodable", f"{name}: {len(frame)} bytes, shorter than its "
                                              f"{_RLE_HEADER}-byte header")
    count = struct.unpack_from("<I", frame)[0]
    if count != segments or count > 15:  # the header holds 15 offsets
        raise ImageError("image_undecodable", f"{name}: {count} segments, where its samples take {segments}")
    offsets = [*struct.unpack_from(f"<{count}I", frame, 4), len(frame)]
    # pydicom keeps the first rows x columns bytes of a segment that decodes to a little more (an
    # encoder padding each row to even bytes): so much is read as it reads it, no more
    allowed = plane + max(plane // RLE_PADDING_SHARE, 1024)
    for number, (start, stop) in enumerate(pairwise(offsets)):  # as pydicom slices them
        segment, most = memoryview(frame)[start:stop], _most_packbits(allowed)
        decoded = _packbits_length(segment[:most], allowed)
        if decoded > allowed:
            raise ImageError("image_undecodable", f"{name}: segment {number} decodes to more than the {plane} "
                                                  f"bytes of its rows x columns (and its padding)")
        if len(segment) > most:
            raise ImageError("image_too_costly", f"{name}: segment {number} of {len(segment)} bytes, more than the "
                                                 f"{most} any {allowed} bytes take: runs that add nothing, each a "
                                                 f"step of pydicom's decoder (Python)")
        if decoded < plane:
            raise ImageError("image_undecodable", f"{name}: segment {number} decodes to {decoded} bytes, not the "
                                                  f"{plane} of its rows x columns")


def _most_packbits(plane: int) -> int:
    """The longest PackBits encoding of ``plane`` bytes: each byte a literal run of its own (a
    control byte and the byte), padded to an even length. Only runs that add nothing (128) make a
    segment longer."""
    return 2 * plane + 1


def _packbits_length(segment: memoryview, enough: int) -> int:
    """How many bytes ``segment`` decodes to, as pydicom decodes it (a run cut short by the end
    gives what is there), its runs walked until they give more than ``enough``: nothing is expanded."""
    position, end, length, start = 0, len(segment), 0, 0
    while position < end and length <= enough:
        start = position
        control = segment[start]
        if control < 128:  # the next control + 1 bytes, literally
            length += control + 1
            position += control + 2
        elif control > 128:  # the next byte, 257 - control times
            length += 257 - control
            position += 2
        else:  # 128: nothing
            position += 1
    if position > end:  # the last run, cut short by the end (checked once here: the walk is Python)
        control = segment[start]
        length -= position - end if control < 128 else 257 - control
    return length


def _frame_header_size(frame: bytes, most_steps: int) -> tuple[int, int] | None:
    """(width, height) from the frame header of a JPEG stream PIL does not open (JPEG-LS, whose
    decoders allocate what it declares just the same), walking at most ``most_steps`` segments
    before it (``limits.max_chunks``, as ``check_jpeg_scans`` counts them); None for another
    stream, or a header that leaves a size undeclared (a height of 0 is set later)."""
    header = jpeg_frame(frame, most_steps)
    if header is None or len(header[1]) < 5:
        return None
    height, width = struct.unpack_from(">HH", header[1], 1)
    return (width, height) if width and height else None


def _frame_size(frame: bytes) -> tuple[int, int] | None:
    """(width, height) from a compressed frame's own header, where it is a JPEG or JPEG 2000 stream;
    None for the others (RLE, whose segments ``_check_rle_frame`` measures) and for a header
    declaring more than PIL opens at all (its decoder refuses that one as cheaply)."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(io.BytesIO(frame), formats=("JPEG", "JPEG2000")) as image:
                return image.size
        except Exception:  # noqa: BLE001 - not a stream PIL reads, or a bomb it refuses: the decoder decides
            return None


def _file_meta(data: bytes) -> tuple[str, int]:
    """(transfer syntax UID, offset where the data set starts) from the file meta group (0002,xxxx),
    always explicit VR little endian."""
    position, syntax = _META_START, ""
    while position + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, position)
        if group != 2:
            break
        vr = data[position + 4:position + 6]
        if vr in _LONG_VRS:
            length, header = struct.unpack_from("<I", data, position + 8)[0], 12
        else:
            length, header = struct.unpack_from("<H", data, position + 6)[0], 8
        if element == 0x0010:
            syntax = data[position + header:position + header + length].rstrip(b"\0 ").decode("ascii", "replace")
        position += header + length
    return syntax, position


def _check_inflated_size(data: bytes, start: int, limits: ImageLimits, name: str) -> bytes:
    """Refuse a deflated data set that inflates beyond the budget, inflating at most that much;
    the inflated data set."""
    cap = limits.max_inflated_bytes
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(data[start:], cap + 1)
    except zlib.error as error:
        raise ImageError("image_undecodable", f"{name}: deflated data set: {error}") from None
    if len(inflated) > cap:
        raise ImageError("image_too_large", f"{name}: deflated data set inflates beyond {cap} bytes")
    return inflated


def _check_element_count(dataset: BinaryIO, syntax: str, limits: ImageLimits, name: str) -> None:
    """Refuse a data set (read from ``dataset``'s position) of more than ``limits.max_chunks``
    top-level elements before pydicom reads it: it makes an object of each, twice (header, then
    pixels), in Python (a 12 MB file of a million empty private elements took 9 s and 680 MiB).
    Counted with pydicom's own element reader, values not read, stopping at the limit; files list
    a few hundred. Encapsulated pixel data is stopped at, and its items counted (``_check_item_count``)."""
    from pydicom.filereader import data_element_generator

    encapsulated = []

    def at_encapsulated_pixels(tag: int, vr: str | None, length: int) -> bool:
        encapsulated.append(tag == _PIXEL_DATA and length == _UNDEFINED_LENGTH)
        return encapsulated[-1]

    elements = data_element_generator(dataset, syntax == IMPLICIT_LITTLE, syntax != EXPLICIT_BIG, defer_size=0,
                                      stop_when=at_encapsulated_pixels)
    if sum(1 for _ in islice(elements, limits.max_chunks + 1)) > limits.max_chunks:
        raise ImageError("image_too_costly", f"{name}: more than {limits.max_chunks} elements: each is an object "
                                             "pydicom makes")
    if encapsulated and encapsulated[-1]:  # stopped at the start of the pixel data element
        with dataset.getbuffer() as view:
            _check_item_count(view[dataset.tell() + (8 if syntax == IMPLICIT_LITTLE else 12):], limits, name)


def _check_item_count(pixel_data: memoryview, limits: ImageLimits, name: str) -> None:
    """Refuse encapsulated pixel data of more than ``limits.max_chunks`` items (its offset table
    and fragments): pydicom steps through each in Python to find where the data ends, and again to
    find a frame (a million empty fragments, 8 MB, took 3 s). A walk of the item headers, stopping
    at the limit."""
    position, end, items = 0, len(pixel_data), 0
    while position + 8 <= end:
        group, element, length = struct.unpack_from("<HHI", pixel_data, position)
        if (group, element) != (0xFFFE, 0xE000):  # the sequence delimiter, or damage: pydicom decides
            return
        items += 1
        if items > limits.max_chunks:
            raise ImageError("image_too_costly", f"{name}: encapsulated pixel data of more than {limits.max_chunks} "
                                                 "items: each is a step of pydicom's reader")
        position += 8 + length
