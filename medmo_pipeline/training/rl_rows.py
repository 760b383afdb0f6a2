"""Which drawn rows the RL stage trains on, and the prompts it asks them with.

Every RL row must carry a reward signal, and nothing is left out silently:

- a grounding row the box reward cannot score (no gold box, or an image of unknown size) is left
  out and counted, never scored the formula's neutral 0.5 (``rewards.registry.box_scorable``); so is
  one with a gold box that is not finite XYXY with x2 > x1 and y2 > y1, or lies wholly outside its
  image (the box reward raised a ValueError on the first, ending the job; the second scores 0 whatever
  the reply);
- a prompt longer than ``max_prompt_length`` tokens (image tokens included) follows the recipe's
  ``overlong_prompts`` policy and is counted: ``drop`` leaves the row out; ``truncate`` cuts the
  question's text from the left, keeping its end (the format instruction and the question asked
  last), and never cuts image tokens, so a row whose images alone exceed the limit is dropped.

The functions work row by row, so they fit a streamed row source as well as a list.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator

from medmo_pipeline.data.prompts import prompt_text
from medmo_pipeline.reply_format import ReplyFormat, rl_prompt
from medmo_pipeline.rewards.registry import box_scorable

# Outcomes counted per row: kept as drawn, kept with a cut question, left out.
KEPT, TRUNCATED, NO_GOLD_BOX, TOO_LONG = "kept", "truncated", "dropped_no_gold_box", "dropped_prompt_too_long"
BAD_GOLD_BOX = "dropped_unusable_gold_box"


def image_size(row: dict) -> tuple[int, int]:
    """(width, height) of the row's first image, (0, 0) without one."""
    return (row["images"][0]["width"], row["images"][0]["height"]) if row["images"] else (0, 0)


def with_question(row: dict, text: str) -> dict:
    messages = [{**row["messages"][0], "content": text}, *row["messages"][1:]]
    return {**row, "messages": messages}


def has_signal(row: dict) -> bool:
    """False for a grounding row the box reward cannot score."""
    return row["task"] != "grounding" or box_scorable(row["task"], row["boxes"], *image_size(row))


def usable_gold_boxes(row: dict) -> bool:
    """Whether every gold box of the row is one the box reward scores: finite numbers, x2 > x1 and
    y2 > y1 (else it raises, as for a data error), overlapping the image (else no reply can match it)."""
    width, height = image_size(row)
    for box in row["boxes"]:
        try:
            x1, y1, x2, y2 = (float(box[k]) for k in ("x1", "y1", "x2", "y2"))
        except (KeyError, TypeError, ValueError):
            return False
        if not (math.isfinite(x1 + y1 + x2 + y2) and x1 < x2 and y1 < y2
                and x1 < width and x2 > 0 and y1 < height and y2 > 0):
            return False
    return True


def prompt_length(row: dict, processor, reply_format: ReplyFormat) -> int:
    """Tokens of the row's RL prompt as the policy reads it: chat template, image tokens expanded."""
    from medmo_pipeline.data.model_images import decode_images

    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"} for _ in row["images"]]
          + [{"type": "text", "text": rl_prompt(prompt_text(row), reply_format)}]}],
        add_generation_prompt=True, tokenize=False)
    return len(processor(text=[text], images=decode_images(row) or None)["input_ids"][0])


def fit_prompt(row: dict, processor, limit: int | None, policy: str, reply_format: ReplyFormat) -> tuple[dict | None, str]:
    """(row as trained or None, outcome) for one row under the prompt-length ``policy``."""
    if not has_signal(row):
        return None, NO_GOLD_BOX
    if row["task"] == "grounding" and not usable_gold_boxes(row):
        return None, BAD_GOLD_BOX
    if limit is None:
        return row, KEPT
    excess = prompt_length(row, processor, reply_format) - limit
    if excess <= 0:
        return row, KEPT
    if policy == "drop":
        return None, TOO_LONG
    if policy != "truncate":
        raise ValueError(f"overlong_prompts must be 'truncate' or 'drop', got {policy!r}")
    tokenizer = processor.tokenizer
    ids = tokenizer(prompt_text(row), add_special_tokens=False)["input_ids"]
    # Re-encoding a cut text can merge tokens differently: cut again until the prompt fits.
    while excess > 0 and excess < len(ids):
        ids = ids[excess:]
        row = with_question(row, tokenizer.decode(ids).lstrip())
        excess = prompt_length(row, processor, reply_format) - limit
        ids = tokenizer(prompt_text(row), add_special_tokens=False)["input_ids"]
    return (row, TRUNCATED) if excess <= 0 else (None, TOO_LONG)


def fit_prompts(rows: Iterable[dict], processor, limit: int | None, policy: str, reply_format: ReplyFormat,
                counts: Counter) -> Iterator[dict]:
    """The rows RL trains on, in order; ``counts`` gains one outcome per row read."""
    for row in rows:
        kept, outcome = fit_prompt(row, processor, limit, policy, reply_format)
        counts[outcome] += 1
        if kept is not None:
            yield kept


def describe(counts: Counter) -> str:
    """One log line: how many rows were kept, cut and left out, and why."""
    return ", ".join(f"{counts.get(name, 0)} {name.replace('_', ' ')}"
                     for name in (KEPT, TRUNCATED, NO_GOLD_BOX, BAD_GOLD_BOX, TOO_LONG))
