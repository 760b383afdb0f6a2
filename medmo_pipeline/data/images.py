"""Image bytes: inspection with a decompression-bomb guard, and conversion of medical formats to
8-bit PNG (DICOM with rescale + window, 16-bit PNG with an intensity offset such as DeepLesion's).

Stored images keep their original bytes where the format is already 8-bit (JPEG, PNG); DICOM and
16-bit PNG are windowed to 8-bit grayscale PNG because that is what the vision processor reads.
Every entry follows the sample contract: {bytes, path, width, height, sha256}.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from collections.abc import MutableSequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
    position, kinds = _PNG_HEADER_END, set()
    while True:
        if position + 12 > end:
            raise ImageError("image_truncated", f"data ends at byte {end} without an IEND chunk")
        length, kind = _CHUNK_HEAD.unpack_from(data, position)
        stop = position + 12 + length
        if stop > end:
            raise ImageError("image_truncated", f"{kind!r} chunk at byte {position} needs {stop} bytes, has {end}")
        if zlib.crc32(view[position + 4:stop - 4]) != _U32.unpack_from(data, stop - 4)[0]:
            raise ImageError("image_undecodable", f"{kind!r} chunk at byte {position}: CRC mismatch (corrupt data)")
        if kind == b"IEND":
            break
        kinds.add(kind)
        position = stop
    if b"IDAT" not in kinds:
        raise ImageError("image_undecodable", "PNG without an IDAT chunk")
    return width, height


def _decode(data: bytes, limits: ImageLimits) -> tuple[int, int, str]:
    """Decode ``data`` fully with PIL (header size checked first): (width, height, format)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageError("image_too_large", str(error)) from None
        except Exception as error:  # noqa: BLE001 - PIL raises many types on garbage headers
            raise ImageError("image_undecodable", f"{type(error).__name__}: {error}") from None
        width, height = image.size
        _check_pixels(width, height, limits)
        try:
            image.load()
        except Exception as error:  # noqa: BLE001 - decoders raise many types on bad data
            reason = "image_truncated" if _looks_truncated(error) else "image_undecodable"
            raise ImageError(reason, f"{type(error).__name__}: {error}") from None
    return width, height, image.format or ""


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
