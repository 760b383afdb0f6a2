"""What runs without a person: the training pool, the regression guards, the nightly evaluation
schedule and the corpus source sensor.

- Training jobs queue for slots of the ``training`` pool (as many slots as training jobs fit the GPUs
  the profile declares, see ``resources.pools``); curation and evaluation run beside them.
- A regression guard is a blocking check on a checkpoint's evaluation table: no protected metric fell
  below the parent's. The next stage depends on that table, so a failed guard stops it in the same run,
  and ``refuse_after_failed_guard`` stops it in any later run (catastrophic forgetting).
- ``nightly_policy_evaluation`` re-evaluates the RL policy each night; off until switched on.
- ``corpus_source_sensor`` re-curates the ``corpus_shards`` partitions whose source changed.
"""

import json
from pathlib import Path

import dagster as dg

from assets.corpus import current_fingerprints
from assets.evaluation import benchmark_partitions, evaluated_benchmarks
from assets.keys import CORPUS, SOURCES, checkpoint_key, eval_key, guard_check_key
from assets.upstream import DATA_VERSION_TAG, latest_materialization, latest_output
from medmo_pipeline.config import Recipe, RecipeError


def guard_checks(recipe: Recipe) -> list[dg.AssetChecksDefinition]:
    """A regression guard for every stage whose recipe protects some metric. A protected name no
    evaluation computes would guard nothing (a metric neither table holds cannot drop), so it stops
    the definitions from loading, naming the field."""
    from medmo_pipeline.evaluation.scoring import METRIC_NOTES

    for name in [*recipe.stages, "rl"]:
        unknown = sorted(set(recipe.stage(name).guard.protected) - set(METRIC_NOTES))
        if unknown:
            where = "rl" if name == "rl" else f"stages.{name}"
            raise RecipeError(f"recipe {recipe.name!r}: {where}.guard.protected: {unknown} are not metrics an "
                              f"evaluation computes (known: {sorted(METRIC_NOTES)})")
    return [regression_check(name, recipe) for name in [*recipe.stages, "rl"] if recipe.stage(name).guard.protected]


def regression_check(name: str, recipe: Recipe):
    """Blocking check on a checkpoint's eval table: no protected metric fell below the parent's.

    The next stage depends on this eval table, so a failed check stops it (catastrophic forgetting).
    """
    from medmo_pipeline.evaluation.regression import compare_eval_dirs

    stage = recipe.stage(name)
    child, parent = eval_key(name), eval_key(stage.parent)

    @dg.asset_check(asset=child, name=guard_check_key(name).name, blocking=True,
                    additional_deps=[parent], partitions_def=benchmark_partitions(recipe),
                    description=f"{', '.join(stage.guard.protected)} within {stage.guard.margin} of "
                                f"{checkpoint_key(stage.parent).to_user_string()}, per benchmark")
    def _guard(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        benchmark = context.partition_key
        child_dir, _ = latest_output(context.instance, child, benchmark)
        parent_dir, _ = latest_output(context.instance, parent, benchmark)
        drops = compare_eval_dirs(Path(parent_dir), Path(child_dir), stage.guard.protected, stage.guard.margin)
        return dg.AssetCheckResult(
            passed=not drops,
            severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(d.describe() for d in drops) or f"no protected metric dropped on {benchmark}",
            metadata={"benchmark": benchmark, "protected": stage.guard.protected, "margin": stage.guard.margin,
                      "drops": [d.describe() for d in drops], "parent_eval": parent_dir},
        )

    return _guard


def failed_guard(instance: dg.DagsterInstance, recipe: Recipe, name: str) -> list[str]:
    """Per benchmark where the latest regression guard of checkpoint ``name`` failed: what dropped."""
    from dagster._core.event_api import PartitionKeyFilter

    if name not in [*recipe.stages, "rl"] or not recipe.stage(name).guard.protected:
        return []
    check = guard_check_key(name)
    found = []
    for benchmark in recipe.evaluation.benchmarks:
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [check], partition_filter=PartitionKeyFilter(key=benchmark)).get(check)
        event = latest.event.dagster_event if latest is not None and latest.event is not None else None
        evaluation = event.event_specific_data if event is not None else None
        if isinstance(evaluation, dg.AssetCheckEvaluation) and not evaluation.passed:
            found.append(f"benchmark {benchmark}: {evaluation.description}")
    return found


def refuse_after_failed_guard(instance: dg.DagsterInstance, recipe: Recipe, parent: str, key: dg.AssetKey) -> None:
    """Stop a stage whose parent's latest regression guard failed, in whichever run it last ran."""
    failures = failed_guard(instance, recipe, parent)
    if failures:
        raise dg.Failure(
            f"{key.to_user_string()} refuses to start: the latest regression guard of "
            f"{checkpoint_key(parent).to_user_string()} failed ({'; '.join(failures)}). Fix the recipe and "
            f"re-materialize {checkpoint_key(parent).to_user_string()} and its evaluation, or relax "
            f"{parent}.guard in the recipe.")


def nightly_policy_evaluation(recipe: Recipe) -> dg.ScheduleDefinition:
    """Re-evaluate the newest RL policy on every benchmark each night (catches benchmark or code drift)."""
    key = eval_key("rl")

    @dg.schedule(name="nightly_policy_evaluation", cron_schedule="0 2 * * *", target=[key],
                 default_status=dg.DefaultScheduleStatus.STOPPED,
                 description="Every night at 02:00: rl_policy_eval_table, one run per benchmark. Off until "
                             "switched on (UI: Automation, or `dagster schedule start`).")
    def _nightly(context: dg.ScheduleEvaluationContext):
        stamp = context.scheduled_execution_time.strftime("%Y-%m-%d") if context.scheduled_execution_time else "now"
        for benchmark in evaluated_benchmarks(recipe):
            yield dg.RunRequest(run_key=f"{stamp}:{benchmark}", partition_key=benchmark, asset_selection=[key],
                                tags={"medmo/reason": "nightly re-evaluation"})

    return _nightly


def source_sensor(recipe: Recipe):
    @dg.sensor(
        name="corpus_source_sensor", asset_selection=[CORPUS], minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Observes every source's fingerprint; re-curates the corpus_shards partitions whose "
                    "source changed since they were curated, and only those.",
    )
    def corpus_source_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        return changed_sources_result(context.instance, recipe, context.cursor, context.log)

    return corpus_source_sensor


def changed_sources_result(instance: dg.DagsterInstance, recipe: Recipe, cursor: str | None, log=None) -> dg.SensorResult:
    """An observation for each source whose fingerprint is new since the last tick (the cursor), and a
    run for each curated partition whose source differs from what it was curated from.

    A partition never curated is left for a person to launch (it is missing, not changed). The run key
    carries the fingerprint, so one change is curated once however many ticks see it.
    """
    seen = json.loads(cursor) if cursor else {}
    current = current_fingerprints(recipe, log)
    observations = [dg.AssetObservation(asset_key=SOURCES, partition=source, tags={DATA_VERSION_TAG: version})
                    for source, version in current.items() if seen.get(source) != version]
    requests = []
    for source, version in current.items():
        record = latest_materialization(instance, CORPUS, source)
        curated = record.asset_materialization.metadata.get("source_fingerprint") if record is not None else None
        if curated is not None and curated.value != version:
            requests.append(dg.RunRequest(run_key=f"{source}:{version[:16]}", asset_selection=[CORPUS],
                                          partition_key=source, tags={"medmo/reason": "source changed"}))
    return dg.SensorResult(run_requests=requests, asset_events=observations, cursor=json.dumps(current, sort_keys=True),
                           skip_reason=None if requests or observations else "no source changed")
