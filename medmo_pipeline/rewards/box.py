"""The bounding-box reward of the MedMO paper (appendix A.1).

Ground truth G = {g_j} and predictions P = {p_i}, both XYXY in one coordinate frame (pixels of the
image, or any frame as long as ``image_size`` is given in the same one):

- L1_ij = sum of |coordinate differences| / (2 * sqrt(H^2 + W^2))
- GIoU_ij in [-1, 1] (Rezatofighi et al., 2019)
- Hungarian matching on C_ij = 5 * L1_ij + 2 * (1 - GIoU_ij); m = min(P, G) matched pairs
- pair score s = (5 * (1 - clip01(L1)) + 2 * (GIoU + 1) / 2) / 7
- B = sum(s) / G; penalty = (lambda_fn * (G - m) + lambda_fp * (P - m)) / max(1, G)
- reward = clip01(B - penalty), squared when ``squared`` (the paper's main text squares it, its
  appendix does not; the appendix form is the default)

Edge cases: G = 0 -> 0.5 (neutral); P = 0 -> clip01(0 - penalty), 0 with the default lambdas.
More than ``MAX_REPLY_BOXES`` predictions (``schema.box_text``) is a malformed reply, scored as
P = 0, so 0: the matching costs memory P x G, and no real answer lists that many boxes.

Note a property of the paper's formula: while P < G an extra prediction fills an unmatched ground
truth and earns a positive pair score even when it overlaps nothing, so a spurious box only lowers
the reward once P >= G (and then only through ``lambda_fp``: with the default 0 spurious boxes are
free, up to ``MAX_REPLY_BOXES``, past which the reply scores 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from medmo_pipeline.schema.box_text import MAX_REPLY_BOXES

L1_WEIGHT = 5.0
GIOU_WEIGHT = 2.0
NEUTRAL_REWARD = 0.5  # no ground truth: nothing to reward or punish
FAR_LIMIT = 1e6  # image diagonals; predictions beyond are clamped (see _matched_pair_scores)


def box_reward(
    predicted: Iterable[Sequence[float]],
    ground_truth: Iterable[Sequence[float]],
    *,
    image_size: tuple[float, float] | None = None,
    lambda_fn: float = 0.0,
    lambda_fp: float = 0.0,
    squared: bool = False,
) -> float:
    """Reward in [0, 1] for predicted boxes against ground-truth boxes (paper appendix A.1).

    ``image_size`` is (width, height) in the boxes' frame. When None, (H, W) is inferred as in the
    paper: the maximum x2 / y2 of the ground truth, else of the predictions, else 1.

    Invalid predicted boxes (not four numbers, NaN/inf, x2 <= x1 or y2 <= y1) are dropped before
    matching: they count neither as matches nor as false positives. More than ``MAX_REPLY_BOXES``
    predictions (valid or not) read as none. Invalid ground truth raises ValueError, since that is
    a data error rather than a model error.

    >>> box_reward([(0, 0, 10, 10)], [(0, 0, 10, 10)])
    1.0
    >>> round(box_reward([(5, 0, 15, 10)], [(0, 0, 10, 10)], image_size=(30, 40)), 6)
    0.833333
    >>> box_reward([], [])
    0.5
    """
    if not (lambda_fn >= 0 and lambda_fp >= 0 and np.isfinite(lambda_fn) and np.isfinite(lambda_fp)):
        raise ValueError(f"lambda_fn and lambda_fp must be finite and >= 0, got {lambda_fn}, {lambda_fp}")
    gt = _box_array(ground_truth)
    if not _valid_mask(gt).all():
        raise ValueError(f"ground-truth boxes must be finite XYXY with x2 > x1 and y2 > y1: {gt.tolist()}")
    pred = _box_array(predicted)
    if len(pred) > MAX_REPLY_BOXES:  # a malformed reply: scored as one without boxes
        pred = pred[:0]
    pred = pred[_valid_mask(pred)]
    n_gt, n_pred = len(gt), len(pred)
    if n_gt == 0:
        return NEUTRAL_REWARD

    width, height = _frame_size(image_size, gt, pred)
    matched_scores = _matched_pair_scores(pred, gt, np.hypot(width, height))
    n_matched = len(matched_scores)
    base = float(matched_scores.sum()) / n_gt
    penalty = (lambda_fn * (n_gt - n_matched) + lambda_fp * (n_pred - n_matched)) / max(1, n_gt)
    reward = min(1.0, max(0.0, base - penalty))
    return reward * reward if squared else reward


def pairwise_giou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """GIoU of every box in ``boxes_a`` (N, 4) with every box in ``boxes_b`` (M, 4): an (N, M) array.

    ``boxes_b`` must have positive area, so that union and enclosing box are never empty.

    >>> pairwise_giou(np.array([[0.0, 0, 10, 10]]), np.array([[20.0, 0, 30, 10]])).round(4).tolist()
    [[-0.3333]]
    """
    ax1, ay1, ax2, ay2 = boxes_a[:, :, None].transpose(1, 0, 2)  # each (N, 1)
    bx1, by1, bx2, by2 = boxes_b.T[:, None, :]  # each (1, M)
    inter = np.maximum(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0.0) * np.maximum(
        np.minimum(ay2, by2) - np.maximum(ay1, by1), 0.0
    )
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    hull = (np.maximum(ax2, bx2) - np.minimum(ax1, bx1)) * (np.maximum(ay2, by2) - np.minimum(ay1, by1))
    return inter / union - (hull - union) / hull


def _matched_pair_scores(pred: np.ndarray, gt: np.ndarray, diagonal: float) -> np.ndarray:
    """Pair scores s of the Hungarian matching (empty when there are no predictions)."""
    if len(pred) == 0:
        return np.zeros(0)
    # Work in units of the image diagonal, and clamp predictions to a million diagonals so that
    # absurd coordinates (1e300) cannot overflow the areas; L1 is clipped at 1 long before that
    # and GIoU moves by less than 1e-6.
    pred = np.minimum(np.maximum(pred / diagonal, -FAR_LIMIT), FAR_LIMIT)
    gt = gt / diagonal
    # Sorting makes ties in the assignment break the same way whatever order the boxes arrived
    # in, so the reward is exactly invariant to box order.
    pred = pred[np.lexsort(pred.T[::-1])]
    gt = gt[np.lexsort(gt.T[::-1])]
    l1 = np.abs(pred[:, None, :] - gt[None, :, :]).sum(axis=-1) / 2.0
    giou = pairwise_giou(pred, gt)
    rows, cols = linear_sum_assignment(L1_WEIGHT * l1 + GIOU_WEIGHT * (1.0 - giou))
    l1, giou = l1[rows, cols], giou[rows, cols]
    # L1 >= 0, so clip01(L1) is min(L1, 1).
    return (L1_WEIGHT * (1.0 - np.minimum(l1, 1.0)) + GIOU_WEIGHT * (giou + 1.0) / 2.0) / (
        L1_WEIGHT + GIOU_WEIGHT
    )


def _frame_size(
    image_size: tuple[float, float] | None, gt: np.ndarray, pred: np.ndarray
) -> tuple[float, float]:
    """(width, height) used to normalise L1: the given size, else the paper's inference."""
    if image_size is not None:
        width, height = (float(v) for v in image_size)
        if not (np.isfinite(width) and np.isfinite(height) and width > 0 and height > 0):
            raise ValueError(f"image_size must be a positive (width, height), got {image_size!r}")
        return width, height
    return _max_extent(gt[:, 2], pred[:, 2]), _max_extent(gt[:, 3], pred[:, 3])


def _max_extent(gt_coords: np.ndarray, pred_coords: np.ndarray) -> float:
    for coords in (gt_coords, pred_coords):
        if len(coords) and coords.max() > 0:
            return float(coords.max())
    return 1.0


def _box_array(boxes: Iterable[Sequence[float]]) -> np.ndarray:
    """(N, 4) float array; entries that are not four numbers become NaN rows (invalid)."""
    rows = []
    for box in boxes:
        try:
            row = [] if isinstance(box, (str, bytes)) else [float(v) for v in box]
        except (TypeError, ValueError, OverflowError):
            row = []
        rows.append(row if len(row) == 4 else [np.nan] * 4)
    return np.array(rows, dtype=float).reshape(-1, 4)


def _valid_mask(boxes: np.ndarray) -> np.ndarray:
    # Comparisons with NaN are False, so NaN rows fail the size test as well.
    return np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
