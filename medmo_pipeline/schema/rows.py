"""The sample contract: one training or evaluation example, as stored in Parquet shards.

Rows are plain dicts with these keys (HF ``datasets`` reads the shards directly):

- ``id``: stable ``source:local_id``
- ``source``, ``split`` (train | eval), ``task`` (one of TASKS: ``TaskName``), ``modality``
- ``images``: list of {bytes, path, width, height, sha256}; images belong, in order, to the
  first user turn
- ``messages``: chat turns {role, content}, user then assistant; content is plain text
- ``answer``: the short gold label when there is one ("" otherwise)
- ``choices``: options for multiple choice ([] otherwise)
- ``boxes``: list of {label, x1, y1, x2, y2} in pixels of the original image
- ``license``
"""

from __future__ import annotations

from typing import Literal, get_args

import pyarrow as pa

# The one list of tasks: recipes, registries and adapters type their ``task`` fields with TaskName.
TaskName = Literal["caption", "vqa", "report", "grounding", "text_qa", "instruction"]
TASKS: tuple[str, ...] = get_args(TaskName)
TASKS_WITH_IMAGES = ("caption", "vqa", "report", "grounding")  # a row of these tasks needs an image
SPLITS = ("train", "eval")

IMAGE_TYPE = pa.struct(
    [
        ("bytes", pa.binary()),
        ("path", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("sha256", pa.string()),
    ]
)
# Qwen-VL's image processor refuses an image more elongated than this (``smart_resize``): no recipe
# may keep one, and the model's decoder refuses one that reaches it (a shard curated elsewhere).
MODEL_MAX_ASPECT_RATIO = 200
MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])
BOX_TYPE = pa.struct(
    [
        ("label", pa.string()),
        ("x1", pa.float64()),
        ("y1", pa.float64()),
        ("x2", pa.float64()),
        ("y2", pa.float64()),
    ]
)

SAMPLE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("split", pa.string()),
        ("task", pa.string()),
        ("modality", pa.string()),
        ("images", pa.list_(IMAGE_TYPE)),
        ("messages", pa.list_(MESSAGE_TYPE)),
        ("answer", pa.string()),
        ("choices", pa.list_(pa.string())),
        ("boxes", pa.list_(BOX_TYPE)),
        ("license", pa.string()),
    ]
)


def validate_row(row: dict) -> None:
    """Raise ValueError naming the first field of ``row`` that breaks the contract."""
    missing = [name for name in SAMPLE_SCHEMA.names if name not in row]
    if missing:
        raise ValueError(f"row {row.get('id', '?')!r}: missing fields {missing}")
    if row["task"] not in TASKS:
        raise ValueError(f"row {row['id']!r}: task {row['task']!r} is not one of {TASKS}")
    if row["split"] not in SPLITS:
        raise ValueError(f"row {row['id']!r}: split {row['split']!r} is not one of {SPLITS}")
    roles = [m["role"] for m in row["messages"]]
    if len(roles) < 2 or roles[0] != "user" or roles[-1] != "assistant":
        raise ValueError(f"row {row['id']!r}: messages must go user ... assistant, got {roles}")
    for box in row["boxes"]:
        if not (box["x2"] > box["x1"] and box["y2"] > box["y1"]):
            raise ValueError(f"row {row['id']!r}: degenerate box {box}")


def prompt_text(row: dict) -> str:
    """The question: the first (user) turn's text.

    >>> prompt_text({"messages": [{"role": "user", "content": "Where?"}, {"role": "assistant", "content": "Here"}]})
    'Where?'
    """
    return row["messages"][0]["content"]


def reference_text(row: dict) -> str:
    """The gold reply: the last (assistant) turn's text.

    >>> reference_text({"messages": [{"role": "user", "content": "Where?"}, {"role": "assistant", "content": "Here"}]})
    'Here'
    """
    return row["messages"][-1]["content"]
