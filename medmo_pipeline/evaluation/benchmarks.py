"""Benchmarks an evaluation can run. The embedded default evaluates the synthetic held-out split."""

from __future__ import annotations

from pathlib import Path

from medmo_pipeline.data import shards


def synthetic_heldout(index: dict, *, max_per_task: int | None = None) -> list[dict]:
    """Every eval-split row of the corpus, capped per (source, task), in a stable order."""
    rows, seen = [], {}
    for source in sorted(index["sources"]):
        for row in shards.iter_rows(Path(index["sources"][source]["path"]), split="eval"):
            key = (source, row["task"])
            seen[key] = seen.get(key, 0) + 1
            if max_per_task is None or seen[key] <= max_per_task:
                rows.append(row)
    return rows


BENCHMARKS = {"synthetic_heldout": synthetic_heldout}


def load_benchmark(name: str, index: dict, *, max_per_task: int | None = None) -> list[dict]:
    if name not in BENCHMARKS:
        raise ValueError(f"evaluation.benchmarks: unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}")
    return BENCHMARKS[name](index, max_per_task=max_per_task)
