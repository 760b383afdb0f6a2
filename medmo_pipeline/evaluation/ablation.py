"""Stage ablation: every checkpoint's evaluation in one table and one figure (paper Figs. 5-6)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medmo_pipeline.atomic import staged_file, write_text_atomic

# Column order of the table and panels of the figure; metrics not measured are left out.
HEADLINE_METRICS = [
    "grounding_mean_iou",
    "grounding_acc_iou50",
    "grounding_const_box_mean_iou",
    "closed_vqa_accuracy",
    "open_vqa_exact_match",
    "mcq_accuracy",
    "report_rouge_l",
    "caption_rouge_l",
    "instruction_rouge_l",
]


def gather(eval_dirs: dict[str, Path]):
    """Long table of every checkpoint's results, in training order."""
    import pandas as pd

    frames = []
    for name, directory in eval_dirs.items():
        table = pd.read_parquet(Path(directory) / "table.parquet")
        table["checkpoint"] = name
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def build_stage_ablation(eval_dirs: dict[str, Path], out_dir: Path) -> dict:
    """Write ``stage_ablation.csv`` (one row per checkpoint, one column per metric), the long
    table with confidence intervals, and ``stage_ablation.png``. Returns paths and the wide table."""
    long = gather(eval_dirs)
    order = list(eval_dirs)
    wide = long.pivot_table(index="checkpoint", columns="metric", values="value", aggfunc="mean")
    columns = [m for m in HEADLINE_METRICS if m in wide.columns] + sorted(
        c for c in wide.columns if c not in HEADLINE_METRICS
    )
    wide = wide.reindex(index=order, columns=columns)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, long_path, png_path = (out_dir / "stage_ablation.csv", out_dir / "stage_ablation_long.csv",
                                     out_dir / "stage_ablation.png")
    write_text_atomic(csv_path, wide.round(4).to_csv(index_label="checkpoint"))
    write_text_atomic(long_path, long.to_csv(index=False))
    with staged_file(png_path) as staged:
        _plot(long, order, [c for c in columns if c in HEADLINE_METRICS], staged)
    return {"csv": csv_path, "long_csv": long_path, "png": png_path, "table": wide}


def _plot(long, order: list[str], metrics: list[str], path: Path) -> None:
    from medmo_pipeline.plots import _pyplot

    plt = _pyplot()
    cols = min(3, len(metrics))
    rows = int(np.ceil(len(metrics) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.1 * rows), squeeze=False)
    x = np.arange(len(order))
    for ax, metric in zip(axes.flat, metrics):
        sub = long[long.metric == metric].set_index("checkpoint").reindex(order)
        values = sub["value"].to_numpy(dtype=float)
        err = np.vstack([values - sub["ci_low"].to_numpy(dtype=float), sub["ci_high"].to_numpy(dtype=float) - values])
        colors = ["#999" if name == "base_model" else "#c33" if name == "rl" else "#36a" for name in order]
        ax.bar(x, values, yerr=np.nan_to_num(err), color=colors, capsize=3)
        ax.set_xticks(x, order, rotation=20, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(metric, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle("Stage ablation on the held-out split (bars: 95% bootstrap CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_table(wide) -> str:
    """Plain-text table for the console."""
    return wide.to_string(float_format=lambda v: f"{v:.3f}", na_rep="-")
