"""A training job's data path at two corpus sizes: peak memory and time to the first batch do not grow
with the corpus.

Run: ``python benches/training_data.py`` (``--sizes 100000 2000000`` by default; ``--quick`` for
20,000 and 200,000 rows, about a minute).

For each size a synthetic corpus is written as real curated shards (the sample schema, 5,000 rows a
shard, eight sources of unequal size, 16 x 16 PNG images), and the stage plan is computed once, as
the mixture asset does (it reads only the split and task columns). Then a fresh process runs what an
SFT job does with its data, timed from just after its imports: read the corpus index with its plan,
open the stream (``training.streamed.StageData``, one pass over each source), and collate the first
batch with the job's own collator and the tiny model's processor ("time to first step"); it then
collates a fixed number of further batches and streams a fixed number of rows without decoding them
(the same numbers at both sizes), and reports its peak and final RSS.
Each size runs in ``--repeats`` fresh processes; the table shows the medians of both sizes side by
side and the ratios (large / small).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCE_SHARES = {"bench_a": 0.40, "bench_b": 0.20, "bench_c": 0.12, "bench_d": 0.10, "bench_e": 0.08,
                 "bench_f": 0.05, "bench_g": 0.03, "bench_h": 0.02}
SHARD_ROWS = 5000
TASKS = ["caption", "vqa", "grounding"]
BATCH = 8
STREAMED_BATCHES = 400
RAW_ROWS = 20_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[100_000, 2_000_000])
    parser.add_argument("--quick", action="store_true", help="20,000 and 200,000 rows")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per size (medians are shown)")
    parser.add_argument("--child", nargs=2, metavar=("INDEX", "PROCESSOR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(Path(args.child[0]), Path(args.child[1]))
    sizes = [20_000, 200_000] if args.quick else args.sizes
    with tempfile.TemporaryDirectory(prefix="medmo-bench-data-") as tmp:
        root = Path(tmp)
        processor = tiny_processor(root / "base")
        results = {}
        for rows in sizes:
            started = time.perf_counter()
            index_path, plan_seconds = write_corpus(root / f"corpus-{rows}", rows)
            print(f"{rows:>10,} rows: corpus written in {time.perf_counter() - started:.0f} s "
                  f"(plan {plan_seconds:.2f} s)", flush=True)
            runs = [json.loads(subprocess.run([sys.executable, __file__, "--child", str(index_path), str(processor)],
                                              check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
                    for _ in range(args.repeats)]
            results[rows] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
            results[rows]["plan_seconds"] = plan_seconds
    report(results, args.repeats)


def report(results: dict[int, dict], repeats: int) -> None:
    small, large = sorted(results)
    a, b = results[small], results[large]
    print(f"\nmedians of {repeats} fresh processes per size")
    rows = [("time to first step (s)", "first_step_seconds", "{:.3f}"), ("peak RSS (MiB)", "peak_rss_mib", "{:.0f}"),
            ("RSS after imports (MiB)", "import_rss_mib", "{:.0f}"), ("RSS after streaming (MiB)", "rss_after_mib", "{:.0f}"),
            ("rows collated / s", "rows_per_second", "{:.0f}"), ("rows streamed / s, no decoding", "raw_rows_per_second", "{:.0f}"),
            ("plan, mixture asset (s)", "plan_seconds", "{:.2f}")]
    print(f"| measure | {small:,} rows | {large:,} rows | ratio |\n|---|---|---|---|")
    for label, key, fmt in rows:
        print(f"| {label} | {fmt.format(a[key])} | {fmt.format(b[key])} | {b[key] / a[key]:.2f} |")
    print(f"\npeak RSS ratio {b['peak_rss_mib'] / a['peak_rss_mib']:.2f} (target <= 1.2); "
          f"time to first step ratio {b['first_step_seconds'] / a['first_step_seconds']:.2f} (target <= 1.5)")


def tiny_processor(directory: Path) -> Path:
    from medmo_pipeline.config import load_recipe
    from medmo_pipeline.model.tiny import build_tiny_base_model

    recipe = load_recipe("embedded")
    texts = ["a b c 0 1 2 3 4 5 6 7 8 9 lesion caption box"] * 50
    return build_tiny_base_model(directory, texts=texts, spec=dict(recipe.base_model.tiny), seed=0)


def write_corpus(root: Path, total: int) -> tuple[Path, float]:
    """Curated-shard sources of ``total`` rows in all, their index, and the stage plan stored in it."""
    from medmo_pipeline.data import corpus, mixture, shards

    images = tiny_pngs()
    entries = {}
    for number, (source, share) in enumerate(SOURCE_SHARES.items()):
        rows = max(SHARD_ROWS // 10, int(total * share))
        manifest = shards.write_tables(synthetic_tables(source, rows, images, number), root / source,
                                       shard_rows=SHARD_ROWS, source=source)
        entries[source] = {"path": str(root / source), "data_version": shards.manifest_hash(manifest),
                           "revision": "", "rows": rows, "splits": manifest["splits"],
                           "shards": len(manifest["shards"])}
    started = time.perf_counter()
    plan = mixture.plan({"sources": entries}, bench_mixture())
    plan_seconds = time.perf_counter() - started
    index = corpus.write_index(root, entries, mixture={"stage": "bench"}, plan=plan)
    return Path(index["index_path"]), plan_seconds


def bench_mixture():
    from medmo_pipeline.config import MixtureRecipe

    return MixtureRecipe(sources=list(SOURCE_SHARES), tasks=TASKS)


def tiny_pngs(count: int = 16) -> list[bytes]:
    import io

    from PIL import Image

    out = []
    for i in range(count):
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), (i * 15, 255 - i * 15, 128)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def synthetic_tables(source: str, rows: int, images: list[bytes], salt: int):
    """Tables of the sample schema, ``SHARD_ROWS`` rows each."""
    import hashlib

    import pyarrow as pa

    from medmo_pipeline.schema.rows import SAMPLE_SCHEMA

    digests = [hashlib.sha256(png).hexdigest() for png in images]
    for start in range(0, rows, SHARD_ROWS):
        n = min(SHARD_ROWS, rows - start)
        numbers = range(start, start + n)
        tasks = [TASKS[(i + salt) % len(TASKS)] for i in numbers]
        picks = [(i * 7 + salt) % len(images) for i in numbers]
        columns = {
            "id": [f"{source}:{i:08d}" for i in numbers],
            "source": [source] * n,
            "split": ["train"] * n,
            "task": tasks,
            "modality": ["xray"] * n,
            "images": [[{"bytes": images[p], "path": None, "width": 16, "height": 16, "sha256": digests[p]}]
                       for p in picks],
            "messages": [[{"role": "user", "content": f"Describe image {i} ({t})."},
                          {"role": "assistant", "content": f"finding {i % 97} in region {i % 13}"}]
                         for i, t in zip(numbers, tasks)],
            "answer": [""] * n,
            "choices": [[] for _ in numbers],
            "boxes": [[] for _ in numbers],
            "license": ["synthetic"] * n,
        }
        yield pa.Table.from_pydict(columns, schema=SAMPLE_SCHEMA)


def child(index_path: Path, processor_dir: Path) -> None:
    """The job's data path, timed from after the imports; prints one JSON line."""
    import torch  # noqa: F401 - imported before timing, as in a job
    from torch.utils.data import DataLoader

    from medmo_pipeline.data import corpus
    from medmo_pipeline.model.loading import load_processor
    from medmo_pipeline.process_memory import current_rss_kib, peak_rss_mib
    from medmo_pipeline.training import examples, streamed
    from medmo_pipeline.training.collation import answer_masked_collator

    processor = load_processor(processor_dir)
    collator = answer_masked_collator(processor)
    import_rss = peak_rss_mib()
    started = time.perf_counter()
    index = corpus.load_index(index_path)
    plan = streamed.stage_plan(index, bench_mixture())
    data = streamed.StageData(plan, 42, examples.sft_features(), examples.sft_example, examples_per_step=BATCH)
    batches = iter(DataLoader(data.dataset, batch_size=BATCH, collate_fn=collator))
    first = next(batches)
    first_step = time.perf_counter() - started
    assert first["input_ids"].shape[0] == BATCH
    streaming = time.perf_counter()
    for _ in range(STREAMED_BATCHES):
        next(batches)
    rate = STREAMED_BATCHES * BATCH / (time.perf_counter() - streaming)
    raw = time.perf_counter()
    for _ in itertools.islice(data.stream.rows(STREAMED_BATCHES * BATCH), RAW_ROWS):
        pass
    raw_rate = RAW_ROWS / (time.perf_counter() - raw)
    print(json.dumps({"first_step_seconds": first_step, "peak_rss_mib": peak_rss_mib(),
                      "import_rss_mib": import_rss, "rss_after_mib": current_rss_kib() / 1024,
                      "rows_per_second": rate, "raw_rows_per_second": raw_rate,
                      "planned_samples": plan["planned_samples"]}))


if __name__ == "__main__":
    main()
