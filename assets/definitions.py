"""The asset graph, built from one recipe: corpus -> base model -> SFT stages -> RL -> evaluation.

Assets are thin (docs/architecture.md, rule 2): resolve the recipe section, build the job arguments, run it
through the ``launcher`` resource, return what the job reported over Pipes. Stage assets come from
one factory over the recipe's stages. Each asset's code version hashes its own recipe section together
with its upstream ones (``Recipe.chained_hash``), so a recipe edit shows that asset and everything
downstream of it as stale; the job itself checks only its own section (``--expect-hash``).
"""


from pathlib import Path

import dagster as dg

from assets.corpus import CORPUS, corpus_index, curation_assets, mixture_key, source_sensor
from medmo_pipeline import home
from medmo_pipeline.config import Recipe, resolve_recipe_path, stable_hash
from medmo_pipeline.recipe_checks import load_recipe
from resources.launcher import LocalLauncher

BASE = dg.AssetKey("base_model")
# Training jobs queue for this pool's slots (dagster.yaml: one by default; `dagster instance concurrency
# set training N` where N training jobs fit the GPUs); curation and evaluation run beside them.
TRAINING_POOL = "training"


def checkpoint_key(name: str) -> dg.AssetKey:
    """Recipe checkpoint name -> asset key: base_model, stageN_checkpoint, rl_policy."""
    if name == "base_model":
        return BASE
    return dg.AssetKey("rl_policy" if name == "rl" else f"{name}_checkpoint")


def eval_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(f"{checkpoint_key(name).path[-1]}_eval_table")


def latest_output(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, key: dg.AssetKey) -> tuple[str, str]:
    """Path and data version of the newest materialization of an upstream asset."""
    event = context.instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        raise dg.Failure(f"{key.to_user_string()} has not been materialized yet; materialize it first")
    materialization = event.asset_materialization
    metadata = materialization.metadata
    path_entry = metadata.get("path") or metadata.get("index_path")
    if path_entry is None:
        raise dg.Failure(f"{key.to_user_string()}'s latest materialization reports no path")
    version = materialization.tags.get("dagster/data_version", "") if materialization.tags else ""
    return str(path_entry.value), version


def build_definitions(recipe: Recipe, recipe_path: Path) -> dg.Definitions:
    recipe_arg = ["--recipe", str(recipe_path)]

    @dg.asset(
        key=BASE, group_name="training", code_version=recipe.chained_hash("base_model"),
        description="The base model every stage starts from (tiny offline Qwen3-VL, or a hub model).",
        kinds={"pytorch"},
    )
    def base_model(context: dg.AssetExecutionContext, launcher: LocalLauncher) -> dg.MaterializeResult:
        version = recipe.section_hash("base_model")
        output = home.models_dir() / "base" / version
        return launcher.launch(context, "medmo_pipeline.training.base_model",
                               [*recipe_arg, "--output", str(output), "--expect-hash", version])

    stage_assets = [
        training_asset(name, stage.parent, stage.purpose, "medmo_pipeline.training.sft", recipe, recipe_arg)
        for name, stage in recipe.stages.items()
    ]
    rl_asset = training_asset("rl", recipe.rl.parent, recipe.rl.purpose, "medmo_pipeline.training.grpo",
                              recipe, recipe_arg)
    eval_assets = [evaluation_asset(name, recipe, recipe_arg) for name in recipe.checkpoints()]
    guards = [regression_check(name, recipe) for name in [*recipe.stages, "rl"] if recipe.stage(name).guard.protected]

    from assets.ablation import stage_ablation_asset

    return dg.Definitions(
        assets=[*curation_assets(recipe, recipe_arg), base_model, *stage_assets, rl_asset, *eval_assets,
                stage_ablation_asset(recipe, code_version=stable_hash([evaluation_code_version(recipe, n)
                                                                       for n in recipe.checkpoints()]))],
        asset_checks=guards,
        sensors=[source_sensor(recipe)],
        schedules=[nightly_policy_evaluation(recipe)],
        resources={"launcher": LocalLauncher.from_profile(offline=recipe.offline)},
        executor=dg.in_process_executor,  # the heavy work runs in launched jobs, not in step processes
    )


def training_asset(name: str, parent: str, purpose: str, module: str, recipe: Recipe, recipe_arg: list[str]):
    """One training stage (SFT or RL): parent checkpoint + the stage's mixture in, checkpoint out."""
    key, parent_key = checkpoint_key(name), checkpoint_key(parent)
    version = recipe.section_hash(name)

    # The parent's evaluation comes first: its regression guard (a blocking check) can stop this stage in
    # the same run, and refuse_after_failed_guard stops it in a later one.
    @dg.asset(
        key=key, deps=[parent_key, eval_key(parent), mixture_key(name)], group_name="training",
        code_version=recipe.chained_hash(name), pool=TRAINING_POOL,
        description=f"{name}: {purpose} (parent: {parent_key.to_user_string()}).", kinds={"pytorch", "mlflow"},
    )
    def _stage(context: dg.AssetExecutionContext, launcher: LocalLauncher) -> dg.MaterializeResult:
        refuse_after_failed_guard(context.instance, recipe, parent, key)
        parent_path, parent_version = latest_output(context, parent_key)
        mixture_index, mixture_version = latest_output(context, mixture_key(name))
        # Same recipe + same parent + same data -> same directory (a re-run replaces it).
        output = home.checkpoints_dir() / name / f"{version[:12]}-{parent_version[:12]}-{mixture_version[:12]}"
        return launcher.launch(context, module, [
            *recipe_arg, "--stage", name, "--parent", parent_path, "--corpus", mixture_index,
            "--output", str(output), "--expect-hash", version,
        ])

    return _stage


def benchmark_partitions(recipe: Recipe) -> dg.StaticPartitionsDefinition:
    """One partition per benchmark whose copy is here: adding a benchmark (to the recipe, or its files
    to the benchmarks root, then reloading the code location) evaluates only that one."""
    return dg.StaticPartitionsDefinition(evaluated_benchmarks(recipe))


def evaluated_benchmarks(recipe: Recipe) -> list[str]:
    """The recipe's benchmarks whose copy is present (missing ones: ``missing_benchmarks``)."""
    missing = missing_benchmarks(recipe)
    return [name for name in recipe.evaluation.benchmarks if name not in missing]


def missing_benchmarks(recipe: Recipe) -> dict[str, str]:
    """The recipe's benchmarks whose copy or credentials are missing, with how to get them."""
    from medmo_pipeline.data.benchmarks.loading import unavailable

    return unavailable(list(recipe.evaluation.benchmarks))


def evaluation_asset(name: str, recipe: Recipe, recipe_arg: list[str]):
    """The evaluation table of one checkpoint, one partition per benchmark."""
    checkpoint = checkpoint_key(name)
    version = recipe.section_hash("evaluation")

    @dg.asset(
        key=eval_key(name), group_name="evaluation", partitions_def=benchmark_partitions(recipe),
        deps=[checkpoint, dg.AssetDep(CORPUS, partition_mapping=dg.AllPartitionMapping())],
        code_version=evaluation_code_version(recipe, name), automation_condition=dg.AutomationCondition.eager(),
        description=f"Evaluation table of {checkpoint.to_user_string()} on one benchmark (per-sample predictions "
                    "beside it); benchmarks of the recipe whose copy is missing have no partition and are listed "
                    "in missing_benchmarks with how to get them.",
        metadata={"missing_benchmarks": dg.MetadataValue.json(missing_benchmarks(recipe))},
        kinds={"parquet"},
    )
    def _evaluation(context: dg.AssetExecutionContext, launcher: LocalLauncher) -> dg.MaterializeResult:
        from medmo_pipeline.data.benchmarks.loading import unavailable

        benchmark = context.partition_key
        missing = unavailable([benchmark])
        if missing:  # the copy went away since the definitions loaded: fail this partition alone, at once
            raise dg.Failure(description=missing[benchmark], metadata={"benchmark": benchmark,
                                                                        "missing": missing[benchmark]})
        checkpoint_path, checkpoint_version = latest_output(context, checkpoint)
        index = corpus_index(context, recipe.corpus.source_names())
        settings = evaluation_settings_hash(recipe)
        output = home.eval_dir() / name / benchmark / f"{settings[:12]}-{checkpoint_version[:12]}"
        return launcher.launch(context, "medmo_pipeline.evaluation.run", [
            *recipe_arg, "--name", name, "--checkpoint", checkpoint_path, "--corpus", index["index_path"],
            "--benchmark", benchmark, "--output", str(output), "--expect-hash", version,
        ])

    return _evaluation


def latest_partition_output(context, key: dg.AssetKey, partition: str) -> str:
    """Path of the newest materialization of one partition of an upstream asset."""
    from assets.corpus import latest_partition

    event = latest_partition(context.instance, key, partition)
    if event is None:
        raise dg.Failure(f"{key.to_user_string()} partition {partition!r} has not been materialized yet")
    return str(event.metadata["path"].value)


def evaluation_settings_hash(recipe: Recipe) -> str:
    """The evaluation section without its benchmark list: the list is the partition set, so adding a
    benchmark adds a partition and leaves the ones already evaluated fresh."""
    section = recipe.section("evaluation")
    section["evaluation"] = {k: v for k, v in section["evaluation"].items() if k != "benchmarks"}
    return stable_hash(section)


def evaluation_code_version(recipe: Recipe, name: str) -> str:
    return stable_hash({"evaluation": evaluation_settings_hash(recipe), "checkpoint": recipe.chained_hash(name)})


def regression_check(name: str, recipe: Recipe):
    """Blocking check on a checkpoint's eval table: no protected metric fell below the parent's.

    The next stage depends on this eval table, so a failed check stops it (catastrophic forgetting).
    """
    from medmo_pipeline.evaluation.regression import compare_eval_dirs

    stage = recipe.stage(name)
    child, parent = eval_key(name), eval_key(stage.parent)

    @dg.asset_check(asset=child, name=f"{checkpoint_key(name).path[-1]}_no_regression", blocking=True,
                    additional_deps=[parent], partitions_def=benchmark_partitions(recipe),
                    description=f"{', '.join(stage.guard.protected)} within {stage.guard.margin} of "
                                f"{checkpoint_key(stage.parent).to_user_string()}, per benchmark")
    def _guard(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        benchmark = context.partition_key
        child_dir = latest_partition_output(context, child, benchmark)
        parent_dir = latest_partition_output(context, parent, benchmark)
        drops = compare_eval_dirs(Path(parent_dir), Path(child_dir), stage.guard.protected, stage.guard.margin)
        return dg.AssetCheckResult(
            passed=not drops,
            severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(d.describe() for d in drops) or f"no protected metric dropped on {benchmark}",
            metadata={"benchmark": benchmark, "protected": stage.guard.protected, "margin": stage.guard.margin,
                      "drops": [d.describe() for d in drops], "parent_eval": parent_dir},
        )

    return _guard


def guard_check_key(name: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(eval_key(name), f"{checkpoint_key(name).path[-1]}_no_regression")


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


def default_definitions() -> dg.Definitions:
    """Definitions for the recipe named by MEDMO_RECIPE (default: the embedded default)."""
    path = resolve_recipe_path()
    return build_definitions(load_recipe(path), path)
