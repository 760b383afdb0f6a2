"""Curation: adapter rows -> validated, normalised, de-duplicated, decontaminated shards, plus a
quarantine table saying why each rejected row was rejected.

One streaming pass (``curate``), batch by batch, each row decided in input order:

1. **validate + normalise** (``check_row`` states the rules row by row; ``check_batch`` applies
   them to a batch at once and leaves to ``check_row`` every row it is not sure about, so the
   outcome is the same, see ``batch_checks``): text fields must be valid UTF-8 (bytes are decoded,
   lone surrogates rejected), hold no control characters but tab and line breaks, and are
   NFC-normalised and stripped; the id becomes ``source:local_id``;
   task, split and turn order follow the sample contract; the assistant reply is non-empty, and so is
   ``answer`` for vqa / text_qa / grounding; choices, when present, contain the answer (as option
   text or option letter). Images: present, decodable to what the model sees (PNG: every chunk's
   CRC, bounded text chunks, the pixel stream inflated to exactly its declared size, see
   ``images.verify_png``; other formats: a full decode), within ``ImageLimits`` (the pixel count
   is checked from the header first: decompression-bomb guard), and a declared size equal to the
   real one; sha256, width and height are recomputed. The content decides the format: a name
   promising another one is counted (``extension_mismatches``) unless ``check_extension`` quarantines it.
   Boxes (pixels of the first image): finite, positive width and height, and inside the image after
   the clipping rule: a box overlapping the image by more than ``min_box_overlap`` of its own area
   is clipped to the image; otherwise the row is quarantined.
2. **quarantine** every row failing a check, with one reason from ``REASONS`` and a detail, into
   ``quarantine.parquet``; rows with an id already kept are quarantined as ``duplicate_id``. A
   record the adapter could not turn into a row arrives as a ``RowQuarantined`` (reason, file,
   record) and is quarantined the same way; one it left out on purpose arrives as a ``RowFiltered``
   and is counted by reason. Every input ends kept, quarantined or filtered (``accounted`` in the
   report: rows_in == rows_kept + quarantined + filtered).
3. **decontaminate** train rows: a row using an image whose sha256 is in the eval index, or whose
   normalised first question is in it, is dropped and counted (see ``build_eval_index``).
4. **de-duplicate** exactly: same split, same image hashes and same normalised texts (casefolded)
   -> dropped and counted.
5. **write** the kept rows with ``shards.write_tables`` (one shard of rows in memory at a time, the
   previous one being fsynced in the background).
   Every step is deterministic, so re-running a killed or failed curation into the same directory
   rewrites only the shards that are missing (the writer keeps files whose bytes already match).

Memory is bounded except for the two sets of 64-bit keys (kept ids, dedup keys): about 70 bytes per
key in CPython, so ~140 MB per million kept rows (MedTrinity's 18.5M rows: ~2.6 GB). The quarantine
table is flushed every ``QUARANTINE_BATCH`` rows; the image-check cache holds ``IMAGE_CACHE``
entries; a batch holds at most ``BATCH_ROWS`` input rows (and never more than a shard's). A 64-bit key collides with probability ~n^2 / 2^65 (about 1e-5 at 26M rows): an
accepted risk of dropping one row too many.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import unicodedata
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medmo_pipeline.data import shards
from medmo_pipeline.data.images import (
    ImageError,
    ImageLimits,
    extension_contradicts,
    inspect_image,
)
from medmo_pipeline.data.outcomes import ROW_REASONS, RowFiltered, RowQuarantined, is_outcome
from medmo_pipeline.data.schema import SAMPLE_SCHEMA, SPLITS, TASKS

if TYPE_CHECKING:
    from medmo_pipeline.data.batch_checks import CheckedBatch

QUARANTINE_NAME = "quarantine.parquet"
QUARANTINE_BATCH = 10_000
IMAGE_CACHE = 4096  # image-check results by sha256: VQA sets ask many questions of one image
TASKS_WITH_IMAGES = ("caption", "vqa", "report", "grounding")
TASKS_WITH_ANSWER = ("vqa", "text_qa", "grounding")
LETTERS = "ABCDEFGHIJ"

REASONS = {
    "malformed_row": "not a mapping, or a field of the wrong type",
    "schema": "a required field is missing, or task / split / turn order is not the contract's",
    "invalid_utf8": "a text field is not valid UTF-8",
    "control_characters": "a text field holds a control character (other than tab and line breaks)",
    "duplicate_id": "an earlier kept row has the same id",
    "missing_question": "the user turn is empty",
    "missing_answer": "the assistant reply (or the gold answer of a vqa/text_qa/grounding row) is empty",
    "choices_inconsistent": "the answer is neither one of the choices nor a letter within them",
    "image_missing": "no image bytes (file not found), or an image task without an image",
    "image_empty": "a zero-byte image",
    "image_truncated": "the image data ends early",
    "image_undecodable": "not an image format PIL can decode",
    "image_too_large": "more pixels than ImageLimits.max_pixels (checked from the header)",
    "image_too_small": "a side shorter than ImageLimits.min_side",
    "image_aspect_ratio": "more elongated than ImageLimits.max_aspect_ratio",
    "image_size_mismatch": "declared width/height differ from the decoded image",
    "extension_mismatch": "the file name's extension promises another format than its content",
    "box_nan": "a box coordinate is NaN or infinite",
    "box_degenerate": "a box with zero or negative width or height",
    "box_outside": "a box overlapping the image by no more than min_box_overlap of its area",
    "box_without_image": "boxes on a row with no image",
    **{reason: text for reason, text in ROW_REASONS.items() if reason not in ("box_nan", "invalid_utf8")},
}


@dataclass(frozen=True)
class CurationLimits:
    image: ImageLimits = field(default_factory=ImageLimits)
    min_box_overlap: float = 0.5  # share of a box's area inside the image above which it is clipped
    # The content decides an image's format: a name promising another one is counted in the report
    # (``extension_mismatches``), not quarantined, unless this asks for that.
    check_extension: bool = False


class Rejected(ValueError):
    """A row that fails a check: ``reason`` is a key of REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


# ---- text ---------------------------------------------------------------------------------------

_NON_WORD = re.compile(r"[^\w]+")
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_IMAGE_TOKEN = re.compile(r"<image>", re.IGNORECASE)


def clean_text(value, what: str) -> str:
    """Valid UTF-8 text, NFC-normalised and stripped; raises Rejected('invalid_utf8')."""
    if type(value) is str and value.isascii():  # the common case: ASCII is valid UTF-8 and NFC already
        return _without_controls(value.strip(), what)
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):  # the bytes-like values Arrow takes as text
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as error:
            raise Rejected("invalid_utf8", f"{what}: {error}") from None
    elif not isinstance(value, str):
        raise Rejected("malformed_row", f"{what} is {type(value).__name__}, not text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:  # lone surrogates from a lossy decode upstream
        raise Rejected("invalid_utf8", f"{what}: {error}") from None
    return _without_controls(unicodedata.normalize("NFC", value).strip(), what)


def _without_controls(text: str, what: str) -> str:
    """``text`` unless it holds a control character (tab and line breaks are text; other C0, DEL and
    C1 codes are binary junk or a broken decode); raises Rejected('control_characters')."""
    if text.isprintable():  # the usual case, in C; tabs and line breaks are not printable: look closer
        return text
    found = CONTROL_CHARACTERS.search(text)
    if found:
        raise Rejected("control_characters", f"{what}: {found.group()!r} at character {found.start()}")
    return text


def normalise_question(text: str) -> str:
    """Case-, accent-form-, punctuation- and spacing-insensitive form of a question.

    >>> normalise_question("  Is there a <image> LESION?? ")
    'is there a lesion'
    """
    text = _IMAGE_TOKEN.sub(" ", unicodedata.normalize("NFKC", text)).casefold()
    return " ".join(_NON_WORD.sub(" ", text).split())


def _key64(text: str) -> bytes:
    """A 64-bit key of ``text``, for the sets of ids and contents already kept."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()


_KEY_HASHER = hashlib.blake2b(digest_size=8)  # copied by ``_keys64``: the same digests as ``_key64``


# ---- eval index ---------------------------------------------------------------------------------

def build_eval_index(rows: Iterable[dict], *, question_tasks: Iterable[str] = ("text_qa", "instruction")) -> set[str]:
    """The decontamination index of evaluation rows: every image sha256, plus the normalised
    question of text items (tasks in ``question_tasks``).

    Questions of image items are left out on purpose: they are templates ("Describe the image.")
    that every training row of the same kind shares; the image identifies the item.
    """
    keys, wanted = set(), set(question_tasks)
    for row in rows:
        keys.update(image["sha256"] for image in row.get("images") or [] if image.get("sha256"))
        if row.get("task") in wanted and row.get("messages"):
            question = normalise_question(row["messages"][0]["content"])
            if question:
                keys.add(question)
    return keys


# ---- row checks ---------------------------------------------------------------------------------

class ImageChecker:
    """``inspect_image`` with a small LRU cache by sha256 (the same image across many questions)."""

    def __init__(self, limits: ImageLimits, size: int = IMAGE_CACHE):
        self.limits, self.size = limits, size
        self.cache: OrderedDict[str, tuple[int, int, str] | ImageError] = OrderedDict()

    def __call__(self, data: bytes, sha256: str) -> tuple[int, int, str]:
        result = self.inspect(data, sha256)
        if isinstance(result, ImageError):
            raise Rejected(result.reason, result.detail)
        return result

    def inspect(self, data: bytes, sha256: str) -> tuple[int, int, str] | ImageError:
        """(width, height, format), or the ImageError (returned, not raised: the batch path only
        needs to know that the image failed; ``check_row`` reports why)."""
        result = self.cache.get(sha256)
        if result is None:
            try:
                result = inspect_image(data, self.limits)
            except ImageError as error:
                result = error
            self.cache[sha256] = result
            if len(self.cache) > self.size:
                self.cache.popitem(last=False)
        else:
            self.cache.move_to_end(sha256)
        return result


def check_row(row: dict, *, source: str, images: ImageChecker, limits: CurationLimits) -> tuple[dict, int]:
    """The normalised row and how many of its boxes were clipped; raises Rejected."""
    if not isinstance(row, dict):
        raise Rejected("malformed_row", f"row is {type(row).__name__}")
    if row.get("id") is None or row.get("task") is None or row.get("messages") is None:
        raise Rejected("schema", f"missing {[name for name in ('id', 'task', 'messages') if row.get(name) is None]}")
    local_id = clean_text(row["id"], "id")
    if not local_id:
        raise Rejected("schema", "empty id")
    task, split = clean_text(row["task"], "task"), clean_text(row.get("split") or "train", "split")
    if task not in TASKS or split not in SPLITS:
        raise Rejected("schema", f"task {task!r} / split {split!r} not in {TASKS} / {SPLITS}")
    messages = [_message(m, i) for i, m in enumerate(row["messages"])]
    if len(messages) < 2 or messages[0]["role"] != "user" or messages[-1]["role"] != "assistant":
        raise Rejected("schema", f"turns must go user ... assistant, got {[m['role'] for m in messages]}")
    if not messages[0]["content"]:
        raise Rejected("missing_question", "empty first user turn")
    if not messages[-1]["content"]:
        raise Rejected("missing_answer", "empty assistant reply")
    answer = clean_text(row.get("answer"), "answer")
    if task in TASKS_WITH_ANSWER and not answer:
        raise Rejected("missing_answer", f"task {task} needs a gold answer")
    choices = [clean_text(c, "choices") for c in row.get("choices") or []]
    if choices:
        _check_choices(answer, choices)
    entries = [_image(entry, images, limits) for entry in row.get("images") or []]
    if task in TASKS_WITH_IMAGES and not entries:
        raise Rejected("image_missing", f"task {task} needs an image")
    boxes, clipped = _boxes(row.get("boxes") or [], (entries[0]["width"], entries[0]["height"]) if entries else None,
                            limits)
    prefix = f"{source}:"
    return {
        "id": local_id if local_id.startswith(prefix) else prefix + local_id,
        "source": source,
        "split": split,
        "task": task,
        "modality": clean_text(row.get("modality"), "modality") or "other",
        "images": entries,
        "messages": messages,
        "answer": answer,
        "choices": choices,
        "boxes": boxes,
        "license": clean_text(row.get("license"), "license"),
    }, clipped


def _message(message: dict, index: int) -> dict:
    if not isinstance(message, dict):
        raise Rejected("malformed_row", f"message {index} is {type(message).__name__}")
    try:
        return {"role": clean_text(message.get("role"), "role"), "content": clean_text(message.get("content"), "content")}
    except Rejected as rejected:  # name the turn only on failure: formatting it per row costs
        raise Rejected(rejected.reason, f"messages[{index}].{rejected.detail}") from None


def _check_choices(answer: str, choices: list[str]) -> None:
    folded = [c.casefold() for c in choices]
    if len(set(folded)) != len(folded):
        raise Rejected("choices_inconsistent", f"repeated options {choices}")
    letter_ok = len(answer) == 1 and 0 <= LETTERS.find(answer.upper()) < len(choices)
    if not (letter_ok or answer.casefold() in folded):
        raise Rejected("choices_inconsistent", f"answer {answer!r} not among {len(choices)} choices")


def _image(entry: dict, check: ImageChecker, limits: CurationLimits) -> dict:
    if not isinstance(entry, dict):
        raise Rejected("malformed_row", f"image entry is {type(entry).__name__}")
    path = clean_text(entry.get("path"), "image path")
    data = entry.get("bytes")
    if data is None:
        failure = entry.get("error")  # an adapter's conversion that failed (pixels.failed_entry)
        if isinstance(failure, ImageError):
            raise Rejected(failure.reason, f"{path}: {failure.detail}")
        raise Rejected("image_missing", f"no bytes for {path or 'an image'}")
    data = bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        width, height, fmt = check(data, sha256)
    except Rejected as rejected:  # name the file only on failure
        raise Rejected(rejected.reason, f"{path}: {rejected.detail}" if path else rejected.detail) from None
    if limits.check_extension and extension_contradicts(path, fmt):
        raise Rejected("extension_mismatch", f"{path} holds {fmt}")
    declared = (entry.get("width") or 0, entry.get("height") or 0)
    if declared != (0, 0) and declared != (width, height):
        raise Rejected("image_size_mismatch", f"{path}: declared {declared[0]}x{declared[1]}, is {width}x{height}")
    return {"bytes": data, "path": path, "width": width, "height": height, "sha256": sha256}


def _boxes(boxes: list, image_size: tuple[int, int] | None, limits: CurationLimits) -> tuple[list[dict], int]:
    """Boxes checked against the first image's (width, height) and clipped to it (see the module doc)."""
    if not boxes:
        return [], 0
    if not image_size:
        raise Rejected("box_without_image", f"{len(boxes)} boxes")
    width, height = image_size
    out, clipped = [], 0
    for box in boxes:
        try:
            x1, y1, x2, y2 = (float(box[k]) for k in ("x1", "y1", "x2", "y2"))
        except (KeyError, TypeError, ValueError) as error:
            raise Rejected("malformed_row", f"box {box!r}: {error}") from None
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            raise Rejected("box_nan", f"{(x1, y1, x2, y2)}")
        if x2 <= x1 or y2 <= y1:
            raise Rejected("box_degenerate", f"{(x1, y1, x2, y2)}: width {x2 - x1}, height {y2 - y1}")
        cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
        inside = max(cx2 - cx1, 0.0) * max(cy2 - cy1, 0.0)
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            if inside <= limits.min_box_overlap * (x2 - x1) * (y2 - y1):
                raise Rejected("box_outside", f"{(x1, y1, x2, y2)} vs image {width}x{height}")
            clipped += 1
        out.append({"label": clean_text(box.get("label"), "box label"), "x1": cx1, "y1": cy1, "x2": cx2, "y2": cy2})
    return out, clipped


# ---- shared by the batch checks and the decisions ----------------------------------------------

_UNIT, _RECORD = "\x1f", "\x1e"  # separators of joined texts


def _array(column: pa.ChunkedArray) -> pa.Array:
    """A column as one array (without the copy ``combine_chunks`` makes of a single chunk)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _offsets(lists: pa.ListArray) -> np.ndarray:
    """The list offsets into ``lists.flatten()``, from 0 (a sliced array's start elsewhere)."""
    offsets = lists.offsets.to_numpy()
    return offsets - offsets[0] if offsets[0] else offsets


def _regroup(lists: pa.ListArray, values: pa.Array) -> pa.ListArray:
    """``values`` (one per element of ``lists.flatten()``) grouped into lists as ``lists`` is; a null
    list becomes an empty one."""
    return pa.ListArray.from_arrays(pa.array(_offsets(lists), pa.int32()), values)


# ---- the pass -----------------------------------------------------------------------------------

class QuarantineWriter:
    """Rejected rows, appended in batches to a hidden file renamed into place on close."""

    SCHEMA = pa.schema([("row_index", pa.int64()), ("row_id", pa.string()), ("source", pa.string()),
                        ("reason", pa.string()), ("detail", pa.string()), ("file", pa.string()),
                        ("record", pa.string())])

    def __init__(self, path: Path):
        self.path = Path(path)
        self.temporary = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        for stale in self.path.parent.glob(f".{self.path.name}.tmp-*"):  # left by a killed run
            stale.unlink(missing_ok=True)
        self.writer = pq.ParquetWriter(self.temporary, self.SCHEMA, compression="zstd")
        self.pending: list[dict] = []

    def add(self, index: int, row_id: str, source: str, reason: str, detail: str, *, file: str = "",
            record: str = "") -> None:
        self.pending.append({"row_index": index, "row_id": row_id, "source": source, "reason": reason,
                             "detail": detail[:2000], "file": file, "record": record})
        if len(self.pending) >= QUARANTINE_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.Table.from_pylist(self.pending, schema=self.SCHEMA))
            self.pending.clear()

    def close(self) -> None:
        self.flush()
        self.writer.close()
        os.replace(self.temporary, self.path)

    def abort(self) -> None:
        self.writer.close()
        self.temporary.unlink(missing_ok=True)


def curate(
    rows: Iterable[dict],
    out_dir: Path,
    *,
    source: str,
    eval_index: set[str] | frozenset[str] = frozenset(),
    shard_rows: int = 2000,
    limits: CurationLimits = CurationLimits(),
    source_revision: str = "",
    quarantine_path: Path | None = None,
    progress: Callable[[dict], None] | None = None,
    progress_every: int = 100_000,
) -> dict:
    """Curate ``rows`` of ``source`` into shards under ``out_dir``; return the report.

    The quarantine table goes to ``quarantine_path``, by default ``<out_dir>.quarantine.parquet``
    beside the shard directory (inside it, ``shards.verify_shards`` would flag an unlisted file).
    ``eval_index`` comes from ``build_eval_index``. ``progress`` is called with the running counts
    every ``progress_every`` input rows.
    """
    from medmo_pipeline.data.batch_checks import (  # builds on this module's row checks
        BATCH_ROWS,
        check_batch,
        extension_mismatches,
    )

    out_dir = Path(out_dir)
    quarantine_path = Path(quarantine_path) if quarantine_path else out_dir.with_name(
        f"{out_dir.name}.{QUARANTINE_NAME}")
    quarantine_path.parent.mkdir(parents=True, exist_ok=True)
    quarantine = QuarantineWriter(quarantine_path)
    checker = ImageChecker(limits.image)
    decide = _Decisions(source, eval_index, quarantine, progress, progress_every)
    mismatches = [0]  # kept images whose name promises another format than their content

    def kept_tables() -> Iterator[pa.Table]:
        """The kept rows, batch by batch: checked together, then decided one by one in input order."""
        iterator, start = iter(rows), 0
        while items := list(islice(iterator, min(BATCH_ROWS, shard_rows))):
            batch, positions = decide.outcomes(items, start)
            start += len(items)
            if not batch:
                continue
            checked = check_batch(batch, source=source, images=checker, limits=limits)
            keep = decide(batch, positions, checked)
            if keep:
                kept = checked.table if len(keep) == checked.table.num_rows else checked.table.take(keep)
                mismatches[0] += extension_mismatches(kept)
                yield kept

    try:
        manifest = shards.write_tables(kept_tables(), out_dir, shard_rows=shard_rows, source=source,
                                       source_revision=source_revision, schema=SAMPLE_SCHEMA)
    except BaseException:
        quarantine.abort()
        raise
    quarantine.close()
    counts, reasons, contaminated = decide.counts, decide.reasons, decide.contaminated
    filtered = decide.filtered + Counter({"duplicate": counts["duplicates_dropped"],
                                          "decontamination": sum(contaminated.values())})
    filtered = {reason: count for reason, count in sorted(filtered.items()) if count}
    return {
        "source": source,
        **counts,
        "quarantined": sum(reasons.values()),
        "quarantined_by_reason": dict(sorted(reasons.items())),
        "filtered": sum(filtered.values()),
        "filtered_by_reason": filtered,
        "accounted": counts["rows_in"] == counts["rows_kept"] + sum(reasons.values()) + sum(filtered.values()),
        "contaminated": sum(contaminated.values()),
        "contaminated_by_kind": dict(sorted(contaminated.items())),
        "extension_mismatches": mismatches[0],
        "quarantine_rate": sum(reasons.values()) / counts["rows_in"] if counts["rows_in"] else 0.0,
        "quarantine_path": str(quarantine_path),
        "shard_dir": str(out_dir),
        "data_version": shards.manifest_hash(manifest),
        "manifest": manifest,
    }


class _Decisions:
    """The decisions taken row by row in input order, and their counts: a rejected row (or one
    whose id is already kept: ``duplicate_id``) is quarantined, a train row matching the eval index
    is dropped as contaminated, an exact duplicate of a kept row is dropped; the rest is kept.

    The sets of kept ids and content keys hold 64-bit keys (see the module doc)."""

    def __init__(self, source: str, eval_index: set[str] | frozenset[str], quarantine: QuarantineWriter,
                 progress: Callable[[dict], None] | None, progress_every: int):
        self.source, self.eval_index, self.quarantine = source, eval_index, quarantine
        self.progress, self.progress_every = progress, progress_every
        self.counts = {"rows_in": 0, "rows_kept": 0, "boxes_clipped": 0, "duplicates_dropped": 0}
        self.reasons: Counter[str] = Counter()
        self.filtered: Counter[str] = Counter()
        self.contaminated: Counter[str] = Counter()
        self.kept_ids: set[bytes] = set()
        self.seen_content: set[bytes] = set()

    def outcomes(self, items: list, start: int) -> tuple[list, list[int] | int]:
        """The rows among ``items`` (inputs ``start``...) and their input positions; the adapters'
        outcomes among them are quarantined or counted as filtered here, in input order with the
        rows' own decisions (same counts whichever order: each is decided on its own)."""
        if not any(map(is_outcome, items)):
            return items, start
        rows, positions = [], []
        for offset, item in enumerate(items):
            if type(item) is RowQuarantined:
                self.counts["rows_in"] += 1
                self.reasons[item.reason] += 1
                self.quarantine.add(start + offset, item.local_id, self.source, item.reason, item.detail,
                                    file=item.file, record=item.record)
            elif type(item) is RowFiltered:
                self.counts["rows_in"] += item.rows
                self.filtered[item.reason] += item.rows
            else:
                rows.append(item)
                positions.append(start + offset)
        return rows, positions

    def __call__(self, batch: list, positions: list[int] | int, checked: CheckedBatch) -> list[int]:
        """The rows of ``checked.table`` to keep; ``batch`` is what it checked, ``positions`` their
        input positions (or the first one, when they follow each other)."""
        keys = _BatchKeys(checked.table, with_contamination=bool(self.eval_index))
        if self._all_kept(len(batch), checked, keys):
            return list(range(len(batch)))
        counts, keep = self.counts, []
        for offset, outcome in enumerate(checked.outcomes):
            counts["rows_in"] += 1
            if self.progress is not None and counts["rows_in"] % self.progress_every == 0:
                self.progress({**counts, "quarantined": sum(self.reasons.values())})
            if not isinstance(outcome, Rejected):
                id_key = keys.id_keys[outcome]
                if id_key in self.kept_ids:
                    outcome = Rejected("duplicate_id", f"{keys.ids[outcome]} already kept")
            if isinstance(outcome, Rejected):
                self.reasons[outcome.reason] += 1
                file, record = _origin(batch[offset])
                self.quarantine.add(positions + offset if type(positions) is int else positions[offset],
                                    _raw_id(batch[offset]), self.source, outcome.reason, outcome.detail,
                                    file=file, record=record)
                continue
            if self.eval_index and keys.splits[outcome] == "train":
                hit = _contamination(keys.hashes[outcome], keys.questions[outcome], self.eval_index)
                if hit:
                    self.contaminated[hit] += 1
                    continue
            content_key = keys.content_keys[outcome]
            if content_key in self.seen_content:
                counts["duplicates_dropped"] += 1
                continue
            self.seen_content.add(content_key)
            self.kept_ids.add(id_key)
            counts["boxes_clipped"] += checked.clipped[outcome]
            counts["rows_kept"] += 1
            keep.append(outcome)
        return keep

    def _all_kept(self, size: int, checked: CheckedBatch, keys: _BatchKeys) -> bool:
        """The common batch, decided at once (set operations instead of a loop, same outcome): every
        row accepted, no eval index to check, no progress report due inside it, and no id or content
        key seen before or twice."""
        rows_in = self.counts["rows_in"]
        if (checked.table.num_rows != size or self.eval_index
                or self.progress is not None and rows_in // self.progress_every != (rows_in + size) // self.progress_every
                or len(set(keys.id_keys)) != size or not self.kept_ids.isdisjoint(keys.id_keys)
                or len(set(keys.content_keys)) != size or not self.seen_content.isdisjoint(keys.content_keys)):
            return False
        self.kept_ids.update(keys.id_keys)
        self.seen_content.update(keys.content_keys)
        self.counts["rows_in"] += size
        self.counts["rows_kept"] += size
        self.counts["boxes_clipped"] += sum(checked.clipped)
        return True


class _BatchKeys:
    """What the decisions need from a checked batch's table, taken out of Arrow at once: ids, their
    64-bit keys and the content keys, and (for decontamination) splits, image hashes, questions.

    The content key hashes the split, the image hashes, every turn's text and the answer, joined and
    casefolded: exact duplicates up to case, from the normalised rows whichever path checked them.
    """

    def __init__(self, table: pa.Table, *, with_contamination: bool):
        self.ids = table.column("id").to_pylist()
        images, messages = (_array(table.column(name)) for name in ("images", "messages"))
        hashes = _regroup(images, pc.struct_field(images.flatten(), "sha256"))
        contents = _regroup(messages, pc.struct_field(messages.flatten(), "content"))
        texts = pc.binary_join_element_wise(
            _array(table.column("split")), pc.binary_join(hashes, _UNIT), pc.binary_join(contents, _UNIT),
            _array(table.column("answer")), _RECORD).to_pylist()
        self.id_keys = _keys64(self.ids)
        self.content_keys = _keys64([text.casefold() for text in texts])
        if with_contamination:
            self.splits = table.column("split").to_pylist()
            self.hashes = hashes.to_pylist()
            self.questions = pc.list_element(contents, 0).to_pylist() if len(contents) else []


def _keys64(texts: list[str]) -> list[bytes]:
    """``_key64`` of each text. This runs twice per row: copying a ready hasher is cheaper than
    making one (the digests are the same)."""
    keys, fresh = [], _KEY_HASHER
    for text in texts:
        hasher = fresh.copy()
        hasher.update(text.encode("utf-8", "surrogatepass"))
        keys.append(hasher.digest())
    return keys


def _contamination(hashes: list[str], question: str, eval_index: set[str] | frozenset[str]) -> str:
    """'image' or 'question' when the row matches an evaluation item, else ''."""
    if any(h in eval_index for h in hashes):
        return "image"
    if normalise_question(question) in eval_index:
        return "question"
    return ""


def _origin(raw) -> tuple[str, str]:
    """(file, record) an adapter row came from, when it says (``adapters.common.guarded``)."""
    origin = raw.get("origin") if isinstance(raw, dict) else None
    if isinstance(origin, tuple) and len(origin) == 2:
        return str(origin[0]), str(origin[1])
    return "", ""


def _raw_id(raw) -> str:
    """The input row's id for the quarantine table, whatever its type or encoding."""
    value = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(value, (bytes, bytearray, memoryview)):  # the bytes-like values Arrow takes as text
        return bytes(value).decode("utf-8", "backslashreplace")
    return "" if value is None else str(value).encode("utf-8", "backslashreplace").decode("utf-8")
