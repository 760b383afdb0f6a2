"""Parquet record files laid out as the registry's Hugging Face datasets are, made hostile: what
Arrow would hold of them (a row group of embedded images is one page; a page of a few KB of zstd
inflating to hundreds of MB), rows that cost steps and not bytes, footers too large to parse, text
cells too long to build, and files that are not Parquet at all. Each is refused from what the file
declares, naming it (and the row group or row), before Arrow or Python builds it."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from guards import cpu_seconds_limit
from pyarrow import feather
from registry_sources import registry_fixture

from medmo_pipeline.data.adapters import records
from medmo_pipeline.data.annotations import AnnotationError
from medmo_pipeline.data.outcomes import RowQuarantined
from medmo_pipeline.data.registry import SourceUnavailable

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _images(count: int, size: int) -> pa.Table:
    """``count`` rows of an embedded image of ``size`` random bytes, as ``datasets`` writes them."""
    rng = np.random.default_rng(0)
    return pa.table({"image": pa.array([{"bytes": rng.bytes(size), "path": None} for _ in range(count)], IMAGE),
                     "question": [f"q{index}" for index in range(count)], "answer": ["yes"] * count})


def test_a_row_group_held_in_one_page_is_bounded_by_what_arrow_holds_of_it(tmp_path, monkeypatch):
    """Arrow's writer checks a page's size every 1,024 values, so a row group of 100 embedded images
    is one page: 100 of 8 MiB (an honest 800 MB file under the 1 GiB row-group bound) held 1.6 GB
    in Arrow and 4.2 GB resident. A page of a few KB of zstd that inflates to 900 MiB (footer and
    header honest) took 919 MiB. What each column's largest page takes read, decompressed and
    decoded is bounded before Arrow reads it."""
    pq.write_table(_images(20, 64 << 10), tmp_path / "images.parquet")  # one 1.3 MB page
    bomb = pa.table({"question": ["x" * (1 << 20)] * 20, "answer": ["a"] * 20})
    pq.write_table(bomb, tmp_path / "bomb.parquet", compression="zstd", use_dictionary=False,
                   data_page_size=1 << 30)
    assert (tmp_path / "bomb.parquet").stat().st_size < 20_000
    assert len(list(records.iter_records(tmp_path, "images.parquet"))) == 20  # within the bound: read
    monkeypatch.setattr(records, "MAX_PAGES_AT_ONCE", 2 << 20)
    with pytest.raises(AnnotationError, match=r"images.parquet: row group 0: its columns' largest pages take \d+ "
                                              r"bytes .* \(at column image.bytes\).*rewrite it with smaller row groups"):
        list(records.iter_records(tmp_path, "images.parquet"))
    with pytest.raises(AnnotationError, match=r"bomb.parquet: row group 0: .* \(at column question\)"):
        list(records.iter_records(tmp_path, "bomb.parquet"))


def test_rows_that_cost_steps_and_no_bytes_are_refused_from_the_footer(tmp_path):
    """30 million null strings took 65 KB of zstd and 40 CPU seconds to read (more to curate): a
    file holds no more rows than bytes, past a floor of small files."""
    pq.write_table(pa.table({"question": pa.nulls(3_000_000, pa.string())}), tmp_path / "nulls.parquet",
                   compression="zstd")
    size = (tmp_path / "nulls.parquet").stat().st_size
    assert size < 100_000
    with cpu_seconds_limit(2), pytest.raises(AnnotationError, match=f"nulls.parquet: its footer declares 3000000 "
                                                                    f"rows in {size} bytes"):
        list(records.iter_records(tmp_path, "nulls.parquet"))
    pq.write_table(pa.table({"question": pa.nulls(1000, pa.string())}), tmp_path / "few.parquet")
    assert len(list(records.iter_records(tmp_path, "few.parquet"))) == 1000  # a small file of many rows: read


def test_a_footer_too_large_or_too_wide_is_refused_before_arrow_parses_it(tmp_path, monkeypatch):
    """A footer of 100,000 columns (26 MB) took 276 MiB to parse and 938 MiB and 5 CPU s to read
    one row; its size is read from the file's last 8 bytes first. A footer longer than the file is
    damage."""
    pq.write_table(pa.table({f"c{index}": [index] for index in range(40)}), tmp_path / "wide.parquet")
    monkeypatch.setattr(records, "MAX_FOOTER_BYTES", 1000)
    with pytest.raises(AnnotationError, match=r"wide.parquet: its footer declares \d+ bytes, over the 1000"):
        list(records.iter_records(tmp_path, "wide.parquet"))
    monkeypatch.setattr(records, "MAX_FOOTER_BYTES", 8 << 20)
    monkeypatch.setattr(records, "MAX_COLUMNS", 30)
    with pytest.raises(AnnotationError, match="wide.parquet: 40 columns, over the 30 read here"):
        list(records.iter_records(tmp_path, "wide.parquet"))
    data = (tmp_path / "wide.parquet").read_bytes()
    (tmp_path / "long.parquet").write_bytes(data[:-8] + (len(data)).to_bytes(4, "little") + b"PAR1")
    with pytest.raises(AnnotationError, match="long.parquet: not a Parquet file read here .*more than the file "
                                              "holds.*download it again"):
        list(records.iter_records(tmp_path, "long.parquet"))


def test_a_text_cell_longer_than_a_line_is_its_rows_quarantine(tmp_path, monkeypatch):
    """A 100 MB question (4 KB of zstd) took 618 MiB to build in Python from its dictionary; text is
    held to a JSONL line's bound, bytes (an embedded image) to MAX_ROW_BYTES."""
    monkeypatch.setattr(records, "MAX_LINE", 1000)
    image = {"bytes": b"\x89PNG" + bytes(5000), "path": None}
    table = pa.table({"image": pa.array([image] * 3, IMAGE), "question": ["q1", "x" * 5000, "q3"],
                      "answer": ["a"] * 3})
    pq.write_table(table, tmp_path / "long.parquet")
    read = list(records.iter_records(tmp_path, "long.parquet"))
    assert [row["question"] for row in read if not isinstance(row, RowQuarantined)] == ["q1", "q3"]
    assert (read[1].reason, read[1].file, read[1].record) == ("malformed_record", "long.parquet", "row 2")
    assert "holds 5001 bytes of text, over the 1000" in read[1].detail
    assert read[2].origin == ("long.parquet", "row 3")


@pytest.mark.parametrize("name", ["truncated", "csv", "feather", "thrift"])
def test_a_file_that_is_not_parquet_names_itself_and_the_fix(tmp_path, name):
    """Truncated, a CSV or an Arrow IPC (Feather) file named .parquet, right magic and garbage
    metadata: the source stops naming the file and what to do."""
    sink = io.BytesIO()
    pq.write_table(pa.table({"question": ["q"] * 10}), sink)
    good = sink.getvalue()
    feather_file = io.BytesIO()
    feather.write_feather(pa.table({"question": ["q"]}), feather_file)
    data = {"truncated": good[: len(good) // 2], "csv": b"question,answer\nq,a\n",
            "feather": feather_file.getvalue(),
            "thrift": b"PAR1" + np.random.default_rng(1).bytes(5000) + (4000).to_bytes(4, "little") + b"PAR1"}[name]
    (tmp_path / "train.parquet").write_bytes(data)
    with pytest.raises(AnnotationError, match="train.parquet: not a Parquet file read here .*download it again"):
        list(records.iter_records(tmp_path, "train.parquet"))


def test_a_split_keeps_its_good_rows_and_files_past_a_long_cell_and_stops_on_a_row_bomb(tmp_path, monkeypatch):
    """PathVQA's layout (data/train-*.parquet): a text cell over the bound costs its row, named by
    file and row; a file of more rows than bytes stops the source naming it."""
    build, curate = registry_fixture(tmp_path, monkeypatch)
    folder = build("pathvqa")
    table = pq.read_table(folder / "data/train-fixture.parquet")
    rows = [{**row, "question": f"second file, question {index}"} for index, row in enumerate(table.to_pylist())]
    rows[1]["question"] = "x" * 2000
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), folder / "data/train-zz.parquet")
    monkeypatch.setattr(records, "MAX_LINE", 1000)
    report = curate("pathvqa")
    assert report["problems"] == [("malformed_record", "data/train-zz.parquet", "row 2")]
    assert report["rows_kept"] == 2 * len(rows) - 1
    pq.write_table(pa.table({"question": pa.nulls(1_000_000, pa.string())}), folder / "data/train-zz.parquet",
                   compression="zstd")
    with pytest.raises(SourceUnavailable, match=r"data/train-zz.parquet: its footer declares 1000000 rows"):
        curate("pathvqa")


def test_a_later_file_of_a_split_without_a_column_stops_the_source_naming_that_file(tmp_path, monkeypatch):
    """Each file of a pattern shows its own columns: a later file renamed one (its every row was
    image_missing, the split's first file alone checked)."""
    build, curate = registry_fixture(tmp_path, monkeypatch)
    folder = build("pathvqa")
    table = pq.read_table(folder / "data/train-fixture.parquet")
    pq.write_table(table.rename_columns(["picture" if n == "image" else n for n in table.column_names]),
                   folder / "data/train-zz.parquet")
    with pytest.raises(SourceUnavailable, match=r"data/train-zz.parquet has no column 'image' that the layout reads"):
        curate("pathvqa")


def test_a_timestamp_or_decimal_where_text_belongs_is_its_rows_problem(tmp_path, monkeypatch):
    """An INT96 timestamp question or a decimal answer was kept as "2020-01-01 00:00:00" or "1.50"."""
    import datetime
    import decimal

    build, curate = registry_fixture(tmp_path, monkeypatch)
    folder = build("pathvqa")
    rows = pq.read_table(folder / "data/train-fixture.parquet").to_pylist()
    pq.write_table(pa.Table.from_pylist([{**row, "question": datetime.datetime(2020, 1, 1)} for row in rows]),
                   folder / "data/train-zy.parquet")
    pq.write_table(pa.Table.from_pylist([{**row, "answer": decimal.Decimal("1.50")} for row in rows]),
                   folder / "data/train-zz.parquet")
    report = curate("pathvqa")
    assert sorted(report["problems"]) == sorted(
        ("malformed_record", f"data/train-{name}.parquet", f"row {n + 1}") for name in ("zy", "zz") for n in range(len(rows)))
    assert report["rows_kept"] == len(rows)
