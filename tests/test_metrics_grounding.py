"""Grounding IoU on hand-computed cases: first-box and Hungarian-matched variants, thresholds."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medmo_pipeline.evaluation.metrics import box_iou, first_box_iou, grounding_scores, matched_iou
from medmo_pipeline.schema.boxes import pixels_to_relative, relative_to_pixels

A = [0, 0, 10, 10]
B = [50, 50, 70, 60]


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (A, [5, 5, 15, 15], 25 / 175),  # partial overlap
        (A, [20, 20, 30, 30], 0.0),  # disjoint
        (A, [2, 2, 7, 7], 25 / 100),  # contained
        (A, [10, 0, 20, 10], 0.0),  # touching edges: no +1 in widths
        (A, A, 1.0),
        (A, [5, 5, 5, 9], 0.0),  # zero-width box
    ],
)
def test_box_iou_hand_computed(first, second, expected):
    assert box_iou([first], [second])[0, 0] == pytest.approx(expected)
    assert box_iou([second], [first])[0, 0] == pytest.approx(expected)


def test_box_iou_is_pairwise():
    matrix = box_iou([A, B], [B, A, [5, 5, 15, 15]])
    np.testing.assert_allclose(matrix, [[0, 1, 25 / 175], [1, 0, 0]])
    assert box_iou([], [A]).shape == (0, 1)


coordinate = st.integers(0, 100)
box = st.tuples(coordinate, coordinate, coordinate, coordinate).map(
    lambda b: (min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3]))
)


@given(st.lists(box, min_size=1, max_size=4), st.lists(box, min_size=1, max_size=4))
def test_box_iou_bounded_and_symmetric(first, second):
    forward, backward = box_iou(first, second), box_iou(second, first)
    assert np.all((forward >= 0) & (forward <= 1))
    np.testing.assert_allclose(forward, backward.T)


def test_reversed_order_differs_between_first_box_and_matched():
    predicted, truth = [B, A], [A, B]
    assert first_box_iou(predicted, truth) == 0.0
    assert matched_iou(predicted, truth) == 1.0


def test_missing_and_extra_predictions():
    assert matched_iou([A], [A, B]) == 0.5  # unmatched ground truth scores 0
    assert matched_iou([A, B, [0, 0, 9, 9]], [A]) == 1.0  # extra predictions cannot raise it
    assert matched_iou([[0, 0, 9, 9], A], [A]) == 1.0  # the best one-to-one pairing is found
    assert matched_iou([], [A]) == 0.0 and first_box_iou(None, [A]) == 0.0


def test_ground_truth_is_required():
    with pytest.raises(ValueError, match="ground-truth"):
        grounding_scores([[A]], [[]])


def test_grounding_scores_thresholds_and_empty_samples():
    predicted = [
        [A],  # IoU 1
        [[0, 0, 10, 5]],  # IoU exactly 0.5 (>= counts)
        [[0, 0, 10, 3]],  # IoU 0.3
        [[5, 5, 15, 15]],  # IoU 1/7
        [],  # no prediction: 0, still in n
    ]
    scores = grounding_scores(predicted, [[A]] * 5)
    first = scores.first_box
    assert first.mean_iou.value == pytest.approx((1 + 0.5 + 0.3 + 1 / 7) / 5)
    assert first.mean_iou.n == 5 and first.mean_iou.empty == 1
    accuracy = {t: r.value for t, r in first.accuracy_at.items()}
    assert accuracy == {0.3: pytest.approx(3 / 5), 0.5: pytest.approx(2 / 5), 0.7: pytest.approx(1 / 5)}
    # One ground-truth box each: both variants agree.
    np.testing.assert_allclose(scores.matched.mean_iou.per_sample, first.mean_iou.per_sample)


def test_grounding_variants_and_result_names():
    scores = grounding_scores([[B, A], [A]], [[A, B], [A, B]])
    assert scores.first_box.mean_iou.value == pytest.approx(0.5)  # 0 and 1
    assert scores.matched.mean_iou.value == pytest.approx(0.75)  # 1 and 0.5
    assert scores.matched.accuracy_at[0.5].value == pytest.approx(1.0)
    assert scores.first_box.accuracy_at[0.5].value == pytest.approx(0.5)
    names = [r.name for r in scores.results()]
    assert "grounding_matched_acc@0.5" in names and "grounding_first_box_mean_iou" in names
    assert len(names) == 8


def test_predictions_on_the_qwen_scale_are_converted_before_scoring():
    width, height = 640, 480
    truth = [64.0, 48.0, 320.0, 240.0]
    predicted = relative_to_pixels(pixels_to_relative(truth, width, height), width, height)
    assert first_box_iou([predicted], [truth]) == pytest.approx(1.0)
    # Scoring the unconverted 0-1000 numbers against pixels would be wrong, and visibly so.
    assert first_box_iou([pixels_to_relative(truth, width, height)], [truth]) < 0.5
