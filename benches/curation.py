"""Curation throughput and memory, measured side by side in one run.

1. rows/s of the full curation path (validate + normalise + hash + dedup + write shards) against a
   plain pyarrow write (``Table.from_pylist`` + ``pq.write_table``, same shard size and compression)
   of the same rows already normalised. Target: ratio >= 0.5.
2. peak RSS of ``curate`` streaming 10k vs 100k rows, each in a fresh subprocess. Target: <= 1.2.

Rows are synthetic VQA rows with a distinct small PNG each (64 x 64), so the image cache never hits
and every row pays the full image check (PNG structure and CRCs; ``--decode-png`` decodes the pixels
too, as curation did before).

    python benches/curation.py                 # about 1-2 minutes
    python benches/curation.py --quick         # smaller sizes, for a smoke test
    python benches/curation.py --decode-png    # throughput with a full PNG decode per image
    python benches/curation.py --image-size 512   # throughput at a realistic image size
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medmo_pipeline.data import shards
from medmo_pipeline.data.curation import CurationLimits, curate
from medmo_pipeline.data.images import ImageLimits
from medmo_pipeline.data.schema import SAMPLE_SCHEMA

SHARD_ROWS = 2000


def synthetic_rows(n: int, size: int = 64):
    """``n`` VQA rows, each with its own PNG (a base texture with the row index stamped in)."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, size, dtype=np.float32)
    bases = [np.clip(ramp[None, :] + rng.normal(0, 12, (size, size)), 0, 255).astype(np.uint8) for _ in range(16)]
    for index in range(n):
        pixels = bases[index % 16].copy()
        pixels[0, :4] = np.frombuffer(index.to_bytes(4, "big"), dtype=np.uint8)  # makes each image distinct
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
        data = buffer.getvalue()
        yield {
            "id": f"bench:{index:07d}", "source": "bench", "split": "train", "task": "vqa", "modality": "xray",
            "images": [{"bytes": data, "path": f"img/{index:07d}.png", "width": size, "height": size,
                        "sha256": hashlib.sha256(data).hexdigest()}],
            "messages": [{"role": "user", "content": f"Is there a lesion in region {index % 97}?"},
                         {"role": "assistant", "content": "yes" if index % 2 else "no"}],
            "answer": "yes" if index % 2 else "no", "choices": ["yes", "no"], "boxes": [], "license": "CC0",
        }


def plain_write(rows: list[dict], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(rows), SHARD_ROWS):
        table = pa.Table.from_pylist(rows[start:start + SHARD_ROWS], schema=SAMPLE_SCHEMA)
        pq.write_table(table, out_dir / f"part-{start // SHARD_ROWS:05d}.parquet",
                       compression=shards.COMPRESSION, compression_level=shards.COMPRESSION_LEVEL)


def throughput(n: int, repeats: int, limits: CurationLimits, size: int = 64) -> None:
    rows = list(synthetic_rows(n, size))
    best_curate, best_plain = float("inf"), float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(repeats):  # interleaved, best of: the machine is shared and noisy
            start = time.perf_counter()
            report = curate(rows, Path(tmp) / f"curated{attempt}", source="bench", shard_rows=SHARD_ROWS,
                            limits=limits)
            best_curate = min(best_curate, time.perf_counter() - start)
            assert report["rows_kept"] == n, report["quarantined_by_reason"]
            start = time.perf_counter()
            plain_write(rows, Path(tmp) / f"plain{attempt}")
            best_plain = min(best_plain, time.perf_counter() - start)
    ours, plain = n / best_curate, n / best_plain
    check = "full PNG decode" if limits.image.decode_png else "PNG structure + CRCs"
    megabytes = sum(len(r["images"][0]["bytes"]) for r in rows) / 2**20
    print(f"throughput ({n} rows, {size}x{size} PNG, {megabytes / n * 1024:.0f} KiB each, {check}, best of {repeats}):")
    print(f"  full curation (validate+normalise+hash+write): {ours:10.0f} rows/s")
    print(f"  plain pyarrow write of normalised rows:        {plain:10.0f} rows/s")
    print(f"  ratio: {ours / plain:.2f}x  (target >= 0.5x)")


def child_peak_rss(n: int) -> None:
    """Run in a subprocess: stream ``n`` rows through curate, print peak RSS in KiB."""
    with tempfile.TemporaryDirectory() as tmp:
        report = curate(synthetic_rows(n), Path(tmp) / "out", source="bench", shard_rows=SHARD_ROWS)
    print(json.dumps({"rows": report["rows_kept"], "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def memory(small: int, large: int) -> None:
    results = {}
    for n in (small, large):
        out = subprocess.run([sys.executable, __file__, "--rss-child", str(n)], capture_output=True, text=True,
                             check=True)
        results[n] = json.loads(out.stdout.strip().splitlines()[-1])
    a, b = results[small]["peak_rss_kib"], results[large]["peak_rss_kib"]
    print(f"peak RSS, curate streaming (shard_rows={SHARD_ROWS}), fresh subprocess each:")
    print(f"  {small:>7} rows: {a / 1024:7.1f} MiB")
    print(f"  {large:>7} rows: {b / 1024:7.1f} MiB")
    print(f"  ratio: {b / a:.2f}  (target <= 1.2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--decode-png", action="store_true", help="decode every PNG fully (throughput only)")
    parser.add_argument("--image-size", type=int, default=64,
                        help="side of each PNG (64 by default; 512 approximates real medical images)")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        child_peak_rss(args.rss_child)
        return
    rows = 2_000 if args.quick else max(1_000, 10_000 * 64 * 64 // args.image_size**2)
    throughput(rows, 2 if args.quick else 3, CurationLimits(image=ImageLimits(decode_png=args.decode_png)),
               args.image_size)
    if not args.decode_png and args.image_size == 64:
        memory(*((2_000, 20_000) if args.quick else (10_000, 100_000)))


if __name__ == "__main__":
    main()
