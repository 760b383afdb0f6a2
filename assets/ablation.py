"""``stage_ablation``: gathers every checkpoint's evaluation table into one comparison."""


from pathlib import Path

import dagster as dg

from medmo_pipeline import home
from medmo_pipeline.evaluation.ablation import build_stage_ablation


def stage_ablation_asset(eval_keys: list[dg.AssetKey], names: list[str], code_version: str):
    @dg.asset(
        key="stage_ablation", deps=eval_keys, group_name="evaluation", code_version=code_version,
        description="Every checkpoint's held-out scores in one table and plot (reports/ under MEDMO_HOME).",
        kinds={"csv"},
    )
    def stage_ablation(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        from assets.definitions import latest_output

        eval_dirs = {name: Path(latest_output(context, key)[0]) for name, key in zip(names, eval_keys)}
        result = build_stage_ablation(eval_dirs, home.reports_dir())
        table = result["table"]
        return dg.MaterializeResult(
            metadata={
                "table": dg.MetadataValue.md(table.round(3).to_markdown()),
                "csv": dg.MetadataValue.path(str(result["csv"])),
                "plot": dg.MetadataValue.path(str(result["png"])),
                **{f"{row}.{col}": float(table.loc[row, col]) for row in table.index for col in table.columns
                   if table.loc[row, col] == table.loc[row, col]},
            }
        )

    return stage_ablation
