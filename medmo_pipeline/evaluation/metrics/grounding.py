"""Grounding metrics on the original image's pixel scale (XYXY boxes, no +1 in widths).

Predictions on Qwen3-VL's 0-1000 scale must be converted first with
``medmo_pipeline.schema.boxes.relative_to_pixels``; this module never guesses the scale.

A prediction of more than ``MAX_REPLY_BOXES`` boxes (``schema.box_text``) is a malformed reply, as
for the RL box reward: it scores IoU 0 and counts as unparseable, and its boxes are never paired
with the ground truth (that costs memory predictions x ground truth). Parse replies with
``limit=MAX_REPLY_BOXES + 1`` to keep reading such a reply cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from medmo_pipeline.evaluation.metrics.result import MetricResult, summarize
from medmo_pipeline.schema.box_text import MAX_REPLY_BOXES

IOU_THRESHOLDS = (0.3, 0.5, 0.7)

BoxList = Sequence[Sequence[float]] | np.ndarray | None


def _as_boxes(boxes: BoxList) -> np.ndarray:
    array = np.asarray([] if boxes is None else boxes, dtype=float)
    if array.size == 0:
        return np.zeros((0, 4))
    return array.reshape(-1, 4)


def _scored_predictions(predicted: BoxList) -> np.ndarray:
    """The predicted boxes a sample is scored with: none when there are more than ``MAX_REPLY_BOXES``."""
    pred = _as_boxes(predicted)
    return pred[:0] if _too_many_boxes(pred) else pred


def _too_many_boxes(predicted: BoxList) -> bool:
    """Whether a prediction lists more boxes than a reply is scored with (``MAX_REPLY_BOXES``)."""
    return len(_as_boxes(predicted)) > MAX_REPLY_BOXES


def box_iou(boxes_a: BoxList, boxes_b: BoxList) -> np.ndarray:
    """Pairwise IoU matrix (N x M) of XYXY boxes; width is x2 - x1 (no +1).

    Degenerate boxes (x2 <= x1 or y2 <= y1) have zero area and zero IoU with everything.

    >>> box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30]])
    array([[0.33333333, 0.        ]])
    """
    a, b = _as_boxes(boxes_a), _as_boxes(boxes_b)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def first_box_iou(predicted: BoxList, ground_truth: BoxList) -> float:
    """IoU of the first predicted box with the first ground-truth box; 0 with no prediction (or
    more than ``MAX_REPLY_BOXES``).

    >>> first_box_iou([[0, 0, 10, 10], [50, 50, 60, 60]], [[0, 0, 10, 10]])
    1.0
    """
    pred, gt = _scored_predictions(predicted), _as_boxes(ground_truth)
    if len(gt) == 0:
        raise ValueError("a grounding sample needs at least one ground-truth box")
    return float(box_iou(pred[:1], gt[:1])[0, 0]) if len(pred) else 0.0


def matched_iou(predicted: BoxList, ground_truth: BoxList) -> float:
    """Mean IoU over the ground-truth boxes after one-to-one Hungarian matching on IoU.

    A ground-truth box left unmatched (fewer predictions) scores 0; surplus predictions are simply
    unmatched, so they cannot raise the score. More than ``MAX_REPLY_BOXES`` predictions score 0.

    >>> matched_iou([[50, 50, 60, 60], [0, 0, 10, 10]], [[0, 0, 10, 10], [50, 50, 60, 60]])
    1.0
    >>> matched_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [50, 50, 60, 60]])
    0.5
    """
    pred, gt = _scored_predictions(predicted), _as_boxes(ground_truth)
    if len(gt) == 0:
        raise ValueError("a grounding sample needs at least one ground-truth box")
    iou = box_iou(gt, pred)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return float(iou[rows, cols].sum() / len(gt))


@dataclass(frozen=True)
class GroundingVariant:
    """Mean IoU and accuracy at each IoU threshold for one way of pairing boxes."""

    mean_iou: MetricResult
    accuracy_at: dict[float, MetricResult]

    def results(self) -> list[MetricResult]:
        return [self.mean_iou, *self.accuracy_at.values()]


@dataclass(frozen=True)
class GroundingScores:
    """Both pairings: ``first_box`` (first vs first) and ``matched`` (Hungarian, mean over GT)."""

    first_box: GroundingVariant
    matched: GroundingVariant

    def results(self) -> list[MetricResult]:
        return [*self.first_box.results(), *self.matched.results()]


def _variant(
    prefix: str, ious: np.ndarray, thresholds: Sequence[float], empty: int, unparseable: int
) -> GroundingVariant:
    counts = {"empty": empty, "unparseable": unparseable}
    return GroundingVariant(
        mean_iou=summarize(f"{prefix}_mean_iou", ious, **counts),
        accuracy_at={t: summarize(f"{prefix}_acc@{t:g}", ious >= t, **counts) for t in thresholds},
    )


def grounding_scores(
    predicted_boxes_list: Sequence[BoxList],
    gt_boxes_list: Sequence[BoxList],
    thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> GroundingScores:
    """Grounding mean IoU and accuracy at IoU >= threshold, first-box and matched variants.

    A sample's accuracy is 1 when its IoU (first-box IoU, or matched mean over its ground-truth
    boxes) is at least the threshold. A sample with no predicted box scores IoU 0 and is counted
    in ``empty``; one with more than ``MAX_REPLY_BOXES`` scores IoU 0 and is counted in
    ``unparseable``. No sample is skipped.

    >>> s = grounding_scores([[[0, 0, 10, 10]], []], [[[0, 0, 10, 5]], [[0, 0, 4, 4]]])
    >>> s.matched.mean_iou.value, s.matched.accuracy_at[0.5].value, s.matched.mean_iou.empty
    (0.25, 0.5, 1)
    """
    if len(predicted_boxes_list) != len(gt_boxes_list):
        raise ValueError(f"got {len(predicted_boxes_list)} predictions but {len(gt_boxes_list)} references")
    pairs = list(zip(predicted_boxes_list, gt_boxes_list))
    empty = sum(len(_as_boxes(pred)) == 0 for pred, _ in pairs)
    unparseable = sum(_too_many_boxes(pred) for pred, _ in pairs)
    first = np.array([first_box_iou(pred, gt) for pred, gt in pairs])
    matched = np.array([matched_iou(pred, gt) for pred, gt in pairs])
    return GroundingScores(
        first_box=_variant("grounding_first_box", first, thresholds, empty, unparseable),
        matched=_variant("grounding_matched", matched, thresholds, empty, unparseable),
    )
