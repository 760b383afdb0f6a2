"""One large source curated in parts side by side, published as one source version.

A source whose input is larger than ``corpus.split_above_bytes`` is split into ``corpus.curation_parts``
parts by row range: its row stream is cut into chunks of ``CHUNK_ROWS`` rows and chunk ``c`` goes to
part ``c % parts``. Each part runs the ordinary streaming curation (``stream.curate``: checks,
quarantine, decontamination, de-duplication within the part) in its own process. A merge pass then
writes one shard directory: part 0's kept rows, then part 1's, and so on, dropping a row whose id an
earlier part kept (quarantined as ``duplicate_id``) or whose content an earlier part kept (counted
as a duplicate); the parts' quarantine tables become one, with row indices of the whole source.

Every step is deterministic, so the published version depends only on the input and the recipe
(the part count is in the corpus section). It equals a one-process curation's row set except for a
corner of de-duplication: a row that duplicates another row of its own part which is itself a
cross-part duplicate is dropped, where the one-process pass would have kept one of them.

Each part reads the whole row stream (``rows``, a picklable callable the caller gives: the source
layer's reader) and skips the chunks of other parts: the checks (image verification,
normalisation) are what the parts share out, reading rows is the cheap part.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medmo_pipeline.data import shards
from medmo_pipeline.data.curation.keys import BatchKeys, KeySet
from medmo_pipeline.data.curation.quarantine import QUARANTINE_NAME, QuarantineWriter, published_on_success
from medmo_pipeline.data.curation.rules import CurationLimits
from medmo_pipeline.data.curation.stream import curate
from medmo_pipeline.data.image_limits import ImageLimits, using_limits
from medmo_pipeline.schema.rows import SAMPLE_SCHEMA

CHUNK_ROWS = 10_000


def planned_parts(requested: int, split_above_bytes: int, input_bytes: Callable[[], int]) -> int:
    """How many parts a source curates in (1: one process): ``requested`` when its input (measured
    by ``input_bytes``, only when there is a choice to make) is larger than ``split_above_bytes``."""
    if requested < 2:
        return 1
    return requested if input_bytes() > split_above_bytes else 1


def part_rows(rows: Iterable, part: int, parts: int, chunk: int = CHUNK_ROWS) -> Iterator:
    """The rows of chunks ``part``, ``part + parts``, ``part + 2 parts``, ... of ``rows``."""
    for index, row in enumerate(rows):
        if (index // chunk) % parts == part:
            yield row


def source_index(local: int, part: int, parts: int, chunk: int = CHUNK_ROWS) -> int:
    """The index in the whole source of a part's ``local``-th input row."""
    return ((local // chunk) * parts + part) * chunk + local % chunk


def _curate_part(rows: Callable[[], Iterable], part: int, parts: int, chunk: int, work: Path, *, source: str,
                 shard_rows: int, limits: ImageLimits, eval_index, revision: str) -> dict:
    """One part, in a worker process."""
    with using_limits(limits):  # as a one-process curation does (the adapters' conversions too)
        report = curate(part_rows(rows(), part, parts, chunk), work / f"part-{part}", source=source,
                        eval_index=eval_index, shard_rows=shard_rows, source_revision=revision,
                        limits=CurationLimits(image=limits), quarantine_path=work / f"part-{part}.quarantine.parquet",
                        kept_origins=work / f"part-{part}.origins.arrow")
    report.pop("manifest")
    return report


def curate_in_parts(rows: Callable[[], Iterable], out_dir: Path, *, source: str, parts: int, shard_rows: int,
                    limits: ImageLimits, eval_index, revision: str, log: Callable[[str], None] = print,
                    chunk: int | None = None) -> dict:
    """Curate the rows ``rows()`` yields in ``parts`` processes and merge them into ``out_dir``; the
    report ``curate`` gives. ``rows`` is called once in each worker (so it must pickle)."""
    chunk = chunk or CHUNK_ROWS
    out_dir = Path(out_dir)
    work = out_dir.with_name(f"{out_dir.name}.parts")
    work.mkdir(parents=True, exist_ok=True)
    log(f"{source}: curating in {parts} parts side by side")
    # spawn: a worker must not inherit a parent's threads (Arrow's, the shard publisher's) mid-operation
    with ProcessPoolExecutor(max_workers=parts, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_curate_part, rows, part, parts, chunk, work, source=source, shard_rows=shard_rows,
                               limits=limits, eval_index=eval_index, revision=revision)
                   for part in range(parts)]
        reports = [future.result() for future in futures]
    report = merge_parts(reports, out_dir, source=source, shard_rows=shard_rows, revision=revision,
                         parts=parts, chunk=chunk)
    shutil.rmtree(work)
    log(f"{source}: {parts} parts merged, {report['rows_kept']} rows kept")
    return report


def merge_parts(reports: list[dict], out_dir: Path, *, source: str, shard_rows: int, revision: str, parts: int,
                chunk: int = CHUNK_ROWS) -> dict:
    """Write the parts' kept rows, in part order, as one shard directory; one quarantine table beside it."""
    out_dir = Path(out_dir)
    quarantine_path = out_dir.with_name(f"{out_dir.name}.{QUARANTINE_NAME}")
    quarantine = QuarantineWriter(quarantine_path)
    kept_ids, seen_content = KeySet(), KeySet()
    dropped = {"duplicate_id": 0, "duplicates_dropped": 0}

    def kept_tables():
        for part, report in enumerate(reports):
            for record in pq.read_table(report["quarantine_path"]).to_pylist():
                quarantine.add(source_index(record["row_index"], part, parts, chunk), record["row_id"],
                               record["source"], record["reason"], record["detail"],
                               file=record["file"], record=record["record"])  # where the row came from
            origins = _kept_origins(report)
            shard_dir, shard_start = Path(report["shard_dir"]), 0
            for shard in shards.read_manifest(shard_dir)["shards"]:
                table = pq.read_table(shard_dir / shard["name"], schema=SAMPLE_SCHEMA)
                keys, keep = BatchKeys(table, with_contamination=False), []
                # kept by earlier shards (looked up at once), and by this one so far
                id_kept, content_seen = kept_ids.contains(keys.id_keys), seen_content.contains(keys.content_keys)
                ids_now: set[int] = set()
                contents_now: set[int] = set()
                for row, (id_key, content_key) in enumerate(zip(keys.id_keys, keys.content_keys)):
                    if id_kept[row] or id_key in ids_now:
                        dropped["duplicate_id"] += 1
                        index, file, where = -1, "", ""  # -1: its input index is not known
                        if origins is not None:  # the part's kept rows, in shard order
                            index, file, where = (origins.column(name)[shard_start + row].as_py()
                                                  for name in ("row_index", "file", "record"))
                            index = source_index(index, part, parts, chunk)
                        quarantine.add(index, keys.ids[row], source, "duplicate_id",
                                       f"{keys.ids[row]} already kept by an earlier part", file=file, record=where)
                    elif content_seen[row] or content_key in contents_now:
                        dropped["duplicates_dropped"] += 1
                    else:
                        ids_now.add(id_key)
                        contents_now.add(content_key)
                        keep.append(row)
                kept_ids.add(sorted(ids_now), new=True)  # looked up above: none kept before
                seen_content.add(sorted(contents_now), new=True)
                shard_start += table.num_rows
                if keep:
                    yield table if len(keep) == table.num_rows else table.take(keep)

    with published_on_success(quarantine):
        manifest = shards.write_tables(kept_tables(), out_dir, shard_rows=shard_rows, source=source,
                                       source_revision=revision, schema=SAMPLE_SCHEMA)
    return _merged_report(reports, manifest, dropped, source=source, out_dir=out_dir, quarantine_path=quarantine_path)


def _kept_origins(report: dict) -> pa.Table | None:
    """Where a part's kept rows came from (``curate``'s ``kept_origins``), memory-mapped; None when
    the part did not write them."""
    path = report.get("kept_origins")
    if not path or not Path(path).is_file():
        return None
    return pa.ipc.open_file(pa.memory_map(path)).read_all()


def _merged_report(reports: list[dict], manifest: dict, dropped: dict, *, source: str, out_dir: Path,
                   quarantine_path: Path) -> dict:
    def total(key: str) -> int:
        return sum(r[key] for r in reports)

    def summed(key: str) -> dict:
        out: dict[str, int] = {}
        for report in reports:
            for name, count in report[key].items():
                out[name] = out.get(name, 0) + count
        return out

    reasons = summed("quarantined_by_reason")
    if dropped["duplicate_id"]:
        reasons["duplicate_id"] = reasons.get("duplicate_id", 0) + dropped["duplicate_id"]
    rows_in = total("rows_in")
    contaminated = summed("contaminated_by_kind")
    # Filtered as ``curate`` counts it: the parts' reasons (their duplicates and decontamination
    # included) plus the merge's duplicates; without it the partition's checks could not be computed.
    filtered = summed("filtered_by_reason")
    if dropped["duplicates_dropped"]:
        filtered["duplicate"] = filtered.get("duplicate", 0) + dropped["duplicates_dropped"]
    kept = manifest["total_rows"]
    return {
        "source": source, "rows_in": rows_in, "rows_kept": kept,
        "boxes_clipped": total("boxes_clipped"),  # counted in the parts, before the merge's drops
        "duplicates_dropped": total("duplicates_dropped") + dropped["duplicates_dropped"],
        "quarantined": sum(reasons.values()), "quarantined_by_reason": dict(sorted(reasons.items())),
        "filtered": sum(filtered.values()), "filtered_by_reason": dict(sorted(filtered.items())),
        "accounted": rows_in == kept + sum(reasons.values()) + sum(filtered.values()),
        "extension_mismatches": total("extension_mismatches"),  # counted in the parts, before the merge's drops
        "contaminated": sum(contaminated.values()), "contaminated_by_kind": dict(sorted(contaminated.items())),
        "quarantine_rate": sum(reasons.values()) / rows_in if rows_in else 0.0,
        "quarantine_path": str(quarantine_path), "shard_dir": str(out_dir),
        "data_version": shards.manifest_hash(manifest), "manifest": manifest, "parts": len(reports),
    }
