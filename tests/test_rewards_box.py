"""box_reward: hand-computed cases from the paper's formula, and properties over random boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medmo_pipeline.rewards.box import box_reward, pairwise_giou

# With image_size (30, 40) the diagonal is 50, so L1 = (sum of |differences|) / 100.
FRAME = (30, 40)
UNIT = (0, 0, 10, 10)


@pytest.mark.parametrize(
    ("predicted", "truth", "kwargs", "expected"),
    [
        # Partial overlap: pred shifted 5 to the right. inter 50, union 150, IoU 1/3, hull 150 -> GIoU 1/3.
        # L1 = (5 + 5) / 100 = 0.1. s = (5 * 0.9 + 2 * (4/3) / 2) / 7 = (4.5 + 4/3) / 7 = 5/6.
        pytest.param([(5, 0, 15, 10)], [UNIT], {"image_size": FRAME}, 5 / 6, id="partial-overlap"),
        # Disjoint: inter 0, union 200, hull [0,0,30,10] = 300 -> GIoU = -(300 - 200)/300 = -1/3.
        # L1 = (20 + 20) / 100 = 0.4. s = (5 * 0.6 + 2 * (2/3) / 2) / 7 = (3 + 2/3) / 7 = 11/21.
        pytest.param([(20, 0, 30, 10)], [UNIT], {"image_size": FRAME}, 11 / 21, id="disjoint-negative-giou"),
        # P > G: one exact match (s = 1) and one extra box; lambda_fp 0.25 -> 1 - 0.25 * (2 - 1) / 1.
        pytest.param(
            [UNIT, (20, 30, 30, 40)], [UNIT], {"image_size": FRAME, "lambda_fp": 0.25}, 0.75, id="p-greater-g"
        ),
        # P < G: one of two ground-truth boxes found exactly: B = 1 / 2; lambda_fn 0.2 -> 0.5 - 0.2 * 1 / 2.
        pytest.param([UNIT], [UNIT, (20, 30, 30, 40)], {"image_size": FRAME}, 0.5, id="p-less-g"),
        pytest.param(
            [UNIT],
            [UNIT, (20, 30, 30, 40)],
            {"image_size": FRAME, "lambda_fn": 0.2},
            0.4,
            id="p-less-g-penalty",
        ),
        # Squared (paper main text): the partial-overlap case, (5/6)^2 = 25/36.
        pytest.param([(5, 0, 15, 10)], [UNIT], {"image_size": FRAME, "squared": True}, 25 / 36, id="squared"),
        # Penalty larger than the base clips at 0: B = 11/21 ~ 0.52, penalty 1 * (3 - 1) / 1 = 2.
        pytest.param(
            [(20, 0, 30, 10), (20, 30, 30, 40), (0, 20, 10, 30)],
            [UNIT],
            {"image_size": FRAME, "lambda_fp": 1.0},
            0.0,
            id="penalty-clips-to-zero",
        ),
        # Inferred frame: GT max extents give W 30, H 40 (diagonal 50). Pred [0,0,30,30]:
        # L1 = 10/100 = 0.1; inter 900, union 1200, hull 1200 -> GIoU 0.75. s = (4.5 + 1.75) / 7 = 6.25/7.
        pytest.param([(0, 0, 30, 30)], [(0, 0, 30, 40)], {}, 6.25 / 7, id="inferred-frame"),
        # Far box, inferred frame 30x40: L1 = (100 + 100)/100 = 2, clipped to 1 -> L1 term 0.
        # inter 0, union 2400, hull [0,0,130,40] = 5200 -> GIoU = -2800/5200 = -7/13.
        # s = 2 * (6/13) / 2 / 7 = 6/91.
        pytest.param([(100, 0, 130, 40)], [(0, 0, 30, 40)], {}, 6 / 91, id="l1-clipped"),
        # Two boxes given in swapped order: Hungarian pairs them correctly, both exact -> 1.
        pytest.param(
            [(20, 30, 30, 40), UNIT],
            [UNIT, (20, 30, 30, 40)],
            {"image_size": FRAME},
            1.0,
            id="hungarian-swap",
        ),
        # Edge cases: no ground truth is neutral; no prediction scores clip01(0 - penalty).
        pytest.param([UNIT], [], {}, 0.5, id="no-ground-truth"),
        pytest.param([], [UNIT], {"lambda_fn": 0.5}, 0.0, id="no-prediction"),
        # Invalid predictions are dropped, not counted: only the exact box remains -> 1 even with lambda_fp.
        pytest.param(
            [UNIT, (5, 5, 5, 9), (math.nan, 0, 1, 1), (0, 0, math.inf, 1), (1, 2, 3), "1234"],
            [UNIT],
            {"image_size": FRAME, "lambda_fp": 1.0},
            1.0,
            id="invalid-predictions-ignored",
        ),
    ],
)
def test_hand_computed_cases(predicted, truth, kwargs, expected):
    assert box_reward(predicted, truth, **kwargs) == pytest.approx(expected, abs=1e-12)


def test_pairwise_giou_matches_hand_values():
    a = np.array([[0.0, 0, 10, 10], [5, 0, 15, 10]])
    b = np.array([[0.0, 0, 10, 10], [20, 0, 30, 10]])
    # [0..10]x[0..10] vs itself 1; vs disjoint -1/3; shifted vs unit 1/3;
    # shifted vs [20..30]: inter 0, union 200, hull [5,0,30,10] = 250 -> -50/250 = -0.2.
    np.testing.assert_allclose(pairwise_giou(a, b), [[1.0, -1 / 3], [1 / 3, -0.2]])


def test_invalid_ground_truth_raises():
    with pytest.raises(ValueError, match="ground-truth"):
        box_reward([UNIT], [(10, 0, 5, 10)])


@pytest.mark.parametrize("bad", [(0, 10), (-1, 10), (math.nan, 10)])
def test_invalid_image_size_raises(bad):
    with pytest.raises(ValueError, match="image_size"):
        box_reward([UNIT], [UNIT], image_size=bad)


def test_negative_lambda_raises():
    with pytest.raises(ValueError, match="lambda"):
        box_reward([UNIT], [UNIT], lambda_fp=-0.1)


def test_absurd_coordinates_stay_finite():
    far = [(1e300, 0, 1e301, 1e300), (-1e300, -1e300, 1e300, 1e300)]
    reward = box_reward(far, [UNIT, (20, 0, 30, 10)])
    assert 0.0 <= reward <= 1.0


# Boxes on a 1000 x 1000 canvas with positive width and height.
coordinate = st.floats(0, 990, allow_nan=False)
size = st.floats(1, 400, allow_nan=False)
boxes_strategy = st.lists(
    st.tuples(coordinate, coordinate, size, size).map(lambda b: (b[0], b[1], b[0] + b[2], b[1] + b[3])),
    max_size=6,
)
lambdas = st.floats(0, 2, allow_nan=False)
CANVAS = (1400.0, 1400.0)


@settings(max_examples=300, deadline=None)
@given(boxes_strategy, boxes_strategy, lambdas, lambdas, st.booleans(), st.booleans())
def test_reward_is_in_unit_interval(predicted, truth, lambda_fn, lambda_fp, squared, with_size):
    reward = box_reward(
        predicted,
        truth,
        image_size=CANVAS if with_size else None,
        lambda_fn=lambda_fn,
        lambda_fp=lambda_fp,
        squared=squared,
    )
    assert 0.0 <= reward <= 1.0


@settings(max_examples=200, deadline=None)
@given(boxes_strategy.filter(bool), lambdas, lambdas, st.booleans())
def test_perfect_prediction_scores_one(truth, lambda_fn, lambda_fp, squared):
    reward = box_reward(truth, truth, lambda_fn=lambda_fn, lambda_fp=lambda_fp, squared=squared)
    assert reward == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(boxes_strategy, boxes_strategy, st.randoms(use_true_random=False), lambdas, lambdas)
def test_invariant_to_box_order(predicted, truth, rng, lambda_fn, lambda_fp):
    shuffled_pred, shuffled_truth = list(predicted), list(truth)
    rng.shuffle(shuffled_pred)
    rng.shuffle(shuffled_truth)
    kwargs = {"lambda_fn": lambda_fn, "lambda_fp": lambda_fp}
    assert box_reward(shuffled_pred, shuffled_truth, **kwargs) == box_reward(predicted, truth, **kwargs)


@settings(max_examples=200, deadline=None)
@given(boxes_strategy, boxes_strategy, st.floats(0.01, 100), st.booleans())
def test_invariant_to_scaling_boxes_and_image_together(predicted, truth, scale, with_size):
    def scaled(boxes):
        return [tuple(v * scale for v in b) for b in boxes]

    scaled_size = (CANVAS[0] * scale, CANVAS[1] * scale) if with_size else None
    original = box_reward(predicted, truth, image_size=CANVAS if with_size else None)
    assert box_reward(scaled(predicted), scaled(truth), image_size=scaled_size) == pytest.approx(
        original, abs=1e-9
    )


@settings(max_examples=100, deadline=None)
@given(boxes_strategy, lambdas, st.booleans())
def test_no_ground_truth_is_neutral(predicted, lambda_fp, squared):
    assert box_reward(predicted, [], lambda_fp=lambda_fp, squared=squared) == 0.5


@settings(max_examples=100, deadline=None)
@given(boxes_strategy.filter(bool), st.booleans())
def test_no_prediction_scores_zero_by_default(truth, squared):
    assert box_reward([], truth, squared=squared) == 0.0


@settings(max_examples=200, deadline=None)
@given(boxes_strategy.filter(bool), st.data(), st.floats(0.01, 2), st.booleans())
def test_spurious_box_never_raises_the_reward(truth, data, lambda_fp, squared):
    # The property holds once P >= G: while P < G the paper's formula lets any extra box fill an
    # unmatched ground truth and earn a positive pair score (see the box module docstring).
    extra = data.draw(st.lists(boxes_strategy.filter(bool), min_size=1, max_size=1))[0]
    predicted = (truth + extra)[: len(truth) + data.draw(st.integers(0, len(extra)))]
    # Far outside the canvas: L1 to any ground truth exceeds every in-canvas box's (>= 40 diagonals
    # away), so its matching cost is higher than any other prediction's and it is never matched.
    spurious = (1e5, 1e5, 1e5 + 50, 1e5 + 50)
    kwargs = {"image_size": CANVAS, "lambda_fp": lambda_fp, "squared": squared}
    before = box_reward(predicted, truth, **kwargs)
    after = box_reward([*predicted, spurious], truth, **kwargs)
    assert after <= before
    if before > 0:
        assert after < before
