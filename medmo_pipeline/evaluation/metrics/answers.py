"""Accuracy metrics of closed, open and multiple-choice questions.

Answers are read by :mod:`medmo_pipeline.answers` (re-exported here), the same code the RL
label-accuracy reward uses, so training reward and evaluation agree on every reply.

Deliberately free of the known MedEvalKit defects: every sample stays in the denominator exactly
once (no double division, no skipped empty responses), precision/recall/F1 travel under their names,
and an answer that cannot be read is wrong and counted, never mapped to the most similar option.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from medmo_pipeline.answers import answer_body, answer_text, normalize_text, option_index, yes_no
from medmo_pipeline.evaluation.metrics.result import MetricResult, summarize

__all__ = [
    "OpenAccuracy",
    "TokenOverlap",
    "answer_body",
    "answer_text",
    "closed_accuracy",
    "multiple_choice_accuracy",
    "normalize_text",
    "open_accuracy",
    "option_index",
    "token_overlap",
    "yes_no",
]


def closed_accuracy(predictions: Sequence[str | None], references: Sequence[str]) -> MetricResult:
    """Yes/no accuracy (the closed-question accuracy of VQA-RAD, SLAKE and PathVQA).

    Both sides go through :func:`yes_no`. A prediction that is neither yes nor no (empty ones
    included) scores 0 and is counted in ``unparseable``; a reference that is neither is an error.

    >>> r = closed_accuracy(["Yes.", "no, it is not", "", "unclear"], ["yes", "no", "no", "yes"])
    >>> (r.value, r.n, r.unparseable, r.empty)
    (0.5, 4, 2, 1)
    """
    _check_lengths(predictions, references)
    gold = [yes_no(ref) for ref in references]
    if None in gold:
        bad = references[gold.index(None)]
        raise ValueError(f"closed-question reference is neither yes nor no: {bad!r}")
    parsed = [yes_no(p) for p in predictions]
    scores = [float(p == g) for p, g in zip(parsed, gold)]
    return summarize(
        "closed_accuracy",
        scores,
        unparseable=sum(p is None for p in parsed),
        empty=_count_empty(predictions),
    )


@dataclass(frozen=True)
class TokenOverlap:
    """Token-level precision, recall and F1 of one prediction against its reference."""

    precision: float
    recall: float
    f1: float


def token_overlap(prediction: str | None, reference: str) -> TokenOverlap:
    """SQuAD v1.1 token F1 on :func:`normalize_text` tokens (bag of words with multiplicity).

    The prediction is read with :func:`answer_body` (``<answer>`` content, no "Answer:" prefix).
    precision = shared / prediction tokens, recall = shared / reference tokens.

    >>> token_overlap("left lower lobe", "lower lobe")
    TokenOverlap(precision=0.6666666666666666, recall=1.0, f1=0.8)
    """
    pred_tokens = normalize_text(answer_body(prediction)).split()
    ref_tokens = normalize_text(reference).split()
    if not ref_tokens:
        raise ValueError(f"reference has no tokens after normalisation: {reference!r}")
    shared = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if shared == 0:
        return TokenOverlap(0.0, 0.0, 0.0)
    precision = shared / len(pred_tokens)
    recall = shared / len(ref_tokens)
    return TokenOverlap(precision, recall, 2 * precision * recall / (precision + recall))


@dataclass(frozen=True)
class OpenAccuracy:
    """Open-question scores, each a MetricResult under its own name (never a positional tuple)."""

    exact_match: MetricResult
    token_precision: MetricResult
    token_recall: MetricResult
    token_f1: MetricResult
    per_sample: tuple[TokenOverlap, ...]

    def results(self) -> list[MetricResult]:
        return [self.exact_match, self.token_precision, self.token_recall, self.token_f1]


def open_accuracy(predictions: Sequence[str | None], references: Sequence[str]) -> OpenAccuracy:
    """Exact match and token precision/recall/F1 of open questions (SQuAD v1.1 definitions).

    Each value is a plain mean over all samples, divided once by their count; empty predictions
    score 0 everywhere and are counted in ``empty``.

    >>> scores = open_accuracy(["The left lung", "heart", ""], ["left lung", "enlarged heart", "liver"])
    >>> scores.exact_match.value, round(scores.token_recall.value, 4), scores.token_f1.empty
    (0.3333333333333333, 0.5, 1)
    """
    _check_lengths(predictions, references)
    overlaps = tuple(token_overlap(p, r) for p, r in zip(predictions, references))
    exact = [
        float(normalize_text(answer_body(p)) == normalize_text(r)) for p, r in zip(predictions, references)
    ]
    empty = _count_empty(predictions)
    return OpenAccuracy(
        exact_match=summarize("open_exact_match", exact, empty=empty),
        token_precision=summarize("open_token_precision", [o.precision for o in overlaps], empty=empty),
        token_recall=summarize("open_token_recall", [o.recall for o in overlaps], empty=empty),
        token_f1=summarize("open_token_f1", [o.f1 for o in overlaps], empty=empty),
        per_sample=overlaps,
    )


def multiple_choice_accuracy(
    predictions: Sequence[str | None],
    choices_list: Sequence[Sequence[str]],
    answers: Sequence[str],
) -> MetricResult:
    """Multiple-choice accuracy; ``answers`` are option letters ("A" is ``choices[0]``).

    A prediction parsed by :func:`option_index` as no option scores 0 and is counted in
    ``unparseable`` (so a non-answer scores 0, not about 1/k).

    >>> choices = [["Pneumonia", "Edema"], ["CT", "MRI", "X-ray"]]
    >>> r = multiple_choice_accuracy(["B", "I am not sure"], choices, ["B", "A"])
    >>> (r.value, r.unparseable)
    (0.5, 1)
    """
    _check_lengths(predictions, answers)
    _check_lengths(choices_list, answers)
    scores, unparseable = [], 0
    for prediction, choices, answer in zip(predictions, choices_list, answers):
        gold = ord(answer.strip().upper()) - ord("A") if len(answer.strip()) == 1 else -1
        if not 0 <= gold < len(choices):
            raise ValueError(f"answer {answer!r} is not an option letter for {len(choices)} choices")
        chosen = option_index(prediction, choices)
        unparseable += chosen is None
        scores.append(float(chosen == gold))
    return summarize(
        "multiple_choice_accuracy", scores, unparseable=unparseable, empty=_count_empty(predictions)
    )


def _count_empty(predictions: Sequence[str | None]) -> int:
    return sum(not answer_text(p) for p in predictions)


def _check_lengths(first: Sequence, second: Sequence) -> None:
    if len(first) != len(second):
        raise ValueError(f"got {len(first)} predictions/choices but {len(second)} references")
