"""Image bytes: inspection with a decompression-bomb guard, and conversion of medical formats to
8-bit PNG (DICOM with rescale + window, 16-bit PNG with an intensity offset such as DeepLesion's).

Stored images keep their original bytes where the format is already 8-bit (JPEG, PNG); DICOM and
16-bit PNG are windowed to 8-bit grayscale PNG because that is what the vision processor reads.
Every entry follows the sample contract: {bytes, path, width, height, sha256}.
"""

from __future__ import annotations

import hashlib
import io
import warnings
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


def inspect_image(data: bytes, limits: ImageLimits = ImageLimits()) -> tuple[int, int, str]:
    """Decode ``data`` fully and return (width, height, format), or raise ImageError.

    The header's size is checked against ``limits.max_pixels`` before any pixel is decoded, so a
    small file claiming 50000 x 50000 costs nothing (PIL's own bomb check is turned into an error too).
    """
    if not data:
        raise ImageError("image_empty", "zero bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageError("image_too_large", str(error)) from None
        except Exception as error:  # PIL raises many types on garbage headers
            raise ImageError("image_undecodable", f"{type(error).__name__}: {error}") from None
        width, height = image.size
        if width * height > limits.max_pixels:
            raise ImageError("image_too_large", f"header says {width}x{height} > {limits.max_pixels} pixels")
        try:
            image.load()
        except Exception as error:
            reason = "image_truncated" if _looks_truncated(error) else "image_undecodable"
            raise ImageError(reason, f"{type(error).__name__}: {error}") from None
    if min(width, height) < limits.min_side:
        raise ImageError("image_too_small", f"{width}x{height}, min side {limits.min_side}")
    if max(width, height) > limits.max_aspect_ratio * min(width, height):
        raise ImageError("image_aspect_ratio", f"{width}x{height} exceeds {limits.max_aspect_ratio}:1")
    return width, height, image.format or ""


def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header only; (0, 0) when the header is unreadable (curation decides)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(io.BytesIO(data)).size
    except Exception:
        return 0, 0


def extension_format(path: str) -> str | None:
    """The format a file name's extension promises, or None when it promises nothing we check."""
    return EXTENSION_FORMATS.get(Path(path).suffix.lower()) if path else None


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
    except Exception as error:
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
    except Exception as error:
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
