"""Reward cost: box_reward calls per second, and the share of a GRPO step spent in the rewards.

Run: ``python benches/rewards.py`` (``--quick`` for a shorter run).

1. box_reward (numpy, vectorised over all pairs) against a per-pair pure-Python loop of the same
   formula. Both run in one process on the same inputs, interleaved, and the table reports calls
   per second and their ratio (absolute times on a shared machine mean little). Both
   implementations are checked to agree before timing.
2. A few GRPO steps on the embedded default (tiny random Qwen3-VL built offline, the recipe's RL
   settings, the reward functions wrapped exactly as the RL job wraps them), with each reward
   function and each step timed; the first step is a warm-up and is dropped. Random weights rarely
   write a box, so the box reward is also timed on completions that each hold three boxes, for
   the same number of completions per step: the worst case against the same step time.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import statistics
import tempfile
import time
from pathlib import Path

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


def box_reward_table(rounds: int = ROUNDS) -> None:
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
        for _ in range(rounds):
            fast_rates.append(calls_per_second(vectorised, cases))
            slow_rates.append(calls_per_second(loop, cases))
        fast_rate, slow_rate = max(fast_rates), max(slow_rates)
        print(f"{count:>5} | {fast_rate:>13,.0f} | {slow_rate:>12,.0f} | {fast_rate / slow_rate:>5.1f}x")


class Timed:
    """A reward function that adds its wall time to ``seconds``; keeps the name TRL logs it under."""

    def __init__(self, function, seconds: dict[str, float], calls: dict[str, list[int]]):
        self.__name__ = function.__name__
        self.function = function
        self.seconds = seconds
        self.calls = calls
        seconds.setdefault(self.__name__, 0.0)
        calls.setdefault(self.__name__, [])

    def __call__(self, prompts, completions, **columns):
        started = time.perf_counter()
        values = self.function(prompts, completions, **columns)
        self.seconds[self.__name__] += time.perf_counter() - started
        self.calls[self.__name__].append(len(completions))
        return values


def rl_rows(prompts: int) -> list[dict]:
    """Grounding and VQA prompts, two X-ray rows per cells row as in the recipe's RL mixture."""
    from medmo_pipeline.data.synthetic import generate_rows

    tasks = {"grounding", "vqa"}
    rows = []
    for source, share in (("synth_xray", 2), ("synth_cells", 1)):
        wanted = max(1, prompts * share // 3)
        picked = [r for r in generate_rows(source, "train", 4 * wanted + 8) if r["task"] in tasks]
        rows.extend(picked[:wanted])
    random.Random(42).shuffle(rows)
    return rows


def three_box_completion(rng: random.Random) -> list[dict]:
    """An assistant turn with three boxes on the 0-1000 scale, the form grounding answers take."""
    boxes = []
    for _ in range(3):
        x1, y1 = rng.randint(0, 800), rng.randint(0, 800)
        boxes.append(f"[{x1}, {y1}, {x1 + rng.randint(20, 200)}, {y1 + rng.randint(20, 200)}]")
    return [{"role": "assistant", "content": f"<answer>lesion <box>[{', '.join(boxes)}]</box></answer>"}]


def worst_case_box_seconds(box_function, rows: list[dict], batch: int, repeats: int) -> float:
    """Median seconds of one box-reward call on ``batch`` grounding completions of three boxes each."""
    rng = random.Random(42)
    # Rows with the most ground-truth boxes first: the assignment problem is largest there.
    grounding = sorted((r for r in rows if r["task"] == "grounding"), key=lambda r: -len(r["boxes"]))
    picked = [grounding[i % len(grounding)] for i in range(batch)]
    columns = {
        "task": [r["task"] for r in picked],
        "boxes": [list(r["boxes"]) for r in picked],
        "image_width": [r["images"][0]["width"] for r in picked],
        "image_height": [r["images"][0]["height"] for r in picked],
        "answer": [r["answer"] for r in picked],
        "choices": [list(r["choices"]) for r in picked],
    }
    prompts = [[{"role": "user", "content": r["messages"][0]["content"]}] for r in picked]
    completions = [three_box_completion(rng) for _ in picked]
    values = box_function(prompts, completions, **columns)
    assert all(v is not None for v in values), values
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        box_function(prompts, completions, **columns)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def grpo_step_share(max_steps: int) -> None:
    """Time a short GRPO run on the embedded default and print the rewards' share of a step."""
    import logging
    import warnings

    import transformers
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback
    from trl import GRPOTrainer

    from medmo_pipeline.config import load_recipe
    from medmo_pipeline.data.synthetic import SYNTHETIC_SOURCES, generate_rows, iter_texts
    from medmo_pipeline.model.loading import load_model, load_processor, set_image_resolution
    from medmo_pipeline.model.tiny import build_tiny_base_model
    from medmo_pipeline.rewards import build_reward_functions
    from medmo_pipeline.training.examples import rl_dataset
    from medmo_pipeline.training.grpo import grpo_config, left_pad_prompts, observed

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("trl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    recipe = load_recipe("embedded")
    stage, g = recipe.rl, recipe.rl.grpo
    prompts_per_step = stage.optim.per_device_train_batch_size // g.num_generations
    with tempfile.TemporaryDirectory(prefix="medmo-bench-") as tmp:
        base = Path(tmp) / "base"

        def texts():
            for source in SYNTHETIC_SOURCES:
                yield from iter_texts(generate_rows(source, "train", 200, seed=42))

        build_tiny_base_model(base, texts=texts(), spec=dict(recipe.base_model.tiny), seed=42)
        model = load_model(base)
        processor = load_processor(base)
        set_image_resolution(processor, stage.image.max_pixels or 16384, stage.image.min_pixels)
        left_pad_prompts(processor)  # as the RL job does

        rows = rl_rows(prompts_per_step * max_steps + 8)
        functions, weights = build_reward_functions(stage.rewards)
        seconds: dict[str, float] = {}
        calls: dict[str, list[int]] = {}
        samples: list[dict] = []
        # Timer outside observed(): the logging wrapper is part of what the RL job pays per call.
        timed = [Timed(fn, seconds, calls) for fn in observed(functions, samples)]

        config = grpo_config(stage, processor, output_dir=Path(tmp) / "work", seed=42, reward_weights=weights,
                             max_steps=max_steps, logging_steps=max_steps)

        # (wall clock, reward seconds so far) at each step's end; consecutive differences are steps.
        marks: list[tuple[float, dict[str, float]]] = []
        values: dict[str, list] = {fn.__name__: [] for fn in functions}

        class StepClock(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if not marks:
                    marks.append((time.perf_counter(), dict(seconds)))

            def on_step_end(self, args, state, control, **kwargs):
                marks.append((time.perf_counter(), dict(seconds)))
                for sample in samples:
                    for name, seen in values.items():
                        seen.append(sample.get(name))

        trainer = GRPOTrainer(
            model=model,
            reward_funcs=timed,
            args=config,
            train_dataset=rl_dataset(rows),
            processing_class=processor,
            callbacks=[StepClock()],
        )
        # Only this script's summary is printed, not the trainer's per-log dicts.
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.train()

        names = [fn.__name__ for fn in functions]
        steps = [
            (t1 - t0, {n: s1[n] - s0[n] for n in names})
            for (t0, s0), (t1, s1) in itertools.pairwise(marks[1:])  # marks[0]->marks[1] is the warm-up
        ]
        if not steps:
            raise SystemExit(f"need at least 2 steps to drop a warm-up step, got {len(marks) - 1}")
        walls = [wall for wall, _ in steps]
        step_seconds = statistics.mean(walls)
        per_name = {n: statistics.mean(r[n] for _, r in steps) for n in names}
        reward_seconds = sum(per_name.values())
        completions = max(max(c) for c in calls.values())
        calls_per_step = len(calls[names[0]]) / (len(marks) - 1)

        print()
        print(
            f"GRPO on the embedded default: {len(steps)} timed steps after 1 warm-up step, "
            f"{completions} completions per step ({prompts_per_step} prompts x {g.num_generations}), "
            f"max {g.max_completion_length} new tokens; step {min(walls):.2f}-{max(walls):.2f} s"
        )
        print(
            f"rewards: {reward_seconds:.4f} s of {step_seconds:.2f} s per step "
            f"({100 * reward_seconds / step_seconds:.2f}%)"
        )
        for name in names:
            scored = [v for v in values[name] if v is not None]
            nonzero = sum(1 for v in scored if v)
            print(
                f"  {name:>15}: {per_name[name] * 1000:8.3f} ms per step "
                f"({100 * per_name[name] / step_seconds:.3f}%); {len(scored)} of {len(values[name])} "
                f"completions scored, {nonzero} non-zero"
            )
        print(
            "  (random weights: most rewards are None or 0 and few completions hold a box; "
            "the timing share still holds, the reward values mean nothing)"
        )

        box_function = next((fn for fn in timed if fn.__name__ == "box"), None)
        if box_function is not None:
            batch = completions
            worst = worst_case_box_seconds(box_function.function, rows, batch, repeats=50) * calls_per_step
            print(
                f"worst case, box reward on {batch} grounding completions of 3 boxes each: "
                f"{worst:.4f} s of {step_seconds:.2f} s per step ({100 * worst / step_seconds:.2f}%)"
            )
        print("  (target: rewards under 5% of a step; on a shared CPU both sides slow down together)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timing round and 3 GRPO steps")
    parser.add_argument(
        "--steps", type=int, default=None, help="GRPO steps, the first is dropped (default 10)"
    )
    args = parser.parse_args(argv)
    box_reward_table(rounds=1 if args.quick else ROUNDS)
    grpo_step_share(args.steps or (3 if args.quick else 10))


if __name__ == "__main__":
    main()
