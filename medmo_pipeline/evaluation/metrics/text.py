"""Report-generation text metrics: ROUGE-L and CIDEr-D.

Tokenisation (Java's PTB tokenizer is not needed):
- ``rouge_l`` tokenises with :func:`rouge_tokens`, the rule of the ``rouge-score`` package's
  default tokenizer without stemming (lower case, every run of characters outside [a-z0-9] is a
  separator). With beta=1 it therefore equals ``rouge_score``'s rougeL fmeasure on any text; with
  beta=1.2 it equals pycocoevalcap's ``Rouge().calc_score`` on text that is already in that form
  (lower-case alphanumeric tokens joined by single spaces), because pycocoevalcap splits on " ".
- ``cider`` only splits on whitespace, exactly as pycocoevalcap does, so callers pre-tokenise both
  sides the same way, e.g. ``" ".join(rouge_tokens(text))``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from medmo_pipeline.evaluation.metrics.result import MetricResult, summarize

_NON_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")


def rouge_tokens(text: str | None) -> list[str]:
    """Tokens as rouge-score's default tokenizer (no stemming) makes them.

    >>> rouge_tokens("No acute cardio-pulmonary process.")
    ['no', 'acute', 'cardio', 'pulmonary', 'process']
    """
    return _NON_ALPHANUMERIC.sub(" ", (text or "").lower()).split()


def _lcs_length(first: Sequence[str], second: Sequence[str]) -> int:
    """Length of the longest common subsequence (row-by-row dynamic programme)."""
    if len(first) < len(second):
        first, second = second, first
    previous = [0] * (len(second) + 1)
    for token in first:
        current = [0]
        for j, other in enumerate(second, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str | None, reference: str, beta: float = 1.0) -> float:
    """Sentence-level ROUGE-L F-measure (Lin 2004): F = (1 + b^2) P R / (R + b^2 P) on LCS.

    P = LCS / prediction tokens, R = LCS / reference tokens. beta=1.0 is the ``rouge-score``
    package's rougeL fmeasure; beta=1.2 is pycocoevalcap's ROUGE_L (see the module docstring for
    the tokenisation). An empty prediction or reference scores 0.

    >>> round(rouge_l("the heart is normal", "heart size is normal"), 4)
    0.75
    >>> round(rouge_l("the heart is normal", "heart size is normal", beta=1.2), 4)
    0.75
    """
    pred_tokens, ref_tokens = rouge_tokens(prediction), rouge_tokens(reference)
    if not pred_tokens or not ref_tokens:
        return 0.0
    lcs = _lcs_length(ref_tokens, pred_tokens)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred_tokens), lcs / len(ref_tokens)
    return (1 + beta**2) * precision * recall / (recall + beta**2 * precision)


def rouge_l_score(
    predictions: Sequence[str | None], references: Sequence[str], beta: float = 1.0
) -> MetricResult:
    """Mean of :func:`rouge_l` over the set (named ``rouge_l_f1`` or ``rouge_l_beta<beta>``).

    >>> rouge_l_score(["heart is normal", ""], ["heart is normal", "lungs are clear"]).value
    0.5
    """
    _check_lengths(predictions, references)
    name = "rouge_l_f1" if beta == 1.0 else f"rouge_l_beta{beta:g}"
    scores = [rouge_l(p, r, beta) for p, r in zip(predictions, references)]
    return summarize(name, scores, empty=sum(not rouge_tokens(p) for p in predictions))


def _ngram_counts(sentence: str, max_n: int) -> Counter:
    words = sentence.split()
    return Counter(tuple(words[i : i + k]) for k in range(1, max_n + 1) for i in range(len(words) - k + 1))


def _tfidf(counts: Counter, idf_of, max_n: int) -> tuple[list[dict], list[float], int]:
    """Per-order TF-IDF vectors, their norms, and pycocoevalcap's length (the bigram count)."""
    vectors: list[dict] = [{} for _ in range(max_n)]
    for ngram, term_frequency in counts.items():
        vectors[len(ngram) - 1][ngram] = float(term_frequency) * idf_of(ngram)
    norms = [math.sqrt(sum(w * w for w in vector.values())) for vector in vectors]
    # pycocoevalcap measures length as the number of bigrams (its `n == 1` is the 2-gram slot).
    length = sum(c for g, c in counts.items() if len(g) == 2)
    return vectors, norms, length


def cider_per_sample(
    predictions: Sequence[str | None],
    references: Sequence[Sequence[str]],
    max_n: int = 4,
    sigma: float = 6.0,
) -> np.ndarray:
    """Per-sample CIDEr-D scores, computed as pycocoevalcap's ``CiderScorer`` computes them.

    >>> cider_per_sample(["no acute disease", "small left effusion"], [["no acute disease"], ["large right effusion"]])
    array([7.5       , 0.83333333])
    """
    _check_lengths(predictions, references)
    if any(len(refs) == 0 for refs in references):
        raise ValueError("every sample needs at least one reference for CIDEr")
    ref_counts = [[_ngram_counts(ref, max_n) for ref in refs] for refs in references]
    # Document frequency: in how many samples' reference sets an n-gram occurs.
    document_frequency = Counter(g for counts in ref_counts for g in set().union(*counts))
    log_corpus_size = math.log(float(len(references)))

    def idf_of(ngram: tuple[str, ...]) -> float:
        return log_corpus_size - math.log(max(1.0, document_frequency.get(ngram, 0.0)))

    penalty_scale = 2 * sigma**2
    scores = np.zeros(len(predictions))
    for i, (prediction, refs) in enumerate(zip(predictions, ref_counts)):
        hyp, hyp_norms, hyp_length = _tfidf(_ngram_counts(prediction or "", max_n), idf_of, max_n)
        total = np.zeros(max_n)
        for ref in refs:
            vec, norms, length = _tfidf(ref, idf_of, max_n)
            penalty = math.exp(-(float(hyp_length - length) ** 2) / penalty_scale)
            for k in range(max_n):
                # "D" clipping: a hypothesis n-gram counts at most as often as in the reference.
                value = sum(min(w, vec[k].get(g, 0.0)) * vec[k].get(g, 0.0) for g, w in hyp[k].items())
                if hyp_norms[k] != 0 and norms[k] != 0:
                    value /= hyp_norms[k] * norms[k]
                total[k] += value * penalty
        scores[i] = float(np.mean(total)) / len(refs) * 10.0
    return scores


def cider(
    predictions: Sequence[str | None],
    references: Sequence[Sequence[str]],
    max_n: int = 4,
    sigma: float = 6.0,
) -> MetricResult:
    """Corpus CIDEr-D (Vedantam et al. 2015) as pycocoevalcap's ``Cider().compute_score`` gives it.

    n-grams n=1..4 of whitespace-split, pre-tokenised text; TF-IDF weights with document frequency
    over this corpus's reference sets; cosine similarity with clipping; Gaussian length penalty
    (sigma 6); averaged over n and over references; x10. ``value`` is on pycocoevalcap's scale
    (the paper's tables print 100 x value); ``per_sample`` holds each sample's score and the
    interval resamples those with the IDF of the whole corpus held fixed.

    >>> preds = ["no acute disease", "small left effusion"]
    >>> refs = [["no acute disease"], ["large right effusion"]]
    >>> round(cider(preds, refs).value, 4)
    4.1667
    """
    scores = cider_per_sample(predictions, references, max_n, sigma)
    return summarize("cider", scores, empty=sum(not (p or "").split() for p in predictions))


def _check_lengths(first: Sequence, second: Sequence) -> None:
    if len(first) != len(second):
        raise ValueError(f"got {len(first)} predictions but {len(second)} references")
