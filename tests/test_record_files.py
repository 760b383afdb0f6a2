"""Record files within bounds: JSON read a record at a time (``annotations.json_items``: the same
records as a whole-file parse wherever the pieces are cut, in bounded memory, errors naming file
and line), Parquet refused by its declared row-group size, MIMIC's gzipped split table read line
by line; every failure names the file."""

from __future__ import annotations

import gzip
import io
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hostile_files import parquet_page_bomb

from medmo_pipeline.data import annotations
from medmo_pipeline.data.adapters import parquet_pages, records
from medmo_pipeline.data.adapters.records import iter_records
from medmo_pipeline.data.adapters.report import split_table
from medmo_pipeline.data.annotations import AnnotationError, json_items


def _random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -7, 12345678901234567890, 3.25, -1e-7, 6.02e23])
    if kind in (2, 3, 4):
        return "".join(rng.choice('ab "\\/\n\t\u00e9\u4e2d\U0001f600') for _ in range(rng.randrange(12)))
    if kind == 5:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {f"k{i}\u00e9": _random_value(rng, depth + 1) for i in range(rng.randrange(4))}


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 64, 1 << 20])
def test_records_are_those_of_a_whole_parse_wherever_the_pieces_are_cut(tmp_path, monkeypatch, piece):
    monkeypatch.setattr(annotations, "READ_PIECE", piece)
    rng = random.Random(piece)
    records = [_random_value(rng) for _ in range(200)]
    for indent, name in ((None, "flat.json"), (2, "indented.json")):
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"info": records[:20], "data": records, "n": 1}, indent=indent,
                                                       ensure_ascii=False).encode())
        assert [record for _, record in json_items(path, name, "data")] == records
        assert [key for key, _ in json_items(path, name, "data")] == list(range(len(records)))
    keyed = tmp_path / "keyed.json"
    keyed.write_text(json.dumps({f"id{i}": record for i, record in enumerate(records)}), encoding="utf-8")
    assert dict(json_items(keyed, "keyed.json")) == {f"id{i}": record for i, record in enumerate(records)}


def test_a_number_cut_by_the_piece_is_read_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(annotations, "READ_PIECE", 4)
    path = tmp_path / "numbers.json"
    path.write_text("[123456789, 2.5e10 ,-0.000125]")
    assert [value for _, value in json_items(path, "numbers.json")] == [123456789, 2.5e10, -0.000125]


def test_bytes_that_are_not_utf8_stay_in_their_record_as_surrogates(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(b'[{"q": "caf\xe9"}, {"q": "ok"}]')
    records = [record for _, record in json_items(path, "latin1.json")]
    assert records == [{"q": "caf\udce9"}, {"q": "ok"}]


@pytest.mark.parametrize(("text", "problem"), [
    ('[{"a": 1},\n{"a": 2}\n{"a": 3}]', "latin.json: line 3: expected ',' or ']' after record 1"),
    ('{"other": []}', "latin.json: the top-level object has no member 'data'"),
    ('"just a string"', "latin.json: line 1: expected '{' at the start"),
    ('\n\n  42', "latin.json: line 3: the records are not a JSON list or object (they start with '4')"),
    ('', "the records are not a JSON list or object (they start with 'nothing')"),
    ('[{"a": 1}, {"b": [1, 2}, {"c": 3}]', "latin.json: line 1: expected ',' or ']' after record 1"),
    ('[{"a": 1},\n{"b": "never closed', "latin.json: line 2: record 1 is not JSON"),
])
def test_a_file_that_cannot_be_read_names_itself_and_the_line(tmp_path, text, problem):
    path = tmp_path / "latin.json"
    path.write_text(text)
    key = "data" if text.startswith(("{", '"')) else ""
    with pytest.raises(AnnotationError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        list(json_items(path, "latin.json", key))


@pytest.mark.parametrize("piece", [1, 5, 1024, 1 << 20])
def test_a_record_that_cannot_be_read_is_stepped_over_and_the_next_records_are_read(tmp_path, monkeypatch, piece):
    """Too long, not JSON, nested too deeply: one record's problem (an UnreadableRecord naming file
    and line), stepped over by its brackets and strings (escaped quotes and brackets inside strings
    count for nothing), wherever the pieces are cut."""
    monkeypatch.setattr(annotations, "READ_PIECE", piece)
    bad = {"long": '{"text": "' + "x" * 50_000 + '"}', "token": '{"a": tru, "b": "]}\\"[{"}',
           "deep": "[" * 5_000 + "]" * 5_000, "bare": "nul", "long string": '"' + 'y\\"' * 20_000 + '"'}
    good = [{"a": index, "s": 'q"]},[{'} for index in range(len(bad) + 1)]
    parts = [json.dumps(good[0])]
    for index, text in enumerate(bad.values()):
        parts += [text, json.dumps(good[index + 1])]
    path = tmp_path / "mixed.json"
    path.write_text("[\n" + ",\n".join(parts) + "\n]")
    read = [record for _, record in json_items(path, "mixed.json", max_record=10_000)]
    assert read[0::2] == good
    problems = [record.problem for record in read[1::2]]
    assert all(isinstance(record, annotations.UnreadableRecord) for record in read[1::2])
    assert re.match(r"mixed.json: line 3: record 1 is longer than 10000 characters", problems[0])
    assert re.match(r"mixed.json: line 5: record 3 is not JSON", problems[1])
    assert re.match(r"mixed.json: line 7: record 5 is (nested too deeply|longer)", problems[2])
    assert re.match(r"mixed.json: line 9: record 7 is not JSON", problems[3])
    assert re.match(r"mixed.json: line 11: record 9 is longer than 10000", problems[4])


@pytest.mark.parametrize("piece", [3, 64, 1 << 20])
def test_records_after_a_bad_one_read_alone_come_out_as_they_do_read_in_place(tmp_path, monkeypatch, piece):
    """After a record that is not JSON the next records are cut out before they are decoded
    (``CAREFUL_RECORDS``); random lists of good and bad records (strings holding brackets, quotes
    and escapes; bare words; unclosed and mismatched brackets) read the same either way: the same
    records, the same problems naming the same lines, the same error for a broken file."""
    monkeypatch.setattr(annotations, "READ_PIECE", piece)
    pieces = ['{"a": 1}', '[1, [2, {"b": "]}[{"}]]', '"x\\"y"', "12.5e3", "null", "tru", '{"a": }', "[1, 2",
              '{"a": 1]', '"]\\\\"', "-", "{}", "[]", '"\u00e9\\n"', "nul", '{"k": [true, false]}']
    rng = random.Random(piece)
    for attempt in range(150):
        path = tmp_path / f"random{attempt}.json"
        path.write_text("[" + ",\n".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) + "]")

        def read(careful: int, path: Path = path) -> tuple[list, str]:
            monkeypatch.setattr(annotations, "CAREFUL_RECORDS", careful)
            out = []
            try:
                for key, record in json_items(path, path.name):
                    out.append((key, record.problem if isinstance(record, annotations.UnreadableRecord) else record))
            except AnnotationError as error:
                return out, str(error)
            return out, ""

        assert read(0) == read(1000), path.read_text()


def test_a_number_past_pythons_digit_limit_is_its_records_problem(tmp_path):
    """json raises a plain ValueError for an integer of more than 4,300 digits: one record of a JSON
    list holding one stopped the whole source, naming no file."""
    big = "9" * 10_000
    (tmp_path / "qa.json").write_text(f'[{{"answer": "yes"}}, {{"answer": {big}}}, {{"answer": "no"}}]')
    items = list(iter_records(tmp_path, "qa.json"))
    assert [item.get("answer") if isinstance(item, dict) else item.reason for item in items] == [
        "yes", "malformed_record", "no"]
    assert "qa.json: line 1: record 1 is not readable (Exceeds the limit (4300 digits)" in items[1].detail


def test_a_large_list_of_small_records_is_read_in_bounded_memory(tmp_path):
    """Nine million characters of empty objects: the whole parse grows the process by about 200 MiB,
    reading a record at a time by a few MiB (peak resident size of a child process, before and after)."""
    path = tmp_path / "many.json"
    path.write_text("[" + ",".join(["{}"] * 3_000_000) + "]")
    script = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "from medmo_pipeline.process_memory import peak_rss_kib, reset_peak_rss\n"
        "from medmo_pipeline.data.annotations import json_items\n"
        "assert reset_peak_rss()\n"
        "before = peak_rss_kib()\n"
        "count = sum(1 for _ in json_items(Path(sys.argv[1]), 'many.json'))\n"
        "print(json.dumps({'count': count, 'grew_kib': peak_rss_kib() - before}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    result = json.loads(done.stdout)
    assert result["count"] == 3_000_000
    assert result["grew_kib"] < 32 << 10, result


def test_a_parquet_row_group_declaring_more_than_the_bound_is_refused_before_reading(tmp_path, monkeypatch):
    pq.write_table(pa.table({"question": ["small"] * 3 + ["x" * 300_000], "answer": ["no"] * 4}),
                   tmp_path / "qa.parquet", row_group_size=3, compression="zstd")
    monkeypatch.setattr(records, "MAX_ROW_GROUP_BYTES", 100_000)
    with pytest.raises(AnnotationError, match=r"qa.parquet: row group 1 declares \d+ bytes once decoded"):
        list(iter_records(tmp_path, "qa.parquet"))
    monkeypatch.setattr(records, "MAX_ROW_GROUP_BYTES", 1 << 30)
    assert len(list(iter_records(tmp_path, "qa.parquet"))) == 4


def test_a_damaged_parquet_file_names_itself(tmp_path):
    (tmp_path / "train.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 4 + b"PAR1")
    with pytest.raises(AnnotationError, match="train.parquet: not a Parquet file read here"):
        list(iter_records(tmp_path, "train.parquet"))


_WRITERS = [{}, {"compression": "zstd"}, {"compression": "snappy", "data_page_version": "2.0"},
            {"compression": "gzip", "row_group_size": 700, "use_dictionary": False},
            {"compression": "lz4", "write_page_index": True, "write_page_checksum": True},
            {"compression": "brotli", "data_page_size": 4096}]


@pytest.mark.parametrize("options", _WRITERS, ids=lambda options: ",".join(map(str, options.values())) or "default")
def test_the_page_headers_of_files_written_every_way_agree_with_their_footers(tmp_path, options):
    """Every page header of nested, nullable, dictionary and image columns is read (Thrift compact
    structs, statistics included) and its sizes hold for the footer: the file is read whole."""
    rng = random.Random(0)
    table = pa.table({
        "image": pa.array([{"bytes": rng.randbytes(3000), "path": f"{i}.png"} for i in range(2000)]),
        "question": [f"what is seen in image {i % 37}?" for i in range(2000)],
        "choices": pa.array([["a", "b", None]] * 2000),
        "meta": pa.array([{"k": i} for i in range(2000)], pa.map_(pa.string(), pa.int64())),
        "answer": [None if i % 5 else "yes" for i in range(2000)],
    })
    pq.write_table(table, tmp_path / "qa.parquet", **options)
    with open(tmp_path / "qa.parquet", "rb") as handle:
        parquet_pages.check_pages(handle, pq.ParquetFile(tmp_path / "qa.parquet").metadata, 1 << 30)
    assert len(list(iter_records(tmp_path, "qa.parquet"))) == 2000


def test_a_parquet_page_declaring_more_than_its_footer_is_refused_before_arrow_inflates_it(tmp_path):
    (tmp_path / "qa.parquet").write_bytes(parquet_page_bomb(64 << 20))
    with pytest.raises(AnnotationError, match="qa.parquet: row group 0, column text: its pages declare 67108864 "
                                              "bytes once decompressed, its footer 200033"):
        list(iter_records(tmp_path, "qa.parquet"))
    # the bound on what is read at a time holds for what the pages declare, a footer's figure aside
    pq.write_table(pa.table({"text": ["x" * 1_500_000]}), tmp_path / "honest.parquet", compression="zstd")
    with (open(tmp_path / "honest.parquet", "rb") as handle,
          pytest.raises(parquet_pages.PageHeaderError, match="row group 0: its pages declare more than 1000000")):
        parquet_pages.check_pages(handle, pq.ParquetFile(handle).metadata, 1_000_000)


def test_a_file_of_more_pages_than_the_check_walks_is_refused(tmp_path, monkeypatch):
    """Each page is a step of the check: a file of millions of tiny pages is refused, not walked."""
    pq.write_table(pa.table({"a": list(range(100_000))}), tmp_path / "qa.parquet", data_page_size=1,
                   use_dictionary=False, compression="none")
    monkeypatch.setattr(parquet_pages, "MAX_PAGES", 10)  # the file holds about a hundred
    with open(tmp_path / "qa.parquet", "rb") as handle, \
            pytest.raises(parquet_pages.PageHeaderError, match="the file holds more than 10 pages"):
        parquet_pages.check_pages(handle, pq.ParquetFile(handle).metadata, 1 << 30)


def test_a_page_header_of_random_bytes_is_refused_by_name_in_bounded_steps():
    """Any bytes where a page header should be: its sizes, or PageHeaderError, within the bounds."""
    rng = random.Random(1)
    for _ in range(3000):
        data = rng.randbytes(rng.randrange(0, 64)) + bytes([rng.choice([0x19, 0x1A, 0x1B, 0x1C, 0x29])]) * rng.randrange(3)
        data += rng.randbytes(rng.randrange(0, 200))
        handle = io.BytesIO(data)
        try:
            parquet_pages._page_header(handle, 0, len(data), "column x")
        except parquet_pages.PageHeaderError as error:
            assert str(error).startswith("column x: the page header at byte 0")
    # a list of a billion numbers, 10 MB of them there: refused after MAX_HEADER_VALUES, not walked
    billion = b"\x19\xf5" + bytes([0x80, 0x94, 0xEB, 0xDC, 0x03]) + bytes(10 << 20)
    with pytest.raises(parquet_pages.PageHeaderError, match=f"more than {parquet_pages.MAX_HEADER_VALUES} values"):
        parquet_pages._page_header(io.BytesIO(billion), 0, len(billion), "column x")


def test_a_gzipped_split_table_is_read_line_by_line_and_a_damaged_one_names_itself(tmp_path):
    good = tmp_path / "mimic-cxr-2.0.0-split.csv.gz"
    good.write_bytes(gzip.compress(b"dicom_id,study_id,subject_id,split\r\nd1,50000001,10000001,test\r\n"))
    assert list(split_table(good)) == [{"dicom_id": "d1", "study_id": "50000001", "subject_id": "10000001",
                                         "split": "test"}]
    endless = tmp_path / "endless.csv.gz"  # 40 KB on disk, one line of 64 MiB inflated
    endless.write_bytes(gzip.compress(b"dicom_id,study_id,subject_id,split\n" + b"x" * (64 << 20)))
    with pytest.raises(AnnotationError, match="endless.csv.gz: line 2 is longer than"):
        list(split_table(endless))
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(good.read_bytes()[:-12])
    with pytest.raises(AnnotationError, match="cut.csv.gz: not a readable split table"):
        list(split_table(cut))
    empty_lines = tmp_path / "empty_lines.csv.gz"  # 100 KB of gzip, 100 million empty lines: 70 s to step through
    with gzip.open(empty_lines, "wb", compresslevel=1) as handle:
        handle.write(b"dicom_id,study_id,subject_id,split\n")
        for _ in range(100):
            handle.write(b"\n" * 1_000_000)
    with pytest.raises(AnnotationError, match="empty_lines.csv.gz: more than 4000000 lines"):
        list(split_table(empty_lines))


def test_an_npz_whose_zip_directory_lists_a_multitude_of_members_is_refused_before_it_is_read(tmp_path):
    import io
    import zipfile

    import numpy as np

    from medmo_pipeline.data.adapters import iter_outcomes
    from medmo_pipeline.data.adapters.records import SourceLayoutError

    def npz(path: Path, padding: int) -> None:
        with zipfile.ZipFile(path, "w") as archive:
            for index in range(padding):  # 62 bytes of directory each
                archive.writestr(f"padding/{index:08d}", b"")
            for key, dtype in (("X", np.float32), ("y", np.uint16)):
                buffer = io.BytesIO()
                array = np.zeros((1, 32, 32, 2), dtype)
                array[0, 4:12, 4:12] = 1
                np.save(buffer, array)
                archive.writestr(f"{key}.npy", buffer.getvalue())

    npz(tmp_path / "few.npz", 10)
    assert sum(isinstance(row, dict) for row in iter_outcomes("instance_masks_npz", tmp_path, {"file": "few.npz"})) == 1
    npz(tmp_path / "many.npz", 20_000)  # 1.2 MiB of directory
    with pytest.raises(SourceLayoutError, match=r"many.npz: its zip directory declares \d+ bytes"):
        list(iter_outcomes("instance_masks_npz", tmp_path, {"file": "many.npz"}))


def test_a_stray_quote_in_a_csv_costs_its_own_line_and_the_lines_it_took_in_are_read(tmp_path):
    """Quoted fields span lines, so a stray quote makes the lines after it part of one field: up to
    the next quote (then the row kept was wrong and the rows in it were gone), the field bound or
    the end of the file. Only the line where the quote opened is quarantined; the rest are read."""
    import csv

    from medmo_pipeline.data.outcomes import RowQuarantined

    def read(text: str) -> list:
        (tmp_path / "qa.csv").write_text(text)
        return list(iter_records(tmp_path, "qa.csv"))

    rows = "".join(f"s{i}.png,what is {i}?,yes\n" for i in range(3))
    for text, problem in [  # a quote closed by the next quoted field, and one never closed
        ('image,question,answer\na.png,"is it?,no\n' + rows + 'b.png,"what, then?",mass\n', "does not close a field"),
        ('image,question,answer\na.png,"is it?,no\n' + rows, "unexpected end of data")]:
        first, *others = read(text)
        assert isinstance(first, RowQuarantined) and first.record == "row 1" and problem in first.detail
        assert "qa.csv: line 2:" in first.detail
        assert [record["image"] for record in others][:3] == ["s0.png", "s1.png", "s2.png"]
        assert all(isinstance(record, dict) and record["answer"] in ("yes", "mass") for record in others)
    assert read('image,question,answer\n' + rows + 'b.png,"what, then?",mass\n')[-1]["question"] == "what, then?"

    # at the field bound: the lines read so far are read again, and the file goes on after them
    limit = csv.field_size_limit(100_000)
    try:
        first, *records = read('study,report\ns0.txt,"the stray quote\n' + "".join(
            f"s{i}.txt,report {i}\n" for i in range(1, 30_000)))
    finally:
        csv.field_size_limit(limit)
    assert isinstance(first, RowQuarantined) and "field larger than field limit" in first.detail
    assert [record["study"] for record in records] == [f"s{i}.txt" for i in range(1, 30_000)]


def test_a_jsonl_file_saved_with_a_byte_order_mark_reads_its_first_line(tmp_path):
    (tmp_path / "train.jsonl").write_bytes(b'\xef\xbb\xbf{"q": "a"}\n{"q": "b"}\n')
    assert list(iter_records(tmp_path, "train.jsonl")) == [{"q": "a"}, {"q": "b"}]


def test_a_jsonl_line_over_the_bound_is_its_records_problem_and_the_next_lines_are_read(tmp_path):
    from medmo_pipeline.data.outcomes import RowQuarantined

    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"q": "a"}\n{"q": "' + b"x" * (20 << 20) + b'"}\n{"q": "c"}\n')
    first, problem, last = iter_records(tmp_path, "train.jsonl")
    assert first == {"q": "a"} and last == {"q": "c"}
    assert isinstance(problem, RowQuarantined) and problem.record == "line 2"
    assert problem.detail == f"train.jsonl: line 2 is longer than {16 << 20} characters"
