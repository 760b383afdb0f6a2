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
    """Length of the longest common subsequence, bit-parallel (Allison and Dix 1986; Hyyro 2004): one
    row of the dynamic programme is one integer, a bit per token of the shorter sequence, so each
    token of the longer one costs a few integer operations instead of a Python step per pair
    (docs/hostile_inputs.md measures both). The same length as the row-by-row programme
    (tests/test_metrics_text.py compares them)."""
    if len(first) < len(second):
        first, second = second, first
    if not second:
        return 0
    positions: dict[str, int] = {}  # token -> the bits of its positions in the shorter sequence
    for index, token in enumerate(second):
        positions[token] = positions.get(token, 0) | 1 << index
    full = (1 << len(second)) - 1
    row = full  # a set bit: that position is not yet matched (the row's value does not step up there)
    for token in first:
        match = positions.get(token)
        if match:
            taken = row & match
            row = ((row + taken) | (row - taken)) & full
    return len(second) - row.bit_count()


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


# Words of a text CIDEr reads: reports and captions hold a few hundred; a reference or a runaway
# prediction of 200,000 words made the bootstrap's IDF block as wide as its n-grams (minutes a row)
MAX_CIDER_WORDS = 4096


def _ngram_counts(sentence: str, max_n: int) -> Counter:
    words = sentence.split()[:MAX_CIDER_WORDS]
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
    if not references:
        return np.zeros(0)
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


def cider(predictions: Sequence[str | None], references: Sequence[Sequence[str]], max_n: int = 4,
          sigma: float = 6.0, **interval) -> MetricResult:
    """Corpus CIDEr-D (Vedantam et al. 2015) as pycocoevalcap's ``Cider().compute_score`` gives it.

    n-grams n=1..4 of whitespace-split, pre-tokenised text; TF-IDF weights with document frequency
    over this corpus's reference sets; cosine similarity with clipping; Gaussian length penalty
    (sigma 6); averaged over n and over references; x10. ``value`` is on pycocoevalcap's scale
    (the paper's tables print 100 x value) and ``per_sample`` holds each sample's score. Because the
    IDF belongs to the corpus, the interval is :func:`cider_bootstrap_ci`: samples are resampled and
    the corpus score recomputed on each resample, IDF included; ``interval`` holds its keywords
    (``n_resamples``, ``confidence``, ``seed``).

    >>> preds = ["no acute disease", "small left effusion"]
    >>> refs = [["no acute disease"], ["large right effusion"]]
    >>> round(cider(preds, refs).value, 4)
    4.1667
    """
    scores = cider_per_sample(predictions, references, max_n, sigma)
    low, high = cider_bootstrap_ci(predictions, references, max_n, sigma, **interval)
    return MetricResult(
        name="cider",
        value=float(scores.mean()) if scores.size else float("nan"),
        n=int(scores.size),
        ci_low=low,
        ci_high=high,
        empty=sum(not (p or "").split() for p in predictions),
        per_sample=scores,
    )


class _CiderDesign:
    """A corpus's n-gram counts as sparse matrices, so CIDEr-D can be recomputed for many resamples
    of the corpus at once: a resample is a vector of sample multiplicities ``w`` (how often each
    sample is drawn), its document frequency is ``presence.T @ w`` (pycocoevalcap counts every
    copy of a sample) and every TF-IDF product is a matrix product with the squared IDF."""

    def __init__(self, predictions, references, max_n: int, sigma: float) -> None:
        from scipy import sparse

        hyp = [_ngram_counts(p or "", max_n) for p in predictions]
        refs = [[_ngram_counts(r, max_n) for r in rs] for rs in references]
        vocabularies: list[dict] = [{} for _ in range(max_n)]
        for counts in [*hyp, *(c for rs in refs for c in rs)]:
            for ngram in counts:
                vocabularies[len(ngram) - 1].setdefault(ngram, len(vocabularies[len(ngram) - 1]))
        pair_sample = [i for i, rs in enumerate(refs) for _ in rs]
        pair_refs = [c for rs in refs for c in rs]
        n_samples, n_pairs = len(hyp), len(pair_refs)

        def matrix(rows: int, entries) -> list:
            out = []
            for k, vocabulary in enumerate(vocabularies):
                data, row_ids, col_ids = [], [], []
                for row, ngram, value in entries:
                    if len(ngram) == k + 1:
                        data.append(value), row_ids.append(row), col_ids.append(vocabulary[ngram])
                out.append(sparse.csr_matrix((data, (row_ids, col_ids)), shape=(rows, len(vocabulary))))
            return out

        self.presence = matrix(n_samples, [(i, g, 1.0) for i, rs in enumerate(refs) for g in set().union(*rs)])
        self.hyp_sq = matrix(n_samples, [(i, g, float(c) ** 2) for i, counts in enumerate(hyp) for g, c in counts.items()])
        self.ref_sq = matrix(n_pairs, [(p, g, float(c) ** 2) for p, counts in enumerate(pair_refs) for g, c in counts.items()])
        self.clipped = matrix(n_pairs, [
            (p, g, float(min(hyp[pair_sample[p]].get(g, 0), c) * c))
            for p, counts in enumerate(pair_refs) for g, c in counts.items() if g in hyp[pair_sample[p]]])
        lengths = [sum(c for g, c in counts.items() if len(g) == 2) for counts in hyp]  # pycocoevalcap's
        ref_lengths = [sum(c for g, c in counts.items() if len(g) == 2) for counts in pair_refs]
        self.penalty = np.exp(-(np.array([lengths[s] for s in pair_sample], dtype=float)
                                - np.array(ref_lengths, dtype=float)) ** 2 / (2 * sigma**2))
        self.pair_sample = np.array(pair_sample, dtype=int)
        # Sample score = 10 x (sum over its references) / (number of references).
        self.per_reference = sparse.csr_matrix(
            (np.array([10.0 / len(refs[s]) for s in pair_sample]), (self.pair_sample, np.arange(n_pairs))),
            shape=(n_samples, n_pairs))
        self.n_samples, self.max_n = n_samples, max_n
        self.width = max(1, max(len(v) for v in vocabularies))

    def sample_scores(self, weights: np.ndarray) -> np.ndarray:
        """Per-sample scores (samples x resamples) under the IDF of each column of ``weights``."""
        log_size = math.log(float(self.n_samples))
        total = np.zeros((len(self.penalty), weights.shape[1]))
        for k in range(self.max_n):
            frequency = np.asarray(self.presence[k].T @ weights)
            idf_sq = (log_size - np.log(np.maximum(1.0, frequency))) ** 2
            numerator = np.asarray(self.clipped[k] @ idf_sq)
            hyp_norm = np.sqrt(np.asarray(self.hyp_sq[k] @ idf_sq))[self.pair_sample]
            ref_norm = np.sqrt(np.asarray(self.ref_sq[k] @ idf_sq))
            denominator = hyp_norm * ref_norm
            total += np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)
        return np.asarray(self.per_reference @ (total / self.max_n * self.penalty[:, None]))


def cider_bootstrap_ci(
    predictions: Sequence[str | None],
    references: Sequence[Sequence[str]],
    max_n: int = 4,
    sigma: float = 6.0,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of corpus CIDEr-D, resampling samples (with replacement).

    Each resample is scored as pycocoevalcap would score that resampled corpus (its document
    frequencies, IDF and corpus size included, a sample drawn twice counting twice), so the
    interval covers the IDF's dependence on which reports were drawn. One sample gives a
    zero-width interval, none gives (nan, nan).

    >>> low, high = cider_bootstrap_ci(["a b c", "d e f", "a b x"], [["a b c"], ["d e g"], ["a b y"]], n_resamples=200)
    >>> 0 <= low <= high
    True
    """
    _check_lengths(predictions, references)
    n = len(predictions)
    if n == 0:
        return (float("nan"), float("nan"))
    design = _CiderDesign(predictions, references, max_n, sigma)
    if n == 1:
        value = float(design.sample_scores(np.ones((1, 1)))[0, 0])
        return (value, value)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_resamples, 4_000_000 // design.width))  # bounds the dense IDF block
    values = []
    for start in range(0, n_resamples, chunk):
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, n_resamples - start)).T.astype(float)
        values.append((weights * design.sample_scores(weights)).sum(axis=0) / n)
    corpus_values = np.concatenate(values)
    alpha = (1 - confidence) / 2
    low, high = np.percentile(corpus_values, [100 * alpha, 100 * (1 - alpha)])
    return (float(low), float(high))


def _check_lengths(first: Sequence, second: Sequence) -> None:
    if len(first) != len(second):
        raise ValueError(f"got {len(first)} predictions but {len(second)} references")
