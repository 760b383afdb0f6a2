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

        eval_dirs = {name: [Path(latest_partition_output(context, key, benchmark))
                            for benchmark in recipe.evaluation.benchmarks]
                     for name, key in zip(names, keys)}
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
            }
        )

    return stage_ablation
