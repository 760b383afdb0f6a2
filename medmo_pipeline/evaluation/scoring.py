"""Score generated answers per task; one list of metric results and per-sample records.

Each task has one scoring rule here; the metric definitions themselves live in
``evaluation.metrics`` (each naming its reference). Grounding is scored on the original image's
pixel scale: predicted 0-1000 boxes go through ``boxes.relative_to_pixels``, the one conversion.

Questions (``vqa`` and ``text_qa`` rows) are scored by :func:`question_kind`: a VQA row whose gold
answer is yes/no is closed; a row with choices is multiple choice (the option letter or the option
text counts, an unreadable answer is wrong and counted as unparseable); any other VQA row is open
(exact match and SQuAD token F1, each taken from ``open_accuracy`` by its field name). Every
question benchmark also gets ``accuracy``, one number as the paper's Table 1 counts it: the share of
all its questions answered right (closed, multiple choice, open by exact match; see ACCURACY_NOTE).

Reports and captions get ROUGE-L (F1, beta 1, the ``rouge-score`` definition) and corpus CIDEr-D
(pycocoevalcap's definition and scale, x10; both sides tokenised by ``rouge_tokens``); instructions
get ROUGE-L. :data:`METRIC_NOTES` says which variant each table row is.

:func:`score_rows` computes every metric that needs no model; :func:`score_benchmark` adds the
plug-in metrics a benchmark declares (``registry.PENDING_METRICS``: RaTEScore, SembScore, LLM
judge) where the plug-in is configured and names every declared metric it could not compute, with
the reason, so none is dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from medmo_pipeline.answers import answer_text
from medmo_pipeline.data.benchmarks.gold import check_grounding_gold, yes_no_gold
from medmo_pipeline.evaluation import metrics as M
from medmo_pipeline.schema import boxes as box_scale
from medmo_pipeline.schema.box_text import MAX_REPLY_BOXES, parse_boxes

CIDER_TASKS = ("report", "caption")
ROUGE_TASKS = ("report", "caption", "instruction")

ACCURACY_NOTE = ("the paper's per-benchmark accuracy (Table 1): share of all questions answered right, closed "
                 "yes/no by yes/no match, multiple choice by option, open by exact match after normalisation")
# What each metric of the table is, where a name alone leaves the variant open (docs/benchmarks.md).
METRIC_NOTES = {
    "accuracy": ACCURACY_NOTE,
    **{f"{task}_rouge_l": "ROUGE-L F1 (beta 1, rouge-score tokenizer without stemming; pycocoevalcap uses beta 1.2)"
       for task in ROUGE_TASKS},
    **{f"{task}_cider": ("CIDEr-D as pycocoevalcap computes it (n 1-4, IDF over this benchmark's references, "
                         "sigma 6, x10; papers print 100 x value); tokens: rouge_tokens; 95% CI: samples "
                         "resampled, corpus score recomputed") for task in CIDER_TASKS},
    "open_vqa_exact_match": "exact match after normalisation (case, punctuation, articles)",
    "open_vqa_token_f1": "SQuAD v1.1 token F1 against the gold answer",
    "mcq_accuracy": "option letter or option text; an unreadable answer is wrong and counted as unparseable",
    "closed_vqa_accuracy": "yes/no; an answer that is neither is wrong and counted as unparseable",
    "grounding_mean_iou": "mean IoU over gold boxes after Hungarian matching (pixels, XYXY, no +1)",
    **{f"grounding_acc_iou{t}": f"share of rows whose matched mean IoU is at least 0.{t}" for t in (30, 50, 70)},
    "grounding_first_box_mean_iou": "IoU of the first predicted box with the first gold box",
    "grounding_const_box_mean_iou": "baseline: the evaluated rows' mean gold box as a constant answer",
    "report_ratescore": "RaTEScore (official package)", "caption_ratescore": "RaTEScore (official package)",
    "report_sembscore": "SembScore (CheXbert embedding cosine)", "caption_sembscore": "SembScore (CheXbert embedding cosine)",
    "open_vqa_llm_judge": "LLM judge accuracy (0/1 per answer)",
}

# Plug-in metrics: name -> (the rows it applies to, the plug-in that computes it).
PLUGIN_METRICS = {
    **{f"{rows}_{plugin}": (rows, plugin) for plugin in ("ratescore", "sembscore") for rows in ("report", "caption")},
    "open_vqa_llm_judge": ("open", "llm_judge"),
}
PLUGINS: dict[str, Callable[..., M.MetricResult]] = {
    "ratescore": M.ratescore, "sembscore": M.sembscore, "llm_judge": M.llm_judge,
}


def _rename(result: M.MetricResult, name: str) -> M.MetricResult:
    from dataclasses import replace

    return replace(result, name=name)


def gt_boxes(row: dict) -> list[tuple[float, float, float, float]]:
    return [(b["x1"], b["y1"], b["x2"], b["y2"]) for b in row["boxes"]]


def predicted_boxes(row: dict, prediction: str) -> list[tuple[float, float, float, float]]:
    width, height = row["images"][0]["width"], row["images"][0]["height"]
    # the answer, as the box reward reads it: a box tried and dropped in <think> is no prediction; read
    # no further than the metrics score (more than MAX_REPLY_BOXES is a malformed reply)
    return [box_scale.relative_to_pixels(b, width, height)
            for b in parse_boxes(answer_text(prediction), limit=MAX_REPLY_BOXES + 1)]


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
    if row["task"] == "vqa" and yes_no_gold(row["answer"]):  # "Yes." too: it was scored as open
        return "closed"
    if row["choices"]:
        return "multiple_choice"
    return "open" if row["task"] == "vqa" else None


def _closed(rows: list[dict], predictions: list[str]) -> list[tuple[str, M.MetricResult]]:
    return [("closed_vqa_accuracy", M.closed_accuracy(predictions, [r["answer"] for r in rows]))]


def _multiple_choice(rows: list[dict], predictions: list[str]) -> list[tuple[str, M.MetricResult]]:
    result = M.multiple_choice_accuracy(predictions, [r["choices"] for r in rows], [r["answer"] for r in rows])
    return [("mcq_accuracy", result)]


def _open(rows: list[dict], predictions: list[str]) -> list[tuple[str, M.MetricResult]]:
    scores = M.open_accuracy(predictions, [r["answer"] for r in rows])
    return [("open_vqa_exact_match", scores.exact_match), ("open_vqa_token_f1", scores.token_f1)]


# question kind -> scoring rule giving (metric name, result) pairs; the first is the row's "score",
# the others go into the per-sample record under the key of PER_SAMPLE_KEYS.
QUESTION_METRICS = {"closed": _closed, "open": _open, "multiple_choice": _multiple_choice}
PER_SAMPLE_KEYS = {"open_vqa_token_f1": "token_f1", **{f"{task}_cider": "cider" for task in CIDER_TASKS},
                   **{name: plugin for name, (_, plugin) in PLUGIN_METRICS.items()}}


def _reference(row: dict) -> str:
    return row["messages"][-1]["content"]


def cider_text(text: str | None) -> str:
    """Text as CIDEr reads it: ``rouge_tokens`` joined by single spaces (pycocoevalcap splits on " ").

    >>> cider_text("No acute cardio-pulmonary process.")
    'no acute cardio pulmonary process'
    """
    return " ".join(M.rouge_tokens(text))


def score_rows(rows: list[dict], predictions: list[str]) -> tuple[list[M.MetricResult], list[dict]]:
    """Metric results for every task present, and one record per sample with its own score.

    A record's ``score`` is its row's first metric (grounding mean IoU, the question's accuracy or
    exact match, ROUGE-L); open questions add ``token_f1`` and reports/captions ``cider``. Grounding
    rows without a gold box are refused before anything is scored (``gold.UnreadableGold``).
    """
    if len(rows) != len(predictions):
        raise ValueError(f"got {len(predictions)} predictions for {len(rows)} rows")
    check_grounding_gold(rows)
    results: list[M.MetricResult] = []
    per_sample: list[dict] = [
        {"id": r["id"], "source": r["source"], "task": r["task"], "prediction": p,
         "reference": _reference(r), "score": float("nan")}
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

    question_unparseable = 0
    for kind, rule in QUESTION_METRICS.items():
        idx, sel, preds = pick(lambda r, kind=kind: question_kind(r) == kind)
        if idx:
            for position, (name, result) in enumerate(rule(sel, preds)):
                results.append(_rename(result, name))
                record(idx, result.per_sample, "score" if position == 0 else PER_SAMPLE_KEYS[name])
                question_unparseable += result.unparseable if position == 0 else 0
    idx = [i for i, r in enumerate(rows) if question_kind(r) is not None]
    if idx:  # the paper's one accuracy per question benchmark (see ACCURACY_NOTE)
        results.append(M.summarize("accuracy", [per_sample[i]["score"] for i in idx], unparseable=question_unparseable,
                                   # blank as its parts count it: a reply of only <think> is empty too
                                   empty=sum(1 for i in idx if not answer_text(predictions[i]))))

    for task in ROUGE_TASKS:
        idx, sel, preds = pick(lambda r, task=task: r["task"] == task)
        if not idx:
            continue
        references = [_reference(r) for r in sel]
        result = _rename(M.rouge_l_score(preds, references), f"{task}_rouge_l")
        results.append(result)
        record(idx, result.per_sample)
        if task in CIDER_TASKS:
            cider = _rename(M.cider([cider_text(p) for p in preds], [[cider_text(r)] for r in references]),
                            f"{task}_cider")
            results.append(cider)
            record(idx, cider.per_sample, "cider")
    return results, per_sample


@dataclass(frozen=True)
class BenchmarkScores:
    """A benchmark's scores: the results, the per-sample records, and each declared metric that
    was not computed with the reason (``{metric: reason}``)."""

    results: list[M.MetricResult]
    per_sample: list[dict]
    not_computed: dict[str, str] = field(default_factory=dict)


def _plugin_rows(rows: list[dict], applies_to: str) -> list[int]:
    if applies_to == "open":
        return [i for i, r in enumerate(rows) if question_kind(r) == "open"]
    return [i for i, r in enumerate(rows) if r["task"] == applies_to]


def score_benchmark(
    rows: list[dict],
    predictions: list[str],
    declared: Iterable[str],
    *,
    plugins: Mapping[str, Callable[..., M.MetricResult]] | None = None,
    skipped: int = 0,
) -> BenchmarkScores:
    """:func:`score_rows`, plus the declared plug-in metrics, plus a reason for every declared metric
    that has no result.

    A plug-in runs only when the benchmark declares its metric. One that is not configured raises
    ``MetricUnavailable`` (its message names the package, model path or key that is missing); that
    message becomes the reason, e.g. ``ratescore plug-in unavailable: Python package ... is not installed``.
    Any other error of a plug-in propagates. ``plugins`` replaces :data:`PLUGINS` (tests, other
    backends). ``skipped``: the benchmark's rows left out before generation (undecodable images),
    named in the reason of a metric left without rows.
    """
    declared = list(dict.fromkeys(declared))
    results, per_sample = score_rows(rows, predictions)
    plugins = PLUGINS if plugins is None else plugins
    not_computed: dict[str, str] = {}
    for name in declared:
        if name not in PLUGIN_METRICS:
            continue
        applies_to, plugin = PLUGIN_METRICS[name]
        idx = _plugin_rows(rows, applies_to)
        if not idx:
            continue
        preds = [predictions[i] for i in idx]
        if applies_to == "open":
            references = [rows[i]["answer"] for i in idx]
            extra = {"questions": [rows[i]["messages"][0]["content"] for i in idx]}
        else:
            references, extra = [_reference(rows[i]) for i in idx], {}
        try:
            result = plugins[plugin](preds, references, **extra)
        except M.MetricUnavailable as error:
            not_computed[name] = f"{plugin} plug-in unavailable: {error}"
            continue
        results.append(_rename(result, name))
        for i, value in zip(idx, result.per_sample):
            per_sample[i][PER_SAMPLE_KEYS[name]] = float(value)
    scored = {result.name for result in results}
    # every row skipped (undecodable images) read as if the benchmark had none of the metric's kind
    left_out = f" ({skipped} row(s) of the benchmark skipped: undecodable images)" if skipped else ""
    for name in declared:
        if name not in scored and name not in not_computed:
            not_computed[name] = f"no evaluated row is of the kind this metric scores{left_out}"
    return BenchmarkScores(results, per_sample, not_computed)
