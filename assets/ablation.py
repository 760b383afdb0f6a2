"""``stage_ablation``: gathers every checkpoint's evaluation tables (all benchmarks) into one comparison."""


from pathlib import Path

import dagster as dg

from medmo_pipeline import home
from medmo_pipeline.config import Recipe
from medmo_pipeline.evaluation.ablation import build_stage_ablation
from medmo_pipeline.plots import markdown_image

PICTURES = [("plot", "png", "stage ablation"), ("plot_qa", "qa_png", "VQA and QA accuracy by stage"),
            ("plot_reports_grounding", "reports_grounding_png", "report and grounding scores by stage")]


def stage_ablation_asset(recipe: Recipe, code_version: str):
    from assets.definitions import eval_key

    names = recipe.checkpoints()
    keys = [eval_key(name) for name in names]

    @dg.asset(
        key="stage_ablation", deps=keys, group_name="evaluation", code_version=code_version,
        description="Every checkpoint's held-out scores on every benchmark in one table and three plots, with the "
                    "paper's reported numbers as reference rows (reports/ under MEDMO_HOME).",
        kinds={"csv"},
    )
    def stage_ablation(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        from assets.definitions import latest_partition_output
        from medmo_pipeline.data.benchmarks.loading import unavailable

        # A benchmark whose copy is missing, or not evaluated for every checkpoint yet, is left out and
        # listed (with how to get it); the others are compared.
        missing = unavailable(list(recipe.evaluation.benchmarks))
        eval_dirs, not_evaluated = {name: [] for name in names}, {}
        for benchmark in [b for b in recipe.evaluation.benchmarks if b not in missing]:
            try:
                found = {name: Path(latest_partition_output(context, key, benchmark)) for name, key in zip(names, keys)}
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
