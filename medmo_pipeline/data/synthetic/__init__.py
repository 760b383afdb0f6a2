"""The synthetic, deterministic medical corpus of the embedded default.

Three sources, small enough for a tiny model to learn in a few CPU minutes (short answers, a small
vocabulary, a few phrasings per question):

- ``synth_xray``: chest-X-ray-like images with 0-2 lesions (caption, yes/no and counting VQA,
  grounding, short reports)
- ``synth_cells``: microscopy-like images with 0-3 cells (caption, counting and yes/no VQA, grounding)
- ``synth_medqa``: stage 3's own tasks: multiple choice (about an X-ray or a findings text) and
  instructions (summarise findings, give the impression, say where the lesions are)

Rows follow ``medmo_pipeline.schema.rows``. Same arguments give identical rows, image bytes
included; train and eval draw from different random streams, so they share no image.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from medmo_pipeline.schema.rows import SPLITS

from . import cells, medqa, xray
from .rows import LICENSE
from .schedule import slot
from .seeding import row_rng

SYNTHETIC_SOURCES = ("synth_xray", "synth_cells", "synth_medqa")

_BUILDERS = {
    "synth_xray": (xray.CYCLE, xray.build),
    "synth_cells": (cells.CYCLE, cells.build),
    "synth_medqa": (medqa.CYCLE, medqa.build),
}

MIN_IMAGE_SIZE = 32  # pixels a side; smaller images leave no room for the lungs and cells

__all__ = ["LICENSE", "MIN_IMAGE_SIZE", "SYNTHETIC_SOURCES", "generate_rows", "iter_texts"]


def generate_rows(
    source: str, split: str, n: int, *, seed: int = 42, image_size: int = 128
) -> Iterator[dict]:
    """Yield ``n`` rows of ``source`` for ``split``; ids are ``source:split-NNNNNN``.

    Row ``i`` depends only on (seed, source, split, i, image_size), never on ``n``.
    """
    if source not in _BUILDERS:
        raise ValueError(f"unknown synthetic source {source!r}; expected one of {SYNTHETIC_SOURCES}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if n < 0 or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"need n >= 0 and image_size >= {MIN_IMAGE_SIZE}, got n={n}, image_size={image_size}")
    cycle, build = _BUILDERS[source]
    for index in range(n):
        kind, occurrence = slot(index, cycle)
        fields = build(row_rng(seed, source, split, index), kind, occurrence, image_size)
        yield {
            "id": f"{source}:{split}-{index:06d}",
            "source": source,
            "split": split,
            **fields,
            "license": LICENSE,
        }


def iter_texts(rows: Iterable[dict]) -> Iterator[str]:
    """Every text a model reads or writes in ``rows`` (message contents, answers, choices, box
    labels): the corpus a tokenizer is trained on."""
    for row in rows:
        for message in row["messages"]:
            yield message["content"]
        if row["answer"]:
            yield row["answer"]
        yield from row["choices"]
        yield from dict.fromkeys(box["label"] for box in row["boxes"])
