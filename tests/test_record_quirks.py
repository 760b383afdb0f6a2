"""Record files with the quirks and damage real exports have, each curated the way the corpus job
does (``curate_source``) on the registry dataset's own fixture: a bad record costs that record,
named by its own file and row; a file the layout cannot be read from stops its source saying why;
nothing is kept that holds no question, no id or a value of the wrong kind."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixtures_formats import build_fixture

from medmo_pipeline.config import CorpusRecipe
from medmo_pipeline.data import shards
from medmo_pipeline.data.registry import SourceUnavailable, load_registry
from medmo_pipeline.data.sources import curate_source

REGISTRY = load_registry()
CREDENTIALS = ("PHYSIONET_USERNAME", "STANFORD_AIMI_AGREEMENT", "HF_TOKEN")


@pytest.fixture
def fixture(tmp_path, monkeypatch):
    """(write the registry dataset's fixture and return its folder, curate it and return the report)."""
    monkeypatch.setenv("MEDMO_HOME", str(tmp_path / "home"))
    for variable in CREDENTIALS:
        monkeypatch.setenv(variable, "attested-for-the-test")

    def build(name: str) -> Path:
        entry = REGISTRY.get(name)
        folder = tmp_path / "data" / entry.origin.local_dir
        for spec in entry.adapters:
            build_fixture(spec.family, folder, spec.options)
        return folder

    def curate(name: str) -> dict:
        corpus = CorpusRecipe(kind="registry", registry={"data_root": str(tmp_path / "data"), "sources": [name]})
        report = curate_source(corpus, name, tmp_path / "corpus", seed=0, log=lambda _: None)
        assert report["accounted"]
        report["kept"] = list(shards.iter_rows(Path(report["shard_dir"])))
        report["problems"] = [(q["reason"], q["file"], q["record"]) for q in
                              pq.read_table(report["quarantine_path"]).to_pylist()]
        return report

    return build, curate


def test_a_record_of_a_source_split_over_files_is_named_by_its_own_file_and_row(fixture):
    build, curate = fixture
    folder = build("pathvqa")
    rows = pq.read_table(folder / "data/train-fixture.parquet").to_pylist()
    second = [{**row, "question": f"second file, question {index}"} for index, row in enumerate(rows)]
    second[1]["answer"] = "   "
    pq.write_table(pa.Table.from_pylist(second), folder / "data/train-zz.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:0], schema=pq.read_schema(folder / "data/train-fixture.parquet")),
                   folder / "data/train-empty.parquet")  # a valid file of no rows: read, nothing in it
    report = curate("pathvqa")
    assert report["problems"] == [("missing_answer", "data/train-zz.parquet", "row 2")]
    assert report["rows_kept"] == 2 * len(rows) - 1


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([header, *rows])
    return out.getvalue()


def test_csv_rows_are_checked_against_the_header(fixture):
    """A row with more fields than the header (an unquoted comma cut its answer) is quarantined by
    row; trailing empty fields and a short first row are not layout problems."""
    build, curate = fixture
    folder = build("medquad")
    path = folder / "medDataset_processed.csv"
    path.write_text(_csv_text(["qtype", "Question", "Answer"], [
        ["symptoms", "What is flu?"],  # short: its answer is missing
        ["symptoms", "What is a cold?", "A virus", "", ""],  # trailing empty fields
        ["symptoms", "What is measles?", "A virus", " spread by droplets"],  # a comma left unquoted
    ]))
    report = curate("medquad")
    assert sorted(report["problems"]) == [("malformed_record", "medDataset_processed.csv", "row 3"),
                                          ("missing_answer", "medDataset_processed.csv", "row 1")]
    assert [row["answer"] for row in report["kept"]] == ["A virus"]


@pytest.mark.parametrize("header", [["qtype", "Question", "Answer", "Answer"], ["qtype", "Question", "Answer", "answer "]])
def test_a_column_named_twice_stops_the_source_naming_it(fixture, header):
    build, curate = fixture
    path = build("medquad") / "medDataset_processed.csv"
    path.write_text(_csv_text(header, [["symptoms", "What is flu?", "", "A virus"]]))
    with pytest.raises(SourceUnavailable, match=r"names the column\(s\) 'answer' more than once"):
        curate("medquad")


def test_a_duplicate_parquet_column_stops_the_source_naming_it(fixture):
    build, curate = fixture
    path = build("pathvqa") / "data/train-fixture.parquet"
    table = pq.read_table(path)
    pq.write_table(table.append_column("answer", table.column("answer")), path)
    with pytest.raises(SourceUnavailable, match=r"names the column\(s\) 'answer' more than once"):
        curate("pathvqa")


def test_a_utf16_record_file_stops_its_source_saying_so(fixture):
    build, curate = fixture
    path = build("medqa") / "phrases_no_exclude_train.jsonl"
    path.write_bytes(path.read_text(encoding="utf-8").encode("utf-16"))
    with pytest.raises(SourceUnavailable, match="is UTF-16 text .*save it as UTF-8"):
        curate("medqa")


def test_records_without_an_id_or_with_objects_for_text_are_quarantined(fixture):
    build, curate = fixture
    path = build("vqa_rad") / "VQA_RAD Dataset Public.json"
    records = json.loads(path.read_text())
    good = records[0]
    path.write_text(json.dumps([*records,
                                {**good, "qid": None, "question": "Which organ, without an id?"},
                                {key: value for key, value in good.items() if key != "qid"},
                                {**good, "qid": "a1", "answer": {"x": 1}},
                                {**good, "qid": "a2", "question": [None, True]},
                                {**good, "qid": "a3", "answer": "\u200b\u200b"}]))
    report = curate("vqa_rad")
    file, first = "VQA_RAD Dataset Public.json", len(records)
    assert report["problems"] == [
        ("missing_field", file, f"row {first + 1}"), ("missing_field", file, f"row {first + 2}"),
        ("malformed_record", file, f"row {first + 3}"), ("malformed_record", file, f"row {first + 4}"),
        ("missing_answer", file, f"row {first + 5}")]
    assert not any("None" in row["id"] or "{" in row["answer"] for row in report["kept"])


def test_a_question_without_text_is_quarantined_though_options_follow_it(fixture):
    build, curate = fixture
    path = build("medqa") / "phrases_no_exclude_train.jsonl"
    lines = path.read_text().splitlines()
    extra = [{"question": " \n", "options": {"A": "Aspirin", "B": "Heparin"}, "answer_idx": "A"},
             {"options": {"A": "Aspirin", "B": "Heparin"}, "answer_idx": "B"},
             {"question": "Which is tenth?", "options": {str(n): f"option {n}" for n in range(1, 11)},
              "answer_idx": "J"}]
    path.write_text("\n".join([*lines, *map(json.dumps, extra)]) + "\n")
    report = curate("medqa")
    assert [reason for reason, _, _ in report["problems"]] == ["missing_question", "missing_question"]
    tenth = next(row for row in report["kept"] if row["messages"][0]["content"].startswith("Which is tenth?"))
    assert tenth["choices"] == [f"option {n}" for n in range(1, 11)]  # "10" after "9", not after "1"


def test_iu_xray_projection_table_problems(fixture):
    """The joined image table: a row that cannot be read is quarantined (counted), a table without
    its key column or without rows stops the source."""
    build, curate = fixture
    folder = build("iu_xray")
    projections = folder / "indiana_projections.csv"
    published = projections.read_bytes()
    projections.write_bytes(published + "1,caf\xe9.png,Frontal\r\n".encode("latin-1"))
    report = curate("iu_xray")
    last_row = len(published.splitlines())  # the header is line 1: the added row is this data row
    assert report["problems"] == [("invalid_utf8", "indiana_projections.csv", f"row {last_row}")]
    for broken, problem in ((published.replace(b"uid", b"UID_X", 1), "has no column 'uid'"),
                            (published.splitlines(keepends=True)[0], "holds no image rows")):
        projections.write_bytes(broken)
        with pytest.raises(SourceUnavailable, match=problem):
            curate("iu_xray")


def test_deeplesion_without_its_box_column_stops_its_source(fixture):
    build, curate = fixture
    path = build("deeplesion") / "DL_info.csv"
    path.write_bytes(path.read_bytes().replace(b"Bounding_boxes", b"Boxes", 1))
    with pytest.raises(SourceUnavailable, match="has no column 'Bounding_boxes'"):
        curate("deeplesion")


def test_nih_a_bad_box_row_costs_that_row_only_and_a_missing_image_is_named_so(fixture):
    build, curate = fixture
    path = build("nih_chest_xray") / "BBox_List_2017.csv"
    lines = path.read_text().splitlines()
    image, label = lines[1].split(",")[:2]
    path.write_text("\n".join([*lines, f"{image},{label},100,100,-50,40", "00099999_000.png,Mass,10,10,20,20"]) + "\n")
    report = curate("nih_chest_xray")
    assert report["problems"] == [("box_degenerate", "BBox_List_2017.csv", f"row {len(lines)}"),
                                  ("image_missing", "BBox_List_2017.csv", "00099999_000.png")]
    kept = next(row for row in report["kept"] if row["id"].endswith(f"{image}:{label}"))
    assert len(kept["boxes"]) == 1  # the image's good box of that label is kept


def test_medsg_reply_boxes_that_cannot_be_read_are_quarantined(fixture):
    build, curate = fixture
    path = build("medsg") / "MedSG-Train/Taskfixture.json"
    record = json.loads(path.read_text())[0]
    replies = ["lesion <|box_start|>(1,2),(10,12)<|box_end|>", "lesion <|box_start|>(nan,2),(10,12)<|box_end|>",
               "lesion <|box_start|>(10,12),(1,2)<|box_end|>", "lesion <|box_start|>(1,2),(3<|box_end|>"]
    path.write_text(json.dumps([{**record, "id": f"r{index}", "conversations": [
        {"from": "human", "value": "<image>\nFind the lesion."}, {"from": "gpt", "value": reply}]}
        for index, reply in enumerate(replies)]))
    report = curate("medsg")
    assert [reason for reason, _, _ in report["problems"]] == ["malformed_record"] * 3
    assert [len(row["boxes"]) for row in report["kept"]] == [1]


def test_yolo_labels_of_no_class_are_quarantined_and_a_bom_is_read_through(fixture):
    build, curate = fixture
    folder = build("grazpedwri_dx")
    labels = sorted((folder / "labels").glob("*.txt"))
    labels[0].write_bytes(b"99 0.5 0.5 0.2 0.2\n")
    labels[1].write_bytes(b"\xef\xbb\xbf3 0.5 0.5 0.2 0.2\r\n")
    report = curate("grazpedwri_dx")
    assert report["problems"] == [("malformed_record", "labels", f"labels/{labels[0].name}")]
    assert any(row["id"].endswith(f"{labels[1].stem}:fracture") for row in report["kept"])


def test_a_box_without_a_label_is_quarantined(fixture):
    build, curate = fixture
    path = build("slake") / "imgs/xmlab0/detection.json"
    path.write_text(json.dumps([{"": [1, 2, 3, 4]}]))
    report = curate("slake")
    assert [reason for reason, _, _ in report["problems"]] == ["missing_field"]
