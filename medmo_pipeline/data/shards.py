"""Parquet shards of sample rows plus a manifest: the on-disk form of a corpus source.

Layout of a shard directory::

    part-00000.parquet, part-00001.parquet, ...   (each complete once visible)
    manifest.json                                  (written last; its hash is the data version)

Writes are atomic per file: bytes go to a hidden temporary name in the same directory, are fsynced,
then ``os.replace``d onto the final name, so a reader never sees half a shard, and a manifest only
exists once every shard it lists is in place. A shard is encoded, fsynced and renamed on a
background thread while the next one is built: two shards in flight at a time when together they
hold at most ``PUBLISH_BYTES``, one otherwise.

Bytes are deterministic for a given pyarrow version: fixed compression, no timestamps (Parquet's
``created_by`` names only the writer library version), statistics only on the small string columns
(image bytes would bloat the footer), and each shard written from one contiguous table.

Resuming: a run that was killed (or failed on I/O) leaves complete shards under their final names
and at most some hidden temporaries. Re-running the same rows into the same directory removes the
temporaries and, for each shard, keeps the file already there when its size and sha256 equal those
of the bytes it would write, so only what is missing is written. One writer per directory.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Self

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medmo_pipeline.schema.rows import SAMPLE_SCHEMA

MANIFEST_NAME = "manifest.json"
SHARD_PATTERN = "part-{index:05d}.parquet"
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 3
STATISTICS_COLUMNS = ["id", "source", "split", "task", "modality"]
READ_BATCH_ROWS = 256
TEMPORARY_GLOB = ".*.tmp-*"  # what ``_write_atomic`` leaves behind when its process is killed
# Two shards are published side by side while they hold this much together (the paper's 20,000-row
# shards of full-size images hold gigabytes: one at a time): the caller goes on building the next
# shard, and its image checks keep running, instead of waiting for a busy encoder.
PUBLISH_BYTES = 256 << 20


class ShardWriteError(OSError):
    """A file of a shard directory could not be written; nothing was published under its name."""

    def __init__(self, path: Path, error: OSError):
        super().__init__(error.errno, f"could not write {path}: {error.strerror or error} (nothing was published "
                                      "under that name; once the fault is gone, a re-run reuses complete shards)")
        self.path = Path(path)

    def __str__(self) -> str:
        return self.strerror


def write_shards(rows: Iterable[dict], out_dir: Path, *, shard_rows: int, schema: pa.Schema = SAMPLE_SCHEMA,
                 **manifest_fields: str) -> dict:
    """Write ``rows`` as shards of ``shard_rows`` rows under ``out_dir``; return the manifest.

    Rows must have exactly the schema's fields. ``write_tables`` writes them, fed one shard of rows
    at a time; ``manifest_fields`` are its ``source`` and ``source_revision``.
    """
    return write_tables(_row_tables(rows, shard_rows, schema), out_dir, shard_rows=shard_rows, schema=schema,
                        **manifest_fields)


def _row_tables(rows: Iterable[dict], shard_rows: int, schema: pa.Schema) -> Iterator[pa.Table]:
    """Row dicts -> tables of ``shard_rows`` rows, each row checked to have exactly the schema's fields."""
    expected = set(schema.names)
    pending: list[dict] = []
    for row in rows:
        if row.keys() != expected:
            raise ValueError(
                f"row {row.get('id', '?')!r}: fields {sorted(set(row) ^ expected)} do not match the schema"
            )
        pending.append(row)
        if len(pending) == shard_rows:
            yield pa.Table.from_pylist(pending, schema=schema)
            pending = []
    if pending:
        yield pa.Table.from_pylist(pending, schema=schema)


def write_tables(
    tables: Iterable[pa.Table],
    out_dir: Path,
    *,
    shard_rows: int,
    source: str,
    source_revision: str = "",
    schema: pa.Schema = SAMPLE_SCHEMA,
) -> dict:
    """Write the rows of ``tables`` (of ``schema``, any number of rows each) as shards of
    ``shard_rows`` rows under ``out_dir``; return the manifest.

    Streams: rows are cut into shards as they come, and each shard is serialised as one contiguous
    table, so the bytes depend only on the rows, not on how they were batched. While a shard is
    serialised, hashed, fsynced and renamed into place on a background thread (Arrow's encoder and
    the hash run without the GIL), the next shard is being built: at most two shards are in flight
    (one when they are large, see ``_Publisher``) and one pending. Rewriting a directory first
    removes its manifest (so it never describes a half-rewritten directory) and leftover
    temporaries, keeps shards whose bytes are already right (see the module doc) and, at the end,
    removes shards the new manifest does not list. A failed write raises ShardWriteError naming the
    file; shards already published stay (with two in flight, that can include the one after it).
    """
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
    for stale in out_dir.glob(TEMPORARY_GLOB):
        stale.unlink(missing_ok=True)
    splits: dict[str, int] = {}

    with _Publisher() as publisher:
        def put(table: pa.Table) -> None:
            table = table.combine_chunks()  # one layout whatever the batching: deterministic bytes
            if "split" in table.schema.names:
                for item in pc.value_counts(table.column("split")).to_pylist():
                    if item["values"] is not None:
                        splits[item["values"]] = splits.get(item["values"], 0) + item["counts"]
            publisher.submit(out_dir / SHARD_PATTERN.format(index=publisher.submitted), table)

        pending: list[pa.Table] = []
        held = 0
        for table in tables:
            if table.schema != schema:
                raise ValueError(f"table schema differs from the shard schema: {table.schema}")
            pending.append(table)
            held += table.num_rows
            while held >= shard_rows:
                rows = pa.concat_tables(pending)
                put(rows.slice(0, shard_rows))
                rest = rows.slice(shard_rows)
                pending, held = ([rest] if rest.num_rows else []), rest.num_rows
        if held:
            put(pa.concat_tables(pending))

    shards = publisher.entries
    listed = {shard["name"] for shard in shards}
    for stale in out_dir.glob("part-*.parquet"):
        if stale.name not in listed:
            stale.unlink()
    manifest = {
        "source": source,
        "source_revision": source_revision,
        "schema": schema_string(schema),
        "total_rows": sum(shard["rows"] for shard in shards),
        "shards": shards,
        "splits": dict(sorted(splits.items())),
    }
    _write_atomic(out_dir / MANIFEST_NAME, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest


class _Publisher:
    """Publishes shards with ``_publish_shard`` on background threads and keeps their manifest
    entries in order (``entries``).

    Encoding a shard runs in Arrow without the GIL and its fsync is mostly waiting for the disk;
    meanwhile the caller builds the next shard. ``submit`` first waits for the oldest shard in
    flight (and raises its error, if it had one) while two are in flight, or while the new one and
    those in flight would hold more than ``PUBLISH_BYTES``; leaving the ``with`` block waits for
    all of them, so nothing is still being written once the writer returns or raises.
    """

    def __init__(self):
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shard-publish")
        self.in_flight: deque[tuple[Future, int]] = deque()  # (publication, bytes held), oldest first
        self.entries: list[dict] = []
        self.submitted = 0

    def submit(self, path: Path, table: pa.Table) -> None:
        size = table.nbytes
        while self.in_flight and (len(self.in_flight) == 2
                                  or size + sum(held for _, held in self.in_flight) > PUBLISH_BYTES):
            self._finish_oldest()
        self.in_flight.append((self.pool.submit(_publish_shard, path, table), size))
        self.submitted += 1

    def wait(self) -> None:
        while self.in_flight:
            self._finish_oldest()

    def _finish_oldest(self) -> None:
        publication, _ = self.in_flight.popleft()
        self.entries.append(publication.result())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        try:
            if kind is None:
                self.wait()  # a failed last shard raises here
        finally:
            self.pool.shutdown(wait=True)


def _publish_shard(path: Path, table: pa.Table) -> dict:
    """Serialise ``table`` and write it to ``path`` (unless an earlier run left these very bytes
    there); its manifest entry."""
    data = _parquet_bytes(table)
    entry = {"name": path.name, "rows": table.num_rows, "sha256": _sha256(data), "bytes": len(data)}
    if not _holds(path, entry["bytes"], entry["sha256"]):
        _write_atomic(path, data)
    return entry


def _holds(path: Path, size: int, digest: str) -> bool:
    """Whether ``path`` already has exactly these bytes (a shard completed by an earlier run)."""
    try:
        if path.stat().st_size != size:
            return False
        return _sha256(path.read_bytes()) == digest
    except FileNotFoundError:
        return False


def schema_string(schema: pa.Schema) -> str:
    """The schema as recorded in a manifest (field names and types, no metadata)."""
    return schema.to_string(show_field_metadata=False, show_schema_metadata=False)


def manifest_hash(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON (sorted keys, no whitespace): the data version."""
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def read_manifest(shard_dir: Path) -> dict:
    """Load ``manifest.json`` of ``shard_dir``; raise ValueError on a shard name that could escape it."""
    manifest = json.loads((Path(shard_dir) / MANIFEST_NAME).read_text())
    for shard in manifest["shards"]:
        _check_name(shard["name"])
    return manifest


def verify_shards(shard_dir: Path) -> list[str]:
    """Problems found in ``shard_dir`` against its manifest (empty list: all good).

    Checks each listed shard's presence, size, sha256 and row count, the total row count, and
    reports files the manifest does not list.
    """
    shard_dir = Path(shard_dir)
    try:
        manifest = read_manifest(shard_dir)
    except (OSError, ValueError, KeyError, TypeError) as error:
        return [f"{MANIFEST_NAME}: unreadable ({error})"]
    problems = []
    for shard in manifest["shards"]:
        problems += _shard_problems(shard_dir, shard)
    listed_rows = sum(shard["rows"] for shard in manifest["shards"])
    if listed_rows != manifest["total_rows"]:
        problems.append(
            f"{MANIFEST_NAME}: total_rows {manifest['total_rows']} != sum of shard rows {listed_rows}"
        )
    known = {MANIFEST_NAME, *(shard["name"] for shard in manifest["shards"])}
    problems += [
        f"{path.name}: not in the manifest" for path in sorted(shard_dir.iterdir()) if path.name not in known
    ]
    return problems


def iter_rows(
    shard_dir: Path, *, split: str | None = None, columns: Sequence[str] | None = None
) -> Iterator[dict]:
    """Stream rows back from ``shard_dir`` in manifest order, batch by batch.

    ``split`` keeps only that split's rows; ``columns`` limits the fields read.
    """
    shard_dir = Path(shard_dir)
    wanted = list(columns) if columns is not None else None
    read = wanted if wanted is None or split is None or "split" in wanted else [*wanted, "split"]
    for shard in read_manifest(shard_dir)["shards"]:
        parquet = pq.ParquetFile(shard_dir / shard["name"])
        for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=read):
            if split is not None:
                batch = batch.filter(pc.equal(batch.column("split"), split))
            if wanted is not None and read != wanted:
                batch = batch.select(wanted)
            yield from batch.to_pylist()


def _shard_problems(shard_dir: Path, shard: dict) -> list[str]:
    """What is wrong with one listed shard, if anything."""
    path = shard_dir / shard["name"]
    if not path.is_file():
        return [f"{shard['name']}: missing"]
    data = path.read_bytes()
    problems = []
    if len(data) != shard["bytes"]:
        problems.append(f"{shard['name']}: {len(data)} bytes, manifest says {shard['bytes']}")
    if _sha256(data) != shard["sha256"]:
        problems.append(f"{shard['name']}: sha256 differs from the manifest")
    try:
        rows = pq.ParquetFile(pa.BufferReader(data)).metadata.num_rows
    except (pa.ArrowException, OSError) as error:
        problems.append(f"{shard['name']}: not readable as Parquet ({error})")
    else:
        if rows != shard["rows"]:
            problems.append(f"{shard['name']}: {rows} rows, manifest says {shard['rows']}")
    return problems


def _check_name(name: str) -> None:
    """Reject a manifest entry that is not a plain file name inside the shard directory."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or ".." in name:
        raise ValueError(f"shard name {name!r} is not a plain file name")


def _parquet_bytes(table: pa.Table) -> pa.Buffer:
    """``table`` as one Parquet file with the fixed, deterministic writer settings (a buffer, not a
    ``bytes`` copy: hashing and writing read it in place)."""
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression=COMPRESSION,
        compression_level=COMPRESSION_LEVEL,
        write_statistics=[c for c in STATISTICS_COLUMNS if c in table.schema.names],
        write_page_index=False,
    )
    return sink.getvalue()


def _write_atomic(path: Path, data: bytes | pa.Buffer) -> None:
    """Write ``data`` to ``path`` via a hidden temporary file, fsync, then rename into place.

    On failure the temporary is removed (a reader never sees part of ``data`` under ``path``) and an
    OSError becomes a ShardWriteError naming ``path``.
    """
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException as error:
        with suppress(OSError):
            temporary.unlink()
        if isinstance(error, OSError):
            raise ShardWriteError(path, error) from error
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sha256(data: bytes | pa.Buffer) -> str:
    return hashlib.sha256(data).hexdigest()
