"""The demo's closing table on a terminal: headline metrics only, at most 100 columns wide.

The full table (every metric, every benchmark) stays in ``reports/stage_ablation.csv``.
"""

from __future__ import annotations

WIDTH = 100
SHORT = [("grounding_", "gr_"), ("closed_vqa_", "cvqa_"), ("open_vqa_", "ovqa_"), ("accuracy", "acc"),
         ("exact_match", "em"), ("const_box_", "const_"), ("report_", "rep_"), ("instruction_", "instr_")]


def short_name(column: str) -> str:
    for long, short in SHORT:
        column = column.replace(long, short)
    return column


def headline_table(wide, width: int = WIDTH) -> str:
    """Rows: checkpoints (then the paper's reported rows); columns: as many headline metrics, in the
    table's order, as fit in ``width``; a last line says how many more the CSV holds."""
    import pandas as pd

    from medmo_pipeline.evaluation.ablation import HEADLINE_METRICS

    headline = [c for c in wide.columns if c.split("/")[-1] in HEADLINE_METRICS and wide[c].notna().any()]
    others = [c for c in wide.columns if c not in headline and wide[c].notna().any()]
    label_width = max(len(str(i)) for i in wide.index) + 1
    chosen, used = [], label_width
    for column in headline + others:
        cell = max(len(short_name(column)), 5) + 2
        if used + cell > width:
            break
        chosen.append(column)
        used += cell
    lines = [f"{'':<{label_width}}" + "".join(f"{short_name(c):>{max(len(short_name(c)), 5) + 2}}" for c in chosen)]
    for row in wide.index:
        cells = []
        for c in chosen:
            value = wide.loc[row, c]
            text = "-" if pd.isna(value) else f"{value:.3f}"
            cells.append(f"{text:>{max(len(short_name(c)), 5) + 2}}")
        lines.append(f"{row!s:<{label_width}}" + "".join(cells))
    left = len(headline) + len(others) - len(chosen)
    if left:
        lines.append(f"({left} more columns in reports/stage_ablation.csv)")
    return "\n".join(line.rstrip() for line in lines)
