"""LLaVA-style conversational JSON/JSONL: ``{"id", "image": path | [paths], "conversations":
[{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": ...}, ...]}``.

Used by PubMed-Vision, Quilt-LLaVA-Pretrain, LLaVA-Med-style sets and MedSG. ``<image>``
placeholders are removed from the text; the images travel, in order, in the row. Turns after the
last assistant reply are dropped; system turns are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medmo_pipeline.config import TaskName

from .common import (
    ImageRecordOptions,
    as_list,
    iter_records,
    limited,
    load_image,
    make_row,
    strip_image_tokens,
    text,
)

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


class Options(ImageRecordOptions):
    task: TaskName = "vqa"
    id_field: str = "id"
    conversations_field: str = "conversations"


def iter_samples(root: Path, options: Options | dict) -> Iterator[dict]:
    options = Options.model_validate(options)
    for index, record in limited(iter_records(root, options.file, options.format), options):
        messages = conversation(record.get(options.conversations_field) or [])
        if not messages:
            messages = [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]
        images = [load_image(root, value, options) for value in as_list(record.get(options.image_field))]
        yield make_row(record.get(options.id_field, index), options.task, options, messages, images=images)


def conversation(turns: list[dict]) -> list[dict]:
    """LLaVA turns -> chat messages ending on the last assistant turn."""
    messages = []
    for item in turns:
        role = ROLES.get(str(item.get("from", item.get("role", ""))).lower())
        if role is not None:
            messages.append({"role": role, "content": strip_image_tokens(text(item.get("value", item.get("content")))) })
    while messages and messages[-1]["role"] != "assistant":
        messages.pop()
    return messages
