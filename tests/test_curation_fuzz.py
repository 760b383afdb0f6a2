"""The batch checks and the row-by-row checks, fuzzed against each other: rows assembled at random
from good and hostile parts (non-PNG formats, malformed PNG headers whose size fields overflow
int32, truncated and tiny JPEGs, EXIF orientations in PNG chunks, damaged or oversized EXIF, junk
text with control characters and invalid UTF-8, odd types)
get the same outcome, reason, detail and normalised row from both paths, batch after batch, with
the default limits and with chunk and file-size limits low enough for the batch walk to meet them."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hostile_files import (
    chunk,
    exif_block,
    exif_png,
    exif_webp,
    gif_comment_blocks,
    many_chunks_png,
    many_segments_jpeg,
    many_strips_tiff,
    oversized_jpeg,
    plain_jpeg,
    plain_png,
    random_idat_png,
    twelve_bit_png,
    ztxt_png,
)
from test_curation_batch import outcome

from medmo_pipeline.data.curation import CurationLimits, ImageChecker
from medmo_pipeline.data.curation import batch as batch_checks
from medmo_pipeline.data.curation.batch import check_batch
from medmo_pipeline.data.image_limits import ImageLimits
from medmo_pipeline.data.images import PNG_SIGNATURE


def _images(rng: np.random.Generator) -> list[tuple[bytes, str]]:
    good_png, good_jpeg = plain_png(seed=1), plain_jpeg(seed=2)
    huge_fields = PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", 0xFFDAB903, 0xFFFFFFFF, 8, 0, 0, 0, 0))
    return [
        (good_png, "a.png"), (good_jpeg, "b.jpg"), (good_png, "a.jpg"), (good_jpeg, "b.png"), (good_jpeg, "noext"),
        (plain_png(64, 48, 3, "RGB"), "c.png"), (twelve_bit_png(), "d.png"),
        (good_jpeg[: len(good_jpeg) // 2], "t.jpg"), (plain_jpeg(4, 4), "tiny.jpg"), (oversized_jpeg(), "o.jpg"),
        (random_idat_png(), "r.png"), (ztxt_png(4 << 20), "z.png"), (huge_fields + bytes(40), "h.png"),
        (huge_fields[:20], "short.png"), (good_png[:40], "cut.png"), (PNG_SIGNATURE, "sig.png"),
        (bytes(rng.integers(0, 256, 64, dtype=np.uint8)), "junk.png"), (b"GIF89a" + bytes(30), "g.gif"),
        (bytes(128) + b"DICM" + bytes(40), "x.dcm"), (b"\xff\xd8\xff" + bytes(30), "j.jpg"), (b"", "empty.png"),
        (many_chunks_png(17), "m.png"), (many_chunks_png(30), "mm.png"), (many_segments_jpeg(30), "s.jpg"),
        (many_strips_tiff(30), "t.tif"),
        # EXIF orientations wherever PIL reads them, damaged, and beyond MAX_EXIF_BYTES
        (exif_png(exif_block(6)), "rot.png"), (exif_png(exif_block(6), after_pixels=True), "rot2.png"),
        (exif_png(exif_block(8), kind=b"tEXt", keyword=b"exif"), "rot3.png"), (exif_png(b"junk"), "dx.png"),
        (exif_png(exif_block(6, values=40_000)), "bigexif.png"), (exif_webp(exif_block(5)), "w.webp"),
        (gif_comment_blocks(50), "c.gif"),
    ]


TEXTS = ["Is there a lesion?", "  yes ", "no", "caf\u00e9", "\u80ba\u90e8", "a\x07b", "\x1cyes\x1f", "x\x7f",
         "C1\u0085", "", "tab\there", "line\nbreak", "\ud800", b"bytes", b"\xff\xfe", 7, None]


def _row(rng: np.random.Generator, index: int, images: list) -> object:
    """A good vqa row with each field bent at random (about one field in sixteen)."""
    pick = lambda values: values[int(rng.integers(len(values)))]
    bent = lambda good, values: pick(values) if rng.random() < 0.06 else good
    if rng.random() < 0.02:
        return pick(["not a row", None, 42, ["list"]])
    answer = bent(pick(["yes", "no"]), TEXTS)
    row = {
        "id": bent(f"r{index}", TEXTS),
        "task": bent("vqa", ["caption", "grounding", "text_qa", "VQA", " vqa ", "x"]),
        "split": bent("train", ["eval", None, "", " eval ", "test"]),
        "modality": bent("xray", [None, "ct\x00", "\u00e9cho"]),
        "messages": [{"role": "user", "content": bent("Is there a lesion?", TEXTS)},
                     {"role": "assistant", "content": answer}],
        "answer": answer,
        "choices": bent([], [["yes", "no"], ["yes", "yes"], None]),
        "boxes": bent([], [[{"label": "l", "x1": 1, "y1": 1, "x2": 9, "y2": 9}],
                           [{"label": "l", "x1": float("nan"), "y1": 1, "x2": 9, "y2": 9}]]),
        "license": bent("CC0", [None, "x\x1b[0m"]),
        "images": [],
    }
    for _ in range(int(rng.integers(1, 3))):
        data, path = pick(images) if rng.random() < 0.25 else images[int(rng.integers(2))]
        width, height = bent((0, 0), [(48, 40), (4, 4), (0xFFFFFFF, 1)])
        row["images"].append({"bytes": data, "path": path, "width": width, "height": height})
    return row


@pytest.mark.parametrize("seed", range(6))
def test_batch_and_row_paths_agree_on_random_rows(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    images = _images(rng)
    rows = [_row(rng, index, images) for index in range(160)]
    limits = CurationLimits() if seed < 3 else CurationLimits(image=ImageLimits(max_chunks=20, max_file_bytes=4000))
    row_by_row, reference = [], batch_checks.check_row
    monkeypatch.setattr(batch_checks, "check_row", lambda raw, **kw: row_by_row.append(raw) or reference(raw, **kw))
    kept = 0
    for start in range(0, len(rows), 8):  # small batches: a value Arrow cannot take spoils only its own
        batch = rows[start:start + 8]
        fast = check_batch(batch, source="fuzz", images=ImageChecker(limits.image), limits=limits)
        slow = check_batch(batch, source="fuzz", images=ImageChecker(limits.image), limits=limits, vectorised=False)
        for index, raw in enumerate(batch):
            assert outcome(fast, index) == outcome(slow, index), (seed, start + index, raw)
        assert fast.table.equals(slow.table)
        kept += fast.table.num_rows
    assert 0 < kept < len(rows)
    assert len(row_by_row) - len(rows) < len(rows) - 30  # beside the reference pass, the batch path decided 30+


def test_a_batch_of_only_non_png_and_malformed_headers_does_not_overflow():
    """The batch that used to end a source with ArrowInvalid (a size read from a JPEG's bytes)."""
    rows = [{"id": f"j{i}", "task": "vqa", "messages": [{"role": "user", "content": "q"},
                                                          {"role": "assistant", "content": "yes"}],
             "answer": "yes", "images": [{"bytes": data, "path": path}]}
            for i, (data, path) in enumerate(_images(np.random.default_rng(0)))]
    limits = CurationLimits()
    fast = check_batch(rows, source="fuzz", images=ImageChecker(limits.image), limits=limits)
    slow = check_batch(rows, source="fuzz", images=ImageChecker(limits.image), limits=limits, vectorised=False)
    assert [outcome(fast, i) for i in range(len(rows))] == [outcome(slow, i) for i in range(len(rows))]
