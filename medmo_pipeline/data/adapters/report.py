"""Radiology reports: findings + impression over one or more images of a study.

Two layouts:
- ``records``: one record per study with findings/impression fields (CheXpert Plus:
  ``section_findings, section_impression, path_to_image``), or a whole ``text_field`` split at its
  headings by ``report_sections.report_sections``; images either in the record or joined from a second table by key
  (IU-Xray: ``indiana_reports.csv`` + ``indiana_projections.csv`` on ``uid``).
- ``study_folders``: MIMIC-CXR's ``files/pXX/pXXXXXXXX/sXXXXXXXX.txt`` beside a folder
  ``sXXXXXXXX/`` of that study's images (DICOM or JPG). With ``split_file`` (MIMIC-CXR-JPG's
  official ``mimic-cxr-2.0.0-split.csv.gz``: one row per image, ``dicom_id, study_id, subject_id,
  split`` with split ``train`` / ``validate`` / ``test``), only the studies it puts in
  ``split_names`` are read; every other study is filtered (``subset``), the test split (the
  ``mimic_cxr`` benchmark's studies) among them. ``split_table`` reads that table for the
  benchmark's ``mimic_cxr_split`` reader too.

The reply labels its text by the section(s) it came from (``ReportSections.reply``): "Findings:",
"Findings and impression:" for a combined section, "Report:" for unheaded text, then "Impression:"
and "Conclusion:".
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import Field

from medmo_pipeline.data.outcomes import RowError, RowFiltered, RowQuarantined
from medmo_pipeline.safe_paths import safe_glob, safe_join

from .common import (
    ImageRecordOptions,
    as_list,
    each_record,
    load_image,
    make_row,
    origin_of,
    read_records,
    record_file_text,
    row_problem,
    rows_only,
    shown,
    text,
    turn,
    with_columns,
)
from .records import SourceLayoutError, iter_records, layout_path
from .report_sections import ReportSections, report_sections, split_sections  # noqa: F401 - re-exported

QUESTION = "Write the findings and impression of this radiology study."
IMAGE_SUFFIXES = (".dcm", ".jpg", ".jpeg", ".png")
SPLIT_NAMES = ("train", "validate", "test")  # the values of MIMIC-CXR-JPG's split table
MAX_STUDY_DIGITS = 18  # a MIMIC study id has 8 ("50414267"); 18 still fits an int64


class Options(ImageRecordOptions):
    layout: Literal["records", "study_folders"] = "records"
    file: str = ""
    image_separator: str = ""
    findings_field: str = "findings"
    impression_field: str = "impression"
    text_field: str = ""  # a whole report split at its headings (when the two fields are empty or absent)
    images_file: str = ""  # a second table of (key, image) rows
    join_key: str = ""
    reports_glob: str = "**/s*.txt"
    image_suffixes: list[str] = list(IMAGE_SUFFIXES)  # study_folders: which image files of a study to read
    default_window: tuple[float, float] | None = None
    # study_folders: the official split table (MIMIC-CXR-JPG's mimic-cxr-2.0.0-split.csv.gz, or the same
    # table unzipped beside it); only the studies it puts in split_names are read, the others (and
    # studies it does not list) filtered, reason "subset". Required when named: a missing table stops
    # the source (it would train on the test split).
    split_file: str = ""
    split_names: list[Literal["train", "validate", "test"]] = Field(default_factory=lambda: ["train"])

    def named_columns(self) -> list[str]:  # the sections' fields may be absent (``text_field`` then)
        return [*super().named_columns(), self.join_key, "" if self.images_file else self.image_field]


def iter_outcomes(root: Path, options: Options | dict) -> Iterator:
    """Rows, and the outcome (quarantined / filtered) of each record that gives none."""
    options = Options.model_validate(options)

    def convert(index, study: Study) -> list[dict]:
        local_id, sections, image_values = study.local_id, study.sections, study.images
        if isinstance(sections, Path):  # read here, after safe_join: a report linked out is quarantined
            sections = _file_sections(safe_join(root, sections.relative_to(Path(root).resolve())))
        if isinstance(image_values, Path):  # listed here, after safe_join: a study folder linked out is
            image_values = _study_images(root, image_values, options)  # quarantined, never listed
        images = [load_image(root, value, options, window=options.default_window) for value in image_values]
        return [make_row(local_id if local_id not in (None, "") else index, "report", options,
                         turn(QUESTION, sections.reply()), images=images)]

    if options.layout == "study_folders":
        studies = _study_folders(root, options)
        if options.split_file:
            studies = _in_split(root, options, studies)
        yield from each_record(studies, options, options.reports_glob, convert)
    else:
        yield from each_record(_records(root, options), options, options.file, convert)


class Study(NamedTuple):
    """One study's id, its report (sections, or the report file still to read) and image values,
    and where it was read (``records.Record.origin``)."""

    local_id: Any
    sections: ReportSections | Path
    images: list
    origin: tuple[str, str] | None = None


def _records(root: Path, options: Options) -> Iterator[Study | RowQuarantined]:
    """(local id, sections, image values) per record; the images of a joined table by key."""
    joined: dict[str, list] = {}
    if options.images_file:
        image_rows = with_columns(iter_records(root, options.images_file),
                                  [options.join_key, options.image_field], options.images_file)
        for record in image_rows:
            if not isinstance(record, dict):  # a broken row of the image table: its study is read without
                yield record  # that image, and this says so
                continue
            try:
                if not (key := text(record.get(options.join_key))):  # never joined to another blank key
                    raise RowError("missing_field", f"no {options.join_key}: the image belongs to no study")
                joined.setdefault(key, []).append(record.get(options.image_field))
            except RowError as error:
                yield row_problem(error, *origin_of(record, options.images_file, 0))
        if not joined:
            raise SourceLayoutError(f"{options.images_file} holds no image rows: no study of {options.file} "
                                    "would have its images")
    for index, record in enumerate(read_records(root, options)):
        if not isinstance(record, dict):
            yield record
            continue
        try:
            key, sections = text(record.get(options.join_key or options.id_field)), _field_sections(record, options)
            if not key and (options.join_key or options.id_field):  # never numbered by its place in the file
                raise RowError("missing_field", f"no {options.join_key or options.id_field}: the record has no id")
        except RowError as error:
            yield row_problem(error, *origin_of(record, options.file, index))
            continue
        if options.images_file and key not in joined:
            file, where = origin_of(record, options.file, index)
            yield RowQuarantined("missing_join_key", f"{options.join_key} {key!r} has no row in {options.images_file}",
                                 file, where, key)
            continue
        images = joined[key] if options.images_file else as_list(record.get(options.image_field),
                                                                 options.image_separator)
        yield Study(record.get(options.id_field) if options.id_field else key, sections, images,
                    getattr(record, "origin", None))



def _study_folders(root: Path, options: Options) -> Iterator[Study]:
    """MIMIC-CXR: each report ``sXXXXXXXX.txt`` with the images of the folder ``sXXXXXXXX/`` beside it
    (DICOM in mimic-cxr, JPG in mimic-cxr-jpg, whose reports are the same files)."""
    base = layout_path(root, options.image_dir, folder=True)
    for report in safe_glob(base, options.reports_glob, refuse_outside=False, root=root):
        name = report.relative_to(base)
        origin = ((Path(options.image_dir) / name).as_posix(), "report")
        yield Study(name.with_suffix("").as_posix(), report, name.with_suffix(""), origin)


def _in_split(root: Path, options: Options, studies: Iterator[Study]) -> Iterator[Study | RowFiltered | RowQuarantined]:
    """``studies`` whose id the split table puts in ``options.split_names``; each other study one
    ``RowFiltered("subset")`` saying which split holds it, or that the table does not list it (the
    reports of mimic-cxr hold 227,835 studies, MIMIC-CXR-JPG's table 227,827). The table is read
    first, a row at a time; its malformed rows come out quarantined (``split_studies``)."""
    file, path = _split_path(root, options.split_file)
    table = yield from split_studies(path, file, options.split_names)
    for study in studies:
        name = Path(study.local_id).name
        key = int(name[1:]) if name[:1] == "s" and name[1:].isascii() and name[1:].isdigit() else None
        split = table.get(key) if key is not None else None
        if split in options.split_names:
            yield study
        elif split is None:
            yield RowFiltered("subset", f"study {name} is not listed in {file} (its split is unknown)")
        else:
            yield RowFiltered("subset", f"study {name} is in the {split} split of {file}")


def _split_path(root: Path, file: str) -> tuple[str, Path]:
    """(the name, the path) of the split table ``file``, or of the same table unzipped beside it
    (``x.csv`` for ``x.csv.gz``); SourceLayoutError naming it when neither is there."""
    for name in (file, file.removesuffix(".gz")) if file.endswith(".gz") else (file,):
        path = safe_join(root, name)
        if path.is_file():
            return name, path
        if os.path.lexists(path):  # a folder, a pipe or a device of that name: not "missing"
            raise SourceLayoutError(f"the split table {name} under {root} is not a regular file (a folder, a "
                                    "pipe or a device): put the table itself there")
    raise SourceLayoutError(
        f"the split table {file} is missing under {root}: without it the studies of the test split (those "
        "the mimic_cxr benchmark evaluates) cannot be told from the training studies, so none is read. "
        "It ships with MIMIC-CXR-JPG (physionet.org/content/mimic-cxr-jpg/2.1.0, for the DICOM release too): "
        "download it into the dataset's folder, beside files/")


def split_studies(path: Path, file: str, kept: Iterable[str]) -> Generator[RowQuarantined, None, dict[int, str]]:
    """Yield a ``RowQuarantined`` per malformed row of the split table at ``path`` (named ``file``):
    ``missing_field`` for a blank study_id or split, ``malformed_record`` for a study_id that is not
    a number or a split none of train / validate / test; return {study id: split} over the other
    rows. A study the rows put in several splits takes one outside ``kept`` (never trained on if
    any of its images is held out). Memory holds one entry per study (the published table: 377,110
    images of 227,827 studies); a table without the columns, or without rows, is SourceLayoutError."""
    kept, studies, first = set(kept), {}, True
    interned = {name: name for name in SPLIT_NAMES}  # one string per split, not one per study
    for line, record in numbered_split_table(path):
        if first:
            if missing := [name for name in ("study_id", "split") if name not in record]:
                raise SourceLayoutError(f"{file} has no column {', '.join(map(repr, missing))} (its columns: "
                                        f"{', '.join(map(repr, list(record)[:10]))}); the published split table "
                                        "has dicom_id, study_id, subject_id, split")
            first = False
        study, split = text(record.get("study_id")), text(record.get("split"))
        if problem := _split_row_problem(study, split):
            yield RowQuarantined(*problem, file, f"line {line}", text(record.get("dicom_id"))[:80])
            continue
        key, split = int(study), interned[split]
        if studies.get(key, split) in kept or split not in kept:  # a held-out split wins over a kept one
            studies[key] = split
    if first:
        raise SourceLayoutError(f"{file} lists no image (the published split table lists 377,110)")
    return studies


def _split_row_problem(study: str, split: str) -> tuple[str, str] | None:
    """(reason, detail) of a split-table row that assigns no study to a split, None for a good one."""
    if not study:
        return "missing_field", "no study_id: the image belongs to no study"
    if not (study.isascii() and study.isdigit()) or len(study) > MAX_STUDY_DIGITS:
        # a number of more than 4,300 digits was a ValueError out of int() that stopped the source
        return "malformed_record", (f"study_id {shown(study, 40)} is not a MIMIC study id (a number of at most "
                                    f"{MAX_STUDY_DIGITS} digits)")
    if not split:
        return "missing_field", f"no split for study s{study}"
    if split not in SPLIT_NAMES:
        return "malformed_record", f"split {split[:20]!r} of study s{study} is none of {', '.join(SPLIT_NAMES)}"
    return None


# The published split table is 15 MB once decompressed, 377,111 lines; a gzip member inflating to far
# more is no such table (a megabyte of gzip holds a gigabyte of empty lines, each a step of the
# reader: 0.7 us a line, 12 minutes for the gigabyte)
MAX_SPLIT_TABLE_BYTES = 256 << 20
MAX_SPLIT_TABLE_LINES = 4_000_000


def split_table(path: Path) -> Iterator[dict]:
    """The rows of MIMIC-CXR-JPG's split table (``numbered_split_table``) as dicts."""
    for _, record in numbered_split_table(path):
        yield record


def numbered_split_table(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, row) of the split table at ``path`` (gzipped or not), line by line within
    ``annotations``' bounds (a gzip member of one endless line is refused, naming the file and
    line), at most ``MAX_SPLIT_TABLE_LINES`` lines and ``MAX_SPLIT_TABLE_BYTES`` bytes of text; a
    damaged gzip stream names the file, and so does a row that cannot be read (a stray quote: every
    row of a split table matters). Blank lines are no rows."""
    import gzip
    import io
    import zlib

    from medmo_pipeline.data.annotations import AnnotationError, BoundedLines, csv_newline, csv_records

    class Capped(io.RawIOBase):
        """The file's bytes, counted as they are read: over either bound, the table is refused."""

        def __init__(self, raw):
            self.raw, self.read_so_far, self.lines = raw, 0, 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            count = self.raw.readinto(buffer)
            self.read_so_far += count
            self.lines += bytes(memoryview(buffer)[:count]).count(b"\n")
            if self.read_so_far > MAX_SPLIT_TABLE_BYTES or self.lines > MAX_SPLIT_TABLE_LINES:
                raise AnnotationError(f"{path.name}: more than {MAX_SPLIT_TABLE_LINES} lines or "
                                      f"{MAX_SPLIT_TABLE_BYTES} bytes of text (the published split table holds "
                                      "377,111 lines, 15 MB)")
            return count

    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as raw:
            buffered = io.BufferedReader(Capped(raw))
            handle = io.TextIOWrapper(buffered, encoding="utf-8", newline=csv_newline(buffered.peek(1 << 16)))
            yield from csv_records(BoundedLines(handle, path.name), ",")
    except (OSError, EOFError, zlib.error) as error:
        raise AnnotationError(f"{path.name}: not a readable split table ({type(error).__name__}: {error})") from None


def _study_images(root: Path, study: Path, options: Options) -> list[str]:
    """The image names (under ``image_dir``) in the folder ``study`` (relative to ``image_dir``), in
    name order; none without the folder. A folder linked out of the root is UnsafePathError before
    it is listed: ``study.glob`` listed it, the images then quarantined one by one."""
    folder = safe_join(root, (Path(options.image_dir) / study).as_posix())
    if not folder.is_dir():
        return []
    return sorted((study / p.name).as_posix() for p in folder.iterdir() if p.suffix.lower() in options.image_suffixes)


def _file_sections(report: Path) -> ReportSections:
    try:
        return report_sections(record_file_text(report, report.name))
    except UnicodeDecodeError as error:
        raise RowError("invalid_utf8", f"{report.name}: {error}") from None


def _field_sections(record: dict, options: Options) -> ReportSections:
    """Sections from the findings/impression fields; the whole-report ``text_field`` split at its
    headings when those are empty (CheXpert Plus leaves section_findings empty in many rows)."""
    findings, impression = text(record.get(options.findings_field)), text(record.get(options.impression_field))
    if not (findings or impression) and options.text_field:
        return report_sections(text(record.get(options.text_field)))
    return ReportSections.of_fields(findings, impression)


iter_samples = rows_only(iter_outcomes)
