"""Files whose decode costs more than their size or header shows, made at test time: 16-bit colour
TIFFs in strips and tiles, WebP, RLE-compressed BMP, RLE Lossless DICOM and progressive JPEG; and
DICOM files of LUTs and rescales pydicom cannot apply."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from hostile_files import (
    _dicom_file,
    _element,
    _entropy_coded,
    _image_elements,
    _segment,
    tiff_data_at,
    tiff_directory,
)
from PIL import Image

RLE_LOSSLESS = "1.2.840.10008.1.2.5"


def colour_tiff(values: np.ndarray, *, rows_per_strip: int = 0, tile: int = 0, order: str = "<",
                deflate: bool = False) -> bytes:
    """16-bit RGB (or RGBA) ``values`` as a TIFF in strips of ``rows_per_strip`` rows (libtiff's usual
    layout: about 8 KiB a strip), or in ``tile`` x ``tile`` tiles (the edge ones padded); each piece
    deflated with ``deflate`` (PIL then reads through libtiff)."""
    height, width, channels = values.shape
    if tile:
        padded = np.zeros((-(-height // tile) * tile, -(-width // tile) * tile, channels), values.dtype)
        padded[:height, :width] = values
        pieces = [padded[top:top + tile, left:left + tile] for top in range(0, height, tile)
                  for left in range(0, width, tile)]
    else:
        step = rows_per_strip or height
        pieces = [values[top:top + step] for top in range(0, height, step)]
    pieces = [piece.astype(f"{order}u2").tobytes() for piece in pieces]
    pieces = [zlib.compress(piece) if deflate else piece for piece in pieces]
    layout = [(322, 3, 1, tile), (323, 3, 1, tile)] if tile else [(278, 3, 1, rows_per_strip or height)]
    extra = [(338, 3, 1, 2)] if channels == 4 else []  # unassociated alpha
    entries = 9 + len(layout) + len(extra) - 1
    bits_at = tiff_data_at(entries)
    offsets_at = bits_at + 2 * channels
    counts_at = offsets_at + 4 * len(pieces)
    first = counts_at + 4 * len(pieces)
    offsets = [first + sum(map(len, pieces[:index])) for index in range(len(pieces))]
    offsets_tag, counts_tag = (324, 325) if tile else (273, 279)
    many = len(pieces) > 1  # a single offset and count are held in their entries
    directory = sorted([(256, 3, 1, width), (257, 3, 1, height), (258, 3, channels, bits_at),
                        (259, 3, 1, 8 if deflate else 1), (262, 3, 1, 2), (277, 3, 1, channels),
                        (offsets_tag, 4, len(pieces), offsets_at if many else offsets[0]),
                        (counts_tag, 4, len(pieces), counts_at if many else len(pieces[0])), *layout, *extra])
    assert len(directory) == entries
    counts = struct.pack(f"{order}{len(pieces)}I", *map(len, pieces))  # (unused where held in the entries)
    return (tiff_directory(directory, order) + struct.pack(f"{order}{channels}H", *[16] * channels)
            + struct.pack(f"{order}{len(pieces)}I", *offsets) + counts + b"".join(pieces))


def webp(side: int, *, lossless: bool = True, mode: str = "RGB") -> bytes:
    """A ``side`` x ``side`` WebP of a smooth gradient: 8000 x 8000 is about 42 KB lossless."""
    ramp = np.add.outer(np.arange(side, dtype=np.uint16) // 32, np.arange(side, dtype=np.uint16) // 32)
    buffer = io.BytesIO()
    Image.fromarray(ramp.astype(np.uint8)).convert(mode).save(buffer, format="WEBP", lossless=lossless, quality=50,
                                                              method=0)
    return buffer.getvalue()


def rle_bmp(width: int, height: int, runs: bytes, *, rle4: bool = False) -> bytes:
    """A greyscale-palette BMP (8-bit RLE8, or 4-bit RLE4) whose pixel data is ``runs``."""
    bits, compression, colours = (4, 2, 16) if rle4 else (8, 1, 256)
    palette = b"".join(bytes((index * 255 // (colours - 1),) * 3 + (0,)) for index in range(colours))
    start = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, compression, len(runs), 2835, 2835, colours, 0)
    return b"BM" + struct.pack("<IHHI", start + len(runs), 0, 0, start) + info + palette + runs


def rle8_rows(rows: np.ndarray) -> bytes:
    """An RLE8 BMP of ``rows`` (uint8, top row first), each row in runs of equal values (at most 255)."""
    body = bytearray()
    for row in rows[::-1]:  # BMP stores the bottom row first
        start = 0
        while start < len(row):
            stop = start + 1
            while stop < len(row) and stop - start < 255 and row[stop] == row[start]:
                stop += 1
            body += bytes((stop - start, int(row[start])))
            start = stop
        body += b"\x00\x00"  # end of line
    return rle_bmp(rows.shape[1], rows.shape[0], bytes(body) + b"\x00\x01")


def one_pixel_rows_bmp(side: int) -> bytes:
    """RLE8, ``side`` x ``side``, each row one pixel then its end: PIL pads every row in Python, a
    step per pixel (8000 x 8000, 33 KB: 6 s)."""
    return rle_bmp(side, side, b"\x01\x07\x00\x00" * side + b"\x00\x01")


def rle4_runs_bmp(side: int) -> bytes:
    """RLE4 ``side`` x ``side``, each row in runs of 255 pixels: PIL appends a run's pixels one per
    Python step."""
    row = b"\xff\x12" * (side // 255) + bytes((side % 255, 0x12)) + b"\x00\x00"
    return rle_bmp(side, side, row * side + b"\x00\x01", rle4=True)


def idle_runs_bmp(mebibytes: int, side: int = 8) -> bytes:
    """RLE8 ``side`` x ``side``: the first row, then ``mebibytes`` MiB of runs past its end, which add
    nothing and cost a step each (250 MiB: 40 s), then the other rows."""
    body = (bytes((side, 7)) + b"\x01\x07" * (mebibytes << 19) + b"\x00\x00"
            + (bytes((side, 9)) + b"\x00\x00") * (side - 1))
    return rle_bmp(side, side, body + b"\x00\x01")


def packbits(plane: bytes) -> bytes:
    """One RLE Lossless segment (PackBits, DICOM PS3.5 Annex G) of ``plane``: literal runs of up to
    128 bytes, padded to an even length."""
    out = bytearray()
    for start in range(0, len(plane), 128):
        piece = plane[start:start + 128]
        out += bytes((len(piece) - 1,)) + piece
    return bytes(out + b"\x00" * (len(out) % 2))


def rle_dicom(rows: int, columns: int, segments: list[bytes], *, bits: int = 8) -> bytes:
    """An RLE Lossless DICOM of one ``rows`` x ``columns`` greyscale frame of ``segments`` (encoded)."""
    header = struct.pack("<I", len(segments))
    offset = 64
    for segment in segments:
        header += struct.pack("<I", offset)
        offset += len(segment)
    frame = header.ljust(64, b"\x00") + b"".join(segments)
    frame += b"\x00" * (len(frame) % 2)
    pixel_data = (struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\x00\x00" + struct.pack("<I", 0xFFFFFFFF)
                  + struct.pack("<HHI", 0xFFFE, 0xE000, 0)  # an empty basic offset table
                  + struct.pack("<HHI", 0xFFFE, 0xE000, len(frame)) + frame
                  + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    return _dicom_file(RLE_LOSSLESS, _image_elements(rows, columns, bits=bits) + pixel_data)


def rle_repeat_bomb(mebibytes: int = 8, side: int = 64) -> bytes:
    """A ``side`` x ``side`` 8-bit RLE DICOM whose one segment is ``mebibytes`` MiB of "repeat the next
    byte 128 times": pydicom expands it whole before comparing its length (8 MiB: 664 MiB)."""
    return rle_dicom(side, side, [b"\x81\x07" * (mebibytes << 19)])


_ONE_CODE = bytes([1] + [0] * 15)  # a Huffman table of one 1-bit code, '0'


def progressive_jpeg(side: int, components: int, *, progressive: bool = True, sampling: int = 0x11) -> bytes:
    """A JPEG of ``side`` x ``side`` (a multiple of 8) in ``components`` components (1 grey, 3 YCbCr,
    4 CMYK), every block 0, the first component sampled ``sampling`` (0x22: the others at half
    resolution each way, 4:2:0). Progressive: one DC scan a component, a bit a block; libjpeg holds
    every block's coefficients for the whole image (an 8000 x 8000 CMYK one of 500 KB took 735 MiB)."""
    ids = range(1, components + 1)
    frame = struct.pack(">BHHB", 8, side, side, components) + b"".join(
        bytes((index, sampling if index == 1 else 0x11, 0)) for index in ids)
    head = (b"\xff\xd8" + _segment(0xDB, b"\x00" + b"\x01" * 64) + _segment(0xC2 if progressive else 0xC0, frame)
            + _segment(0xC4, b"\x00" + _ONE_CODE + b"\x00") + _segment(0xC4, b"\x10" + _ONE_CODE + b"\x00"))
    mcus = (side // (8 * (sampling >> 4))) * (side // (8 * (sampling & 15)))
    blocks = {index: mcus * ((sampling >> 4) * (sampling & 15) if index == 1 else 1) for index in ids}
    if progressive:  # non-interleaved DC scans: one block a step, each a '0' (no difference)
        body = b"".join(_segment(0xDA, bytes((1, index, 0, 0, 0, 0))) + _entropy_coded("0" * blocks[index])
                        for index in ids)
    else:  # one interleaved scan: each block's DC '0' and an end of block '0'
        body = (_segment(0xDA, bytes((components,)) + b"".join(bytes((index, 0)) for index in ids) + b"\x00\x3f\x00")
                + _entropy_coded("00" * sum(blocks.values())))
    return head + body + b"\xff\xd9"


def lut_item(descriptor: tuple[int, int, int], data: bytes, *, sequence: int = 0x3010) -> bytes:
    """A VOI LUT Sequence (``sequence`` 0x3000: a Modality LUT Sequence) of one item: its LUT Descriptor
    (entries, first value mapped, bits) and LUT Data as OW, explicit VR little endian."""
    item = (struct.pack("<HH", 0x0028, 0x3002) + b"US" + struct.pack("<H", 6) + struct.pack("<3H", *descriptor)
            + struct.pack("<HH", 0x0028, 0x3006) + b"OW\x00\x00" + struct.pack("<I", len(data)) + data)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, len(item)) + item
    return struct.pack("<HH", 0x0028, sequence) + b"SQ\x00\x00" + struct.pack("<I", len(item)) + item


def ramp_dicom(extra: bytes = b"") -> bytes:
    """A 64 x 64 16-bit CT-like DICOM (a ramp 0-4095) with ``extra`` elements (in tag order, between
    the image module and the pixel data: 0028,1050 to 0028,3010)."""
    pixels = (np.arange(64 * 64, dtype=np.uint16) % 4096).tobytes()
    return _dicom_file("1.2.840.10008.1.2.1", _image_elements(64, 64) + extra
                       + _element(0x7FE0, 0x0010, b"OW", pixels))


def decimal_string(element: int, text: str) -> bytes:
    """A DS element of group 0028 (WindowCenter 0x1050, RescaleIntercept 0x1052, RescaleSlope 0x1053...)."""
    value = text.encode()
    return _element(0x0028, element, b"DS", value + b" " * (len(value) % 2))
