"""Score generated answers per task; one list of metric results and per-sample records.

Each task has one scoring rule here; the metric definitions themselves live in
``evaluation.metrics`` (each naming its reference). Grounding is scored on the original image's
pixel scale: predicted 0-1000 boxes go through ``boxes.relative_to_pixels``, the one conversion.

Questions (``vqa`` and ``text_qa`` rows) are scored by :func:`question_kind`: a VQA row whose gold
answer is yes/no is closed; a row with choices is multiple choice (the option letter or the option
text counts, an unreadable answer is wrong and counted as unparseable); any other VQA row is open.
"""

from __future__ import annotations

import numpy as np

from medmo_pipeline import boxes as box_scale
from medmo_pipeline.evaluation import metrics as M
from medmo_pipeline.rewards.parsing import parse_boxes


def _rename(result: M.MetricResult, name: str) -> M.MetricResult:
    from dataclasses import replace

    return replace(result, name=name)


def gt_boxes(row: dict) -> list[tuple[float, float, float, float]]:
    return [(b["x1"], b["y1"], b["x2"], b["y2"]) for b in row["boxes"]]


def predicted_boxes(row: dict, prediction: str) -> list[tuple[float, float, float, float]]:
    width, height = row["images"][0]["width"], row["images"][0]["height"]
    return [box_scale.relative_to_pixels(b, width, height) for b in parse_boxes(prediction)]


def constant_box_baseline(rows: list[dict]) -> M.MetricResult:
    """Matched IoU of always answering the average ground-truth box (one copy per true box).

    The average is taken over the evaluated rows themselves on the relative scale, which favours
    the baseline: a model has to beat the best constant answer, not a guess.
    """
    relative = np.array([box_scale.pixels_to_relative(b, r["images"][0]["width"], r["images"][0]["height"])
                         for r in rows for b in gt_boxes(r)], dtype=float)
    mean_box = relative.mean(axis=0)
    ious = []
    for row in rows:
        width, height = row["images"][0]["width"], row["images"][0]["height"]
        guess = box_scale.relative_to_pixels(mean_box, width, height)
        ious.append(M.matched_iou([guess] * len(row["boxes"]), gt_boxes(row)))
    return M.summarize("grounding_const_box_mean_iou", ious)


def question_kind(row: dict) -> str | None:
    """"closed", "multiple_choice" or "open" for a question row; None for other rows (and for text
    QA without choices, which has no scoring rule)."""
    if row["task"] not in ("vqa", "text_qa"):
        return None
    if row["task"] == "vqa" and row["answer"].lower() in ("yes", "no"):
        return "closed"
    if row["choices"]:
        return "multiple_choice"
    return "open" if row["task"] == "vqa" else None


def _closed(rows: list[dict], predictions: list[str]) -> M.MetricResult:
    return M.closed_accuracy(predictions, [r["answer"] for r in rows])


def _multiple_choice(rows: list[dict], predictions: list[str]) -> M.MetricResult:
    return M.multiple_choice_accuracy(predictions, [r["choices"] for r in rows], [r["answer"] for r in rows])


def _open(rows: list[dict], predictions: list[str]) -> M.MetricResult:
    return M.open_accuracy(predictions, [r["answer"] for r in rows]).exact_match


QUESTION_METRICS = {  # question kind -> (metric name, scoring rule)
    "closed": ("closed_vqa_accuracy", _closed),
    "open": ("open_vqa_exact_match", _open),
    "multiple_choice": ("mcq_accuracy", _multiple_choice),
}


def score_rows(rows: list[dict], predictions: list[str]) -> tuple[list[M.MetricResult], list[dict]]:
    """Metric results for every task present, and one record per sample with its own score."""
    results: list[M.MetricResult] = []
    per_sample: list[dict] = [
        {"id": r["id"], "source": r["source"], "task": r["task"], "prediction": p,
         "reference": r["messages"][-1]["content"], "score": float("nan")}
        for r, p in zip(rows, predictions)
    ]

    def pick(condition):
        idx = [i for i, r in enumerate(rows) if condition(r)]
        return idx, [rows[i] for i in idx], [predictions[i] for i in idx]

    def record(idx, values, key="score"):
        for i, v in zip(idx, values):
            per_sample[i][key] = float(v)

    idx, sel, preds = pick(lambda r: r["task"] == "grounding")
    if idx:
        scores = M.grounding_scores([predicted_boxes(r, p) for r, p in zip(sel, preds)], [gt_boxes(r) for r in sel])
        results += [
            _rename(scores.matched.mean_iou, "grounding_mean_iou"),
            *(_rename(scores.matched.accuracy_at[t], f"grounding_acc_iou{round(100 * t)}") for t in M.IOU_THRESHOLDS),
            _rename(scores.first_box.mean_iou, "grounding_first_box_mean_iou"),
            constant_box_baseline(sel),
        ]
        record(idx, scores.matched.mean_iou.per_sample)

    for kind, (name, metric) in QUESTION_METRICS.items():
        idx, sel, preds = pick(lambda r, kind=kind: question_kind(r) == kind)
        if idx:
            result = _rename(metric(sel, preds), name)
            results.append(result)
            record(idx, result.per_sample)

    for task in ("report", "caption", "instruction"):
        idx, sel, preds = pick(lambda r, task=task: r["task"] == task)
        if idx:
            result = _rename(M.rouge_l_score(preds, [r["messages"][-1]["content"] for r in sel]), f"{task}_rouge_l")
            results.append(result)
            record(idx, result.per_sample)
    return results, per_sample
