"""Hostile files, made at test time in a few milliseconds each (nothing big is committed).

Large declared contents are deflate streams of zeros built from one compressed piece repeated
(each piece ends with a full flush, so it refers to nothing before it): a 162 MB pixel stream or a
1 GiB text chunk costs about a megabyte and no compression time.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

PIECE = 1 << 20
_ZEROS = bytes(PIECE)


def _raw_deflate(data: bytes, *, final: bool) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH)


_ZERO_PIECE = _raw_deflate(_ZEROS, final=False)


def deflated_zeros(prefix: bytes, count: int, *, zlib_wrapper: bool = True) -> bytes:
    """A deflate stream of ``prefix`` then ``count`` zero bytes (zlib-wrapped with its Adler-32, or raw)."""
    body = (_raw_deflate(prefix, final=False) + _ZERO_PIECE * (count // PIECE)
            + _raw_deflate(bytes(count % PIECE), final=True))
    if not zlib_wrapper:
        return body
    low, high = zlib.adler32(prefix) & 0xFFFF, zlib.adler32(prefix) >> 16
    high = (high + count * low) % 65521  # zeros add nothing to the low sum, ``low`` per byte to the high
    return b"\x78\xda" + body + struct.pack(">I", high << 16 | low)


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width: int, height: int, idat: bytes, *, depth: int = 8, colour: int = 0, extra: bytes = b"") -> bytes:
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + extra + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def huge_png16(side: int = 9000) -> bytes:
    """A valid 16-bit greyscale PNG of side x side black pixels (162 MB decoded at 9000)."""
    return png(side, side, deflated_zeros(b"", side * (1 + 2 * side)), depth=16)


def random_idat_png(seed: int = 0) -> bytes:
    """A PNG whose IDAT is random bytes under a valid CRC."""
    return png(64, 64, np.random.default_rng(seed).integers(0, 256, 4000, dtype=np.uint8).tobytes())


def overflowing_idat_png() -> bytes:
    """A 64 x 64 PNG whose pixel stream inflates to 1 GiB."""
    return png(64, 64, deflated_zeros(b"", 1 << 30))


def ztxt_png(inflated: int = 1 << 30) -> bytes:
    """A valid small PNG with a zTXt chunk inflating to ``inflated`` bytes."""
    good = plain_png(seed=9)
    text = chunk(b"zTXt", b"Comment\x00\x00" + deflated_zeros(b"", inflated))
    return good[:33] + text + good[33:]


def plain_png(width: int = 48, height: int = 40, seed: int = 0, mode: str = "L") -> bytes:
    rng = np.random.default_rng(seed)
    shape = (height, width) if mode == "L" else (height, width, 3)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def plain_jpeg(width: int = 48, height: int = 40, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(plain_png(width, height, seed, "RGB"))).save(buffer, format="JPEG")
    return buffer.getvalue()


def many_chunks_png(chunks: int = 800_000) -> bytes:
    """A valid 64 x 64 PNG with ``chunks`` empty ancillary chunks before its pixels (9.6 MB at
    800,000): PIL's decoder steps through each in Python (2 s)."""
    pixels = zlib.compress(b"".join(b"\x00" + bytes(range(64)) for _ in range(64)))
    return png(64, 64, pixels, extra=chunk(b"faKe", b"") * chunks)


def many_segments_jpeg(segments: int = 2_500_000) -> bytes:
    """A valid JPEG with ``segments`` empty comment segments before its frame (10 MB at 2.5M):
    PIL's open steps through each in Python (2 s)."""
    data = plain_jpeg(64, 64)
    return data[:2] + b"\xff\xfe\x00\x02" * segments + data[2:]


def many_strips_tiff(strips: int = 1_000_000, order: str = "<") -> bytes:
    """A greyscale TIFF of 4000 x 4000 pixels declaring ``strips`` strips, one byte each (8 MB at a
    million): PIL reads every offset and count into a Python int while opening it (40 MB, five
    million strips: 12 s and 1.9 GB)."""
    offsets_at = tiff_data_at(9)
    counts_at, pixels_at = offsets_at + 4 * strips, offsets_at + 8 * strips
    directory = tiff_directory([(256, 4, 1, 4000), (257, 4, 1, 4000), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
                                (273, 4, strips, offsets_at), (277, 3, 1, 1), (278, 4, 1, 1), (279, 4, strips, counts_at)],
                               order)
    return (directory + struct.pack(f"{order}{strips}I", *[pixels_at] * strips)
            + struct.pack(f"{order}{strips}I", *[1] * strips) + bytes(64))


def oversized_jpeg() -> bytes:
    """A JPEG whose frame header declares 65000 x 65000 pixels."""
    data = bytearray(plain_jpeg())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 65000, 65000)
    return bytes(data)


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _entropy_coded(bits: str) -> bytes:
    """A bit string as JPEG entropy-coded bytes: padded with ones, every 0xFF byte stuffed."""
    bits += "1" * (-len(bits) % 8)
    return bytes(int(bits[at:at + 8], 2) for at in range(0, len(bits), 8)).replace(b"\xff", b"\xff\x00")


def jpeg_scan_bomb(side: int = 4096, scans: int = 5000) -> bytes:
    """A progressive greyscale JPEG of ``side`` x ``side`` (a multiple of 1024) whose ``scans`` AC
    scans each say "every block ends here" in a few bytes (runs of 2^14 end-of-blocks): about 40
    bytes per scan, and each scan is still a pass over every block when it is decoded."""
    blocks = (side // 8) ** 2
    assert blocks % (1 << 14) == 0, "side must be a multiple of 1024"
    one_symbol = bytes([1] + [0] * 15)  # a Huffman table of one 1-bit code, '0'
    head = (b"\xff\xd8" + _segment(0xDB, b"\x00" + b"\x01" * 64)
            + _segment(0xC2, struct.pack(">BHHB", 8, side, side, 1) + b"\x01\x11\x00")  # progressive frame
            + _segment(0xC4, b"\x00" + one_symbol + b"\x00")  # DC table: category 0 only
            + _segment(0xC4, b"\x10" + one_symbol + b"\xe0"))  # AC table: EOB run of 2^14 + 14 bits
    dc_scan = _segment(0xDA, b"\x01\x01\x00\x00\x00\x00") + _entropy_coded("0" * blocks)
    ac_scan = _segment(0xDA, b"\x01\x01\x00\x01\x3f\x00") + _entropy_coded("0" * 15 * (blocks >> 14))
    return head + dc_scan + ac_scan * scans + b"\xff\xd9"


def exif_block(orientation: int = 6, values: int = 1, padding: int = 0) -> bytes:
    """A little-endian EXIF (TIFF) block whose first directory holds the orientation tag with
    ``values`` values (a real one has 1), and ``padding`` bytes of undefined data after it."""
    data_at = 8 + 2 + 12 * 2 + 4
    orientation_field = (struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) if values == 1
                         else struct.pack("<HHII", 0x0112, 3, values, data_at))
    payload = struct.pack("<H", orientation) * values if values > 1 else b""
    filler = struct.pack("<HHII", 0x9286, 7, padding, data_at + len(payload)) if padding else \
        struct.pack("<HHI4s", 0x9286, 7, 4, b"none")  # a UserComment
    return (b"II*\x00" + struct.pack("<IH", 8, 2) + orientation_field + filler + struct.pack("<I", 0)
            + payload + bytes(padding))


def exif_png(exif: bytes, *, kind: bytes = b"eXIf", keyword: bytes = b"", after_pixels: bool = False,
             width: int = 48, height: int = 24) -> bytes:
    """A greyscale PNG carrying ``exif`` in an eXIf chunk, or in a text chunk of ``kind`` under
    ``keyword`` (``exif``'s bytes as they are: the caller writes ImageMagick's hex profile or XMP),
    before its pixels or after them."""
    pixels = np.random.default_rng(width).integers(0, 256, (height, width), dtype=np.uint8)
    filtered = b"".join(b"\x00" + row.tobytes() for row in pixels)
    if kind == b"eXIf":
        carried = chunk(b"eXIf", exif)
    elif kind == b"zTXt":
        carried = chunk(kind, keyword + b"\x00\x00" + zlib.compress(exif))
    elif kind == b"iTXt":
        carried = chunk(kind, keyword + b"\x00\x00\x00\x00\x00" + exif)
    else:
        carried = chunk(kind, keyword + b"\x00" + exif)
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    body = [chunk(b"IDAT", zlib.compress(filtered))]
    body = body + [carried] if after_pixels else [carried] + body
    return b"\x89PNG\r\n\x1a\n" + ihdr + b"".join(body) + chunk(b"IEND", b"")


def exif_webp(exif: bytes) -> bytes:
    """A small RGB WebP carrying ``exif`` in its EXIF chunk."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((24, 48, 3), 90, np.uint8)).save(buffer, format="WEBP", exif=b"Exif\x00\x00" + exif)
    return buffer.getvalue()


def gif_comment_blocks(sub_blocks: int = 1_000_000, size: int = 1) -> bytes:
    """A 16 x 16 GIF whose comment extension holds ``sub_blocks`` sub-blocks of ``size`` bytes."""
    buffer = io.BytesIO()
    Image.new("L", (16, 16), 7).save(buffer, format="GIF")
    data = buffer.getvalue()
    at = 13 + (3 * (2 << (data[10] & 7)) if data[10] & 0x80 else 0)  # after the global colour table
    return data[:at] + b"\x21\xfe" + (bytes([size]) + b"c" * size) * sub_blocks + b"\x00" + data[at:]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _zstd_zeros(size: int) -> bytes:
    """A zstd frame of ``size`` zero bytes in run-length blocks: 4 bytes per 128 KiB."""
    frame = bytearray(struct.pack("<IB", 0xFD2FB528, 0xE0) + struct.pack("<Q", size))  # single segment, 8-byte size
    while size:
        block, size = min(1 << 17, size), size - min(1 << 17, size)
        frame += struct.pack("<I", (0 if size else 1) | 1 << 1 | block << 3)[:3] + b"\x00"  # last?, RLE, size
    return bytes(frame)


def parquet_page_bomb(inflated: int = 700 << 20) -> bytes:
    """A Parquet file of one binary value (200 KB, zstd) whose footer is that of the honest file,
    and whose one data page declares ``inflated`` bytes and holds a zstd stream of that many zeros,
    padded by a skippable frame to the honest page's length (Arrow inflates it before it finds the
    page's levels wrong)."""
    table = pa.table({"text": pa.array([np.random.default_rng(0).bytes(200_000)], pa.binary())})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", use_dictionary=False, write_statistics=False)
    data = sink.getvalue()
    column = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).column(0)
    start, length = column.data_page_offset, column.total_compressed_size

    def header(body: int) -> bytes:  # PageHeader: DATA_PAGE, sizes, DataPageHeader(1 value, PLAIN, RLE, RLE)
        fields = [(0x15, 0), (0x15, inflated), (0x15, body)]
        page = b"".join(bytes([kind]) + _varint(value << 1) for kind, value in fields) + b"\x2c"
        return page + b"".join(b"\x15" + _varint(value << 1) for value in (1, 0, 3, 3)) + b"\x00\x00"

    page = header(0)
    for _ in range(4):  # the header's length depends on the body length it holds
        page = header(length - len(page))
    stream = _zstd_zeros(inflated)
    padding = length - len(page) - len(stream)
    return (data[:start] + page + stream + struct.pack("<II", 0x184D2A50, padding - 8) + bytes(padding - 8)
            + data[start + length:])


def icon_image() -> bytes:
    """A Windows icon: an image PIL decodes, in a format no dataset publishes."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((48, 48, 3), 90, np.uint8)).save(buffer, format="ICO")
    return buffer.getvalue()


def twelve_bit_png(seed: int = 0) -> bytes:
    """A 16-bit PNG holding 12-bit values (0-4095): a naive 8-bit conversion saturates it."""
    rng = np.random.default_rng(seed)
    values = np.clip(rng.normal(1800, 400, (40, 48)), 0, 4095).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    return buffer.getvalue()


def twelve_bit_values(alpha: bool = False, seed: int = 0) -> np.ndarray:
    """The 16-bit RGB (or RGBA) values of the 12-bit colour files below."""
    rng = np.random.default_rng(seed)
    values = np.clip(rng.normal(1800, 400, (40, 48, 3)), 0, 4095).astype(np.uint16)
    values[..., 2] //= 2  # a colour cast, to show the channels keep their balance
    return np.dstack([values, np.full((40, 48), 65535, np.uint16)]) if alpha else values


def twelve_bit_colour_png(alpha: bool = False, seed: int = 0, grey: bool = False) -> bytes:
    """A 16-bit RGB (or RGBA; or grey+alpha) PNG holding 12-bit values: PIL keeps each sample's high
    byte (0-15). Its rows use the five PNG filters in turn, each predicting from the pixel before
    (as many bytes back as a pixel holds), so a decoder reading them with the wrong pixel size fails."""
    values = twelve_bit_values(alpha, seed)
    if grey:
        values = np.dstack([values[..., 0], np.linspace(0, 65535, 48, dtype=np.uint16)[None, :].repeat(40, 0)])
    raw = values.astype(">u2").reshape(values.shape[0], -1).view(np.uint8).astype(np.int32)
    step = 2 * values.shape[2]  # bytes per pixel
    rows, above = [], np.zeros_like(raw[0])
    for index, row in enumerate(raw):
        kind = index % 5
        left, corner = np.concatenate([np.zeros(step, np.int32), row[:-step]]), \
            np.concatenate([np.zeros(step, np.int32), above[:-step]])
        paeth = left + above - corner
        pa, pb, pc = np.abs(paeth - left), np.abs(paeth - above), np.abs(paeth - corner)
        predictor = [0, left, above, (left + above) // 2,
                     np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, above, corner))][kind]
        rows.append(bytes([kind]) + ((row - predictor) % 256).astype(np.uint8).tobytes())
        above = row
    colour = 4 if grey else 6 if alpha else 2
    header = struct.pack(">IIBBBBB", 48, 40, 16, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + \
        chunk(b"IEND", b"")


def twelve_bit_colour_tiff(alpha: bool = False, order: str = "<", seed: int = 0, deflate: bool = False) -> bytes:
    """The same values as a 16-bit RGB (or RGBA) TIFF, one strip, in ``order`` byte order ("<" II,
    ">" MM); ``deflate``: the strip deflated (PIL then reads it through libtiff, which hands the
    samples over in the machine's byte order)."""
    values = twelve_bit_values(alpha, seed)
    height, width, channels = values.shape
    data = values.astype(f"{order}u2").tobytes()
    data = zlib.compress(data) if deflate else data
    bits_at = tiff_data_at(10 if alpha else 9)
    strip_at = bits_at + 2 * channels
    entries = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, channels, bits_at), (259, 3, 1, 8 if deflate else 1),
               (262, 3, 1, 2), (273, 4, 1, strip_at), (277, 3, 1, channels), (278, 3, 1, height),
               (279, 4, 1, len(data)), *([(338, 3, 1, 2)] if alpha else [])]  # 338: unassociated alpha
    return tiff_directory(entries, order) + struct.pack(f"{order}{channels}H", *[16] * channels) + data


def huge_tiff() -> bytes:
    """A little-endian TIFF whose IFD declares 60000 x 60000 8-bit pixels (one strip of 10 bytes)."""
    return tiff_directory([(256, 4, 1, 60000), (257, 4, 1, 60000), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
                           (273, 4, 1, tiff_data_at(9)), (277, 3, 1, 1), (278, 4, 1, 60000), (279, 4, 1, 10)]) + bytes(10)


def tiff_directory(entries: list[tuple[int, int, int, int]], order: str = "<") -> bytes:
    """A classic TIFF's header and its one directory (at byte 8) of (tag, type, count, value or
    offset) entries, in ``order`` ("<" II, ">" MM); a single SHORT is held at the start of its
    entry's value, as the format says. What the entries point to follows, at ``tiff_data_at``."""
    def entry(tag: int, kind: int, count: int, value: int) -> bytes:
        if kind == 3 and count == 1:
            return struct.pack(f"{order}HHIHH", tag, kind, count, value, 0)
        return struct.pack(f"{order}HHII", tag, kind, count, value)

    return ((b"II*\x00" if order == "<" else b"MM\x00*") + struct.pack(f"{order}IH", 8, len(entries))
            + b"".join(entry(*fields) for fields in entries) + struct.pack(f"{order}I", 0))


def tiff_data_at(entries: int) -> int:
    """Where the data after ``tiff_directory`` of ``entries`` entries starts."""
    return 8 + 2 + 12 * entries + 4


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH", group, element) + vr + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return struct.pack("<HH", group, element) + vr + struct.pack("<H", len(value)) + value


def _uid(text: str) -> bytes:
    raw = text.encode()
    return raw + b"\x00" * (len(raw) % 2)


def _image_elements(rows: int, columns: int, frames: int = 1, bits: int = 16, samples: int = 1) -> bytes:
    elements = [
        _element(0x0008, 0x0016, b"UI", _uid("1.2.840.10008.5.1.4.1.1.7")),
        _element(0x0008, 0x0018, b"UI", _uid("1.2.3.4")),
        _element(0x0028, 0x0002, b"US", struct.pack("<H", samples)),
        _element(0x0028, 0x0004, b"CS", b"MONOCHROME2 " if samples == 1 else b"RGB "),
    ]
    if samples > 1:  # PlanarConfiguration: samples interleaved
        elements.append(_element(0x0028, 0x0006, b"US", struct.pack("<H", 0)))
    if frames > 1:
        elements.append(_element(0x0028, 0x0008, b"IS", str(frames).encode().ljust(4)))
    elements += [
        _element(0x0028, 0x0010, b"US", struct.pack("<H", rows)),
        _element(0x0028, 0x0011, b"US", struct.pack("<H", columns)),
        _element(0x0028, 0x0100, b"US", struct.pack("<H", bits)),
        _element(0x0028, 0x0101, b"US", struct.pack("<H", bits)),
        _element(0x0028, 0x0102, b"US", struct.pack("<H", bits - 1)),
        _element(0x0028, 0x0103, b"US", struct.pack("<H", 0)),
    ]
    return b"".join(elements)


def _dicom_file(syntax: str, dataset: bytes) -> bytes:
    meta = (_element(0x0002, 0x0001, b"OB", b"\x00\x01")
            + _element(0x0002, 0x0002, b"UI", _uid("1.2.840.10008.5.1.4.1.1.7"))
            + _element(0x0002, 0x0003, b"UI", _uid("1.2.3.4"))
            + _element(0x0002, 0x0010, b"UI", _uid(syntax)))
    return bytes(128) + b"DICM" + _element(0x0002, 0x0000, b"UL", struct.pack("<I", len(meta))) + meta + dataset


def windowed_dicom(center: bytes, width: bytes, vr: bytes = b"DS") -> bytes:
    """A 64 x 64 16-bit DICOM (a ramp 0-4095) whose WindowCenter and WindowWidth hold ``center`` and
    ``width`` as ``vr`` (UN takes values past DS's 64 KiB: a list of millions of windows)."""
    pixels = (np.arange(64 * 64, dtype=np.uint16) % 4096).tobytes()
    return _dicom_file("1.2.840.10008.1.2.1", _image_elements(64, 64) + _element(0x0028, 0x1050, vr, center)
                       + _element(0x0028, 0x1051, vr, width) + _element(0x7FE0, 0x0010, b"OW", pixels))


def many_elements_dicom(elements: int = 1_000_000) -> bytes:
    """A 64 x 64 DICOM whose data set holds ``elements`` empty private elements (12 MB at a
    million): pydicom makes an object of each while reading it (9 s and 680 MiB)."""
    private = b"".join(struct.pack("<HH", 0x0009 + 2 * (index // 0xF000), 0x1000 + index % 0xF000) + b"UN\0\0"
                       + bytes(4) for index in range(elements))
    pixels = np.zeros(64 * 64, np.uint16).tobytes()
    return _dicom_file("1.2.840.10008.1.2.1", private + _image_elements(64, 64) + _element(0x7FE0, 0x0010, b"OW", pixels))


def deflated_dicom_bomb(side: int = 9000, rescale: tuple[str, str] | None = None) -> bytes:
    """A deflated DICOM of side x side 16-bit pixels: about 160 KB, 162 MB once inflated. With
    ``rescale`` (intercept, slope), a CT's modality rescale, and no window."""
    pixel_bytes = side * side * 2
    header = _image_elements(side, side)
    if rescale:
        header += b"".join(_element(0x0028, tag, b"DS", value.encode().ljust(len(value) + len(value) % 2))
                           for tag, value in zip((0x1052, 0x1053), rescale))
    header += struct.pack("<HH", 0x7FE0, 0x0010) + b"OW\x00\x00" + struct.pack("<I", pixel_bytes)
    return _dicom_file("1.2.840.10008.1.2.1.99", deflated_zeros(header, pixel_bytes, zlib_wrapper=False))


def native_colour_dicom_head(side: int) -> tuple[bytes, int]:
    """(everything but the pixel bytes, their length) of an uncompressed side x side 16-bit RGB
    DICOM: written with the pixels left as a hole (a sparse file), it costs no disk."""
    pixel_bytes = side * side * 3 * 2
    head = _image_elements(side, side, samples=3) + struct.pack("<HH", 0x7FE0, 0x0010) + b"OW\x00\x00" \
        + struct.pack("<I", pixel_bytes)
    return _dicom_file("1.2.840.10008.1.2.1", head), pixel_bytes


def many_frames_dicom(frames: int = 1000, side: int = 512) -> bytes:
    """An explicit-VR DICOM declaring ``frames`` frames of side x side pixels, holding a few bytes."""
    dataset = _image_elements(side, side, frames) + _element(0x7FE0, 0x0010, b"OW", bytes(16))
    return _dicom_file("1.2.840.10008.1.2.1", dataset)


def jpeg_dicom(jpeg: bytes, side: int, empty_fragments: int = 0) -> bytes:
    """A DICOM of the JPEG baseline transfer syntax (as the RSNA pneumonia set ships) whose one frame
    is ``jpeg``, 8-bit greyscale of ``side`` x ``side``, after ``empty_fragments`` empty fragments
    (8 bytes each: a million make 8 MB)."""
    fragment = jpeg + b"\x00" * (len(jpeg) % 2)
    pixel_data = (struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\x00\x00" + struct.pack("<I", 0xFFFFFFFF)
                  + struct.pack("<HHI", 0xFFFE, 0xE000, 0)  # an empty basic offset table
                  + struct.pack("<HHI", 0xFFFE, 0xE000, 0) * empty_fragments
                  + struct.pack("<HHI", 0xFFFE, 0xE000, len(fragment)) + fragment
                  + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    return _dicom_file("1.2.840.10008.1.2.4.50", _image_elements(side, side, bits=8) + pixel_data)


def tiled_tiff(tile: int = 32768, side: int = 64, filled: bool = False) -> bytes:
    """A ``side`` x ``side`` greyscale TIFF in one deflated ``tile`` x ``tile`` tile. libtiff decodes a
    whole tile at a time: filled with zeros, 32768 x 32768 is 1 MB of file, 1 GiB and 3 s to decode.
    Unfilled (the default), the tile's stream is empty: the file is refused from its header alone."""
    payload = zlib.compress(bytes(tile * tile) if filled else b"")
    entries = [(256, 3, side), (257, 3, side), (258, 3, 8), (259, 3, 8), (262, 3, 1), (277, 3, 1),
               (322, 4, tile), (323, 4, tile), (324, 4, tiff_data_at(10)), (325, 4, len(payload))]
    return tiff_directory([(tag, kind, 1, value) for tag, kind, value in entries]) + payload


def frame_size_lie_dicom(side: int = 12000, jpeg_ls: bool = False) -> bytes:
    """A 64 x 64 DICOM whose JPEG frame declares ``side`` x ``side`` pixels (3 KB): the decoder
    allocates what the frame says (12000 x 12000: 1.4 GiB) before the mismatch is found. With
    ``jpeg_ls``, of the JPEG-LS transfer syntax, its frame header a JPEG-LS one (SOF55)."""
    image = Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8))  # 3 components
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", side, side)
    if not jpeg_ls:
        return jpeg_dicom(bytes(data), 64)
    data[sof + 1] = 0xF7
    return jpeg_dicom(bytes(data), 64).replace(_uid("1.2.840.10008.1.2.4.50"), _uid("1.2.840.10008.1.2.4.80"))


def instance_mask(side: int = 1024, instances: int = 65535, seed: int = 0) -> bytes:
    """A 16-bit mask whose pixels hold ``instances`` distinct ids (every id present)."""
    rng = np.random.default_rng(seed)
    ids = np.resize(np.arange(1, instances + 1, dtype=np.uint16), side * side)
    rng.shuffle(ids)
    buffer = io.BytesIO()
    Image.fromarray(ids.reshape(side, side)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def corrupt_safetensors() -> bytes:
    """A safetensors file whose header length points past the end of the file."""
    header = b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}'
    return struct.pack("<Q", len(header) + 10_000) + header + bytes(8)


def ramp_tiff(samples: np.ndarray, *, photometric: int | None = None, sample_format: int = 1,
              planar: bool = False) -> bytes:
    """A little-endian TIFF of ``samples`` (H x W grey or H x W x 3 RGB, any integer or float dtype)
    in one strip, or one strip per plane with ``planar``; ``sample_format`` 1 unsigned, 2 signed, 3
    float; ``photometric`` 0 WhiteIsZero, 1 BlackIsZero (grey's default), 2 RGB (colour's)."""
    height, width = samples.shape[:2]
    channels = samples.shape[2] if samples.ndim == 3 else 1
    planes = [np.ascontiguousarray(samples[..., index]).astype(samples.dtype.newbyteorder("<")).tobytes()
              for index in range(channels)] if planar else [samples.astype(samples.dtype.newbyteorder("<")).tobytes()]
    bits = samples.dtype.itemsize * 8
    count = 11
    values_at = tiff_data_at(count)
    bits_at, offsets_at = values_at, values_at + 2 * channels
    sizes_at = offsets_at + 4 * len(planes)
    data_at = sizes_at + 4 * len(planes)
    offsets = [data_at + sum(map(len, planes[:index])) for index in range(len(planes))]
    photometric = photometric if photometric is not None else 2 if channels == 3 else 1
    entries = [(256, 4, 1, width), (257, 4, 1, height),
               (258, 3, channels, bits if channels == 1 else bits_at), (259, 3, 1, 1), (262, 3, 1, photometric),
               (273, 4, len(planes), offsets[0] if len(planes) == 1 else offsets_at), (277, 3, 1, channels),
               (278, 4, 1, height), (279, 4, len(planes), len(planes[0]) if len(planes) == 1 else sizes_at),
               (284, 3, 1, 2 if planar else 1), (339, 3, 1, sample_format)]
    return (tiff_directory(entries) + struct.pack(f"<{channels}H", *[bits] * channels)
            + struct.pack(f"<{len(planes)}I", *offsets) + struct.pack(f"<{len(planes)}I", *map(len, planes))
            + b"".join(planes))
