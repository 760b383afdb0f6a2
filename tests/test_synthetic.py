"""The synthetic corpus: contract, determinism, split hygiene, and answers consistent with images."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from medmo_pipeline.data.synthetic import SYNTHETIC_SOURCES, generate_rows, iter_texts
from medmo_pipeline.reply_format import split_reasoning
from medmo_pipeline.schema.boxes import relative_to_pixels
from medmo_pipeline.schema.rows import SAMPLE_SCHEMA, validate_row

SIZE = 128
BOX_ANSWER = re.compile(r"^(\w+) <box>\[(.*)\]</box>$")
BOX_ITEM = re.compile(r"\[(\d+), (\d+), (\d+), (\d+)\]")
COUNT_WORDS = {0: "no lesion", 1: "one lesion", 2: "two lesions"}
N_ROWS = {"synth_xray": 120, "synth_cells": 84, "synth_medqa": 400}


@pytest.fixture(scope="module")
def corpus() -> dict[tuple[str, str], list[dict]]:
    return {
        (source, split): list(generate_rows(source, split, N_ROWS[source]))
        for source in SYNTHETIC_SOURCES
        for split in ("train", "eval")
    }


def rows_of(corpus, source, split=None, task=None):
    splits = ("train", "eval") if split is None else (split,)
    return [r for s in splits for r in corpus[(source, s)] if task is None or r["task"] == task]


def user_text(row) -> str:
    return row["messages"][0]["content"]


def reply(row) -> str:
    """The assistant's reply without its reasoning block."""
    return split_reasoning(row["messages"][-1]["content"])[1]


def reasoning(row) -> str:
    return split_reasoning(row["messages"][-1]["content"])[0]


def parse_box_answer(text: str) -> tuple[str, list[tuple[int, ...]]]:
    match = BOX_ANSWER.match(text)
    assert match, f"not a box answer: {text!r}"
    return match.group(1), [tuple(int(v) for v in m) for m in BOX_ITEM.findall(match.group(2))]


def image_array(row) -> np.ndarray:
    """The row's first image as the model sees it: H x W x 3 RGB."""
    from medmo_pipeline.data.pixels import model_image

    stored = Image.open(io.BytesIO(row["images"][0]["bytes"]))
    assert stored.mode == ("L" if row["source"] == "synth_xray" else "RGB")  # X-rays are stored greyscale
    return np.asarray(model_image(row["images"][0]["bytes"]))


# --- contract -------------------------------------------------------------------------------------


def test_every_row_validates_and_has_exactly_the_schema(corpus):
    for rows in corpus.values():
        for row in rows:
            validate_row(row)
            assert list(row) == SAMPLE_SCHEMA.names
            # A round trip through the Arrow schema changes nothing: names and types match exactly.
            assert pa.Table.from_pylist([row], schema=SAMPLE_SCHEMA).to_pylist() == [row]
            assert row["license"] == "CC0-1.0 (synthetic)"
            assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
            assert row["answer"]


def test_ids_are_source_split_index_and_unique(corpus):
    for (source, split), rows in corpus.items():
        assert [r["id"] for r in rows] == [f"{source}:{split}-{i:06d}" for i in range(len(rows))]
        assert all(r["source"] == source and r["split"] == split for r in rows)


def test_image_entries_carry_png_bytes_size_and_sha256(corpus):
    import hashlib

    for source, modality in (("synth_xray", "xray"), ("synth_cells", "microscopy")):
        for row in rows_of(corpus, source):
            assert row["modality"] == modality
            (entry,) = row["images"]
            assert entry["path"] == ""
            assert entry["sha256"] == hashlib.sha256(entry["bytes"]).hexdigest()
            assert image_array(row).shape == (entry["height"], entry["width"], 3) == (SIZE, SIZE, 3)


def test_xray_images_are_gray(corpus):
    pixels = image_array(rows_of(corpus, "synth_xray")[0])
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()


def test_task_mix_per_source(corpus):
    assert set(Counter(r["task"] for r in rows_of(corpus, "synth_xray"))) == {
        "caption",
        "vqa",
        "grounding",
        "report",
    }
    assert set(Counter(r["task"] for r in rows_of(corpus, "synth_cells"))) == {"caption", "vqa"}
    assert set(Counter(r["task"] for r in rows_of(corpus, "synth_medqa"))) == {"vqa", "text_qa", "instruction"}


# --- determinism and splits -----------------------------------------------------------------------


def test_same_arguments_give_identical_rows(corpus):
    for source in SYNTHETIC_SOURCES:
        assert list(generate_rows(source, "eval", 10)) == corpus[(source, "eval")][:10]


def test_a_row_does_not_depend_on_n(corpus):
    assert list(generate_rows("synth_cells", "train", 3)) == corpus[("synth_cells", "train")][:3]


def test_seed_changes_the_images():
    a = next(generate_rows("synth_xray", "train", 1, seed=1))
    b = next(generate_rows("synth_xray", "train", 1, seed=2))
    assert a["images"][0]["sha256"] != b["images"][0]["sha256"]


def test_rows_are_identical_across_processes_and_hash_seeds(corpus):
    script = (
        "import json; from medmo_pipeline.data.synthetic import generate_rows; "
        "print(json.dumps([[r['images'][0]['sha256'], r['answer']] for r in generate_rows('synth_xray', 'train', 4)]))"
    )
    expected = [[r["images"][0]["sha256"], r["answer"]] for r in corpus[("synth_xray", "train")][:4]]
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        assert json.loads(out.stdout) == expected


def test_train_and_eval_share_no_image(corpus):
    for source in ("synth_xray", "synth_cells"):
        train = {r["images"][0]["sha256"] for r in rows_of(corpus, source, "train")}
        evaluation = {r["images"][0]["sha256"] for r in rows_of(corpus, source, "eval")}
        assert len(train) == N_ROWS[source] and len(evaluation) == N_ROWS[source]
        assert not train & evaluation
    medqa = [{r["images"][0]["sha256"] for r in rows_of(corpus, "synth_medqa", split) if r["images"]}
             for split in ("train", "eval")]
    assert medqa[0] and not medqa[0] & medqa[1]


def test_bad_arguments_are_rejected():
    for args in (("synth_nope", "train", 1), ("synth_xray", "test", 1), ("synth_xray", "train", -1)):
        with pytest.raises(ValueError):
            list(generate_rows(*args))


# --- answers match the pictures -------------------------------------------------------------------


def test_yes_no_answers_are_balanced_and_true(corpus):
    for source, question, truth in (
        ("synth_xray", "lesion?", lambda r: len(r["boxes"]) > 0),
        ("synth_cells", "any cells", lambda r: len(r["boxes"]) > 0),
    ):
        for split in ("train", "eval"):
            closed = [r for r in rows_of(corpus, source, split, "vqa") if r["answer"] in ("yes", "no")]
            answers = Counter(r["answer"] for r in closed)
            assert len(closed) >= 20 and abs(answers["yes"] - answers["no"]) <= 1, answers
            assert all((r["answer"] == "yes") == truth(r) for r in closed)


def test_counting_answers_equal_the_number_of_boxes(corpus):
    for source, values in (("synth_xray", {"0", "1", "2"}), ("synth_cells", {"0", "1", "2", "3"})):
        counting = [r for r in rows_of(corpus, source, task="vqa") if r["answer"].isdigit()]
        assert {r["answer"] for r in counting} == values
        assert all(int(r["answer"]) == len(r["boxes"]) for r in counting)


def test_grounding_answers_parse_back_to_the_pixel_boxes_in_reading_order(corpus):
    for source, label in (("synth_xray", "lesion"),):
        grounding = rows_of(corpus, source, task="grounding")
        assert len(grounding) >= 40
        for row in grounding:
            assert row["answer"] == reply(row)
            parsed_label, relative = parse_box_answer(row["answer"])
            assert parsed_label == label and len(relative) == len(row["boxes"]) >= 1
            for rel, box in zip(relative, row["boxes"], strict=True):
                pixels = relative_to_pixels(rel, SIZE, SIZE)
                assert np.allclose(pixels, [box["x1"], box["y1"], box["x2"], box["y2"]], atol=1.0)
            tops = [(b["y1"], b["x1"]) for b in row["boxes"]]
            assert tops == sorted(tops)
            count = ["one", "two", "three"][len(row["boxes"]) - 1]  # the reasoning counts the boxes
            assert reasoning(row).startswith(f"{count} {label}"), reasoning(row)


def test_boxes_are_inside_the_image_apart_and_sized(corpus):
    for source, low, high in (("synth_xray", 0.10, 0.35), ("synth_cells", 0.15, 0.30)):
        sides = []
        for row in rows_of(corpus, source):
            boxes = row["boxes"]
            for b in boxes:
                assert 0 <= b["x1"] < b["x2"] <= SIZE and 0 <= b["y1"] < b["y2"] <= SIZE
                sides += [(b["x2"] - b["x1"]) / SIZE, (b["y2"] - b["y1"]) / SIZE]
            for i, a in enumerate(boxes):
                for b in boxes[i + 1 :]:
                    overlap_x = min(a["x2"], b["x2"]) - max(a["x1"], b["x1"])
                    overlap_y = min(a["y2"], b["y2"]) - max(a["y1"], b["y1"])
                    assert overlap_x <= 0 or overlap_y <= 0, row["id"]
        inside = np.mean([(low - 0.02) <= s <= high + 0.001 for s in sides])
        assert inside >= 0.9, f"{source}: only {inside:.0%} of box sides in [{low}, {high}] of the image"


def test_lesions_are_bright_and_cells_dark_at_their_box_centres(corpus):
    for source, visible in (("synth_xray", lambda v: v > 190), ("synth_cells", lambda v: v < 170)):
        hits = []
        for row in rows_of(corpus, source):
            gray = image_array(row).astype(float).mean(axis=2)
            for b in row["boxes"]:
                y, x = int((b["y1"] + b["y2"]) / 2), int((b["x1"] + b["x2"]) / 2)
                hits.append(visible(gray[y - 1 : y + 2, x - 1 : x + 2].mean()))
        assert len(hits) > 50 and np.mean(hits) >= 0.95


def test_reports_are_short_and_state_count_and_sides(corpus):
    reports = rows_of(corpus, "synth_xray", task="report")
    assert {len(r["boxes"]) for r in reports} == {0, 1, 2}
    for row in reports:
        text = reply(row)
        findings, impression = re.fullmatch(r"FINDINGS: (.*) IMPRESSION: (.*)", text).groups()
        assert len(text.split()) < 40
        assert row["answer"] == impression
        count_phrase = COUNT_WORDS[len(row["boxes"])]
        assert count_phrase in findings.lower() and count_phrase in impression.lower()
        # Radiological convention: the image's left half is the patient's right.
        for box in row["boxes"]:
            side = "right" if (box["x1"] + box["x2"]) / 2 < SIZE / 2 else "left"
            assert side in findings


def test_captions_state_the_count(corpus):
    for row in rows_of(corpus, "synth_xray", task="caption"):
        assert COUNT_WORDS[len(row["boxes"])] in row["answer"] and row["answer"] == reply(row)
    words = {0: "no cells.", 1: "one cell.", 2: "two cells.", 3: "three cells."}
    cell_captions = rows_of(corpus, "synth_cells", task="caption")
    for row in cell_captions:
        assert row["answer"].endswith(words[len(row["boxes"])])
    assert any(not row["boxes"] for row in cell_captions)  # empty fields are described too


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31), size=st.sampled_from([64, 96, 160]), index=st.integers(0, 30))
def test_grounding_round_trip_for_any_seed_and_size(seed, size, index):
    # Index 0 of the X-ray cycle is a grounding row; 'index' shifts into later cycles.
    for source, cycle in (("synth_xray", 10),):
        row = list(generate_rows(source, "train", index * cycle + 1, seed=seed, image_size=size))[-1]
        assert row["task"] == "grounding"
        _, relative = parse_box_answer(row["answer"])
        for rel, box in zip(relative, row["boxes"], strict=True):
            assert np.allclose(
                relative_to_pixels(rel, size, size), [box["x1"], box["y1"], box["x2"], box["y2"]], atol=1.0
            )


# --- text-only rows -------------------------------------------------------------------------------


def test_text_multiple_choice_counts_the_lesions_a_findings_text_describes(corpus):
    questions = rows_of(corpus, "synth_medqa", task="text_qa")
    assert len(questions) >= 60
    for row in questions:
        assert row["modality"] == "text" and row["images"] == [] and row["boxes"] == []
        lines = user_text(row).split("\n")
        assert lines[-1] == "Answer with the option letter." and lines[2:6] == ["A. none", "B. one", "C. two", "D. three"]
        described = re.search(r"FINDINGS: (\w+)", lines[0]).group(1).lower()
        count = {"the": 0, "one": 1, "two": 2}[described]  # "The lungs are clear." when there is none
        assert row["answer"] == reply(row) == "ABCD"[count] and row["choices"] == ["none", "one", "two", "three"]
        assert reasoning(row).startswith(("no", "one", "two")[count])
    assert Counter(r["answer"] for r in questions).keys() == {"A", "B", "C"}
    assert len({user_text(r) for r in questions}) >= 0.9 * len(questions)  # texts rarely repeat


def test_image_multiple_choice_counts_the_lesions_with_options_in_order(corpus):
    questions = rows_of(corpus, "synth_medqa", task="vqa")
    assert len(questions) >= 100
    for row in questions:
        assert row["modality"] == "xray" and len(row["images"]) == 1 and row["choices"] == ["none", "one", "two", "three"]
        lines = user_text(row).split("\n")
        assert lines[1:5] == ["A. none", "B. one", "C. two", "D. three"] and lines[-1] == "Answer with the option letter."
        assert row["answer"] == reply(row) == "ABCD"[len(row["boxes"])]
        assert reasoning(row).startswith(COUNT_WORDS[len(row["boxes"])].split()[0])
    assert Counter(r["answer"] for r in questions).keys() == {"A", "B", "C"}


def test_instruction_rows_summarise_findings_give_the_impression_or_say_where_in_words(corpus):
    rows = rows_of(corpus, "synth_medqa", task="instruction")
    kinds = Counter("where" if "few words" in user_text(r) else "image" if r["images"] else user_text(r).split(":")[0]
                    for r in rows)
    assert set(kinds) == {"Summarise the findings", "where", "image"}
    for row in rows:
        assert row["answer"] == reply(row)
        if "few words" in user_text(row):  # the zones of the X-ray shown, in a few words
            assert row["images"] and (row["answer"] == "no lesion") == (not row["boxes"])
            assert 0 < row["answer"].count(" zone") <= 2 or not row["boxes"]
            continue
        if row["images"]:  # the impression of the X-ray shown, which names its lesion count
            assert row["modality"] == "xray" and COUNT_WORDS[len(row["boxes"])] in row["answer"].lower()
            continue
        assert row["modality"] == "text" and user_text(row).startswith("Summarise")
        count = re.search(r"FINDINGS: (\w+)", user_text(row)).group(1).lower()
        impression_count = row["answer"].split()[0].lower()
        assert count == impression_count or (count == "the" and "no lesion" in row["answer"])


def test_every_synthetic_kind_keeps_its_training_rows_through_decontamination():
    """A kind whose training questions all match evaluation questions would be filtered away whole, and
    its stage would have nothing to learn from: each keeps at least 90% of its training rows."""
    from medmo_pipeline.data.curation import build_eval_index
    from medmo_pipeline.data.curation.keys import contamination

    for source in SYNTHETIC_SOURCES:
        index = build_eval_index(generate_rows(source, "eval", 300, image_size=64))
        kept, seen = Counter(), Counter()
        for row in generate_rows(source, "train", 600, image_size=64):
            kind = (row["task"], bool(row["images"]))
            seen[kind] += 1
            hashes = [image["sha256"] for image in row["images"]]
            kept[kind] += not contamination(hashes, user_text(row), index)
        assert all(kept[kind] >= 0.9 * seen[kind] for kind in seen), (source, seen, kept)


# --- tokenizer texts ------------------------------------------------------------------------------


def test_iter_texts_covers_every_text_field_and_the_vocabulary_is_small(corpus):
    rows = [r for rs in corpus.values() for r in rs]
    texts = list(iter_texts(rows))
    for row in rows[::37]:
        assert {m["content"] for m in row["messages"]} | {row["answer"], *row["choices"]} <= set(texts)
    words = {w for t in texts for w in re.findall(r"[A-Za-z]+", t)}
    assert {"lesion", "cell", "FINDINGS", "IMPRESSION"} <= words
    assert len(words) < 300, len(words)
