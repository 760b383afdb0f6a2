"""The evaluation side of the graph: one evaluation table per checkpoint, one partition per benchmark,
and ``stage_ablation``, which gathers every checkpoint's tables (all benchmarks) into one comparison.

Benchmarks whose copy is missing have no partition; they are listed, with how to get them, in the
assets' metadata. Adding a benchmark adds a partition and leaves the ones already evaluated fresh.
"""

from pathlib import Path

import dagster as dg

from assets.corpus import corpus_index
from assets.keys import CORPUS, STAGE_ABLATION, checkpoint_key, eval_key
from assets.upstream import latest_output
from medmo_pipeline import home
from medmo_pipeline.config import Recipe, stable_hash
from medmo_pipeline.evaluation.ablation import build_stage_ablation
from medmo_pipeline.plots import markdown_image
from resources.launcher import Launcher

EVALUATION_JOB = "medmo_pipeline.evaluation.run"


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


def evaluation_assets(recipe: Recipe, recipe_arg: list[str]) -> list[dg.AssetsDefinition]:
    """Each checkpoint's evaluation table, and the stage ablation over all of them."""
    return [*(evaluation_asset(name, recipe, recipe_arg) for name in recipe.checkpoints()),
            stage_ablation_asset(recipe)]


def evaluation_asset(name: str, recipe: Recipe, recipe_arg: list[str]) -> dg.AssetsDefinition:
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
    def _evaluation(context: dg.AssetExecutionContext, launcher: Launcher) -> dg.MaterializeResult:
        from medmo_pipeline.data.benchmarks.loading import unavailable

        benchmark = context.partition_key
        missing = unavailable([benchmark])
        if missing:  # the copy went away since the definitions loaded: fail this partition alone, at once
            raise dg.Failure(description=missing[benchmark], metadata={"benchmark": benchmark,
                                                                        "missing": missing[benchmark]})
        checkpoint_path, checkpoint_version = latest_output(context.instance, checkpoint)
        index = corpus_index(context, recipe.corpus.source_names())
        settings = evaluation_settings_hash(recipe)
        output = home.eval_dir() / name / benchmark / f"{settings[:12]}-{checkpoint_version[:12]}"
        return launcher.launch(context, EVALUATION_JOB, [
            *recipe_arg, "--name", name, "--checkpoint", checkpoint_path, "--corpus", index["index_path"],
            "--benchmark", benchmark, "--output", str(output), "--expect-hash", version,
        ])

    return _evaluation


def evaluation_settings_hash(recipe: Recipe) -> str:
    """The evaluation section without its benchmark list: the list is the partition set, so adding a
    benchmark adds a partition and leaves the ones already evaluated fresh."""
    section = recipe.section("evaluation")
    section["evaluation"] = {k: v for k, v in section["evaluation"].items() if k != "benchmarks"}
    return stable_hash(section)


def evaluation_code_version(recipe: Recipe, name: str) -> str:
    return stable_hash({"evaluation": evaluation_settings_hash(recipe), "checkpoint": recipe.chained_hash(name)})



PICTURES = [("plot", "png", "stage ablation"), ("plot_qa", "qa_png", "VQA and QA accuracy by stage"),
            ("plot_reports_grounding", "reports_grounding_png", "report and grounding scores by stage")]


def stage_ablation_asset(recipe: Recipe) -> dg.AssetsDefinition:
    """Every checkpoint's evaluation tables (all benchmarks) gathered into one comparison."""
    names = recipe.checkpoints()
    keys = [eval_key(name) for name in names]
    code_version = stable_hash([evaluation_code_version(recipe, name) for name in names])

    @dg.asset(
        key=STAGE_ABLATION, deps=keys, group_name="evaluation", code_version=code_version,
        description="Every checkpoint's held-out scores on every benchmark in one table and three plots, with the "
                    "paper's reported numbers as reference rows (reports/ under MEDMO_HOME).",
        kinds={"csv"},
    )
    def stage_ablation(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        from medmo_pipeline.data.benchmarks.loading import unavailable

        # A benchmark whose copy is missing, or not evaluated for every checkpoint yet, is left out and
        # listed (with how to get it); the others are compared.
        missing = unavailable(list(recipe.evaluation.benchmarks))
        eval_dirs, not_evaluated = {name: [] for name in names}, {}
        for benchmark in [b for b in recipe.evaluation.benchmarks if b not in missing]:
            try:
                found = {name: Path(latest_output(context.instance, key, benchmark)[0])
                         for name, key in zip(names, keys)}
            except dg.Failure as failure:
                not_evaluated[benchmark] = failure.description
                continue
            for name, directory in found.items():
                eval_dirs[name].append(directory)
        if not any(eval_dirs.values()):
            raise dg.Failure("no benchmark has been evaluated for every checkpoint yet",
                             metadata={"missing_benchmarks": missing, "not_evaluated": not_evaluated})
        result = build_stage_ablation(eval_dirs, home.reports_dir())
        table = result["table"]
        return dg.MaterializeResult(
            metadata={
                "table": dg.MetadataValue.md(table.round(3).to_markdown()),
                "csv": dg.MetadataValue.path(str(result["csv"])),
                "plot": dg.MetadataValue.path(str(result["png"])),
                "plot_qa": dg.MetadataValue.path(str(result["qa_png"])),
                "plot_reports_grounding": dg.MetadataValue.path(str(result["reports_grounding_png"])),
                # The pictures themselves, shown in the UI (Markdown with an inline image).
                **{f"{name}_image": dg.MetadataValue.md(markdown_image(result[key], alt))
                   for name, key, alt in PICTURES if Path(result[key]).is_file()},
                **{f"{row}.{col}": float(table.loc[row, col]) for row in table.index for col in table.columns
                   if table.loc[row, col] == table.loc[row, col]},
                # The paper's table beside ours, and the benchmarks left out (with how to get them).
                **paper_metadata(result, missing, not_evaluated),
            }
        )

    return stage_ablation


def paper_metadata(result: dict, missing: dict, not_evaluated: dict) -> dict:
    return {"paper_table": dg.MetadataValue.md(result["paper_table"].round(1).to_markdown()),
            "plot_paper": dg.MetadataValue.path(str(result["paper_png"])),
            "missing_benchmarks": dg.MetadataValue.json(missing),
            "not_evaluated": dg.MetadataValue.json(not_evaluated)}
