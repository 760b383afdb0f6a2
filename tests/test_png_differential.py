"""A differential fuzz of the PNG checks, as an attacker with crafted files would run it.

Many PNGs (every bit depth of every colour type, interlaced or not, odd chunk layouts, zlib streams
of every kind, single bytes flipped under recomputed CRCs) go through the four readers a row meets:
(a) the batch check ``png_batch.check_pngs``, (b) the row check ``images.inspect_image``, (c) PIL's
full decode, (d) the training decoder ``pixels.model_image``. What must hold on every one:
(a) keeps it => (b) keeps it at the same size; (b) keeps it => (c) and (d) decode it to that size.
Everything is built from fixed seeds, so a failure names a case that can be rebuilt.
"""

from __future__ import annotations

import io
import random
import struct
import tracemalloc
import warnings
import zlib
from functools import partial

import numpy as np
import pyarrow as pa
import pytest
from guards import cpu_seconds_limit
from hostile_files import exif_block
from PIL import Image

from medmo_pipeline.data.image_limits import ImageError, ImageLimits
from medmo_pipeline.data.images import PNG_CHANNELS, PNG_DEPTHS, PNG_SIGNATURE, adam7_passes, inspect_image
from medmo_pipeline.data.pixels import model_image
from medmo_pipeline.data.png_batch import check_pngs, hashed_pngs

LIMITS = ImageLimits()
WIDTH, HEIGHT = 13, 11  # odd sizes: partial bytes at every depth below 8, every Adam7 pass partly filled


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def ihdr(width: int, height: int, depth: int, colour: int, interlace: int = 0) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))


IEND = chunk(b"IEND", b"")


def filtered(width: int, height: int, depth: int, colour: int, interlace: int, rng: np.random.Generator) -> bytes:
    """A filtered pixel stream (before deflate): each row's filter type 0-4 in turn over random bytes
    (any bytes unfilter to some image), half the time of a few values only (a stream of matches)."""
    bits = depth * PNG_CHANNELS[colour]
    if interlace:
        rows = [row for start, stop, row in adam7_passes(width, height, bits) for _ in range((stop - start) // row)]
    else:
        rows = [1 + -(-width * bits // 8)] * height
    smooth = rng.random() < 0.5  # compressible rows: dynamic and fixed blocks, matches at every distance
    out = bytearray()
    for index, row in enumerate(rows):
        body = rng.integers(0, 4 if smooth else 256, row - 1, dtype=np.uint8)
        out += bytes([index % 5]) + body.tobytes()
    return bytes(out)


def palette(entries: int) -> bytes:
    return chunk(b"PLTE", bytes(range(256))[:entries] * 3 if entries <= 256 else bytes(3 * entries))


def build(chunks: list[bytes], *, tail: bytes = b"") -> bytes:
    return PNG_SIGNATURE + b"".join(chunks) + tail


def deflated(raw: bytes, *, level: int = 6, strategy: int = zlib.Z_DEFAULT_STRATEGY, wbits: int = 15,
             zdict: bytes | None = None) -> bytes:
    compressor = (zlib.compressobj(level, zlib.DEFLATED, wbits, 9, strategy, zdict) if zdict is not None
                  else zlib.compressobj(level, zlib.DEFLATED, wbits, 9, strategy))
    return compressor.compress(raw) + compressor.flush()


def base_png(depth: int, colour: int, interlace: int, seed: int, *, width: int = WIDTH, height: int = HEIGHT,
             before: list[bytes] = (), stream: bytes | None = None) -> bytes:
    rng = np.random.default_rng(seed)
    raw = filtered(width, height, depth, colour, interlace, rng)
    plte = [palette(1 << depth)] if colour == 3 else []
    return build([ihdr(width, height, depth, colour, interlace), *plte, *before,
                  chunk(b"IDAT", deflated(raw) if stream is None else stream), IEND])


def chunks_of(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of each chunk of a well-formed PNG, IEND included."""
    out, position = [], 8
    while position + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        out.append((kind, data[position + 8:position + 8 + length]))
        position += 12 + length
        if kind == b"IEND":
            break
    return out


def actl(frames: int, plays: int = 0) -> bytes:
    return chunk(b"acTL", struct.pack(">II", frames, plays))


def fctl(sequence: int, width: int = WIDTH, height: int = HEIGHT, x: int = 0, y: int = 0) -> bytes:
    return chunk(b"fcTL", struct.pack(">IIIIIHHBB", sequence, width, height, x, y, 1, 10, 0, 0))


def fdat(sequence: int, stream: bytes) -> bytes:
    return chunk(b"fdAT", struct.pack(">I", sequence) + stream)


def kinds() -> list[tuple[int, int]]:
    return [(depth, colour) for colour, depths in PNG_DEPTHS.items() for depth in depths]


def variants() -> dict[str, bytes]:
    """Named PNGs: valid ones of every depth and colour type, and crafted ones around each rule."""
    cases: dict[str, bytes] = {}
    for interlace in (0, 1):
        il = " interlaced" if interlace else ""
        for index, (depth, colour) in enumerate(kinds()):
            name = f"c{colour} d{depth}{il}"
            seed = index + 100 * interlace
            raw = filtered(WIDTH, HEIGHT, depth, colour, interlace, np.random.default_rng(seed))
            head = ihdr(WIDTH, HEIGHT, depth, colour, interlace)
            plte = [palette(1 << depth)] if colour == 3 else []
            good = deflated(raw)
            cases[name] = build([head, *plte, chunk(b"IDAT", good), IEND])
            # zlib streams: stored, fixed, dynamic, small windows, FDICT, wrong Adler, trailing bytes
            cases[f"{name} stored blocks"] = build([head, *plte, chunk(b"IDAT", deflated(raw, level=0)), IEND])
            for strategy, label in ((zlib.Z_FIXED, "fixed blocks"), (zlib.Z_HUFFMAN_ONLY, "huffman only")):
                cases[f"{name} {label}"] = build([head, *plte, chunk(b"IDAT", deflated(raw, strategy=strategy)), IEND])
            cases[f"{name} 512-byte window"] = build([head, *plte, chunk(b"IDAT", deflated(raw, wbits=9)), IEND])
            # a window field lying: a stream written with a 32 KiB window whose header says 256 bytes
            lying = bytearray(good)
            lying[0] = 0x08 | (0 << 4)
            lying[1] = (31 - (lying[0] * 256 + (lying[1] & 0xE0)) % 31) % 31 | (lying[1] & 0xE0)
            cases[f"{name} window field says 256 bytes"] = build([head, *plte, chunk(b"IDAT", bytes(lying)), IEND])
            over = bytearray(good)
            over[0] = 0x88  # CINFO 8: a window of 64 KiB, which zlib refuses
            over[1] = (31 - (over[0] * 256 + (over[1] & 0xE0)) % 31) % 31 | (over[1] & 0xE0)
            cases[f"{name} window field 8"] = build([head, *plte, chunk(b"IDAT", bytes(over)), IEND])
            cases[f"{name} preset dictionary"] = build(
                [head, *plte, chunk(b"IDAT", deflated(raw, zdict=raw[:64] or b"\0")), IEND])
            cases[f"{name} Adler-32 wrong"] = build([head, *plte, chunk(b"IDAT", good[:-1] + bytes([good[-1] ^ 64])),
                                                     IEND])
            cases[f"{name} without Adler-32"] = build([head, *plte, chunk(b"IDAT", good[:-4]), IEND])
            cases[f"{name} bytes after the stream"] = build([head, *plte, chunk(b"IDAT", good + b"\0junk"), IEND])
            cases[f"{name} a second stream after the first"] = build([head, *plte, chunk(b"IDAT", good + good), IEND])
            cases[f"{name} one row short"] = build([head, *plte, chunk(b"IDAT", deflated(raw[:-2])), IEND])
            cases[f"{name} one byte long"] = build([head, *plte, chunk(b"IDAT", deflated(raw + b"\0")), IEND])
            # IDAT layouts
            cases[f"{name} split mid zlib header"] = build(
                [head, *plte, chunk(b"IDAT", good[:1]), chunk(b"IDAT", good[1:]), IEND])
            cases[f"{name} split byte by byte"] = build(
                [head, *plte, *(chunk(b"IDAT", good[i:i + 1]) for i in range(min(len(good), 40))),
                 chunk(b"IDAT", good[40:]), IEND])
            cases[f"{name} zero-length IDATs"] = build(
                [head, *plte, chunk(b"IDAT", b""), chunk(b"IDAT", good[:5]), chunk(b"IDAT", b""),
                 chunk(b"IDAT", good[5:]), chunk(b"IDAT", b""), IEND])
            cases[f"{name} only zero-length IDATs"] = build([head, *plte, chunk(b"IDAT", b""), IEND])
            cases[f"{name} IDAT split by an ancillary chunk"] = build(
                [head, *plte, chunk(b"IDAT", good[:7]), chunk(b"tIME", bytes(7)), chunk(b"IDAT", good[7:]), IEND])
            cases[f"{name} IDAT after IEND"] = build([head, *plte, chunk(b"IDAT", good[:7]), IEND,
                                                      chunk(b"IDAT", good[7:])])
            cases[f"{name} whole IDAT after IEND"] = build([head, *plte, IEND, chunk(b"IDAT", good)])
            cases[f"{name} chunks after IEND"] = build([head, *plte, chunk(b"IDAT", good), IEND,
                                                        chunk(b"tEXt", b"a\0b"),
                                                        chunk(b"IHDR", b"junk"), IEND])
            cases[f"{name} data after IEND"] = build([head, *plte, chunk(b"IDAT", good), IEND], tail=b"\xff" * 37)
            cases[f"{name} IEND missing"] = build([head, *plte, chunk(b"IDAT", good)])
            cases[f"{name} IEND with a body"] = build([head, *plte, chunk(b"IDAT", good), chunk(b"IEND", b"xx")])
            cases[f"{name} IEND bad CRC"] = build([head, *plte, chunk(b"IDAT", good)],
                                                  tail=b"\0\0\0\0IEND\0\0\0\0")
            # critical unknown chunks, before and after the pixels
            cases[f"{name} critical unknown before"] = build([head, *plte, chunk(b"ZZZZ", b"x"), chunk(b"IDAT", good),
                                                              IEND])
            cases[f"{name} critical unknown after"] = build([head, *plte, chunk(b"IDAT", good), chunk(b"ZZzz", b""),
                                                             IEND])
            # ancillary chunks at their edges
            for kind, bodies in {
                b"gAMA": [b"", bytes(4), b"\xff" * 4, bytes(3), bytes(5)],
                b"cHRM": [bytes(32), b"\xff" * 32, bytes(31), bytes(40)],
                b"pHYs": [bytes(9), b"\xff" * 8 + b"\x07", bytes(8), bytes(12)],
                b"sBIT": [b"", bytes(1), b"\x10" * 4, b"\xff" * 4, bytes(9)],
                b"sPLT": [b"", b"p\0\x08", b"p\0\x10" + bytes(10), b"p\0\x08" + bytes(3), b"\0" * 3],
                b"sRGB": [b"", b"\x00", b"\xff", b"\x01\x02"],
                b"bKGD": [b"", bytes(1), bytes(2), bytes(6), b"\xff" * 6],
                b"hIST": [b"", bytes(2), bytes(600)],
                b"tIME": [b"", bytes(7), b"\xff" * 7],
            }.items():
                for at, body in enumerate(bodies):
                    cases[f"{name} {kind.decode()} #{at}"] = build([head, *plte, chunk(kind, body),
                                                                    chunk(b"IDAT", good), IEND])
                    if at == 0:
                        cases[f"{name} {kind.decode()} #{at} after"] = build(
                            [head, *plte, chunk(b"IDAT", good), chunk(kind, body), IEND])
            # tRNS of every length around what each colour type holds
            for length in (0, 1, 2, 3, 5, 6, 7, 8, 16, 255, 256, 257):
                alphas = bytes(range(256))[:length] + bytes(max(0, length - 256))
                cases[f"{name} tRNS {length}"] = build([head, *plte, chunk(b"tRNS", alphas),
                                                        chunk(b"IDAT", good), IEND])
            for value in (b"\xff\xff", b"\x01\x00", b"\x00\xff"):
                cases[f"{name} tRNS of {value.hex()}"] = build([head, *plte, chunk(b"tRNS", value * 3),
                                                                chunk(b"IDAT", good), IEND])
            cases[f"{name} tRNS after the pixels"] = build([head, *plte, chunk(b"IDAT", good), chunk(b"tRNS", bytes(6)),
                                                            IEND])
            cases[f"{name} two tRNS"] = build([head, *plte, chunk(b"tRNS", bytes(6)), chunk(b"tRNS", bytes(2)),
                                               chunk(b"IDAT", good), IEND])
            # PLTE: missing, too long for the depth, empty, not a multiple of 3, in a non-palette image, twice
            cases[f"{name} without PLTE"] = build([head, chunk(b"IDAT", good), IEND])
            cases[f"{name} PLTE after the pixels"] = build([head, chunk(b"IDAT", good), palette(4), IEND])
            for entries in (0, 1, 2, (1 << depth) + 1 if depth <= 8 else 3, 256, 257):
                cases[f"{name} PLTE of {entries}"] = build([head, palette(entries), chunk(b"IDAT", good), IEND])
            cases[f"{name} PLTE of 7 bytes"] = build([head, chunk(b"PLTE", bytes(7)), chunk(b"IDAT", good), IEND])
            cases[f"{name} two PLTE"] = build([head, palette(4), palette(2), chunk(b"IDAT", good), IEND])
            # APNG
            cases[f"{name} APNG two frames"] = build([head, actl(2), *plte, fctl(0), chunk(b"IDAT", good), fctl(1),
                                                      fdat(2, good), IEND])
            cases[f"{name} APNG wrong sequence"] = build([head, actl(2), *plte, fctl(0), chunk(b"IDAT", good), fctl(5),
                                                          fdat(2, good), IEND])
            cases[f"{name} APNG frame outside"] = build([head, actl(1), *plte, fctl(0, width=WIDTH + 5),
                                                         chunk(b"IDAT", good), IEND])
            cases[f"{name} APNG zero frames"] = build([head, actl(0), *plte, fctl(0), chunk(b"IDAT", good), IEND])
            cases[f"{name} APNG acTL only"] = build([head, actl(3), *plte, chunk(b"IDAT", good), IEND])
            cases[f"{name} APNG fdAT only"] = build([head, *plte, chunk(b"IDAT", good), fdat(0, good), IEND])
            cases[f"{name} APNG short fcTL"] = build([head, actl(1), *plte, chunk(b"fcTL", bytes(10)),
                                                      chunk(b"IDAT", good), IEND])
            cases[f"{name} APNG huge frame count"] = build([head, actl(2**31 - 1), *plte, fctl(0), chunk(b"IDAT", good),
                                                            IEND])
            cases[f"{name} APNG first frame smaller"] = build([head, actl(1), *plte, fctl(0, WIDTH - 3, HEIGHT - 2),
                                                               chunk(b"IDAT", good), IEND])
            cases[f"{name} APNG first frame not the IDAT"] = build([head, actl(1), *plte, chunk(b"IDAT", good), fctl(0),
                                                                    fdat(1, good), IEND])
    # IHDR edges
    raw = filtered(WIDTH, HEIGHT, 8, 0, 0, np.random.default_rng(5))
    idat = chunk(b"IDAT", deflated(raw))
    for depth, colour in ((3, 0), (8, 1), (16, 3), (4, 2), (1, 7), (32, 0), (8, 5)):
        cases[f"IHDR depth {depth} colour {colour}"] = build([ihdr(WIDTH, HEIGHT, depth, colour), idat, IEND])
    for method in (b"\x01\x00\x00", b"\x00\x01\x00", b"\x00\x00\x02"):
        body = struct.pack(">IIBB", WIDTH, HEIGHT, 8, 0) + method
        cases[f"IHDR methods {method.hex()}"] = build([chunk(b"IHDR", body), idat, IEND])
    cases["IHDR 14 bytes"] = build([chunk(b"IHDR", struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 0, 0, 0, 0) + b"\0"),
                                    idat, IEND])
    cases["IHDR width 0"] = build([ihdr(0, HEIGHT, 8, 0), idat, IEND])
    cases["IHDR width 2**31"] = build([ihdr(2**31, HEIGHT, 8, 0), idat, IEND])
    cases["IHDR too large"] = build([ihdr(30000, 30000, 8, 0), idat, IEND])
    cases["IHDR 7 rows"] = build([ihdr(WIDTH, 7, 8, 0), idat, IEND])
    return cases


def flipped(valid: dict[str, bytes], count: int, seed: int) -> dict[str, bytes]:
    """Single-byte flips at random offsets of valid files, every CRC recomputed, so that only the
    semantic checks (header fields, layout, the pixel stream) can catch them. A flip in the pixel
    stream is made past its Adler-32 too (the checksum recomputed over what the damaged stream
    inflates to) or in the filtered rows before deflate (a filter type, a row's bytes), so that
    sizes, filter types and PIL's own reading of the rows decide."""
    rng = random.Random(seed)
    names = sorted(valid)
    out = {}
    for number in range(count):
        name = names[number % len(names)]
        parts = chunks_of(valid[name])
        pixels = next(index for index, (kind, _) in enumerate(parts) if kind == b"IDAT")
        which = pixels if rng.random() < 0.6 else rng.randrange(len(parts))
        kind, body = parts[which]
        how = rng.choice(("stream", "rows")) if which == pixels else "chunk"
        if how == "rows":  # the filtered rows: flip, deflate again
            rows = bytearray(zlib.decompress(body))
            rows[rng.randrange(len(rows))] ^= rng.randrange(1, 256)
            parts[which] = (kind, deflated(bytes(rows)))
        else:
            blob = bytearray(kind + body)
            low = 6 if how == "stream" else 0  # past the zlib header: the deflate data
            blob[rng.randrange(low, len(blob))] ^= rng.choice((1, 2, 4, 8, 16, 32, 64, 128, rng.randrange(1, 256)))
            kind, body = bytes(blob[:4]), bytes(blob[4:])
            if how == "stream":
                inflater = zlib.decompressobj(-15)
                try:
                    rows = inflater.decompress(body[2:])
                except zlib.error:
                    rows = None
                if rows is not None and inflater.eof and len(inflater.unused_data) >= 4:
                    ending = len(body) - len(inflater.unused_data)
                    body = body[:ending] + struct.pack(">I", zlib.adler32(rows)) + body[ending + 4:]
            parts[which] = (kind, body)
        out[f"{name} flip {how} {which} #{number}"] = build([chunk(k, b) for k, b in parts])
    return out


def pil_size(data: bytes) -> tuple[int, int] | None:
    """PIL's full decode (its pixel limit in force), or None where it fails."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
            return image.size
    except Exception:  # noqa: BLE001 - any failure of PIL's decode counts
        return None


def model_size(data: bytes) -> tuple[int, int] | None:
    try:
        image = model_image(data, LIMITS)
    except ImageError:
        return None
    assert image.mode == "RGB"
    return image.size


def row_verdict(data: bytes, limits: ImageLimits = LIMITS) -> tuple[int, int] | str:
    try:
        return inspect_image(data, limits)[:2]
    except ImageError as error:
        assert error.reason and error.detail  # every refusal names a reason
        return error.reason


def disagreements(cases: dict[str, bytes], limits: ImageLimits = LIMITS) -> list[str]:
    names = list(cases)
    batch = pa.array([cases[name] for name in names], pa.binary())
    ok, width, height = check_pngs(batch, limits)
    found = []
    if len(names) >= 128:  # hashing in the same tasks, spread over threads, changes no verdict
        hashed = hashed_pngs(batch, limits, threads=2)[1:]
        found += [f"{names[i]}: hashed_pngs differs" for i in np.flatnonzero((hashed[0] != ok) | (hashed[1] != width)
                                                                          | (hashed[2] != height))]
    for index, name in enumerate(names):
        data = cases[name]
        row = row_verdict(data, limits)
        if ok[index] and row != (width[index], height[index]):
            found.append(f"{name}: check_pngs kept {width[index]}x{height[index]}, inspect_image {row}")
        if isinstance(row, tuple):  # PIL's size is the stored one: an EXIF orientation may turn it
            pil, model = pil_size(data), model_size(data)
            if pil not in (row, row[::-1]) or model != row:
                found.append(f"{name}: inspect_image kept {row}, PIL decodes {pil}, the model's decoder {model}")
    return found


ALL = variants()
VALID = {name: data for name, data in ALL.items() if name.count(" ") in (1, 2) and name.startswith("c")
         and (name.endswith("interlaced") or name.split()[-1].startswith("d"))}


def test_every_kind_of_valid_png_is_kept_by_every_path():
    assert len(VALID) == 2 * len(kinds())
    names = list(VALID)
    ok, width, height = check_pngs(pa.array(list(VALID.values()), pa.binary()), LIMITS)
    assert ok.all(), [name for name, kept in zip(names, ok) if not kept]
    assert (width == WIDTH).all() and (height == HEIGHT).all()
    for name, data in VALID.items():
        assert row_verdict(data) == pil_size(data) == model_size(data) == (WIDTH, HEIGHT), name


def test_crafted_pngs_get_one_verdict_on_every_path():
    assert disagreements(ALL) == []


@pytest.mark.parametrize("seed", range(3))
def test_single_byte_flips_under_valid_crcs_get_one_verdict_on_every_path(seed):
    assert disagreements(flipped(VALID, 1500, seed)) == []


def _xmp(orientation: int) -> bytes:
    return (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="%d"/></rdf:RDF>'
            b'</x:xmpmeta>' % orientation)


# Chunks a scramble inserts: (type, body), at the lengths around PIL's bounds, and carrying EXIF
# orientations wherever PIL reads one (a turned image's size is the model's)
_INSERTED = [*((kind, bytes(size)) for kind in (b"PLTE", b"tRNS", b"IDAT", b"IEND", b"IHDR", b"fcTL", b"acTL",
                                                  b"fdAT", b"gAMA", b"sRGB", b"cHRM", b"pHYs", b"iCCP", b"tEXt",
                                                  b"zTXt", b"iTXt", b"bKGD", b"sBIT", b"tIME", b"zzzz", b"ZZZZ",
                                                  b"sPLT") for size in (0, 1, 2, 4, 6, 8, 9, 13, 26, 32, 768, 771)),
             (b"eXIf", exif_block(6)), (b"eXIf", b"Exif\0\0" + exif_block(8)), (b"eXIf", exif_block(6)[:20]),
             (b"eXIf", exif_block(9)), (b"eXIf", exif_block(5, values=3)),
             (b"tEXt", b"Raw profile type exif\0\nexif\n" + b"%8d\n" % (len(exif_block(6)) + 6)
              + (b"Exif\0\0" + exif_block(6)).hex().encode() + b"\n"),
             (b"zTXt", b"exif\0\0" + zlib.compress(b"Exif\0\0" + exif_block(7))),
             (b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + _xmp(6)), (b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + _xmp(11)),
             (b"tEXt", b"xmp\0" + _xmp(8)[:60])]


def scrambles(bases: dict[str, bytes], count: int, seed: int) -> dict[str, bytes]:
    """Chunks duplicated, dropped, swapped, inserted (``_INSERTED``, random bytes or zeros), IDATs
    split anywhere, bodies flipped, bytes after the end: one to three of these on each base."""
    rng, names, cases = random.Random(seed), sorted(bases), {}
    for number in range(count):
        parts = chunks_of(bases[names[rng.randrange(len(names))]])
        for _ in range(rng.randint(1, 3)):
            op, i = rng.randrange(6), rng.randrange(1, len(parts))  # never the first IHDR
            if op == 0:
                parts.insert(i, parts[rng.randrange(1, len(parts))])
            elif op == 1 and len(parts) > 2:
                del parts[i]
            elif op == 2:
                j = rng.randrange(1, len(parts))
                parts[i], parts[j] = parts[j], parts[i]
            elif op == 3:
                kind, body = rng.choice(_INSERTED)
                if rng.random() < 0.3:
                    body = bytes(rng.randrange(256) for _ in range(len(body)))
                parts.insert(i, (kind, body))
            elif op == 4 and (idats := [j for j, (kind, _) in enumerate(parts) if kind == b"IDAT"]):
                j = rng.choice(idats)
                kind, body = parts[j]
                cut = rng.randrange(len(body) + 1)
                parts[j:j + 1] = [(kind, body[:cut]), (kind, body[cut:])]
            elif parts[i][1]:
                kind, body = parts[i][0], bytearray(parts[i][1])
                body[rng.randrange(len(body))] ^= rng.randrange(1, 256)
                parts[i] = (kind, bytes(body))
        tail = b"" if rng.random() < 0.8 else bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20)))
        cases[f"scramble #{number}"] = build([chunk(kind, body) for kind, body in parts], tail=tail)
    return cases


@pytest.mark.parametrize("seed", range(2))
def test_chunk_scrambles_get_one_verdict_on_every_path(seed):
    assert disagreements(scrambles(VALID, 4000, seed)) == []


def test_scrambles_of_the_crafted_pngs_get_one_verdict_on_every_path():
    assert disagreements(scrambles({name: data for name, data in ALL.items() if isinstance(row_verdict(data), tuple)},
                                   4000, 11)) == []


@pytest.mark.parametrize("limits", [
    ImageLimits(max_chunks=3), ImageLimits(max_chunks=4), ImageLimits(max_pixels=WIDTH * HEIGHT - 1),
    ImageLimits(min_side=HEIGHT + 1), ImageLimits(max_aspect_ratio=1.1), ImageLimits(max_file_bytes=200),
    ImageLimits(decode_png=True),
], ids=lambda limits: next(f"{key}={value}" for key, value in vars(limits).items()
                           if value != getattr(LIMITS, key)))
def test_every_limit_is_applied_alike_on_both_paths(limits):
    assert disagreements(ALL, limits) == []
    assert disagreements(scrambles(VALID, 500, 5), limits) == []


@pytest.mark.parametrize("after", [False, True], ids=["before the pixels", "after the pixels"])
def test_a_full_decode_refuses_a_palette_transparency_the_model_cannot_convert(after):
    """Regression: with ``decode_png`` (PNG decoded whole by PIL, as other formats), a palette PNG
    whose tRNS held 257 alphas was kept: PIL decodes it, and the model's decoder then failed
    ("palette index out of range"). It is refused as the structure check refuses it; 256 are kept."""
    limits = ImageLimits(decode_png=True)
    for entries, kept in ((256, True), (257, False)):
        alphas = chunk(b"tRNS", bytes(range(256))[::-1] + bytes(entries - 256) if entries > 256 else bytes(entries))
        data = base_png(8, 3, 0, 1, before=[] if after else [alphas])
        if after:
            data = data[:-len(IEND)] + alphas + IEND
        assert (model_size(data) is not None) == kept
        for checked in (limits, LIMITS):
            assert row_verdict(data, checked) == ((WIDTH, HEIGHT) if kept else "image_undecodable"), checked


def test_streams_past_the_one_call_limit_get_the_same_verdicts(monkeypatch):
    """Every crafted stream inflated piecewise by zlib (as a stream over 16 MiB is), on both paths."""
    from medmo_pipeline.data import images, png_batch

    monkeypatch.setattr(images, "WHOLE_INFLATE_LIMIT", 0)
    monkeypatch.setattr(png_batch, "WHOLE_INFLATE_LIMIT", 0)
    streams = {name: data for name, data in ALL.items() if "APNG" not in name and " d8" in name}
    assert disagreements(streams) == []



_XMP = chunk(b"tEXt", b"XML:com.adobe.xmp\0" + _xmp(1))
_PROFILE = b"Exif\0\0" + exif_block(1)
_DECODED_BY_PIL = {  # chunks that make ``inspect_image`` decode a PNG with PIL, before and after its IDAT
    "animated": ([chunk(b"acTL", struct.pack(">II", 1, 0))], []),
    "XMP after the pixels": ([], [_XMP]),
    "XMP before the pixels (PIL's getexif loads the image)": ([_XMP], []),
    "EXIF profile in text (PIL's getexif loads the image)": (
        [chunk(b"tEXt", b"Raw profile type exif\0\nexif\n%8d\n%s\n" % (len(_PROFILE), _PROFILE.hex().encode()))], []),
}


@pytest.mark.parametrize("name", list(_DECODED_BY_PIL))
def test_a_png_pil_must_decode_is_held_to_four_bytes_a_pixel_of_the_budget(name):
    """Regression: a PNG ``inspect_image`` decodes with PIL (animated; or whose orientation PIL reads
    only with the pixels: after them, or in XMP or a text profile, where ``getexif`` loads the image)
    had its stream inflated twice: a 500 KB 8000 x 8000 16-bit RGBA one took 2.2 s to check. Its
    samples are held to 4 bytes a pixel of max_pixels, refused before any inflate (here at a budget
    of 64 x 64); an 8-bit RGBA one is kept, and so are the 16-bit one without those chunks and one
    whose orientation is in an eXIf chunk (read without decoding)."""
    limits = ImageLimits(max_pixels=64 * 64)
    before, after = _DECODED_BY_PIL[name]
    rng = np.random.default_rng(3)
    for depth, kept in ((8, True), (16, False)):
        pixels = chunk(b"IDAT", deflated(filtered(64, 64, depth, 6, 0, rng)))
        data = build([ihdr(64, 64, depth, 6), *before, pixels, *after, IEND])
        assert not check_pngs(pa.array([data]), limits)[0][0]  # left to inspect_image
        if kept:
            assert inspect_image(data, limits)[:2] == (64, 64) == pil_size(data)
        else:
            with pytest.raises(ImageError, match="decoded by PIL") as refused:
                inspect_image(data, limits)
            assert refused.value.reason == "image_too_costly"
        plain = [build([ihdr(64, 64, depth, 6), pixels, IEND])]
        if name != "animated":  # the same orienting chunks, but PIL finds an EXIF block as it opens the file
            plain.append(build([ihdr(64, 64, depth, 6), chunk(b"eXIf", exif_block(1)), *before, pixels, IEND]))
        for data in plain:
            assert inspect_image(data, limits)[:2] == (64, 64)


# ---- cost: any crafted PNG under 1 MB is settled within 2 CPU seconds and 300 MB by both paths -----

_SIDE = 8000  # max_pixels' 64 megapixels


def _zeros_stream(size: int) -> bytes:
    """``size`` zero bytes deflated (run-length matches: about 1,000 to 1), 16 MiB at a time."""
    compressor, out, piece = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_RLE), [], bytes(1 << 24)
    while size > 0:
        out.append(compressor.compress(piece[:min(size, len(piece))]))
        size -= len(piece)
    return b"".join(out) + compressor.flush()


def _costly_pngs() -> dict[str, tuple[bytes, str]]:
    """Crafted PNGs under 1 MB at the edges of every cost bound, and what ``inspect_image`` says of
    each: "kept", or words of its refusal."""
    rgba16 = _zeros_stream(_SIDE * (1 + _SIDE * 8))  # 512 MB: the most a PNG of max_pixels declares
    rgba8 = _zeros_stream(_SIDE * (1 + _SIDE * 4))
    head16, head8 = ihdr(_SIDE, _SIDE, 16, 6), ihdr(_SIDE, _SIDE, 8, 6)
    animated = chunk(b"acTL", struct.pack(">II", 1, 0))
    small = deflated(bytes(16 * 17))
    step = -(-len(rgba8) // 35_000)
    return {
        "16-bit RGBA of max_pixels": (build([head16, chunk(b"IDAT", rgba16), IEND]), "kept"),
        "8-bit RGBA in 35,000 IDATs": (build([head8, *(chunk(b"IDAT", rgba8[at:at + step])
                                                       for at in range(0, len(rgba8), step)), IEND]), "kept"),
        "8-bit RGBA's stream, interlaced (short)": (build([ihdr(_SIDE, _SIDE, 8, 6, 1), chunk(b"IDAT", rgba8), IEND]),
                                                     "image_undecodable: pixel data: inflates to"),
        "a 1-bit image's IHDR over it (a bomb)": (build([ihdr(_SIDE, _SIDE, 1, 0), chunk(b"IDAT", rgba16), IEND]),
                                                  "image_undecodable: pixel data: inflates beyond"),
        "animated, 16-bit RGBA": (build([head16, animated, chunk(b"IDAT", rgba16), IEND]),
                                  "image_too_costly: PNG of 8000x8000 at 64 bits a pixel, animated"),
        "animated, 8-bit RGBA": (build([head8, animated, chunk(b"IDAT", rgba8), IEND]), "kept"),
        "8-bit RGBA, oriented after its pixels": (build([head8, chunk(b"IDAT", rgba8), _XMP, IEND]), "kept"),
        "16-bit RGBA, XMP before its pixels": (build([head16, _XMP, chunk(b"IDAT", rgba16), IEND]),
                                               "image_too_costly: PNG of 8000x8000 at 64 bits a pixel, its"),
        "80,000 empty IDATs": (build([ihdr(16, 16, 8, 0), chunk(b"IDAT", small[:2]), *[chunk(b"IDAT", b"")] * 80_000,
                                      chunk(b"IDAT", small[2:]), IEND]), "kept"),
        "80,000 empty tEXt": (build([ihdr(16, 16, 8, 0), *[chunk(b"tEXt", b"")] * 80_000, chunk(b"IDAT", small),
                                     IEND]), "kept"),
        "60 zTXt of 1 MiB inflated": (build([ihdr(16, 16, 8, 0), *[chunk(b"zTXt", b"k\0\0" + zlib.compress(
            bytes((1 << 20) - 64), 9))] * 60, chunk(b"IDAT", small), IEND]), "kept"),
    }


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith(field + ":")).split()[1]) << 10


def _peak_growth(call) -> int:
    """Bytes the process's peak resident set grew by during ``call()`` (Linux: the peak is reset
    first), or the peak of Python's allocations where /proc cannot say."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current resident set
        before = _status("VmRSS")
    except OSError:
        tracemalloc.start()
        try:
            call()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    call()
    return _status("VmHWM") - before


def _batch_kept(data: bytes) -> bool:
    return bool(check_pngs(pa.array([data]), LIMITS)[0][0])


def _record(verdicts: dict, path: str, check, data: bytes) -> None:
    verdicts[path] = check(data)


def _inspected(data: bytes) -> str:
    try:
        inspect_image(data, LIMITS)
    except ImageError as error:
        return str(error)
    return "kept"


def test_crafted_pngs_under_a_megabyte_are_settled_within_two_cpu_seconds_and_300_mb():
    """Each path under the CPU-seconds guard, its peak memory's growth measured. The verdict is
    checked too (a refusal must be the one expected, not any)."""
    for name, (data, expected) in _costly_pngs().items():
        assert len(data) < 1_000_000, name
        verdicts = {}
        for path, check in (("check_pngs", _batch_kept), ("inspect_image", _inspected)):
            with cpu_seconds_limit(2):
                growth = _peak_growth(partial(_record, verdicts, path, check, data))
            assert growth < 300 << 20, (name, path, growth >> 20)
        assert verdicts["inspect_image"].startswith(expected), (name, verdicts)
        assert not verdicts["check_pngs"] or verdicts["inspect_image"] == "kept", (name, verdicts)
