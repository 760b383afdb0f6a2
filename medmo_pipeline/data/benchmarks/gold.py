"""Gold labels that benchmark files keep inside text, moved into the row's own columns at load time.

- **Options in the question** (MedXpertQA-MM's ``Answer Choices: (A) ... (B) ...``, any appended
  ``A. ...`` lines): :func:`question_choices` (``data.adapters.choices``, where the adapters read
  the same list to show options once) fills ``choices`` and ``answer``
  becomes the gold option letter, so the row is scored as multiple choice. The question text is left
  as it is (the model reads the options there). A question without a readable option list stays an
  open question.
- **Boxes in the reply** (MedSG-Bench's ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``, LLaVA-style
  ``label <box>[[x1, y1, x2, y2]]</box>``): :func:`reply_boxes` fills ``boxes`` in pixels of the
  original image, and :func:`with_model_scale_reply` rewrites the reference reply in the model's own
  form and scale. The scale of the reply's
  numbers is the benchmark's ``answers.box_scale`` in the registry: ``relative_1000`` (Qwen3-VL's
  0-1000 scale, as the grounding adapters of this project write their replies) goes through
  ``boxes.relative_to_pixels``, the same conversion scoring applies to predictions, with the same
  (first) image's size; ``pixels`` (coordinates of the original image) is taken as it is.
- **Unreadable gold**: a grounding row still without a gold box after this (a reply with no box in
  a form ``schema.box_text`` reads, or an image of unknown size) cannot be scored;
  the benchmark load (``data.benchmarks.loading``, ``data.benchmarks.checks``) fails naming every such row,
  before any model runs, and :func:`check_grounding_gold` refuses such rows at scoring time too.

An evaluation asks only a row's first user turn (``generation.prompt_messages``), so
:func:`first_exchange` keeps that turn and its reply: the gold is the reply to the question asked.
"""

from __future__ import annotations

from collections.abc import Iterable

from medmo_pipeline.answers import option_letter
from medmo_pipeline.data.adapters.choices import question_choices  # read from a question here and in adapters
from medmo_pipeline.schema import boxes as box_scale
from medmo_pipeline.schema.box_text import parse_boxes, parse_labeled_boxes
from medmo_pipeline.schema.rows import prompt_text, reference_text

QUESTION_TASKS = ("vqa", "text_qa")


def yes_no_gold(answer: str) -> bool:
    """Whether a gold answer is a closed yes/no one: "yes" or "no" in any case, with the spaces and
    final period some releases write ("Yes.", " No."; they were scored as open answers, by exact match).

    >>> [yes_no_gold(a) for a in ("Yes.", "no ", "NO", "yes, left", "Yesterday")]
    [True, True, True, False, False]
    """
    return answer.strip().removesuffix(".").rstrip().lower() in ("yes", "no")

BOX_SCALES = ("relative_1000", "pixels")


class UnreadableGold(ValueError):
    """Benchmark rows whose gold label cannot be read; the message names the rows."""


def reply_boxes(reply: str, width: float, height: float, scale: str = "relative_1000") -> list[dict]:
    """Boxes of a grounding reply as pixel box records of a (width x height) image.

    ``scale`` is the reply's box scale: ``relative_1000`` (0-1000, converted with the image size)
    or ``pixels`` (already pixels of the original image, kept as they are).

    >>> reply_boxes("Lesion <box>[[250, 500, 750, 1000]]</box>", 200, 100)
    [{'label': 'Lesion', 'x1': 50.0, 'y1': 50.0, 'x2': 150.0, 'y2': 100.0}]
    >>> reply_boxes("Lesion <box>[[50, 50, 150, 100]]</box>", 200, 100, scale="pixels")
    [{'label': 'Lesion', 'x1': 50.0, 'y1': 50.0, 'x2': 150.0, 'y2': 100.0}]
    """

    if scale not in BOX_SCALES:
        raise ValueError(f"unknown box scale {scale!r}; known: {list(BOX_SCALES)}")
    records = []
    for label, box in parse_labeled_boxes(reply):
        if scale == "relative_1000":
            box = box_scale.relative_to_pixels(box, width, height)
        x1, y1, x2, y2 = (float(v) for v in box)
        records.append({"label": label, "x1": x1, "y1": y1, "x2": x2, "y2": y2})
    return records


def first_exchange(row: dict) -> dict:
    """``row`` with its messages cut after the first assistant reply, and that reply as ``answer``
    where the answer was the last reply; single-exchange rows are returned unchanged."""
    roles = [message["role"] for message in row["messages"]]
    if "assistant" not in roles or roles.index("assistant") == len(roles) - 1:
        return row
    messages = row["messages"][: roles.index("assistant") + 1]
    answer = messages[-1]["content"] if row["answer"] == reference_text(row) else row["answer"]
    return {**row, "messages": messages, "answer": answer}


def with_choices_from_question(row: dict) -> dict:
    """A question row without choices gets the options its question lists and the gold letter; a
    row whose question lists none, or whose answer names none of them, is returned unchanged."""
    if row["task"] not in QUESTION_TASKS or row["choices"]:
        return row
    choices = question_choices(prompt_text(row))
    letter = option_letter(row["answer"], choices) if choices else None
    return row if letter is None else {**row, "choices": choices, "answer": letter}


def with_boxes_from_reply(row: dict, scale: str = "relative_1000") -> dict:
    """A grounding row without pixel boxes gets the boxes of its reply, read on ``scale`` (see the
    module notes); a row whose image size is unknown is returned unchanged."""
    if row["task"] != "grounding" or row["boxes"] or not row["images"]:
        return row
    width, height = row["images"][0]["width"], row["images"][0]["height"]
    if width <= 0 or height <= 0:
        return row
    return {**row, "boxes": reply_boxes(reference_text(row), width, height, scale)}


def gold_from_text(row: dict, answer_types: Iterable[str], box_scale: str | None = None) -> dict:
    """``row`` scored on its first exchange, with choices and boxes moved out of the text where the
    benchmark's answer types call for them; ``box_scale`` (the registry's ``answers.box_scale``) is
    the scale of the reply's boxes and is required with answer type ``boxes``."""
    row = first_exchange(row)
    types = set(answer_types)
    if "multiple_choice" in types:
        row = with_choices_from_question(row)
    if "boxes" in types:
        if box_scale is None:
            raise ValueError("answer type 'boxes' needs the reply's box scale (answers.box_scale)")
        row = with_boxes_from_reply(row, box_scale)
        row = with_model_scale_reply(row)
    return row


def with_model_scale_reply(row: dict) -> dict:
    """A grounding row whose reference reply is rewritten in the form and scale the model answers
    in (``label <box>[[x1, y1, x2, y2]]</box>``, 0-1000 of the first image), from its pixel boxes:
    a benchmark's own reply form and scale (MedSG's pixel ``<|box_start|>`` pairs) never reach a
    prediction or a per-sample reference, and the gold reply scores as a perfect answer."""
    if row["task"] != "grounding" or not row["boxes"] or not row["images"]:
        return row
    width, height = row["images"][0]["width"], row["images"][0]["height"]
    if width <= 0 or height <= 0:
        return row
    label = next((box.get("label") for box in row["boxes"] if box.get("label")), "") or ""
    relative = [box_scale.pixels_to_relative((b["x1"], b["y1"], b["x2"], b["y2"]), width, height) for b in row["boxes"]]
    reply = box_scale.format_box_answer(label, relative).strip()
    answer = reply if row["answer"] == reference_text(row) else row["answer"]
    return {**row, "messages": [*row["messages"][:-1], {**row["messages"][-1], "content": reply}], "answer": answer}


def unreadable_grounding_reason(row: dict) -> str | None:
    """Why a grounding row has no gold box to score against; None when it has one (or is no
    grounding row)."""
    if row["task"] != "grounding":
        return None
    if row["boxes"]:
        return _box_outside(row)
    if not row["images"]:
        return "no image"
    if row["images"][0]["width"] <= 0 or row["images"][0]["height"] <= 0:
        return "image size unknown, so its reply's boxes cannot be placed"

    reply = " ".join(reference_text(row).split())
    if parse_boxes(reply):
        return "empty boxes column (its reply's boxes were never read: load it through data.benchmarks.loading)"
    return f"no box readable in its reply {reply[:80]!r}"


def _box_outside(row: dict) -> str | None:
    """Why a grounding row's gold boxes cannot be scored on its first image: one not inside it (a
    pixel of slack), or not a box; None when all are (or the image size is unknown)."""
    width, height = (row["images"][0]["width"], row["images"][0]["height"]) if row["images"] else (0, 0)
    for box in row["boxes"]:
        x1, y1, x2, y2 = (box.get(name) for name in ("x1", "y1", "x2", "y2"))
        try:
            inside = -1 <= x1 < x2 <= (width or x2) + 1 and -1 <= y1 < y2 <= (height or y2) + 1
        except TypeError:
            inside = False
        if not inside:
            return f"gold box {[x1, y1, x2, y2]} is not a box inside its {width} x {height} image"
    return None


def check_grounding_gold(rows: Iterable[dict], benchmark: str | None = None, *, shown: int = 5) -> None:
    """Raise :class:`UnreadableGold` naming the grounding rows (of ``benchmark``) with no gold box.

    >>> row = {"id": "b:1", "task": "grounding", "boxes": [], "images": [{"width": 8, "height": 8}],
    ...        "messages": [{"role": "user", "content": "Where?"}, {"role": "assistant", "content": "none"}]}
    >>> check_grounding_gold([row], "b")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    medmo_pipeline.data.benchmarks.gold.UnreadableGold: benchmark 'b': 1 grounding row(s) have no gold box ...
    """
    bad = [(row["id"], reason) for row in rows if (reason := unreadable_grounding_reason(row)) is not None]
    if bad:
        listed = "; ".join(f"{row_id}: {reason}" for row_id, reason in bad[:shown])
        more = f"; and {len(bad) - shown} more" if len(bad) > shown else ""
        where = f"benchmark {benchmark!r}: " if benchmark else ""
        raise UnreadableGold(
            f"{where}{len(bad)} grounding row(s) have no gold box and cannot be scored "
            f"({listed}{more}). Fix or drop these rows in the benchmark's files, or check answers.box_scale "
            f"and the reply format (<box>[[x1, y1, x2, y2]]</box> or bbox_2d JSON)")
