"""Evaluation throughput: samples per second of ``generate_answers`` batched against batch size 1.

Run: ``python benches/evaluation.py`` (``--quick`` for a shorter run).

On the embedded default: the tiny random Qwen3-VL built offline from the recipe's ``base_model.tiny``
spec, and the synthetic eval split of every synthetic source. Both runs decode the same rows with
the recipe's per-task ``max_new_tokens``, one after the other in this process, after a warm-up; the
table reports samples per second and their ratio (absolute times on a shared machine mean little).
The answers of both runs are compared: left padding should make batching change nothing.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows (about 20 s)")
    parser.add_argument("--rows-per-source", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's evaluation.batch_size")
    args = parser.parse_args()
    per_source = args.rows_per_source or (8 if args.quick else 24)

    import torch
    import transformers

    from medmo_pipeline.config import load_recipe
    from medmo_pipeline.data.synthetic import SYNTHETIC_SOURCES, generate_rows, iter_texts
    from medmo_pipeline.evaluation.generation import generate_answers
    from medmo_pipeline.model.loading import load_model, load_processor
    from medmo_pipeline.model.tiny import build_tiny_base_model

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.manual_seed(42)

    recipe = load_recipe("embedded")
    spec = recipe.evaluation
    batch_size = args.batch_size or spec.batch_size
    max_new_tokens = dict(spec.max_new_tokens)
    rows = [row for source in SYNTHETIC_SOURCES for row in generate_rows(source, "eval", per_source, seed=42)]

    with tempfile.TemporaryDirectory(prefix="medmo-bench-eval-") as tmp:
        def texts():
            for source in SYNTHETIC_SOURCES:
                yield from iter_texts(generate_rows(source, "train", 200, seed=42))

        base = build_tiny_base_model(Path(tmp) / "base", texts=texts(), spec=dict(recipe.base_model.tiny), seed=42)
        model, processor = load_model(base), load_processor(base)

        def run(size: int) -> tuple[float, list[str]]:
            started = time.perf_counter()
            answers = generate_answers(model, processor, rows, max_new_tokens=max_new_tokens, batch_size=size)
            return time.perf_counter() - started, answers

        generate_answers(model, processor, rows[:4], max_new_tokens=max_new_tokens, batch_size=2)  # warm-up
        batched_seconds, batched = run(batch_size)
        single_seconds, single = run(1)

    same = sum(a == b for a, b in zip(batched, single))
    tasks = sorted({row["task"] for row in rows})
    print(f"embedded default, tiny model, {len(rows)} synthetic eval rows ({', '.join(tasks)}), "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'batch size':>10} | {'seconds':>8} | {'samples/s':>9}")
    print(f"{1:>10} | {single_seconds:>8.2f} | {len(rows) / single_seconds:>9.2f}")
    print(f"{batch_size:>10} | {batched_seconds:>8.2f} | {len(rows) / batched_seconds:>9.2f}")
    print(f"speed-up batched / batch 1: {single_seconds / batched_seconds:.2f}x (target >= 2x)")
    print(f"identical answers batched vs batch 1: {same}/{len(rows)}")


if __name__ == "__main__":
    main()
