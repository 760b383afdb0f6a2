"""The common result type of every metric and its bootstrap confidence interval."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class MetricResult:
    """One metric over one evaluated set.

    ``value`` is the mean of ``per_sample`` (a fraction, not a percentage: tables multiply by 100),
    ``n`` counts every sample, empty and unparseable ones included, and ``ci_low``/``ci_high`` is a
    percentile bootstrap interval of that mean. ``unparseable`` counts predictions that could not be
    read as an answer (scored 0); ``empty`` counts blank predictions (also scored 0, and also
    unparseable where the metric parses answers). ``float(result)`` is ``result.value``.
    """

    name: str
    value: float
    n: int
    ci_low: float
    ci_high: float
    unparseable: int = 0
    empty: int = 0
    per_sample: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)

    def __float__(self) -> float:
        return float(self.value)


def bootstrap_ci(
    per_sample_values: Sequence[float] | np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (Efron & Tibshirani 1993, ch. 13).

    Resamples with replacement ``n_resamples`` times, vectorised through
    ``scipy.stats.bootstrap(method="percentile")``; the same seed gives the same interval.
    One value gives a zero-width interval, none gives (nan, nan).

    >>> bootstrap_ci([0.0, 1.0, 1.0, 0.0, 1.0], n_resamples=200, seed=0)
    (0.2, 1.0)
    """
    values = np.asarray(per_sample_values, dtype=float).ravel()
    if values.size == 0:
        return (float("nan"), float("nan"))
    if values.size == 1 or np.all(values == values[0]):
        # scipy refuses fewer than two observations; every resample mean equals the value anyway.
        return (float(values[0]), float(values[0]))
    interval = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return (float(interval.low), float(interval.high))


def summarize(
    name: str,
    per_sample: Sequence[float] | np.ndarray,
    *,
    unparseable: int = 0,
    empty: int = 0,
    n_resamples: int = 1000,
    seed: int = 0,
) -> MetricResult:
    """Mean, count and bootstrap interval of per-sample scores as a MetricResult.

    >>> summarize("accuracy", [1.0, 0.0, 1.0, 1.0]).value
    0.75
    """
    values = np.asarray(per_sample, dtype=float).ravel()
    low, high = bootstrap_ci(values, n_resamples=n_resamples, seed=seed)
    mean = float(values.mean()) if values.size else float("nan")
    return MetricResult(
        name=name,
        value=mean,
        n=int(values.size),
        ci_low=low,
        ci_high=high,
        unparseable=int(unparseable),
        empty=int(empty),
        per_sample=values,
    )
