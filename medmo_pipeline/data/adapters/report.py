"""Radiology reports: findings + impression over one or more images of a study.

Two layouts:
- ``records``: one record per study with findings/impression fields (CheXpert Plus:
  ``section_findings, section_impression, path_to_image``), or a whole ``text_field`` split at its
  headings by ``report_sections.report_sections``; images either in the record or joined from a second table by key
  (IU-Xray: ``indiana_reports.csv`` + ``indiana_projections.csv`` on ``uid``).
- ``study_folders``: MIMIC-CXR's ``files/pXX/pXXXXXXXX/sXXXXXXXX.txt`` beside a folder
  ``sXXXXXXXX/`` of that study's images (DICOM or JPG).

The reply labels its text by the section(s) it came from (``ReportSections.reply``): "Findings: /
Impression:", "Findings and impression:" for a combined section, "Report:" for unheaded text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from medmo_pipeline.data.paths import safe_glob, safe_join

from .common import (
    ImageRecordOptions,
    as_list,
    iter_records,
    limited,
    load_image,
    make_row,
    text,
    turn,
)
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
    default_window: tuple[float, float] | None = None


def iter_samples(root: Path, options: Options | dict) -> Iterator[dict]:
    options = Options.model_validate(options)
    studies = _study_folders(root, options) if options.layout == "study_folders" else _records(root, options)
    for index, (local_id, sections, image_values) in limited(studies, options):
        images = [load_image(root, value, options, window=options.default_window) for value in image_values]
        reply = sections.reply()
        yield make_row(local_id if local_id not in (None, "") else index, "report", options,
                       turn(QUESTION, reply), images=images)


def _records(root: Path, options: Options) -> Iterator[tuple]:
    joined: dict[str, list] = {}
    if options.images_file:
        for record in iter_records(root, options.images_file):
            joined.setdefault(text(record.get(options.join_key)), []).append(record.get(options.image_field))
    for record in iter_records(root, options.file, options.format):
        sections = _field_sections(record, options)
        key = text(record.get(options.join_key or options.id_field))
        images = joined.get(key, []) if options.images_file else as_list(
            record.get(options.image_field), options.image_separator)
        yield (record.get(options.id_field) if options.id_field else key), sections, images


def _study_folders(root: Path, options: Options) -> Iterator[tuple]:
    base = safe_join(root, options.image_dir) if options.image_dir else Path(root)
    for report in safe_glob(base, options.reports_glob):
        study = report.with_suffix("")
        images = sorted(p.relative_to(base).as_posix() for p in study.glob("*")
                        if p.suffix.lower() in IMAGE_SUFFIXES) if study.is_dir() else []
        sections = report_sections(report.read_text(encoding="utf-8", errors="replace"))
        yield report.relative_to(base).with_suffix("").as_posix(), sections, images


def _field_sections(record: dict, options: Options) -> ReportSections:
    """Sections from the findings/impression fields; the whole-report ``text_field`` split at its
    headings when those are empty (CheXpert Plus leaves section_findings empty in many rows)."""
    findings, impression = text(record.get(options.findings_field)), text(record.get(options.impression_field))
    if not (findings or impression) and options.text_field:
        return report_sections(text(record.get(options.text_field)))
    used = "+".join(name for name, value in (("findings", findings), ("impression", impression)) if value)
    return ReportSections(findings, impression, used)
