"""Benchmarks an evaluation can run: the embedded default's synthetic held-out split, and every
benchmark of ``recipes/benchmarks.yaml``, read through the training adapters.

``load_benchmark(name, index, max_per_task, root=...)`` returns sample-contract rows with split
"eval", in a deterministic order (the adapters' file order, loaders in registry order), capped per
(subset, task). Gold labels a benchmark file keeps inside its text (options in the question, boxes
in the reply) are moved into ``choices`` / ``boxes`` by ``evaluation.gold``; a grounding row
left without a gold box fails the load with ``gold.UnreadableGold`` naming the rows, before any
model runs. ``declared_metrics(name)`` is the registry's metric list of a benchmark.
"""

from __future__ import annotations

from pathlib import Path

from medmo_pipeline.data import shards
from medmo_pipeline.data.adapters import adapter
from medmo_pipeline.evaluation.gold import check_grounding_gold, gold_from_text
from medmo_pipeline.evaluation.registry import Benchmark, load_registry, resolve_benchmark_dir
from medmo_pipeline.home import medmo_home


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


def benchmarks_dir() -> Path:
    return medmo_home() / "benchmarks"


def load_benchmark(name: str, index: dict | None, max_per_task: int | None = None, *,
                   root: Path | None = None) -> list[dict]:
    """Rows of benchmark ``name``. ``index`` (the corpus index) serves ``synthetic_heldout``;
    registry benchmarks read their files under ``root`` (default ``$MEDMO_HOME/benchmarks/<name>``)."""
    if name in BENCHMARKS:
        rows = BENCHMARKS[name](index, max_per_task=max_per_task)
        check_grounding_gold(rows, name)
        return rows
    registry = load_registry()
    if name not in registry.names():
        known = sorted(set(BENCHMARKS) | set(registry.names()))
        raise ValueError(f"evaluation.benchmarks: unknown benchmark {name!r}; known: {known}")
    benchmark = registry.get(name)
    directory = Path(root) if root is not None else benchmarks_dir() / name
    return read_benchmark(benchmark, resolve_benchmark_dir(benchmark, directory), max_per_task)


def read_benchmark(benchmark: Benchmark, directory: Path, max_per_task: int | None = None) -> list[dict]:
    """Every loader's eval rows, stamped with the benchmark as source; ids ``name:[subset/]local_id``."""
    rows, seen = [], {}
    for loader in benchmark.loaders:
        options = {**loader.options, "split": "eval"}
        prefix = f"{loader.subset}/" if loader.subset else ""
        for row in adapter(loader.family).iter_samples(directory, options):
            if row["split"] != "eval":  # adapters that read the release's own split (DeepLesion)
                continue
            key = (loader.subset, row["task"])
            seen[key] = seen.get(key, 0) + 1
            if max_per_task is not None and seen[key] > max_per_task:
                continue
            row["id"] = f"{benchmark.name}:{prefix}{row['id']}"
            row["source"], row["license"] = benchmark.name, benchmark.licence
            rows.append(gold_from_text(row, benchmark.answers.types, benchmark.answers.box_scale))
    check_grounding_gold(rows, benchmark.name)
    return rows


def declared_metrics(name: str) -> list[str]:
    """The metrics the registry declares for benchmark ``name`` ([] for one it does not list)."""
    registry = load_registry()
    return list(registry.get(name).metrics) if name in registry.names() else []
