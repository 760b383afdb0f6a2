"""LLaVA-style conversational JSON/JSONL: ``{"id", "image": path | [paths], "conversations":
[{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": ...}, ...]}``.

Used by PubMed-Vision, Quilt-LLaVA-Pretrain, LLaVA-Med-style sets and MedSG. ``<image>``
placeholders are removed from the text; the images travel, in order, in the row. Turns after the
last assistant reply are dropped; system turns are dropped.

Grounding sets that keep their boxes in the reply (MedSG-188K: ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``
in pixels) declare the numbers' scale as ``reply_box_scale``; the first reply's boxes then become the
row's pixel boxes of its image, for a record with one image (``boxes.reply_box_to_pixels``), which
is what the RL box reward scores against. A record with a box outside the declared scale's frame is
quarantined (bad_number).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from medmo_pipeline.data.outcomes import RowError
from medmo_pipeline.schema import boxes as box_scale
from medmo_pipeline.schema.box_text import parse_labeled_boxes
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

BOX_MARKERS = ("<|box_start|>", "<box>")  # a reply written with one holds a box
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
        messages = conversation(record.get(options.conversations_field) or [])
        if not messages:
            messages = [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]
        images = [load_image(root, value, options) for value in as_list(record.get(options.image_field))]
        local_id = record.get(options.id_field, index)
        boxes = reply_boxes(messages, images, options.reply_box_scale) if options.reply_box_scale else []
        return [make_row(local_id, options.task, options, messages, images=images, boxes=boxes)]

    yield from guarded(limited(read_records(root, options), options), options.file, convert)


def reply_boxes(messages: list[dict], images: list[dict], scale: str) -> list[dict]:
    """Pixel box records of the first reply's boxes on the record's one image; none for a record
    with no image or several (MedSG's replies name which of several images a box lies on)."""
    reply = next((m["content"] for m in messages if m["role"] == "assistant"), "")
    if len(images) != 1 or not images[0]["bytes"]:  # a missing image: curation quarantines it as such
        return []
    width, height = images[0]["width"], images[0]["height"]
    records, found = [], parse_labeled_boxes(reply)
    if not found and any(marker in reply for marker in BOX_MARKERS):  # kept, it would teach a box-less reply
        raise RowError("malformed_record",
                       f"the reply's box is not four finite numbers x1 < x2, y1 < y2: {reply[:120]!r}")
    for label, box in found:
        try:
            x1, y1, x2, y2 = box_scale.reply_box_to_pixels(box, width, height, scale)
        except ValueError as error:
            raise RowError("bad_number", str(error)) from None
        records.append({"label": label, "x1": x1, "y1": y1, "x2": x2, "y2": y2})
    return records


def conversation(turns: list[dict]) -> list[dict]:
    """LLaVA turns -> chat messages ending on the last assistant turn."""
    if not isinstance(turns, list):
        raise RowError("malformed_record", f"conversations is {type(turns).__name__}, not a list")
    messages = []
    for item in turns:
        if not isinstance(item, dict):
            raise RowError("malformed_record", f"a turn is {type(item).__name__}, not an object")
        role = ROLES.get(str(item.get("from", item.get("role", ""))).lower())
        if role is not None:
            messages.append({"role": role, "content": strip_image_tokens(text(item.get("value", item.get("content")))) })
    while messages and messages[-1]["role"] != "assistant":
        messages.pop()
    return messages


iter_samples = rows_only(iter_outcomes)
