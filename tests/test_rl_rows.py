"""The rows RL trains on: grounding rows without a gold box are left out and counted; over-long
prompts are dropped or cut from the left as the recipe says, counted either way, image tokens never cut."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import tiny_processor

from medmo_pipeline.data import synthetic
from medmo_pipeline.data.prompts import prompt_text
from medmo_pipeline.reply_format import FORMAT_INSTRUCTION
from medmo_pipeline.training import rl_rows


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    return tiny_processor(tmp_path_factory)


def _rows():
    return [r for s in ("synth_xray", "synth_cells") for r in synthetic.generate_rows(s, "train", 10, image_size=64)
            if r["task"] in ("grounding", "vqa")]


def test_grounding_rows_without_a_gold_box_are_left_out_and_counted(processor):
    rows = _rows()
    no_box = {**rows[0], "boxes": []} if rows[0]["task"] == "grounding" else None
    assert no_box is not None
    no_size = {**next(r for r in rows if r["task"] == "grounding"), "images": []}
    counts = Counter()
    kept = list(rl_rows.fit_prompts([no_box, no_size, *rows], processor, None, "drop", "think_answer", counts))
    assert kept == rows
    assert counts == {rl_rows.KEPT: len(rows), rl_rows.NO_GOLD_BOX: 2}
    assert "2 dropped no gold box" in rl_rows.describe(counts)


def test_drop_policy_counts_the_rows_over_the_limit(processor):
    rows = _rows()
    lengths = [rl_rows.prompt_length(r, processor, "think_answer") for r in rows]
    limit = sorted(lengths)[len(lengths) // 2]
    counts = Counter()
    kept = list(rl_rows.fit_prompts(rows, processor, limit, "drop", "think_answer", counts))
    assert kept == [r for r, n in zip(rows, lengths, strict=True) if n <= limit]
    assert counts[rl_rows.TOO_LONG] == sum(n > limit for n in lengths) > 0


def test_truncate_policy_cuts_the_question_from_the_left_and_keeps_the_instruction(processor):
    row = next(r for r in _rows() if r["task"] == "grounding")
    long_question = "Old history: " + "no change since the last film. " * 20 + row["messages"][0]["content"]
    long_row = rl_rows.with_question(row, long_question)
    image_only = rl_rows.prompt_length(rl_rows.with_question(row, ""), processor, "think_answer")
    limit = rl_rows.prompt_length(row, processor, "think_answer") + 5
    kept, outcome = rl_rows.fit_prompt(long_row, processor, limit, "truncate", "think_answer")
    assert outcome == rl_rows.TRUNCATED
    assert rl_rows.prompt_length(kept, processor, "think_answer") <= limit
    cut = prompt_text(kept)
    assert long_question.endswith(cut) and row["messages"][0]["content"] in cut and len(cut) < len(long_question)
    assert kept["boxes"] == row["boxes"] and kept["images"] == row["images"]
    # The images alone over the limit: nothing of the text can save the row, so it is dropped.
    dropped, outcome = rl_rows.fit_prompt(long_row, processor, image_only - 1, "truncate", "think_answer")
    assert dropped is None and outcome == rl_rows.TOO_LONG
    with pytest.raises(ValueError, match="overlong_prompts"):
        rl_rows.fit_prompt(long_row, processor, limit, "shorten", "think_answer")


def test_prompt_length_counts_the_format_instruction(processor):
    row = _rows()[0]
    extra = len(processor.tokenizer("\n" + FORMAT_INSTRUCTION, add_special_tokens=False)["input_ids"])
    difference = rl_rows.prompt_length(row, processor, "think_answer") - rl_rows.prompt_length(row, processor, "plain")
    assert abs(difference - extra) <= 1  # one merge across the joint at most
