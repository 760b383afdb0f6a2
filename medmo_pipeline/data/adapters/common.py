"""What every adapter shares: options base class, record readers, image loading, row assembly.

Adapters yield sample-contract rows with ``id`` set to the dataset's local id and ``source`` /
``license`` left empty; ``registry.iter_source_rows`` stamps those from the registry entry. Every
path read from a data file goes through ``safe_join``. A missing image file gives an entry with
``bytes=None`` (curation quarantines it as ``image_missing``) rather than stopping the whole source.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from medmo_pipeline.data.annotations import BoundedLines, csv_records, json_line, load_json
from medmo_pipeline.data.images import dicom_entry, image_entry, png16_entry
from medmo_pipeline.data.paths import safe_join

IMAGE_TOKEN = re.compile(r"\s*<image>\s*")
DICOM_SUFFIXES = (".dcm", ".dicom")
RecordFormat = Literal["auto", "json", "jsonl", "csv", "tsv", "parquet"]


class AdapterOptions(BaseModel):
    """Options every adapter accepts; adapters subclass it. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split: Literal["train", "eval"] = "train"
    modality: str = "other"
    image_dir: str = ""  # prefix for image paths read from the data file, relative to the root
    limit: int | None = None  # read at most this many records (smoke runs)


class RecordOptions(AdapterOptions):
    """Adapters that read one record file (JSON, JSONL, CSV/TSV or Parquet)."""

    file: str
    format: RecordFormat = "auto"
    id_field: str = ""  # "" numbers the records in file order


class ImageRecordOptions(RecordOptions):
    """Record files whose rows name their image(s) in ``image_field``."""

    image_field: str = "image"


def iter_records(root: Path, file: str, fmt: RecordFormat = "auto", *, json_key: str = "") -> Iterator[dict]:
    """Records of a JSON (list, or ``json_key`` inside an object), JSONL, CSV/TSV or Parquet file;
    a ``file`` with ``*`` reads every match in name order (hub datasets split into many files).

    Parquet is streamed batch by batch, JSONL and CSV/TSV line by line within ``annotations``'
    bounds; a JSON file is read whole up to ``annotations.MAX_WHOLE_FILE``. Errors name the file
    (and line).
    """
    if "*" in file:
        base = Path(root).resolve()
        for match in sorted(base.glob(file)):
            yield from iter_records(root, match.relative_to(base).as_posix(), fmt, json_key=json_key)
        return
    path = safe_join(root, file)
    kind = fmt if fmt != "auto" else path.suffix.lower().lstrip(".")
    if kind == "jsonl":
        with open(path, "rb") as handle:  # decoded line by line, so an error names its line
            lines = BoundedLines(handle, file)
            yield from (json_line(line, file, lines.number) for line in lines if line.strip())
    elif kind == "json":
        data = load_json(path, file)
        yield from (data[json_key] if json_key else data)
    elif kind in ("csv", "tsv"):
        with open(path, encoding="utf-8", newline="") as handle:
            yield from csv_records(BoundedLines(handle, file), "\t" if kind == "tsv" else ",")
    elif kind == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
            yield from batch.to_pylist()
    else:
        raise ValueError(f"{file}: unknown record format {kind!r}; say format: json|jsonl|csv|tsv|parquet")


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
    relative = f"{options.image_dir.rstrip('/')}/{value}" if options.image_dir else str(value)
    path = safe_join(root, relative)
    if not path.is_file():
        return {"bytes": None, "path": relative, "width": 0, "height": 0, "sha256": ""}
    if path.suffix.lower() in DICOM_SUFFIXES:
        return dicom_entry(path, default_window=window, path=relative)
    if png16_offset is not None:
        return png16_entry(path.read_bytes(), offset=png16_offset, window=window, path=relative)
    return image_entry(path.read_bytes(), relative)


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
