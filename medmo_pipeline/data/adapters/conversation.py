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
from medmo_pipeline.data.outcomes import RowError

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

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


class Options(ImageRecordOptions):
    task: TaskName = "vqa"
    id_field: str = "id"
    conversations_field: str = "conversations"


def iter_outcomes(root: Path, options: Options | dict) -> Iterator:
    """Rows, and the outcome (quarantined / filtered) of each record that gives none."""
    options = Options.model_validate(options)
    def convert(index: int, record: dict) -> list[dict]:
        messages = conversation(record.get(options.conversations_field) or [])
        if not messages:
            messages = [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]
        images = [load_image(root, value, options) for value in as_list(record.get(options.image_field))]
        return [make_row(record.get(options.id_field, index), options.task, options, messages, images=images)]

    yield from guarded(limited(read_records(root, options), options), options.file, convert)


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
