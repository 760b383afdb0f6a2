"""synth_cells: microscopy-like fields with 0-3 stained cells.

Image: light pinkish background with noise, 1-3 non-overlapping, deeply stained purple elliptical
cells (diameter 15-30% of the side), each with a darker off-centre nucleus, or an empty field. The
cell box is the ellipse's box (the ``boxes`` column); captions and counts show 0-3 cells.

There are no grounding rows: at 16 image tokens the tiny model counts cells but boxes them no
better than a few memorised layouts (mean IoU about 0.1 after thousands of steps), so cell boxes
only diluted the grounding figure without teaching anything in the demo's budget
(docs/measurements.md). Grounding is the X-ray source's task.

The closed question asks whether any cell is visible (empty fields give the "no" half); counting
cells ("how many") is an open question. The stain is deep on purpose: with a paler one the tiny
model never learned to tell empty fields apart, and empty fields appear in captions and counts too
(docs/measurements.md has the figures).
"""

from __future__ import annotations

import numpy as np

from .drawing import Ellipse, encode_png, paint, place_apart, reading_order, to_uint8
from .rows import COUNT_WORDS, box_records, example, pick

LABEL = "cell"
MODALITY = "microscopy"
CYCLE = ("count", "presence", "caption", "count", "presence")

QUESTIONS = {
    "caption": ("Describe the image.", "What does this image show?", "Give a short caption."),
    "count": ("How many cells are there?", "How many cells are visible?", "Count the cells."),
    "presence": ("Are any cells visible?", "Is there a cell in this field?", "Does the image show any cells?"),
}

BACKGROUND = np.array([0.94, 0.89, 0.93], dtype=np.float32)
CYTOPLASM = np.array([0.66, 0.40, 0.72], dtype=np.float32)
NUCLEUS = np.array([0.30, 0.12, 0.45], dtype=np.float32)


def cell_count_for(kind: str, occurrence: int, rng: np.random.Generator) -> int:
    """How many cells a row of this question kind shows (presence alternates empty / 1-3 cells)."""
    if kind == "presence":
        return 0 if occurrence % 2 else int(rng.integers(1, 4))
    return int(rng.integers(0, 4))


def draw(rng: np.random.Generator, size: int, cell_count: int) -> tuple[dict, list]:
    """Draw one image of side ``size``; returns (image entry, pixel boxes in reading order)."""
    s = float(size)
    tint = rng.uniform(-0.03, 0.03, size=3).astype(np.float32)
    image = np.empty((size, size, 3), dtype=np.float32)
    image[:] = BACKGROUND + tint

    def propose(rng: np.random.Generator, scale: float) -> Ellipse:
        width = s * scale * rng.uniform(0.15, 0.30)
        height = np.clip(width * rng.uniform(0.8, 1.25), s * scale * 0.15, s * scale * 0.30)
        a, b = width / 2, height / 2
        return Ellipse(rng.uniform(a + 1, s - a - 1), rng.uniform(b + 1, s - b - 1), a, b)

    cells = place_apart(rng, cell_count, propose, size, gap=0.03 * s, row_gap=0.06 * s)
    for cell in cells:
        paint(image, cell, lambda r2: CYTOPLASM + tint - 0.08 * r2[..., None])  # darker rim
        shrink = rng.uniform(0.35, 0.5)
        offset = rng.uniform(-0.2, 0.2, size=2)
        nucleus = Ellipse(cell.cx + offset[0] * cell.a, cell.cy + offset[1] * cell.b,
                          cell.a * shrink, cell.b * shrink)  # fmt: skip
        paint(image, nucleus, lambda r2: np.broadcast_to(NUCLEUS, r2.shape + (3,)))
    image += rng.standard_normal((size, size, 1), dtype=np.float32) * 0.02

    boxes = [cell.box(size) for cell in cells]
    return encode_png(to_uint8(image)), [boxes[i] for i in reading_order(boxes)]


def caption(count: int) -> str:
    """'Microscopy image with two cells.'"""
    return f"Microscopy image with {COUNT_WORDS[count]} {'cell' if count == 1 else 'cells'}."


def build(rng: np.random.Generator, kind: str, occurrence: int, size: int) -> dict:
    """The source-independent fields of one synth_cells row asking a ``kind`` question."""
    image, boxes = draw(rng, size, cell_count_for(kind, occurrence, rng))
    question = pick(rng, QUESTIONS[kind])
    common = {"images": [image], "boxes": box_records(LABEL, boxes)}
    if kind == "caption":
        return example("caption", MODALITY, question, caption(len(boxes)), **common)
    if kind == "count":
        return example("vqa", MODALITY, question, str(len(boxes)), **common)
    if kind == "presence":
        return example("vqa", MODALITY, question, "yes" if boxes else "no", **common)
    raise ValueError(f"unknown synth_cells question kind {kind!r}")
