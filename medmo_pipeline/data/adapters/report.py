"""Radiology reports: findings + impression over one or more images of a study.

Two layouts:
- ``records``: one record per study with findings/impression fields (CheXpert Plus:
  ``section_findings, section_impression, path_to_image``), or a whole ``text_field`` split at its
  headings by ``report_sections.report_sections``; images either in the record or joined from a second table by key
  (IU-Xray: ``indiana_reports.csv`` + ``indiana_projections.csv`` on ``uid``).
- ``study_folders``: MIMIC-CXR's ``files/pXX/pXXXXXXXX/sXXXXXXXX.txt`` beside a folder
  ``sXXXXXXXX/`` of that study's images (DICOM or JPG).

The reply labels its text by the section(s) it came from (``ReportSections.reply``): "Findings:",
"Findings and impression:" for a combined section, "Report:" for unheaded text, then "Impression:"
and "Conclusion:".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

from medmo_pipeline.data.outcomes import RowError, RowQuarantined
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
    text,
    turn,
    with_columns,
)
from .records import SourceLayoutError, iter_records, layout_path
from .report_sections import ReportSections, report_sections, split_sections  # noqa: F401 - re-exported

QUESTION = "Write the findings and impression of this radiology study."
IMAGE_SUFFIXES = (".dcm", ".jpg", ".jpeg", ".png")


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
        yield from each_record(_study_folders(root, options), options, options.reports_glob, convert)
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
