"""What each stage changed: its own targets and its protected metrics against its parent checkpoint.

A stage "rises" on a target when the 95% paired-bootstrap interval of (stage - parent) lies above
zero: the same held-out samples are scored by both checkpoints, so the interval resamples sample
ids and each resample takes the mean per-sample difference. Pairing removes the between-sample
spread that two separate intervals would carry, which is what lets a few hundred samples resolve a
change of a few hundredths. A protected metric (the stage's ``guard``) "fell" when the difference
is below ``-margin``.

Each stage of the paper's recipe is for something (paper Sec. 3, Figs. 5-6); the targets below say
what, in terms of the metrics the evaluation computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np

# What each stage of the four-stage recipe is for, as the metrics that should rise over its parent.
STAGE_TARGETS = {
    "stage1": ["caption_rouge_l", "closed_vqa_accuracy"],
    "stage2": ["grounding_mean_iou", "report_rouge_l"],
    "stage3": ["mcq_accuracy", "instruction_rouge_l"],
    "rl": ["grounding_mean_iou"],
}
EFFECT_COLUMNS = ["stage", "parent", "role", "metric", "parent_value", "value", "delta", "ci_low", "ci_high",
                  "n", "verdict"]


@dataclass(frozen=True)
class StagePlan:
    """One checkpoint's place in the comparison: its parent, purpose, targets and guard."""

    name: str
    parent: str
    purpose: str = ""
    targets: list[str] = field(default_factory=list)
    protected: list[str] = field(default_factory=list)
    margin: float = 0.0


def plans_from_recipe(recipe) -> list[StagePlan]:
    """Every trained checkpoint of ``recipe`` (SFT stages, then RL) with its parent and guard."""
    plans = []
    for name in recipe.checkpoints()[1:]:
        stage = recipe.stage(name)
        plans.append(StagePlan(name, stage.parent, stage.purpose, STAGE_TARGETS.get(name, []),
                               list(stage.guard.protected), float(stage.guard.margin)))
    return plans


def chain_plans(order: list[str]) -> list[StagePlan]:
    """Without a recipe: each checkpoint's parent is the one before it, with the default targets."""
    return [StagePlan(name, parent, targets=STAGE_TARGETS.get(name, [])) for parent, name in pairwise(order)]


def _answer(reference: str) -> str:
    from medmo_pipeline.reply_format import split_reasoning

    return split_reasoning(str(reference))[1].strip()


def metric_rows(predictions, metric: str):
    """The per-sample records a metric averages (``predictions.parquet`` of one checkpoint), indexed
    by sample id, with the column holding each sample's value; None for a metric without per-sample
    values here (CIDEr is a corpus score)."""
    if not {"benchmark", "id", "task", "reference", "score"} <= set(predictions.columns):
        return None
    tasks = {"grounding_mean_iou": "grounding", "caption_rouge_l": "caption", "report_rouge_l": "report",
             "instruction_rouge_l": "instruction"}
    if metric in tasks:
        rows = predictions[predictions.task == tasks[metric]]
    elif metric in ("closed_vqa_accuracy", "mcq_accuracy", "open_vqa_exact_match"):
        questions = predictions[predictions.task.isin(["vqa", "text_qa"])]
        answers = questions.reference.map(_answer)
        closed = (questions.task == "vqa") & answers.str.lower().isin(["yes", "no"])
        choice = ~closed & answers.str.fullmatch(r"[A-Z]")
        rows = questions[{"closed_vqa_accuracy": closed, "mcq_accuracy": choice,
                          "open_vqa_exact_match": ~closed & ~choice & (questions.task == "vqa")}[metric]]
    else:
        return None
    return rows.set_index(rows.benchmark + "/" + rows.id)["score"].astype(float)


def paired_interval(child: np.ndarray, parent: np.ndarray, resamples: int = 1000, seed: int = 0):
    """Mean of ``child - parent`` and its 95% percentile-bootstrap interval over resampled pairs.

    >>> d, low, high = paired_interval(np.array([1.0, 1, 1, 0]), np.array([0.0, 0, 1, 0]))
    >>> d, low <= d <= high
    (0.5, True)
    """
    diff = np.asarray(child, dtype=float) - np.asarray(parent, dtype=float)
    if diff.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
    return float(diff.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def stage_effects(eval_dirs: dict[str, Path | list[Path]], plans: list[StagePlan], resamples: int = 1000):
    """One row per (stage, target or protected metric): parent and stage values over the samples
    both scored, the paired difference with its 95% interval, and a verdict: "rises" / "no rise"
    for a target, "kept" / "fell" for a protected metric (beyond the guard's margin)."""
    import pandas as pd

    predictions = {name: _predictions(dirs) for name, dirs in eval_dirs.items()}
    rows = []
    for plan in plans:
        if plan.name not in predictions or plan.parent not in predictions:
            continue
        roles = [("target", m) for m in plan.targets] + [("protected", m) for m in plan.protected
                                                         if m not in plan.targets]
        for role, metric in roles:
            child = metric_rows(predictions[plan.name], metric)
            parent = metric_rows(predictions[plan.parent], metric)
            if child is None or parent is None:
                continue
            common = child.index.intersection(parent.index)
            child, parent = child.loc[common].fillna(0.0), parent.loc[common].fillna(0.0)
            delta, low, high = paired_interval(child.to_numpy(), parent.to_numpy(), resamples)
            if role == "target":
                verdict = "rises" if low > 0 else "no rise"
            else:
                verdict = "fell" if delta < -plan.margin else "kept"
            rows.append({"stage": plan.name, "parent": plan.parent, "role": role, "metric": metric,
                         "parent_value": float(parent.mean()) if len(common) else float("nan"),
                         "value": float(child.mean()) if len(common) else float("nan"),
                         "delta": delta, "ci_low": low, "ci_high": high, "n": len(common), "verdict": verdict})
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def _predictions(directories: Path | list[Path]):
    import pandas as pd

    directories = directories if isinstance(directories, list) else [directories]
    frames = [pd.read_parquet(Path(d) / "predictions.parquet") for d in directories
              if (Path(d) / "predictions.parquet").is_file()]
    if not frames:
        return pd.DataFrame(columns=["benchmark", "id", "task", "reference", "score"])
    return pd.concat(frames, ignore_index=True)


def effects_text(effects, purposes: dict[str, str] | None = None, width: int = 100) -> str:
    """Per stage: what it was for (its purpose), then one line per metric it should lift or keep:
    parent -> stage value, the paired difference with its 95% interval, and the verdict."""
    purposes = purposes or {}
    lines = []
    for stage, group in effects.groupby("stage", sort=False):
        parent = group["parent"].iloc[0]
        head = f"{stage} (from {parent})"
        if purposes.get(stage):
            head += f" for: {purposes[stage]}"
        lines.append(head[:width])
        for row in group.itertuples():
            mark = "target" if row.role == "target" else "guard "
            lines.append(f"  {mark} {row.metric:<21} {row.parent_value:6.3f} -> {row.value:6.3f}  "
                         f"{row.delta:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}]  n={row.n:<4} {row.verdict}")
    return "\n".join(line.rstrip() for line in lines)
