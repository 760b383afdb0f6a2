"""The cost bound of one image file: its limits, the error that refuses it, and the limits in force.

Every image path (curation's checks, the adapters' DICOM / 16-bit conversions, mask reading, the
training decoder) reads the size a file declares in its header and compares it with
``ImageLimits.max_pixels`` before any pixel is decoded, so a small file declaring a huge image costs
nothing. The recipe sets the limits once (``corpus.image_limits``); ``using_limits`` puts them in
force while a source is curated, so that adapters need no extra argument.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from PIL import Image

from medmo_pipeline.safe_paths import FileTooLarge, read_bounded

# What PIL itself accepts in one PNG text or ICC chunk (stored or inflated) and in all of them: a
# file over these fails PIL's decode, so curation refuses it with the same bounds.
MAX_TEXT_CHUNK = 1 << 20
MAX_TEXT_MEMORY = 64 << 20
# An EXIF block in its own PNG (eXIf) or WebP (EXIF) chunk: what a JPEG's APP1 segment can hold, where
# these blocks come from. PIL makes each value of the tag it reads a Python object: a 40 MB block of
# one orientation tag took 1.4 s and 600 MB, one whose other tags PIL writes back when it turns the
# image 15 s and 3.5 GB.
MAX_EXIF_BYTES = 1 << 16
# The formats an image file is opened as (what the datasets publish and the adapters write), by the
# file names they come under. PIL knows some forty more, each its own decoder; a file in any other
# is refused, not handed to it. A name with another extension (a .dcm an adapter converted to PNG,
# say) promises no format, so its content is not checked against it.
EXTENSION_FORMATS = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".gif": "GIF",
    ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
}  # fmt: skip
IMAGE_FORMATS = tuple(dict.fromkeys(EXTENSION_FORMATS.values()))
_JPEG_START, _JPEG_SCAN = b"\xff\xd8\xff", b"\xff\xda"
_PNG_CHUNK_HEAD = struct.Struct(">I4s")
_JPEG_MARKER = re.compile(rb"\xff[\xc0-\xfe]")  # a segment's start (payloads may hold a few by chance)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
# PIL decodes every WebP through libwebp's animation decoder: two RGBA canvases and the frame it
# hands over besides the image, about 16 bytes a pixel where a PNG's or JPEG's check holds 4
# (measured at 4000 x 4000: 248 MiB, and 62 MiB for the PNG or JPEG). So a WebP pixel counts this
# many times against max_pixels: a 42 KB WebP of 8000 x 8000 took 1 GiB to check.
WEBP_PIXEL_WEIGHT = 4
# PIL decodes an RLE-compressed BMP (RLE8, RLE4) in Python, a step per run and per pixel of an RLE4
# run or of a row's padding: about 10 million steps a second, where a C decoder takes 0.2-0.3 s for
# a 64-megapixel PNG or JPEG. So a pixel of one counts this many times against max_pixels: an
# 8000 x 8000 RLE8 file of 33 KB took 6 s to check and 6 s again to decode, one of 2000 x 2000 in
# single-pixel RLE4 runs (8 MB) takes 1.3 s.
BMP_RLE_PIXEL_WEIGHT = 16
# The most an RLE BMP's pixel data takes for its size, a bound on the runs the decoder steps
# through: each pixel a run of its own (2 bytes; an absolute run is no more), then each row's end
# and the bitmap's end (2 bytes each). Only a delta skipping single pixels one at a time takes more.
BMP_RLE_BYTES_PER_PIXEL, BMP_RLE_BYTES_PER_ROW = 2, 2
# A PNG that curation's check decodes with PIL (an animated one, or one whose orientation PIL reads
# only by loading its pixels: a chunk after them, XMP, a text EXIF profile) has its pixel stream
# inflated twice, by the check and by PIL's decode: its samples are held to this many bytes a pixel
# of max_pixels (an 8-bit RGBA image's), so only 16-bit RGB or RGBA ones over 42 or 32 megapixels
# are refused. A 500 KB animated PNG of 8000 x 8000 16-bit RGBA took 2.2 s to check (1.0 s without
# its acTL chunk); one of 8-bit RGBA, 1.2 s.
PNG_DECODED_BYTES_PER_PIXEL = 4
# A progressive JPEG is decoded into every block's coefficients, 2 bytes a sample, held for the whole
# image beside the image itself (libjpeg's whole-image coefficient buffer; a baseline one is decoded
# a row of blocks at a time). So its samples, counted that way, are held to this many bytes a pixel
# of max_pixels, what a baseline JPEG's decode holds at most (CMYK): a 500 KB progressive CMYK JPEG of
# 8000 x 8000 took 735 MiB to check and again to decode for training (a baseline one, 247 MiB).
JPEG_DECODED_BYTES_PER_PIXEL = 4
_JPEG_COEFFICIENT_BYTES = 2
# The frame headers of the JPEG processes (SOF0-SOF15 but DHT, JPG and DAC) and of JPEG-LS (SOF55):
# precision, height, width, components follow at the same place in each; the progressive ones
JPEG_FRAME_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7})
_JPEG_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_BMP_RLE = {1: "RLE8", 2: "RLE4"}  # by the info header's compression field
_BMP_INFO_SIZES = (40, 52, 56, 64, 108, 124)  # the info headers PIL reads a compression field from


class ImageError(ValueError):
    """An image that cannot be used; ``reason`` is the quarantine reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decoder_error(error: Exception, detail: str, reason: str = "image_undecodable") -> ImageError:
    """The ImageError for an exception a decoder raised (``detail`` names the file): ``reason``, the
    file's fault; but running out of memory is the job's, not the file's (the file is within the
    limits, or it would have been refused from its header): ``image_too_costly``, which says so,
    also where a library wrapped the MemoryError in its own error (pydicom: a RuntimeError). An
    error without a message (a bare MemoryError or KeyError) is named by its type."""
    if any(isinstance(cause, MemoryError) for cause in _causes(error)):
        return ImageError("image_too_costly", f"{detail.rstrip(': ')} (decoding it ran out of memory: give the job more memory, "
                                              f"or lower corpus.image_limits.max_pixels)")
    if not str(error).strip():  # the detail's "Type: message" would end in nothing
        detail, name = detail.rstrip(": "), type(error).__name__
        detail = f"{detail} (no message)" if detail.endswith(name) else f"{detail} ({name}, no message)"
    return ImageError(reason, detail)


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the exceptions it was raised from or while handling, each once."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


@dataclass(frozen=True)
class ImageLimits:
    """What counts as a sane image. ``max_pixels`` is the pixel budget of one file (every frame of a
    multi-frame file counted), checked from the header before decoding."""

    max_pixels: int = 64_000_000  # e.g. 8000 x 8000; whole-slide images must be tiled beforehand
    min_side: int = 8
    max_aspect_ratio: float = 50.0
    # A progressive JPEG decodes the whole image once per scan, and a scan can take a few bytes:
    # encoders write 6-10 (a dozen or two when they optimise the script)
    max_jpeg_scans: int = 100
    # A PNG's chunks, a JPEG's segments before its first scan, a TIFF tag's values and a DICOM's
    # elements are each a step of Python in the decoder (about 1 s per 100,000-400,000): files
    # hold tens to a few thousand
    max_chunks: int = 100_000
    # Bytes of one image file, from its declared size before it is read: an uncompressed 16-bit
    # image of max_pixels, or an 8-bit RGB one, fits; a file beyond is no image within the budget
    max_file_bytes: int = 256 << 20
    # PNG is verified from its structure (every chunk's CRC, the pixel stream inflated within its
    # declared size, see ``verify_png``) unless this asks for a full PIL decode, as other formats get
    decode_png: bool = False

    @property
    def max_inflated_bytes(self) -> int:
        """What a compressed container (deflated DICOM) may inflate to: the budget at 16 bits per
        pixel, plus room for the header."""
        return self.max_pixels * 2 + (1 << 20)


# The limits of a source being curated (``using_limits``), else this process's (``use_in_process``:
# a training or evaluation job's recipe, seen by every thread), else the defaults
_IN_FORCE: ContextVar[ImageLimits | None] = ContextVar("image_limits", default=None)
_PROCESS_LIMITS: list[ImageLimits] = [ImageLimits()]


def read_image_file(path: Path, what: str, limits: ImageLimits | None = None) -> bytes:
    """An image file's bytes; ImageError ``file_too_large`` when the file system declares more than
    ``max_file_bytes`` (of ``limits``, else of the limits in force), before anything is read."""
    try:
        return read_bounded(path, (limits or limits_in_force()).max_file_bytes, what)
    except FileTooLarge as error:
        raise ImageError("file_too_large", str(error)) from None


def check_image_bytes(size: int, limits: ImageLimits, what: str = "") -> None:
    """ImageError ``file_too_large`` for image bytes already in memory (embedded in a Parquet or
    JSON record, or handed to curation) over ``max_file_bytes``: the bound a file on disk gets from
    its declared size, held to the same figure whichever way the image came."""
    if size > limits.max_file_bytes:
        raise ImageError("file_too_large", f"{what or 'image'} holds {size} bytes, over the "
                                           f"{limits.max_file_bytes} bytes an image may hold (max_file_bytes)")


def limits_in_force() -> ImageLimits:
    """The limits of the source being curated; outside ``using_limits``, this process's
    (``use_in_process``), the defaults unless a job set them."""
    return _IN_FORCE.get() or _PROCESS_LIMITS[0]


def use_in_process(limits: ImageLimits) -> None:
    """Make ``limits`` this process's own, in every thread: what a training or evaluation job's model
    decoder and image checks hold images to, the recipe's ``corpus.image_limits`` that curation kept
    them under (with the defaults, an image kept under a raised budget was skipped at training)."""
    _PROCESS_LIMITS[0] = limits


@contextmanager
def using_limits(limits: ImageLimits) -> Iterator[ImageLimits]:
    """Put ``limits`` in force for the adapters' conversions while the block runs."""
    token = _IN_FORCE.set(limits)
    try:
        yield limits
    finally:
        _IN_FORCE.reset(token)


def open_image(data: bytes, limits: ImageLimits, what: str = "") -> Image.Image:
    """``data`` opened lazily (nothing decoded yet) as one of ``IMAGE_FORMATS``, once its decode is
    known to be within ``limits``: the size its header declares (PIL's bomb check, then ours) and
    what the header makes the decoder walk (``check_decode_cost``). Raises ImageError, its detail
    starting with ``what``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):  # a shard's null bytes, say
        raise ImageError("image_missing", f"{what} no image bytes ({type(data).__name__})".strip())
    check_decode_cost(data, limits, what)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # PIL's notes on odd chunks ("Invalid APNG, will use ...")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageError("image_too_large", f"{what} {error}".strip()) from None
        except Image.UnidentifiedImageError:
            raise ImageError("image_undecodable", f"{what} {_unidentified(data)}".strip()) from None
        except Exception as error:  # noqa: BLE001 - PIL raises many types on garbage headers
            raise decoder_error(error, without_address(f"{what} {type(error).__name__}: {error}".strip())) from None
    check_pixels(*image.size, limits, what=f"{what} header".strip())  # the first frame: what is decoded
    if image.format == "TIFF" and (misread := _tiff_misread(image)):
        raise ImageError("image_undecodable", f"{what} TIFF {misread}".strip())
    return image


def _unidentified(data: bytes) -> str:
    """Why PIL opened no image from ``data``: the format whose signature it starts with and that
    format's own error (``Image.open`` keeps only "cannot identify": a PNG whose iCCP chunk PIL
    refuses was "not an image"), else that it is in no format read here."""
    prefix = bytes(data[:16])
    for fmt in IMAGE_FORMATS:
        factory, accept = Image.OPEN.get(fmt, (None, None))
        signature = factory is not None and accept is not None and accept(prefix)
        if signature and not isinstance(signature, str):  # a str: PIL's note that it lacks the codec
            try:
                factory(io.BytesIO(data), "").close()
            except Exception as error:  # noqa: BLE001 - what PIL's open of that format raised
                return without_address(f"a {fmt} that PIL refuses to open ({type(error).__name__}: {error})")
            return f"a {fmt} that PIL refuses to open"
    return f"not an image in a format read here ({', '.join(IMAGE_FORMATS)})"


TIFF_BITS, TIFF_PLANAR, TIFF_SAMPLE_FORMAT = 258, 284, 339


def tiff_values(image: Image.Image, tag: int, default) -> tuple:
    """A TIFF tag's values as a tuple (PIL gives one value bare), ``(default,)`` when absent."""
    values = image.tag_v2.get(tag, default)
    return values if isinstance(values, tuple) else (values,)


def _tiff_misread(image: Image.Image) -> str:
    """Why PIL would decode a TIFF to other values than it stores, or '': samples of more than 8
    bits in separate planes (PIL reads each plane's bytes as 8-bit samples), signed 8-bit samples
    (read as unsigned: a ramp through 0 wraps)."""
    bits, formats = tiff_values(image, TIFF_BITS, 8), tiff_values(image, TIFF_SAMPLE_FORMAT, 1)
    if image.tag_v2.get(TIFF_PLANAR) == 2 and max(bits, default=8) > 8:
        return f"of {max(bits)}-bit samples in separate planes: PIL reads them as 8-bit samples"
    if 2 in formats and max(bits, default=8) == 8:
        return "of signed 8-bit samples: PIL reads them as unsigned"
    return ""


def check_decode_cost(data: bytes, limits: ImageLimits, what: str = "") -> None:
    """The costs an image's header alone does not show, checked on the raw bytes before PIL opens
    them: a JPEG's scans and segments (``check_jpeg_scans``), a TIFF's tag value counts
    (``check_tiff_tags``), a PNG's chunks (``check_png_chunks``), a WebP's size by what its decoder
    holds and its chunks (``check_webp_chunks``), a GIF's blocks (``check_gif_blocks``), an RLE
    BMP's size and runs (``check_bmp_rle``). ImageError ``image_too_costly``."""
    check_jpeg_scans(data, limits, what)
    check_tiff_tags(data, limits, what)
    check_png_chunks(data, limits, what)
    check_webp_chunks(data, limits, what)
    check_gif_blocks(data, limits, what)
    check_bmp_rle(data, limits, what)


def check_exif_size(size: int, what: str) -> None:
    """Refuse an EXIF block of more than ``MAX_EXIF_BYTES`` (ImageError ``image_too_costly``)."""
    if size > MAX_EXIF_BYTES:
        raise ImageError("image_too_costly", f"{what} holds an EXIF block of {size} bytes > {MAX_EXIF_BYTES}: "
                                             f"PIL reads each of its values into a Python object")


def check_png_chunks(data: bytes, limits: ImageLimits, what: str = "") -> None:
    """Refuse a PNG of more than ``limits.max_chunks`` chunks: PIL steps through each in Python
    (800,000 empty ones, 9.6 MB, took 2 s), or whose eXIf chunk is over ``MAX_EXIF_BYTES``. A walk
    of the chunk headers, stopping at the limit."""
    if bytes(data[:8]) != b"\x89PNG\r\n\x1a\n":
        return
    position, end, chunks, head = 8, len(data), 0, _PNG_CHUNK_HEAD.unpack_from
    while position + 8 <= end:
        chunks += 1
        if chunks > limits.max_chunks:
            raise ImageError("image_too_costly", f"{what} PNG of more than {limits.max_chunks} chunks".strip())
        length, kind = head(data, position)
        if kind == b"IEND":
            return
        if kind == b"eXIf":
            check_exif_size(length, f"{what} PNG eXIf chunk at byte {position}".strip())
        position += 12 + length


def check_webp_chunks(data: bytes, limits: ImageLimits, what: str = "") -> None:
    """Refuse a WebP whose size, counted ``WEBP_PIXEL_WEIGHT`` times, is over ``limits.max_pixels``
    (PIL's open already allocates the decoder's canvases), whose EXIF chunk is over
    ``MAX_EXIF_BYTES``, or of more than ``limits.max_chunks`` chunks (an EXIF chunk could hide
    behind them): a walk of its RIFF chunk headers, each padded to an even size."""
    if bytes(data[:4]) != b"RIFF" or bytes(data[8:12]) != b"WEBP":
        return
    if size := _webp_size(data):
        width, height = size
        check_pixels(width, height, limits, what=f"{what} WebP header".strip())
        if (weighed := width * height * WEBP_PIXEL_WEIGHT) > limits.max_pixels:
            raise ImageError("image_too_costly", f"{what} WebP of {width}x{height}: its decoder holds about "
                                                 f"{4 * WEBP_PIXEL_WEIGHT} bytes a pixel, so each counts "
                                                 f"{WEBP_PIXEL_WEIGHT} times against max_pixels "
                                                 f"({weighed} > {limits.max_pixels})".strip())
    position, end = 12, len(data)
    for _ in range(limits.max_chunks):
        if position + 8 > end:
            return
        kind, length = bytes(data[position:position + 4]), int.from_bytes(data[position + 4:position + 8], "little")
        if kind == b"EXIF":
            check_exif_size(length, f"{what} WebP EXIF chunk at byte {position}".strip())
        position += 8 + length + (length & 1)
    if position + 8 <= end:
        raise ImageError("image_too_costly", f"{what} WebP of more than {limits.max_chunks} chunks".strip())


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) a WebP's first chunk declares: the canvas of an extended file (VP8X), the
    image of a lossless (VP8L) or lossy (VP8) one; None where it declares none (PIL's open says why)."""
    kind, body = bytes(data[12:16]), bytes(data[20:30])
    if kind == b"VP8X" and len(body) == 10:  # flags, reserved, then width - 1 and height - 1 in 24 bits
        return 1 + int.from_bytes(body[4:7], "little"), 1 + int.from_bytes(body[7:10], "little")
    if kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:  # signature, then 14 bits each of size - 1
        bits = int.from_bytes(body[1:5], "little")
        return 1 + (bits & 0x3FFF), 1 + (bits >> 14 & 0x3FFF)
    if kind == b"VP8 " and len(body) == 10 and body[3:6] == b"\x9d\x01\x2a":  # frame tag, start code, sizes
        return int.from_bytes(body[6:8], "little") & 0x3FFF, int.from_bytes(body[8:10], "little") & 0x3FFF
    return None


def check_bmp_rle(data: bytes, limits: ImageLimits, what: str = "") -> None:
    """Refuse an RLE-compressed BMP (RLE8, RLE4), which PIL decodes in Python: of more pixels than
    ``limits.max_pixels`` counted ``BMP_RLE_PIXEL_WEIGHT`` times each, or whose pixel data is longer
    than any image of its size takes (``BMP_RLE_BYTES_PER_PIXEL``, ``BMP_RLE_BYTES_PER_ROW``): runs
    past a row's end add nothing and cost a step each (250 MiB of them in an 8 x 8 file took 40 s).
    Uncompressed BMPs are read in C."""
    if bytes(data[:2]) != b"BM" or len(data) < 34:
        return
    (offset, info_size), (width, height, _, _, compression) = (struct.unpack_from("<II", data, 10),
                                                                struct.unpack_from("<IiHHI", data, 18))
    if info_size not in _BMP_INFO_SIZES or compression not in _BMP_RLE:
        return
    kind, height = _BMP_RLE[compression], abs(height)  # a negative height: rows stored top down
    check_pixels(width, height, limits, what=f"{what} BMP header".strip())
    name = f"{what} {kind} BMP of {width}x{height}".strip()
    why = "PIL decodes RLE in Python (convert the file to PNG)"
    if width * height * BMP_RLE_PIXEL_WEIGHT > limits.max_pixels:
        raise ImageError("image_too_costly", f"{name}: each pixel counts {BMP_RLE_PIXEL_WEIGHT} times against "
                                             f"max_pixels ({width * height * BMP_RLE_PIXEL_WEIGHT} > "
                                             f"{limits.max_pixels}): {why}")
    runs = len(data) - max(offset, 14 + info_size)  # PIL reads runs from the offset to the file's end
    most = BMP_RLE_BYTES_PER_PIXEL * width * height + BMP_RLE_BYTES_PER_ROW * height + 2
    if runs > most:
        raise ImageError("image_too_costly", f"{name}: {runs} bytes of runs, more than the {most} any image of "
                                             f"its size takes: {why}")


def check_gif_blocks(data: bytes, limits: ImageLimits, what: str = "") -> None:
    """Refuse a GIF whose extension blocks before its first image hold more than
    ``limits.max_chunks`` sub-blocks: PIL reads each in Python, and keeps a comment's as one object
    each (a comment of a million 1-byte sub-blocks, 2 MB, took 0.2 s; 30 MB of them would hold
    600 MB). A walk of the block sizes, stopping at the limit; the image data is read in C."""
    if bytes(data[:6]) not in (b"GIF87a", b"GIF89a") or len(data) < 13:
        return
    position, end, steps = 13 + (3 * (2 << (data[10] & 7)) if data[10] & 0x80 else 0), len(data), 0
    while position < end and data[position] == 0x21:  # an extension: introducer, label, sub-blocks
        position += 2
        while position < end:
            steps += 1
            if steps > limits.max_chunks:
                raise ImageError("image_too_costly", f"{what} GIF of more than {limits.max_chunks} extension "
                                                     f"sub-blocks before its first image: each is a step of the "
                                                     f"decoder".strip())
            size = data[position]
            position += 1 + size
            if not size:
                break


def check_jpeg_scans(data: bytes, limits: ImageLimits, what: str = "") -> None:
    """Refuse a JPEG with more than ``limits.max_jpeg_scans`` scans before it is decoded: a few
    hundred KB of nearly empty scans would cost minutes. Scans are counted as SOS markers in the
    raw bytes (entropy-coded data never holds one; an embedded thumbnail's scans count too). So
    is one of more than ``limits.max_chunks`` segments before its first scan (10 MB of empty
    comments took PIL 2 s to open), counted as markers in those bytes."""
    if bytes(data[:3]) != _JPEG_START:
        return
    data = data if isinstance(data, bytes) else bytes(data)
    scans = data.count(_JPEG_SCAN)
    if scans > limits.max_jpeg_scans:
        raise ImageError("image_too_costly", f"{what} JPEG of {scans} scans > {limits.max_jpeg_scans}: "
                                             f"each scan decodes the whole image again".strip())
    first_scan = data.find(_JPEG_SCAN)
    markers = _JPEG_MARKER.finditer(data, 0, first_scan if first_scan >= 0 else len(data))
    if sum(1 for _ in islice(markers, limits.max_chunks + 1)) > limits.max_chunks:  # counted up to the limit
        raise ImageError("image_too_costly", f"{what} JPEG of more than {limits.max_chunks} segments before its "
                                             f"first scan: each is a step of the decoder".strip())
    check_jpeg_coefficients(data, limits, what)


def check_jpeg_coefficients(data: bytes, limits: ImageLimits, what: str = "") -> None:
    """Refuse a progressive JPEG whose decode holds more than ``JPEG_DECODED_BYTES_PER_PIXEL`` bytes
    a pixel of ``limits.max_pixels``: its image (a byte a component: PIL's mode) and every block's
    coefficients (``_JPEG_COEFFICIENT_BYTES`` a sample, each component at its sampling), read from
    its frame header (``jpeg_frame``). ImageError ``image_too_costly``."""
    frame = jpeg_frame(data, limits.max_chunks)
    if frame is None or frame[0] not in _JPEG_PROGRESSIVE or len(frame[1]) < 6:
        return
    _, height, width, count = struct.unpack_from(">BHHB", frame[1])
    sampling = [(factor >> 4, factor & 15) for factor in frame[1][7:6 + 3 * count:3]]
    if not sampling or len(sampling) != count or not all(h and v for h, v in sampling):
        return  # PIL's open refuses it
    most = max(h for h, _ in sampling) * max(v for _, v in sampling)
    samples = sum(h * v for h, v in sampling) / most  # a pixel's samples, the subsampled ones counted so
    held = width * height * (count + _JPEG_COEFFICIENT_BYTES * samples)
    if held > JPEG_DECODED_BYTES_PER_PIXEL * limits.max_pixels:
        raise ImageError("image_too_costly", f"{what} progressive JPEG of {width}x{height} in {count} components: "
                                             f"its decoder holds every block's coefficients besides the image, "
                                             f"{held / (1 << 20):.0f} MiB, over {JPEG_DECODED_BYTES_PER_PIXEL} bytes a "
                                             f"pixel of {limits.max_pixels} pixels (convert it to baseline)".strip())


def jpeg_frame(data: bytes, most_steps: int) -> tuple[int, bytes] | None:
    """(marker, payload) of a JPEG stream's first frame header (``JPEG_FRAME_MARKERS``), walking at
    most ``most_steps`` segments before it; None for another stream, or one cut short before it."""
    if bytes(data[:2]) != b"\xff\xd8":
        return None
    position, end = 2, len(data)
    for _ in range(most_steps):
        if position + 4 > end or data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte before the marker
            position += 1
            continue
        length = struct.unpack_from(">H", data, position + 2)[0]
        if marker in JPEG_FRAME_MARKERS:
            return marker, bytes(data[position + 4:position + 2 + length])
        position += 2 + length
    return None


# TIFF value types PIL turns into one Python object per value (the byte types become one bytes object)
_TIFF_NUMBER_TYPES = frozenset({3, 4, 5, 8, 9, 10, 11, 12, 13, 16, 17, 18})
_TIFF_SIZE_TAGS = (256, 257, 322, 323)  # ImageWidth, ImageLength, TileWidth, TileLength
# A tile may outsize a small image (256 x 256 tiles are a common default), but libtiff decodes a
# whole tile at a time: a 1 MB file of 64 x 64 pixels in one 32768 x 32768 tile took 1 GiB and 3 s
_TIFF_TILE_PIXELS = 1 << 20
# By magic: byte order, directory offset and entry count types, entry size, entry layout
_TIFF_LAYOUTS = {b"II*\x00": ("<", "I", "H", 12, "HHI"), b"MM\x00*": (">", "I", "H", 12, "HHI"),  # classic
                 b"II+\x00": ("<", "Q", "Q", 20, "HHQ"), b"MM\x00+": (">", "Q", "Q", 20, "HHQ")}  # BigTIFF


def check_tiff_tags(data: bytes, limits: ImageLimits, what: str = "") -> None:
    """Refuse a TIFF whose first directory holds a numeric tag of more than ``limits.max_chunks``
    values before PIL reads it: PIL makes each value a Python object while opening the file (a
    40 MB file of five million strip offsets took 12 s and 1.9 GB). Strips and tiles are the tags
    that grow with an image: a few thousand for one within the pixel budget. Refuse too a tile
    larger than the image and than ``_TIFF_TILE_PIXELS``: it is decoded whole."""
    layout = _TIFF_LAYOUTS.get(bytes(data[:4]))
    if layout is None:
        return
    order, offset_type, count_type, entry_size, entry = layout
    offset_at = 4 if offset_type == "I" else 8
    try:
        (directory,) = struct.unpack_from(order + offset_type, data, offset_at)
        (entries,) = struct.unpack_from(order + count_type, data, directory)
    except struct.error:
        return  # a header cut short: PIL's open says so
    first, value_at = directory + struct.calcsize(order + count_type), struct.calcsize(order + entry)
    inline = {3: "H", 4: "I", **({16: "Q"} if entry_size == 20 else {})}  # one value held in the entry itself
    sizes: dict[int, int] = {}
    for index in range(min(entries, max(0, (len(data) - first) // entry_size))):
        tag, kind, values = struct.unpack_from(order + entry, data, first + index * entry_size)
        if kind in _TIFF_NUMBER_TYPES and values > limits.max_chunks:
            raise ImageError("image_too_costly", f"{what} TIFF tag {tag} of {values} values > {limits.max_chunks}: "
                                                 f"each is read into a Python object".strip())
        if tag in _TIFF_SIZE_TAGS and values == 1 and kind in inline:
            (sizes[tag],) = struct.unpack_from(order + inline[kind], data, first + index * entry_size + value_at)
    width, height, tile_width, tile_length = (sizes.get(tag, 0) for tag in _TIFF_SIZE_TAGS)
    if tile_width * tile_length > max(width * height, _TIFF_TILE_PIXELS):
        raise ImageError("image_too_costly", f"{what} TIFF tiles of {tile_width}x{tile_length} for an image of "
                                             f"{width}x{height}: the decoder fills a whole tile".strip())


def without_address(message: str) -> str:
    """``message`` without the memory addresses PIL puts in it ("<_io.BytesIO object at 0x7f...>"),
    so that a quarantine table is the same on every run."""
    return _ADDRESS.sub("", message)


def check_pixels(width: int, height: int, limits: ImageLimits, frames: int = 1, what: str = "header") -> None:
    """The decompression-bomb guard: ours, and PIL's (which a decode would hit while opening)."""
    pixels = width * height * max(frames, 1)
    shape = f"{width}x{height}" + (f"x{frames} frames" if frames > 1 else "")
    if pixels > limits.max_pixels:
        raise ImageError("image_too_large", f"{what} says {shape} > {limits.max_pixels} pixels")
    if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
        raise ImageError("image_too_large", f"{what} says {shape} > PIL's {Image.MAX_IMAGE_PIXELS} pixels")
