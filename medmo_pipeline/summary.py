"""The demo's closing table on a terminal: headline metrics only, at most 100 columns wide.

The full table (every metric, every benchmark) stays in ``reports/stage_ablation.csv``.
"""

from __future__ import annotations

import re
from pathlib import Path

WIDTH = 100
SHORT = [("grounding_", "gr_"), ("closed_vqa_", "cvqa_"), ("open_vqa_", "ovqa_"), ("accuracy", "acc"),
         ("exact_match", "em"), ("const_box_", "const_"), ("report_", "rep_"), ("instruction_", "instr_")]


def short_name(column: str) -> str:
    for long, short in SHORT:
        column = column.replace(long, short)
    return column


def effects_summary(reports: Path, purposes: dict[str, str], width: int = WIDTH) -> str:
    """What each stage was for and what it changed (``reports/stage_effects.csv``), or ''."""
    import pandas as pd

    from medmo_pipeline.evaluation.effects import effects_text

    path = reports / "stage_effects.csv"
    if not path.is_file():
        return ""
    return effects_text(pd.read_csv(path), purposes, width=width)


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


_STEP_DONE = re.compile(r'^(\S+ \S+) \S+ - dagster - \w+ - .* - STEP_SUCCESS - Finished execution of step "([^"]+)" '
                        r"in ([0-9.hms]+)\.")
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ")


def _seconds(text: str) -> float:
    """Dagster's step duration ('233ms', '50.9s', '1m5s', '1h2m3s') in seconds.

    >>> [_seconds(t) for t in ("233ms", "50.9s", "1m5s", "1h2m3s")]
    [0.233, 50.9, 65.0, 3723.0]
    """
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    total = 0.0
    for value, unit in re.findall(r"([0-9.]+)([hms])", text):
        total += float(value) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


def step_seconds(logs: Path) -> list[tuple[str, str, float]]:
    """(run log, step, seconds) of every step that finished, from the Dagster logs a ``medmo demo``
    writes under ``logs`` (one file per run it started), in the order they finished."""
    found = []
    for log in sorted(logs.glob("medmo-*.log")):
        run = log.stem.removeprefix("medmo-")
        for line in log.read_text(errors="replace").splitlines():
            match = _STEP_DONE.match(line)
            if match:
                found.append((match.group(1), run, match.group(2), _seconds(match.group(3))))
    return [(run, step, seconds) for _, run, step, seconds in sorted(found)]


def timing_table(logs: Path, total: float | None = None, width: int = WIDTH) -> str:
    """Where a demo's seconds went: each stage's steps summed (the corpus, the base model, each
    stage's data, training, evaluation and guard), the largest steps, and the total wall time.
    Corpus partitions run side by side, so their seconds add up to more than their wall time."""
    steps = step_seconds(logs)
    if not steps:
        return "(no finished step in the logs)"
    groups = dict.fromkeys(["corpus", "base_model", "stage1", "stage2", "stage3", "rl", "other"], 0.0)
    for run, step, seconds in steps:
        stage = _group(step, run)
        groups[stage] = groups.get(stage, 0.0) + seconds
    lines = [f"{'where':<12}{'seconds':>9}  steps (seconds)"]
    for stage, seconds in [(stage, seconds) for stage, seconds in groups.items() if seconds]:
        parts = ", ".join(f"{step.removeprefix(stage + '_') if stage != 'corpus' else run.split('_')[-1]} "
                          f"{s:.0f}" for run, step, s in steps
                          if _group(step, run) == stage and s >= 0.5)
        lines.append(f"{stage:<12}{seconds:>9.0f}  {parts}"[:width])
    if total is not None:
        lines.append(f"{'wall total':<12}{total:>9.0f}  (corpus partitions run side by side)")
    return "\n".join(lines)


def _group(step: str, run: str) -> str:
    if run.startswith("corpus"):
        return "corpus"
    head = step.split("_")[0]
    if head in ("stage1", "stage2", "stage3", "rl"):
        return head
    return "base_model" if step.startswith("base_model") else "other"
