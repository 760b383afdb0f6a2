"""box_reward (numpy, vectorised over all pairs) against a per-pair pure-Python loop of the same formula.

Run: ``python benches/rewards.py``. Both run in one process on the same inputs, interleaved, and
the table reports calls per second and their ratio (absolute times on a shared machine mean little).
Both implementations are checked to agree before timing.
"""

from __future__ import annotations

import math
import random
import time

from scipy.optimize import linear_sum_assignment

from medmo_pipeline.rewards.box import box_reward

BOX_COUNTS = (1, 5, 20)
IMAGE_SIZE = (1280.0, 960.0)
ROUNDS = 5
SECONDS_PER_ROUND = 0.2


def reference_box_reward(predicted, truth, image_size, lambda_fn=0.0, lambda_fp=0.0):
    """The appendix formula with one Python loop iteration per (prediction, ground truth) pair."""
    if not truth:
        return 0.5
    width, height = image_size
    diagonal = math.hypot(width, height)
    cost, scores = [], []
    for p in predicted:
        cost_row, score_row = [], []
        for g in truth:
            l1 = sum(abs(a - b) for a, b in zip(p, g)) / (2.0 * diagonal)
            giou = _giou(p, g)
            cost_row.append(5.0 * l1 + 2.0 * (1.0 - giou))
            score_row.append((5.0 * (1.0 - min(1.0, max(0.0, l1))) + 2.0 * (giou + 1.0) / 2.0) / 7.0)
        cost.append(cost_row)
        scores.append(score_row)
    matched = 0
    total = 0.0
    if predicted:
        rows, cols = linear_sum_assignment(cost)
        matched = len(rows)
        total = sum(scores[r][c] for r, c in zip(rows, cols))
    penalty = (lambda_fn * (len(truth) - matched) + lambda_fp * (len(predicted) - matched)) / max(
        1, len(truth)
    )
    return min(1.0, max(0.0, total / len(truth) - penalty))


def _giou(a, b):
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = area_a + area_b - inter
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return inter / union - (hull - union) / hull


def random_boxes(rng: random.Random, count: int) -> list[tuple[float, float, float, float]]:
    width, height = IMAGE_SIZE
    boxes = []
    for _ in range(count):
        x1, y1 = rng.uniform(0, width * 0.8), rng.uniform(0, height * 0.8)
        boxes.append((x1, y1, x1 + rng.uniform(5, width * 0.2), y1 + rng.uniform(5, height * 0.2)))
    return boxes


def shifted(rng: random.Random, boxes):
    """Each box moved by up to 20 pixels: an imperfect but valid prediction."""
    moved = []
    for x1, y1, x2, y2 in boxes:
        dx, dy = rng.uniform(-20, 20), rng.uniform(-20, 20)
        moved.append((x1 + dx, y1 + dy, x2 + dx, y2 + dy))
    return moved


def calls_per_second(function, cases) -> float:
    calls = 0
    started = time.perf_counter()
    while time.perf_counter() - started < SECONDS_PER_ROUND:
        for predicted, truth in cases:
            function(predicted, truth)
        calls += len(cases)
    return calls / (time.perf_counter() - started)


def main() -> None:
    rng = random.Random(42)
    print(f"box_reward vs per-pair pure-Python loop, image {IMAGE_SIZE[0]:.0f}x{IMAGE_SIZE[1]:.0f}")
    print(f"{'boxes':>5} | {'numpy calls/s':>13} | {'loop calls/s':>12} | {'ratio':>6}")
    print("-" * 47)
    for count in BOX_COUNTS:
        cases = []
        for _ in range(20):
            truth = random_boxes(rng, count)
            # One more prediction than ground truth, so matching and the false-positive path both run.
            cases.append((shifted(rng, truth) + random_boxes(rng, 1), truth))

        def vectorised(predicted, truth):
            return box_reward(predicted, truth, image_size=IMAGE_SIZE, lambda_fp=0.1)

        def loop(predicted, truth):
            return reference_box_reward(predicted, truth, IMAGE_SIZE, lambda_fp=0.1)

        for predicted, truth in cases:
            fast, slow = vectorised(predicted, truth), loop(predicted, truth)
            assert math.isclose(fast, slow, abs_tol=1e-9), (count, fast, slow)

        # Interleave rounds so both see the same machine load; keep each one's best round.
        fast_rates, slow_rates = [], []
        for _ in range(ROUNDS):
            fast_rates.append(calls_per_second(vectorised, cases))
            slow_rates.append(calls_per_second(loop, cases))
        fast_rate, slow_rate = max(fast_rates), max(slow_rates)
        print(f"{count:>5} | {fast_rate:>13,.0f} | {slow_rate:>12,.0f} | {fast_rate / slow_rate:>5.1f}x")


if __name__ == "__main__":
    main()
