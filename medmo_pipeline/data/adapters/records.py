"""Record files as releases ship them: JSON (a list, a list under a key, or an object of records
by id), JSONL, CSV/TSV and Parquet, read one record at a time within ``annotations``' bounds. A
record that does not parse comes out as a ``RowQuarantined`` in its place; what only the whole
source can cause (the file missing, a JSON file that does not parse) stops the source: a
``SourceLayoutError``, or an ``annotations.AnnotationError`` naming the file and line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from medmo_pipeline.data.adapters.parquet_pages import PageHeaderError, PagesTooLarge, check_pages
from medmo_pipeline.data.annotations import (
    MAX_LINE,
    AnnotationError,
    BoundedLines,
    LineTooLong,
    UnreadableRecord,
    csv_newline,
    csv_rows,
    json_items,
    json_line,
    wide_text,
)
from medmo_pipeline.data.outcomes import RowQuarantined
from medmo_pipeline.safe_paths import safe_glob, safe_join

RecordFormat = Literal["auto", "json", "jsonl", "csv", "tsv", "parquet"]
# A Parquet row group is decoded a page at a time, but one value fills its page: Hugging Face's
# image sets write row groups of 100 images (tens to hundreds of MB); a gigabyte is no such file
MAX_ROW_GROUP_BYTES = 1 << 30
# What Arrow holds of a row group at a time: each column's largest page, as read and decompressed
# (``parquet_pages.check_pages``); decoding a page costs about as much again, and the job 1 GB
MAX_PAGES_AT_ONCE = 512 << 20
# A footer is parsed whole, into more than its size (26 MB of 100,000 columns: 276 MiB); Hugging
# Face's are tens of KB. Rows cost Python steps, not bytes: 65 KB of zstd held 30 million null rows
# (40 CPU s to read, more to curate), so a file may hold a row per byte it has, and _FEW_ROWS.
MAX_FOOTER_BYTES, MAX_COLUMNS, _FEW_ROWS = 8 << 20, 10_000, 1 << 16
# What Parquet rows may decode to. A dictionary page lets a file of a few hundred bytes give every row
# the same long value (2,048 rows of one 512 KiB string peaked at 850 MiB), and a few bytes of levels
# make millions of empty lists: a row over MAX_ROW_BYTES or MAX_ROW_VALUES once decoded is its
# record's problem, and a file decoding to more than EXPANSION times its size (and a floor) stops its
# source. A batch weighing more than _BATCH_BYTES is built a row at a time.
MAX_ROW_BYTES = 256 << 20  # one row (an embedded whole-slide tile is tens of MB)
MAX_ROW_VALUES = 1 << 20  # values at every depth of one row (a list of a million numbers)
_BATCH_BYTES = 64 << 20
_BATCH_DECLARED = 16 << 20  # what the rows of a batch may declare (a batch is one more copy of them)
EXPANSION, EXPANSION_FLOOR = 1000, 256 << 20


class Record(dict):
    """A record as read from its file, and where it was: ``origin`` = (file, "row N" / "line N"),
    the file itself where the layout names several with a pattern. The adapters' quarantine
    records name that place (``common.guarded``)."""

    origin: tuple[str, str] = ("", "")


def located(record: dict, file: str, where: str) -> Record:
    """``record`` as a ``Record`` read from ``file`` at ``where``."""
    found = record if isinstance(record, Record) else Record(record)
    found.origin = (file, where)
    return found


class SourceLayoutError(RuntimeError):
    """The dataset's files do not have the layout the registry entry describes (a file missing, a
    JSON file that does not parse): no record of it can be read."""


def layout_path(root: Path, relative: str, *, folder: bool = False) -> Path:
    """``relative`` under ``root`` (through ``safe_join``; '' is the root), a file (or with ``folder``
    a folder) the layout requires: SourceLayoutError naming it when it is not there."""
    path = safe_join(root, relative) if relative else Path(root).resolve()
    if not (path.is_dir() if folder else path.is_file()):
        raise SourceLayoutError(f"{relative or '.'} is missing under {root}")
    return path


def iter_records(root: Path, file: str, fmt: RecordFormat = "auto", *, json_key: str = "",
                 columns: Sequence[str] = (), quoted: bool = True, keyed_by: str = "") -> Iterator[dict]:
    """Records of a JSON (list, or ``json_key`` inside an object), JSONL, CSV/TSV or Parquet file;
    a ``file`` with ``*`` reads every match in name order (hub datasets split into many files).

    Parquet is streamed batch by batch (a row group over ``MAX_ROW_GROUP_BYTES`` refused), JSONL
    and CSV/TSV line by line within ``annotations``' bounds, a JSON file record by record
    (``annotations.json_items``). A line or record over the bounds, one that does not parse, and a
    line or CSV row that is not UTF-8, come out as ``RowQuarantined`` in their place, naming the
    file and line. CSV header names are stripped (a trailing space in a header is a common quirk)
    and a byte-order mark is dropped.
    """
    if "*" in file:
        base = Path(root).resolve()
        matches = safe_glob(base, file, refuse_outside=False)  # each match is read through layout_path's guard
        if not matches:
            raise SourceLayoutError(f"no file matches {file!r} under {base}")
        for match in matches:
            yield from iter_records(root, match.relative_to(base).as_posix(), fmt, json_key=json_key,
                                    columns=columns, quoted=quoted, keyed_by=keyed_by)
        return
    path = layout_path(root, file)
    kind = record_format(file, fmt)
    if kind == "jsonl":
        yield from _jsonl(path, file)
    elif kind == "json":
        yield from _json(path, file, json_key, keyed_by)
    elif kind in ("csv", "tsv"):
        yield from _csv(path, file, "\t" if kind == "tsv" else ",", columns, quoted)
    elif kind == "parquet":
        yield from _parquet(path, file)
    else:
        raise SourceLayoutError(f"{file}: unknown record format {kind!r}; say format: json|jsonl|csv|tsv|parquet")


def record_format(file: str, fmt: RecordFormat = "auto") -> str:
    """The format ``file`` is read as: ``fmt``, or its extension's."""
    return fmt if fmt != "auto" else Path(file).suffix.lower().lstrip(".")


def _parquet(path: Path, file: str) -> Iterator[dict]:
    """The rows of a Parquet file, a batch at a time; a row group declaring more than
    ``MAX_ROW_GROUP_BYTES`` once decoded, whose pages declare more than its footer or more than
    ``MAX_PAGES_AT_ONCE`` held at a time (``parquet_pages.check_pages``), a footer over
    ``MAX_FOOTER_BYTES`` or ``MAX_COLUMNS``, or more rows than bytes, is refused before any is
    read, and a file Arrow cannot read stops with an AnnotationError naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with open(path, "rb") as handle:
            _check_footer(handle, file)
        parquet = pq.ParquetFile(path, buffer_size=1 << 20)
        if (columns := parquet.metadata.num_columns) > MAX_COLUMNS:
            raise AnnotationError(f"{file}: {columns} columns, over the {MAX_COLUMNS} read here; no dataset's "
                                  "records have so many: rewrite it with the columns the layout reads")
        texts = [field.name for field in parquet.schema_arrow if _is_text(field.type)]
        # read as dictionaries: a value a dictionary page repeats is decoded once, then weighed; and
        # page by page (buffer_size): else each column chunk is read whole before its first page
        if texts:
            parquet = pq.ParquetFile(path, read_dictionary=texts, buffer_size=1 << 20)
        metadata, size = parquet.metadata, path.stat().st_size
        rows = sum(metadata.row_group(index).num_rows for index in range(metadata.num_row_groups))
        if max(rows, metadata.num_rows) > max(size, _FEW_ROWS):
            raise AnnotationError(f"{file}: its footer declares {max(rows, metadata.num_rows)} rows in {size} bytes, "
                                  "more than one a byte: damaged or crafted; download it again")
        widest = 0  # bytes a row of the heaviest row group declares, for the rows read at a time
        for index in range(metadata.num_row_groups):
            if (group := metadata.row_group(index).total_byte_size) > MAX_ROW_GROUP_BYTES:
                raise AnnotationError(f"{file}: row group {index} declares {group} bytes once decoded, over the "
                                      f"{MAX_ROW_GROUP_BYTES} read at a time; rewrite it with smaller row groups")
            widest = max(widest, group // max(metadata.row_group(index).num_rows, 1))
        with open(path, "rb") as handle:  # the sizes Arrow will allocate
            try:
                check_pages(handle, metadata, MAX_ROW_GROUP_BYTES, MAX_PAGES_AT_ONCE, texts)
            except PageHeaderError as error:
                fix = "rewrite it with smaller row groups" if isinstance(error, PagesTooLarge) else \
                    "damaged or crafted: download it again"
                raise AnnotationError(f"{file}: {error}: refused before Arrow decompresses it; {fix}") from None
        if len(set(names := parquet.schema_arrow.names)) < len(names):
            raise SourceLayoutError(f"{file} names the column(s) {_repeated(names)} more than once: which one the "
                                    "layout reads is ambiguous")
        number, decoded, most = 0, 0, EXPANSION * size + EXPANSION_FLOOR
        # fewer rows a batch where rows are heavy (embedded images): a batch is one more copy of them
        for batch in parquet.iter_batches(batch_size=max(1, min(256, _BATCH_DECLARED // max(widest, 1)))):
            weight = _weight(batch)
            decoded += weight[0]
            if decoded > most:
                raise AnnotationError(f"{file}: its rows decode to more than {most} bytes, {EXPANSION} times its "
                                      "size and more: refused before they are built")
            for record in _python_rows(batch, file, number, weight):
                number += 1
                yield record if type(record) is RowQuarantined else located(record, file, f"row {number}")
    except (pa.ArrowException, OSError) as error:
        said = " ".join(str(error).split())  # Arrow's thrift errors end in a newline: one line of the log
        raise AnnotationError(f"{file}: not a Parquet file read here ({type(error).__name__}: {said}); download "
                              "it again, or remove it from the split") from None


def _check_footer(handle, file: str) -> None:
    """AnnotationError where the file does not end as Parquet does, or its footer is over
    ``MAX_FOOTER_BYTES``: both read from its last 8 bytes, before Arrow parses the footer."""
    import struct

    handle.seek(0, 2)
    size = handle.tell()
    handle.seek(max(size - 8, 0))
    tail = handle.read(8)
    if size < 12 or tail[4:] != b"PAR1":
        raise AnnotationError(f"{file}: not a Parquet file read here (it does not end with Parquet's magic "
                              "number: truncated, or another format); download it again, or remove it from the split")
    if (footer := struct.unpack("<I", tail[:4])[0]) > size - 12:
        raise AnnotationError(f"{file}: not a Parquet file read here (its footer declares {footer} bytes, more than "
                              "the file holds: damaged); download it again, or remove it from the split")
    if footer > MAX_FOOTER_BYTES:
        raise AnnotationError(f"{file}: its footer declares {footer} bytes, over the {MAX_FOOTER_BYTES} parsed here "
                              "(thousands of columns or row groups): rewrite it with fewer")


def _python_rows(batch, file: str, before: int, weight: tuple[int, int]) -> Iterator:
    """A batch's rows as Python dicts, one at a time where they weigh much; a row over its bounds
    (``MAX_ROW_BYTES``, ``MAX_ROW_VALUES`` values once decoded) or holding a value Python cannot
    represent (a date32 of 2**31 - 1 days, a duration of 2**62 s: OverflowError) is that row's
    RowQuarantined. ``weight``: the batch's ``_weight``."""
    size, values = weight
    where = f"row {before + 1}"
    if batch.num_rows == 1 and (size > MAX_ROW_BYTES or values > MAX_ROW_VALUES):
        yield RowQuarantined("malformed_record", f"{file} {where}: decodes to {size} bytes and {values} values, "
                                                 f"over the {MAX_ROW_BYTES} and {MAX_ROW_VALUES} one record may",
                             file, where)
        return
    # Text as a JSONL line's (MAX_LINE): Python builds a string column's value from its dictionary
    # at several times its size (a 100 MB question: 618 MiB); bytes (images) go by MAX_ROW_BYTES
    if batch.num_rows == 1 and size > MAX_LINE and (text := _text_bytes(batch)) > MAX_LINE:
        yield RowQuarantined("malformed_record", f"{file} {where}: holds {text} bytes of text, over the "
                                                 f"{MAX_LINE} one record may", file, where)
        return
    # A heavy batch is built, and weighed, a row at a time; a single row within its bounds is built
    if batch.num_rows == 1 or (size <= min(_BATCH_BYTES, MAX_LINE) and values <= MAX_ROW_VALUES):
        try:
            rows = batch.to_pylist()
        except (ValueError, OverflowError) as error:
            if batch.num_rows == 1:  # a string column's bytes that are not UTF-8 (a writer that did not check)
                reason = "invalid_utf8" if isinstance(error, UnicodeDecodeError) else "bad_number"
                yield RowQuarantined(reason, f"{file} {where}: {type(error).__name__}: {error}", file, where)
                return
        else:
            yield from rows
            return
    for offset in range(batch.num_rows):  # found row by row
        row = batch.slice(offset, 1)
        yield from _python_rows(row, file, before + offset, _weight(row))


def _text_bytes(data) -> int:
    """Bytes of the string (not binary) values in Arrow data, at every depth: as ``_weight``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(data, pa.RecordBatch):
        return sum(_text_bytes(column) for column in data.columns)
    kind = data.type
    if pa.types.is_dictionary(kind):
        if not (pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)):
            return 0
        return int(pc.sum(pc.take(pc.binary_length(data.dictionary), data.indices)).as_py() or 0)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return int(pc.sum(pc.binary_length(data)).as_py() or 0)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _text_bytes(data.flatten())
    if pa.types.is_struct(kind):
        return sum(_text_bytes(field) for field in data.flatten())
    return 0  # a map's strings are not weighed here (their bytes are, by _weight)


def _is_text(kind) -> bool:
    import pyarrow as pa

    return (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind))


def _weight(data) -> tuple[int, int]:
    """(bytes, values at every depth) that Arrow data (a batch, an array) takes once decoded into
    rows: a dictionary array's values counted as often as its indices use them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(data, pa.RecordBatch):
        weights = [_weight(column) for column in data.columns]
        return sum(size for size, _ in weights), sum(count for _, count in weights)
    kind = data.type
    if pa.types.is_dictionary(kind) and _is_text(kind.value_type):
        used = pc.take(pc.binary_length(data.dictionary), data.indices)
        return int(pc.sum(used).as_py() or 0), len(data)
    if pa.types.is_map(kind):  # no flatten kernel: its entries counted, its bytes as stored
        offsets = data.offsets
        return data.nbytes, len(data) + (offsets[len(offsets) - 1].as_py() - offsets[0].as_py() if len(data) else 0)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        size, count = _weight(data.flatten())
        return size + 8 * len(data), count + len(data)
    if pa.types.is_struct(kind):
        weights = [_weight(field) for field in data.flatten()]
        return sum(size for size, _ in weights), sum(count for _, count in weights) + len(data)
    return data.nbytes, len(data)


def text_lines(path: Path, file: str) -> Iterator[tuple[int, str] | RowQuarantined]:
    """(number, text) of each line of a UTF-8 text file (a byte-order mark dropped), read through
    ``BoundedLines``: a line over the bound or not UTF-8 comes as its record's RowQuarantined, and
    the next line is read."""
    with open(path, "rb") as handle:
        check_utf8_file(handle, file)
        head = handle.read(1 << 16)
        handle.seek(0)
        if b"\r" in head.rstrip(b"\r") and b"\n" not in head:  # every record would be one "line"
            raise SourceLayoutError(f"{file}: its lines end in a carriage return alone (an old Mac export): "
                                    "convert them to LF or CRLF")
        lines = BoundedLines(handle, file)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                return
            except LineTooLong as error:  # one record's problem: the next line is the next record
                yield RowQuarantined("malformed_record", str(error), file, f"line {lines.number}")
                continue
            try:  # a mark at any line's start: files saved with one and joined end to end (cat a.jsonl b.jsonl)
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError as error:
                where = f"line {lines.number}"
                yield RowQuarantined("invalid_utf8", f"{file} {where}: {error}", file, where)
                continue
            yield lines.number, text


def check_utf8_file(handle, file: str) -> None:
    """SourceLayoutError for a text file that is UTF-16 or UTF-32 (a spreadsheet's "Unicode text"
    export, with its byte-order mark or without: ``annotations.wide_text``): none of its lines would
    read as UTF-8, so the file, not each line, is the problem. ``handle`` (binary) is left where it was."""
    start = handle.tell()
    head = handle.read(4)
    handle.seek(start)
    if wide := wide_text(head):
        raise SourceLayoutError(f"{file} {wide}; save it as UTF-8")


def _jsonl(path: Path, file: str) -> Iterator[dict | RowQuarantined]:
    for item in text_lines(path, file):
        if isinstance(item, RowQuarantined):
            yield item
            continue
        number, line = item
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            record = json_line(line, file, number)
        except AnnotationError as error:
            yield RowQuarantined("malformed_record", str(error), file, where)
        else:
            yield located(record, file, where) if isinstance(record, dict) else RowQuarantined(
                "malformed_record", f"a JSON {type(record).__name__}, not an object", file, where)


def _json(path: Path, file: str, json_key: str, keyed_by: str = "") -> Iterator[dict | RowQuarantined]:
    """The records of a JSON file, read one at a time (``annotations.json_items``)."""
    for index, (key, record) in enumerate(json_items(path, file, json_key)):
        where = f"row {index + 1}"
        if isinstance(record, UnreadableRecord):  # stepped over: the next record is read
            yield RowQuarantined("malformed_record", record.problem, file, where)
            continue
        if isinstance(key, str):  # an object of records
            if not keyed_by:
                raise SourceLayoutError(f"{file} holds a JSON object, not the list of records the layout expects")
            if isinstance(record, dict):  # {id: record}: the id becomes the record's keyed_by field
                record = {**record, keyed_by: key}
        yield located(record, file, where) if isinstance(record, dict) else RowQuarantined(
            "malformed_record", f"a JSON {type(record).__name__}, not an object", file, where)


def _csv(path: Path, file: str, delimiter: str, columns: Sequence[str] = (),
         quoted: bool = True) -> Iterator[dict | RowQuarantined]:
    """Rows of a CSV/TSV (quoted fields may hold the delimiter and newlines; CRLF, LF or CR alone:
    ``annotations.csv_newline``), read by ``annotations.csv_rows``: a record it cannot read (a stray
    quote, a line over the bound, a carriage return alone inside an unquoted field) is one
    quarantined record naming its line, and the lines a stray quote took in are read as their own
    records. Bytes that are not UTF-8 are kept as surrogates while parsing, so one bad row is
    reported, not the file."""
    with open(path, "rb") as raw:
        check_utf8_file(raw, file)
        newline = csv_newline(raw.read(1 << 16))
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline=newline) as handle:
        rows = csv_rows(BoundedLines(handle, file), delimiter, quoted=quoted)
        if columns:
            names = list(columns)
        else:
            # blank lines before the header are no header (a file of whitespace has none: no records)
            header = next((row for row in rows if isinstance(row[1], UnreadableRecord)
                           or any(value.strip() for value in row[1])), None)
            if header is None:
                return
            if isinstance(header[1], UnreadableRecord):
                raise SourceLayoutError(f"{file}: its header row cannot be read ({header[1].problem})")
            names = [name.strip() for name in header[1]]
            # as ``CsvRecord.get`` finds them; unnamed columns (NIH's header ends in ",,,") are read by none
            spelled = [folded for name in names if (folded := " ".join(name.split()).casefold())]
            if len(set(spelled)) < len(spelled):
                raise SourceLayoutError(f"{file} names the column(s) {_repeated(spelled)} more than once (case and "
                                        "spacing aside): which one the layout reads is ambiguous")
        for number, (line, values) in enumerate(rows, start=1):
            where = f"row {number}"
            if isinstance(values, UnreadableRecord):
                yield RowQuarantined("malformed_record", f"{values.problem} ({where})", file, where)
            elif not values:  # a blank line is no record (a row of empty fields is one)
                continue
            elif any(_has_surrogates(value) for value in values):
                yield RowQuarantined("invalid_utf8", f"{file} {where} (line {line}): bytes that are not UTF-8",
                                     file, where)
            elif not columns and [value.strip() for value in values] == names:  # two exports joined end to end
                yield RowQuarantined("malformed_record", f"{file} {where} (line {line}): the header row again",
                                     file, where)
            elif len(values) > len(names) and any(value.strip() for value in values[len(names):]):
                yield RowQuarantined("malformed_record", f"{file} {where} (line {line}): {len(values)} fields, "
                                     f"{len(names)} columns: a field holds an unquoted delimiter", file, where)
            else:  # fewer fields than columns: the missing ones are empty (trailing empty fields left out)
                record = CsvRecord(zip(names, values))
                record.origin, record.columns = (file, where), names
                yield record


class CsvRecord(Record):
    """A CSV row whose ``get`` also finds a column named with other case or spacing ("Image index"
    for "Image Index"): exports of the same release differ in header spelling. ``columns`` are
    its file's header names (a short row lacks the last ones)."""

    columns: Sequence[str] = ()

    def get(self, key, default=None):
        if key in self:
            return self[key]
        wanted = " ".join(str(key).split()).casefold()
        for name, value in self.items():
            if " ".join(name.split()).casefold() == wanted:
                return value
        return default


def _has_surrogates(value: str) -> bool:
    return not value.isascii() and any("\udc80" <= char <= "\udcff" for char in value)


def _repeated(names: list[str]) -> str:
    return ", ".join(repr(name) for name in dict.fromkeys(name for name in names if names.count(name) > 1))
