"""Red-team round 4 on benchmark files as their publishers ship them: a test split in several hub
shards (PathVQA's three), MMMU's ``<image k>`` placeholders without their image, gold letters naming
an option that is empty or repeated, and rows of an image benchmark that name no image."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from benchmark_releases import IMAGE_STRUCT, _image, _jsonl, _parquet, build_release

from medmo_pipeline.data.benchmarks.checks import BenchmarkLoadError
from medmo_pipeline.data.benchmarks.loading import load_counted


def _load(name, root):
    return load_counted(name, None, root=root, partial=True)


VQA_SCHEMA = pa.schema([("image", IMAGE_STRUCT), ("question", pa.string()), ("answer", pa.string())])


def _mmmu_edit(root, **fields):
    path = root / "Pharmacy/validation-00000-of-00001.parquet"
    records = pq.read_table(path).to_pylist()
    records[0].update(fields)
    pq.write_table(pa.Table.from_pylist(records, schema=pq.read_schema(path)), path)


# ---- a split in several shards -----------------------------------------------------------------

def test_a_test_split_in_several_shards_is_numbered_across_them(tmp_path):
    # huggingface.co/datasets/flaviagiammarino/path-vqa ships data/test-0000{0,1,2}-of-00003-<hash>.parquet.
    # Before: each shard numbered its rows from 0, and the load failed on "id 'pathvqa:0' is also the id of".
    for shard in range(3):
        records = [{"image": _image(10 * shard + i, f"{shard}-{i}.jpg"), "question": f"q{shard}{i}?",
                    "answer": f"answer {shard}{i}"} for i in range(2)]
        _parquet(tmp_path, f"data/test-0000{shard}-of-00003-ce5bd5618{shard}.parquet", records, VQA_SCHEMA)
    load = _load("pathvqa", tmp_path)
    assert [row["id"] for row in load.rows] == [f"pathvqa:{i}" for i in range(6)]
    assert [row["answer"] for row in load.rows] == [f"answer {s}{i}" for s in range(3) for i in range(2)]
    assert load.read == 6 and len(load.files) == 3
    assert load.rows[2]["origin"] == ("data/test-00001-of-00003-ce5bd56181.parquet", "row 1")


def test_a_problem_in_a_later_shard_names_that_shard_and_its_row(tmp_path):
    for shard in range(2):
        records = [{"image": _image(shard, "x.jpg"), "question": "q?", "answer": "yes" if shard == 0 else ""}]
        _parquet(tmp_path, f"data/test-0000{shard}-of-00002-x.parquet", records, VQA_SCHEMA)
    with pytest.raises(BenchmarkLoadError, match=r"data/test-00001-of-00002-x\.parquet, row 1 \(pathvqa:1\): "
                       r"no gold answer"):
        _load("pathvqa", tmp_path)


# ---- MMMU's <image k> placeholders ---------------------------------------------------------------

@pytest.mark.parametrize("fields, said", [
    # before: loaded with image_1 alone; the model was asked about an <image 2> it never saw
    ({"question": "Compare <image 1> with <image 2>."},
     r"<image 2> is named, but image_2 is empty \(images given: image_1\)"),
    # before: image_2 was passed first, so "<image 2>" pointed past the images the model had
    ({"question": "What does <image 2> show?", "image_1": None, "image_2": _image(7, "2.png")},
     r"<image 2> is named, but image_2 would be shown as image 1 \(images given: image_2\)"),
    ({"options": "['<image 2>', '<image 3>']", "answer": "A"}, r"<image 2> is named, but image_2 is empty"),
])
def test_mmmu_placeholder_without_its_image_fails_naming_the_row(tmp_path, fields, said):
    build_release("mmmu_med", tmp_path)
    _mmmu_edit(tmp_path, **fields)
    with pytest.raises(BenchmarkLoadError, match=rf"Pharmacy/validation-00000-of-00001\.parquet, row 1: "
                       rf"malformed_record: .*{said}"):
        _load("mmmu_med", tmp_path)


def test_mmmu_placeholders_with_their_images_load_in_order(tmp_path):
    build_release("mmmu_med", tmp_path)
    rows = {row["id"]: row for row in _load("mmmu_med", tmp_path).rows}
    row = rows["mmmu_med:Pharmacy/validation_Pharmacy_2"]  # options <image 2..4>, four images
    assert [image["path"] for image in row["images"]] == ["1.png", "2.png", "3.png", "4.png"]


# ---- the option a gold letter names ----------------------------------------------------------------

def _medqa(root, options, answer_idx):
    _jsonl(root, "phrases_no_exclude_test.jsonl", [
        {"question": "Q0", "options": {"A": "Ampicillin", "B": "Ceftriaxone", "C": "Doxycycline", "D": "Nitrofurantoin"},
         "answer_idx": "D"},
        {"question": "Q1", "options": options, "answer_idx": answer_idx}])


@pytest.mark.parametrize("options, answer_idx, said", [
    # before: loaded; a model answering B ("aspirin") chose the gold's answer and was scored wrong
    ({"A": "Aspirin", "B": "aspirin.\n", "C": "Heparin", "D": "Warfarin"}, "A",
     r"gold answer 'A' is ambiguous: option A 'Aspirin' reads as option B 'aspirin\.'"),
    # before: loaded; the model was shown "B. " and nothing, and B was the gold
    ({"A": "Aspirin", "B": " ", "C": "Heparin", "D": "Warfarin"}, "B", r"gold answer 'B' names option B, which is empty"),
])
def test_a_gold_letter_naming_an_empty_or_repeated_option_fails_the_load(tmp_path, options, answer_idx, said):
    _medqa(tmp_path, options, answer_idx)
    with pytest.raises(BenchmarkLoadError, match=rf"phrases_no_exclude_test\.jsonl, line 2 \(medqa:1\): {said}"):
        _load("medqa", tmp_path)


def test_a_repeated_option_the_gold_does_not_name_still_loads(tmp_path):
    _medqa(tmp_path, {"A": "Aspirin", "B": "Heparin", "C": "Heparin", "D": "Warfarin"}, "A")
    rows = _load("medqa", tmp_path).rows
    assert [row["answer"] for row in rows] == ["D", "A"]


def test_mmmu_gold_letter_on_a_repeated_option_is_ambiguous(tmp_path):
    build_release("mmmu_med", tmp_path)
    _mmmu_edit(tmp_path, options="['1', '2', '3', '1 ']", answer="D")
    with pytest.raises(BenchmarkLoadError, match=r"gold answer 'D' is ambiguous: option D '1' reads as option A '1'"):
        _load("mmmu_med", tmp_path)


# ---- rows of an image benchmark that name no image ----------------------------------------------

def test_a_vqa_row_naming_no_image_fails_the_load(tmp_path):
    records = [{"image": _image(0, "0.jpg"), "question": "q?", "answer": "yes"},
               {"image": None, "question": "Is there a fracture?", "answer": "no"}]
    _parquet(tmp_path, "data/test-00000-of-00001-x.parquet", records, VQA_SCHEMA)
    # before: the second row loaded with no image, and was asked and scored without it
    with pytest.raises(BenchmarkLoadError, match=r"row 2 \(vqa_rad:1\): the record names no image"):
        _load("vqa_rad", tmp_path)


def test_medxpertqa_mm_row_with_an_empty_image_list_fails_the_load(tmp_path):
    build_release("medxpertqa_mm", tmp_path)
    records = [json.loads(line) for line in (tmp_path / "MM/test.jsonl").read_text().splitlines()]
    records[1]["images"] = []
    _jsonl(tmp_path, "MM/test.jsonl", records)
    with pytest.raises(BenchmarkLoadError, match=r"MM/test\.jsonl, line 2 \(medxpertqa_mm:MM-1\): the record names "
                       r"no image"):
        _load("medxpertqa_mm", tmp_path)


def test_a_mimic_study_without_images_fails_the_load(tmp_path, monkeypatch):
    monkeypatch.setenv("PHYSIONET_USERNAME", "reader")
    build_release("mimic_cxr", tmp_path)
    shutil.rmtree(tmp_path / "files/p10/p10000032/s53189527")  # the report stays, its JPG folder is gone
    # before: the report was generated from no image and scored
    with pytest.raises(BenchmarkLoadError, match=r"s53189527\.txt, report \(mimic_cxr:p10/p10000032/s53189527\): "
                       r"the record names no image"):
        _load("mimic_cxr", tmp_path)


def test_text_benchmarks_need_no_image(tmp_path):
    build_release("medqa", tmp_path)
    assert all(row["images"] == [] for row in _load("medqa", tmp_path).rows)
