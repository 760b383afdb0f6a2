"""Sample rows -> the trainers' examples: SFT chat turns and GRPO prompts with their reward columns.

Both keep a row's images as PNG bytes (``image_cells``), decoded only when a batch is made, or, in a
training stream, as the images ``model_images.skip_undecodable`` already decoded; and put the text
in the stage's ``reply_format``. ``sft_example``/``rl_example`` make one example at a time
for a streamed stage (``training.streamed``); ``sft_dataset``/``rl_dataset`` build a whole in-memory
dataset straight into Arrow (tests and benches).
"""

from __future__ import annotations

from medmo_pipeline.data.prompts import formatted_messages, prompt_text
from medmo_pipeline.reply_format import ReplyFormat, asks_for_format, rl_prompt


def image_cells(row: dict) -> list:
    """A row's images as `datasets.Image` storage cells (PNG bytes, no path), or as the decoded images
    where ``model_images.skip_undecodable(..., pixels=True)`` gave them (a stream without features)."""
    return [img["pixels"] if "pixels" in img else {"bytes": img["bytes"], "path": None} for img in row["images"]]


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
