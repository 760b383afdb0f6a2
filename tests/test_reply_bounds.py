"""Replies are scored at a bounded cost: the hedged yes/no is read in linear time, a reply is scored
with at most MAX_REPLY_BOXES boxes (more is malformed), a negative box penalty is refused when the
recipe loads, and a completion's non-string text parts read as no text."""

from __future__ import annotations

import re

import pytest
from guards import alarm
from hypothesis import given
from hypothesis import strategies as st

from medmo_pipeline.answers import _HEDGED_YES_NO, yes_no
from medmo_pipeline.config import RecipeError, load_recipe
from medmo_pipeline.evaluation.metrics import grounding
from medmo_pipeline.evaluation.metrics.answers import closed_accuracy
from medmo_pipeline.rewards import box as box_module
from medmo_pipeline.rewards import build_reward_functions, completion_text, registry
from medmo_pipeline.rewards.registry import box, label_accuracy, tag_count
from medmo_pipeline.schema.box_text import MAX_REPLY_BOXES, parse_boxes, parse_labeled_boxes
from tests.conftest import embedded_recipe_data, write_recipe

# --- hedged yes/no -------------------------------------------------------------------------------

# The former pattern, whose two \W* around "/" backtrack quadratically: the reference on short text.
_FORMER_HEDGE = re.compile(r"(yes|no)\b\W*(?:/|\bor\b|\band\b)\W*(yes|no)\b", re.IGNORECASE)


def test_a_megabyte_of_slashes_after_yes_is_read_in_linear_time():
    slashes = "/" * 1_000_000
    with alarm(20):
        assert yes_no(f"<answer>yes {slashes}</answer>") == "yes"  # no second word: no hedge
        assert yes_no(f"<answer>yes {slashes} no</answer>") is None  # the hedge is still found
        assert yes_no(f"<answer>yes {slashes} or</answer>") == "yes"
        assert closed_accuracy([f"<answer>yes{slashes}</answer>"], ["yes"]).value == 1.0
        reward = label_accuracy([None], [f"<answer>yes {slashes}</answer>"], task=["vqa"], answer=["yes"])
    assert reward == [1.0]


@pytest.mark.parametrize(("reply", "expected"), [
    ("yes/no", None), ("yes or no", None), ("No/Yes", None), ("yes and no", None), ("yes / no", None),
    ("no, or yes", None), ("Yes // No.", None), ("yes/yes", "yes"), ("no or no", "no"), ("yes, normal", "yes"),
    ("no / not sure", "no"), ("Yesterday", None), ("yes nor no", "yes"), ("<answer>Answer: No</answer>", "no"),
])
def test_ordinary_hedges_read_as_before(reply, expected):
    assert yes_no(reply) == expected


_PIECES = ["yes", "no", "Yes", "NO", "or", "and", "nor", "/", "//", " ", ",", "-", "_", "x", "\n", "é"]


@given(st.lists(st.sampled_from(_PIECES), max_size=8).map("".join))
def test_the_hedge_pattern_matches_what_the_former_one_matched(text):
    former, current = _FORMER_HEDGE.match(text), _HEDGED_YES_NO.match(text)
    assert (former and former.groups() + (former.group(0),)) == (current and current.groups() + (current.group(0),))


# --- the bound on a reply's boxes ----------------------------------------------------------------

GOLD = {"label": "lesion", "x1": 32, "y1": 64, "x2": 96, "y2": 128}
GOLD_RELATIVE = "[250, 500, 750, 1000]"  # GOLD on the 0-1000 scale of a 128 x 128 image


def _reply(count: int) -> str:
    return "<answer>lesion <box>[" + ", ".join([GOLD_RELATIVE] * count) + "]</box></answer>"


def _box_reward(reply: str) -> float | None:
    [reward] = box([None], [reply], task=["grounding"], boxes=[[GOLD]], image_width=[128], image_height=[128])
    return reward


def _box_labels(reply: str) -> float | None:
    [reward] = label_accuracy([None], [reply], task=["grounding"], answer=[""], boxes=[[GOLD]], box_labels=True)
    return reward


def test_the_parser_stops_after_its_limit_in_every_form():
    many = 10 * MAX_REPLY_BOXES
    assert len(parse_boxes(_reply(many), MAX_REPLY_BOXES + 1)) == MAX_REPLY_BOXES + 1
    json_reply = "[" + ", ".join(f'{{"bbox_2d": {GOLD_RELATIVE}, "label": "lesion"}}' for _ in range(many)) + "]"
    labeled = parse_labeled_boxes(json_reply, MAX_REPLY_BOXES + 1)
    assert len(labeled) == MAX_REPLY_BOXES + 1 and labeled[-1][0] == "lesion"
    assert len(parse_boxes(_reply(many))) == many  # no limit: every box


_giou, _box_iou = box_module.pairwise_giou, grounding.box_iou


def test_a_reply_of_more_boxes_than_the_bound_scores_as_malformed(monkeypatch):
    paired = []  # (predicted, gold) of each pairing the reward computes
    monkeypatch.setattr(box_module, "pairwise_giou", lambda a, b: paired.append((len(a), len(b))) or _giou(a, b))
    assert _box_reward(_reply(1)) == 1.0 and _box_reward(_reply(MAX_REPLY_BOXES)) == 1.0  # extras are free
    assert paired == [(1, 1), (MAX_REPLY_BOXES, 1)]
    assert _box_reward(_reply(MAX_REPLY_BOXES + 1)) == 0.0
    assert paired == [(1, 1), (MAX_REPLY_BOXES, 1)]  # never paired with the gold
    assert _box_labels(_reply(MAX_REPLY_BOXES)) == 1.0 and _box_labels(_reply(MAX_REPLY_BOXES + 1)) == 0.0


def test_the_box_reward_reads_at_most_one_box_past_the_bound(monkeypatch):
    seen = []
    monkeypatch.setattr(registry, "box_reward", lambda predicted, truth, **_: seen.append(len(predicted)) or 0.0)
    with alarm(60):
        _box_reward(_reply(50 * MAX_REPLY_BOXES))
    assert seen == [MAX_REPLY_BOXES + 1]


def test_box_reward_counts_every_box_given_against_the_bound():
    truth = [(0, 0, 10, 10)]
    at_bound = [(0, 0, 10, 10)] + [(5, 5, 5, 5)] * (MAX_REPLY_BOXES - 1)  # invalid ones are dropped
    assert box_module.box_reward(at_bound, truth) == 1.0
    assert box_module.box_reward(at_bound + [(0, 0, 10, 10)], truth, lambda_fn=0.5) == 0.0


def test_the_grounding_metrics_count_too_many_boxes_as_unparseable(monkeypatch):
    gold = [(0, 0, 10, 10)]
    assert grounding.matched_iou(gold * MAX_REPLY_BOXES, gold) == 1.0
    assert grounding.first_box_iou(gold * MAX_REPLY_BOXES, gold) == 1.0
    paired = []
    monkeypatch.setattr(grounding, "box_iou", lambda a, b: paired.append(len(grounding._as_boxes(b)))
                        or _box_iou(a, b))
    assert grounding.matched_iou(gold * (MAX_REPLY_BOXES + 1), gold) == 0.0
    assert grounding.first_box_iou(gold * (MAX_REPLY_BOXES + 1), gold) == 0.0
    assert all(count == 0 for count in paired)  # the boxes were never paired
    scores = grounding.grounding_scores([gold * (MAX_REPLY_BOXES + 1), gold, []], [gold] * 3)
    for result in scores.results():
        assert (result.n, result.unparseable, result.empty) == (3, 1, 1)
    assert scores.matched.mean_iou.value == pytest.approx(1 / 3)


# --- penalty weights refused at load -------------------------------------------------------------

@pytest.mark.parametrize("key", ["lambda_fn", "lambda_fp"])
def test_a_negative_box_penalty_is_refused_when_the_recipe_loads(tmp_path, key):
    data = embedded_recipe_data()
    data["rl"]["rewards"]["box"][key] = -1
    path = write_recipe(tmp_path / "recipe.yaml", data)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert f"rl.rewards.box: reward 'box': parameter '{key}' is -1.0" in str(info.value)
    assert "must be >= 0" in str(info.value)


def test_non_negative_box_penalties_still_build():
    [bound], _ = build_reward_functions({"box": {"lambda_fn": 0.5, "lambda_fp": 0.0}})
    assert bound.params == {"lambda_fn": 0.5, "lambda_fp": 0.0}


# --- completions whose text parts are not strings ------------------------------------------------

@pytest.mark.parametrize("text", [None, ["<answer>yes</answer>"], 7, {"text": "yes"}])
def test_a_text_part_that_is_not_a_string_reads_as_no_text(text):
    completion = [{"role": "assistant", "content": [{"type": "text", "text": text}]}]
    assert completion_text(completion) == ""
    assert tag_count([None], [completion]) == [0.0]
    assert label_accuracy([None], [completion], task=["vqa"], answer=["yes"]) == [0.0]
    assert _box_reward(completion) == 0.0
    with_text = [{"role": "assistant", "content": [{"type": "text", "text": text},
                                                   {"type": "text", "text": "<answer>yes</answer>"}]}]
    assert label_accuracy([None], [with_text], task=["vqa"], answer=["yes"]) == [1.0]
