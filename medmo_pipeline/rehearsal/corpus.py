"""A synthetic corpus laid out like the registry's trained datasets, millions of rows, tiny images.

Each registry dataset that trains (45) becomes one source with its own name, tasks and modality,
written as published shards (``data.shards``: parquet parts + manifest) and listed in one corpus
index. Rows are split between the stages' sources in the paper's proportions (18.5M / 3M / 4.3M
pairs for stages 1 / 2 / 3, RL drawing from stage-2 sources), scaled to ``total_rows``.

Rows are built column-wise with pyarrow (a few seconds per million rows): images come from a small
pool of distinct tiny PNGs, so the corpus stays small on disk while every row decodes a real image.
The rows skip curation (they are generated in the sample contract directly): the rehearsal
measures training's data path, not curation.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from medmo_pipeline.data import shards
from medmo_pipeline.schema.rows import BOX_TYPE, IMAGE_TYPE, MESSAGE_TYPE, SAMPLE_SCHEMA

# The paper's stage sizes (pairs per stage); each stage's share goes evenly to its sources.
PAPER_STAGE_ROWS = {"stage1": 18_500_000, "stage2": 3_000_000, "stage3": 4_300_000}
IMAGE_POOL = 16
TEXT_TASKS = ("text_qa", "instruction")
PROMPTS = {
    "caption": ("Describe this {m} image.", "A {m} image with a small bright region."),
    "report": ("Write the findings for this {m} study.", "Findings: no acute abnormality. Impression: normal."),
    "vqa": ("Is there a lesion in this {m} image?", "yes"),
    "grounding": ("Locate the lesion in this {m} image.", "lesion <box>[[250, 250, 750, 750]]</box>"),
    "text_qa": ("Which option is correct? A) one B) two C) three D) four", "B"),
    "instruction": ("Explain what a {m} finding means for a patient.", "It means a follow-up is advised."),
}


def source_rows(entries, total_rows: int) -> dict[str, int]:
    """Rows per source: each stage's paper share of ``total_rows``, evenly over the stage's sources."""
    by_stage: dict[str, list[str]] = {}
    for entry in entries:
        stage = next((s for s in entry.stages if s in PAPER_STAGE_ROWS), "stage2")
        by_stage.setdefault(stage, []).append(entry.name)
    whole = sum(PAPER_STAGE_ROWS[s] for s in by_stage)
    return {name: max(1, total_rows * PAPER_STAGE_ROWS[stage] // whole // len(names))
            for stage, names in by_stage.items() for name in names}


def image_pool(side: int) -> list[tuple[bytes, str]]:
    """``IMAGE_POOL`` distinct grey PNGs of ``side`` pixels, each with a bright square: (bytes, sha256)."""
    import hashlib

    from PIL import Image, ImageDraw

    pool = []
    for i in range(IMAGE_POOL):
        image = Image.new("L", (side, side), 20 + 8 * i)
        offset = (i * 3) % max(1, side // 2)
        ImageDraw.Draw(image).rectangle([offset, offset, offset + side // 3, offset + side // 3], fill=230)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        pool.append((buffer.getvalue(), hashlib.sha256(buffer.getvalue()).hexdigest()))
    return pool


def _lists(values: pa.Array, counts: np.ndarray) -> pa.Array:
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def source_table(name: str, modality: str, tasks: list[str], start: int, n: int, pool, side: int) -> pa.Table:
    """Rows ``start .. start+n`` of source ``name``: tasks in turn, one pooled image per image task."""
    index = np.arange(start, start + n)
    task_of = np.array(tasks, dtype=object)[index % len(tasks)]
    has_image = ~np.isin(task_of, TEXT_TASKS)
    picked = (index[has_image] % IMAGE_POOL).tolist()
    images = pa.StructArray.from_arrays(
        [pa.array([pool[i][0] for i in picked], pa.binary()), pa.nulls(len(picked), pa.string()),
         pa.array(np.full(len(picked), side, np.int32)), pa.array(np.full(len(picked), side, np.int32)),
         pa.array([pool[i][1] for i in picked], pa.string())],
        fields=list(IMAGE_TYPE))
    texts = {task: (PROMPTS[task][0].format(m=modality), PROMPTS[task][1].format(m=modality)) for task in tasks}
    contents = [text for task in task_of for text in texts[task]]
    messages = pa.StructArray.from_arrays([pa.array(["user", "assistant"] * n, pa.string()), pa.array(contents, pa.string())],
                                          fields=list(MESSAGE_TYPE))
    grounding = task_of == "grounding"
    g = int(grounding.sum())
    quarter, three = side / 4, 3 * side / 4
    boxes = pa.StructArray.from_arrays(
        [pa.array(["lesion"] * g, pa.string())] + [pa.array(np.full(g, v, np.float64)) for v in (quarter, quarter, three, three)],
        fields=list(BOX_TYPE))
    text_qa = task_of == "text_qa"
    choices = pa.array(["A", "B", "C", "D"] * int(text_qa.sum()), pa.string())
    answers = np.where(task_of == "vqa", "yes", np.where(text_qa, "B", ""))
    columns = {
        "id": pa.array([f"{name}:{i}" for i in index.tolist()]),
        "source": pa.array([name] * n),
        "split": pa.array(["train"] * n),
        "task": pa.array(task_of.tolist(), pa.string()),
        "modality": pa.array([modality] * n),
        "images": _lists(images, has_image.astype(np.int32)),
        "messages": _lists(messages, np.full(n, 2, np.int32)),
        "answer": pa.array(answers.tolist(), pa.string()),
        "choices": _lists(choices, text_qa.astype(np.int32) * 4),
        "boxes": _lists(boxes, grounding.astype(np.int32)),
        "license": pa.array(["synthetic"] * n),
    }
    return pa.Table.from_pydict(columns, schema=SAMPLE_SCHEMA)


def build_corpus(root: Path, *, total_rows: int, image_side: int = 32, shard_rows: int = 50_000,
                 log=print) -> dict:
    """Write every trained registry dataset as a synthetic source under ``root``; return the index."""
    from medmo_pipeline.data.corpus import write_index
    from medmo_pipeline.data.registry import load_registry

    entries = load_registry().trained()
    counts = source_rows(entries, total_rows)
    pool = image_pool(image_side)
    started, sources = time.time(), {}
    for entry in entries:
        n = counts[entry.name]
        tables = (source_table(entry.name, entry.modality, list(entry.tasks), start, min(shard_rows, n - start),
                               pool, image_side) for start in range(0, n, shard_rows))
        out = Path(root) / entry.name / f"rehearsal-{n}"
        manifest = (shards.read_manifest(out) if (out / shards.MANIFEST_NAME).is_file()
                    else shards.write_tables(tables, out, shard_rows=shard_rows, source=entry.name))
        sources[entry.name] = {"path": str(out), "data_version": shards.manifest_hash(manifest),
                               "revision": "synthetic", "rows": manifest["total_rows"],
                               "splits": manifest["splits"], "shards": len(manifest["shards"])}
    log(f"corpus: {sum(counts.values()):,} rows in {len(sources)} sources, {time.time() - started:.0f} s")
    return write_index(Path(root), sources)
