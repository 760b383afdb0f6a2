"""Image bytes: inspection with a decompression-bomb guard, and conversion of medical formats to
8-bit PNG (DICOM with rescale + window, 16-bit PNG with an intensity offset such as DeepLesion's).

Stored images keep their original bytes where the format is already 8-bit (JPEG, PNG); DICOM and
16-bit PNG are windowed to 8-bit grayscale PNG because that is what the vision processor reads.
Every entry follows the sample contract: {bytes, path, width, height, sha256}.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import warnings
import zlib
from collections.abc import MutableSequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

PNG_COMPRESS_LEVEL = 1  # fast; the shards are zstd-compressed anyway
# Extensions whose content we can check against the decoded format; others (e.g. .dcm converted to
# PNG by an adapter) are not checked.
EXTENSION_FORMATS = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".gif": "GIF",
    ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
}  # fmt: skip
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}  # by colour type
_PNG_HEADER_END = 33  # signature + IHDR chunk
_U32 = struct.Struct(">I")
_CHUNK_HEAD = struct.Struct(">I4s")
_IHDR = struct.Struct(">IIBBBBB")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_IEND_CHUNK = b"\x00\x00\x00\x00IEND" + struct.pack(">I", zlib.crc32(b"IEND"))  # length 0, type, CRC
# The extensions of each format, to settle the usual "the name says what the content is" at once.
_SUFFIXES = {fmt: tuple(suffix for suffix, of in EXTENSION_FORMATS.items() if of == fmt)
             for fmt in EXTENSION_FORMATS.values()}


class ImageError(ValueError):
    """An image that cannot be used; ``reason`` is the quarantine reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageLimits:
    """What counts as a sane image. ``max_pixels`` is checked from the header, before decoding."""

    max_pixels: int = 64_000_000  # e.g. 8000 x 8000; whole-slide images must be tiled beforehand
    min_side: int = 8
    max_aspect_ratio: float = 50.0
    # PNG is verified from its structure (every chunk's CRC, see ``verify_png``) unless this asks
    # for a full pixel decode, as every other format gets
    decode_png: bool = False


def inspect_image(data: bytes, limits: ImageLimits = ImageLimits()) -> tuple[int, int, str]:
    """Check ``data`` and return (width, height, format), or raise ImageError.

    The header's size is checked against ``limits.max_pixels`` before any pixel is decoded, so a
    small file claiming 50000 x 50000 costs nothing (PIL's own bomb check is turned into an error too).
    PNG gets ``verify_png`` (structure and CRCs, no inflating) unless ``limits.decode_png``; every
    other format is decoded fully.
    """
    if not data:
        raise ImageError("image_empty", "zero bytes")
    if data.startswith(PNG_SIGNATURE) and not limits.decode_png:
        (width, height), fmt = verify_png(data, limits), "PNG"
    else:
        width, height, fmt = _decode(data, limits)
    if min(width, height) < limits.min_side:
        raise ImageError("image_too_small", f"{width}x{height}, min side {limits.min_side}")
    if max(width, height) > limits.max_aspect_ratio * min(width, height):
        raise ImageError("image_aspect_ratio", f"{width}x{height} exceeds {limits.max_aspect_ratio}:1")
    return width, height, fmt


def verify_png(data: bytes, limits: ImageLimits = ImageLimits()) -> tuple[int, int]:
    """(width, height) of a PNG after checking its structure without inflating the pixels.

    What ``Image.verify`` checks, at C speed: a valid IHDR (size, bit depth for the colour type,
    methods), the pixel count against the limits, then every chunk in place with a matching CRC-32,
    at least one IDAT, and an IEND (bytes after it are ignored, as PIL does). A CRC covers every
    byte of a chunk, so truncation and bit rot are caught; not caught is a zlib stream that a broken
    encoder wrote with valid CRCs (``ImageLimits.decode_png`` decodes for that). Raises ImageError:
    ``image_undecodable`` when the header cannot be read (as PIL's open would) or a CRC fails,
    ``image_truncated`` when the data ends early.
    """
    view, end = memoryview(data), len(data)
    if end < _PNG_HEADER_END or data[12:16] != b"IHDR" or _U32.unpack_from(data, 8)[0] != 13:
        raise ImageError("image_undecodable", "PNG signature without a complete IHDR chunk")
    if zlib.crc32(view[12:29]) != _U32.unpack_from(data, 29)[0]:  # before trusting the size it states
        raise ImageError("image_undecodable", "IHDR chunk: CRC mismatch (corrupt header)")
    width, height, depth, colour, compression, filtering, interlace = _IHDR.unpack_from(data, 16)
    if (not 0 < width < 2**31 or not 0 < height < 2**31 or depth not in _PNG_DEPTHS.get(colour, ())
            or compression or filtering or interlace > 1):
        raise ImageError("image_undecodable", f"invalid IHDR: {width}x{height}, depth {depth}, colour type "
                                              f"{colour}, methods {compression}/{filtering}/{interlace}")
    _check_pixels(width, height, limits)
    position, has_pixels = _PNG_HEADER_END, False
    crc32, chunk_head, u32 = zlib.crc32, _CHUNK_HEAD.unpack_from, _U32.unpack_from  # this loop runs per image
    while True:
        if position + 12 > end:
            raise ImageError("image_truncated", f"data ends at byte {end} without an IEND chunk")
        length, kind = chunk_head(data, position)
        stop = position + 12 + length
        if stop > end:
            raise ImageError("image_truncated", f"{kind!r} chunk at byte {position} needs {stop} bytes, has {end}")
        if kind == b"IEND" and data[position:stop] == _IEND_CHUNK:  # the usual empty IEND: its CRC is known
            break
        if crc32(view[position + 4:stop - 4]) != u32(data, stop - 4)[0]:
            raise ImageError("image_undecodable", f"{kind!r} chunk at byte {position}: CRC mismatch (corrupt data)")
        if kind == b"IEND":
            break
        has_pixels = has_pixels or kind == b"IDAT"
        position = stop
    if not has_pixels:
        raise ImageError("image_undecodable", "PNG without an IDAT chunk")
    return width, height


# ---- many PNGs at once --------------------------------------------------------------------------

_SIGNATURE_BYTES = np.frombuffer(PNG_SIGNATURE, dtype=np.uint8)
_IHDR_TYPE, _IDAT_TYPE, _IEND_TYPE = (int.from_bytes(kind, "big") for kind in (b"IHDR", b"IDAT", b"IEND"))
_IEND_CRC = zlib.crc32(b"IEND")
_DEPTH_OK = np.zeros((256, 256), dtype=bool)  # [colour type, bit depth]
for _colour, _depths in _PNG_DEPTHS.items():
    _DEPTH_OK[_colour, list(_depths)] = True
MAX_CHUNK_STEPS = 64  # chunks walked for the whole batch; a PNG with more is left to ``inspect_image``


def check_pngs(images: pa.BinaryArray, limits: ImageLimits = ImageLimits()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ok, width, height) for a batch of image bytes: ``ok[i]`` when image i is a PNG that
    ``inspect_image`` accepts, with the same size. False means "not settled here" (another format,
    a damaged or out-of-limits PNG, or one with very many chunks): ``inspect_image`` decides that
    image and says why.

    The same checks as ``verify_png`` and ``inspect_image``, for the whole batch at once: header
    fields, limits and the chunk layout with numpy over the batch's one data buffer, then each
    chunk's CRC-32 with one ``zlib.crc32`` call (the usual empty IEND has a known CRC). Per image,
    that leaves two C calls instead of a Python walk.
    """
    count = len(images)
    ok, width, height = np.zeros(count, dtype=bool), np.zeros(count, dtype=np.int64), np.zeros(count, dtype=np.int64)
    _, offsets, buffer = images.buffers()
    if limits.decode_png or not count or images.null_count or buffer is None:
        return ok, width, height
    data = np.frombuffer(buffer, dtype=np.uint8)
    width_of_offsets = np.int64 if pa.types.is_large_binary(images.type) else np.int32
    offsets = np.frombuffer(offsets, dtype=width_of_offsets)[images.offset:images.offset + count + 1].astype(np.int64)
    start, end = offsets[:-1], offsets[1:]

    # The signature and IHDR: fields, limits, and the IHDR's CRC (checked with the others below)
    ok = end - start >= _PNG_HEADER_END
    first = np.flatnonzero(ok)
    head = data[start[first, None] + np.arange(_PNG_HEADER_END)]
    w, h = _be32(head, 16), _be32(head, 20)
    pixels = w * h
    fine = ((head[:, :8] == _SIGNATURE_BYTES).all(axis=1) & (_be32(head, 8) == 13) & (_be32(head, 12) == _IHDR_TYPE)
            & (w > 0) & (w < 2**31) & (h > 0) & (h < 2**31) & _DEPTH_OK[head[:, 25], head[:, 24]]
            & (head[:, 26] == 0) & (head[:, 27] == 0) & (head[:, 28] <= 1)
            & (pixels <= limits.max_pixels) & (np.minimum(w, h) >= limits.min_side)
            & (np.maximum(w, h) <= limits.max_aspect_ratio * np.minimum(w, h)))
    if Image.MAX_IMAGE_PIXELS:
        fine &= pixels <= Image.MAX_IMAGE_PIXELS
    ok[first] = fine
    width[first], height[first] = w, h
    crcs = [(first[fine], start[first[fine]] + 12, start[first[fine]] + 29, _be32(head[fine], 29))]

    # The chunks after IHDR, one step per chunk for every PNG still walking, up to its IEND
    position, walking, has_pixels = start + _PNG_HEADER_END, ok.copy(), np.zeros(count, dtype=bool)
    for _ in range(MAX_CHUNK_STEPS):
        at = np.flatnonzero(walking)
        if not len(at):
            break
        here, stop_at = position[at], end[at]
        room = here + 12 <= stop_at
        ok[at[~room]] = False  # ends without an IEND
        at, here, stop_at = at[room], here[room], stop_at[room]
        chunk = data[here[:, None] + np.arange(12)]  # length, type, and an empty chunk's CRC
        length, kind = _be32(chunk, 0), _be32(chunk, 4)
        stop = here + 12 + length
        room = stop <= stop_at
        ok[at[~room]] = False  # a chunk cut short
        at, here, stop, length, kind, chunk = at[room], here[room], stop[room], length[room], kind[room], chunk[room]
        known = (kind == _IEND_TYPE) & (length == 0) & (_be32(chunk, 8) == _IEND_CRC)
        tail = stop[~known, None] - 4 + np.arange(4)
        crcs.append((at[~known], here[~known] + 4, stop[~known] - 4, _be32(data[tail], 0)))
        has_pixels[at] |= kind == _IDAT_TYPE
        position[at] = stop
        walking &= ok
        walking[at[kind == _IEND_TYPE]] = False
    ok &= has_pixels & ~walking  # an IDAT, and an IEND reached within the steps

    # Every CRC of every chunk walked, in C
    which, low, high, expected = (np.concatenate(parts) for parts in zip(*crcs))
    view, crc32 = memoryview(buffer), zlib.crc32
    bad = [crc32(view[a:b]) != c for a, b, c in zip(low.tolist(), high.tolist(), expected.tolist())]
    ok[which[np.asarray(bad, dtype=bool)]] = False
    return ok, width, height


def _be32(matrix: np.ndarray, column: int) -> np.ndarray:
    """The big-endian 32-bit numbers at ``column`` ... ``column + 3`` of each row of a byte matrix."""
    return np.ascontiguousarray(matrix[:, column:column + 4]).view(">u4")[:, 0].astype(np.int64)


def _decode(data: bytes, limits: ImageLimits) -> tuple[int, int, str]:
    """Decode ``data`` fully with PIL (header size checked first): (width, height, format)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageError("image_too_large", str(error)) from None
        except Exception as error:  # noqa: BLE001 - PIL raises many types on garbage headers
            raise ImageError("image_undecodable", _without_address(f"{type(error).__name__}: {error}")) from None
        width, height = image.size
        _check_pixels(width, height, limits)
        try:
            image.load()
        except Exception as error:  # noqa: BLE001 - decoders raise many types on bad data
            reason = "image_truncated" if _looks_truncated(error) else "image_undecodable"
            raise ImageError(reason, _without_address(f"{type(error).__name__}: {error}")) from None
    return width, height, image.format or ""


def _without_address(message: str) -> str:
    """``message`` without the memory addresses PIL puts in it ("<_io.BytesIO object at 0x7f...>"),
    so that the quarantine table is the same on every run."""
    return _ADDRESS.sub("", message)


def _check_pixels(width: int, height: int, limits: ImageLimits) -> None:
    """The decompression-bomb guard: ours, and PIL's (which ``_decode`` would hit while opening)."""
    if width * height > limits.max_pixels:
        raise ImageError("image_too_large", f"header says {width}x{height} > {limits.max_pixels} pixels")
    if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
        raise ImageError("image_too_large", f"header says {width}x{height} > PIL's {Image.MAX_IMAGE_PIXELS} pixels")


def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header only; (0, 0) when the header is unreadable (curation decides)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(io.BytesIO(data)).size
    except Exception:  # noqa: BLE001 - any unreadable header means "unknown size" here
        return 0, 0


def extension_format(path: str) -> str | None:
    """The format a file name's extension promises, or None when it promises nothing we check."""
    dot = path.rfind(".") if path else -1  # string ops, not Path(): this runs once per image
    if dot <= 0 or path[dot - 1] == "/":
        return None
    return EXTENSION_FORMATS.get(path[dot:].lower())  # a suffix holding "/" matches no key


def extension_contradicts(path: str, fmt: str) -> bool:
    """Whether ``path``'s extension promises a format other than ``fmt``, the content's (an
    extension that promises nothing we check, or an unknown ``fmt``, contradicts nothing)."""
    if not fmt or path.endswith(_SUFFIXES.get(fmt, ())):  # the usual case: no need to parse the name
        return False
    promised = extension_format(path)
    return promised is not None and promised != fmt


def image_entry(data: bytes, path: str = "") -> dict:
    """An image entry for already-8-bit bytes (JPEG, PNG...), kept byte for byte.

    The size comes from the header; full decoding is curation's job.
    """
    width, height = header_size(data)
    return {"bytes": data, "path": path, "width": width, "height": height,
            "sha256": hashlib.sha256(data).hexdigest()}  # fmt: skip


def png_entry(pixels: np.ndarray, path: str = "") -> dict:
    """uint8 pixels (H x W grayscale or H x W x 3) -> an image entry with PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    data = buffer.getvalue()
    return {"bytes": data, "path": path, "width": int(pixels.shape[1]), "height": int(pixels.shape[0]),
            "sha256": hashlib.sha256(data).hexdigest()}  # fmt: skip


def window_to_uint8(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """Linear VOI window (DICOM PS3.3 C.11.2.1.2) of real values (e.g. HU) -> uint8 0..255."""
    width = max(float(width), 1.0)
    scaled = ((values.astype(np.float64) - (center - 0.5)) / (width - 1.0) + 0.5) if width > 1 else (
        (values > center).astype(np.float64))
    return np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)


def full_range_window(values: np.ndarray) -> tuple[float, float]:
    """(center, width) covering the data's whole range: the fallback when no window is known."""
    low, high = float(np.min(values)), float(np.max(values))
    return (low + high) / 2.0, max(high - low, 1.0)


def png16_entry(data: bytes, *, offset: int = 32768, window: tuple[float, float] | None = None,
                path: str = "") -> dict:
    """A 16-bit grayscale PNG storing ``value + offset`` (DeepLesion: HU + 32768) -> 8-bit PNG entry.

    ``window`` is (center, width) in the offset-corrected unit (HU for DeepLesion); None uses the
    image's full range.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            raw = np.asarray(image)
    except Exception as error:  # noqa: BLE001 - PIL raises many types on bad data
        raise ImageError("image_undecodable", f"16-bit PNG {path}: {type(error).__name__}: {error}") from None
    values = raw.astype(np.int32) - offset
    center, width = window if window is not None else full_range_window(values)
    return png_entry(window_to_uint8(values, center, width), path)


def dicom_entry(source: Path | bytes, *, default_window: tuple[float, float] | None = None,
                path: str = "") -> dict:
    """A DICOM file -> 8-bit PNG entry: modality rescale (slope/intercept), then a window.

    The window is the file's first WindowCenter/WindowWidth, else ``default_window``, else the full
    range. MONOCHROME1 is inverted so that bright means dense; a multi-frame file gives its middle
    frame; RGB files are kept as they are.
    """
    import pydicom
    from pydicom.pixels import apply_rescale

    try:
        dataset = pydicom.dcmread(io.BytesIO(source) if isinstance(source, bytes) else source)
        pixels = dataset.pixel_array
    except Exception as error:  # noqa: BLE001 - pydicom and its pixel handlers raise many types
        raise ImageError("image_undecodable", f"DICOM {path}: {type(error).__name__}: {error}") from None
    if dataset.get("SamplesPerPixel", 1) == 3:
        return png_entry(pixels.astype(np.uint8), path)
    if pixels.ndim == 3:  # frames x rows x columns
        pixels = pixels[pixels.shape[0] // 2]
    values = apply_rescale(pixels, dataset).astype(np.float64)
    center, width = _dicom_window(dataset) or default_window or full_range_window(values)
    out = window_to_uint8(values, center, width)
    if dataset.get("PhotometricInterpretation", "") == "MONOCHROME1":
        out = 255 - out
    return png_entry(out, path)


def _dicom_window(dataset) -> tuple[float, float] | None:
    """The file's first (WindowCenter, WindowWidth), if it has one."""
    center, width = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    if center is None or width is None:
        return None
    return _first_value(center), _first_value(width)


def _first_value(value) -> float:
    """A DICOM value that may be multi-valued (several windows) -> its first number."""
    return float(value[0]) if isinstance(value, MutableSequence) else float(value)


def _looks_truncated(error: Exception) -> bool:
    text = str(error).lower()
    return isinstance(error, (EOFError, SyntaxError)) or "truncated" in text or "end of file" in text
