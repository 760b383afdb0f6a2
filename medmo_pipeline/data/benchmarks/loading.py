"""Benchmarks an evaluation can run: the embedded default's synthetic held-out split, and every
benchmark of ``recipes/benchmarks.yaml``, read through the training adapters or the benchmark
readers of ``data.benchmarks.readers``.

``load_benchmark(name, index, max_per_task, root=...)`` returns sample-contract rows with split
"eval", in a deterministic order (file order, loaders in registry order), capped per (subset,
task); ``load_counted`` returns them with the counts of rows loaded and filtered.

Loading is complete or loud, before any model runs (:class:`checks.BenchmarkLoadError`, naming
the file and the rows): a loader whose file pattern matches nothing in any of its layouts, a
missing image, a gold answer or reference that cannot be read, or fewer rows than the registry's
``expected_rows`` for a full copy (``partial=True`` accepts a sample copy). Rows the benchmark's
own protocol excludes (registry ``exclude``) and records an adapter leaves out on purpose (SLAKE's
other languages) are filtered and counted; a record an adapter quarantines fails the load. Gold labels a file keeps
inside its text (options in the question, boxes in the reply) are moved into ``choices`` /
``boxes`` by ``data.benchmarks.gold``.

Where benchmarks live: ``benchmarks_dir()`` is ``$MEDMO_BENCHMARKS_ROOT``, else
``$MEDMO_DATA_ROOT/benchmarks``, else ``$MEDMO_HOME/benchmarks``; each benchmark in ``<name>/``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from medmo_pipeline.data import shards
from medmo_pipeline.data.adapters.records import SourceLayoutError
from medmo_pipeline.data.annotations import AnnotationError
from medmo_pipeline.data.benchmarks.checks import (
    BenchmarkLoadError,
    duplicate_id,
    exclusion,
    missing_image,
    raise_problems,
    unreadable_gold,
)
from medmo_pipeline.data.benchmarks.gold import check_grounding_gold, gold_from_text
from medmo_pipeline.data.benchmarks.readers import items, reader
from medmo_pipeline.data.benchmarks.registry import (
    Benchmark,
    BenchmarkLoader,
    BenchmarkUnavailable,
    load_registry,
    resolve_benchmark_dir,
)
from medmo_pipeline.data.outcomes import RowFiltered, RowQuarantined
from medmo_pipeline.home import medmo_home
from medmo_pipeline.safe_paths import safe_glob


def synthetic_heldout(index: dict, *, max_per_task: int | None = None) -> list[dict]:
    """Every eval-split row of the corpus, capped per (source, task), in a stable order. Each
    source's shards are first held to its manifest (``shards.verify_shards``): a shard truncated,
    replaced or flipped since curation was scored as it was, or ended the job naming no manifest."""
    rows, seen = [], {}
    for source in sorted(index["sources"]):
        directory = Path(index["sources"][source]["path"])
        if problems := shards.verify_shards(directory):
            raise BenchmarkLoadError(f"held-out rows of {source!r}: {directory} does not match its manifest "
                             f"({'; '.join(problems[:5])}); re-curate the source (corpus_shards)")
        for row in shards.iter_rows(directory, split="eval"):
            key = (source, row["task"])
            seen[key] = seen.get(key, 0) + 1
            if max_per_task is None or seen[key] <= max_per_task:
                rows.append(row)
    return rows


BENCHMARKS = {"synthetic_heldout": synthetic_heldout}


@dataclass
class BenchmarkLoad:
    """A loaded benchmark: its rows, how many rows its files held (before the per-task cap), the
    rows filtered by reason, and how many of its rows the evaluation skipped because an image did
    not decode (set by the evaluation job; they are out of the scores' ``n``)."""

    rows: list[dict]
    read: int = 0
    filtered: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    skipped_undecodable: int = 0

    def counts(self) -> dict:
        # per benchmark: the job's metadata had only the sum over benchmarks of rows skipped, and
        # rows_evaluated counted them as evaluated
        return {"rows_read": self.read, "rows_evaluated": len(self.rows) - self.skipped_undecodable,
                "rows_skipped_undecodable": self.skipped_undecodable, "rows_filtered": dict(self.filtered),
                "files": list(self.files)}


def benchmarks_dir() -> Path:
    """Where benchmark copies live (see the module notes)."""
    if os.environ.get("MEDMO_BENCHMARKS_ROOT"):
        return Path(os.environ["MEDMO_BENCHMARKS_ROOT"])
    if os.environ.get("MEDMO_DATA_ROOT"):
        return Path(os.environ["MEDMO_DATA_ROOT"]) / "benchmarks"
    return medmo_home() / "benchmarks"


def benchmark_dir(benchmark: Benchmark) -> Path:
    """The default directory of ``benchmark``'s copy."""
    return benchmarks_dir() / (benchmark.directory or benchmark.name)


def load_counted(name: str, index: dict | None, max_per_task: int | None = None, *,
                 root: Path | None = None, partial: bool = False) -> BenchmarkLoad:
    """Benchmark ``name`` with its counts. ``index`` (the corpus index) serves ``synthetic_heldout``;
    registry benchmarks read their files under ``root`` (default :func:`benchmark_dir`)."""
    if name in BENCHMARKS:
        rows = BENCHMARKS[name](index, max_per_task=max_per_task)
        check_grounding_gold(rows, name)
        return BenchmarkLoad(rows, read=len(rows))
    registry = load_registry()
    if name not in registry.names():
        known = sorted(set(BENCHMARKS) | set(registry.names()))
        raise ValueError(f"evaluation.benchmarks: unknown benchmark {name!r}; known: {known}")
    benchmark = registry.get(name)
    directory = Path(root) if root is not None else benchmark_dir(benchmark)
    return read_counted(benchmark, resolve_benchmark_dir(benchmark, directory), max_per_task, partial=partial)


def load_benchmark(name: str, index: dict | None, max_per_task: int | None = None, *,
                   root: Path | None = None, partial: bool = False) -> list[dict]:
    """The rows of :func:`load_counted`."""
    return load_counted(name, index, max_per_task, root=root, partial=partial).rows


def read_benchmark(benchmark: Benchmark, directory: Path, max_per_task: int | None = None, *,
                   partial: bool = True) -> list[dict]:
    """The rows of :func:`read_counted` (a sample copy accepted unless ``partial=False``)."""
    return read_counted(benchmark, directory, max_per_task, partial=partial).rows


def loader_files(benchmark: Benchmark, loader: BenchmarkLoader, directory: Path) -> tuple[str, dict, list[str]]:
    """The reader, options and matched files of the first layout of ``loader`` (main layout, then its
    ``layouts``) whose ``file`` pattern matches; a layout without ``file`` reads ``directory`` as a whole."""
    tried = []
    for family, options in loader.option_sets():
        pattern = options.get("file")
        if not pattern:
            return family, options, [""]
        matches = [path.relative_to(Path(directory).resolve()).as_posix()
                   for path in safe_glob(Path(directory).resolve(), pattern) if path.is_file()]
        if matches:
            return family, options, matches
        tried.append(pattern)
    subset = f" (subset {loader.subset})" if loader.subset else ""
    raise BenchmarkLoadError(
        f"benchmark {benchmark.name!r}{subset}: no file under {directory} matches {' or '.join(map(repr, tried))}. "
        f"Get it with: {benchmark.origin.how_to_get(Path(directory))}")


def read_counted(benchmark: Benchmark, directory: Path, max_per_task: int | None = None, *,
                 partial: bool = False) -> BenchmarkLoad:
    """Every loader's eval rows, stamped with the benchmark as source; ids ``name:[subset/]local_id``.
    Raises :class:`checks.BenchmarkLoadError` naming file and rows for anything that cannot be evaluated."""
    load, seen, problems, filtered, ids = BenchmarkLoad([]), Counter(), [], Counter(), {}
    exclusions = [rule.reason for rule in benchmark.exclude]
    for loader in benchmark.loaders:
        family, options, files = loader_files(benchmark, loader, directory)
        prefix = f"{loader.subset}/" if loader.subset else ""
        read_before = load.read
        load.files.extend(file or str(directory) for file in files)
        for file in _reads(family, options, files):
            file_options = {**options, "split": "eval", **({"file": file} if file else {})}
            for row in _items(benchmark, family, directory, file_options, loader.where):
                if type(row) is RowQuarantined:  # a record the adapter could not read: the load fails
                    where = f"{row.record} ({row.local_id})" if row.local_id else row.record or "?"
                    problems.append((row.file or file, where, f"{row.reason}: {row.detail}"))
                    continue
                if type(row) is RowFiltered:  # left out on purpose (SLAKE's other languages): counted
                    filtered[row.reason] += row.rows
                    continue
                if row["split"] != "eval":  # adapters that read the release's own split (DeepLesion)
                    continue
                load.read += 1
                row["id"] = f"{benchmark.name}:{prefix}{row['id']}"
                row["source"], row["license"] = benchmark.name, benchmark.licence
                reason = exclusion(row, exclusions)
                if reason is not None:
                    filtered[reason] += 1
                    continue
                seen[(loader.subset, row["task"])] += 1
                if max_per_task is not None and seen[(loader.subset, row["task"])] > max_per_task:
                    continue
                origin = row.get("origin")
                where = f"{origin[1]} ({row['id']})" if origin else f"row {row['id']}"
                try:
                    problem = duplicate_id(row, ids, f"{origin[0] if origin else file} {where}") or \
                        missing_image(row, needs_image=benchmark.modality != "text")
                    if problem is None:
                        row = gold_from_text(row, benchmark.answers.types, benchmark.answers.box_scale)
                        problem = unreadable_gold(row, choices_only=set(benchmark.answers.types) == {"multiple_choice"})
                except (ValueError, ArithmeticError, TypeError) as error:  # a value no check foresaw: this row's
                    problem = f"{type(error).__name__}: {error}"
                if problem is not None:
                    problems.append((origin[0] if origin else file or str(directory), where, problem))
                load.rows.append(row)
        if load.read == read_before:
            raise_problems(benchmark.name, problems)  # every row unreadable: those rows, not "no rows"
            raise BenchmarkLoadError(
                f"benchmark {benchmark.name!r}: loader {family}{' ' + loader.subset if loader.subset else ''} "
                f"read no rows from {files} under {directory} (options {options}); check the layout against "
                f"the registry's layout_source ({benchmark.layout_source})")
    raise_problems(benchmark.name, problems)
    load.filtered = dict(filtered)
    if not load.rows and max_per_task != 0:  # every row excluded by the protocol: it loaded, and scored nothing
        raise BenchmarkLoadError(
            f"benchmark {benchmark.name!r}: all {load.read} rows read from {load.files} under {directory} were "
            f"filtered ({load.filtered}); nothing is left to evaluate")
    if not partial and benchmark.expected_rows and load.read < benchmark.expected_rows:
        raise BenchmarkLoadError(
            f"benchmark {benchmark.name!r}: {directory} holds {load.read} rows in {load.files}, fewer than the "
            f"{benchmark.expected_rows} of the full release (a partial download?). Complete it: "
            f"{benchmark.origin.how_to_get(Path(directory))}")
    return load


def _reads(family: str, options: dict, files: list[str]) -> list[str]:
    """The files (or the one pattern) a loader's reader is run on: each matched file in turn, except
    where the reader numbers records by their place (no ``id_field``) and the pattern matched several
    files (PathVQA's test split ships as ``data/test-0000{0,1,2}-of-00003-*.parquet``). Those are read
    as one pattern, so the records are numbered across the files in name order, as the hub's split
    numbers them; read file by file, each file restarted at 0 and every id repeated."""
    numbered = getattr(reader(family).Options.model_validate(options), "id_field", None) == ""
    return [options["file"]] if numbered and len(files) > 1 else files


def _items(benchmark: Benchmark, family: str, directory: Path, options: dict, where: dict | None) -> Iterator:
    """``readers.items``, a problem of a whole file (a column the layout reads missing from its
    header, a file that does not parse) raised as BenchmarkLoadError naming the benchmark."""
    try:
        yield from items(family, directory, options, where)
    except (SourceLayoutError, AnnotationError) as error:
        raise BenchmarkLoadError(f"benchmark {benchmark.name!r}: {error}; compare the files under {directory} "
                                 f"with the registry's layout_source ({benchmark.layout_source})") from None


def unavailable(names: list[str]) -> dict[str, str]:
    """Of the benchmarks ``names``, those whose copy (or credentials) is missing: name -> what to do
    (the message of ``registry.BenchmarkUnavailable``: the benchmark, where it was looked for, how to get it)."""
    registry = load_registry()
    missing = {}
    for name in names:
        if name in BENCHMARKS or name not in registry.names():
            continue
        benchmark = registry.get(name)
        try:
            resolve_benchmark_dir(benchmark, benchmark_dir(benchmark))
        except BenchmarkUnavailable as error:
            missing[name] = str(error)
    return missing


def declared_metrics(name: str) -> list[str]:
    """The metrics the registry declares for benchmark ``name`` ([] for one it does not list)."""
    registry = load_registry()
    return list(registry.get(name).metrics) if name in registry.names() else []
