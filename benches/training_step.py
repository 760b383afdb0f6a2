"""SFT step parts on the embedded default: the patch embedding as Conv3d against one matrix product,
TRL's vision collator against ours (same batches), and the trainer's dataset built by
`Dataset.from_dict` against straight into Arrow.

Run: ``python benches/training_step.py`` (``--quick`` for a shorter run).

The tiny random Qwen3-VL is built offline from the recipe's ``base_model.tiny`` spec; batches are
TRL's vision collator over synthetic stage-2 rows at the recipe's stage-2 resolution. Each variant
runs the same batches (forward, backward, AdamW step), alternating over repetitions after a warm-up;
the table reports milliseconds per step and the ratio (absolute times on a shared machine mean
little). Both patch embeddings start from the same weights and must give the same loss.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import warnings
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and rows (about 30 s)")
    args = parser.parse_args()
    steps, reps, dataset_rows = (10, 3, 2000) if args.quick else (30, 5, 8000)

    import datasets
    import torch
    import transformers
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from medmo_pipeline.config import load_recipe
    from medmo_pipeline.data.synthetic import SYNTHETIC_SOURCES, generate_rows, iter_texts
    from medmo_pipeline.model.loading import load_model, load_processor, set_image_resolution
    from medmo_pipeline.model.patch_projection import use_patchwise_projection
    from medmo_pipeline.model.tiny import build_tiny_base_model
    from medmo_pipeline.training.collation import answer_masked_collator
    from medmo_pipeline.training.examples import image_cells, sft_dataset

    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    recipe = load_recipe()
    stage = recipe.stages["stage2"]
    size = recipe.corpus.synthetic.image_size
    image_rows = [r for s in ("synth_xray", "synth_cells") for r in generate_rows(s, "train", 160, image_size=size)]
    samples = [r for r in image_rows if r["images"]]

    with tempfile.TemporaryDirectory() as tmp:
        texts = (t for s in SYNTHETIC_SOURCES for t in iter_texts(generate_rows(s, "train", 200, image_size=size)))
        base = build_tiny_base_model(Path(tmp) / "base", texts=texts, spec=dict(recipe.base_model.tiny), seed=recipe.seed)
        processor = load_processor(base)
        set_image_resolution(processor, stage.image.max_pixels, stage.image.min_pixels)
        collator = DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True)
        dataset = sft_dataset(samples)
        batch_size = stage.optim.per_device_train_batch_size
        batches = [collator([dataset[(i * batch_size + j) % len(dataset)] for j in range(batch_size)])
                   for i in range(steps)]

        conv = load_model(base).train()
        linear = copy.deepcopy(conv)
        assert use_patchwise_projection(linear) == 1
        models = {"Conv3d": conv, "matrix product": linear}
        optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}
        with torch.no_grad():
            losses = {name: float(m(**batches[0]).loss) for name, m in models.items()}
        assert abs(losses["Conv3d"] - losses["matrix product"]) < 1e-4, losses

        def step_ms(name: str) -> float:
            model, optimizer = models[name], optimizers[name]
            started = time.perf_counter()
            for batch in batches:
                model(**batch).loss.backward()
                optimizer.step()
                optimizer.zero_grad()
            return (time.perf_counter() - started) / len(batches) * 1000

        timings = alternating(step_ms, models, reps)

        collators = {"TRL": collator, "ours": answer_masked_collator(processor)}
        examples = [[dataset[(i * batch_size + j) % len(dataset)] for j in range(batch_size)] for i in range(steps)]

        def collate_ms(name: str) -> float:
            started = time.perf_counter()
            for batch in examples:
                collators[name](batch)
            return (time.perf_counter() - started) / len(examples) * 1000

        collation = alternating(collate_ms, collators, reps)

    rows = (image_rows * (dataset_rows // len(image_rows) + 1))[:dataset_rows]
    features = sft_dataset(rows[:1]).features

    def from_dict() -> None:
        datasets.Dataset.from_dict({"images": [image_cells(r) for r in rows],
                                    "messages": [[{"role": m["role"], "content": m["content"]} for m in r["messages"]]
                                                 for r in rows]}, features=features)

    def seconds(fn) -> float:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started

    built = {"Dataset.from_dict": seconds(from_dict), "straight into Arrow": seconds(lambda: sft_dataset(rows))}

    print(f"SFT step, batch {batch_size} at {stage.image.max_pixels} pixels, median of {reps} x {steps} steps:")
    medians = {name: statistics.median(t) for name, t in timings.items()}
    for name, ms in medians.items():
        print(f"  patch embedding as {name:<15} {ms:7.1f} ms/step   (runs: {', '.join(f'{t:.1f}' for t in timings[name])})")
    print(f"  ratio (matrix product / Conv3d): {medians['matrix product'] / medians['Conv3d']:.2f}x the time")
    print(f"collating a batch of {batch_size}, median of {reps} x {steps} batches:")
    collated = {name: statistics.median(t) for name, t in collation.items()}
    for name, ms in collated.items():
        print(f"  {name + ' collator':<15} {ms:7.1f} ms/batch  (runs: {', '.join(f'{t:.1f}' for t in collation[name])})")
    print(f"  ratio (ours / TRL's): {collated['ours'] / collated['TRL']:.2f}x the time")
    print(f"trainer dataset of {len(rows)} rows:")
    for name, s in built.items():
        print(f"  {name:<20} {s:6.2f} s")
    print(f"  ratio (straight into Arrow / from_dict): {built['straight into Arrow'] / built['Dataset.from_dict']:.2f}x the time")


def alternating(measure, names, reps: int) -> dict[str, list[float]]:
    """``measure(name)`` for every name once as a warm-up, then ``reps`` rounds taking the names in turn
    (a shared machine's drift then falls on every variant alike)."""
    for name in names:
        measure(name)
    timings = {name: [] for name in names}
    for _ in range(reps):
        for name in names:
            timings[name].append(measure(name))
    return timings


if __name__ == "__main__":
    main()
