"""Boxes out of model text, in the three forms grounding answers take.

- MedMO: ``Fractures <box>[[156, 516, 231, 607], [240, 529, 296, 581]]</box>`` (label, then one or
  more boxes; a text may hold several ``<box>`` groups)
- Qwen's grounding JSON: ``[{"bbox_2d": [x1, y1, x2, y2], "label": "..."}]``, bare or in a
  ```` ```json ```` fence
- bare lists: ``[[x1, y1, x2, y2], ...]`` or ``[x1, y1, x2, y2]``
- Qwen2-VL's special tokens, as MedSG-Bench writes its replies:
  ``<|object_ref_start|>Liver<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>`` (its
  prompt closes the box with a second ``<|box_start|>``, which is read the same); each such box is
  rewritten to the MedMO form before parsing, so one reader serves all forms

Every form reduces to the same unit: an innermost bracket list of exactly four numbers. When the
text has complete ``<box>...</box>`` groups, only lists inside them count, so numbers quoted in
prose next to a MedMO answer are not mistaken for predictions. Coordinates come back as written
(Qwen3-VL writes the 0-1000 scale; converting to pixels is :mod:`medmo_pipeline.schema.boxes`' job).

The parser never raises and runs in linear time: it uses ``str.find`` scans and regexes whose
repeated parts cannot overlap, so no input makes them backtrack catastrophically. It reads lazily:
with a ``limit`` it stops after that many boxes, so a reply of millions of boxes costs little memory.

A reply is scored with at most :data:`MAX_REPLY_BOXES` boxes (the box reward and the grounding
metrics read a reply with more as malformed); scorers parse with ``limit=MAX_REPLY_BOXES + 1`` to
tell such a reply apart without reading all of it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from itertools import chain, islice

Box = tuple[float, float, float, float]

BOX_OPEN, BOX_CLOSE = "<box>", "</box>"

# An innermost list: no bracket inside, so each character is scanned by at most one attempt.
_INNERMOST_LIST = re.compile(r"\[([^\[\]]*)\]")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_JSON_LABEL = re.compile(r'"label"\s*:\s*("(?:[^"\\]|\\.)*")')
_TAG = re.compile(r"<[^<>]*>")
_LABEL_STRIP = " \t\r\n,;:.-*`'\"()"
_CLAUSE_SEPARATORS = re.compile(r"[\n:;]")
# (x1,y1),(x2,y2) between <|box_start|> and <|box_end|> (or a second <|box_start|>); the point
# groups hold no parenthesis, so no two repetitions can overlap.
_QWEN2_BOX = re.compile(r"<\|box_start\|>\s*\(([^()<>]*)\)\s*,\s*\(([^()<>]*)\)\s*<\|box_(?:end|start)\|>")
_QWEN2_REF = re.compile(r"<\|object_ref_(?:start|end)\|>")
MAX_LABEL_CHARS = 200
# The most boxes a reply is scored with. Replies are cut at about a thousand tokens
# (rl.grpo.max_completion_length, evaluation.max_new_tokens) and a box takes over ten, so no real
# answer lists thousands (a gold row lists a handful); matching P predicted boxes against G gold
# ones costs memory P x G, so a reply with more is malformed.
MAX_REPLY_BOXES = 1000


def parse_boxes(text: str, limit: int | None = None) -> list[Box]:
    """All valid XYXY boxes in ``text`` (the first ``limit`` of them), in order; malformed or
    degenerate entries are skipped.

    >>> parse_boxes("Fractures <box>[[156, 516, 231, 607], [240, 529, 296, 581]]</box>")
    [(156.0, 516.0, 231.0, 607.0), (240.0, 529.0, 296.0, 581.0)]
    >>> parse_boxes('[{"bbox_2d": [10, 20, 30, 40], "label": "cell"}, {"bbox_2d": [5, 5, 5, 9]}]')
    [(10.0, 20.0, 30.0, 40.0)]
    >>> parse_boxes("no boxes [1, 2] here")
    []
    """
    return [box for _, box in parse_labeled_boxes(text, limit)]


def parse_labeled_boxes(text: str, limit: int | None = None) -> list[tuple[str, Box]]:
    """(label, box) pairs in ``text`` (the first ``limit`` of them); the label is "" where the form
    carries none.

    >>> parse_labeled_boxes("Effusion <box>[[1, 2, 30, 40]]</box>\\nNodule <box>[[5, 6, 7, 8]]</box>")
    [('Effusion', (1.0, 2.0, 30.0, 40.0)), ('Nodule', (5.0, 6.0, 7.0, 8.0))]
    >>> parse_labeled_boxes('```json\\n[{"bbox_2d": [1, 2, 3, 4], "label": "lesion"}]\\n```')
    [('lesion', (1.0, 2.0, 3.0, 4.0))]
    """
    if not isinstance(text, str):
        return []
    if "<|box_start|>" in text:
        text = _qwen2_boxes_as_medmo(text)
    return list(islice(_labeled_boxes(text), limit))


def _labeled_boxes(text: str) -> Iterator[tuple[str, Box]]:
    groups = _box_groups(text)
    first = next(groups, None)
    if first is None:
        yield from _boxes_with_json_labels(text)
        return
    for label, start, end in chain([first], groups):
        for box in _boxes_in(text, start, end):
            yield label, box


def _qwen2_boxes_as_medmo(text: str) -> str:
    """``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` -> `` <box>[[x1, y1, x2, y2]]</box>``; the
    object-reference tokens around a label become line breaks, so the label reads as its own clause.

    >>> _qwen2_boxes_as_medmo("<|object_ref_start|>Liver<|object_ref_end|><|box_start|>(1,2),(30,40)<|box_end|>")
    '\\nLiver\\n <box>[[1,2, 30,40]]</box>'
    """
    text = _QWEN2_BOX.sub(lambda m: f" {BOX_OPEN}[[{m.group(1).strip()}, {m.group(2).strip()}]]{BOX_CLOSE}", text)
    return _QWEN2_REF.sub("\n", text)


def _box_groups(text: str) -> Iterator[tuple[str, int, int]]:
    """(label, content start, content end) of each complete ``<box>...</box>`` group."""
    position = 0
    while True:
        open_at = text.find(BOX_OPEN, position)
        if open_at < 0:
            break
        close_at = text.find(BOX_CLOSE, open_at)
        if close_at < 0:
            break
        yield _label_before(text, position, open_at), open_at + len(BOX_OPEN), close_at
        position = close_at + len(BOX_CLOSE)


def _label_before(text: str, start: int, end: int) -> str:
    """The label written just before a ``<box>`` group: its clause, tags treated as separators.

    ``The answer: Fractures <box>`` and ``<answer><ref>Fractures</ref><box>`` give ``Fractures``.
    """
    window = _TAG.sub("\n", text[max(start, end - MAX_LABEL_CHARS) : end])
    for clause in reversed(_CLAUSE_SEPARATORS.split(window)):
        label = clause.strip(_LABEL_STRIP)
        if label:
            return label
    return ""


def _boxes_in(text: str, start: int, end: int) -> Iterator[Box]:
    for match in _INNERMOST_LIST.finditer(text, start, end):
        box = _box_from_list(match.group(1))
        if box is not None:
            yield box


def _boxes_with_json_labels(text: str) -> Iterator[tuple[str, Box]]:
    """Boxes anywhere in ``text``, labelled by the ``"label"`` of the JSON object holding them."""
    # Each list is read knowing only its neighbours (one list ahead), so memory stays small.
    previous_end, match = 0, None
    for following in chain(_INNERMOST_LIST.finditer(text), [None]):
        if match is not None:
            box = _box_from_list(match.group(1))
            if box is not None:
                # Search only between the neighbouring lists, so each character is looked at a
                # bounded number of times however many boxes the text holds.
                next_start = following.start() if following is not None else len(text)
                yield _json_label(text, previous_end, match.start(), match.end(), next_start), box
            previous_end = match.end()
        match = following


def _json_label(text: str, previous_end: int, list_start: int, list_end: int, next_start: int) -> str:
    """The "label" of the ``{...}`` object around a list, or "" when there is none."""
    object_start = text.rfind("{", previous_end, list_start)
    if object_start < 0 or text.find("}", object_start, list_start) >= 0:
        return ""
    object_end = text.find("}", list_end, next_start)
    if object_end < 0:
        return ""
    label = _JSON_LABEL.search(text, object_start, object_end)
    if label is None:
        return ""
    try:
        value = json.loads(label.group(1))
    except ValueError:
        return ""
    return value.strip() if isinstance(value, str) else ""


def _box_from_list(content: str) -> Box | None:
    """Four finite numbers with x2 > x1 and y2 > y1, else None."""
    parts = content.split(",")
    if len(parts) != 4:
        return None
    values = []
    for part in parts:
        token = part.strip()
        if _NUMBER.fullmatch(token) is None:
            return None
        value = float(token)
        if not math.isfinite(value):  # e.g. 1e999
            return None
        values.append(value)
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        return None
    return (x1, y1, x2, y2)
