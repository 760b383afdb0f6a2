"""Sample rows -> the trainers' examples: SFT chat turns and GRPO prompts with their reward columns.

Both keep a row's images as PNG bytes (``image_cells``), decoded only when a batch is made, or, in a
training stream, as the images ``model_images.skip_undecodable`` already decoded; and put the text
in the stage's ``reply_format``. ``sft_example``/``rl_example`` make one example at a time
for a streamed stage (``training.streamed``); ``sft_dataset``/``rl_dataset`` build a whole in-memory
dataset straight into Arrow (tests and benches).
"""

from __future__ import annotations

from collections.abc import Callable

from medmo_pipeline.data.prompts import formatted_messages, prompt_text
from medmo_pipeline.reply_format import ReplyFormat, asks_for_format, rl_prompt

# A row's text beyond this many characters is left out: far past any max_length (a 10 MB answer took
# 12 s to tokenize in the collator, then was cut to max_length tokens), and no curated row comes near it.
MAX_ROW_TEXT_CHARS = 1 << 20
# Consecutive rows left out before a stream is taken as all bad: the stream is endless, so a stage
# whose every row is skipped read and logged rows for ever without making a batch.
MAX_SKIPPED_IN_A_ROW = 10_000


def image_cells(row: dict) -> list:
    """A row's images as `datasets.Image` storage cells (PNG bytes, no path), or as the decoded images
    where ``model_images.skip_undecodable(..., pixels=True)`` gave them (a stream without features)."""
    return [img["pixels"] if "pixels" in img else {"bytes": img["bytes"], "path": None} for img in row["images"]]


def row_problem(row: dict, *, needs_reply: bool) -> str | None:
    """Why a row read from a shard cannot be made an example (None: it can). Curated rows always pass;
    a shard edited after curation, or written elsewhere, may hold null fields (the schema allows them)
    that the example builders and TRL's collator met as a TypeError or IndexError that ended the job.
    ``needs_reply``: SFT learns the assistant turns, so a row without one (no loss at all) is left out."""
    images, messages = row.get("images"), row.get("messages")
    if not isinstance(images, list) or not all(isinstance(image, dict) for image in images):
        return "images is not a list of image entries"
    if not isinstance(messages, list) or not messages:
        return "no messages"
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
               for m in messages):
        return "a message without a role and text content"
    if messages[0]["role"] != "user":
        return f"the first turn is the {messages[0]['role']}'s, not the user's"
    if (chars := sum(len(m["content"]) for m in messages)) > MAX_ROW_TEXT_CHARS:
        return f"{chars} characters of text (at most {MAX_ROW_TEXT_CHARS})"
    if needs_reply and not any(m["role"] == "assistant" and m["content"].strip() for m in messages[1:]):
        return "no assistant turn to learn"
    boxes = row.get("boxes")
    if not needs_reply and not (isinstance(row.get("task"), str) and isinstance(row.get("choices"), list)
                                and isinstance(boxes, list) and all(isinstance(b, dict) for b in boxes)):
        return "task, choices or boxes missing"
    return None


def skip_bad_rows(to_example: Callable[[dict], dict | None], log: Callable[[str], None] | None = None, *,
                  needs_reply: bool, give_up_after: int = MAX_SKIPPED_IN_A_ROW):
    """``to_example`` for a stream, with malformed rows (``row_problem``) left out: None, the row's id
    appended to the returned function's ``skipped`` and named in ``log``. When ``give_up_after`` rows in
    a row give no example (malformed, undecodable, or dropped by ``to_example``), it raises a
    ValueError naming the last of them: the stream's rows are all bad, and would be read for ever."""

    def example(row: dict) -> dict | None:
        problem = row_problem(row, needs_reply=needs_reply)
        if problem is None:
            item = to_example(row)
        else:
            item = None
            example.skipped.append(row.get("id"))
            if log is not None:
                log(f"skipped row {row.get('id')}: {problem}")
        if item is not None:
            example.in_a_row = 0
            return item
        example.in_a_row += 1
        if example.in_a_row >= give_up_after:
            raise ValueError(f"{example.in_a_row} rows in a row gave no training example, the last {row.get('id')}: "
                             "the stage's shards hold no usable row (see the skipped rows in the job's log)")
        return None

    example.skipped, example.in_a_row = [], 0
    return example


def sft_features():
    """Columns of an SFT example: PNG images (decoded when a batch is made) and chat turns."""
    import datasets

    return datasets.Features(
        {
            "images": datasets.List(datasets.Image()),
            "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        }
    )


def sft_example(row: dict, reply_format: ReplyFormat = "plain") -> dict:
    """A sample row as an SFT example (``sft_features``), its exchanges in ``reply_format``.

    String contents are kept: TRL puts one image placeholder per image before the first user
    turn, which is exactly the sample contract's convention.
    """
    return {"images": image_cells(row),
            "messages": formatted_messages(row["messages"], reply_format, asks_for_format(row["id"]))}


def sft_dataset(rows: list[dict], reply_format: ReplyFormat = "plain"):
    """Sample rows -> TRL's conversational vision format (``sft_example`` each), in memory."""
    return _dataset(rows, sft_features(), lambda row: sft_example(row, reply_format), reply_format)


def rl_features():
    """Columns of a GRPO example: the prompt, its PNG images and what the rewards compare against."""
    import datasets

    return datasets.Features(
        {
            "prompt": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
            "images": datasets.List(datasets.Image()),
            "task": datasets.Value("string"),
            "answer": datasets.Value("string"),
            "choices": datasets.List(datasets.Value("string")),
            "boxes": datasets.List({k: datasets.Value("float64") for k in ("x1", "y1", "x2", "y2")}
                                   | {"label": datasets.Value("string")}),
            "image_width": datasets.Value("int32"),
            "image_height": datasets.Value("int32"),
        }
    )


def rl_example(row: dict, reply_format: ReplyFormat = "plain") -> dict:
    """A sample row as a GRPO example (``rl_features``), its prompt asking for ``reply_format``.

    String content: TRL inserts the image placeholders.
    """
    return {
        "prompt": [{"role": "user", "content": rl_prompt(prompt_text(row), reply_format)}],
        "images": image_cells(row),
        "task": row["task"],
        "answer": row["answer"],
        "choices": list(row["choices"]),
        "boxes": list(row["boxes"]),
        "image_width": row["images"][0]["width"] if row["images"] else 0,
        "image_height": row["images"][0]["height"] if row["images"] else 0,
    }


def rl_dataset(rows: list[dict], reply_format: ReplyFormat = "plain"):
    """Sample rows -> GRPO prompts + reward columns (``rl_example`` each), in memory."""
    return _dataset(rows, rl_features(), lambda row: rl_example(row, reply_format), reply_format)


def _dataset(rows: list[dict], features, to_example, reply_format: ReplyFormat):
    examples = [to_example(row) for row in rows]
    return in_memory_dataset({name: [e[name] for e in examples] for name in features}, features, rows,
                             variant=reply_format)


def in_memory_dataset(columns: dict[str, list], features, rows: list[dict], variant: str = ""):
    """A `datasets.Dataset` over `columns`, built straight into Arrow with `features`' schema.

    `Dataset.from_dict` would fingerprint the table by pickling all of it (slow for a stage's few
    hundred MB of PNG bytes, in every job); the drawn rows' ids, in order, and ``variant`` (how
    their texts were rendered) identify it as well.
    """
    import hashlib

    import datasets
    import pyarrow as pa
    from datasets.table import InMemoryTable

    table = pa.Table.from_pydict(columns, schema=features.arrow_schema)
    digest = hashlib.sha256(variant.encode() + b"\0") if variant else hashlib.sha256()
    for name in features:
        digest.update(name.encode() + b"\0")
    for row in rows:
        digest.update(str(row["id"]).encode() + b"\0")
    return datasets.Dataset(InMemoryTable(table), info=datasets.DatasetInfo(features=features),
                            fingerprint=digest.hexdigest()[:16])
