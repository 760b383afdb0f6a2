"""Pixels as the model sees them: medical formats windowed to 8 bits, and the one decoder that
training and evaluation use.

- DICOM (``dicom_entry``): modality rescale, then the file's VOI LUT or window when it has one,
  else the adapter's default window, else a percentile window; MONOCHROME1 inverted.
- 16-bit PNG with an intensity offset, as DeepLesion stores HU (``png16_entry``).
- Anything else kept as stored reaches the model through ``model_image``: EXIF orientation applied,
  16-bit and 12-bit greyscale, greyscale+alpha and RGB / RGBA (PNG, TIFF) windowed by percentiles (never
  clipped at 255, nor cut to each sample's high byte), palette, CMYK and alpha images made RGB
  (alpha over black).

A conversion that fails returns a ``failed_entry``: curation quarantines the row with the reason,
and the adapter goes on with the next row. Every decode is bounded by the limits in force
(``image_limits.using_limits``), checked from the header first.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import sys
import warnings
from collections.abc import Callable, MutableSequence
from pathlib import Path

import numpy as np
from PIL import Image

from medmo_pipeline.data.dicom import read_dicom
from medmo_pipeline.data.image_limits import (
    TIFF_BITS,
    TIFF_SAMPLE_FORMAT,
    ImageError,
    ImageLimits,
    decoder_error,
    limits_in_force,
    open_image,
    read_image_file,
    tiff_values,
)
from medmo_pipeline.schema.rows import MODEL_MAX_ASPECT_RATIO

PNG_COMPRESS_LEVEL = 1  # fast; the shards are zstd-compressed anyway
PERCENTILES = (0.5, 99.5)  # the window of an image without one: robust to a few hot or dead pixels
_PERCENTILE_SAMPLES = 1 << 20  # pixels sampled for the percentiles (evenly strided)
_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
# PIL decodes 16-bit RGB, RGBA (PNG, TIFF) and greyscale+alpha (PNG) to 8 bits by keeping each
# sample's high byte (its raw mode here: B big-endian, L little-endian), which leaves 12-bit content
# stored in 16 bits nearly black. Their low bytes: RGB and RGBA samples read in the other byte order;
# a grey+alpha pixel's four bytes read as an 8-bit RGBA pixel (grey high, grey low, alpha high, low).
_WIDE_COLOUR = {"RGB;16B": "RGB;16L", "RGB;16L": "RGB;16B", "RGBA;16B": "RGBA;16L", "RGBA;16L": "RGBA;16B",
                "LA;16B": "RGBA"}
_NATIVE = "L" if sys.byteorder == "little" else "B"  # libtiff hands PIL its samples in this order ("N")
_WIDE_COLOUR |= {f"{mode};16N": _WIDE_COLOUR[f"{mode};16{_NATIVE}"] for mode in ("RGB", "RGBA")}
EXIF_ORIENTATION = 0x0112
# What each EXIF orientation asks of the stored pixels (PIL's ``ImageOps.exif_transpose`` table);
# 5-8 swap width and height
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def png_entry(pixels: np.ndarray, path: str = "") -> dict:
    """uint8 pixels (H x W grayscale or H x W x 3) -> an image entry with PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    data = buffer.getvalue()
    return {"bytes": data, "path": path, "width": int(pixels.shape[1]), "height": int(pixels.shape[0]),
            "sha256": hashlib.sha256(data).hexdigest()}  # fmt: skip


def failed_entry(error: ImageError, path: str = "") -> dict:
    """An image entry for a file that could not be converted: no bytes, and the error, which
    curation turns into the row's quarantine reason."""
    return {"bytes": None, "path": path, "width": 0, "height": 0, "sha256": "", "error": error}


_BLOCK = 1 << 22  # values windowed at a time: the float32 working copy stays at 16 MiB


def window_to_uint8(values: np.ndarray, center: float, width: float,
                    values_of: Callable[[np.ndarray], np.ndarray] | None = None,
                    function: str = "LINEAR") -> np.ndarray:
    """VOI window (DICOM PS3.3 C.11.2.1.2-3) of real values (e.g. HU) -> uint8 0..255, linear unless
    ``function`` (the file's VOILUTFunction) is LINEAR_EXACT or SIGMOID, ``_BLOCK`` values at a
    time (a whole 64-megapixel colour image in float32 is 768 MB).

    ``values_of`` maps a block of ``values`` (stored pixels, say) to the values to window (their
    modality rescale, say; any element-wise map): the mapped image is never held whole."""
    exact, sigmoid = function == "LINEAR_EXACT", function == "SIGMOID"
    values = np.asarray(values)
    if values_of is None and not sigmoid and values.dtype.kind in "ui" and values.dtype.itemsize <= 2 \
            and values.size > max(_LUT_FROM, 1 << 16):  # (the table itself is windowed directly)
        return _window_through_lut(values, center, width, function)
    width = float(width) if (exact or sigmoid) and width > 0 else max(float(width), 1.0)
    out = np.empty(values.shape, dtype=np.uint8)
    flat_in, flat_out = values.reshape(-1), out.reshape(-1)
    offset, scale = np.float32(center - 0.5), np.float32(255.0 / max(width - 1.0, 1.0))
    if exact:  # C.11.2.1.3.2: y = ((x - c) / w + 0.5) * 255: no half-unit shift, w not w - 1
        offset, scale = np.float32(center), np.float32(255.0 / width)
    for start in range(0, flat_in.size, _BLOCK):
        block = flat_in[start:start + _BLOCK]
        block = values_of(block) if values_of is not None else block
        if sigmoid:  # C.11.2.1.3.1: y = 255 / (1 + exp(-4 (x - c) / w)); far below c, exp overflows to 0
            with np.errstate(over="ignore"):
                scaled = np.exp((block.astype(np.float32) - np.float32(center)) * np.float32(-4.0 / width))
            scaled = np.float32(255.0) / (scaled + np.float32(1.0))
        elif width <= 1 and not exact:  # a threshold: x > c - 1/2 is white (PS3.3's bounds for w = 1)
            flat_out[start:start + _BLOCK] = np.where(block > center - 0.5, 255, 0)
            continue
        else:
            scaled = (block.astype(np.float32) - offset) * scale
            scaled += np.float32(127.5)
        flat_out[start:start + _BLOCK] = np.clip(np.rint(scaled, out=scaled), 0, 255, out=scaled)
    return out


_LUT_FROM = 1 << 18  # values of 8 or 16 bits past this many are windowed through a table of every value


def _window_through_lut(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """``window_to_uint8`` of 8- or 16-bit integers (no ``values_of``, not SIGMOID) through a table of
    its result for every value the type holds: the window is element-wise, so each value maps to the
    same byte, and a 64-megapixel image takes a table look-up a value instead of four float32 passes
    (a 16-bit RGB image at the budget spent seconds windowing). Looked up ``_BLOCK`` values at a time
    (numpy widens the indices of a look-up to 64 bits)."""
    kind = values.dtype
    every = np.arange(np.iinfo(kind).min, int(np.iinfo(kind).max) + 1, dtype=np.int64).astype(kind)
    table = window_to_uint8(every, center, width, function=function)  # in the order of the unsigned view
    unsigned = np.dtype(f"u{kind.itemsize}")
    sign = unsigned.type(1 << (8 * kind.itemsize - 1)) if kind.kind == "i" else None
    out = np.empty(values.shape, dtype=np.uint8)
    flat_in, flat_out = values.reshape(-1), out.reshape(-1)
    for start in range(0, flat_in.size, _BLOCK):
        block = flat_in[start:start + _BLOCK]
        index = block if sign is None else block.view(unsigned) ^ sign  # signed: value - min, as unsigned
        np.take(table, index, out=flat_out[start:start + _BLOCK])
    return out


def full_range_window(values: np.ndarray) -> tuple[float, float]:
    """(center, width) covering the data's whole range."""
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:  # one value: a threshold just above it, so a flat image is black (as ``real_to_uint8``'s)
        return low + 0.5, 1.0
    return (low + high) / 2.0, max(high - low, 1.0)


def percentile_window(values: np.ndarray,
                      values_of: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[float, float]:
    """(center, width) from the ``PERCENTILES`` of the values (``values_of`` of them, as in
    ``window_to_uint8``): the window of an image that names none (a few extreme pixels would
    otherwise squeeze the rest into a few grey levels)."""
    flat = values.reshape(-1)
    sample = flat[:: max(1, flat.size // _PERCENTILE_SAMPLES)]
    sample = values_of(sample) if values_of is not None else sample
    low, high = (float(v) for v in np.percentile(sample, PERCENTILES))
    if high <= low:
        return full_range_window(sample)
    return (low + high) / 2.0, high - low


def real_to_uint8(values: np.ndarray, values_of: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Real values (a float image; ``values_of`` of them, as in ``window_to_uint8``) -> uint8,
    linearly over their ``PERCENTILES`` among the finite ones: NaN and -inf are 0, +inf 255.
    (``window_to_uint8`` is DICOM's window of integer data: a width of 1 or less makes it a
    threshold, so a 0-1 image came out black and white.) ``_BLOCK`` values at a time: a
    64-megapixel float image took four float32 copies of itself."""
    values = np.asarray(values)
    flat = values.reshape(-1)

    def blocks():
        for start in range(0, flat.size, _BLOCK):
            block = flat[start:start + _BLOCK]
            yield start, np.asarray(values_of(block) if values_of is not None else block, dtype=np.float32)

    counts = [int(np.isfinite(block).sum()) for _, block in blocks()]
    stride = max(1, sum(counts) // _PERCENTILE_SAMPLES)
    picked, seen = [], 0  # every stride-th finite value, in order, block by block
    for (_, block), count in zip(blocks(), counts):
        if count:
            picked.append(block[np.isfinite(block)][(-seen) % stride::stride])
        seen += count
    out = np.zeros(values.shape, dtype=np.uint8)
    low, high = (float(v) for v in np.percentile(np.concatenate(picked), PERCENTILES)) if seen else (0.0, 0.0)
    if seen and high <= low:
        low, high = _finite_range(block for _, block in blocks())
    flat_out = out.reshape(-1)
    for start, block in blocks():
        if high > low:  # else no finite value, or one: as ``window_to_uint8`` shows a flat image (zeros)
            scaled = (np.where(np.isfinite(block), block, np.float32(low)) - np.float32(low)) \
                * np.float32(255.0 / (high - low))
            flat_out[start:start + _BLOCK] = np.clip(np.rint(scaled, out=scaled), 0, 255, out=scaled)
        flat_out[start:start + _BLOCK][block == np.inf] = 255
    return out


def _finite_range(blocks) -> tuple[float, float]:
    """(least, greatest) of the finite values of ``blocks``."""
    low, high = math.inf, -math.inf
    for block in blocks:
        known = block[np.isfinite(block)]
        if known.size:
            low, high = min(low, float(known.min())), max(high, float(known.max()))
    return low, high


def percentile_uint8(values: np.ndarray) -> np.ndarray:
    """Values of an image that names no window -> uint8 by their ``PERCENTILES``: real values
    linearly (``real_to_uint8``), integers through DICOM's window (``window_to_uint8``)."""
    if values.dtype.kind == "f":
        return real_to_uint8(values)
    return window_to_uint8(values, *percentile_window(values))


def png16_entry(data: bytes, *, offset: int = 32768, window: tuple[float, float] | None = None,
                path: str = "", limits: ImageLimits | None = None) -> dict:
    """A 16-bit grayscale PNG storing ``value + offset`` (DeepLesion: HU + 32768) -> 8-bit PNG entry.

    ``window`` is (center, width) in the offset-corrected unit (HU for DeepLesion); None uses a
    percentile window. The header's size is checked first; a failure gives a ``failed_entry``.
    """
    try:
        image = open_image(data, limits or limits_in_force(), path)
        with image:
            if image.mode not in ("I;16", "I;16B", "I;16L", "I"):  # an 8-bit image less the offset is black
                raise ImageError("image_undecodable", f"{path}: a {image.format} of mode {image.mode}, not the "
                                                      f"16-bit greyscale the layout stores values + {offset} in")
            raw = np.asarray(image)
    except ImageError as error:
        return failed_entry(error, path)
    except Exception as error:  # noqa: BLE001 - PIL raises many types on bad data
        return failed_entry(decoder_error(error, f"16-bit PNG {path}: {type(error).__name__}: {error}"), path)

    def values_of(block: np.ndarray) -> np.ndarray:  # a block at a time, as in ``window_to_uint8``
        return block.astype(np.float32) - np.float32(offset)

    center, width = window if window is not None else percentile_window(raw, values_of)
    return png_entry(window_to_uint8(raw, center, width, values_of=values_of), path)


def dicom_entry(source: Path | bytes, *, default_window: tuple[float, float] | None = None,
                path: str = "", limits: ImageLimits | None = None) -> dict:
    """A DICOM file -> 8-bit PNG entry: modality rescale (slope/intercept), then the file's VOI
    LUT, else its first WindowCenter/WindowWidth (through its VOILUTFunction), else
    ``default_window``, else a percentile window (real values' where the rescale is fractional); a
    rescale that cannot be applied (slope 0 or not a number) leaves the stored values, windowed by
    percentiles. MONOCHROME1 is inverted so that bright means dense; a multi-frame file
    gives its middle frame; colour files (RGB, YBR) are kept as stored, their samples' top 8 bits; a
    PALETTE COLOR file goes through its palette. A failure gives a ``failed_entry``."""
    limits = limits or limits_in_force()
    try:
        data = source if isinstance(source, bytes) else read_image_file(Path(source), path or str(source), limits)
        dataset, pixels = read_dicom(data, limits, path)
    except ImageError as error:
        return failed_entry(error, path)
    del data  # freed here when read here: a file at the budget is a few hundred MB
    try:
        out = _dicom_uint8(dataset, pixels, default_window, path)
    except Exception as error:  # noqa: BLE001 - pydicom's rescale and LUTs raise many types on odd values
        return failed_entry(decoder_error(error, f"DICOM {path}: cannot be windowed to 8 bits "
                                                 f"({type(error).__name__}: {error})".strip()), path)
    del pixels  # before the PNG is encoded (the same reason)
    return out if type(out) is dict else png_entry(out, path)


def _dicom_uint8(dataset, pixels: np.ndarray, default_window: tuple[float, float] | None,
                 path: str) -> np.ndarray | dict:
    """``dicom_entry``'s pixels in 8 bits, or a ``failed_entry``."""
    from pydicom.pixels import apply_voi_lut

    if dataset.get("PhotometricInterpretation", "") == "PALETTE COLOR":
        return _palette_uint8(dataset, pixels, path)
    if dataset.get("SamplesPerPixel", 1) == 3:  # colour as stored (pydicom gives YBR as RGB), to 8 bits
        return stored_to_uint8(pixels, int(dataset.get("BitsStored") or 8))
    if pixels.ndim == 3:  # a frame that still holds samples
        pixels = pixels[..., 0]
    lut = _voi_lut_usable(dataset)
    rescaled = _rescale_usable(dataset)
    real = pixels.dtype.kind == "f"  # Float Pixel Data: real values, windowed as such
    # Each map below is element-wise and runs a block at a time (``window_to_uint8``): a 64-megapixel
    # CT rescaled whole took 512 MB of float64, and the build job went past 1 GB
    if lut and rescaled and not real:
        bits = int(dataset.VOILUTSequence[0].LUTDescriptor[2]) or 16

        def through_lut(block: np.ndarray) -> np.ndarray:  # a LUT is indexed by integers
            indices = np.rint(_rescale(block, dataset)).astype(np.int64)
            return apply_voi_lut(indices, dataset, prefer_lut=True).astype(np.float32)

        out = window_to_uint8(pixels, (2**bits - 1) / 2 + 0.5, 2**bits, values_of=through_lut)
    elif rescaled and (window := _dicom_window(dataset) or default_window) is not None:
        # the file's VOILUTFunction shapes its own window (SIGMOID was drawn linear), not the adapter's
        function = str(dataset.get("VOILUTFunction") or "LINEAR").upper() if _dicom_window(dataset) \
            else "LINEAR"
        out = window_to_uint8(pixels, *window, function=function,
                              values_of=lambda block: _rescale(block, dataset).astype(np.float32))
    else:  # by percentiles; without the rescale, the stored values (a window or LUT is in its unit)
        def values_of(block: np.ndarray) -> np.ndarray:
            return (_rescale(block, dataset) if rescaled else block).astype(np.float32)

        # A rescale of a fractional slope or intercept (PET, MR maps: 0-4095 times 0.0001 spans 0.4)
        # gives real values too: DICOM's integer window over a percentile width under 1 is a threshold,
        # and a narrow one saturates (slope 0.0001 gave a black and white image)
        out = (real_to_uint8(pixels, values_of) if real or (rescaled and _fractional_rescale(dataset))
               else window_to_uint8(pixels, *percentile_window(pixels, values_of), values_of=values_of))
    if dataset.get("PhotometricInterpretation", "") == "MONOCHROME1":
        np.subtract(255, out, out=out)
    return out


def _palette_uint8(dataset, pixels: np.ndarray, path: str) -> np.ndarray | dict:
    """A PALETTE COLOR DICOM (colour ultrasound, say): its indices through the file's red, green and
    blue LUTs, to 8 bits. LUT entries of 16 bits span 0-65535, but some devices write 8-bit values
    into them: those are kept as they are."""
    from pydicom.pixels import apply_color_lut

    try:
        colour = np.asarray(apply_color_lut(pixels, dataset))
    except Exception as error:  # noqa: BLE001 - a missing or damaged LUT: the file's problem, named
        return failed_entry(ImageError("image_undecodable", f"DICOM {path}: its palette cannot be applied "
                                                            f"({type(error).__name__}: {error})".strip()), path)
    bits = 8 if colour.dtype.itemsize == 1 or colour.max(initial=0) <= 255 else 16
    return stored_to_uint8(colour, bits)


_BAND_SAMPLES = 1 << 22  # samples converted at a time: a band's temporaries, not the image's


def stored_to_uint8(values: np.ndarray, bits: int) -> np.ndarray:
    """Samples of ``bits`` stored bits (colour, not windowed: every value is meant) as 8 bits: the
    top 8 of those bits, any bits above them (overlays, noise) ignored. Converted a band of rows at
    a time in the narrowest unsigned type that holds them (a 3000 x 3000 16-bit RGB image took 1 GB
    through 64-bit temporaries of the whole)."""
    values = np.asarray(values)
    wide = next(kind for kind in (np.uint16, np.uint32, np.uint64)
                if np.dtype(kind).itemsize >= values.dtype.itemsize and np.iinfo(kind).bits >= bits)
    out = np.empty(values.shape, np.uint8)
    rows = max(1, _BAND_SAMPLES // max(1, values[0].size)) if values.ndim else 1
    for top in range(0, max(1, len(values)) if values.ndim else 1, rows):
        band = values[top:top + rows].astype(wide) if values.ndim else values.astype(wide)
        band &= np.array((1 << bits) - 1, dtype=wide)
        band >>= max(bits - 8, 0)
        band <<= max(8 - bits, 0)
        if values.ndim:
            out[top:top + rows] = band
        else:
            out[...] = band
    return out


def _dicom_window(dataset) -> tuple[float, float] | None:
    """The file's first (WindowCenter, WindowWidth), if it has a usable one (finite, width > 0)."""
    center, width = _first_number(dataset, 0x00281050), _first_number(dataset, 0x00281051)
    if center is None or width is None or width <= 0:
        return None
    return center, width


def _voi_lut_usable(dataset) -> bool:
    """Whether the file's first VOI LUT can be applied (``_lut_usable``, of 8 or 10-16 bits as pydicom
    reads them): pydicom (3.0) indexes an 8-bit LUT of more than 256 entries through 8-bit integers,
    so the values wrap into a sawtooth; such a LUT is left out (the file's window, or a percentile
    window, is used), and so is one whose descriptor or data pydicom cannot apply."""
    lut = dataset.get("VOILUTSequence")
    if not lut or not _lut_usable(lut[0], dataset, (8, *range(10, 17))):
        return False
    entries, _, bits = (int(value) for value in lut[0].LUTDescriptor[:3])
    return bits != 8 or (entries or 1 << 16) <= 256


def _lut_usable(item, dataset, depths: tuple[int, ...]) -> bool:
    """Whether pydicom can apply a LUT item (of a VOI or Modality LUT Sequence): a descriptor of
    three numbers (entries, 0 meaning 65536; first value mapped; bits a entry, one of ``depths``) and
    LUT Data of exactly that many entries (OW: 16 bits each), each within its bits. pydicom raised
    for the others (a short LUT: struct.error; 12 bits: "data type 'uint12' not understood"), which
    cost the row as a ``malformed_record``."""
    try:
        entries, _, bits = (int(value) for value in item.LUTDescriptor[:3])
        element = item["LUTData"]
    except (AttributeError, KeyError, TypeError, ValueError):
        return False
    entries, value = entries or 1 << 16, element.value
    if bits not in depths or entries < 0:
        return False
    if isinstance(value, (bytes, bytearray)):  # OW: unpacked as 16-bit values in the data set's byte order
        if element.VR != "OW" or len(value) != 2 * entries:
            return False
        little = getattr(dataset, "original_encoding", (None, True))[1] is not False
        values = np.frombuffer(value, dtype="<u2" if little else ">u2")
    elif isinstance(value, MutableSequence) and len(value) == entries:
        values = np.asarray(value, dtype=np.int64)
    else:
        return False
    return bool(values.size == entries and values.min(initial=0) >= 0 and values.max(initial=0) < 1 << bits)


def _rescale_usable(dataset) -> bool:
    """Whether the file's modality rescale can be applied: a Modality LUT that pydicom can apply
    (``_lut_usable``) where the file has one, else slope and intercept (1 and 0 when absent) finite
    numbers, a slope that is not 0, values that stay finite in float32. A slope of 0 or NaN made every
    pixel one value, and the image came out blank."""
    if "ModalityLUTSequence" in dataset:
        lut = dataset.ModalityLUTSequence
        return bool(lut) and _lut_usable(lut[0], dataset, (8, 16))
    slope = _first_number(dataset, 0x00281053) if 0x00281053 in dataset else 1.0
    intercept = _first_number(dataset, 0x00281052) if 0x00281052 in dataset else 0.0
    if slope is None or intercept is None or slope == 0:
        return False
    bits = int(dataset.get("BitsStored") or dataset.get("BitsAllocated") or 16)
    extreme = abs(slope) * 2.0 ** min(bits, 64) + abs(intercept)  # the largest rescaled magnitude
    return extreme < float(np.finfo(np.float32).max)


def _rescale(block: np.ndarray, dataset) -> np.ndarray:
    """The modality rescale of a block of stored values (one ``_rescale_usable`` allows), as pydicom's
    ``apply_rescale``: through the Modality LUT, else by slope and intercept when both are present
    (in float64), else as stored. The slope and intercept are their first values (``_first_number``):
    pydicom multiplied by a list of several ("1\\2") and raised."""
    from pydicom.pixels import apply_rescale

    if "ModalityLUTSequence" in dataset:
        return apply_rescale(block, dataset)
    if 0x00281053 not in dataset or 0x00281052 not in dataset:
        return block
    out = block.astype(np.float64) * _first_number(dataset, 0x00281053)
    out += _first_number(dataset, 0x00281052)
    return out


def _fractional_rescale(dataset) -> bool:
    """Whether the file's modality rescale (a usable one) gives values that are not whole numbers."""
    slope = _first_number(dataset, 0x00281053) if 0x00281053 in dataset else 1.0
    intercept = _first_number(dataset, 0x00281052) if 0x00281052 in dataset else 0.0
    return not (float(slope).is_integer() and float(intercept).is_integer())


def _first_number(dataset, tag: int) -> float | None:
    """The first of an element's values (several windows may be listed) as a finite number, or None.
    Read from the element's raw bytes where pydicom has not converted it yet: a hostile file can
    list millions of values (or store them as bytes of an unknown VR), and only the first is used."""
    element = dataset.get_item(tag)
    value = None if element is None else element.value
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value[:64]).split(b"\\")[0].strip(b" \0").decode("ascii", "replace")
    elif isinstance(value, MutableSequence):
        value = value[0] if value else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# ---- the training / evaluation decoder ----------------------------------------------------------

def model_image(data: bytes, limits: ImageLimits | None = None, path: str = "") -> Image.Image:
    """Image bytes -> the RGB image the model sees; raises ImageError (never anything else)."""
    image, _ = decoded_image(data, limits, path)
    return to_model_rgb(image, path)


def to_model_rgb(image: Image.Image, path: str = "") -> Image.Image:
    """A ``decoded_image`` as the model sees it (8-bit RGB); raises ImageError naming ``path``."""
    with _undecodable_as_image_error(path):
        return _to_rgb(image)


def decoded_image(data: bytes, limits: ImageLimits | None = None, path: str = "") -> tuple[Image.Image, bool]:
    """Image bytes decoded once, with the EXIF orientation applied, and whether they are already what
    the model sees as they are: an 8-bit greyscale or RGB PNG or JPEG without an EXIF rotation, which
    any 8-bit reader decodes to ``model_image``'s pixels. Raises ImageError (never anything else)."""
    limits = limits or limits_in_force()  # a job's recipe's (image_limits.use_in_process)
    image = open_image(data, limits, path)
    if max(image.size) > MODEL_MAX_ASPECT_RATIO * min(image.size):
        raise ImageError("image_aspect_ratio", f"{path} {image.width}x{image.height}: more elongated than "
                                               f"{MODEL_MAX_ASPECT_RATIO}:1, which the model's processor refuses".strip())
    with _undecodable_as_image_error(path):
        rawmode = _raw_mode(image) if image.format in ("PNG", "TIFF") else ""
        if rawmode == "LA;16B":  # decoded once, every byte kept: (grey high, low, alpha high, low) a pixel
            image.tile = _retiled(image.tile, _WIDE_COLOUR[rawmode])
        image.load()  # first: reading a PNG's EXIF may decode it, and would not say why that failed
        orientation = exif_orientation(image)
        plain = image.format in ("PNG", "JPEG") and image.mode in ("L", "RGB") and orientation == 1
        if rawmode in _WIDE_COLOUR:
            image, plain = _wide_colour(image, rawmode, data, limits, path), False
        image, plain = (image, plain) if (stored := _as_stored(image)) is image else (stored, False)
        return (image.transpose(_TRANSPOSE[orientation]), False) if orientation in _TRANSPOSE else (image, plain)


_TIFF_PHOTOMETRIC = 262


def _as_stored(image: Image.Image) -> Image.Image:
    """A loaded image as its file means it where PIL's decode differs: a TIFF of more than 8 bits
    whose photometric interpretation is WhiteIsZero inverted (PIL inverts 1- and 8-bit ones only);
    a BMP whose alpha bytes are all 0 made opaque (writers leave the fourth byte of 32-bit pixels
    at 0: over black, the image was black)."""
    if image.format == "TIFF" and image.mode == "I" and int(tiff_values(image, TIFF_BITS, 16)[0]) == 32 \
            and tiff_values(image, TIFF_SAMPLE_FORMAT, 1)[0] == 1:
        # unsigned 32-bit samples (BlackIsZero: PIL opens no other), which PIL holds as signed: past
        # 2**31 they wrapped negative and a ramp came out a sawtooth. Read as unsigned, then moved down
        # by 2**31 in place (the sign bit flipped): the same order in int32, windowed to the same image
        values = _pixels_of(image).view(np.uint32)
        values ^= np.uint32(1 << 31)
        return Image.fromarray(values.view(np.int32))
    if image.format == "TIFF" and image.mode in _HIGH_DEPTH_MODES and image.mode != "F" \
            and image.tag_v2.get(_TIFF_PHOTOMETRIC) == 0:
        top = (1 << int(tiff_values(image, TIFF_BITS, 16)[0])) - 1
        # in place, in 32 bits where the samples fit (a 64-megapixel image took 768 MB through int64)
        values = _pixels_of(image, np.int32 if top < 2**31 else np.int64)
        np.subtract(top, values, out=values)
        return Image.fromarray(values.astype(np.int32, copy=False))
    if image.format == "BMP" and image.mode == "RGBA" and image.getextrema()[3] == (0, 0):
        return image.convert("RGB")
    return image


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8) of an opened image, as PIL reads it (EXIF, a PNG's text profile,
    XMP); 1, the pixels as stored, where there is none or it cannot be read. Viewers show an image
    whose EXIF is damaged as stored, so an unreadable tag costs no image; curation's sizes and the
    decoder both take the orientation from here."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns of each odd tag: the orientation is all we read
            value = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - PIL raises many types on a damaged EXIF or XMP block
        return 1
    return value if type(value) is int and value in _TRANSPOSE else 1


def _raw_mode(image: Image.Image) -> str:
    """The raw mode PIL will decode an opened image's first tile with ('' when it says none)."""
    args = image.tile[0].args if image.tile else None
    return args if isinstance(args, str) else (args[0] if args else "")


def _retiled(tiles: list, rawmode: str) -> list:
    """Every tile (a TIFF's strips or tiles each have one) read in ``rawmode``."""
    return [tile._replace(args=(rawmode, *tile.args[1:]) if isinstance(tile.args, tuple) else rawmode)
            for tile in tiles]


def _pixels_of(image: Image.Image, dtype=None) -> np.ndarray:
    """``np.array(image)`` (as ``dtype``), filled a band of rows at a time: PIL's array interface
    gathers the whole image's bytes in pieces and joins them, twice the image at its peak before
    numpy's copy (a 64-megapixel 8-bit RGBA image: 512 MB for a 256 MB array)."""
    first = np.asarray(image.crop((0, 0, image.width, 1)))
    out = np.empty((image.height, *first.shape[1:]), dtype=dtype or first.dtype)
    rows = max(1, _BLOCK // max(1, first.size))
    for top in range(0, image.height, rows):
        out[top:top + rows] = np.asarray(image.crop((0, top, image.width, min(top + rows, image.height))))
    return out


def _bands(image: Image.Image, samples: int = 1):
    """(top, box) of bands of rows of ``image`` of about ``_BLOCK`` samples, ``samples`` a pixel."""
    rows = max(1, _BLOCK // max(1, image.width * samples))
    for top in range(0, image.height, rows):
        yield top, (0, top, image.width, min(top + rows, image.height))


def _wide_colour(image: Image.Image, rawmode: str, data: bytes, limits: ImageLimits, path: str) -> Image.Image:
    """A 16-bit colour or grey+alpha image as 8 bits: its 16-bit values windowed by percentiles over
    the colour channels together (their balance kept); the alpha's high byte. ``image`` is the file's
    decode in ``rawmode``: RGB and RGBA ones hold each sample's high byte, and a second decode (in the
    other byte order) gives the low ones; a grey+alpha one was decoded with every byte
    (``decoded_image``). The result is written into ``image`` a band of rows at a time (it is
    returned, as stored: the caller turns it): no 16-bit copy of the whole image is made, and the
    window is a table look-up (``window_to_uint8`` of 16-bit values)."""
    grey = rawmode.startswith("LA")
    channels = 1 if grey else 3
    if grey:  # one decode holds both bytes: (grey, alpha) from bytes (0, 2) and (1, 3)
        second = None
    else:
        second = open_image(data, limits, path)
        second.tile = _retiled(second.tile, _WIDE_COLOUR[rawmode])
        second.load()
    samples = len(image.getbands())

    def wide(box) -> tuple[np.ndarray, np.ndarray]:  # a band's 16-bit colour values, and its high bytes
        high = np.asarray(image.crop(box))
        if grey:
            return (high[..., 0:1].astype(np.uint16) << 8) | high[..., 1:2], high
        return (high[..., :channels].astype(np.uint16) << 8) | np.asarray(second.crop(box))[..., :channels], high

    stride = max(1, image.height * image.width * channels // _PERCENTILE_SAMPLES)  # the window, from every
    if stride == 1:  # stride-th row (read a row at a time where they are apart)
        picked = [wide(box)[0] for _, box in _bands(image, samples)]
    else:
        picked = [wide((0, row, image.width, row + 1))[0] for row in range(0, image.height, stride)]
    window = percentile_window(np.concatenate(picked))
    del picked
    for top, box in _bands(image, samples):
        values, high = wide(box)
        band = window_to_uint8(values, *window)
        if grey:  # grey as RGB, and the alpha's high byte
            band = np.concatenate([band, band, band, high[..., 2:3]], axis=-1)
        elif samples > channels:  # the alpha's high byte, as decoded
            band = np.concatenate([band, high[..., channels:]], axis=-1)
        image.paste(Image.fromarray(np.ascontiguousarray(band)), box)
    if second is not None:
        second.close()
    return image


@contextlib.contextmanager
def _undecodable_as_image_error(path: str):
    """Decoders raise many types on bad data: each becomes ImageError('image_undecodable') naming ``path``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF oddities: the pixels are what matter
            yield
    except ImageError:
        raise
    except Exception as error:  # noqa: BLE001
        raise decoder_error(error, f"{path} {type(error).__name__}: {error}".strip()) from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB: high bit depths windowed by percentiles (``percentile_uint8``), alpha composited
    over black."""
    if image.mode in _HIGH_DEPTH_MODES:
        return Image.fromarray(percentile_uint8(_pixels_of(image))).convert("RGB")
    if image.mode in ("P", "PA", "LA", "RGBA", "La", "RGBa"):
        return _over_black(image)
    if image.mode == "RGB":  # already what the model sees: the decoded pixels, not a copy of them
        return image._new(image.im)
    return image.convert("RGB")


def _over_black(image: Image.Image) -> Image.Image:
    """An image with alpha (or a palette, which may hold some) as RGB, composited over opaque black,
    a band of rows at a time: the whole image as RGBA, an RGBA background, their composite and its
    RGB took five copies (1.2 GB for a 64-megapixel image of 8-bit RGBA, or a palette PNG of 60 KB).
    PIL's conversion and composite are per pixel, so the bands give the same pixels."""
    out = Image.new("RGB", image.size)
    background = None
    for _, box in _bands(image, 4):
        band = image.crop(box).convert("RGBA")  # a palette's colours and transparency, as for the whole
        if background is None or background.size != band.size:
            background = Image.new("RGBA", band.size, (0, 0, 0, 255))
        out.paste(Image.alpha_composite(background, band).convert("RGB"), box[:2])
    return out
