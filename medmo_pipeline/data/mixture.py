"""Stage mixtures: how many samples a stage draws from each source, planned from the shards' counts.

``plan(index, mixture)`` reads only the small ``split`` and ``task`` columns of each source's shards
(never an image) and returns the stage's plan, plain JSON:

- per source: its shard files with their eligible rows per task (rows of the split whose task the
  stage keeps), the source's rows per task, its weighted rows (``task_weights`` repeat rows of a task)
  and its **quota**: the samples it contributes to one pass of the mixture;
- ``planned_samples``: one pass of the mixture, the sum of the quotas.

Quotas: with ``sources`` as a list (the paper's single epoch), each source's quota is its weighted
rows, so the stage makes one pass over each; a smaller ``max_samples`` scales them all down alike
(it never adds passes). With
explicit weights, source ``s`` gets ``round(planned * w_s / sum(w))`` where planned is
``max_samples`` or every weighted row once: a small source is then passed over several times, a large
one in part. ``data.stream`` turns a plan into the ordered, resumable stream a training job reads.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from medmo_pipeline.data import shards
from medmo_pipeline.recipe_schema import MixtureRecipe, stable_hash


def plan(index: dict, mixture: MixtureRecipe, *, split: str = "train") -> dict:
    """The stage's plan (see the module doc); a ValueError names a missing source or an empty mixture."""
    sources = {}
    for source in mixture.source_names():
        if source not in index["sources"]:
            raise ValueError(f"mixture source {source!r} is not in the corpus (sources: {sorted(index['sources'])})")
        sources[source] = source_counts(Path(index["sources"][source]["path"]), mixture, split)
    sources = {name: info for name, info in sources.items() if info["weighted_rows"]}
    if not sources:
        raise ValueError(f"mixture {mixture.source_names()} with tasks {mixture.tasks} selects no {split} rows")
    for name, quota in quotas(mixture, {n: info["weighted_rows"] for n, info in sources.items()}).items():
        sources[name]["quota"] = quota
    sources = {name: info for name, info in sources.items() if info["quota"]}
    recipe = mixture.model_dump(mode="json")
    return {
        "version": stable_hash({"mixture": recipe, "split": split,
                                "sources": {n: index["sources"][n]["data_version"] for n in sources}}, 64),
        "mixture_hash": stable_hash(recipe),
        "split": split,
        "weighting": "rows" if mixture.weights() is None else "explicit",
        "shuffle_window": mixture.shuffle_window,
        "task_repeats": {task: task_repeats(mixture, task) for task in mixture.tasks},
        "planned_samples": sum(info["quota"] for info in sources.values()),
        "declared_samples": mixture.declared_samples,
        "sources": sources,
    }


def source_counts(shard_dir: Path, mixture: MixtureRecipe, split: str) -> dict:
    """One source's eligible rows per shard and task, from the ``split`` and ``task`` columns only."""
    files, totals = [], Counter()
    for shard in shards.read_manifest(shard_dir)["shards"]:
        path = shard_dir / shard["name"]
        table = pq.read_table(path, columns=["split", "task"])
        table = table.filter(pc.and_(pc.equal(table.column("split"), split),
                                     pc.is_in(table.column("task"), value_set=_strings(mixture.tasks))))
        counts = {item["values"]: item["counts"] for item in pc.value_counts(table.column("task")).to_pylist()}
        if counts:
            files.append({"path": str(path), "rows": dict(sorted(counts.items()))})
            totals.update(counts)
    weighted = sum(n * task_repeats(mixture, task) for task, n in totals.items())
    return {"path": str(shard_dir), "rows": dict(sorted(totals.items())), "weighted_rows": weighted,
            "shards": files}


def task_repeats(mixture: MixtureRecipe, task: str) -> int:
    """How many times a row of ``task`` appears in its source's pass (``task_weights``, whole numbers)."""
    return max(1, int(mixture.task_weights.get(task, 1)))


def quotas(mixture: MixtureRecipe, weighted_rows: dict[str, int]) -> dict[str, int]:
    """Samples per source in one pass of the mixture (see the module doc)."""
    total_rows = sum(weighted_rows.values())
    weights = mixture.weights()
    if weights is None:  # at most one pass over each source
        planned = min(mixture.max_samples or total_rows, total_rows)
        shares = {name: rows / total_rows for name, rows in weighted_rows.items()}
    else:
        planned = mixture.max_samples or total_rows
        total_weight = sum(weights[name] for name in weighted_rows)
        shares = {name: weights[name] / total_weight for name in weighted_rows}
    return {name: round(planned * share) for name, share in shares.items()}


def describe(stage_plan: dict) -> dict[str, dict[str, int]]:
    """Eligible rows by source and task (asset metadata and lineage)."""
    return {name: dict(info["rows"]) for name, info in stage_plan["sources"].items()}


def markdown(stage_plan: dict) -> str:
    """The plan as a Markdown table: rows per source and task, each source's quota and passes."""
    tasks = sorted({task for info in stage_plan["sources"].values() for task in info["rows"]})
    lines = ["| source | " + " | ".join(tasks) + " | weighted rows | samples planned | passes |",
             "|---|" + "---|" * (len(tasks) + 3)]
    for name, info in stage_plan["sources"].items():
        counts = " | ".join(str(info["rows"].get(task, "")) for task in tasks)
        passes = info["quota"] / info["weighted_rows"]
        lines.append(f"| {name} | {counts} | {info['weighted_rows']} | {info['quota']} | {passes:.3g} |")
    total = f"**{stage_plan['planned_samples']}** samples planned ({stage_plan['weighting']} weighting)"
    if stage_plan.get("declared_samples"):
        total += f"; the reference reports {stage_plan['declared_samples']}"
    return "\n".join([*lines, "", total])


def _strings(values: list[str]):
    import pyarrow as pa

    return pa.array(list(values), type=pa.string())
