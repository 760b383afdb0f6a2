"""How annotation files end: a JSON file's records end with its top-level list or object (text
after it stops the source naming the line; a trailing comma carries no record), and a CSV/TSV line
ends where the file's own line ending says (a carriage return alone inside an LF or CRLF file's
unquoted field costs that record only; CR-only files still read)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from registry_sources import registry_fixture

from medmo_pipeline.data.adapters.records import iter_records
from medmo_pipeline.data.adapters.report import split_table
from medmo_pipeline.data.annotations import AnnotationError, json_items
from medmo_pipeline.data.outcomes import RowQuarantined
from medmo_pipeline.data.registry import SourceUnavailable

VQA_RAD = "VQA_RAD Dataset Public.json"
CAPTIONS = "data/train/radiology/captions.txt"  # ROCO: 'ROCO_NNNNN<TAB> caption' lines, no header


@pytest.fixture
def fixture(tmp_path, monkeypatch):
    """(write the registry dataset's fixture and return its folder, curate it and return the report)."""
    return registry_fixture(tmp_path, monkeypatch)


# ---- JSON: what follows the top-level value -------------------------------------------------------

def _appended(records: list[dict], how: str) -> str:
    extra = [{**record, "qid": f"extra{index}"} for index, record in enumerate(records)]
    if how == "second list":
        return json.dumps(extra)
    if how == "json lines":
        return "\n".join(json.dumps(record) for record in extra) + "\n"
    return "THIS IS NOT JSON {"


@pytest.mark.parametrize("how", ["second list", "json lines", "garbage"])
def test_text_after_the_json_list_stops_the_source_naming_the_line_it_starts_on(fixture, how):
    build, curate = fixture
    path = build("vqa_rad") / VQA_RAD
    records = json.loads(path.read_text())
    listed = json.dumps(records, indent=2)  # the list ends on its last line; two blank lines after it
    path.write_text(listed + "\n\n\n" + _appended(records, how))
    line = listed.count("\n") + 4
    with pytest.raises(AnnotationError, match=rf"^{VQA_RAD}: line {line}: the file goes on after its JSON "
                                              r"list/object ends .*make it one list"):
        list(json_items(path, VQA_RAD))
    with pytest.raises(SourceUnavailable, match=rf"{VQA_RAD}: line {line}: the file goes on after"):
        curate("vqa_rad")


def test_text_after_a_json_object_of_records_by_id_is_refused_too(tmp_path):
    path = tmp_path / "keyed.json"
    path.write_text('{"a": {"q": 1},\n "b": {"q": 2}}\n{"c": {"q": 3}}\n')
    read = []
    with pytest.raises(AnnotationError, match=r"^keyed.json: line 3: the file goes on after"):
        read.extend(json_items(path, "keyed.json"))
    assert read == [("a", {"q": 1}), ("b", {"q": 2})]  # the records before it are read as they were


def test_a_trailing_comma_ends_the_list_and_carries_no_record(fixture):
    build, curate = fixture
    path = build("vqa_rad") / VQA_RAD
    records = json.loads(path.read_text())
    path.write_text(json.dumps(records, indent=2)[:-2] + ",\n]\n")  # "},\n]": as a hand edit leaves it
    assert [record for _, record in json_items(path, VQA_RAD)] == records
    report = curate("vqa_rad")
    assert report["problem_details"] == []
    assert report["rows_in"] == report["rows_kept"] == len(records)

    keyed = path.with_name("keyed.json")
    keyed.write_text('{"a": {"q": 1}, "b": {"q": 2},}')
    assert dict(json_items(keyed, "keyed.json")) == {"a": {"q": 1}, "b": {"q": 2}}


@pytest.mark.parametrize("tail", ["\n", "\r\n\r\n", "\n \t\n\n   "])
def test_a_json_list_followed_by_whitespace_alone_reads_whole(tmp_path, tail):
    records = [{"qid": index, "question": f"question {index}?"} for index in range(5)]
    path = tmp_path / "list.json"
    path.write_text(json.dumps(records) + tail)
    assert [record for _, record in json_items(path, "list.json")] == records


def test_with_a_key_the_rest_of_the_top_level_object_is_not_read(tmp_path):
    path = tmp_path / "keyed.json"
    path.write_text('{"data": [{"q": 1}, {"q": 2}], "info": {"n": 2}}\ntrailing text')
    assert [record for _, record in json_items(path, "keyed.json", "data")] == [{"q": 1}, {"q": 2}]


# ---- CSV/TSV: a carriage return alone -------------------------------------------------------------

def _caption_with_lone_cr(folder: Path, ending: bytes) -> bytes:
    """ROCO's captions.txt, its lines ending in ``ending``, the second caption holding a lone CR."""
    path = folder / CAPTIONS
    data = path.read_bytes().replace(b"finding number 1.", b"finding\rnumber 1 in the left lobe.")
    path.write_bytes(data.replace(b"\n", ending))
    return data


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_a_lone_carriage_return_in_an_unquoted_caption_costs_that_record_only(fixture, ending):
    build, curate = fixture
    _caption_with_lone_cr(build("roco"), ending)
    report = curate("roco")
    assert report["rows_in"] == 3  # no record split in two
    [(reason, file, record, detail)] = report["problem_details"]
    assert (reason, file, record) == ("malformed_record", CAPTIONS, "row 2")
    assert f"{CAPTIONS}: line 2: the record holds a carriage return alone inside an unquoted field" in detail
    assert "newline=''" not in detail
    captions = {row["id"]: row["messages"][1]["content"] for row in report["kept"]}
    assert captions == {f"roco:ROCO_0000{index}": f'Axial CT, "contrast-enhanced", showing finding number {index}.'
                        for index in (0, 2)}


def test_a_caption_file_of_cr_only_lines_still_reads_every_record(fixture):
    build, curate = fixture
    path = build("roco") / CAPTIONS
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r"))
    report = curate("roco")
    assert report["problem_details"] == []
    captions = {row["id"]: row["messages"][1]["content"] for row in report["kept"]}
    assert captions == {f"roco:ROCO_0000{index}": f'Axial CT, "contrast-enhanced", showing finding number {index}.'
                        for index in range(3)}


@pytest.mark.parametrize("ending", ["\n", "\r\n"], ids=["LF", "CRLF"])
def test_a_lone_carriage_return_inside_a_quoted_field_stays_in_it(tmp_path, ending):
    lines = ["id,caption", 'c0,"first line\rsame field, same record"', "c1,plain caption", ""]
    (tmp_path / "captions.csv").write_bytes(ending.join(lines).encode())
    read = list(iter_records(tmp_path, "captions.csv"))
    assert not any(isinstance(record, RowQuarantined) for record in read)
    assert [(record["id"], record["caption"]) for record in read] == [
        ("c0", "first line\rsame field, same record"), ("c1", "plain caption")]
    assert [record.origin for record in read] == [("captions.csv", "row 1"), ("captions.csv", "row 2")]


def test_a_split_table_line_holding_a_lone_carriage_return_is_named(tmp_path):
    header, rows = "dicom_id,study_id,subject_id,split", ["d1,50000001,10000001,test", "d2,50000002,10000002,train"]
    damaged = tmp_path / "mimic-cxr-2.0.0-split.csv.gz"
    damaged.write_bytes(gzip.compress("\n".join([header, rows[0], "d\r3,50000003,10000003,test", rows[1]]).encode()))
    with pytest.raises(AnnotationError, match="mimic-cxr-2.0.0-split.csv.gz: line 3: the record holds a carriage "
                                              "return alone inside an unquoted field"):
        list(split_table(damaged))
    old_mac = tmp_path / "old-mac-split.csv"
    old_mac.write_bytes("\r".join([header, *rows, ""]).encode())
    assert [record["dicom_id"] for record in split_table(old_mac)] == ["d1", "d2"]
