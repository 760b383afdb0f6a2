"""Gold labels that benchmark files keep inside text, moved into the row's own columns at load time.

- **Options in the question** (MedXpertQA-MM's ``Answer Choices: (A) ... (B) ...``, any appended
  ``A. ...`` lines): :func:`question_choices` fills ``choices`` and ``answer``
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

import re
from collections.abc import Iterable

from medmo_pipeline.answers import option_letter
from medmo_pipeline.data.adapters.choices import LETTERS
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

# "A. text", "A) text", "A: text" or "(A) text" filling one line (the text's trailing spaces are
# stripped after the match: a lazy text before optional spaces would try every split of a long line).
_OPTION_LINE = re.compile(r"[ \t]*(?:\(([A-J])\)|([A-J])[.):])[ \t]+(\S.*)")
# "(A)" standing as a word, inline; the option list must start a line or follow ":" / "?".
_INLINE_MARKER = re.compile(r"(?<!\S)\(([A-J])\)")


def question_choices(question: str) -> list[str]:
    """Option texts listed at the end of ``question``, in letter order; [] when it lists none.

    Options are read as trailing lines (``A. ...``, ``A) ...``, ``(A) ...``) or as one inline list
    ``(A) ... (B) ...`` that starts a line or follows ":" or "?" (its last option ends with the
    line). Letters must run A, B, C, ... and there must be at least two options.

    >>> question_choices("Which drug is shown?\\nA. Aspirin\\nB. Heparin")
    ['Aspirin', 'Heparin']
    >>> question_choices("Diagnosis?\\nAnswer Choices: (A) Sarcoidosis (B) Lymphoma (C) Tuberculosis")
    ['Sarcoidosis', 'Lymphoma', 'Tuberculosis']
    >>> question_choices("Panel (A) shows the biopsy and panel (B) the CT. What is seen?")
    []
    """
    return _trailing_option_lines(question) or _inline_options(question)


def _trailing_option_lines(question: str) -> list[str]:
    options: list[tuple[str, str]] = []  # from the last line up
    for line in reversed(question.rstrip().splitlines()):
        match = _OPTION_LINE.fullmatch(line)
        if match is None:
            break
        options.append((match.group(1) or match.group(2), match.group(3).rstrip(" \t")))
    options.reverse()
    letters = [letter for letter, _ in options]
    if "A" not in letters:
        return []
    options = options[len(letters) - 1 - letters[::-1].index("A"):]  # from the last "A" on
    return _in_letter_order([letter for letter, _ in options], [option for _, option in options])


def _inline_options(question: str) -> list[str]:
    markers = list(_INLINE_MARKER.finditer(question))
    firsts = [m for m in markers if m.group(1) == "A" and _leads_a_list(question, m.start())]
    if not firsts:
        return []
    kept = []
    for marker in markers[markers.index(firsts[-1]):]:
        if len(kept) < len(LETTERS) and marker.group(1) == LETTERS[len(kept)]:
            kept.append(marker)
    line_end = question.find("\n", kept[-1].end())
    ends = [marker.start() for marker in kept[1:]] + [line_end if line_end >= 0 else len(question)]
    texts = [question[marker.end():end].strip() for marker, end in zip(kept, ends)]
    return _in_letter_order([marker.group(1) for marker in kept], texts)


def _leads_a_list(question: str, at: int) -> bool:
    """Whether an inline option list may start at ``at``: a line starts there, or ":" or "?" comes
    before it, spaces and tabs aside. Looks back only over those spaces (searching the whole text
    before each "(A)" made a question of many markers cost their number times its length)."""
    before = at
    while before and question[before - 1] in " \t":
        before -= 1
    return before == 0 or question[before - 1] in "\n:?"


def _in_letter_order(letters: list[str], texts: list[str]) -> list[str]:
    """``texts`` when ``letters`` read A, B, C, ... (two or more) and every text is non-empty."""
    if len(letters) < 2 or "".join(letters) != LETTERS[: len(letters)] or not all(texts):
        return []
    return texts


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
