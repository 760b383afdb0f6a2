"""Rare PNG layouts, made at test time: text and ICC chunks PIL's reader refuses, Adam7-interlaced
images (valid, or with one reduced row's filter type out of range), and EXIF orientations carried
by chunks after the pixel data."""

from __future__ import annotations

import struct
import zlib

import numpy as np
from hostile_files import chunk, exif_block

from medmo_pipeline.data.images import PNG_CHANNELS, PNG_SIGNATURE, adam7_passes


def png(width: int, height: int, *chunks: bytes, depth: int = 8, colour: int = 0, interlace: int = 0) -> bytes:
    """A PNG of ``chunks`` (IDAT included, in the caller's order) between IHDR and IEND."""
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))
    return PNG_SIGNATURE + ihdr + b"".join(chunks) + chunk(b"IEND", b"")


def grey_idat(width: int = 48, height: int = 40, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)
    return chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + row.tobytes() for row in pixels)))


def adam7_stream(width: int, height: int, bits: int, *, bad_row: int | None = None, seed: int = 0) -> bytes:
    """An interlaced image's filtered pixel stream: each pass's rows, every filter type 0-4 in
    turn over random bytes (any bytes unfilter to some image), row ``bad_row`` (counted over all
    passes) with filter type 7."""
    rng = np.random.default_rng(seed)
    out, index = bytearray(), 0
    for start, stop, row in adam7_passes(width, height, bits):
        for _ in range((stop - start) // row):
            out += bytes([7 if index == bad_row else index % 5]) + rng.integers(0, 256, row - 1, np.uint8).tobytes()
            index += 1
    return bytes(out)


def adam7_rows(width: int, height: int, bits: int) -> int:
    """How many reduced rows an interlaced image's passes hold together."""
    return sum((stop - start) // row for start, stop, row in adam7_passes(width, height, bits))


def interlaced_png(width: int = 48, height: int = 40, *, depth: int = 8, colour: int = 0,
                   bad_row: int | None = None, seed: int = 0) -> bytes:
    """An Adam7 PNG (a palette image gets a full palette), one row's filter type 7 if ``bad_row``."""
    stream = adam7_stream(width, height, depth * PNG_CHANNELS[colour], bad_row=bad_row, seed=seed)
    palette = [chunk(b"PLTE", bytes(range(256)) * 3)] if colour == 3 else []
    return png(width, height, *palette, chunk(b"IDAT", zlib.compress(stream)), depth=depth, colour=colour,
               interlace=1)


# Interlaced PNGs PIL decodes: (depth, colour type) of each, sized to cover partly filled passes
INTERLACED_KINDS = {"grey 8-bit": (8, 0), "grey 16-bit": (16, 0), "RGB": (8, 2), "RGBA": (8, 6),
                    "palette": (8, 3), "RGB 16-bit": (16, 2), "grey 2-bit": (2, 0)}


def interlaced_pngs() -> dict[str, bytes]:
    return {name: interlaced_png(37, 29, depth=depth, colour=colour, seed=index)
            for index, (name, (depth, colour)) in enumerate(INTERLACED_KINDS.items())}


def refused_pngs() -> dict[str, tuple[bytes, str]]:
    """PNGs PIL's reader refuses for a text or ICC chunk, before or after the pixels, and the chunk
    type the refusal names."""
    profile = zlib.compress(b"x" * 200)
    return {
        "zTXt method 1": (png(48, 40, chunk(b"zTXt", b"Comment\x00\x01" + zlib.compress(b"hello")), grey_idat()),
                          "zTXt"),
        "zTXt method 1 after the pixels": (
            png(48, 40, grey_idat(), chunk(b"zTXt", b"Comment\x00\x01" + zlib.compress(b"hello"))), "zTXt"),
        "iCCP method 1": (png(48, 40, chunk(b"iCCP", b"icc\x00\x01" + profile), grey_idat()), "iCCP"),
        "iCCP method 1 after the pixels": (png(48, 40, grey_idat(), chunk(b"iCCP", b"icc\x00\x01" + profile)),
                                           "iCCP"),
        "iCCP without a NUL": (png(48, 40, chunk(b"iCCP", b"iccprofilename"), grey_idat()), "iCCP"),
        "iCCP without a method": (png(48, 40, chunk(b"iCCP", b"icc\x00"), grey_idat()), "iCCP"),
        "iCCP empty": (png(48, 40, chunk(b"iCCP", b""), grey_idat()), "iCCP"),
        "interlaced, filter type 7": (interlaced_png(bad_row=20), "pixel data"),
    }


def exif_without_orientation() -> bytes:
    """A TIFF block holding a UserComment and no orientation."""
    return (b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHI4s", 0x9286, 7, 4, b"none")
            + struct.pack("<I", 0))


def late_oriented_pngs() -> dict[str, bytes]:
    """48 x 24 PNGs whose orientation 6 (turned: 24 x 48) comes from a chunk after the pixel data,
    most behind an eXIf chunk without one before the pixels (which PIL reads from when opening the
    file: the later chunks count only once it has decoded the pixels, as the decoder does first)."""
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
    block = exif_block(6)
    plain_exif, pixels = chunk(b"eXIf", exif_without_orientation()), grey_idat(48, 24)
    return {
        "eXIf, then XMP after the pixels": png(48, 24, plain_exif, pixels,
                                               chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp)),
        "eXIf, then tEXt exif after the pixels": png(48, 24, plain_exif, pixels,
                                                     chunk(b"tEXt", b"exif\x00Exif\x00\x00" + block)),
        "a hex profile after the pixels": png(  # read where no EXIF block is (PIL decodes to look for one)
            48, 24, pixels,
            chunk(b"tEXt", b"Raw profile type exif\x00\nexif\n%d\n" % len(block) + block.hex().encode())),
        "eXIf, then eXIf after the pixels": png(48, 24, plain_exif, pixels, chunk(b"eXIf", block)),
    }
