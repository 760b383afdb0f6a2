"""What every adapter shares: options base class, record readers, image loading, row assembly.

Adapters yield sample-contract rows with ``id`` set to the dataset's local id and ``source`` /
``license`` left empty; ``registry.iter_source_rows`` stamps those from the registry entry. Every
path read from a data file goes through ``safe_join``. A missing image file gives an entry with
``bytes=None`` (curation quarantines it as ``image_missing``) rather than stopping the whole source.

One bad record never stops a source: adapters convert each record inside ``guarded``, which turns
any exception into a ``RowQuarantined`` naming the file and the record, and the record readers
yield one for a line that does not parse or text that is not UTF-8. What only the whole source can
cause (its record file missing, a JSON file that does not parse) raises ``SourceLayoutError``, which
the registry reports naming the dataset.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from medmo_pipeline.data.annotations import AnnotationError, BoundedLines, json_line, load_json
from medmo_pipeline.data.images import ImageError, dicom_entry, image_entry, png16_entry
from medmo_pipeline.data.outcomes import RowError, RowFiltered, RowQuarantined, is_outcome
from medmo_pipeline.safe_paths import UnsafePathError, check_relative, safe_join

IMAGE_TOKEN = re.compile(r"\s*<image>\s*")
DICOM_SUFFIXES = (".dcm", ".dicom")
COMPOUND_SUFFIXES = (".nii.gz",)
RecordFormat = Literal["auto", "json", "jsonl", "csv", "tsv", "parquet"]
MAX_COORDINATE = 1e6  # pixels: past this a coordinate is a broken value, not an image position
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # real reports and contexts exceed csv's 128 KiB default


class SourceLayoutError(RuntimeError):
    """The dataset's files do not have the layout the registry entry describes (a file missing, a
    JSON file that does not parse): no record of it can be read."""


class AdapterOptions(BaseModel):
    """Options every adapter accepts; adapters subclass it. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: Literal["train", "eval"] = "train"
    modality: str = "other"
    image_dir: str = ""  # prefix for image paths read from the data file, relative to the root
    image_extension: str = ""  # replaces the extension of image paths read from the data file
    limit: int | None = None  # read at most this many records (smoke runs)


class RecordOptions(AdapterOptions):
    """Adapters that read one record file (JSON, JSONL, CSV/TSV or Parquet)."""

    file: str
    format: RecordFormat = "auto"
    id_field: str = ""  # "" numbers the records in file order
    columns: list[str] = []  # CSV/TSV without a header row: the column names, in order (ROCO's captions.txt)


class ImageRecordOptions(RecordOptions):
    """Record files whose rows name their image(s) in ``image_field``."""

    image_field: str = "image"


def read_records(root: Path, options: RecordOptions) -> Iterator[dict]:
    """The records of ``options.file`` as the options describe them (format, header-less columns)."""
    return iter_records(root, options.file, options.format, columns=options.columns)


def iter_records(root: Path, file: str, fmt: RecordFormat = "auto", *, json_key: str = "",
                 columns: Sequence[str] = ()) -> Iterator[dict]:
    """Records of a JSON (list, or ``json_key`` inside an object), JSONL, CSV/TSV or Parquet file;
    a ``file`` with ``*`` reads every match in name order (hub datasets split into many files).

    Parquet is streamed batch by batch, JSONL and CSV/TSV line by line within ``annotations``'
    bounds (a line over them stops the file, naming it and the line); a JSON file is read whole up
    to ``annotations.MAX_WHOLE_FILE``. A JSONL line that does not parse, and a line or CSV row that
    is not UTF-8 or does not parse, come out as ``RowQuarantined`` in their place. CSV header names
    are stripped (a trailing space in a header is a common quirk) and a byte-order mark is dropped.
    """
    if "*" in file:
        base = Path(root).resolve()
        matches = sorted(base.glob(file))
        if not matches:
            raise SourceLayoutError(f"no file matches {file!r} under {base}")
        for match in matches:
            yield from iter_records(root, match.relative_to(base).as_posix(), fmt, json_key=json_key, columns=columns)
        return
    path = safe_join(root, file)
    if not path.is_file():
        raise SourceLayoutError(f"{file} is missing under {root}")
    kind = fmt if fmt != "auto" else path.suffix.lower().lstrip(".")
    if kind == "jsonl":
        yield from _jsonl(path, file)
    elif kind == "json":
        yield from _json(path, file, json_key)
    elif kind in ("csv", "tsv"):
        yield from _csv(path, file, "\t" if kind == "tsv" else ",", columns)
    elif kind == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
            yield from batch.to_pylist()
    else:
        raise SourceLayoutError(f"{file}: unknown record format {kind!r}; say format: json|jsonl|csv|tsv|parquet")


def _jsonl(path: Path, file: str) -> Iterator[dict | RowQuarantined]:
    with open(path, "rb") as handle:
        lines = BoundedLines(handle, file)
        for raw in lines:
            if not raw.strip():
                continue
            where = f"line {lines.number}"
            try:
                record = json_line(raw.decode("utf-8"), file, lines.number)
            except UnicodeDecodeError as error:
                yield RowQuarantined("invalid_utf8", f"{file} {where}: {error}", file, where)
            except AnnotationError as error:
                yield RowQuarantined("malformed_record", str(error), file, where)
            else:
                yield record if isinstance(record, dict) else RowQuarantined(
                    "malformed_record", f"a JSON {type(record).__name__}, not an object", file, where)


def _json(path: Path, file: str, json_key: str) -> Iterator[dict | RowQuarantined]:
    try:
        data = load_json(path, file)
    except AnnotationError as error:
        if not isinstance(error.__context__, UnicodeDecodeError):
            raise
        # within the size bound, but a stray byte: kept as a surrogate, curation quarantines its record
        data = json.loads(path.read_bytes().decode("utf-8-sig", errors="surrogateescape"))
    try:
        records = data[json_key] if json_key else data
    except (KeyError, TypeError) as error:
        raise SourceLayoutError(f"{file} is not the JSON list of records the layout expects ({error})") from None
    if not isinstance(records, list):
        raise SourceLayoutError(f"{file} holds a JSON {type(records).__name__}, not a list of records")
    for index, record in enumerate(records):
        yield record if isinstance(record, dict) else RowQuarantined(
            "malformed_record", f"a JSON {type(record).__name__}, not an object", file, f"record {index}")


def _csv(path: Path, file: str, delimiter: str, columns: Sequence[str] = ()) -> Iterator[dict | RowQuarantined]:
    """Rows of a CSV/TSV (quoted fields may hold the delimiter and newlines; CRLF or LF), its lines
    within ``annotations``' bounds. Bytes that are not UTF-8 are kept as surrogates while parsing,
    so one bad row is reported, not the file."""
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        reader = csv.reader(BoundedLines(handle, file), delimiter=delimiter)
        header = list(columns) or next(reader, None)
        if header is None:
            return
        names = [name.strip() for name in header]
        number = 0
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                number += 1
                yield RowQuarantined("malformed_record", f"{file} row {number}: CSV: {error}", file, f"row {number}")
                continue
            number += 1
            if not values:  # a blank line is no record (a row of empty fields is one)
                continue
            record = CsvRecord(zip(names, values, strict=False))
            if any(_has_surrogates(value) for value in values):
                yield RowQuarantined("invalid_utf8", f"{file} row {number}: bytes that are not UTF-8", file,
                                     f"row {number}")
            else:
                yield record


class CsvRecord(dict):
    """A CSV row whose ``get`` also finds a column named with other case or spacing ("Image index"
    for "Image Index"): exports of the same release differ in header spelling."""

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


def guarded(records: Iterable[tuple[int, Any]], file: str,
            convert: Callable[[int, Any], Iterable[dict | RowQuarantined | RowFiltered]]) -> Iterator:
    """The rows (and outcomes) of each ``(index, record)``, converting one record at a time: an
    exception while converting a record becomes a ``RowQuarantined`` naming ``file`` and the record,
    and the record gives no row. Outcomes from the reader pass through. Each row carries
    ``origin`` = (file, record) for curation's quarantine table."""
    for index, record in records:
        if is_outcome(record):
            yield record
            continue
        where = f"row {index + 1}" if isinstance(index, int) else str(index)
        try:
            produced = list(convert(index, record))
        except SourceLayoutError:
            raise
        except Exception as error:  # noqa: BLE001 - one record never stops the source: quarantine it, say why
            yield row_problem(error, file, where)
            continue
        for item in produced:
            if type(item) is dict:
                item["origin"] = (file, where)
            yield item


def row_problem(error: Exception, file: str, where: str) -> RowQuarantined:
    """The quarantine outcome of an exception raised while converting one record."""
    if isinstance(error, (RowError, ImageError)):
        reason, detail = error.reason, error.detail
    elif isinstance(error, UnsafePathError):
        reason, detail = "unsafe_path", str(error)
    elif isinstance(error, UnicodeError):
        reason, detail = "invalid_utf8", str(error)
    elif isinstance(error, OverflowError):
        reason, detail = "bad_number", str(error)
    elif isinstance(error, KeyError):
        reason, detail = "missing_field", f"no field {error}"
    elif type(error).__name__ == "UnidentifiedImageError":  # PIL's, an OSError: the bytes are no image
        reason, detail = "image_undecodable", str(error)
    elif isinstance(error, OSError):
        reason, detail = "unreadable_file", f"{type(error).__name__}: {error}"
    else:
        reason, detail = "malformed_record", f"{type(error).__name__}: {error}"
    return RowQuarantined(reason, f"{file} {where}: {detail}", file, where)


def number(value: Any, what: str) -> float:
    """A finite number from a record field (text or number); raises RowError('bad_number')."""
    if isinstance(value, bool):
        raise RowError("bad_number", f"{what} is a boolean")
    try:
        result = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise RowError("bad_number", f"{what} {value!r} is not a number") from None
    if not math.isfinite(result) or abs(result) > MAX_COORDINATE:
        raise RowError("bad_number", f"{what} {value!r} is not finite or past {MAX_COORDINATE:g}")
    return result


def coordinates(values: Iterable[Any], what: str = "box") -> tuple[float, ...]:
    """Box numbers, each finite and plausible; NaN/inf raise RowError('box_nan')."""
    out = []
    for value in values:
        try:
            out.append(number(value, what))
        except RowError:
            raise RowError("box_nan" if _non_finite(value) else "bad_number",
                           f"{what} coordinate {value!r} is not a finite pixel position") from None
    return tuple(out)


def _non_finite(value: Any) -> bool:
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        return False


def limited(records: Iterator[dict], options: AdapterOptions) -> Iterator[tuple[int, dict]]:
    """(index, record) pairs, stopping after ``options.limit`` records."""
    for index, record in enumerate(records):
        if options.limit is not None and index >= options.limit:
            return
        yield index, record


def load_image(root: Path, value: Any, options: AdapterOptions, *, png16_offset: int | None = None,
               window: tuple[float, float] | None = None) -> dict:
    """An image entry from a relative path (joined under ``options.image_dir``) or from an embedded
    ``{"bytes": ..., "path": ...}`` struct as Hugging Face Parquet datasets store images.

    DICOM files and (with ``png16_offset``) 16-bit PNGs are windowed to 8-bit PNG.
    """
    if isinstance(value, dict):
        return image_entry(value.get("bytes") or b"", value.get("path") or "")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise RowError("missing_field" if value in (None, "") else "malformed_record",
                       f"image path {value!r} is not a file name")
    value = value.strip()
    if options.image_extension:
        value = replace_extension(value, options.image_extension)
    check_relative(value)
    relative = f"{options.image_dir.rstrip('/')}/{value}" if options.image_dir else value
    path = safe_join(root, relative)
    if not path.is_file():
        return {"bytes": None, "path": relative, "width": 0, "height": 0, "sha256": ""}
    if path.suffix.lower() in DICOM_SUFFIXES:
        return dicom_entry(path, default_window=window, path=relative)
    if png16_offset is not None:
        return png16_entry(path.read_bytes(), offset=png16_offset, window=window, path=relative)
    return image_entry(path.read_bytes(), relative)


def replace_extension(value: str, extension: str) -> str:
    """``value`` with its extension replaced; ``.nii.gz`` counts as one extension (CT-RATE names its
    volumes ``train_1_a_1.nii.gz`` and the exported slice is ``train_1_a_1.png``)."""
    for compound in COMPOUND_SUFFIXES:
        if value.lower().endswith(compound):
            return value[: -len(compound)] + extension
    return str(Path(value).with_suffix(extension)) if Path(value).suffix else value


def as_list(value: Any, separator: str = "") -> list:
    """A field that may hold one value, a list, a separated string, or nothing -> a list."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    if separator and isinstance(value, str):
        return [part.strip() for part in value.split(separator) if part.strip()]
    return [value]


def strip_image_tokens(text: str) -> str:
    """Remove ``<image>`` placeholders: images are carried in the row, in order, not in the text."""
    return IMAGE_TOKEN.sub(" ", text).strip()


def text(value: Any) -> str:
    """A record field as stripped text ('' for missing/NaN)."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip()


def make_row(local_id: Any, task: str, options: AdapterOptions, messages: Sequence[dict], *,
             answer: str | None = None, images: Sequence[dict] = (), choices: Sequence[str] = (),
             boxes: Sequence[dict] = (), split: str | None = None) -> dict:
    """A sample-contract row; ``answer`` defaults to the last assistant message."""
    return {
        "id": str(local_id),
        "source": "",
        "split": split or options.split,
        "task": task,
        "modality": options.modality,
        "images": list(images),
        "messages": list(messages),
        "answer": messages[-1]["content"] if answer is None else answer,
        "choices": list(choices),
        "boxes": list(boxes),
        "license": "",
    }


def turn(question: str, reply: str) -> list[dict]:
    """One user question and its assistant reply."""
    return [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]


def rows_only(iter_outcomes: Callable[[Path, Any], Iterable]) -> Callable[[Path, Any], Iterator[dict]]:
    """An adapter's ``iter_samples``: the rows of its ``iter_outcomes``, without the outcomes of the
    records that gave none (readers that only want rows: the evaluation benchmarks, tests)."""

    def iter_samples(root: Path, options) -> Iterator[dict]:
        return (item for item in iter_outcomes(root, options) if type(item) is dict)

    iter_samples.__doc__ = f"The rows of ``iter_outcomes``. {iter_outcomes.__doc__ or ''}"
    return iter_samples
