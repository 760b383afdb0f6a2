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

import datetime
import decimal
import functools
import hashlib
import math
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from medmo_pipeline.data.annotations import (
    MAX_RECORD_FILE,
    AnnotationError,
    BoundedLines,
    UnreadableRecord,
    json_items,
    wide_text,
)
from medmo_pipeline.data.characters import STRIPPED, stripped
from medmo_pipeline.data.image_limits import check_image_bytes, limits_in_force, read_image_file
from medmo_pipeline.data.images import ImageError, content_format, dicom_entry, image_entry, png16_entry
from medmo_pipeline.data.outcomes import (
    RowError,
    RowFiltered,
    RowQuarantined,
    is_outcome,
    out_of_memory_detail,
)
from medmo_pipeline.safe_paths import FileTooLarge, UnsafePathError, check_relative, read_bounded, safe_join

from .records import (
    CsvRecord,
    RecordFormat,
    SourceLayoutError,
    check_utf8_file,
    iter_records,
    layout_path,
    record_format,
)

IMAGE_TOKEN = "<image>"
DICOM_SUFFIXES = (".dcm", ".dicom")
COMPOUND_SUFFIXES = (".nii.gz",)
MAX_COORDINATE = 1e6  # pixels: past this a coordinate is a broken value, not an image position
OUTCOMES_DOC = "Rows, and the outcome (quarantined / filtered) of each record that gives none."


class AdapterOptions(BaseModel):
    """Options every adapter accepts; adapters subclass it. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: Literal["train", "eval"] = "train"
    modality: str = "other"
    image_dir: str = ""  # prefix for image paths read from the data file, relative to the root
    # folders an image not under image_dir is looked for in next, in order (ChestX-ray14 on Kaggle,
    # nih-chest-xrays/data: images_001/images ... images_012/images instead of one images/)
    other_image_dirs: list[str] = []
    image_extension: str = ""  # replaces the extension of image paths read from the data file
    # a leading folder a release writes before its image paths, relative to where it was downloaded
    # (MedSG-188K: "MedSG-Bench/MedSG-Train/Task1/x.png" inside the MedSG-Bench snapshot); removed
    image_strip_prefix: str = ""
    limit: int | None = None  # read at most this many records (smoke runs)
    # A held-out share the release does not ship (MedTrinity, Bacteria): 1 record in holdout_one_in,
    # chosen by a stable hash of its id; "heldout" reads that share (the benchmark), "rest" the others
    # (the training source). The records of the other part are filtered, reason "subset".
    holdout_one_in: int = 0
    holdout_part: Literal["heldout", "rest"] = "rest"


class RecordOptions(AdapterOptions):
    """Adapters that read one record file (JSON, JSONL, CSV/TSV or Parquet)."""

    file: str
    format: RecordFormat = "auto"
    id_field: str = ""  # "" numbers the records in file order
    columns: list[str] = []  # CSV/TSV without a header row: the column names, in order (ROCO's captions.txt)
    quoted_fields: bool = True  # False: '"' is a plain character (ROCO's captions.txt quotes inside captions)
    # read only the records whose field holds one of the values (CheXpert Plus: {split: [valid]});
    # the others are filtered, reason "subset"
    keep_where: dict[str, list[str]] = {}
    # read only the records whose id_field value is a key (JSON object) or a line of this file
    # (PubMedQA's data/test_ground_truth.json); the others are filtered, reason "subset"
    keep_ids_file: str = ""
    records_keyed_by: str = ""  # a JSON object of records by id (PubMedQA's ori_pqal.json): the id goes here

    def named_columns(self) -> list[str]:
        """The columns a file with a header (CSV, TSV, Parquet) must have for its rows to be made as
        the layout says: without one, every record would be lost or filtered for the same reason.
        Each adapter adds the fields it reads; a field a layout may lack is not named here."""
        return [self.id_field, *self.keep_where]


class ImageRecordOptions(RecordOptions):
    """Record files whose rows name their image(s) in ``image_field``."""

    image_field: str = "image"
    image_suffix: str = ""  # appended to image names stored without one (VQA-Med "synpic41148", ROCO ids)


def read_records(root: Path, options: RecordOptions) -> Iterator[dict | RowQuarantined | RowFiltered]:
    """The records of ``options.file`` as the options describe them (format, header-less columns,
    ``keep_where``)."""
    records = iter_records(root, options.file, options.format, columns=options.columns,
                           quoted=options.quoted_fields, keyed_by=options.records_keyed_by)
    records = with_columns(records, [name for name in options.named_columns() if name], options.file,
                           options.format)
    keep = {options.id_field: _listed_ids(root, options.keep_ids_file)} if options.keep_ids_file else {}
    found: set[str] = set()  # the listed ids a record has
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            yield record
            continue
        try:
            outside = [(field, value) for field, values in {**options.keep_where, **keep}.items()
                       if (value := text(record.get(field))) not in values]
            key = _record_key(record, index, options)
        except RowError as error:  # a field the selection reads is no text: this record's problem
            yield row_problem(error, *origin_of(record, options.file, index))
            continue
        if outside:
            yield RowFiltered("subset", f"{outside[0][0]}={outside[0][1]!r}")
            continue
        if keep:
            found.add(key)
        if other_part(key, options):
            yield RowFiltered("subset", f"{options.id_field or 'record'} {key!r} is not in the {options.holdout_part} part")
        else:
            yield record
    for missing in sorted(keep.get(options.id_field, set()) - found) if options.limit is None else ():
        yield RowQuarantined("missing_join_key", f"{options.keep_ids_file} lists {options.id_field} {missing!r}, "
                             f"which no record of {options.file} has", options.keep_ids_file, missing)


_ABSENT = object()


def with_columns(records: Iterator, named: list[str], file: str, fmt: RecordFormat = "auto") -> Iterator:
    """``records``, once the first one of each file shows the columns ``named`` (every record of a
    file with a header has the same; found as the adapters find them, a CSV's in any case and
    spacing): a column missing stops the source, naming it, the file and the columns there are.
    Each file of a pattern is checked (a split whose later file has another schema cost its every
    row as a missing field). Records of a file without a header (JSON, JSONL: each may lack a
    field) pass unchecked."""
    kind = record_format(file, fmt)
    if kind not in ("csv", "tsv", "parquet"):
        yield from records
        return
    wanted, checked = named, None
    for record in records:
        if isinstance(record, dict) and (origin := getattr(record, "origin", ("", ""))[0]) != checked:
            named, checked = wanted, origin  # a new file of the pattern: its header is checked too
            file = origin or file
        if named and isinstance(record, dict):
            header = getattr(record, "columns", None)  # a CSV row's file header: a short row lacks columns
            shown = CsvRecord.fromkeys(header) if header else record
            if missing := [name for name in dict.fromkeys(named) if shown.get(name, _ABSENT) is _ABSENT]:
                present = ", ".join(map(repr, list(shown)[:40]))
                # one column whose name holds another separator: a file separated by ';' (a European
                # spreadsheet's CSV) or tabs, read as one column of whole lines
                expected = "\t" if kind == "tsv" else ","
                other = [mark for mark in (";", "\t", "|", ",") if kind != "parquet" and len(shown) == 1
                         and mark != expected and mark in str(next(iter(shown)))]
                hint = f"; the file seems separated by {other[0]!r}, not {expected!r}: save it separated by " \
                    f"{expected!r}" if other else ""
                raise SourceLayoutError(
                    f"{file} has no column {', '.join(map(repr, missing))} that the layout reads (its columns: "
                    f"{present}){hint}; it may come from another release than the one the layout describes")
            named = []
        yield record


def _record_key(record: dict, index: int, options: RecordOptions) -> str:
    return text(record.get(options.id_field)) if options.id_field else str(index)


def other_part(key: str, options: AdapterOptions) -> bool:
    """Whether the record ``key`` belongs to the other part of ``options``' held-out split (never
    without one). The split is a hash of the key: the same on every run and machine."""
    if not options.holdout_one_in:
        return False
    held_out = int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()[:8], "big") \
        % options.holdout_one_in == 0
    return held_out != (options.holdout_part == "heldout")


def record_file_text(path: Path, what: str) -> str:
    """A file holding one record's text (a report, a caption sidecar, a YOLO label file, one image's
    box JSON), read whole: FileTooLarge (the record's ``file_too_large``) over ``MAX_RECORD_FILE``
    bytes, before reading; UnicodeDecodeError (its ``invalid_utf8``) when it is not UTF-8, RowError
    (``invalid_utf8`` too) saying so when it is UTF-16 or UTF-32 (``annotations.wide_text``)."""
    data = read_bounded(path, MAX_RECORD_FILE, what)
    if wide := wide_text(data[:4]):  # the codec's "can't decode byte 0xff in position 0" says not why
        raise RowError("invalid_utf8", f"{what} {wide}; save it as UTF-8")
    return data.decode("utf-8-sig")  # a byte-order mark is no text


def _readable(item: Any) -> Any:
    """An item of a list file: one that cannot be read makes the whole list unknown."""
    if isinstance(item, UnreadableRecord):
        raise AnnotationError(item.problem)
    return item


def _listed_ids(root: Path, file: str) -> set[str]:
    """The ids a list file names: the keys of a JSON object, the items of a JSON list, or its lines
    (read a record or a line at a time, within ``annotations``' bounds)."""
    path = layout_path(root, file)
    with open(path, "rb") as handle:
        start = handle.read(64 << 10).lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start in (b"[", b"{"):
        listed = (key if isinstance(key, str) else _readable(item) for key, item in json_items(path, file))
    else:
        with open(path, "rb") as raw:  # a UTF-16 list would match no id: every record filtered
            check_utf8_file(raw, file)
        with open(path, encoding="utf-8-sig", errors="surrogateescape") as handle:
            listed = [line.rstrip("\r\n") for line in BoundedLines(handle, file)]
    try:
        return {text(item) for item in listed} - {""}
    except RowError as error:
        raise SourceLayoutError(f"{file}: an id it lists is not one: {error.detail}") from None


def each_record(records: Iterator, options: AdapterOptions, file: str,
                convert: Callable[[int, Any], Iterable]) -> Iterator:
    """``convert`` applied to each record (within ``options.limit``), one bad record quarantined
    (``guarded``): the loop every record-file adapter runs."""
    return guarded(limited(records, options), file, convert)


def each_file_record(root: Path, options: RecordOptions, convert: Callable[[int, Any], Iterable]) -> Iterator:
    """``each_record`` over the records of ``options.file``."""
    return each_record(read_records(root, options), options, options.file, convert)


def record_images(root: Path, record: dict, options: ImageRecordOptions) -> list[dict]:
    """The image entries a record names in ``options.image_field`` (one name or a list), in order."""
    suffix = options.image_suffix
    return [load_image(root, f"{value.strip()}{suffix}" if suffix and isinstance(value, str) else value, options)
            for value in as_list(record.get(options.image_field))]


def guarded(records: Iterable[tuple[int, Any]], default_file: str,
            convert: Callable[[int, Any], Iterable[dict | RowQuarantined | RowFiltered]], *,
            collecting: bool = False) -> Iterator:
    """The rows (and outcomes) of each ``(index, record)``, converting one record at a time: an
    exception while converting a record becomes a ``RowQuarantined`` naming its file and place (a
    ``records.Record``'s ``origin``; else ``default_file`` and the record's number),
    and the record gives no row; a record converted to nothing at all is a ``RowFiltered`` ("no_row"),
    unless ``collecting`` (``convert`` gathers records for a later pass that makes the rows).
    Outcomes from the reader pass through. Each row carries
    ``origin`` = (file, record) for curation's quarantine table."""
    for index, record in records:
        if is_outcome(record):
            yield record
            continue
        file, where = origin_of(record, default_file, index)
        try:
            produced = list(convert(index, record))
        except SourceLayoutError:
            raise
        except Exception as error:  # noqa: BLE001 - one record never stops the source: quarantine it, say why
            yield row_problem(error, file, where)
            continue
        if not produced and not collecting:  # a record that gives nothing is counted, never lost without a word
            yield RowFiltered("no_row", f"{file} {where}: nothing to train on in this record")
            continue
        for item in produced:
            if type(item) is dict:
                item["origin"] = (file, where)
            yield item


def origin_of(record: Any, file: str, index: int | str) -> tuple[str, str]:
    """Where ``record`` was read: its ``records.Record`` origin, else ``file`` and the record's
    number (or name) there."""
    return getattr(record, "origin", None) or (file, f"row {index + 1}" if isinstance(index, int) else str(index))


def row_problem(error: Exception, file: str, where: str) -> RowQuarantined:
    """The quarantine outcome of an exception raised while converting one record."""
    if isinstance(error, (RowError, ImageError)):
        reason, detail = error.reason, error.detail
    elif isinstance(error, UnsafePathError):
        reason, detail = "unsafe_path", str(error)
    elif isinstance(error, FileTooLarge):
        reason, detail = "file_too_large", str(error)
    elif isinstance(error, UnicodeError):
        reason, detail = "invalid_utf8", str(error)
    elif isinstance(error, OverflowError):
        reason, detail = "bad_number", str(error)
    elif isinstance(error, MemoryError):
        reason, detail = "out_of_memory", out_of_memory_detail(error)
    elif isinstance(error, KeyError):
        reason, detail = "missing_field", f"no field {error}"
    elif type(error).__name__ == "UnidentifiedImageError":  # PIL's, an OSError: the bytes are no image
        reason, detail = "image_undecodable", str(error)
    elif isinstance(error, OSError):
        reason, detail = "unreadable_file", f"{type(error).__name__}: {error}"
    else:
        reason, detail = "malformed_record", f"{type(error).__name__}: {error}"
    return RowQuarantined(reason, f"{file} {where}: {detail}", file, where, path=getattr(error, "path", ""))


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
    ``{"bytes": ..., "path": ...}`` struct as Hugging Face Parquet datasets store images (one without
    bytes names a file beside the records, read as a path).

    DICOM (told by its content, whatever the file's name) and, with ``png16_offset``, 16-bit PNGs
    are windowed to 8-bit PNG.
    """
    if isinstance(value, dict) and not value.get("bytes") and isinstance(value.get("path"), str) \
            and value["path"].strip():
        value = value["path"]  # Hugging Face's Image feature with the file beside the records: read as a path
    if isinstance(value, dict):
        data, name = value.get("bytes") or b"", value.get("path") or ""
        if isinstance(data, (bytes, bytearray)):  # held to the bound a file on disk gets, before any decoding
            check_image_bytes(len(data), limits_in_force(), f"embedded image {name}".strip())
            if content_format(data[:132]) == "DICOM":  # decided by content, whatever the name says
                return dicom_entry(bytes(data), default_window=window, path=name)
        return image_entry(data, name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise RowError("missing_field" if value in (None, "") else "malformed_record",
                       f"image path {value!r} is not a file name")
    value = value.strip()
    if options.image_strip_prefix and value.startswith(options.image_strip_prefix):
        value = value[len(options.image_strip_prefix):]
    if options.image_extension:
        value = replace_extension(value, options.image_extension)
    check_relative(value)
    found = _image_file(root, value, [options.image_dir, *options.other_image_dirs])
    if found is None:  # named by where the layout looks first
        relative = f"{options.image_dir.rstrip('/')}/{value}" if options.image_dir else value
        return {"bytes": None, "path": relative, "width": 0, "height": 0, "sha256": ""}
    relative, path, info = found
    if not stat.S_ISREG(info.st_mode):  # never opened: it was image_missing, as if no file were there
        raise RowError("unreadable_file", f"image path {shown(relative)} is not a regular file "
                                          "(a folder, a pipe or a device)")
    data = read_image_file(path, relative)
    # Decided by content: DICOM under any name, and a .dcm that holds no image format's bytes (a
    # data set without the Part 10 preamble); a .dcm holding a PNG or JPEG is that image
    fmt = content_format(data[:132])
    if fmt == "DICOM" or (path.suffix.lower() in DICOM_SUFFIXES and not fmt):
        del data  # read again there, and let go of once its frame is out: one copy of a large file held, not two
        return dicom_entry(path, default_window=window, path=relative)
    if png16_offset is not None:
        return png16_entry(data, offset=png16_offset, window=window, path=relative)
    return image_entry(data, relative)


def _image_file(root: Path, value: str, folders: list[str]) -> tuple[str, Path, os.stat_result] | None:
    """(relative path, path, stat) of the image ``value`` in the first of ``folders`` (relative to
    ``root``, "" the root itself) that holds it; None when none does."""
    for folder in folders:
        relative = f"{folder.rstrip('/')}/{value}" if folder else value
        path = safe_join(root, relative)
        try:
            return relative, path, path.stat()
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as error:  # a name too long (whose message repeated all 5,000 characters), a loop
            raise RowError("unreadable_file", f"image path {shown(relative)}: {error.strerror}") from None
    return None


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
        return [part for piece in value.split(separator) if (part := stripped(piece))]
    return [value]


def strip_image_tokens(text: str) -> str:
    r"""Remove ``<image>`` placeholders: images are carried in the row, in order, not in the text.
    Each placeholder and the whitespace around it becomes one space, by splitting: a pattern with
    leading ``\s*`` retries from every character of a long whitespace run (40,000 spaces: 2 s)."""
    if IMAGE_TOKEN not in text:
        return stripped(text)
    pieces = text.split(IMAGE_TOKEN)
    inner = [stripped(piece) for piece in pieces[1:-1]]
    return stripped(" ".join([pieces[0].rstrip(STRIPPED), *inner, pieces[-1].lstrip(STRIPPED)]))


def text(value: Any) -> str:
    """A record field as stripped text ('' for missing/NaN; a number as written: a whole float as
    the integer it is, "1" not "1.0", as a numeric Parquet or JSON answer column means it, else the
    shortest spelling, "0.5"); a list, an object or bytes where text belongs raise
    RowError('malformed_record'): their Python spelling ("{'x': 1}") is no text to train on.
    Infinity raises RowError('bad_number'). Stripped as curation strips (``characters.stripped``): a
    control code at its edge stays, for curation to quarantine.

    >>> text(1.0), text(-0.0), text(0.5), text(2.0**60), text(float("nan")), text(" 1.0 ")
    ('1', '0', '0.5', '1.152921504606847e+18', '', '1.0')
    """
    if isinstance(value, np.floating) and not isinstance(value, float):
        # numpy's float32 / float16 (an array's element): read as the float it holds, so 1.0 is "1",
        # NaN "" and Infinity refused as for a Python float ("1.0", "nan" and "inf" were kept); a
        # fraction keeps numpy's shortest spelling for its precision (float32 0.1 is "0.1")
        whole = float(value)
        if math.isfinite(whole) and not whole.is_integer():
            return str(value)
        value = whole
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, (dict, list, tuple, set, bytes, bytearray, bool)):  # bool: JSON's true is no "True"
        raise RowError("malformed_record", f"a {type(value).__name__} where text belongs: {shown(value)}")
    if isinstance(value, (datetime.date, datetime.time, datetime.timedelta, decimal.Decimal)):
        # a Parquet timestamp or decimal column where the layout reads text: "2020-01-01 00:00:00" or
        # "1.50" was kept as the question or answer
        raise RowError("malformed_record", f"a {type(value).__name__} where text belongs: {shown(value)}")
    if isinstance(value, float) and not math.isfinite(value):  # 1e999 or Infinity in a JSON file: no "inf"
        raise RowError("bad_number", f"{value} where text belongs")
    if isinstance(value, float):
        # 1.0 read as "1.0" normalised to "1 0" and never matched a model's "1"; past 2**53 a float holds
        # no exact whole number, so it keeps its shortest spelling ("1e+20")
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(float(value))
    return stripped(str(value))


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for an error message."""
    spelled = repr(value)
    return spelled if len(spelled) <= limit else f"{spelled[:limit - 3]}..."


def make_row(local_id: Any, task: str, options: AdapterOptions, messages: Sequence[dict], *,
             answer: str | None = None, images: Sequence[dict] = (), choices: Sequence[str] = (),
             boxes: Sequence[dict] = (), split: str | None = None) -> dict:
    """A sample-contract row; ``answer`` defaults to the last assistant message. A record without
    an id (None, NaN, blank) raises RowError('missing_field'), one of another kind (a list, an
    object) 'malformed_record'."""
    if not (identifier := text(local_id)):
        raise RowError("missing_field", "the record has no id")
    return {
        "id": identifier,
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


def validated(model: type[AdapterOptions]) -> Callable:
    """Decorator for an adapter's ``iter_outcomes(root, options)``: ``options`` (a dict or a model)
    is validated into ``model`` when iteration starts, as the function's first step would; the
    function without a docstring of its own gets the one every adapter's ``iter_outcomes`` has."""

    def decorate(outcomes: Callable[[Path, Any], Iterable]) -> Callable[[Path, Any], Iterator]:
        @functools.wraps(outcomes)
        def iter_outcomes(root: Path, options) -> Iterator:
            yield from outcomes(root, model.model_validate(options))

        iter_outcomes.__doc__ = outcomes.__doc__ or OUTCOMES_DOC
        return iter_outcomes

    return decorate


def rows_only(iter_outcomes: Callable[[Path, Any], Iterable]) -> Callable[[Path, Any], Iterator[dict]]:
    """An adapter's ``iter_samples``: the rows of its ``iter_outcomes``, without the outcomes of the
    records that gave none (readers that only want rows: the evaluation benchmarks, tests)."""

    def iter_samples(root: Path, options) -> Iterator[dict]:
        return (item for item in iter_outcomes(root, options) if type(item) is dict)

    iter_samples.__doc__ = f"The rows of ``iter_outcomes``. {iter_outcomes.__doc__ or ''}"
    return iter_samples
