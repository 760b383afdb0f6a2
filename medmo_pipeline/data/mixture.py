"""Stage mixtures: which corpus rows a stage trains on, drawn deterministically.

A mixture names sources with relative weights and the tasks it keeps. Its size is ``max_samples``
(or every eligible row once). Each source contributes ``size * weight / total_weight`` rows:
whole shuffled passes over its eligible rows, then a shuffled remainder, so small sources are
oversampled and large ones subsampled. ``task_weights`` repeats rows of a task (e.g. 3 for
grounding) before that draw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medmo_pipeline.config import MixtureRecipe, stable_hash
from medmo_pipeline.data import shards


def eligible_rows(index: dict, source: str, tasks: list[str], split: str) -> list[dict]:
    if source not in index["sources"]:
        raise ValueError(
            f"mixture source {source!r} is not in the corpus (sources: {sorted(index['sources'])})"
        )
    wanted = set(tasks)
    return [row for row in shards.iter_rows(Path(index["sources"][source]["path"]), split=split)
            if row["task"] in wanted]


def draw_mixture(index: dict, mixture: MixtureRecipe, *, seed: int, split: str = "train") -> list[dict]:
    """Rows of one stage's mixture, in a deterministic shuffled order."""
    rng = np.random.default_rng([seed, int(stable_hash(mixture.model_dump(mode="json"), 8), 16)])
    pools = {}
    for source in mixture.sources:
        rows = eligible_rows(index, source, mixture.tasks, split)
        weighted = [row for row in rows for _ in range(int(mixture.task_weights.get(row["task"], 1)))]
        if weighted:
            pools[source] = weighted
    if not pools:
        raise ValueError(f"mixture {mixture.sources} with tasks {mixture.tasks} selects no rows")
    total_weight = sum(mixture.sources[s] for s in pools)
    size = mixture.max_samples or sum(len(p) for p in pools.values())
    drawn: list[dict] = []
    for source, pool in pools.items():
        quota = round(size * mixture.sources[source] / total_weight)
        passes, remainder = divmod(quota, len(pool))
        order = [i for _ in range(passes) for i in rng.permutation(len(pool))]
        order += list(rng.permutation(len(pool))[:remainder])
        drawn.extend(pool[i] for i in order)
    return [drawn[i] for i in rng.permutation(len(drawn))]


def describe(rows: list[dict]) -> dict:
    """Counts by source and task, for lineage and metadata."""
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        by_task = out.setdefault(row["source"], {})
        by_task[row["task"]] = by_task.get(row["task"], 0) + 1
    return out
