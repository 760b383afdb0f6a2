"""PNG checked from its structure and CRCs instead of a full decode: the corrupted inputs of the
curation tests get the same reasons either way, every truncation and every flipped byte of a PNG is
caught, and the PNG variants PIL writes pass with their real size. ``check_pngs`` (a batch at once)
accepts exactly the PNGs ``inspect_image`` accepts."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixtures_formats import jpeg_bytes, png_bytes
from hostile_files import exif_block, exif_png
from PIL import Image
from test_curation import box, corrupted_rows, row

from medmo_pipeline.data.curation import CurationLimits, curate
from medmo_pipeline.data.images import ImageError, ImageLimits, inspect_image, verify_png
from medmo_pipeline.data.model_images import decode_images
from medmo_pipeline.data.png_batch import MAX_CHUNK_STEPS, check_pngs, hashed_pngs

FULL_DECODE = ImageLimits(decode_png=True)


def reasons_by_id(rows, out, limits: CurationLimits) -> dict[str, str]:
    report = curate(rows, out, source="fixture", shard_rows=3, limits=limits)
    got = {}
    for item in pq.read_table(report["quarantine_path"]).to_pylist():
        got[item["row_id"] if item["row_id"] not in got else f"{item['row_id']}#2"] = item["reason"]
    return got


def test_corrupted_inputs_get_the_same_reasons_with_and_without_a_full_decode(tmp_path):
    rows, expected, _ = corrupted_rows()
    assert reasons_by_id(rows, tmp_path / "verified", CurationLimits()) == expected
    assert reasons_by_id(rows, tmp_path / "decoded", CurationLimits(image=FULL_DECODE)) == expected


def pil_png(mode: str, **save) -> bytes:
    rng = np.random.default_rng(0)
    pixels = {"L": (40, 30), "RGB": (40, 30, 3), "RGBA": (40, 30, 4), "I;16": (40, 30)}[mode]
    dtype = np.uint16 if mode == "I;16" else np.uint8
    image = Image.fromarray(rng.integers(0, 255, pixels).astype(dtype))
    if save.pop("palette", False):
        image = image.convert("P")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **save)
    return buffer.getvalue()


@pytest.mark.parametrize("data", [
    pil_png("L"), pil_png("RGB"), pil_png("RGBA"), pil_png("I;16"), pil_png("RGB", palette=True),
    pil_png("RGB", interlace=1), png_bytes() + b"trailing bytes after IEND",
], ids=["gray", "rgb", "rgba", "gray16", "palette", "interlaced", "trailing"])
def test_valid_pngs_pass_with_their_real_size(data):
    assert verify_png(data) == Image.open(io.BytesIO(data)).size
    assert inspect_image(data) == (*Image.open(io.BytesIO(data)).size, "PNG") == inspect_image(data, FULL_DECODE)


def test_every_truncation_is_caught():
    data = png_bytes(16, 12)
    for end in range(8, len(data)):
        with pytest.raises(ImageError) as error:
            verify_png(data[:end])
        # before IHDR is whole the file is unreadable (as PIL's open says), after it is truncated
        assert error.value.reason == ("image_undecodable" if end < 33 else "image_truncated"), end


def test_every_flipped_byte_after_the_signature_is_caught():
    data = png_bytes(16, 12)
    for index in range(8, len(data)):
        damaged = bytearray(data)
        damaged[index] ^= 0x01
        with pytest.raises(ImageError):
            verify_png(bytes(damaged))


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_of(*chunks: bytes) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


IHDR = chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 12, 8, 0, 0, 0, 0))
IDAT = chunk(b"IDAT", zlib.compress(bytes(12 * 17)))
IEND = chunk(b"IEND", b"")


@pytest.mark.parametrize(("data", "reason", "words"), [
    (png_of(IHDR, IEND), "image_undecodable", "without an IDAT"),
    (png_of(chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 12, 3, 2, 0, 0, 0)), IDAT, IEND), "image_undecodable",
     "depth 3"),
    (png_of(chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 12, 8, 0, 0, 0, 0)), IDAT, IEND), "image_undecodable",
     "0x12"),
    (png_of(IHDR, IDAT), "image_truncated", "without an IEND"),
    (png_of(IHDR, IDAT[:-1] + bytes([IDAT[-1] ^ 1]), IEND), "image_undecodable", "CRC mismatch"),
    (png_of(IHDR[:-1] + bytes([IHDR[-1] ^ 1]), IDAT, IEND), "image_undecodable", "IHDR chunk: CRC"),
    (png_of(chunk(b"IHDR", struct.pack(">IIBBBBB", 9000, 9000, 8, 0, 0, 0, 0)), IDAT, IEND), "image_too_large",
     "header says 9000x9000"),
])
def test_structural_faults_are_named(data, reason, words):
    with pytest.raises(ImageError) as error:
        verify_png(data)
    assert error.value.reason == reason and words in error.value.detail


def test_a_valid_crc_over_a_broken_zlib_stream_is_caught_without_a_full_decode():
    """A broken encoder's stream under valid CRCs: the pixel stream is inflated (bounded) and fails,
    as PIL's full decode does."""
    data = png_of(IHDR, chunk(b"IDAT", b"\x78\x9c" + bytes(40)), IEND)
    for limits in (ImageLimits(), FULL_DECODE):
        with pytest.raises(ImageError) as error:
            inspect_image(data, limits)
        assert error.value.reason == "image_undecodable"


def png_battery() -> list[bytes]:
    """PNGs good and bad, in every way the tests above know, plus some other formats."""
    data = png_bytes(16, 12)
    flipped = []
    for index in range(8, len(data)):
        damaged = bytearray(data)
        damaged[index] ^= 0x01
        flipped.append(bytes(damaged))
    ancillary = png_of(IHDR, chunk(b"tEXt", b"Comment\x00hello"), IDAT, chunk(b"IDAT", b""), IEND)
    split_idat = png_of(IHDR, chunk(b"IDAT", IDAT[8:20]), chunk(b"IDAT", IDAT[20:-4]), IEND)
    return [
        data, data + b"trailing", ancillary, split_idat, *[data[:end] for end in range(len(data))], *flipped,
        pil_png("L"), pil_png("RGB"), pil_png("RGBA"), pil_png("I;16"), pil_png("RGB", palette=True),
        pil_png("RGB", interlace=1), png_bytes(400, 4), png_bytes(4, 4), png_bytes(8, 8), png_bytes(400, 8),
        png_of(IHDR, IEND), png_of(IHDR, IDAT), png_of(IHDR, IDAT, chunk(b"IEND", b"x")),
        png_of(IHDR, IDAT, b"\x00\x00\x00\x00IEND\x00\x00\x00\x00"),
        png_of(chunk(b"IHDR", struct.pack(">IIBBBBB", 9000, 9000, 8, 0, 0, 0, 0)), IDAT, IEND),
        png_of(chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 12, 3, 2, 0, 0, 0)), IDAT, IEND),
        png_of(chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 12, 8, 0, 1, 0, 0)), IDAT, IEND),
        png_of(chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 12, 8, 0, 0, 0, 2)), IDAT, IEND),
        png_of(chunk(b"IHDR", struct.pack(">IIBBBBB", 2**31, 12, 8, 0, 0, 0, 0)), IDAT, IEND),
        png_of(chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 12, 8, 0, 0, 0, 0) + b"x"), IDAT, IEND),
        png_of(IHDR, *[chunk(b"IDAT", b"")] * 70, IDAT, IEND),  # more chunks than check_pngs walks
        b"", b"\x89PNG", jpeg_bytes(), b"GIF89a" + bytes(40), bytes(100),
    ]


@pytest.mark.parametrize("limits", [ImageLimits(), ImageLimits(min_side=12, max_aspect_ratio=1.4),
                                    ImageLimits(max_pixels=16 * 12 - 1), FULL_DECODE],
                         ids=["default", "tight", "few-pixels", "decode"])
def test_check_pngs_accepts_exactly_what_inspect_image_accepts(limits):
    battery = png_battery()
    ok, width, height = check_pngs(pa.array(battery, pa.binary()), limits)
    for index, data in enumerate(battery):
        try:
            expected = inspect_image(data, limits)
        except ImageError:
            expected = None
        settled = expected is not None and expected[2] == "PNG" and not limits.decode_png
        if data.count(b"IDAT") >= MAX_CHUNK_STEPS or b"tEXt" in data:  # left to inspect_image
            assert not ok[index]
        else:
            assert bool(ok[index]) == settled, index
        if ok[index]:
            assert (width[index], height[index]) == expected[:2], index
    assert limits.decode_png or ok.any()


def test_check_pngs_reads_a_slice_of_a_larger_array():
    battery = png_battery()
    whole = pa.array(battery, pa.binary())
    ok, width, _ = check_pngs(whole.slice(3, 40))
    assert list(ok) == list(check_pngs(whole)[0][3:43]) and list(width) == list(check_pngs(whole)[1][3:43])


@pytest.mark.parametrize("limits", [ImageLimits(), FULL_DECODE], ids=["default", "decode"])
def test_hashed_pngs_is_check_pngs_plus_each_images_sha256(limits):
    """Hashing in the same tasks changes no verdict; enough images to be shared out over threads."""
    battery = png_battery() * 5
    images = pa.array(battery, pa.binary()).slice(1)
    hashes, ok, width, height = hashed_pngs(images, limits)
    assert hashes == [hashlib.sha256(data).hexdigest() for data in battery[1:]]
    expected = check_pngs(images, limits)
    assert (ok == expected[0]).all() and (width == expected[1]).all() and (height == expected[2]).all()
    assert limits.decode_png or ok.sum() >= 5
    with pytest.raises(ValueError, match="null"):
        hashed_pngs(pa.array([battery[0], None], pa.binary()))


def _stream_variants() -> dict[str, bytes]:
    """Pixel streams for the 16 x 12 greyscale IHDR, valid and not."""
    rows = bytes(12 * 17)
    whole = zlib.compress(rows)
    small_window = zlib.compressobj(wbits=9)
    bad_filter = bytearray(rows)
    bad_filter[17 * 5] = 5
    return {
        "valid": whole,
        "without its Adler-32": whole[:-4],  # PIL stops once it has the pixels
        "a 512-byte window": small_window.compress(rows) + small_window.flush(),
        "one row short": zlib.compress(rows[:-17]),
        "one byte long": zlib.compress(rows + b"\0"),
        "unknown filter type": zlib.compress(bytes(bad_filter)),
        "random bytes": b"\x78\x9c" + bytes(np.random.default_rng(1).integers(0, 256, 60, dtype=np.uint8)),
        "zeros": b"\x78\x9c" + bytes(40),
        "corrupt Adler-32": whole[:-1] + bytes([whole[-1] ^ 1]),
        "zlib bomb": zlib.compress(bytes(1 << 22)),
    }


@pytest.mark.parametrize("name", list(_stream_variants()))
def test_one_call_and_piecewise_inflate_agree(name, monkeypatch):
    """libdeflate's one-call inflate and zlib's piecewise one give every pixel stream the same verdict
    (a stream libdeflate does not take is judged by zlib's path); both keep what PIL decodes."""
    from medmo_pipeline.data import images

    stream = _stream_variants()[name]
    data = png_of(IHDR, chunk(b"IDAT", stream[:9]), chunk(b"IDAT", stream[9:]), IEND)
    try:
        Image.open(io.BytesIO(data)).load()
        pil_decodes = True
    except Exception:  # noqa: BLE001 - any failure of PIL's decode counts
        pil_decodes = False
    verdicts = []
    for limit in (images.WHOLE_INFLATE_LIMIT, 0):  # 0: every stream inflated piecewise
        monkeypatch.setattr(images, "WHOLE_INFLATE_LIMIT", limit)
        try:
            verdicts.append(verify_png(data) == (16, 12))
        except ImageError as error:
            assert error.reason == "image_undecodable" and "pixel data" in error.detail
            verdicts.append(False)
    assert verdicts[0] == verdicts[1] == (name in ("valid", "without its Adler-32", "a 512-byte window"))
    assert not verdicts[0] or pil_decodes


def _oriented_pngs() -> dict[str, tuple[bytes, tuple[int, int]]]:
    """PNGs of 48 x 24 carrying an EXIF orientation wherever PIL reads one, and the size the model
    sees: turned (6: 24 x 48) or as stored (orientation 3, or a block PIL cannot read)."""
    block = exif_block(6)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    return {
        "eXIf before the pixels": (exif_png(block), (24, 48)),
        "eXIf after the pixels": (exif_png(block, after_pixels=True), (24, 48)),
        "tEXt exif (ImageMagick)": (exif_png(block, kind=b"tEXt", keyword=b"exif"), (24, 48)),
        "zTXt hex profile": (exif_png(b"\nexif\n%d\n" % len(block) + block.hex().encode(), kind=b"zTXt",
                                      keyword=b"Raw profile type exif"), (24, 48)),
        "iTXt XMP": (exif_png(xmp, kind=b"iTXt", keyword=b"XML:com.adobe.xmp"), (24, 48)),
        "orientation 3": (exif_png(exif_block(3)), (48, 24)),
        "orientation of 10 values (PIL reads the first)": (exif_png(exif_block(6, values=10)), (24, 48)),
        "damaged eXIf": (exif_png(b"not a TIFF block"), (48, 24)),
        "tEXt xmp (PIL cannot search it)": (exif_png(xmp, kind=b"tEXt", keyword=b"xmp"), (48, 24)),
        "other text only": (exif_png(b"2024-01-01", kind=b"tEXt", keyword=b"date:create"), (48, 24)),
    }


@pytest.mark.parametrize("name", list(_oriented_pngs()))
def test_a_pngs_exif_orientation_sizes_it_as_the_decoder_turns_it_on_every_path(name):
    """Row path, full decode and the decoder agree on the size, wherever the orientation sits (batch
    checks leave such a PNG to ``inspect_image``); a block PIL cannot read leaves the image as
    stored on every path, instead of being kept by curation and refused by the decoder."""
    data, size = _oriented_pngs()[name]
    decoded = decode_images({"images": [{"bytes": data, "path": "x.png"}]})[0]
    assert decoded.size == size
    assert inspect_image(data)[:2] == inspect_image(data, FULL_DECODE)[:2] == size
    ok, _, _ = check_pngs(pa.array([data], pa.binary()))
    assert not ok[0]  # text and EXIF chunks: inspect_image decides
    stored = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    turned = {(24, 48): np.rot90(stored, -1), (48, 24): stored}[size]
    if name == "orientation 3":
        turned = stored[::-1, ::-1]
    assert (np.asarray(decoded) == turned).all()


def test_a_grounding_rows_boxes_are_checked_against_the_turned_size(tmp_path):
    """A box in the lower half of a PNG turned upright by its eXIf chunk (48 x 24 stored, 24 x 48
    seen) is kept as it is, not clipped to the stored height."""
    data = exif_png(exif_block(6))
    rows = [row("turned", task="grounding", answer="lesion <box>[[0, 0, 1, 1]]</box>",
                images=[{"bytes": data, "path": "turned.png", "width": 0, "height": 0, "sha256": ""}],
                boxes=[box(2, 30, 20, 46)])]
    report = curate(rows, tmp_path / "out", source="fixture", shard_rows=3)
    assert report["rows_kept"] == 1 and report["boxes_clipped"] == 0, report["quarantined_by_reason"]
    kept = pq.read_table(tmp_path / "out" / "part-00000.parquet").to_pylist()[0]
    assert (kept["images"][0]["width"], kept["images"][0]["height"]) == (24, 48)
    assert (kept["boxes"][0]["y1"], kept["boxes"][0]["y2"]) == (30.0, 46.0)


_ANCILLARY = [b"gAMA", b"cHRM", b"sRGB", b"pHYs", b"tRNS", b"PLTE", b"bKGD", b"sBIT", b"tIME", b"hIST", b"sPLT",
              b"acTL", b"fcTL", b"fdAT", b"tEXt", b"eXIf", b"prVt"]


def _ancillary_soup(rng: np.random.Generator) -> bytes:
    """A small valid image (grey, RGB or palette) with a few ancillary chunks PIL reads (or skips)
    around its pixels: random kinds, lengths of 0-40 bytes, random or zero content, valid CRCs."""
    colour = int(rng.choice([0, 2, 3]))
    width, height = int(rng.integers(8, 20)), int(rng.integers(8, 20))
    channels = 3 if colour == 2 else 1
    rows = b"".join(b"\x00" + bytes(rng.integers(0, 4, width * channels, dtype=np.uint8)) for _ in range(height))
    before, after = [], []
    if colour == 3:
        before.append(chunk(b"PLTE", bytes(rng.integers(0, 256, 3 * 4, dtype=np.uint8))))
    for _ in range(int(rng.integers(1, 4))):
        kind = _ANCILLARY[int(rng.integers(len(_ANCILLARY)))]
        length = int(rng.choice([0, 1, 2, 3, 4, 5, 6, 8, 9, 13, 26, 31, 32, 40, 256, 257]))
        body = bytes(rng.integers(0, 256, length, dtype=np.uint8)) if rng.random() < 0.5 else bytes(length)
        (before if rng.random() < 0.6 else after).append(chunk(kind, body))
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))
    return (b"\x89PNG\r\n\x1a\n" + ihdr + b"".join(before) + chunk(b"IDAT", zlib.compress(rows)) + b"".join(after)
            + chunk(b"IEND", b""))


def test_ancillary_chunks_are_kept_exactly_when_the_decoder_reads_them():
    """Kept means decodable, for the chunks PIL parses beside the pixels: a short gAMA, cHRM, sRGB,
    pHYs or tRNS, a palette's tRNS of more than 256 entries, a broken APNG frame. The row path keeps a
    PNG exactly when the training decoder decodes it, and the batch walk never keeps one the row
    path refuses (it leaves APNG and text to the row path)."""
    rng = np.random.default_rng(7)
    soups = [_ancillary_soup(rng) for _ in range(1500)]
    ok, width, height = check_pngs(pa.array(soups, pa.binary()))
    kept = decoded = 0
    for index, data in enumerate(soups):
        try:
            size = inspect_image(data)[:2]
        except ImageError:
            size = None
        try:
            seen = decode_images({"images": [{"bytes": data, "path": "x.png"}]})[0].size
        except ImageError:
            seen = None
        assert size == seen, (index, size, seen)
        assert not ok[index] or (width[index], height[index]) == size, index
        kept, decoded = kept + (size is not None), decoded + bool(ok[index])
    assert 300 < kept < 1400 and decoded > 200  # both outcomes met, the batch walk settling many


def _structure_soup(rng: np.random.Generator) -> tuple[bytes, str]:
    """A small image whose chunk order is what odd writers produce: (its bytes, what was done)."""
    colour = int(rng.choice([0, 3]))
    width, height = int(rng.integers(8, 20)), int(rng.integers(8, 20))
    rows = b"".join(b"\x00" + bytes(rng.integers(0, 4, width, dtype=np.uint8)) for _ in range(height))
    stream = zlib.compress(rows)
    cut = int(rng.integers(1, len(stream)))
    pixels = [chunk(b"IDAT", stream)]
    palette = [chunk(b"PLTE", bytes(rng.integers(0, 256, 3 * 4, dtype=np.uint8)))] if colour == 3 else []
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))
    odd = str(rng.choice(["split", "interleaved", "trailing empty IDAT", "second IHDR", "chunk type",
                          "no palette", "palette after pixels", "long palette", "none"]))
    if odd == "split":
        pixels = [chunk(b"IDAT", stream[:cut]), chunk(b"IDAT", stream[cut:])]
    elif odd == "interleaved":
        pixels = [chunk(b"IDAT", stream[:cut]), chunk(b"tIME", bytes(7)), chunk(b"IDAT", stream[cut:])]
    elif odd == "trailing empty IDAT":
        pixels = [*pixels, chunk(b"tIME", bytes(7)), chunk(b"IDAT", b"")]
    elif odd == "second IHDR":
        palette.insert(0, chunk(b"IHDR", struct.pack(">IIBBBBB", int(rng.integers(1, 40)), height,
                                                     int(rng.choice([8, 16])), 0, 0, 0, 0)))
    elif odd == "chunk type":
        palette.insert(0, chunk(bytes(rng.integers(32, 127, 4, dtype=np.uint8)), b"x"))
    elif odd == "no palette":
        palette = []
    elif odd == "palette after pixels":
        pixels, palette = [*pixels, *palette], []
    elif odd == "long palette":
        palette = [chunk(b"PLTE", bytes(3 * int(rng.integers(250, 300))))]
    return b"\x89PNG\r\n\x1a\n" + header + b"".join(palette) + b"".join(pixels) + chunk(b"IEND", b""), odd


def test_chunk_order_is_kept_only_where_the_decoder_reads_the_pixels():
    """A second IHDR (PIL sizes the image by the last), a chunk type PIL does not read, IDATs split
    by another chunk (PIL's pixels end at it), a palette image without its palette before the
    pixels (black), a palette of over 256 entries: both curation paths refuse them; what the row
    path keeps the training decoder reads at that size, and the batch walk keeps nothing the row
    path refuses."""
    rng = np.random.default_rng(3)
    soups = [_structure_soup(rng) for _ in range(900)]
    ok, width, height = check_pngs(pa.array([data for data, _ in soups], pa.binary()))
    refused: dict[str, int] = {}
    for index, (data, odd) in enumerate(soups):
        try:
            size = inspect_image(data)[:2]
        except ImageError:
            size = None
            refused[odd] = refused.get(odd, 0) + 1
        if size is not None:
            assert decode_images({"images": [{"bytes": data, "path": "x.png"}]})[0].size == size, (index, odd)
        assert not ok[index] or (width[index], height[index]) == size, (index, odd)
        if odd in ("no palette", "palette after pixels") and data[25] == 3:
            assert size is None, (index, odd)  # the decoder would give a black image, not fail
    assert not {"split", "trailing empty IDAT", "none"} & set(refused)
    assert {"interleaved", "second IHDR", "long palette", "no palette", "palette after pixels"} <= set(refused)
