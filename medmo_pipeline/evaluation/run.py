"""Evaluation job: generate answers with one checkpoint, score them, write the eval table.

    python -m medmo_pipeline.evaluation.run --recipe embedded --name stage2 \
        --checkpoint .medmo/checkpoints/stage2/<key> --corpus .medmo/corpus/index/<v>.json \
        --output .medmo/eval/stage2/<key>

Writes ``table.parquet`` (long format: one row per benchmark x metric with value, n, a 95%
bootstrap interval and a note saying which variant the metric is), ``predictions.parquet`` (one
row per sample with its own scores) and ``lineage.json``; all visible only when complete.

Every benchmark is loaded before the model, so a benchmark that cannot be read (missing files,
unreadable gold labels) fails the job before any generation. A metric the registry declares for a
benchmark but that could not be computed (a plug-in that is not configured, no rows of its kind)
stays in the table as a row without a value whose note starts with "not computed:" and gives the
reason; the materialization metadata lists them under ``not_computed``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from medmo_pipeline.config import checked_recipe
from medmo_pipeline.jobs import entry_point, job_parser

TABLE_COLUMNS = ["checkpoint", "benchmark", "metric", "value", "n", "ci_low", "ci_high", "unparseable", "empty",
                 "note"]
NOT_COMPUTED = "not computed: "


@entry_point
def main(argv: list[str] | None = None) -> None:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="checkpoint name for the table (base_model, stage1, ...)")
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory or hub id")
    parser.add_argument("--corpus", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--benchmark", action="append",
                        help="benchmark to run (repeatable; default: every one the recipe lists)")
    args = parser.parse_args(argv)
    recipe, code_version = checked_recipe(args, "evaluation")
    unknown = sorted(set(args.benchmark or []) - set(recipe.evaluation.benchmarks))
    if unknown:
        parser.error(f"--benchmark {unknown}: not in the recipe's evaluation.benchmarks {recipe.evaluation.benchmarks}")

    from medmo_pipeline.jobs import Md, job_reporter

    with job_reporter() as reporter:
        started = time.time()
        import mlflow
        import pandas as pd

        from medmo_pipeline import tracking
        from medmo_pipeline.data import corpus
        from medmo_pipeline.data.benchmarks.loading import declared_metrics, load_counted
        from medmo_pipeline.data.model_images import decodable_rows
        from medmo_pipeline.evaluation.generation import generate_answers
        from medmo_pipeline.evaluation.scoring import score_benchmark
        from medmo_pipeline.model.checkpoint import parent_reference
        from medmo_pipeline.model.loading import load_model, load_processor

        spec = recipe.evaluation
        index = corpus.load_index(args.corpus)
        # Every benchmark is loaded (and checked) before the model: a missing copy fails here, naming
        # the benchmark and how to get it.
        loads = {name: load_counted(name, index, max_per_task=spec.max_samples_per_task)
                 for name in args.benchmark or spec.benchmarks}
        benchmarks = {name: load.rows for name, load in loads.items()}
        base = recipe.base_model
        model = load_model(args.checkpoint, trust_remote_code=base.trust_remote_code, allow_pickle=base.allow_pickle)
        processor = load_processor(args.checkpoint, trust_remote_code=base.trust_remote_code)
        tables, predictions, not_computed = [], [], {}
        skipped: dict[str, int] = {}
        for benchmark, rows in benchmarks.items():
            rows, skipped[benchmark] = decodable_rows(rows, reporter.log)
            loads[benchmark].skipped_undecodable = skipped[benchmark]  # in meta["rows"] and the lineage
            reporter.log(f"{args.name} on {benchmark}: {len(rows)} samples ({skipped[benchmark]} skipped: "
                         "undecodable images)")
            answers = generate_answers(
                model, processor, rows, max_new_tokens=dict(spec.max_new_tokens), batch_size=spec.batch_size,
                progress=lambda done, total: reporter.progress(done, total),
            )
            scores = score_benchmark(rows, answers, declared_metrics(benchmark), skipped=skipped[benchmark])
            tables += table_rows(args.name, benchmark, scores)
            predictions += [{"checkpoint": args.name, "benchmark": benchmark, **s} for s in scores.per_sample]
            not_computed.update({f"{benchmark}/{metric}": reason for metric, reason in scores.not_computed.items()})
            for metric, reason in scores.not_computed.items():
                reporter.log(f"{benchmark}/{metric} not computed: {reason}")
        table = pd.DataFrame(tables, columns=TABLE_COLUMNS)
        checkpoint_ref = parent_reference(args.checkpoint)
        with tracking.mlflow_run(
            recipe.tracking.experiment, f"eval-{args.name}-{'+'.join(args.benchmark or ['all'])}-{code_version[:8]}",
            params=recipe.section("evaluation"),
            tags={"stage": f"eval:{args.name}", "code_version": code_version,
                  "checkpoint": str(args.checkpoint), "checkpoint_data_version": str(checkpoint_ref["data_version"])},
        ) as run:
            mlflow.log_metrics({f"{row.benchmark}.{row.metric}": float(row.value) for row in table.itertuples()
                                if math.isfinite(row.value)})
            data_version = publish_eval_table(args.output, table, predictions, lineage={
                "checkpoint": checkpoint_ref, "corpus": corpus.lineage_view(index),
                "recipe": {"name": recipe.name, "hash": code_version}, "mlflow_run_id": run.info.run_id,
                "git_commit": tracking.git_commit(), "not_computed": not_computed,
                "rows": {name: load.counts() for name, load in loads.items()},
            })
            mlflow.log_artifact(str(args.output / "table.parquet"))
        meta = {
            "path": args.output.resolve(),
            "checkpoint": str(args.checkpoint),
            "checkpoint_data_version": str(checkpoint_ref["data_version"]),
            "benchmarks": sorted(set(table["benchmark"])),
            "samples": len(predictions),
            "mlflow_run_id": run.info.run_id,
            "table": Md(_markdown(table)),
            "wall_seconds": round(time.time() - started, 2),
            "not_computed": not_computed,
            "samples_skipped_undecodable": sum(skipped.values()),
        }
        meta.update({row.metric: round(float(row.value), 4) for row in table.itertuples() if math.isfinite(row.value)})
        meta["rows"] = {name: load.counts() for name, load in loads.items()}  # read, evaluated, filtered by reason
        reporter.report(meta, data_version=data_version)


def table_rows(checkpoint: str, benchmark: str, scores) -> list[dict]:
    """Long-table rows of one benchmark's ``scoring.BenchmarkScores``: one per result, then one per
    declared metric that was not computed (value, interval and n empty; the note gives the reason)."""
    from medmo_pipeline.evaluation.scoring import METRIC_NOTES

    rows = [{"checkpoint": checkpoint, "benchmark": benchmark, "metric": r.name, "value": r.value, "n": r.n,
             "ci_low": r.ci_low, "ci_high": r.ci_high, "unparseable": r.unparseable, "empty": r.empty,
             "note": METRIC_NOTES.get(r.name, "")} for r in scores.results]
    rows += [{"checkpoint": checkpoint, "benchmark": benchmark, "metric": metric, "value": math.nan, "n": 0,
              "ci_low": math.nan, "ci_high": math.nan, "unparseable": 0, "empty": 0, "note": NOT_COMPUTED + reason}
             for metric, reason in scores.not_computed.items()]
    return rows


def publish_eval_table(output: Path, table, predictions: list[dict], *, lineage: dict) -> str:
    """Write ``table.parquet``, ``predictions.parquet`` and ``lineage.json`` (with the data version)
    into ``output``, visible only when all three are complete; returns the data version.

    A failed write (disk full) raises an ``OSError`` naming ``output`` and leaves it as it was;
    two jobs writing the same ``output`` leave one of their tables, never a mix.
    """
    import pandas as pd

    from medmo_pipeline.atomic import staged_dir, write_json_atomic

    with staged_dir(Path(output)) as tmp:
        table.to_parquet(tmp / "table.parquet", index=False)
        pd.DataFrame(predictions).to_parquet(tmp / "predictions.parquet", index=False)
        data_version = _tables_version(tmp)
        write_json_atomic(tmp / "lineage.json", {**lineage, "data_version": data_version})
    return data_version


def _tables_version(directory: Path) -> str:
    from medmo_pipeline.atomic import file_sha256
    from medmo_pipeline.config import stable_hash

    return stable_hash({name: file_sha256(directory / name) for name in ("table.parquet", "predictions.parquet")}, 64)


def _markdown(table) -> str:
    lines = ["| benchmark | metric | value | 95% CI | n | unparseable | note |", "|---|---|---|---|---|---|---|"]
    for row in table.itertuples():
        if math.isfinite(row.value):
            value, interval = f"{row.value:.3f}", f"[{row.ci_low:.3f}, {row.ci_high:.3f}]"
        else:
            value, interval = "-", "-"
        note = str(row.note or "").replace("|", "/")
        lines.append(f"| {row.benchmark} | {row.metric} | {value} | {interval} | {row.n} | {row.unparseable} | {note} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
