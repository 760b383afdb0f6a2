"""Image bytes: inspection within a cost bound, checked to decode to what the model will see.

Stored images keep their original bytes (JPEG, PNG, 16-bit PNG, TIFF...); ``pixels.model_image``
turns them into what the model sees. DICOM and DeepLesion's 16-bit PNG are converted to 8-bit PNG
by the adapters (``pixels.dicom_entry``, ``pixels.png16_entry``, re-exported here). Every entry
follows the sample contract: {bytes, path, width, height, sha256}.

The cost of inspecting one file is bounded before any pixel is decoded: the header's size against
``ImageLimits.max_pixels`` (``image_limits``), a PNG's pixel stream inflated up to the size its
header declares and no further (``pixel_stream_fault``), its text and ICC chunks within PIL's own
bounds.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import warnings
import zlib
from collections import OrderedDict

from deflate import DeflateError
from deflate import crc32 as _crc32  # libdeflate's CRC-32: the same values as zlib's, faster
from deflate import zlib_decompress as _whole_inflate
from PIL import Image

from medmo_pipeline.data.dicom import is_dicom, read_dicom
from medmo_pipeline.data.image_limits import (
    EXTENSION_FORMATS,
    IMAGE_FORMATS,
    MAX_TEXT_CHUNK,
    MAX_TEXT_MEMORY,
    PNG_DECODED_BYTES_PER_PIXEL,
    ImageError,
    ImageLimits,
    check_decode_cost,
    check_exif_size,
    check_image_bytes,
    check_pixels,
    decoder_error,
    limits_in_force,
    open_image,
    without_address,
)
from medmo_pipeline.data.pixels import (  # noqa: F401 - the adapters' conversions, re-exported
    dicom_entry,
    exif_orientation,
    full_range_window,
    png16_entry,
    png_entry,
    window_to_uint8,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}  # by colour type
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_FILTER_TYPES = bytes(range(5))  # the scanline filters PNG defines
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
PNG_HEADER_END = 33  # signature + IHDR chunk
TEXT_KINDS = (b"tEXt", b"zTXt", b"iTXt", b"iCCP")  # what PIL reads (and inflates) beside the pixels
EXIF_KIND = b"eXIf"
# Ancillary chunks PIL reads and refuses when short ("Truncated gAMA chunk"): the least length of
# each; a tRNS chunk's by colour type (grey: one sample, RGB: three), and a palette's at most 256
# entries (PIL's conversion of a longer one fails: "palette index out of range")
PIL_LEAST_LENGTH = {b"gAMA": 4, b"cHRM": 32, b"sRGB": 1, b"pHYs": 9}
TRNS_LEAST_LENGTH = {0: 2, 2: 6}
TRNS_MOST_PALETTE = 256
PLTE_MOST_ENTRIES = 256  # PIL: "invalid palette size" past it
_CHUNK_TYPE = re.compile(rb"\w{4}", re.ASCII)  # PIL's test of a chunk type (``PngImagePlugin.is_cid``)
# Animated PNG: PIL checks its frames' sequence and bounds against the image when it opens the file;
# these PNGs are decoded by PIL to be sure
APNG_KINDS = (b"acTL", b"fcTL", b"fdAT")
# The text keywords PIL reads an EXIF orientation from (``Image.getexif``: an EXIF block, ImageMagick's
# hex profile, XMP), besides the eXIf chunk
ORIENTING_KEYWORDS = frozenset({b"exif", b"Raw profile type exif", b"XML:com.adobe.xmp", b"xmp"})
_LONGEST_KEYWORD = max(map(len, ORIENTING_KEYWORDS))
_INFLATE_PIECE = 1 << 22  # a PNG's pixel stream is inflated this many bytes at a time
WHOLE_INFLATE_LIMIT = 1 << 24  # larger pixel streams are inflated in pieces, never held whole
_U32 = struct.Struct(">I")
_CHUNK_HEAD = struct.Struct(">I4s")
_IHDR = struct.Struct(">IIBBBBB")
_IEND_CHUNK = b"\x00\x00\x00\x00IEND" + struct.pack(">I", zlib.crc32(b"IEND"))  # length 0, type, CRC
# The extensions of each format, to settle the usual "the name says what the content is" at once.
_SUFFIXES = {fmt: tuple(suffix for suffix, of in EXTENSION_FORMATS.items() if of == fmt)
             for fmt in EXTENSION_FORMATS.values()}


def inspect_image(data: bytes, limits: ImageLimits = ImageLimits()) -> tuple[int, int, str]:
    """Check ``data`` and return (width, height, format) as the model will see it, or raise ImageError.

    The header's size is checked against ``limits.max_pixels`` before any pixel is decoded, so a
    small file claiming 50000 x 50000 costs nothing (PIL's own bomb check is turned into an error too).
    PNG gets ``verify_png`` (structure, CRCs, text chunks, the pixel stream inflated within its
    declared size) unless ``limits.decode_png``; every other format is decoded fully, its size
    read after the EXIF orientation. DICOM bytes are refused: adapters convert DICOM to PNG.
    """
    if not data:
        raise ImageError("image_empty", "zero bytes")
    check_image_bytes(len(data), limits)
    if data.startswith(PNG_SIGNATURE) and not limits.decode_png:
        (width, height), fmt = verify_png(data, limits), "PNG"
    elif is_dicom(data):
        read_dicom(data, limits)  # the reason it cannot be read, if it cannot
        raise ImageError("image_undecodable", "DICOM bytes as an image: the adapter converts DICOM to PNG "
                                              "(dicom_entry)")
    else:
        width, height, fmt = _decode(data, limits)
    check_shape(width, height, limits)
    return width, height, fmt


def check_shape(width: int, height: int, limits: ImageLimits) -> None:
    """ImageError for a side under ``limits.min_side`` or a shape over ``limits.max_aspect_ratio``."""
    if min(width, height) < limits.min_side:
        raise ImageError("image_too_small", f"{width}x{height}, min side {limits.min_side}")
    if max(width, height) > limits.max_aspect_ratio * min(width, height):
        raise ImageError("image_aspect_ratio", f"{width}x{height} exceeds {limits.max_aspect_ratio}:1")


def verify_png(data: bytes, limits: ImageLimits = ImageLimits()) -> tuple[int, int]:
    """(width, height) of a PNG after checking that PIL decodes it, at C speed and bounded cost.

    A valid IHDR (size, bit depth for the colour type, methods), the pixel count against the
    limits, then every chunk in place with a matching CRC-32, at least one IDAT, and an IEND (bytes
    after it are ignored, as PIL does); text and ICC chunks within PIL's bounds (stored and inflated:
    ``MAX_TEXT_CHUNK`` each, ``MAX_TEXT_MEMORY`` together); the pixel stream inflated piece by piece
    to exactly the size the header declares, with valid row filters (``pixel_stream_fault``). A PNG
    carrying an orientation PIL may read (an eXIf chunk, within ``MAX_EXIF_BYTES``, or a text chunk
    of ``ORIENTING_KEYWORDS``) is sized as the decoder turns it (decoded, as the decoder does, when
    such a chunk follows the pixels: PIL reads it only then); ancillary chunks PIL refuses when
    short are held to its lengths (``PIL_LEAST_LENGTH``, tRNS), and an animated PNG is decoded by PIL.
    Raises ImageError: ``image_undecodable`` when the header cannot be read (as PIL's open would), a
    CRC fails or a stream does not inflate as declared, ``image_truncated`` when the data ends early.
    """
    view, end = memoryview(data), len(data)
    if end < PNG_HEADER_END or data[12:16] != b"IHDR" or _U32.unpack_from(data, 8)[0] != 13:
        raise ImageError("image_undecodable", "PNG signature without a complete IHDR chunk")
    if _crc32(view[12:29]) != _U32.unpack_from(data, 29)[0]:  # before trusting the size it states
        raise ImageError("image_undecodable", "IHDR chunk: CRC mismatch (corrupt header)")
    width, height, depth, colour, compression, filtering, interlace = _IHDR.unpack_from(data, 16)
    if (not 0 < width < 2**31 or not 0 < height < 2**31 or depth not in PNG_DEPTHS.get(colour, ())
            or compression or filtering or interlace > 1):
        raise ImageError("image_undecodable", f"invalid IHDR: {width}x{height}, depth {depth}, colour type "
                                              f"{colour}, methods {compression}/{filtering}/{interlace}")
    check_pixels(width, height, limits)
    position, pixel_spans, text_bytes, chunks, orienting, animated = PNG_HEADER_END, [], 0, 1, False, False
    late = False  # an orientation after the pixels: PIL reads it only as it decodes them
    exif_read = False  # an EXIF block PIL reads as it opens the file (else its ``getexif`` decodes the pixels)
    pixels_ended, palette = False, colour != 3  # PIL reads the first run of IDATs; a palette image needs PLTE
    crc32, chunk_head, u32 = _crc32, _CHUNK_HEAD.unpack_from, _U32.unpack_from  # this loop runs per image
    while True:
        chunks += 1
        if chunks > limits.max_chunks:  # each chunk is a step of Python in PIL's decoder
            raise ImageError("image_too_costly", f"PNG of more than {limits.max_chunks} chunks")
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
        if (fault := _structure_fault(kind, length, colour, palette, pixel_spans)) is not None:
            raise ImageError("image_undecodable", f"{kind!r} chunk at byte {position}: {fault}")
        if kind == b"IDAT":
            if not pixels_ended:  # PIL's pixel data ends at the first chunk after an IDAT that is not one
                pixel_spans.append((position + 8, stop - 4))
        else:
            pixels_ended = bool(pixel_spans)
        if kind == b"PLTE":
            palette = True
        elif kind in TEXT_KINDS:
            text_bytes += _text_chunk_size(kind, view[position + 8:stop - 4], position)
            if text_bytes > MAX_TEXT_MEMORY:
                raise ImageError("image_undecodable", f"text chunks hold over {MAX_TEXT_MEMORY} bytes")
            if (keyword := _keyword(view, position + 8, stop - 4)) in ORIENTING_KEYWORDS:
                orienting, late = True, late or bool(pixel_spans)
                exif_read |= keyword == b"exif" and kind != b"iTXt" and not pixel_spans  # iTXt: not always
        elif kind == EXIF_KIND:
            check_exif_size(length, f"PNG eXIf chunk at byte {position}")
            orienting, late, exif_read = True, late or bool(pixel_spans), exif_read or not pixel_spans
        elif kind in APNG_KINDS:
            animated = True
        elif (fault := _ancillary_fault(kind, length, colour)) is not None:
            raise ImageError("image_undecodable", f"{kind!r} chunk at byte {position}: {fault}")
        position = stop
    if not pixel_spans:
        raise ImageError("image_undecodable", "PNG without an IDAT chunk")
    bits = depth * PNG_CHANNELS[colour]
    decoded = animated or late or (orienting and not exif_read)  # by PIL below (its getexif loads the pixels)
    if decoded and width * height * bits > 8 * PNG_DECODED_BYTES_PER_PIXEL * limits.max_pixels:
        # inflated here and again by PIL's decode below: refused before either, as its size declares
        why = "animated" if animated else "its orientation read by PIL with its pixels"
        raise ImageError("image_too_costly", f"PNG of {width}x{height} at {bits} bits a pixel, {why}, so decoded by "
                                             f"PIL to be checked: over {PNG_DECODED_BYTES_PER_PIXEL} bytes a pixel "
                                             f"of {limits.max_pixels} pixels")
    fault = pixel_stream_fault(view, pixel_spans, width, height, depth, colour, interlace)
    if fault:
        raise ImageError("image_undecodable", f"pixel data: {fault}")
    if animated or late:  # PIL's checks of the frames and decode of the first; or, as the decoder does,
        return _decode(data, limits)[:2]  # the pixels and the chunks after them read, then the orientation
    if orienting:  # an orientation PIL may read: the size as the decoder turns the image
        return _oriented(open_image(data, limits))
    return width, height


def _structure_fault(kind: bytes, length: int, colour: int, palette: bool, pixels: list) -> str | None:
    """Why PIL cannot use a PNG for this chunk (what ``png_batch`` checks too), or None: a type that
    is not four letters, digits or '_' (PIL reads no further), a second IHDR (PIL sizes the image
    by the last), a palette of more than 256 entries, pixels of a palette image before its palette."""
    if not _CHUNK_TYPE.fullmatch(kind):
        return "not a chunk type"
    if kind == b"IHDR":
        return "a second IHDR"
    if kind == b"PLTE" and colour == 3 and length // 3 > PLTE_MOST_ENTRIES and not pixels:
        return f"a palette of {length // 3} entries, over {PLTE_MOST_ENTRIES}"
    if kind == b"IDAT" and not palette:
        return "pixels of a palette image before any PLTE chunk"
    return None


def _ancillary_fault(kind: bytes, length: int, colour: int) -> str | None:
    """Why PIL refuses a chunk of ``kind`` and ``length`` in a PNG of ``colour`` type, or None."""
    least = TRNS_LEAST_LENGTH.get(colour, 0) if kind == b"tRNS" else PIL_LEAST_LENGTH.get(kind, 0)
    if length < least:
        return f"{length} bytes, fewer than the {least} it holds"
    if kind == b"tRNS" and colour == 3 and length > TRNS_MOST_PALETTE:
        return f"{length} palette entries, over the {TRNS_MOST_PALETTE} a palette has"
    return None


def _keyword(view: memoryview, start: int, stop: int) -> bytes:
    """A text chunk's keyword (up to its first NUL, as PIL splits it), when it may be one of
    ``ORIENTING_KEYWORDS`` (a longer one is returned cut)."""
    return bytes(view[start:min(stop, start + _LONGEST_KEYWORD + 1)]).split(b"\0", 1)[0]


def _text_chunk_size(kind: bytes, body: memoryview, position: int) -> int:
    """The bytes a text or ICC chunk holds once PIL reads it (inflated where PIL inflates it); raises
    ImageError where PIL's reader fails on it: beyond ``MAX_TEXT_CHUNK`` (having inflated no more
    than that), an iCCP chunk without a NUL-ended name and compression method 0, a zTXt chunk of
    another method (PIL: "Unknown compression method")."""
    where = f"{kind!r} chunk at byte {position}"
    if len(body) > MAX_TEXT_CHUNK:
        raise ImageError("image_undecodable", f"{where}: {len(body)} bytes > {MAX_TEXT_CHUNK}")
    raw = body.tobytes()
    name_end = raw.find(b"\0")
    if kind == b"tEXt" or (name_end < 0 and kind != b"iCCP"):  # PIL: text without a NUL is a bare keyword
        return len(raw)
    if kind == b"iTXt":  # keyword \0 flag method language \0 translated keyword \0 text
        language_end = raw.find(b"\0", name_end + 3)
        start = raw.find(b"\0", language_end + 1) + 1 if language_end >= 0 else 0
        if not start or len(raw) < name_end + 3 or not raw[name_end + 1] or raw[name_end + 2]:
            return len(raw)  # PIL inflates only a compressed (flag set) method-0 text after both NULs
    else:  # zTXt and iCCP: name \0 method, then the stream. PIL needs method 0 in an iCCP chunk (reading
        # the name's first byte as it when there is no NUL) and in a zTXt chunk that has a method byte
        method = raw[name_end + 1:name_end + 2]
        if method != b"\0" and (method or kind == b"iCCP"):
            fault = ("no NUL after its name" if name_end < 0 else "no compression method" if not method
                     else f"compression method {method[0]}, PIL reads only 0")
            raise ImageError("image_undecodable", f"{where}: {fault}")
        start = name_end + 2
    inflater = zlib.decompressobj()
    try:  # as PIL's ``_safe_zlib_decompress``: at most MAX_TEXT_CHUNK bytes, refused if input is left
        size = len(inflater.decompress(raw[start:], MAX_TEXT_CHUNK))
    except zlib.error as error:
        raise ImageError("image_undecodable", f"{where}: {error}") from None
    if inflater.unconsumed_tail:
        raise ImageError("image_undecodable", f"{where} inflates beyond {MAX_TEXT_CHUNK} bytes")
    return len(raw) + size


def pixel_stream_fault(view: memoryview, spans: list[tuple[int, int]], width: int, height: int, depth: int,
                       colour: int, interlace: int) -> str:
    """What is wrong with a PNG's pixel stream (the IDAT payloads at ``spans`` of ``view``), or ''.

    The stream must inflate to exactly the filtered size the header declares, and each scanline's
    filter type be 0-4 (an interlaced image's: each row of each Adam7 pass, ``adam7_passes``), as
    PIL's decoder needs. A stream of up to ``WHOLE_INFLATE_LIMIT`` bytes is first inflated in one
    call by libdeflate (into a buffer of the declared size, faster than zlib; see
    ``whole_stream_fault``); whatever that leaves (including streams PIL would still read, such as
    one without its Adler-32) and larger streams are inflated by zlib ``_INFLATE_PIECE`` bytes at a
    time, never past the declared size, so memory stays bounded.
    """
    bits = depth * PNG_CHANNELS[colour]
    if interlace:
        stride, passes = 0, adam7_passes(width, height, bits)
        expected = passes[-1][1]
    else:
        stride, passes = 1 + -(-width * bits // 8), ()
        expected = height * stride
    if expected <= WHOLE_INFLATE_LIMIT:
        fault = whole_stream_fault(view, spans, expected, stride, passes)
        if fault is not None:
            return fault
    inflater, produced = zlib.decompressobj(), 0
    try:
        for low, high in spans:
            pending = view[low:high]
            while pending:
                out = inflater.decompress(pending, min(_INFLATE_PIECE, expected - produced + 1))
                if (stride and out[(-produced) % stride::stride].translate(None, _FILTER_TYPES)
                        or passes and _unknown_filter(out, produced, passes)):
                    return "a scanline with an unknown filter type"
                produced += len(out)
                if produced > expected:
                    return f"inflates beyond the {expected} bytes its header declares"
                pending = inflater.unconsumed_tail
                if inflater.eof:
                    break
    except zlib.error as error:
        return f"zlib: {error}"
    if produced < expected:
        return f"inflates to {produced} of the {expected} bytes its header declares"
    return ""


def whole_stream_fault(view: memoryview, spans: list[tuple[int, int]], expected: int, stride: int,
                       passes: tuple[tuple[int, int, int], ...] = ()) -> str | None:
    """``pixel_stream_fault`` from one libdeflate call, or None where zlib's piecewise inflate must
    decide: a stream libdeflate does not accept (zlib accepts some of them, as PIL does, and names
    the fault of the others), or one whose header declares a window smaller than 32 KiB and than
    the image (zlib holds only that window; libdeflate does not check distances against it). The
    scanlines are ``stride`` bytes each, or for an interlaced image (``stride`` 0) ``adam7_passes``'."""
    stream = view[spans[0][0]:spans[0][1]] if len(spans) == 1 else b"".join(view[a:b] for a, b in spans)
    window_bits = stream[0] >> 4 if len(stream) else 0
    if window_bits != 7 and 1 << (window_bits + 8) < expected:
        return None
    try:
        pixels = _whole_inflate(stream, expected)  # never writes past ``expected`` bytes
    except DeflateError:
        return None
    if len(pixels) != expected:  # a valid stream, its Adler-32 checked, but short
        return None
    if stride and pixels[::stride].translate(None, _FILTER_TYPES):  # a byte left: not a filter type 0-4
        return "a scanline with an unknown filter type"
    if passes and _unknown_filter(pixels, 0, passes):
        return "a scanline with an unknown filter type"
    return ""


def adam7_passes(width: int, height: int, bits: int) -> tuple[tuple[int, int, int], ...]:
    """Where an interlaced image's rows lie in its inflated pixel stream: (start, stop, row bytes,
    filter byte included) of each Adam7 pass that holds pixels (the decoder skips the empty ones),
    for ``bits`` bits per pixel."""
    passes, start = [], 0
    for x0, y0, dx, dy in _ADAM7:
        columns, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if columns > 0 and rows > 0:
            row = 1 + -(-columns * bits // 8)
            passes.append((start, start + rows * row, row))
            start += rows * row
    return tuple(passes)


def _unknown_filter(piece: bytes, at: int, passes: tuple[tuple[int, int, int], ...]) -> bool:
    """Whether ``piece``, the inflated stream's bytes from byte ``at`` on, holds a row's filter
    byte (a row of one of ``passes``, from ``adam7_passes``) that is not a filter type 0-4."""
    end = at + len(piece)
    for start, stop, row in passes:
        low, high = max(start, at), min(stop, end)
        if low < high:
            first = start + -(-(low - start) // row) * row  # its first row to start at ``low`` or later
            if piece[first - at:high - at:row].translate(None, _FILTER_TYPES):
                return True
    return False


def _decode(data: bytes, limits: ImageLimits) -> tuple[int, int, str]:
    """Decode ``data`` fully with PIL (header size checked first): (width, height, format)."""
    image = open_image(data, limits)
    # the shape the header declares, before the decode: an EXIF turn changes neither side's length
    # nor the ratio, and a 640 x 99000 TIFF in one-row strips was decoded (0.4 s, 100 MiB) to be refused
    check_shape(*image.size, limits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # PIL's notes on odd chunks, as when it opened the file
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image.load()
        except Exception as error:  # noqa: BLE001 - decoders raise many types on bad data
            reason = "image_truncated" if _looks_truncated(error) else "image_undecodable"
            raise decoder_error(error, without_address(f"{type(error).__name__}: {error}"), reason) from None
    transparency = image.info.get("transparency")  # a palette's alphas, read with the pixels (tRNS)
    if image.mode == "P" and isinstance(transparency, bytes) and len(transparency) > TRNS_MOST_PALETTE:
        # PIL decodes it, but the decoder's conversion to RGB fails ("palette index out of range"):
        # ``_ancillary_fault``'s rule, for a PNG decoded whole here (``limits.decode_png``)
        raise ImageError("image_undecodable", f"{len(transparency)} palette alphas, over the {TRNS_MOST_PALETTE} "
                                              f"a palette has")
    width, height = _oriented(image)
    # PIL names a JPEG carrying a multi-picture index (a camera's MPO) "MPO"; its first picture, the one
    # decoded, is a JPEG, as its content says (``content_format``): "MPO" contradicted its .jpg name
    return width, height, "JPEG" if image.format == "MPO" else image.format or ""


def _oriented(image: Image.Image) -> tuple[int, int]:
    """(width, height) as the model sees the image: after its EXIF orientation (5-8 turn it)."""
    width, height = image.size
    return (height, width) if exif_orientation(image) in (5, 6, 7, 8) else (width, height)


def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header only; (0, 0) when the header is unreadable (curation decides)."""
    try:
        check_decode_cost(data, limits_in_force())  # PIL's open alone can cost seconds on a hostile file
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _oriented(Image.open(io.BytesIO(data), formats=IMAGE_FORMATS))
    except Exception:  # noqa: BLE001 - any unreadable (or too costly) header means "unknown size" here
        return 0, 0


def extension_format(path: str) -> str | None:
    """The format a file name's extension promises, or None when it promises nothing we check."""
    dot = path.rfind(".") if path else -1  # string ops, not Path(): this runs once per image
    if dot <= 0 or path[dot - 1] == "/":
        return None
    return EXTENSION_FORMATS.get(path[dot:].lower())  # a suffix holding "/" matches no key


# The first bytes of each format an image file may hold (WebP: "RIFF", its size, then "WEBP")
_MAGIC = ((PNG_SIGNATURE, "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
          (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"II+\x00", "TIFF"), (b"MM\x00+", "TIFF"))


def content_format(head: bytes) -> str:
    """The format a file's first bytes (at least 12; 132 to tell DICOM) say it is: one of
    ``IMAGE_FORMATS``, "DICOM", or "" when they say none. DICOM first: its 128-byte preamble may
    itself be a TIFF header (a file both readers open)."""
    if is_dicom(head):
        return "DICOM"
    fmt = next((name for magic, name in _MAGIC if head.startswith(magic)), "")
    return fmt or ("WEBP" if head[8:12] == b"WEBP" and head.startswith(b"RIFF") else "")


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


INSPECT_CACHE = 4096  # image-check results by sha256: VQA sets ask many questions of one image


class InspectCache:
    """``inspect_image`` with a small LRU cache by sha256 (the same image across many questions)."""

    def __init__(self, limits: ImageLimits, size: int = INSPECT_CACHE):
        self.limits, self.size = limits, size
        self.cache: OrderedDict[str, tuple[int, int, str] | ImageError] = OrderedDict()

    def inspect(self, data: bytes | memoryview, sha256: str,
                known: tuple[int, int, str] | ImageError | None = None) -> tuple[int, int, str] | ImageError:
        """(width, height, format), or the ImageError (returned, not raised: the batch path only
        needs to know that the image failed; ``check_row`` reports why). ``known`` is what
        ``inspect_image`` gave for these bytes elsewhere (an image-check worker): kept, not redone."""
        result = self.cache.get(sha256)
        if result is None:
            if known is not None:
                result = known
            else:
                try:
                    result = inspect_image(bytes(data), self.limits)  # copied only when not cached
                except ImageError as error:  # a bare copy: the error's traceback and context hold frames
                    result = ImageError(error.reason, error.detail)  # and through them the caller's data
            self.cache[sha256] = result
            if len(self.cache) > self.size:
                self.cache.popitem(last=False)
        else:
            self.cache.move_to_end(sha256)
        return result


def _looks_truncated(error: Exception) -> bool:
    text = str(error).lower()
    return isinstance(error, (EOFError, SyntaxError)) or "truncated" in text or "end of file" in text
