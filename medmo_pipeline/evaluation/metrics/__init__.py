"""Evaluation metrics: answer accuracy, report text metrics, grounding IoU, bootstrap intervals.

Every metric returns a :class:`MetricResult` (value, n, ci_low, ci_high, unparseable, empty,
per_sample) or a small dataclass of them with a ``results()`` list for the eval table.
"""

from medmo_pipeline.evaluation.metrics.answers import (
    OpenAccuracy,
    TokenOverlap,
    answer_body,
    answer_text,
    closed_accuracy,
    multiple_choice_accuracy,
    normalize_text,
    open_accuracy,
    option_index,
    token_overlap,
    yes_no,
)
from medmo_pipeline.evaluation.metrics.grounding import (
    IOU_THRESHOLDS,
    GroundingScores,
    GroundingVariant,
    box_iou,
    first_box_iou,
    grounding_scores,
    matched_iou,
)
from medmo_pipeline.evaluation.metrics.plugins import MetricUnavailable, llm_judge, ratescore, sembscore
from medmo_pipeline.evaluation.metrics.result import MetricResult, bootstrap_ci, summarize
from medmo_pipeline.evaluation.metrics.text import (
    cider,
    cider_per_sample,
    rouge_l,
    rouge_l_score,
    rouge_tokens,
)

__all__ = [
    "IOU_THRESHOLDS",
    "GroundingScores",
    "GroundingVariant",
    "MetricResult",
    "MetricUnavailable",
    "OpenAccuracy",
    "TokenOverlap",
    "answer_body",
    "answer_text",
    "bootstrap_ci",
    "box_iou",
    "cider",
    "cider_per_sample",
    "closed_accuracy",
    "first_box_iou",
    "grounding_scores",
    "llm_judge",
    "matched_iou",
    "multiple_choice_accuracy",
    "normalize_text",
    "open_accuracy",
    "option_index",
    "ratescore",
    "rouge_l",
    "rouge_l_score",
    "rouge_tokens",
    "sembscore",
    "summarize",
    "token_overlap",
    "yes_no",
]
