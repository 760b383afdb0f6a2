"""Answer normalisation and the accuracy metrics of closed, open and multiple-choice questions.

Deliberately free of the known MedEvalKit defects: every sample stays in the denominator exactly
once (no double division, no skipped empty responses), precision/recall/F1 travel under their names,
and an answer that cannot be read is wrong and counted, never mapped to the most similar option.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from medmo_pipeline.evaluation.metrics.result import MetricResult, summarize

_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.IGNORECASE | re.DOTALL)
_THINK_BLOCK = re.compile(r"<think>.*?(?:</think>|$)", re.IGNORECASE | re.DOTALL)
_ANSWER_PREFIX = re.compile(
    r"^\s*(?:the\s+)?(?:correct\s+|final\s+)?(?:answer|option|choice)\b\s*(?:is\b)?\s*[:\-]?\s*",
    re.IGNORECASE,
)
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCTUATION = str.maketrans({ch: " " for ch in string.punctuation})


def answer_text(response: str | None) -> str:
    """The answer part of a model response: the ``<answer>`` block if any, minus ``<think>`` blocks.

    >>> answer_text("<think>opacity on the left</think><answer> Yes </answer>")
    'Yes'
    """
    text = response or ""
    tagged = _ANSWER_TAG.search(text)
    if tagged:
        text = tagged.group(1)
    return _THINK_BLOCK.sub(" ", text).strip()


def normalize_text(text: str | None) -> str:
    """SQuAD v1.1 answer normalisation: lower case, punctuation and articles removed, spaces collapsed.

    >>> normalize_text("The  Left lung.")
    'left lung'
    """
    lowered = (text or "").lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", lowered).split())


def yes_no(response: str | None) -> str | None:
    """'yes' or 'no' when the answer starts with that word (after an optional "Answer:"), else None.

    >>> [yes_no(r) for r in ["Yes.", "yes, there is", "Answer: No", "maybe", ""]]
    ['yes', 'yes', 'no', None, None]
    """
    words = normalize_text(_ANSWER_PREFIX.sub("", answer_text(response))).split()
    if words and words[0] in ("yes", "no"):
        return words[0]
    return None


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

    precision = shared / prediction tokens, recall = shared / reference tokens.

    >>> token_overlap("left lower lobe", "lower lobe")
    TokenOverlap(precision=0.6666666666666666, recall=1.0, f1=0.8)
    """
    pred_tokens = normalize_text(answer_text(prediction)).split()
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
        float(normalize_text(answer_text(p)) == normalize_text(r)) for p, r in zip(predictions, references)
    ]
    empty = _count_empty(predictions)
    return OpenAccuracy(
        exact_match=summarize("open_exact_match", exact, empty=empty),
        token_precision=summarize("open_token_precision", [o.precision for o in overlaps], empty=empty),
        token_recall=summarize("open_token_recall", [o.recall for o in overlaps], empty=empty),
        token_f1=summarize("open_token_f1", [o.f1 for o in overlaps], empty=empty),
        per_sample=overlaps,
    )


# A bare option letter, optionally bracketed, then the end or ".", ")", ":" or "," (so the article in
# "A lesion is seen" is not read as option A).
_OPTION_LETTER = re.compile(r"^[(\[]?([A-Z])(?:[)\]]|[.:,](?=\s|$)|(?=\s*$))")


def option_index(response: str | None, choices: Sequence[str]) -> int | None:
    """The chosen option's index, or None when the response names no option unambiguously.

    Accepts a letter ("B", "(B)", "B.", "B. Pneumonia", "Answer: B", "The answer is (b)") within
    the choices' range, or text equal to exactly one option after :func:`normalize_text`.
    Nothing else: no nearest-option fallback.

    >>> [option_index(r, ["Pneumonia", "Edema", "Normal"]) for r in ["(B)", "answer: c", "edema.", "D", "lungs"]]
    [1, 2, 1, None, None]
    """
    text = _ANSWER_PREFIX.sub("", answer_text(response)).strip()
    if len(text.rstrip(".)]").lstrip("([")) == 1:
        text = text.upper()  # a lone letter may come in lower case
    letter = _OPTION_LETTER.match(text)
    if letter:
        index = ord(letter.group(1)) - ord("A")
        return index if index < len(choices) else None
    wanted = normalize_text(text)
    matches = [i for i, choice in enumerate(choices) if wanted and normalize_text(choice) == wanted]
    return matches[0] if len(matches) == 1 else None


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
