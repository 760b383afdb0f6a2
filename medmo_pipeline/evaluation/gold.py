"""Gold labels that benchmark files keep inside text, moved into the row's own columns at load time.

- **Options in the question** (MMMU-Med's appended ``A. ...`` lines, MedXpertQA-MM's
  ``Answer Choices: (A) ... (B) ...``): :func:`question_choices` fills ``choices`` and ``answer``
  becomes the gold option letter, so the row is scored as multiple choice. The question text is left
  as it is (the model reads the options there). A question without a readable option list stays an
  open question.
- **Boxes in the reply** (MedSG's LLaVA JSON: ``label <box>[[x1, y1, x2, y2]]</box>``):
  :func:`reply_boxes` fills ``boxes`` in pixels of the original image. A grounding reply in this
  project is on Qwen3-VL's relative 0-1000 scale (the grounding adapters write it so, and the model is
  trained on these replies as they are), so the boxes go through ``boxes.relative_to_pixels``, the
  same conversion scoring applies to predictions, with the same (first) image's size.

An evaluation asks only a row's first user turn (``generation.prompt_messages``), so
:func:`first_exchange` keeps that turn and its reply: the gold is the reply to the question asked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from medmo_pipeline import boxes as box_scale
from medmo_pipeline.answers import option_letter
from medmo_pipeline.data.adapters.choices import LETTERS

QUESTION_TASKS = ("vqa", "text_qa")

# "A. text", "A) text", "A: text" or "(A) text" filling one line.
_OPTION_LINE = re.compile(r"[ \t]*(?:\(([A-J])\)|([A-J])[.):])[ \t]+(\S.*?)[ \t]*")
# "(A)" standing as a word, inline; the option list must start a line or follow ":" / "?".
_INLINE_MARKER = re.compile(r"(?<!\S)\(([A-J])\)")
_INLINE_LEAD = re.compile(r"(?:^|[:?])[ \t]*\Z", re.MULTILINE)


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
    options: list[tuple[str, str]] = []
    for line in reversed(question.rstrip().splitlines()):
        match = _OPTION_LINE.fullmatch(line)
        if match is None:
            break
        options.insert(0, (match.group(1) or match.group(2), match.group(3)))
    letters = [letter for letter, _ in options]
    if "A" not in letters:
        return []
    options = options[len(letters) - 1 - letters[::-1].index("A"):]  # from the last "A" on
    return _in_letter_order([letter for letter, _ in options], [option for _, option in options])


def _inline_options(question: str) -> list[str]:
    markers = list(_INLINE_MARKER.finditer(question))
    firsts = [m for m in markers if m.group(1) == "A" and _INLINE_LEAD.search(question, 0, m.start())]
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


def _in_letter_order(letters: list[str], texts: list[str]) -> list[str]:
    """``texts`` when ``letters`` read A, B, C, ... (two or more) and every text is non-empty."""
    if len(letters) < 2 or "".join(letters) != LETTERS[: len(letters)] or not all(texts):
        return []
    return texts


def reply_boxes(reply: str, width: float, height: float) -> list[dict]:
    """Boxes of a 0-1000-scale grounding reply as pixel box records of a (width x height) image.

    >>> reply_boxes("Lesion <box>[[250, 500, 750, 1000]]</box>", 200, 100)
    [{'label': 'Lesion', 'x1': 50.0, 'y1': 50.0, 'x2': 150.0, 'y2': 100.0}]
    """
    from medmo_pipeline.rewards.parsing import parse_labeled_boxes  # the rewards package loads TRL

    records = []
    for label, relative in parse_labeled_boxes(reply):
        x1, y1, x2, y2 = box_scale.relative_to_pixels(relative, width, height)
        records.append({"label": label, "x1": x1, "y1": y1, "x2": x2, "y2": y2})
    return records


def first_exchange(row: dict) -> dict:
    """``row`` with its messages cut after the first assistant reply, and that reply as ``answer``
    where the answer was the last reply; single-exchange rows are returned unchanged."""
    roles = [message["role"] for message in row["messages"]]
    if "assistant" not in roles or roles.index("assistant") == len(roles) - 1:
        return row
    messages = row["messages"][: roles.index("assistant") + 1]
    answer = messages[-1]["content"] if row["answer"] == row["messages"][-1]["content"] else row["answer"]
    return {**row, "messages": messages, "answer": answer}


def with_choices_from_question(row: dict) -> dict:
    """A question row without choices gets the options its question lists and the gold letter; a
    row whose question lists none, or whose answer names none of them, is returned unchanged."""
    if row["task"] not in QUESTION_TASKS or row["choices"]:
        return row
    choices = question_choices(row["messages"][0]["content"])
    letter = option_letter(row["answer"], choices) if choices else None
    return row if letter is None else {**row, "choices": choices, "answer": letter}


def with_boxes_from_reply(row: dict) -> dict:
    """A grounding row without pixel boxes gets the boxes of its reply (see the module notes); a row
    whose image size is unknown is returned unchanged."""
    if row["task"] != "grounding" or row["boxes"] or not row["images"]:
        return row
    width, height = row["images"][0]["width"], row["images"][0]["height"]
    if width <= 0 or height <= 0:
        return row
    return {**row, "boxes": reply_boxes(row["messages"][-1]["content"], width, height)}


def gold_from_text(row: dict, answer_types: Iterable[str]) -> dict:
    """``row`` scored on its first exchange, with choices and boxes moved out of the text where the
    benchmark's answer types call for them."""
    row = first_exchange(row)
    types = set(answer_types)
    if "multiple_choice" in types:
        row = with_choices_from_question(row)
    if "boxes" in types:
        row = with_boxes_from_reply(row)
    return row
