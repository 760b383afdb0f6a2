"""Curation throughput and memory, measured side by side in one run.

1. rows/s of the full curation path (validate + normalise + hash + dedup + write shards) against a
   plain pyarrow write (``Table.from_pylist`` + ``pq.write_table``, same shard size and compression)
   of the same rows already normalised. Target: ratio >= 0.5. After one untimed run of each, the two
   run in turn several times; the ratio is best against best (interference only ever slows a run
   down), the spread of the single pairs is printed too, and the CPU time ratio (all threads) says
   what the work costs a core. Curation fsyncs every file it publishes; the plain write leaves its
   pages to the kernel's writeback. The bench checks that both wrote the same rows. It also times
   the PNG checks alone (``check_pngs``: CRCs and pixel streams inflated) on the same images, and
   prints the bound their CPU time puts on any path that writes the rows on one core.
   Cores: curation inflates and hashes a large batch's images on ``png_batch.check_threads()``
   worker processes (the cores this process may use; ``image_check_workers``) while its own thread
   reads the next batch, and encodes + fsyncs each shard on a background thread, so its wall-clock
   ratio depends on the free cores, which the bench prints with the load average. The CPU time
   ratio counts the workers' CPU too. ``taskset -c 0 python benches/curation.py`` measures it on
   one core (no workers: the checks run on curation's own thread).
``--jpeg``: curation of distinct JPEGs (decoded once each to be checked) with the image-check
   workers against on curation's own thread, in turn; no target, it shows what the workers buy
   where most real datasets are (JPEG).
2. peak RSS of ``curate`` streaming 10k vs 100k rows, each in a fresh subprocess (its image-check
   workers' peaks added). Target: <= 1.2. Then what the two sets of dedup keys, the one part of
   curation's memory that grows with the corpus, hold per key (``KeySet`` against a CPython set).

Rows are synthetic VQA rows with a distinct small PNG each (64 x 64), so every row pays the full
image check (PNG structure, CRCs and the pixel stream inflated within its declared size; ``--decode-png``
decodes the pixels with PIL instead).

    python benches/curation.py                 # about 1-2 minutes
    python benches/curation.py --quick         # smaller sizes, for a smoke test
    python benches/curation.py --decode-png    # throughput with a full PNG decode per image
    python benches/curation.py --image-size 512   # throughput at a realistic image size
    python benches/curation.py --jpeg --image-size 512   # JPEGs: image-check workers vs curation's own thread
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import os
import statistics
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

from medmo_pipeline.data import image_check_workers, shards
from medmo_pipeline.data.curation import CurationLimits, curate
from medmo_pipeline.data.image_check_workers import worker_pids, workers_cpu_seconds
from medmo_pipeline.data.image_limits import ImageLimits
from medmo_pipeline.data.png_batch import check_pngs, check_threads
from medmo_pipeline.process_memory import peak_rss_kib, peak_rss_kib_of
from medmo_pipeline.schema.rows import SAMPLE_SCHEMA

SHARD_ROWS = 2000


def synthetic_rows(n: int, size: int = 64, fmt: str = "PNG", first: int = 0):
    """``n`` VQA rows (indices ``first``...), each with its own PNG (a base texture with the row
    index stamped in) or JPEG (the texture with the row's own noise: a stamp may not survive JPEG)."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, size, dtype=np.float32)
    bases = [np.clip(ramp[None, :] + rng.normal(0, 12, (size, size)), 0, 255).astype(np.uint8) for _ in range(16)]
    for index in range(first, first + n):
        pixels = bases[index % 16].copy()
        pixels[0, :4] = np.frombuffer(index.to_bytes(4, "big"), dtype=np.uint8)  # makes each image distinct
        buffer = io.BytesIO()
        if fmt == "JPEG":
            noise = np.random.default_rng(index).integers(-6, 7, pixels.shape)
            Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
        else:
            Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
        data = buffer.getvalue()
        yield {
            "id": f"bench:{index:07d}", "source": "bench", "split": "train", "task": "vqa", "modality": "xray",
            "images": [{"bytes": data, "path": f"img/{index:07d}.{fmt.lower()}", "width": size, "height": size,
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
    wall, cpu = {"curate": [], "plain": [], "inflate": []}, {"curate": [], "plain": [], "inflate": []}  # cpu: all threads
    caller = {"curate": [], "plain": [], "inflate": []}  # CPU time of the calling thread alone
    image_bytes = pa.array([row["images"][0]["bytes"] for row in rows], pa.binary())

    def timed(path: str, run) -> None:
        start, start_caller = time.perf_counter(), time.thread_time()
        start_cpu = time.process_time() + workers_cpu_seconds()
        run()
        wall[path].append(time.perf_counter() - start)
        cpu[path].append(time.process_time() + workers_cpu_seconds() - start_cpu)
        caller[path].append(time.thread_time() - start_caller)

    with tempfile.TemporaryDirectory() as tmp:
        def curated(attempt):
            report = curate(rows, Path(tmp) / f"curated{attempt}", source="bench", shard_rows=SHARD_ROWS,
                            limits=limits)
            assert report["rows_kept"] == n, report["quarantined_by_reason"]

        curated("-warm-up")  # untimed, both: library set-up, and the allocator's first growth to this size
        plain_write(rows, Path(tmp) / "plain-warm-up")
        for attempt in range(repeats):  # interleaved, best of: the machine is shared and noisy
            timed("curate", functools.partial(curated, attempt))
            timed("plain", functools.partial(plain_write, rows, Path(tmp) / f"plain{attempt}"))
            if not limits.image.decode_png:
                timed("inflate", functools.partial(check_pngs, image_bytes, limits.image))
        same_rows(Path(tmp) / "curated0", Path(tmp) / "plain0")
    ours, plain = n / min(wall["curate"]), n / min(wall["plain"])
    pairs = sorted(p / c for c, p in zip(wall["curate"], wall["plain"]))
    check = "full PNG decode" if limits.image.decode_png else "PNG structure + CRCs + inflate"
    kib = sum(len(r["images"][0]["bytes"]) for r in rows) / n / 1024
    print(f"throughput ({n} rows, {size}x{size} PNG, {kib:.0f} KiB each, {check}, best of {repeats}):")
    workers = f"{check_threads()} worker processes" if check_threads() > 1 else "its own thread"
    print(f"  cores: {len(os.sched_getaffinity(0))} available to this process (load average {os.getloadavg()[0]:.1f}); "
          f"curation checks images on {workers} and encodes + fsyncs shards on 1 more thread; "
          f"the plain write runs on its calling thread")
    print(f"  full curation (validate+normalise+hash+write): {ours:10.0f} rows/s")
    print(f"  plain pyarrow write of normalised rows:        {plain:10.0f} rows/s")
    print(f"  ratio: {ours / plain:.2f}x  (target >= 0.5x; single pairs ranged {pairs[0]:.2f}-{pairs[-1]:.2f}, "
          f"median {statistics.median(pairs):.2f})")
    print(f"  CPU time ratio (all threads and image-check workers, best of each): {min(cpu['plain']) / min(cpu['curate']):.2f}x")
    print(f"  calling thread's CPU time ratio: {min(caller['plain']) / min(caller['curate']):.2f}x (curation's own "
          f"thread; its image checks and shard encoding run beside it)")
    if cpu["inflate"]:  # what the decodability check alone costs, whatever the rest of curation does
        check = min(cpu["inflate"])
        print(f"  PNG checks alone (check_pngs: CRCs + pixel streams inflated): {n / check:10.0f} rows/s of CPU; "
              f"a path that writes the rows and runs them on one core is at most "
              f"{min(cpu['plain']) / (min(cpu['plain']) + check):.2f}x the plain write")


def same_rows(curated: Path, plain: Path) -> None:
    """The two paths wrote the same rows (the bench's rows are normalised already)."""
    ours = pa.concat_tables([pq.read_table(path) for path in sorted(curated.glob("part-*.parquet"))])
    theirs = pa.concat_tables([pq.read_table(path) for path in sorted(plain.glob("part-*.parquet"))])
    assert ours.equals(theirs), "curation changed the rows"


def jpeg_workers(n: int, repeats: int, size: int) -> None:
    """Curation of distinct JPEGs with the image-check workers and on curation's own thread, in
    turn (each attempt on images neither has seen: the workers remember verdicts by hash)."""
    modes = {"workers": (image_check_workers.MIN_POOL_IMAGES, image_check_workers.MIN_POOL_BYTES),
             "own thread": (10**12, 10**15)}
    wall: dict[str, list[float]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(repeats + 1):  # the first: untimed warm-up (the workers start)
            for offset, (mode, (images, data)) in enumerate(modes.items()):
                rows = list(synthetic_rows(n, size, "JPEG", first=(2 * attempt + offset) * n))
                image_check_workers.MIN_POOL_IMAGES, image_check_workers.MIN_POOL_BYTES = images, data
                start = time.perf_counter()
                report = curate(rows, Path(tmp) / f"{attempt}-{offset}", source="bench", shard_rows=SHARD_ROWS)
                assert report["rows_kept"] == n, report["quarantined_by_reason"]
                if attempt:
                    wall[mode].append(time.perf_counter() - start)
    image_check_workers.MIN_POOL_IMAGES, image_check_workers.MIN_POOL_BYTES = modes["workers"]
    rates = {mode: n / min(times) for mode, times in wall.items()}
    print(f"JPEG curation ({n} rows, {size}x{size} JPEG, each decoded once to be checked, best of {repeats}; "
          f"load average {os.getloadavg()[0]:.1f}):")
    for mode, rate in rates.items():
        print(f"  checked on {mode:<11} {rate:10.0f} rows/s")
    print(f"  workers / own thread: {rates['workers'] / rates['own thread']:.2f}x")


def child_peak_rss(n: int) -> None:
    """Run in a subprocess: stream ``n`` rows through curate, print peak RSS in KiB."""
    with tempfile.TemporaryDirectory() as tmp:
        report = curate(synthetic_rows(n), Path(tmp) / "out", source="bench", shard_rows=SHARD_ROWS)
    workers = sum(map(peak_rss_kib_of, worker_pids()))  # the image-check workers' memory counts too
    print(json.dumps({"rows": report["rows_kept"], "peak_rss_kib": peak_rss_kib() + workers, "workers_kib": workers}))


def memory(small: int, large: int) -> None:
    results = {}
    for n in (small, large):
        out = subprocess.run([sys.executable, __file__, "--rss-child", str(n)], capture_output=True, text=True,
                             check=True)
        results[n] = json.loads(out.stdout.strip().splitlines()[-1])
    a, b = results[small]["peak_rss_kib"], results[large]["peak_rss_kib"]
    print(f"peak RSS, curate streaming (shard_rows={SHARD_ROWS}), fresh subprocess each, its image-check workers "
          f"added ({results[small]['workers_kib'] / 1024:.0f} / {results[large]['workers_kib'] / 1024:.0f} MiB of it):")
    print(f"  {small:>7} rows: {a / 1024:7.1f} MiB")
    print(f"  {large:>7} rows: {b / 1024:7.1f} MiB")
    print(f"  ratio: {b / a:.2f}  (target <= 1.2)")


def key_set_child(n: int, kind: str) -> None:
    """Run in a subprocess: ``n`` 64-bit keys added a batch of 2,000 at a time to a ``KeySet`` or a
    CPython set (what curation held its kept ids and content keys in); print the resident growth."""
    from medmo_pipeline.data.curation.keys import KeySet
    from medmo_pipeline.process_memory import current_rss_kib

    before, keys = current_rss_kib(), KeySet() if kind == "KeySet" else set()
    for start in range(0, n, 2_000):  # each batch's keys made and let go of, as curation's are
        batch = [hash(f"bench:{index:09d}") for index in range(start, start + 2_000)]
        keys.add(batch) if kind == "KeySet" else keys.update(batch)
    print(json.dumps({"bytes_per_key": (current_rss_kib() - before) * 1024 / n}))


def key_memory(n: int) -> None:
    sizes = {}
    for kind in ("KeySet", "set"):
        out = subprocess.run([sys.executable, __file__, "--key-set-child", str(n), kind], capture_output=True,
                             text=True, check=True)
        sizes[kind] = json.loads(out.stdout.strip().splitlines()[-1])["bytes_per_key"]
    print(f"dedup keys ({n} 64-bit keys, added 2,000 at a time; curation holds two such sets, ids and contents):")
    print(f"  KeySet (sorted numpy runs): {sizes['KeySet']:6.1f} bytes per key")
    print(f"  CPython set of ints:        {sizes['set']:6.1f} bytes per key  ({sizes['set'] / sizes['KeySet']:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--decode-png", action="store_true", help="decode every PNG fully (throughput only)")
    parser.add_argument("--image-size", type=int, default=64,
                        help="side of each PNG (64 by default; 512 approximates real medical images)")
    parser.add_argument("--jpeg", action="store_true",
                        help="curate JPEGs with and without the image-check workers instead")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key-set-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        child_peak_rss(args.rss_child)
        return
    if args.key_set_child:
        key_set_child(int(args.key_set_child[0]), args.key_set_child[1])
        return
    rows = 2_000 if args.quick else max(1_000, 10_000 * 64 * 64 // args.image_size**2)
    if args.jpeg:
        jpeg_workers(max(1_000, rows // 4), 2 if args.quick else 3, max(args.image_size, 256))
        return
    throughput(rows, 3 if args.quick else 7, CurationLimits(image=ImageLimits(decode_png=args.decode_png)),
               args.image_size)
    if not args.decode_png and args.image_size == 64:
        memory(*((2_000, 20_000) if args.quick else (10_000, 100_000)))
        key_memory(200_000 if args.quick else 2_000_000)


if __name__ == "__main__":
    main()
