"""Red-team round on benchmark loading and scoring: publishers' quirks (yes/no golds written
"Yes.", MMMU answers as option text, malformed MedSG fields), hostile files (escaping paths,
truncated or huge-declared images, non-UTF-8 bytes, 100k-deep JSON), hostile model replies, and
the counts and denominators a benchmark reports when rows are skipped or none is left."""

from __future__ import annotations

import csv
import json
import struct
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from benchmark_releases import _hub_vqa, _jsonl, build_release
from fixtures_formats import write_file

from medmo_pipeline.data.benchmarks.checks import BenchmarkLoadError
from medmo_pipeline.data.benchmarks.loading import BenchmarkLoad, load_counted
from medmo_pipeline.data.benchmarks.registry import load_registry
from medmo_pipeline.evaluation.scoring import question_kind, score_benchmark, score_rows

REGISTRY = load_registry()


def _load(name, root):
    return load_counted(name, None, root=root, partial=True)


def _mmmu_edit(root, **fields):
    path = root / "Pharmacy/validation-00000-of-00001.parquet"
    records = pq.read_table(path).to_pylist()
    records[0].update(fields)
    pq.write_table(pa.Table.from_pylist(records, schema=pq.read_schema(path)), path)


def _pmc_edit(root, column, value):
    path = root / "test_2.csv"
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    rows[1][column] = value
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)


# ---- publishers' quirks ------------------------------------------------------------------------

def test_yes_no_gold_with_a_period_or_capitals_is_scored_as_a_closed_question(tmp_path):
    # Before: "Yes." and "No." were open questions, so "yes, there is" scored 0 by exact match.
    _hub_vqa(tmp_path, ["Yes.", "no ", "YES", " No.", "left lung."])
    rows = _load("vqa_rad", tmp_path).rows
    assert [question_kind(row) for row in rows] == ["closed"] * 4 + ["open"]
    results, _ = score_rows(rows, ["yes, there is", "No", "yes", "no, it is not", "Left lung"])
    values = {result.name: result for result in results}
    assert values["closed_vqa_accuracy"].n == 4 and values["accuracy"].value == 1.0


def test_mmmu_answer_written_as_the_option_text_is_read_as_its_letter(tmp_path):
    build_release("mmmu_med", tmp_path)
    _mmmu_edit(tmp_path, answer="Heart's apex")  # before: "no gold answer (empty answer field)"
    rows = {row["id"]: row for row in _load("mmmu_med", tmp_path).rows}
    assert rows["mmmu_med:Pharmacy/validation_Pharmacy_1"]["answer"] == "C"


def test_mmmu_answer_naming_no_option_is_named_with_its_value(tmp_path):
    build_release("mmmu_med", tmp_path)
    _mmmu_edit(tmp_path, answer="E")
    with pytest.raises(BenchmarkLoadError, match=r"Pharmacy/validation-00000-of-00001\.parquet, row 1: "
                       r"malformed_record: .*answer 'E' names none of its 4 options"):
        _load("mmmu_med", tmp_path)


def test_mmmu_options_that_are_no_python_literal_are_named(tmp_path):
    build_release("mmmu_med", tmp_path)
    _mmmu_edit(tmp_path, options="['Aorta', 'Vena cava'")  # before: read as one option, then "no gold answer"
    with pytest.raises(BenchmarkLoadError, match=r"row 1: malformed_record: .*options \"\['Aorta', 'Vena cava'\" "
                       r"is not a Python-literal list"):
        _load("mmmu_med", tmp_path)


def test_medqa_options_as_a_list_or_an_unordered_dict_keep_the_publishers_letter(tmp_path):
    options = {"D": "Nitrofurantoin", "A": "Ampicillin", "C": "Doxycycline", "B": "Ceftriaxone"}
    records = [{"question": "Q0", "answer": "Nitrofurantoin", "options": options, "answer_idx": " d "},
               {"question": "Q1", "answer": "Nitrofurantoin", "answer_idx": "D",
                "options": ["Ampicillin", "Ceftriaxone", "Doxycycline", "Nitrofurantoin"]}]
    _jsonl(tmp_path, "phrases_no_exclude_test.jsonl", records)
    rows = _load("medqa", tmp_path).rows
    assert [(row["answer"], row["choices"][3]) for row in rows] == [("D", "Nitrofurantoin")] * 2


def test_a_gold_naming_no_option_is_named_not_called_empty(tmp_path):
    build_release("medmcqa", tmp_path)
    records = [{"id": f"x{i}", "question": f"Q{i}", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": cop}
               for i, cop in enumerate([0, 4])]  # 4: a 1-based cop past the last option
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "data/validation-00000-of-00001.parquet")
    with pytest.raises(BenchmarkLoadError, match=r"validation-00000-of-00001\.parquet, row 2: malformed_record: .*"
                       r"cop '4' names none of its 4 options \(counted from 0\)"):
        _load("medmcqa", tmp_path)


def test_duplicate_ids_name_both_rows(tmp_path):
    build_release("slake", tmp_path)
    records = json.loads((tmp_path / "test.json").read_text())
    records[1]["qid"] = records[0]["qid"]
    (tmp_path / "test.json").write_text(json.dumps(records, ensure_ascii=False))
    with pytest.raises(BenchmarkLoadError, match=r"test\.json, row 2 \(slake:11\): id 'slake:11' is also the id of "
                       r"test\.json row 1"):
        _load("slake", tmp_path)


@pytest.mark.parametrize("field, value, reason", [
    ("size", "400x300", r"size '400x300' is not \[width, height\] in pixels"),  # before: ZeroDivisionError
    ("size", [0, 300], r"size '\[0, 300\]' is not \[width, height\] in pixels"),
    ("answer", "[100, 60, 200, 160]", r"answer '\[100, 60, 200, 160\]' is not a list of numbers"),  # before: float('[')
])
def test_medsg_malformed_fields_are_named(tmp_path, field, value, reason):
    build_release("medsg_multi_view", tmp_path)
    records = json.loads((tmp_path / "Task3.json").read_text())
    records[0][field] = value
    write_file(tmp_path, "Task3.json", json.dumps(records))
    with pytest.raises(BenchmarkLoadError, match=rf"Task3\.json, row 1: malformed_record: .*{reason}"):
        _load("medsg_multi_view", tmp_path)


def test_medsg_one_image_path_as_a_string_is_that_image(tmp_path):
    build_release("medsg_referring", tmp_path)
    records = json.loads((tmp_path / "Task8.json").read_text())
    records[0]["images"] = records[0]["images"][0]  # before: each character a path ("/" is absolute)
    write_file(tmp_path, "Task8.json", json.dumps(records))
    (row,) = _load("medsg_referring", tmp_path).rows
    assert len(row["images"]) == 1 and row["boxes"]


# ---- hostile files -----------------------------------------------------------------------------

def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _truncate(root):
    path = root / "figures/PMC8253797_Fig4_11.jpg"
    path.write_bytes(path.read_bytes()[:200])


def _sparse_gigabyte(root):
    with open(root / "figures/PMC8253797_Fig4_11.jpg", "r+b") as handle:
        handle.truncate(1 << 30)


@pytest.mark.parametrize("hostile, reason", [
    (lambda root: _pmc_edit(root, 1, "../../etc/passwd"), r"row 1: unsafe_path: .*climbs out"),
    (lambda root: _pmc_edit(root, 1, "/etc/hostname"), r"row 1: unsafe_path: .*is absolute"),
    (lambda root: (root / "figures/PMC8253797_Fig4_11.jpg").unlink(), r"image file .* is missing"),
    (_truncate, r"row 1 \(pmc_vqa:0\): image .* cannot be read \(image_(truncated|undecodable)"),
    (lambda root: (root / "figures/PMC8253797_Fig4_11.jpg").write_bytes(_png_declaring(100_000, 100_000)),
     r"image_too_large: header says 100000x100000"),
    (_sparse_gigabyte, r"row 1: file_too_large: .*holds 1073741824 bytes"),
    (lambda root: (root / "test_2.csv").write_bytes((root / "test_2.csv").read_bytes().replace(b"What", b"\xff\xfe")),
     r"row 1: invalid_utf8"),
])
def test_a_hostile_pmc_vqa_file_fails_the_load_naming_file_and_row(tmp_path, hostile, reason):
    build_release("pmc_vqa", tmp_path)
    hostile(tmp_path)
    with pytest.raises(BenchmarkLoadError, match=rf"benchmark 'pmc_vqa': 1 row\(s\) cannot be evaluated \(test_2\.csv, "
                                                 rf".*{reason}"):
        _load("pmc_vqa", tmp_path)


def test_json_nested_100k_deep_is_its_records_problem(tmp_path):
    build_release("slake", tmp_path)
    text = (tmp_path / "test.json").read_text()
    (tmp_path / "test.json").write_text(text[:-1] + ", " + "[" * 100_000 + "]" * 100_000 + "]")
    with pytest.raises(BenchmarkLoadError, match=r"test\.json, row 4: malformed_record: .*nested too deeply"):
        _load("slake", tmp_path)


# ---- replies, denominators, counts -------------------------------------------------------------

HOSTILE_REPLIES = ["", "\x00\x01\x1b[31m yes \x07", "A" * 200_000, "<box>[[1,2,3]]</box>",
                   "<box>[[nan, 1e999, -1e999, 5]]</box>", "<|box_start|>(1,2),(3,<|box_end|>", "\ud800",
                   '{"bbox_2d": [' * 5_000, "<think>" * 5_000, "<box>[[0,0,1e308,1e308]]</box>"]


@pytest.mark.parametrize("name", ["vqa_rad", "medqa", "medsg_referring", "iu_xray"])
def test_hostile_replies_score_zero_over_every_row(tmp_path, name):
    build_release(name, tmp_path)
    rows = _load(name, tmp_path).rows
    for reply in HOSTILE_REPLIES:
        scores = score_benchmark(rows, [reply] * len(rows), REGISTRY.get(name).metrics)
        values = {result.name: result for result in scores.results if result.name != "grounding_const_box_mean_iou"}
        assert all(result.value == 0.0 for result in values.values()), reply[:20]
        headline = "accuracy" if "accuracy" in values else REGISTRY.get(name).metrics[0]
        assert values[headline].n == len(rows), (reply[:20], headline)  # every row in the denominator


def test_accuracy_counts_empty_replies_as_its_parts_do(tmp_path):
    build_release("medqa", tmp_path)
    rows = _load("medqa", tmp_path).rows
    results, _ = score_rows(rows, ["<think>" * 50, ""])  # before: accuracy.empty 1, mcq_accuracy.empty 2
    values = {result.name: result for result in results}
    assert values["accuracy"].empty == values["mcq_accuracy"].empty == 2


def test_a_benchmark_whose_rows_are_all_filtered_fails_the_load(tmp_path):
    write_file(tmp_path, "indiana_reports_test.csv",
               "uid,MeSH,Problems,image,indication,comparison,findings,impression\n3,normal,normal,PA,,,,\n")
    write_file(tmp_path, "indiana_projections.csv", "uid,filename,projection\n3,3.png,Frontal\n")
    build = build_release("iu_xray", tmp_path / "full")  # the images of the full fixture
    assert build.rows
    (tmp_path / "images").mkdir()
    (tmp_path / "images/images_normalized").symlink_to(tmp_path / "full/images/images_normalized")
    # before: it loaded with no row, and the job reported each metric as "no row of its kind"
    with pytest.raises(BenchmarkLoadError, match=r"benchmark 'iu_xray': all 1 rows read .* were filtered "
                       r"\(\{'empty_reference': 1\}\); nothing is left to evaluate"):
        _load("iu_xray", tmp_path)


def test_rows_skipped_at_evaluation_are_counted_per_benchmark():
    load = BenchmarkLoad([{"id": "a"}, {"id": "b"}, {"id": "c"}], read=3)
    load.skipped_undecodable = 1  # as the evaluation job sets it after decodable_rows
    assert load.counts()["rows_evaluated"] == 2 and load.counts()["rows_skipped_undecodable"] == 1
    scores = score_benchmark([], [], REGISTRY.get("vqa_rad").metrics, skipped=3)
    assert scores.results == [] and scores.not_computed["accuracy"] == (
        "no evaluated row is of the kind this metric scores (3 row(s) of the benchmark skipped: undecodable images)")
