"""Curation: corrupted inputs are quarantined with their reason while good rows are kept; exact
dedup; decontamination against the eval index; clipping rules; deterministic output."""

from __future__ import annotations

import copy
import io
import struct
import zlib

import pyarrow.parquet as pq
import pytest
from fixtures_formats import jpeg_bytes, png_bytes
from PIL import Image

from medmo_pipeline.data import shards
from medmo_pipeline.data.curation import REASONS, build_eval_index, curate, normalise_question
from medmo_pipeline.data.images import image_entry
from medmo_pipeline.data.synthetic import generate_rows


def row(local_id: str, *, task="vqa", question="Is there a lesion?", answer="yes", images=None, boxes=(),
        choices=(), split="train") -> dict:
    return {"id": local_id, "source": "", "split": split, "task": task, "modality": "xray",
            "images": [image_entry(png_bytes(seed=hash(local_id) % 1000), f"{local_id}.png")] if images is None
            else images,
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            "answer": answer, "choices": list(choices), "boxes": list(boxes), "license": "CC0"}


def box(x1, y1, x2, y2, label="lesion"):
    return {"label": label, "x1": x1, "y1": y1, "x2": x2, "y2": y2}


def bomb_png(width=50000, height=50000) -> bytes:
    """A tiny valid PNG whose header claims ``width`` x ``height``."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


def corrupted_rows() -> tuple[list[dict], dict[str, str], list[str]]:
    """(rows, expected reason by input id, ids of the good rows)."""
    good_png = png_bytes(64, 48, seed=1)
    entry = lambda data, path: {"bytes": data, "path": path, "width": 0, "height": 0, "sha256": ""}
    bad = {
        "truncated": (row("truncated", images=[entry(good_png[: len(good_png) // 2], "t.png")]), "image_truncated"),
        "zero_byte": (row("zero_byte", images=[entry(b"", "z.png")]), "image_empty"),
        "bomb": (row("bomb", images=[entry(bomb_png(), "big.png")]), "image_too_large"),
        "outside": (row("outside", task="grounding", answer="lesion <box>[[0, 0, 1, 1]]</box>",
                        boxes=[box(100, 100, 140, 140)]), "box_outside"),
        "negative_width": (row("negative_width", task="grounding", answer="x", boxes=[box(30, 5, 10, 20)]),
                           "box_degenerate"),
        "nan": (row("nan", task="grounding", answer="x", boxes=[box(float("nan"), 5, 10, 20)]), "box_nan"),
        "no_answer": (row("no_answer", answer=""), "missing_answer"),
        "bad_utf8": (dict(row("bad_utf8"), messages=[{"role": "user", "content": b"Is \xff there?"},
                                                     {"role": "assistant", "content": "yes"}]), "invalid_utf8"),
        "surrogate": (row("surrogate", question="Is \udcff there?"), "invalid_utf8"),
        "bad_choice": (row("bad_choice", task="text_qa", images=[], answer="E", choices=["a", "b", "c"]),
                       "choices_inconsistent"),
        "not_an_image": (row("not_an_image", images=[entry(b"hello world, not an image", "x.png")]),
                         "image_undecodable"),
        "missing_file": (row("missing_file", images=[{**entry(None, "gone.png")}]), "image_missing"),
        "bad_task": (row("bad_task", task="segmentation"), "schema"),
    }
    good = [
        row("good_vqa"),
        row("good_letter", task="text_qa", images=[], question="Pick one", answer="B", choices=["x", "y"]),
        row("good_clipped", task="grounding", answer="lesion <box>[[0, 0, 1, 1]]</box>",
            boxes=[box(50, 10, 70, 30)]),  # 64 wide: 70% of its area inside -> clipped to x2 = 64
        row("good_text", task="instruction", images=[], question="Summarise: clear lungs.", answer="Normal."),
        row("wrong_ext", images=[entry(jpeg_bytes(), "scan.png")]),  # the content decides: kept, counted
    ]
    duplicate_id = dict(row("good_vqa", question="Another question?", answer="no"))
    rows = [*good[:2], *(r for r, _ in bad.values()), *good[2:], duplicate_id]
    expected = {key: reason for key, (_, reason) in bad.items()}
    expected["good_vqa"] = "duplicate_id"  # the second row with that id
    return rows, expected, [r["id"] for r in good]


def test_corrupted_inputs_are_quarantined_with_their_reason_and_good_rows_kept(tmp_path):
    rows, expected, good_ids = corrupted_rows()
    report = curate(rows, tmp_path / "out", source="fixture", shard_rows=3)
    kept = list(shards.iter_rows(tmp_path / "out"))
    assert [r["id"] for r in kept] == [f"fixture:{i}" for i in good_ids]
    quarantine = pq.read_table(report["quarantine_path"]).to_pylist()
    got = {}
    for item in quarantine:
        key = item["row_id"] if item["row_id"] not in got else f"{item['row_id']}#2"
        got[key] = item["reason"]
        assert item["source"] == "fixture" and item["detail"]
    assert got == expected
    assert set(expected.values()) <= set(REASONS)
    assert report["rows_in"] == len(rows) and report["rows_kept"] == len(good_ids)
    assert report["quarantined"] == len(expected) and sum(report["quarantined_by_reason"].values()) == len(expected)
    assert report["boxes_clipped"] == 1
    clipped = next(r for r in kept if r["id"].endswith("good_clipped"))["boxes"][0]
    assert (clipped["x1"], clipped["x2"]) == (50.0, 64.0)
    assert shards.verify_shards(tmp_path / "out") == []


def test_bomb_is_rejected_from_the_header_without_decoding():
    from medmo_pipeline.data.images import ImageError, inspect_image

    with pytest.raises(ImageError) as error:
        inspect_image(bomb_png(8500, 8500))  # 72M pixels: over our limit, under PIL's own warning
    assert error.value.reason == "image_too_large" and "header says 8500x8500" in error.value.detail


def test_image_size_recomputed_and_mismatch_quarantined(tmp_path):
    good = row("declared_ok")
    wrong = row("declared_wrong")
    wrong["images"][0]["width"] = 999
    report = curate([good, wrong], tmp_path / "out", source="s", shard_rows=10)
    assert report["quarantined_by_reason"] == {"image_size_mismatch": 1}
    kept = next(shards.iter_rows(tmp_path / "out"))
    assert (kept["images"][0]["width"], kept["images"][0]["height"]) == (64, 48)


def test_exact_duplicates_dropped_and_counted(tmp_path):
    first = row("a", question="Is there a lesion?")
    same_content = copy.deepcopy(first) | {"id": "b"}
    spacing_differs = copy.deepcopy(first) | {"id": "c"}
    spacing_differs["messages"][0]["content"] = "  Is there a lesion?  "
    other_answer = copy.deepcopy(first) | {"id": "d", "answer": "no"}
    other_answer["messages"][1]["content"] = "no"
    report = curate([first, same_content, spacing_differs, other_answer], tmp_path / "out", source="s", shard_rows=10)
    assert report["duplicates_dropped"] == 2 and report["rows_kept"] == 2


def test_decontamination_drops_train_rows_matching_eval_images_or_questions(tmp_path):
    eval_rows = list(generate_rows("synth_xray", "eval", 10, image_size=64)) + \
        list(generate_rows("synth_medqa", "eval", 8))
    index = build_eval_index(eval_rows)
    leaked_image = copy.deepcopy(eval_rows[0]) | {"id": "leak1", "split": "train"}
    text_item = next(r for r in eval_rows if r["task"] == "text_qa")
    leaked_question = copy.deepcopy(text_item) | {"id": "leak2", "split": "train"}
    leaked_question["messages"][0]["content"] = text_item["messages"][0]["content"].upper() + "  "
    clean = list(generate_rows("synth_xray", "train", 20, image_size=64))
    eval_kept = copy.deepcopy(eval_rows[1])  # eval rows themselves are never dropped
    report = curate([*clean, leaked_image, leaked_question, eval_kept], tmp_path / "out", source="synth",
                    eval_index=index, shard_rows=50)
    assert report["contaminated_by_kind"] == {"image": 1, "question": 1}
    assert report["rows_kept"] == len(clean) + 1
    kept_ids = {r["id"] for r in shards.iter_rows(tmp_path / "out")}
    assert "synth:leak1" not in kept_ids and "synth:leak2" not in kept_ids


def test_eval_index_leaves_out_templated_image_questions():
    eval_rows = list(generate_rows("synth_xray", "eval", 10, image_size=64))
    index = build_eval_index(eval_rows)
    assert normalise_question("Describe the image.") not in index
    assert all(image["sha256"] in index for r in eval_rows for image in r["images"])


def test_same_input_gives_identical_shards_and_manifest(tmp_path):
    rows = list(generate_rows("synth_cells", "train", 30, image_size=64))
    first = curate(rows, tmp_path / "a", source="s", shard_rows=8)
    second = curate(copy.deepcopy(rows), tmp_path / "b", source="s", shard_rows=8)
    assert first["manifest"] == second["manifest"] and first["data_version"] == second["data_version"]
    assert (tmp_path / "a.quarantine.parquet").read_bytes() == (tmp_path / "b.quarantine.parquet").read_bytes()


def test_a_row_that_raises_unexpectedly_is_quarantined_not_fatal(tmp_path):
    rows = [row("ok"), "not a dict", {"id": "x", "task": "vqa", "messages": None}]
    report = curate(rows, tmp_path / "out", source="s", shard_rows=10)
    assert report["rows_kept"] == 1 and report["quarantined_by_reason"] == {"malformed_row": 1, "schema": 1}


def test_png_test_helper_really_is_valid():
    assert Image.open(io.BytesIO(png_bytes())).size == (64, 48)


def test_question_keys_keep_combining_marks_so_different_words_stay_apart():
    """Python's \\w leaves combining marks out: Arabic كَتَبَ and كُتُب ("he wrote", "books"), and
    Hindi कितना and कितनी, became one key, and a training question matching no evaluation item was
    dropped as contaminated."""
    assert normalise_question("كَتَبَ") != normalise_question("كُتُب")
    assert normalise_question("कितना दर्द है?") != normalise_question("कितनी दर्द है?")
    assert normalise_question("Is there a <image> LESION?? ") == "is there a lesion"
    assert normalise_question("Ist das Gewebe maligne?") == normalise_question("ist das gewebe MALIGNE")
