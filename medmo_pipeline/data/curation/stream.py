"""The streaming pass: adapter rows -> checked, de-duplicated, decontaminated shards, plus the
quarantine table (``curate``).

Batch by batch, each row decided in input order:

1. **check** the batch (``batch.check_batch``: the row rules of ``rules``, applied to the batch
   at once, with ``rules.check_row`` deciding every row the batch checks are not sure about).
2. **quarantine** every row failing a check, with one reason from ``REASONS`` and a detail, into
   ``quarantine.parquet``; rows with an id already kept are quarantined as ``duplicate_id``. A
   record the adapter could not turn into a row arrives as a ``RowQuarantined`` (reason, file,
   record) and is quarantined the same way; one it left out on purpose arrives as a ``RowFiltered``
   and is counted by reason. Every input ends kept, quarantined or filtered (``accounted`` in the
   report: rows_in == rows_kept + quarantined + filtered).
3. **decontaminate** train rows: a row using an image whose sha256 is in the eval index, or whose
   normalised first question is in it, is dropped and counted (see ``keys.build_eval_index``).
4. **de-duplicate** exactly: same split, same image hashes and same normalised texts (casefolded,
   whitespace runs as one space) -> dropped and counted.
5. **write** the kept rows with ``shards.write_tables`` (one shard of rows gathered at a time, the
   previous one or two being encoded and fsynced in the background).
   Every step is deterministic, so re-running a killed or failed curation into the same directory
   rewrites only the shards that are missing (the writer keeps files whose bytes already match).

Memory is bounded except for the two sets of 64-bit keys (kept ids, dedup keys): 8 bytes per key
stored (``keys.KeySet``; about 10 resident, ``benches/curation.py``), so about 20 MB per million kept
rows (MedTrinity's 18.5M rows: about 390 MB; as CPython sets of ints, 3 GB). The quarantine
table is flushed every ``QUARANTINE_BATCH`` rows; the image-check cache holds ``images.INSPECT_CACHE``
entries; a batch holds at most ``batch.BATCH_ROWS`` input rows (and never more than a shard's), fewer
where their images are large (about ``batch.BATCH_BYTES`` of images per batch). A batch ends where the
shard being filled ends, when that is not too close (``batch.up_to_shard_end``): the writer then
takes a shard from one batch as it is, instead of copying two batches' pieces into one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow as pa

import medmo_pipeline.data.curation.batch as batch_checks  # looked up per call: tests swap its parts
from medmo_pipeline.data import shards
from medmo_pipeline.data.curation.batch import CheckedBatch
from medmo_pipeline.data.curation.keys import BatchKeys, KeySet, contamination
from medmo_pipeline.data.curation.quarantine import (
    QUARANTINE_NAME,
    QuarantineWriter,
    published_on_success,
    storable,
)
from medmo_pipeline.data.curation.rules import CurationLimits, ImageChecker, Rejected
from medmo_pipeline.data.outcomes import RowFiltered, RowQuarantined, is_outcome
from medmo_pipeline.schema.rows import SAMPLE_SCHEMA

DEFAULT_LIMITS = CurationLimits()  # frozen: one shared default


def curate(
    rows: Iterable[dict],
    out_dir: Path,
    *,
    source: str,
    eval_index: set[str] | frozenset[str] = frozenset(),
    shard_rows: int = 2000,
    limits: CurationLimits = DEFAULT_LIMITS,
    source_revision: str = "",
    quarantine_path: Path | None = None,
    progress: Callable[[dict], None] | None = None,
    progress_every: int = 100_000,
    kept_origins: Path | None = None,
) -> dict:
    """Curate ``rows`` of ``source`` into shards under ``out_dir``; return the report.

    The quarantine table goes to ``quarantine_path``, by default ``<out_dir>.quarantine.parquet``
    beside the shard directory (inside it, ``shards.verify_shards`` would flag an unlisted file).
    ``eval_index`` comes from ``build_eval_index``. ``progress`` is called with the running counts
    every ``progress_every`` input rows. ``kept_origins``: where to write the input index, file and
    record of each kept row, in shard order (an Arrow IPC file: ``parts.merge_parts`` quarantines a
    row an earlier part kept by where it came from).
    """
    out_dir = Path(out_dir)
    quarantine_path = Path(quarantine_path) if quarantine_path else out_dir.with_name(
        f"{out_dir.name}.{QUARANTINE_NAME}")
    quarantine_path.parent.mkdir(parents=True, exist_ok=True)
    quarantine = QuarantineWriter(quarantine_path)
    checker = ImageChecker(limits.image)
    decide = _Decisions(source, eval_index, quarantine, progress, progress_every)
    mismatches = [0]  # kept images whose name promises another format than their content
    origins = _OriginWriter(kept_origins) if kept_origins is not None else None

    def kept_tables() -> Iterator[pa.Table]:
        """The kept rows, batch by batch: checked together, then decided one by one in input order.

        A batch's images are checked (on worker processes, for a large batch) while this thread
        checks its text and reads and gathers the next batch, and the shard writer encodes the
        previous one."""
        iterator, start, previous = iter(rows), 0, None
        most_rows = min(batch_checks.BATCH_ROWS, shard_rows)
        size = min(batch_checks.FIRST_BATCH_ROWS, most_rows)  # small: the image checks start soon
        kept_rows = 0  # rows kept so far, counting those of the batch still to decide as kept
        while True:
            items = list(islice(iterator, size))
            current = None
            if items:
                batch, positions = rows_among(items, start)
                started = batch_checks.gathered(batch, limits=limits) if batch else None
                current = (items, start, batch, positions, started)
                start += len(items)
                kept_rows += len(batch)
                size = batch_checks.next_batch_rows(started, len(items), most_rows)
                size = batch_checks.up_to_shard_end(size, shard_rows - kept_rows % shard_rows)
            if previous is not None:
                kept = decided(*previous)
                kept_rows -= len(previous[2]) - (kept.num_rows if kept is not None else 0)
                if kept is not None:
                    yield kept
            if current is None:
                return
            previous = current

    def decided(items: list, start: int, batch: list, positions: list[int] | int,
                started: batch_checks.Gathered | None) -> pa.Table | None:
        """The kept rows of one batch (None if none), its outcomes recorded in input order."""
        decide.record_outcomes(items, start)
        if not batch:
            return None
        found = batch_checks.candidates(batch, images=checker, limits=limits, started=started)
        checked = batch_checks.check_batch(batch, source=source, images=checker, limits=limits, found=found)
        keep = decide(batch, positions, checked)
        if not keep:
            return None
        kept = checked.table if len(keep) == checked.table.num_rows else checked.table.take(keep)
        mismatches[0] += batch_checks.extension_mismatches(kept)
        if origins is not None:
            origins.add(batch, positions, checked.outcomes, keep)
        return kept

    with published_on_success(quarantine):
        try:
            manifest = shards.write_tables(kept_tables(), out_dir, shard_rows=shard_rows, source=source,
                                           source_revision=source_revision, schema=SAMPLE_SCHEMA)
        finally:
            if origins is not None:
                origins.close()
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
        **({"kept_origins": str(kept_origins)} if kept_origins is not None else {}),
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
        self.kept_ids, self.seen_content = KeySet(), KeySet()

    def record_outcomes(self, items: list, start: int) -> None:
        """Quarantine or count as filtered the adapters' outcomes among ``items`` (inputs
        ``start``...), in input order (the counts are the same whichever order: each is decided
        on its own)."""
        if not any(map(is_outcome, items)):
            return
        for offset, item in enumerate(items):
            if type(item) is RowQuarantined:
                self.counts["rows_in"] += 1
                self.reasons[item.reason] += 1
                self.quarantine.add(start + offset, item.local_id, self.source, item.reason, item.detail,
                                    file=item.file, record=item.record)
            elif type(item) is RowFiltered:
                self.counts["rows_in"] += item.rows
                self.filtered[item.reason] += item.rows

    def __call__(self, batch: list, positions: list[int] | int, checked: CheckedBatch) -> list[int]:
        """The rows of ``checked.table`` to keep; ``batch`` is what it checked, ``positions`` their
        input positions (or the first one, when they follow each other)."""
        keys = BatchKeys(checked.table, with_contamination=bool(self.eval_index))
        if self._all_kept(len(batch), checked, keys):
            return list(range(len(batch)))
        counts, keep = self.counts, []
        # kept before this batch (looked up at once), and kept in it so far
        id_kept, content_seen = self.kept_ids.contains(keys.id_keys), self.seen_content.contains(keys.content_keys)
        ids_now: set[int] = set()
        contents_now: set[int] = set()
        for offset, outcome in enumerate(checked.outcomes):
            counts["rows_in"] += 1
            if self.progress is not None and counts["rows_in"] % self.progress_every == 0:
                self.progress({**counts, "quarantined": sum(self.reasons.values())})
            if not isinstance(outcome, Rejected):
                id_key = keys.id_keys[outcome]
                if id_kept[outcome] or id_key in ids_now:
                    outcome = Rejected("duplicate_id", f"{keys.ids[outcome]} already kept")
            if isinstance(outcome, Rejected):
                self.reasons[outcome.reason] += 1
                file, record = _origin(batch[offset])
                self.quarantine.add(positions + offset if type(positions) is int else positions[offset],
                                    _raw_id(batch[offset]), self.source, outcome.reason, outcome.detail,
                                    file=file, record=record)
                continue
            if self.eval_index and keys.splits[outcome] == "train":
                hit = contamination(keys.hashes[outcome], keys.questions[outcome], self.eval_index)
                if hit:
                    self.contaminated[hit] += 1
                    continue
            content_key = keys.content_keys[outcome]
            if content_seen[outcome] or content_key in contents_now:
                counts["duplicates_dropped"] += 1
                continue
            contents_now.add(content_key)
            ids_now.add(id_key)
            counts["boxes_clipped"] += checked.clipped[outcome]
            counts["rows_kept"] += 1
            keep.append(outcome)
        self.kept_ids.add(sorted(ids_now), new=True)  # looked up above: none kept before
        self.seen_content.add(sorted(contents_now), new=True)
        return keep

    def _all_kept(self, size: int, checked: CheckedBatch, keys: BatchKeys) -> bool:
        """The common batch, decided at once (set operations instead of a loop, same outcome): every
        row accepted, no eval index to check, no progress report due inside it, and no id or content
        key seen before or twice."""
        rows_in = self.counts["rows_in"]
        if (checked.table.num_rows != size or self.eval_index
                or self.progress is not None and rows_in // self.progress_every != (rows_in + size) // self.progress_every):
            return False
        ids, contents = np.unique(np.asarray(keys.id_keys, dtype=np.int64)), \
            np.unique(np.asarray(keys.content_keys, dtype=np.int64))
        if (len(ids) != size or len(contents) != size or self.kept_ids.contains(ids).any()
                or self.seen_content.contains(contents).any()):
            return False
        self.kept_ids.add(ids, new=True)
        self.seen_content.add(contents, new=True)
        self.counts["rows_in"] += size
        self.counts["rows_kept"] += size
        self.counts["boxes_clipped"] += sum(checked.clipped)
        return True

class _OriginWriter:
    """The input index, file and record of each kept row, in shard order, as an Arrow IPC file (read
    memory-mapped, one row at a time, by ``parts.merge_parts``)."""

    SCHEMA = pa.schema([("row_index", pa.int64()), ("file", pa.string()), ("record", pa.string())])

    def __init__(self, path: Path):
        self.writer = pa.ipc.new_file(str(path), self.SCHEMA)

    def add(self, batch: list, positions: list[int] | int, outcomes: list, keep: list[int]) -> None:
        offsets = [offset for offset, outcome in enumerate(outcomes) if not isinstance(outcome, Rejected)]
        offsets = [offsets[row] for row in keep]  # the table's rows are the accepted ones, in input order
        origins = [_origin(batch[offset]) for offset in offsets]
        self.writer.write_batch(pa.record_batch([
            pa.array([positions + offset if type(positions) is int else positions[offset] for offset in offsets],
                     pa.int64()),
            pa.array([file for file, _ in origins], pa.string()),
            pa.array([record for _, record in origins], pa.string())], schema=self.SCHEMA))

    def close(self) -> None:
        self.writer.close()


def rows_among(items: list, start: int) -> tuple[list, list[int] | int]:
    """The rows among ``items`` (inputs ``start``...; the rest are the adapters' outcomes) and their
    input positions (the first one, when they follow each other)."""
    if not any(map(is_outcome, items)):
        return items, start
    picked = [(start + offset, item) for offset, item in enumerate(items) if not is_outcome(item)]
    return [item for _, item in picked], [position for position, _ in picked]


def _origin(raw) -> tuple[str, str]:
    """(file, record) an adapter row came from, when it says (``adapters.common.guarded``)."""
    origin = raw.get("origin") if isinstance(raw, dict) else None
    if isinstance(origin, tuple) and len(origin) == 2:
        return storable(str(origin[0])), storable(str(origin[1]))
    return "", ""


def _raw_id(raw) -> str:
    """The input row's id for the quarantine table, whatever its type or encoding."""
    value = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(value, (bytes, bytearray, memoryview)):  # the bytes-like values Arrow takes as text
        return bytes(value).decode("utf-8", "backslashreplace")
    return "" if value is None else str(value)  # the quarantine escapes what is not UTF-8
