"""Assembling sample-contract rows from the pieces each synthetic source produces."""

from __future__ import annotations

from collections.abc import Sequence

from medmo_pipeline.reply_format import THINK_CLOSE, THINK_OPEN
from medmo_pipeline.schema.boxes import format_box_answer, pixels_to_relative

from .drawing import Box

LICENSE = "CC0-1.0 (synthetic)"
COUNT_WORDS = ("no", "one", "two", "three")


def pick(rng, options: Sequence[str]) -> str:
    """One of ``options``, drawn from ``rng`` (phrasing variants of a question)."""
    return options[int(rng.integers(len(options)))]


def box_records(label: str, boxes: Sequence[Box]) -> list[dict]:
    """Pixel boxes -> the ``boxes`` column of the sample contract."""
    return [{"label": label, "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3]} for b in boxes]


def grounding_answer(label: str, boxes: Sequence[Box], size: int) -> str:
    """The MedMO box answer for pixel ``boxes`` of a square image of side ``size``."""
    return format_box_answer(label, [pixels_to_relative(b, size, size) for b in boxes])


def example(
    task: str,
    modality: str,
    question: str,
    reply: str,
    *,
    answer: str | None = None,
    images: Sequence[dict] = (),
    boxes: Sequence[dict] = (),
    choices: Sequence[str] = (),
    reasoning: str = "",
) -> dict:
    """The source-independent fields of a row: one user question, one assistant reply.

    ``answer`` (the short gold label) defaults to the reply itself. ``reasoning`` goes before the
    reply in a ``<think>`` block, the form reasoning data sets have (medmo_pipeline.reply_format);
    a stage in the ``think_answer`` format teaches it, a ``plain`` one the reply alone.
    """
    content = f"{THINK_OPEN}{reasoning}{THINK_CLOSE}{reply}" if reasoning else reply
    return {
        "task": task,
        "modality": modality,
        "images": list(images),
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": content}],
        "answer": reply if answer is None else answer,
        "choices": list(choices),
        "boxes": list(boxes),
    }
