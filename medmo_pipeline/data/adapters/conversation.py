"""LLaVA-style conversational JSON/JSONL: ``{"id", "image": path | [paths], "conversations":
[{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": ...}, ...]}``.

Used by PubMed-Vision, Quilt-LLaVA-Pretrain, LLaVA-Med-style sets and MedSG. ``<image>``
placeholders are removed from the text; the images travel, in order, in the row. Turns after the
last assistant reply are dropped; system turns are dropped.

Grounding sets that keep their boxes in the reply (MedSG-188K: ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``
in pixels) declare the numbers' scale as ``reply_box_scale``; the first reply's boxes then become the
row's pixel boxes of its image, for a record with one image (``boxes.reply_box_to_pixels``), which
is what the RL box reward scores against. Every reply of such a set is checked, whatever its place
and however many images the record has: a box marker whose box cannot be read (NaN, reversed, cut
off) quarantines the record as malformed_record naming its turn, so a reply's boxes are kept all or
none; in a record with one image, a box outside the declared scale's frame is bad_number.

Records are named by ``id_field``: one without an id (absent, null, blank) is missing_field; a
layout whose records carry no id sets ``id_field: ""`` and they are numbered in file order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from medmo_pipeline.data.outcomes import RowError
from medmo_pipeline.schema import boxes as box_scale
from medmo_pipeline.schema.box_text import parse_boxes, parse_labeled_boxes
from medmo_pipeline.schema.rows import TaskName

from .common import (
    ImageRecordOptions,
    as_list,
    guarded,
    limited,
    load_image,
    make_row,
    read_records,
    rows_only,
    strip_image_tokens,
    text,
)

# A box marker and what it opens, up to its close (MedSG's prompts close a box with a second
# <|box_start|>) or the end of the text: a marker left open is a box cut off. No group can
# repeat into another, so the scan is linear.
_MARKED_BOX = re.compile(r"<\|box_start\|>(?P<qwen>.*?)(?:(?P<qwen_end><\|box_(?:end|start)\|>)|\Z)"
                         r"|<box>(?P<medmo>.*?)(?:(?P<medmo_end></box>)|\Z)", re.DOTALL)
_INNERMOST_LIST = re.compile(r"\[[^\[\]]*\]")
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


class Options(ImageRecordOptions):
    task: TaskName = "vqa"
    id_field: str = "id"
    conversations_field: str = "conversations"
    reply_box_scale: Literal["relative_1000", "pixels"] | None = None


def iter_outcomes(root: Path, options: Options | dict) -> Iterator:
    """Rows, and the outcome (quarantined / filtered) of each record that gives none."""
    options = Options.model_validate(options)
    def convert(index: int, record: dict) -> list[dict]:
        field = options.conversations_field
        messages = conversation(record.get(field) or [], field if options.reply_box_scale else "")
        if not messages:
            messages = [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]
        images = [load_image(root, value, options) for value in as_list(record.get(options.image_field))]
        local_id = record.get(options.id_field) if options.id_field else index  # absent: make_row refuses it
        boxes = reply_boxes(messages, images, options.reply_box_scale) if options.reply_box_scale else []
        return [make_row(local_id, options.task, options, messages, images=images, boxes=boxes)]

    yield from guarded(limited(read_records(root, options), options), options.file, convert)


def reply_boxes(messages: list[dict], images: list[dict], scale: str) -> list[dict]:
    """Pixel box records of the first reply's boxes on the record's one image; none for a record
    with no image or several (MedSG's replies name which of several images a box lies on). Every
    reply's boxes must lie in the declared scale's frame (RowError 'bad_number')."""
    if len(images) != 1 or not images[0]["bytes"]:  # a missing image: curation quarantines it as such
        return []
    width, height = images[0]["width"], images[0]["height"]
    first = None
    for reply in (m["content"] for m in messages if m["role"] == "assistant"):
        records = []
        for label, box in parse_labeled_boxes(reply):
            try:
                x1, y1, x2, y2 = box_scale.reply_box_to_pixels(box, width, height, scale)
            except ValueError as error:
                raise RowError("bad_number", str(error)) from None
            records.append({"label": label, "x1": x1, "y1": y1, "x2": x2, "y2": y2})
        first = records if first is None else first  # the later replies are only checked
    return first or []


def check_marked_boxes(reply: str, where: str) -> None:
    """RowError('malformed_record') unless every box marker of ``reply`` opens boxes that can be
    read: kept, a reply would teach a box the scorer cannot read, or show more boxes than the row
    keeps."""
    written = 0
    for marked in _MARKED_BOX.finditer(reply):
        if marked["qwen_end"] or marked["medmo_end"]:
            found = parse_boxes(marked[0])
            # a <box> group holds one box per innermost list; a <|box_start|> pair holds one box
            expected = 1 if marked["qwen_end"] else len(_INNERMOST_LIST.findall(marked["medmo"]))
            if expected and len(found) == expected:
                written += expected
                continue
        raise RowError("malformed_record", f"{where}: a box is not four finite numbers x1 < x2, y1 < y2: "
                                           f"{marked[0][:120]!r}")
    if written and written != len(parse_labeled_boxes(reply)):  # a box read outside its marker, or one in another's
        raise RowError("malformed_record", f"{where}: the reply's boxes and its box markers disagree: {reply[:120]!r}")


def conversation(turns: list[dict], boxes_field: str = "") -> list[dict]:
    """LLaVA turns -> chat messages ending on the last assistant turn. With ``boxes_field`` (the
    turns' field name, for a set whose replies hold boxes) each reply's box markers are checked."""
    if not isinstance(turns, list):
        raise RowError("malformed_record", f"conversations is {type(turns).__name__}, not a list")
    messages = []
    for position, item in enumerate(turns):
        if not isinstance(item, dict):
            raise RowError("malformed_record", f"a turn is {type(item).__name__}, not an object")
        role = ROLES.get(str(item.get("from", item.get("role", ""))).lower())
        if role is not None:
            messages.append({"role": role, "content": strip_image_tokens(text(item.get("value", item.get("content")))) })
            if boxes_field and role == "assistant":
                check_marked_boxes(messages[-1]["content"], f"{boxes_field}[{position}]")
    while messages and messages[-1]["role"] != "assistant":
        messages.pop()
    return messages


iter_samples = rows_only(iter_outcomes)
