"""A stage's training rows as a stream: deterministic, split across ranks, resumable from a position.

Interface (all a training job or a rehearsal needs)::

    from medmo_pipeline.data import mixture, stream

    stage_plan = index.get("plan") or mixture.plan(index, recipe_mixture)   # counts only, no images
    rows = stream.MixtureStream(stage_plan, seed=recipe.seed)
    for position, row in rows.rows(start=0, rank=rank, world=world):   # endless; row = a sample dict
        ...
    dataset = stream.trainer_dataset(rows, features=..., to_example=..., world=world)  # for TRL/Trainer

What the stream is, for a given plan (hence corpus version) and seed:

- **Within a source**, pass ``p`` visits the source's shards in a permutation seeded by (seed, source,
  p); inside a shard, its eligible rows are taken in windows of ``shuffle_window`` rows, each window
  shuffled. Passes follow one another forever, so a source whose quota exceeds its rows is passed
  over again in a new order. A task with ``task_weights`` ``k`` is read by ``k`` lanes of its
  source, each in its own order and merged like sources: its copies are spread through the pass.
- **Across sources** (and lanes), sample ``j`` of source ``s`` sits at key ``(j + u) / quota_s``, ``u``
  a hash of (seed, s, j) in [0, 1); the stream is every source's samples merged by key. Each pass of the mixture
  (``planned_samples`` positions) then holds each source's quota, spread evenly through it, and the
  number of samples of each source before any position is computed from the keys alone, exactly
  (rational arithmetic): starting at position ``k`` costs one seek per source, not ``k`` reads.
- **Ranks**: rank ``r`` of ``world`` takes positions ``r, r + world, r + 2 world, ...``, the
  ``split_dataset_by_node`` striding: no rank holds another's samples; each reads the shards' bytes
  and decodes only its own rows' images (``trainer_dataset`` leaves decoding to the batch).

Memory per source is one shuffle window of rows (their PNG bytes) plus one Parquet read batch; time
to the first row is one seek per source. Neither depends on how many rows the corpus has.
"""

from __future__ import annotations

import heapq
import json
from collections import deque
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medmo_pipeline.recipe_schema import stable_hash

READ_BATCH_ROWS = 64
_UNIT = 1 << 53  # resolution of the per-sample jitter u
_MASK = (1 << 64) - 1


def _stable_int(*parts) -> int:
    return int(stable_hash(list(parts), 16), 16)


def _mix64(value: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of a 64-bit value."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def _rng(*parts) -> np.random.Generator:
    return np.random.default_rng(_stable_int(*parts))


class SourceStream:
    """One lane of a source: its rows of some tasks in stream order, from any sample number on.

    A source whose tasks all count once is one lane. With ``task_weights``, lane ``m`` holds the rows
    whose task repeats more than ``m`` times, each lane in its own order: the copies of a repeated row
    are spread through the pass, and the merge interleaves the lanes like sources.
    """

    def __init__(self, name: str, info: dict, *, tasks: list[str], lane: int, seed: int, window: int,
                 split: str, before_shard: Callable[[Path], None] | None = None):
        self.name, self.tasks, self.lane = name, tasks, lane
        self.before_shard = before_shard  # called with a shard's path before its rows are read (a check)
        self.seed, self.window, self.split = seed, window, split
        self.paths = [Path(s["path"]) for s in info["shards"]]
        self.sizes = [sum(n for task, n in s["rows"].items() if task in tasks) for s in info["shards"]]
        self.per_pass = sum(self.sizes)
        if self.per_pass == 0:
            raise ValueError(f"source {name!r} has no eligible rows of tasks {tasks}")

    def rows_from(self, sample: int) -> Iterator[dict]:
        """Rows from the lane's ``sample``-th on (0-based), endlessly."""
        passes, offset = divmod(sample, self.per_pass)
        while True:
            order = _rng(self.seed, self.name, self.lane, "pass", passes).permutation(len(self.paths))
            for shard_index in order:
                if offset >= self.sizes[shard_index]:
                    offset -= self.sizes[shard_index]
                    continue
                yield from self._shard_rows(int(shard_index), passes, offset)
                offset = 0
            passes += 1

    def _shard_rows(self, shard_index: int, passes: int, skip: int) -> Iterator[dict]:
        """One shard's rows of the lane in window-shuffled order, skipping the first ``skip``."""
        path = self.paths[shard_index]
        if self.before_shard is not None:
            self.before_shard(path)
        cheap = pq.read_table(path, columns=["split", "task"])
        keep = pc.and_(pc.equal(cheap.column("split"), self.split),
                       pc.is_in(cheap.column("task"), value_set=_string_array(self.tasks)))
        eligible = np.flatnonzero(keep.to_numpy(zero_copy_only=False))
        reader = _ShardReader(path)
        for start in range(skip - skip % self.window, len(eligible), self.window):
            rows = eligible[start:start + self.window]
            order = _rng(self.seed, self.name, self.lane, "window", passes, shard_index, start).permutation(len(rows))
            window_rows = reader.take(rows.tolist())
            for position in order[max(0, skip - start):]:
                yield window_rows[position]


def lanes(name: str, info: dict, repeats: dict[str, int]) -> list[tuple[list[str], int]]:
    """(tasks, quota) of each lane of a source: lane ``m`` holds the tasks repeated more than ``m``
    times, and gets its share of the source's quota by its rows (largest remainders, summing exactly)."""
    rounds = [[t for t in info["rows"] if repeats.get(t, 1) > m] for m in range(max(repeats.values(), default=1))]
    sizes = [sum(info["rows"][t] for t in tasks) for tasks in rounds]
    exact = [info["quota"] * size / sum(sizes) for size in sizes]
    quotas = [int(q) for q in exact]
    for m in sorted(range(len(exact)), key=lambda m: quotas[m] - exact[m])[:info["quota"] - sum(quotas)]:
        quotas[m] += 1
    return list(zip(rounds, quotas))


class _ShardReader:
    """Reads a shard's rows forward, batch by batch, handing out the ones asked for (ascending)."""

    def __init__(self, path: Path):
        self.batches = pq.ParquetFile(path, buffer_size=1 << 20).iter_batches(batch_size=READ_BATCH_ROWS)
        self.batch, self.batch_start = None, 0

    def take(self, rows: list[int]) -> list[dict]:
        out: list[dict] = []
        first = 0
        while first < len(rows):
            self._advance_to(rows[first])
            end = self.batch_start + self.batch.num_rows
            last = first
            while last < len(rows) and rows[last] < end:
                last += 1
            out += self.batch.take([r - self.batch_start for r in rows[first:last]]).to_pylist()
            first = last
        return out

    def _advance_to(self, row: int) -> None:
        while self.batch is None or row >= self.batch_start + self.batch.num_rows:
            if self.batch is not None:
                self.batch_start += self.batch.num_rows
            self.batch = next(self.batches)


class MixtureStream:
    """Every source's samples merged into one endless, deterministic stream (see the module doc)."""

    def __init__(self, plan: dict, *, seed: int, before_shard: Callable[[Path], None] | None = None):
        """``before_shard(path)`` runs before any lane reads a shard's rows (training's manifest check)."""
        self.plan, self.seed = plan, seed
        repeats = {t: int(n) for t, n in (plan.get("task_repeats") or {}).items()}
        self.sources: list[SourceStream] = []  # one per lane, in plan order
        self.quotas: list[int] = []
        for name, info in plan["sources"].items():
            for lane, (tasks, quota) in enumerate(lanes(name, info, repeats)):
                if quota:
                    self.sources.append(SourceStream(name, info, tasks=tasks, lane=lane, seed=seed,
                                                     window=plan.get("shuffle_window", 1024),
                                                     split=plan.get("split", "train"),
                                                     before_shard=before_shard))
                    self.quotas.append(quota)
        self.names = list(plan["sources"])
        self.planned = sum(self.quotas)
        self.salts = [_stable_int(seed, lane.name, lane.lane) & _MASK for lane in self.sources]

    def key(self, source: int, sample: int) -> Fraction:
        """Where sample ``sample`` of lane ``source`` sits in the merged order."""
        jitter = _mix64(self.salts[source] ^ _mix64(sample)) % _UNIT
        return Fraction(sample * _UNIT + jitter, self.quotas[source] * _UNIT)

    def counts_at(self, position: int) -> dict[str, int]:
        """Samples of each source among the stream's first ``position``."""
        counts = dict.fromkeys(self.names, 0)
        for lane, count in zip(self.sources, self._seek(position)[0]):
            counts[lane.name] += count
        return counts

    def _seek(self, position: int) -> tuple[list[int], list]:
        # Below threshold t, source s has floor(t q_s) samples, plus one if the next one's jitter is
        # small enough: at t = (position - S) / N that is at most `position` in all; the rest is merged.
        threshold = Fraction(max(0, position - len(self.quotas)), self.planned)
        counts = []
        for source, quota in enumerate(self.quotas):
            whole = int(threshold * quota)
            counts.append(whole + (1 if self.key(source, whole) < threshold else 0))
        heap = [(self.key(s, counts[s]), s) for s in range(len(self.quotas))]
        heapq.heapify(heap)
        for _ in range(position - sum(counts)):
            self._advance(heap, counts)
        return counts, heap

    def _advance(self, heap: list, counts: list[int]) -> int:
        _, source = heapq.heappop(heap)
        counts[source] += 1
        heapq.heappush(heap, (self.key(source, counts[source]), source))
        return source

    def rows(self, start: int = 0, *, rank: int = 0, world: int = 1) -> Iterator[tuple[int, dict]]:
        """This rank's rows from its ``start``-th on, endlessly, each with its index in the rank's part
        (rank ``r`` holds stream positions ``r + world * index``)."""
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in a world of {world}")
        position = start * world + rank
        counts, heap = self._seek(position)
        readers = [source.rows_from(count) for source, count in zip(self.sources, counts)]
        index = start
        while True:
            row = next(readers[self._advance(heap, counts)])
            if position % world == rank:
                yield index, row
                index += 1
            position += 1


class PositionLog:
    """Which stream index each example handed to the trainer came from, per part (rank).

    A ``to_example`` that drops rows makes the trainer's count of examples differ from the stream
    index; ``next_index(part, consumed)`` says where the stream stands once ``consumed`` examples of the
    part were used, which is what a checkpoint saves. Only the newest entries are kept: the trainer
    reads at most a few batches ahead of what it has used.
    """

    def __init__(self, keep: int = 1 << 16):
        self.entries: dict[int, deque] = {}
        self.keep = keep

    def record(self, part: int, example: int, index: int) -> None:
        self.entries.setdefault(part, deque(maxlen=self.keep)).append((example, index))

    def next_index(self, part: int, consumed: int, start: tuple[int, int]) -> int:
        """Stream index of the example after the first ``consumed`` (``start``: (example, index) the
        part began at)."""
        if consumed == start[0]:
            return start[1]
        for example, index in reversed(self.entries.get(part, ())):
            if example == consumed - 1:
                return index + 1
        raise LookupError(f"part {part}: example {consumed - 1} is not among the {self.keep} newest handed out")


def trainer_dataset(stream: MixtureStream, *, features, to_example: Callable[[dict], dict | None], world: int = 1,
                    starts: dict[int, tuple[int, int]] | None = None, positions: PositionLog | None = None,
                    sample_log: Path | None = None):
    """The stream as a ``datasets.IterableDataset`` with ``world`` parts, one per rank.

    Under torchrun, Accelerate gives rank ``r`` part ``r`` (``IterableDataset.shard``, as
    ``datasets.distributed.split_dataset_by_node`` does); ``world=1`` is one part that every rank
    iterates and slices by batch (what GRPO's grouped prompts need). ``to_example`` maps a row to the
    trainer's columns (``None`` drops it); with ``features`` (``datasets.Image`` columns) images stay
    PNG bytes until a batch decodes them, with ``features=None`` the examples pass as they are (the
    training jobs hand on the images their decodability check decoded: one decode per image).
    ``starts`` maps a part to (examples used, stream index) to resume from; ``positions`` records
    where each example came from; ``sample_log`` (a JSON-lines file) receives each handed-out
    example's part, stream index and sample id, for audits and tests.
    """
    import datasets
    from datasets.iterable_dataset import ExamplesIterable

    starts = starts or {}

    def generate(part: list[int]):
        for rank in part:
            example, first = starts.get(rank, (0, 0))
            log = open(sample_log, "a") if sample_log else None  # noqa: SIM115 - closed below
            try:
                for index, row in stream.rows(first, rank=rank, world=world):
                    item = to_example(row)
                    if item is None:
                        continue
                    if positions is not None:
                        positions.record(rank, example, index)
                    if log is not None:
                        log.write(json.dumps({"part": rank, "index": index, "id": row["id"]}) + "\n")
                        log.flush()
                    yield f"{rank}-{example}", item
                    example += 1
            finally:
                if log is not None:
                    log.close()

    iterable = ExamplesIterable(generate, {"part": list(range(world))})
    return datasets.IterableDataset(iterable, info=datasets.DatasetInfo(features=features))


def _string_array(values: list[str]):
    import pyarrow as pa

    return pa.array(values, type=pa.string())
