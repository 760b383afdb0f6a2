"""Annotation files as Windows tools and spreadsheets save them, and as files joined end to end
leave them: a UTF-8 byte-order mark is read through wherever it stands at a line's start (the
first column still matches), a UTF-16/UTF-32 file (with its mark or without) stops the source
naming it and saying to save it as UTF-8, a per-record file in UTF-16 is that record's
``invalid_utf8`` saying so, a JSON object naming a member twice is its record's problem (json
kept the last value silently), and every row is still accounted for."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from registry_sources import registry_fixture

from medmo_pipeline.data.adapters import caption
from medmo_pipeline.data.adapters.records import SourceLayoutError, iter_records
from medmo_pipeline.data.annotations import AnnotationError, json_items
from medmo_pipeline.data.outcomes import RowQuarantined
from medmo_pipeline.data.registry import SourceUnavailable

BOM = b"\xef\xbb\xbf"
VQA_RAD = "VQA_RAD Dataset Public.json"
MEDQUAD = "medDataset_processed.csv"
CAPTIONS = "data/train/radiology/captions.txt"  # ROCO: 'ROCO_NNNNN<TAB> caption' lines, no header


@pytest.fixture
def fixture(tmp_path, monkeypatch):
    """(write the registry dataset's fixture and return its folder, curate it and return the report)."""
    return registry_fixture(tmp_path, monkeypatch)


def _read(tmp_path, name: str, data: bytes, **options) -> list:
    (tmp_path / name).write_bytes(data)
    return [record if isinstance(record, RowQuarantined) else (record.origin, dict(record))
            for record in iter_records(tmp_path, name, **options)]


TABLE = "id,question,answer\n1,q1,a1\n2,q2,a2\n"
RECORDS = [{"id": 1, "question": "q1"}, {"id": 2, "question": "q2"}]
FILES = {"table.csv": TABLE, "table.tsv": TABLE.replace(",", "\t"), "records.json": json.dumps(RECORDS),
         "records.jsonl": "".join(json.dumps(record) + "\n" for record in RECORDS)}


# ---- UTF-8 with a byte-order mark: read through ----------------------------------------------------

@pytest.mark.parametrize("name", list(FILES))
def test_a_utf8_byte_order_mark_is_no_text_in_any_record_file(tmp_path, name):
    plain = _read(tmp_path, name, FILES[name].encode())
    assert len(plain) == 2
    assert _read(tmp_path, name, BOM + FILES[name].encode()) == plain
    if name.endswith(("csv", "tsv")):  # saved twice with a mark: the first column still has its name
        assert _read(tmp_path, name, BOM + BOM + FILES[name].encode()) == plain


def test_csv_exports_saved_with_a_mark_and_joined_end_to_end_name_their_second_header(fixture):
    """``cat a.csv b.csv`` of two exports with a byte-order mark each: the second header (behind
    its mark) was kept as a record, its answer the word 'Answer'."""
    build, curate = fixture
    path = build("medquad") / MEDQUAD
    data = path.read_bytes()
    assert data.startswith(BOM)  # the fixture is saved as Excel saves it
    body_rows = data.count(b"\r\n") - 1
    path.write_bytes(data + data)
    report = curate("medquad")
    assert report["problems"] == [("malformed_record", MEDQUAD, f"row {body_rows + 1}")]
    assert "the header row again" in report["problem_details"][0][3]
    assert report["filtered_by_reason"] == {"duplicate": body_rows}  # the second export's rows are the first's
    assert report["rows_in"] == 2 * body_rows + 1 == report["rows_kept"] + 1 + body_rows
    assert not any("Answer" == row["answer"] for row in report["kept"])


def test_a_header_less_table_joined_after_a_mark_finds_its_images(fixture):
    """ROCO's captions.txt twice, each with a mark: the first id of the second copy was
    '\\ufeffROCO_00000', and its image '\\ufeffROCO_00000.jpg' missing."""
    build, curate = fixture
    path = build("roco") / CAPTIONS
    data = BOM + path.read_bytes()
    path.write_bytes(data + data)
    report = curate("roco")  # the same records again, found as such (not as images missing)
    assert report["problems"] == [("duplicate_id", CAPTIONS, f"row {number}") for number in (4, 5, 6)]
    assert report["rows_in"] == 6 and report["rows_kept"] == 3


def test_json_lines_files_joined_with_their_marks_lose_no_line(tmp_path):
    data = BOM + FILES["records.jsonl"].encode()
    assert [origin for origin, _ in _read(tmp_path, "records.jsonl", data + data)] == [
        ("records.jsonl", f"line {number}") for number in (1, 2, 3, 4)]


# ---- UTF-16 / UTF-32: the file is refused, saying to save it as UTF-8 -------------------------------

ENCODINGS = {"utf-16 (LE, mark)": "utf-16", "utf-16-be (mark)": "utf-16-be-bom", "utf-16-le (no mark)": "utf-16-le",
             "utf-16-be (no mark)": "utf-16-be", "utf-32 (mark)": "utf-32", "utf-32-le (no mark)": "utf-32-le"}


def _encoded(text: str, encoding: str) -> bytes:
    return b"\xfe\xff" + text.encode("utf-16-be") if encoding == "utf-16-be-bom" else text.encode(encoding)


@pytest.mark.parametrize("encoding", list(ENCODINGS.values()), ids=list(ENCODINGS))
@pytest.mark.parametrize("name", list(FILES))
def test_a_utf16_or_utf32_record_file_is_refused_naming_it(tmp_path, name, encoding):
    """Every reader refuses the file, naming it and what to do: read as UTF-8, a JSON list in
    UTF-16 said "they start with '\\udcff'", and one without a mark (or a CSV or JSON lines file)
    read every other character as a NUL, so no column matched and every image path was unsafe."""
    (tmp_path / name).write_bytes(_encoded(FILES[name], encoding))
    width = "UTF-32" if "32" in encoding else "UTF-16"
    with pytest.raises((SourceLayoutError, AnnotationError), match=rf"^{name} is {width} text.*; save it as UTF-8$"):
        list(iter_records(tmp_path, name))


def test_a_gzip_file_named_as_a_table_is_not_taken_for_utf16(tmp_path):
    import gzip

    assert _read(tmp_path, "table.csv", gzip.compress(b"x", mtime=0)) == []  # its header, no record


def test_a_utf16_json_list_stops_its_source_saying_to_save_it_as_utf8(fixture):
    build, curate = fixture
    path = build("vqa_rad") / VQA_RAD
    path.write_bytes(path.read_text().encode("utf-16"))
    with pytest.raises(SourceUnavailable, match=rf"dataset 'vqa_rad'.*{VQA_RAD} is UTF-16 text .*save it as UTF-8"):
        curate("vqa_rad")


def test_a_utf16_list_of_ids_is_refused_not_read_as_ids_nothing_matches(tmp_path):
    (tmp_path / "ids.txt").write_bytes("1\n".encode("utf-16"))
    (tmp_path / "c.csv").write_bytes(b"image,caption,id\na.png,x,1\n")
    options = {"file": "c.csv", "id_field": "id", "keep_ids_file": "ids.txt"}
    with pytest.raises(SourceLayoutError, match=r"^ids.txt is UTF-16 text .*save it as UTF-8"):
        list(caption.iter_outcomes(tmp_path, options))


def test_a_utf16_per_record_file_is_that_records_problem_saying_so(fixture):
    """One label file saved as UTF-16 costs its image, named with what to do (it said "'utf-8'
    codec can't decode byte 0xff in position 0"); the other images are read."""
    build, curate = fixture
    labels = sorted((build("grazpedwri_dx") / "labels").glob("*.txt"))
    labels[0].write_bytes(labels[0].read_text().encode("utf-16"))
    report = curate("grazpedwri_dx")
    [(reason, _, record, detail)] = report["problem_details"]
    assert (reason, record) == ("invalid_utf8", f"labels/{labels[0].name}")
    assert detail.endswith(f"labels/{labels[0].name} is UTF-16 text (it starts with a UTF-16 byte-order mark); "
                           "save it as UTF-8")
    assert report["rows_kept"] > 0


# ---- CSV structure: blank lines before the header, another delimiter --------------------------------

def test_blank_lines_before_a_csv_header_are_no_header(fixture, tmp_path):
    """The header was the blank first line: no column, every row 'more fields than columns'."""
    assert _read(tmp_path, "table.csv", b"\r\n  \n" + FILES["table.csv"].encode()) == \
        _read(tmp_path, "table.csv", FILES["table.csv"].encode())
    build, curate = fixture
    path = build("medquad") / MEDQUAD
    path.write_bytes(b"  \r\n\t\r\n\r\n")  # whitespace only: no record at all (it was 'the header row again')
    with pytest.raises(SourceUnavailable, match="dataset 'medquad'.*its text_instruction reader found no records"):
        curate("medquad")


def test_a_table_separated_by_another_delimiter_says_so(tmp_path):
    (tmp_path / "semi.csv").write_bytes(b"image;caption\na.png;x\n")
    with pytest.raises(SourceLayoutError, match=r"its columns: 'image;caption'\); the file seems separated by "
                                                r"';', not ',': save it separated by ','"):
        list(caption.iter_outcomes(tmp_path, {"file": "semi.csv"}))


# ---- JSON: a member named twice ------------------------------------------------------------------

def test_a_json_record_naming_a_member_twice_is_quarantined_naming_it(fixture):
    build, curate = fixture
    path = build("vqa_rad") / VQA_RAD
    records = json.loads(path.read_text())
    text = json.dumps(records, indent=1)
    path.write_text(text.replace('"question": ', '"question": "Which one?",\n  "question": ', 1))
    report = curate("vqa_rad")
    [(reason, file, record, detail)] = report["problem_details"]
    assert (reason, file, record) == ("malformed_record", VQA_RAD, "row 1")
    assert "line 2: record 0 is not readable (the member 'question' is named twice in one object" in detail
    assert report["rows_in"] == len(records) == report["rows_kept"] + 1


def test_a_member_named_twice_at_any_depth_costs_its_record_in_json_and_json_lines(tmp_path):
    nested = '{"id": 1, "turns": [{"from": "human", "value": "a", "value": "b"}]}'
    listed = [record for _, record in json_items(_write(tmp_path, "r.json", f"[{nested}, {{\"id\": 2}}]"),
                                                 "r.json")]
    assert "'value' is named twice" in listed[0].problem and listed[1] == {"id": 2}
    lines = _read(tmp_path, "r.jsonl", f'{nested}\n{{"id": 2}}\n'.encode())
    assert (lines[0].reason, lines[0].record) == ("malformed_record", "line 1")
    assert "'value' is named twice" in lines[0].detail and lines[1] == (("r.jsonl", "line 2"), {"id": 2})


def _write(tmp_path, name: str, text: str):
    (tmp_path / name).write_text(text)
    return tmp_path / name


def test_a_label_named_twice_in_one_box_item_keeps_both_boxes(fixture):
    """SLAKE's detection.json ``[{"Liver": box, "Liver": box}]``: json.loads kept the last box, and
    the first was gone uncounted; each member is a box of its label."""
    build, curate = fixture
    path = build("slake") / "imgs/xmlab0/detection.json"
    path.write_text('[{"Liver": [5, 6, 20, 10], "Liver": [40, 30, 10, 10]}]')
    report = curate("slake")
    assert report["problems"] == []
    [liver] = [row for row in report["kept"] if row["id"].endswith("xmlab0:Liver")]
    assert len(liver["boxes"]) == 2


# ---- YOLO label lines, Parquet text ----------------------------------------------------------------

@pytest.mark.parametrize("separator", ["\x0c", "\u2028"], ids=["form feed", "U+2028"])
def test_yolo_label_lines_are_numbered_at_line_feeds(fixture, separator):
    """A form feed or U+2028 inside a line also ends a box (as Ultralytics reads it, splitlines),
    but numbered every later line one too far: a bad line must be named where an editor shows it."""
    build, curate = fixture
    labels = sorted((build("grazpedwri_dx") / "labels").glob("*.txt"))
    labels[0].write_text(f"3 0.5 0.5 0.2 0.2{separator}3 0.2 0.3 0.1 0.1\n3 nan 0.5 0.1 0.1\n", encoding="utf-8")
    report = curate("grazpedwri_dx")
    assert report["problems"] == [("box_nan", f"labels/{labels[0].name}", "line 2")]
    [row] = [row for row in report["kept"] if row["id"].endswith(f"{labels[0].stem}:fracture")]
    assert len(row["boxes"]) == 2


def test_parquet_text_that_is_not_utf8_is_invalid_utf8_not_a_bad_number(tmp_path):
    good = pa.array(["ok", "caf\u00e9", "ok"])
    _, offsets, data = good.buffers()
    broken = bytearray(data.to_pybytes())
    broken[broken.index(b"\xc3")] = 0xE9  # Latin-1's é where UTF-8's was (a writer that did not check)
    text = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(bytes(broken) + b"\x00")])
    pq.write_table(pa.table({"id": ["1", "2", "3"], "q": text}), tmp_path / "t.parquet")
    read = list(iter_records(tmp_path, "t.parquet"))
    assert [type(record) is RowQuarantined for record in read] == [False, True, False]
    assert (read[1].reason, read[1].file, read[1].record) == ("invalid_utf8", "t.parquet", "row 2")


# ---- what already held, kept so: one bad row, the rest read and counted ---------------------------

def _spliced(data: bytes, what: bytes) -> bytes:
    return data.replace(b"what should", what + b"what should", 1)


@pytest.mark.parametrize(("what", "reason"), [
    (b"caf\xe9 ", "invalid_utf8"),  # Latin-1 in a UTF-8 file
    (b"\x93cp1252\x94 ", "invalid_utf8"),
    (b"\x00", "control_characters"),
    ("\u0085".encode(), "control_characters"),  # NEL: kept in its field (no line break), then quarantined
], ids=["latin-1", "cp1252", "NUL", "NEL"])
def test_one_csv_row_of_bad_bytes_costs_that_row_only(fixture, what, reason):
    build, curate = fixture
    path = build("medquad") / MEDQUAD
    path.write_bytes(_spliced(path.read_bytes(), what))
    report = curate("medquad")
    assert report["problems"] == [(reason, MEDQUAD, "row 1")]
    assert report["rows_in"] == report["rows_kept"] + 1


@pytest.mark.parametrize(("change", "reason"), [
    (('"qid": ', '"qid": 1e400, "x": '), "bad_number"),
    (('"question": "', '"question": "\\ud800'), "invalid_utf8"),  # a lone surrogate escaped in JSON
    (('"question": ', '"question": [["nested"]], "x": '), "malformed_record"),
    (('"answer": ', '"answer": NaN, "x": '), "missing_answer"),
], ids=["1e400 id", "lone surrogate", "nested list", "NaN answer"])
def test_one_json_record_of_odd_values_costs_that_record_only(fixture, change, reason):
    build, curate = fixture
    path = build("vqa_rad") / VQA_RAD
    path.write_text(path.read_text().replace(*change, 1))
    report = curate("vqa_rad")
    assert report["problems"] == [(reason, VQA_RAD, "row 1")]
    assert report["rows_in"] == report["rows_kept"] + 1
