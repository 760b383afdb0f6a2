"""Stage ablation: every checkpoint's evaluation in one table and three figures (paper Figs. 5-6)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from medmo_pipeline.atomic import staged_file, write_text_atomic
from medmo_pipeline.evaluation.effects import (
    StagePlan,
    chain_plans,
    effects_text,
    plans_from_recipe,
    stage_effects,
)

# Column order of the table and panels of the figure; metrics not measured are left out.
HEADLINE_METRICS = [
    "grounding_mean_iou",
    "grounding_acc_iou50",
    "grounding_const_box_mean_iou",
    "closed_vqa_accuracy",
    "open_vqa_exact_match",
    "open_vqa_token_f1",
    "mcq_accuracy",
    "report_rouge_l",
    "caption_rouge_l",
    "instruction_rouge_l",
    "report_cider",
    "caption_cider",
]


QA_METRICS = ["closed_vqa_accuracy", "open_vqa_exact_match", "open_vqa_token_f1", "mcq_accuracy", "accuracy"]
REPORT_GROUNDING_METRICS = ["report_rouge_l", "caption_rouge_l", "instruction_rouge_l", "rouge_l",
                            "report_cider", "caption_cider", "cider",
                            "grounding_mean_iou", "grounding_acc_iou50", "grounding_const_box_mean_iou", "iou"]
REPORTED = {"medmo_8b": "MedMO-8B (reported)", "qwen3_vl_8b": "Qwen3VL-8B (reported)"}
# The paper's columns and the measured metric each compares with (paper scale: x 100).
PAPER_METRICS = {"accuracy": "accuracy", "rouge_l": ("report_rouge_l", "caption_rouge_l"),
                 "cider": ("report_cider", "caption_cider"), "ratescore": ("report_ratescore", "caption_ratescore"),
                 "sembscore": ("report_sembscore", "caption_sembscore"), "iou": "grounding_mean_iou"}


def gather(eval_dirs: dict[str, Path | list[Path]]):
    """Long table of every checkpoint's results (each checkpoint: one directory per benchmark), in
    training order."""
    import pandas as pd

    frames = []
    for name, directories in eval_dirs.items():
        for directory in directories if isinstance(directories, list) else [directories]:
            table = pd.read_parquet(Path(directory) / "table.parquet")
            table["checkpoint"] = name
            frames.append(table)
    return pd.concat(frames, ignore_index=True)


def reported_rows(benchmarks: list[str]):
    """The paper's MedMO-8B and Qwen3-VL-8B numbers for ``benchmarks``, as long-table rows whose metric
    is the paper's column (accuracy, rouge_l, iou, ...) on a 0-1 scale; benchmarks without reported
    numbers (the synthetic split) add nothing."""
    import pandas as pd

    from medmo_pipeline.data.benchmarks.registry import load_registry

    registry = {b.name: b for b in load_registry().benchmarks}
    rows = []
    for benchmark in benchmarks:
        if benchmark not in registry:
            continue
        for column, numbers in registry[benchmark].reported.items():
            for model, label in REPORTED.items():
                value = getattr(numbers, model)
                if value is not None:
                    rows.append({"checkpoint": label, "benchmark": benchmark, "metric": column,
                                 "value": value / 100 if value > 1 else value})
    return pd.DataFrame(rows, columns=["checkpoint", "benchmark", "metric", "value"])


def paper_comparison(measured, models: dict[str, str] | None = None):
    """The paper's table beside ours: one row per checkpoint, then one per reported model; one column
    per paper benchmark and column (``benchmark/column``, the paper's scale: % and CIDEr x 100), then
    the Table 1 "Avg." columns (plain means over their listed benchmarks, left empty for a checkpoint
    that did not evaluate all of them). Every benchmark the paper reports has its columns, evaluated
    here or not."""
    import pandas as pd

    from medmo_pipeline.data.benchmarks.registry import REPORTED_MODELS, load_registry

    registry = load_registry()
    models = models or {m: f"{label} (reported)" for m, label in REPORTED_MODELS.items() if m != "medmo_8b_before_rl"}
    checkpoints = list(dict.fromkeys(measured["checkpoint"])) if len(measured) else []
    table = {}
    for benchmark in registry.benchmarks:
        for column, numbers in benchmark.reported.items():
            key = f"{benchmark.name}/{column}"
            names = PAPER_METRICS[column] if isinstance(PAPER_METRICS[column], tuple) else (PAPER_METRICS[column],)
            for checkpoint in checkpoints:
                hit = measured[(measured.checkpoint == checkpoint) & (measured.benchmark == benchmark.name)
                               & measured.metric.isin(names)]["value"].dropna()
                table.setdefault(checkpoint, {})[key] = 100 * float(hit.iloc[0]) if len(hit) else float("nan")
            for model, label in models.items():
                table.setdefault(label, {})[key] = getattr(numbers, model)
    for group, title in (("vqa", "VQA Avg."), ("text_qa", "Text QA Avg.")):
        members = [f"{name}/accuracy" for name in registry.average_members(group)]
        for row in checkpoints:
            values = [table[row].get(m) for m in members]
            complete = all(v is not None and not np.isnan(v) for v in values)
            table[row][title] = float(np.mean(values)) if complete else float("nan")
        for model, label in models.items():
            table[label][title] = getattr(registry.reported_averages[group], model)
    return pd.DataFrame.from_dict(table, orient="index").astype(float)


def build_stage_ablation(eval_dirs: dict[str, Path | list[Path]], out_dir: Path,
                         plans: list[StagePlan] | None = None) -> dict:
    """Write ``stage_ablation.csv`` (one row per checkpoint, then the paper's reported rows; one column
    per metric, ``benchmark/metric`` when several benchmarks are evaluated), the long table with
    confidence intervals, three figures: every headline metric (``stage_ablation.png``, its footer
    saying what each stage was for and what it changed), VQA/QA accuracy by stage
    (``stage_ablation_qa.png``) and report and grounding scores by stage
    (``stage_ablation_reports_grounding.png``), and each stage's paired effect on its targets and
    protected metrics (``stage_effects.csv``, ``stage_effects.png``; ``plans``: each checkpoint's
    parent, purpose and guard, by default the current recipe's). Returns paths and the wide table."""
    import pandas as pd

    measured = gather(eval_dirs)
    order = list(eval_dirs)
    benchmarks = list(dict.fromkeys(measured["benchmark"]))
    reported = reported_rows(benchmarks)
    long = pd.concat([measured, reported], ignore_index=True) if len(reported) else measured
    several = len(benchmarks) > 1
    long["column"] = (long["benchmark"] + "/" + long["metric"]) if several else long["metric"]
    wide = long.pivot_table(index="checkpoint", columns="column", values="value", aggfunc="mean")
    rank = {m: i for i, m in enumerate(HEADLINE_METRICS)}
    columns = sorted(wide.columns, key=lambda c: (c.split("/")[0] if several else "",
                                                 rank.get(c.split("/")[-1], len(rank)), c))
    rows = order + [label for label in REPORTED.values() if label in wide.index]
    wide = wide.reindex(index=rows, columns=columns)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "stage_ablation.csv", "long_csv": out_dir / "stage_ablation_long.csv",
             "png": out_dir / "stage_ablation.png", "qa_png": out_dir / "stage_ablation_qa.png",
             "reports_grounding_png": out_dir / "stage_ablation_reports_grounding.png",
             "paper_csv": out_dir / "stage_ablation_paper.csv", "paper_png": out_dir / "stage_ablation_paper.png",
             "effects_csv": out_dir / "stage_effects.csv", "effects_png": out_dir / "stage_effects.png"}
    plans = plans if plans is not None else default_plans(order)
    effects = stage_effects(eval_dirs, plans)
    footer = effects_text(effects, {p.name: p.purpose for p in plans}, width=160)
    paper = paper_comparison(measured)
    write_text_atomic(paths["paper_csv"], paper.round(2).to_csv(index_label="model"))
    with staged_file(paths["paper_png"]) as staged:
        _plot_paper(paper, staged)
    write_text_atomic(paths["csv"], wide.round(4).to_csv(index_label="checkpoint"))
    write_text_atomic(paths["long_csv"], long.drop(columns="column").to_csv(index=False))
    figures = {"png": ([c for c in columns if c.split("/")[-1] in HEADLINE_METRICS], "Stage ablation"),
               "qa_png": ([c for c in columns if c.split("/")[-1] in QA_METRICS], "VQA and QA accuracy by stage"),
               "reports_grounding_png": ([c for c in columns if c.split("/")[-1] in REPORT_GROUNDING_METRICS],
                                         "Report and grounding scores by stage")}
    for key, (panels, title) in figures.items():
        with staged_file(paths[key]) as staged:
            _plot(long, rows, panels, staged, title, footer if key == "png" else "")
    write_text_atomic(paths["effects_csv"], effects.to_csv(index=False))
    with staged_file(paths["effects_png"]) as staged:
        plot_effects(effects, {p.name: p.purpose for p in plans}, staged)
    return {**paths, "table": wide, "paper_table": paper, "effects": effects}


def default_plans(order: list[str]) -> list[StagePlan]:
    """The current recipe's stages when its checkpoints are the ones compared; else each checkpoint
    follows the one before it."""
    from medmo_pipeline.config import RecipeError, load_recipe

    try:
        recipe = load_recipe()
    except RecipeError:
        return chain_plans(order)
    return plans_from_recipe(recipe) if recipe.checkpoints() == order else chain_plans(order)


def plot_effects(effects, purposes: dict[str, str], path: Path) -> None:
    """One panel per stage: the paired change (stage - parent) of each target (blue) and protected
    metric (grey) with its 95% interval; the title says what the stage was for."""
    from medmo_pipeline.plots import _pyplot

    plt = _pyplot()
    stages = list(dict.fromkeys(effects["stage"])) or ["(no stage)"]
    fig, axes = plt.subplots(1, len(stages), figsize=(4.2 * len(stages), 3.2), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        group = effects[effects.stage == stage]
        y = np.arange(len(group))[::-1]
        delta = group["delta"].to_numpy(dtype=float)
        err = np.clip(np.vstack([delta - group["ci_low"].to_numpy(dtype=float),
                                 group["ci_high"].to_numpy(dtype=float) - delta]), 0, None)
        colors = ["#36a" if role == "target" else "#999" for role in group["role"]]
        ax.barh(y, delta, xerr=err, color=colors, capsize=3)
        ax.set_yticks(y, [f"{m}{'' if r == 'target' else ' (guard)'}" for m, r in zip(group.metric, group.role)],
                      fontsize=7)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title("\n".join(textwrap.wrap(f"{stage}: {purposes.get(stage, '')}", 48)[:2]), fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        ax.xaxis.set_major_locator(plt.MaxNLocator(nbins=4))  # a small change's ticks would run together
    fig.suptitle("What each stage changed over its parent (same held-out samples; bars: 95% paired-bootstrap "
                 "interval; blue: the stage's targets, grey: metrics it must keep)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_paper(paper, path: Path) -> None:
    """One panel per paper benchmark column: our checkpoints (blue) beside the reported models (grey)."""
    from medmo_pipeline.plots import _pyplot

    plt = _pyplot()
    columns = list(paper.columns)
    cols = 6
    rows = int(np.ceil(len(columns) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    x = np.arange(len(paper.index))
    colors = ["#bbb" if "reported" in name else "#36a" for name in paper.index]
    for ax, column in zip(axes.flat, columns):
        ax.bar(x, np.nan_to_num(paper[column].to_numpy(dtype=float)), color=colors)
        ax.set_xticks(x, [name.replace(" (reported)", "*") for name in paper.index], rotation=60, fontsize=6)
        ax.set_title(column, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    fig.suptitle("Ours (blue) beside the paper's reported models (grey, *) on every benchmark the paper reports "
                 "(%, CIDEr x 100; a missing bar: not evaluated or not reported)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot(long, order: list[str], columns: list[str], path: Path, title: str, footer: str = "") -> None:
    from medmo_pipeline.plots import _pyplot

    plt = _pyplot()
    cols = max(1, min(3, len(columns)))
    rows = max(1, int(np.ceil(len(columns) / cols)))
    footer_inches = 0.16 * (footer.count("\n") + 1) if footer else 0.0
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.1 * rows + footer_inches), squeeze=False)
    x = np.arange(len(order))
    for ax, column in zip(axes.flat, columns):
        sub = long[long.column == column].groupby("checkpoint").first().reindex(order)
        values = sub["value"].to_numpy(dtype=float)
        low = sub["ci_low"].to_numpy(dtype=float) if "ci_low" in sub else values
        high = sub["ci_high"].to_numpy(dtype=float) if "ci_high" in sub else values
        # A score can sit outside its own bootstrap interval (a few samples, a corpus-level score): no negative bars.
        err = np.clip(np.nan_to_num(np.vstack([values - low, high - values])), 0, None)
        colors = ["#bbb" if "reported" in name else "#999" if name == "base_model" else "#c33" if name == "rl"
                  else "#36a" for name in order]
        ax.bar(x, np.nan_to_num(values), yerr=err, color=colors, capsize=3)
        ax.set_xticks(x, [name.replace(" (reported)", "\n(reported)") for name in order], rotation=20, fontsize=7)
        # Fractions share the 0-1 axis; CIDEr (pycocoevalcap's x10 scale) gets the room it needs.
        ax.set_ylim(0, max(1.0, float(np.nanmax(np.append(values + err[1], 0))) * 1.05))
        ax.set_title(column, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    if not columns:
        axes.flat[0].text(0.5, 0.5, "no metric of this kind was evaluated", ha="center", va="center")
    fig.suptitle(f"{title} (held-out; bars: 95% bootstrap CI; grey: the paper's reported numbers)", fontsize=10)
    if footer:  # what each stage was for and what it changed, paired intervals (evaluation.effects)
        fig.text(0.01, 0.005, footer, family="monospace", fontsize=7, va="bottom")
        fig.tight_layout(rect=(0, footer_inches / fig.get_figheight(), 1, 1))
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_table(wide) -> str:
    """Plain-text table for the console."""
    return wide.to_string(float_format=lambda v: f"{v:.3f}", na_rep="-")
