"""The reward registry: building from a recipe spec, TRL's calling convention, row coverage."""

from __future__ import annotations

import doctest
import pickle

import pytest

import medmo_pipeline.rewards.box
import medmo_pipeline.rewards.labels
import medmo_pipeline.rewards.registry
import medmo_pipeline.schema.box_text
from medmo_pipeline import reply_format
from medmo_pipeline.rewards import REWARDS, box_reward, build_reward_functions, completion_text, parse_boxes
from medmo_pipeline.schema.boxes import format_box_answer, pixels_to_relative

ALL_REWARDS = {
    "box": {"weight": 2.0, "squared": False, "lambda_fp": 0.1},
    "label_accuracy": {"weight": 1.0},
    "tag_count": {"weight": 0.5},
    "soft_overlong": {"max_completion_len": 1024, "soft_punish_cache": 256},
}

LESION_PIXELS = {"label": "lesion", "x1": 32, "y1": 64, "x2": 96, "y2": 128}


def trl_call(function, completions, rows, completion_ids=None):
    """Call a reward the way TRL's GRPO trainer does: columns as lists plus trainer extras."""
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    return function(
        prompts=[[{"role": "user", "content": "q"}]] * len(completions),
        completions=completions,
        completion_ids=completion_ids or [[1, 2, 3]] * len(completions),
        trainer_state=None,
        log_extra=lambda *args, **kwargs: None,
        log_metric=lambda *args, **kwargs: None,
        **columns,
    )


def row(task, answer="", choices=(), boxes=(), width=0, height=0):
    return {
        "task": task,
        "answer": answer,
        "choices": list(choices),
        "boxes": list(boxes),
        "image_width": width,
        "image_height": height,
        "id": f"synthetic:{task}",  # extra columns must be tolerated
    }


ROWS = [
    row("grounding", boxes=[LESION_PIXELS], width=128, height=128),
    row("vqa", answer="yes"),
    row("text_qa", answer="B", choices=["Pneumonia", "Effusion"]),
    row("vqa", answer=""),  # open question without a short label
    row("caption"),
]
COMPLETIONS = [
    "<think>look</think><answer>lesion <box>[[250, 500, 750, 1000]]</box></answer>",
    "<think>look</think><answer>Yes</answer>",
    "<think>look</think><answer>Effusion</answer>",
    "<answer>some text</answer>",
    "A chest radiograph.",
]


def test_build_returns_functions_named_after_the_registry_and_weights_in_order():
    functions, weights = build_reward_functions(ALL_REWARDS)
    assert [f.__name__ for f in functions] == ["box", "label_accuracy", "tag_count", "soft_overlong"]
    assert weights == [2.0, 1.0, 0.5, 1.0]
    reordered, reordered_weights = build_reward_functions(dict(reversed(ALL_REWARDS.items())))
    assert [f.__name__ for f in reordered] == ["soft_overlong", "tag_count", "label_accuracy", "box"]
    assert reordered_weights == [1.0, 0.5, 1.0, 2.0]


def test_each_reward_covers_only_its_rows():
    functions, _ = build_reward_functions(ALL_REWARDS)
    by_name = {f.__name__: trl_call(f, COMPLETIONS, ROWS) for f in functions}
    assert by_name["box"] == [1.0, None, None, None, None]
    assert by_name["label_accuracy"] == [None, 1.0, 1.0, None, None]
    assert by_name["tag_count"] == [1.0, 1.0, 1.0, 0.5, 0.0]
    assert by_name["soft_overlong"] == [0.0] * 5


def test_wrong_answers_score_zero():
    functions, _ = build_reward_functions({"label_accuracy": {}, "box": {}})
    wrong = [
        "<answer>lesion <box>[[0, 0, 100, 100]]</box></answer>",
        "<answer>No</answer>",
        "<answer>Pneumonia or Effusion</answer>",
        "",
        "",
    ]
    label_rewards = trl_call(functions[0], wrong, ROWS)
    box_rewards = trl_call(functions[1], wrong, ROWS)
    assert label_rewards[1:3] == [0.0, 0.0]
    assert box_rewards[0] < 0.5


def test_conversational_completions_are_read_like_plain_ones():
    conversational = [[{"role": "assistant", "content": text}] for text in COMPLETIONS]
    as_parts = [[{"role": "assistant", "content": [{"type": "text", "text": text}]}] for text in COMPLETIONS]
    functions, _ = build_reward_functions(ALL_REWARDS)
    for function in functions:
        plain = trl_call(function, COMPLETIONS, ROWS)
        assert trl_call(function, conversational, ROWS) == plain
        assert trl_call(function, as_parts, ROWS) == plain


def test_completion_text_skips_non_assistant_turns_and_non_text_parts():
    completion = [
        {"role": "assistant", "content": [{"type": "image"}, {"type": "text", "text": "a"}]},
        {"role": "tool", "content": "ignored"},
        {"role": "assistant", "content": "b"},
    ]
    assert completion_text(completion) == "ab"


def test_soft_overlong_reads_completion_ids():
    functions, _ = build_reward_functions({"soft_overlong": ALL_REWARDS["soft_overlong"]})
    lengths = [700, 900, 1024]
    rewards = trl_call(functions[0], [""] * 3, ROWS[:3], completion_ids=[[7] * n for n in lengths])
    assert rewards == [0.0, -0.515625, -1.0]


def test_tag_count_counts_exactly_the_reply_formats_tags():
    functions, _ = build_reward_functions({"tag_count": {}})
    tagged = reply_format.tagged("two cells", "cell <box>[[1, 2, 3, 4]]</box>")
    doubled = tagged + reply_format.ANSWER_OPEN
    untaught = "<reasoning>x</reasoning><final>y</final>"
    assert trl_call(functions[0], [tagged, doubled, untaught], ROWS[:3]) == [1.0, 0.75, 0.0]
    with pytest.raises(ValueError, match="tags"):  # the tags are the format's, not a recipe's choice
        build_reward_functions({"tag_count": {"tags": ["<answer>", "</answer>"]}})


def test_grounding_row_without_a_gold_box_is_not_scored_neutral():
    functions, _ = build_reward_functions({"box": {}})
    empty = row("grounding", boxes=[], width=128, height=128)
    assert trl_call(functions[0], COMPLETIONS[:1] * 2, [empty, ROWS[0]]) == [None, 1.0]


def test_box_normalisation_by_ground_truth_extent_or_image_size():
    extent, _ = build_reward_functions({"box": {"normalise_by": "ground_truth_extent"}})
    true_size, _ = build_reward_functions({"box": {"normalise_by": "image_size"}})
    shifted = ["<answer>lesion <box>[[300, 500, 800, 1000]]</box></answer>"]  # 6.4 px right of the truth
    # The ground truth's extent (96 x 128) is a smaller frame than the image (128 x 128): a larger L1.
    assert trl_call(extent[0], shifted, ROWS[:1])[0] == pytest.approx(
        box_reward([(38.4, 64, 102.4, 128)], [(32, 64, 96, 128)]))
    assert trl_call(true_size[0], shifted, ROWS[:1])[0] == pytest.approx(
        box_reward([(38.4, 64, 102.4, 128)], [(32, 64, 96, 128)], image_size=(128, 128)))
    assert trl_call(extent[0], shifted, ROWS[:1])[0] < trl_call(true_size[0], shifted, ROWS[:1])[0]
    with pytest.raises(ValueError, match="normalise_by"):
        trl_call(build_reward_functions({"box": {"normalise_by": "diagonal"}})[0][0], shifted, ROWS[:1])


def test_label_accuracy_scores_named_box_labels_when_asked():
    with_labels, _ = build_reward_functions({"label_accuracy": {"box_labels": True}})
    without, _ = build_reward_functions({"label_accuracy": {}})
    unnamed = row("grounding", boxes=[{**LESION_PIXELS, "label": ""}], width=128, height=128)
    replies = ["<think>one</think><answer>Lesion <box>[[250, 500, 750, 1000]]</box></answer>",
               "<answer>nodule <box>[[250, 500, 750, 1000]]</box></answer>",
               "<answer><box>[[250, 500, 750, 1000]]</box></answer>"]
    assert trl_call(with_labels[0], replies, [ROWS[0]] * 3) == [1.0, 0.0, 0.0]
    assert trl_call(with_labels[0], replies[:1], [unnamed]) == [None]  # the data names no label
    assert trl_call(without[0], replies, [ROWS[0]] * 3) == [None] * 3


def test_box_parameters_reach_the_reward():
    extra_box = "<answer>lesion <box>[[250, 500, 750, 1000], [0, 0, 100, 100]]</box></answer>"
    plain, _ = build_reward_functions({"box": {}})
    penalised, _ = build_reward_functions({"box": {"lambda_fp": 0.5}})
    assert trl_call(plain[0], [extra_box], ROWS[:1]) == [1.0]
    assert trl_call(penalised[0], [extra_box], ROWS[:1]) == [0.5]  # 1 - 0.5 * (2 - 1) / 1


def test_grounding_row_without_image_size_is_a_clear_error():
    functions, _ = build_reward_functions({"box": {}})
    with pytest.raises(ValueError, match="image size"):
        trl_call(functions[0], COMPLETIONS[:1], [row("grounding", boxes=[LESION_PIXELS])])


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({"iou": {}}, "iou"),
        ({"box": {"lambda": 0.1}}, "lambda"),
        ({"tag_count": {"tag": ["<a>"]}}, "tag"),
        ({"label_accuracy": {"squared": True}}, "squared"),
        ({"soft_overlong": {"max_completion_len": 1024}}, "soft_punish_cache"),
    ],
)
def test_bad_specs_raise_naming_the_culprit(spec, named):
    with pytest.raises(ValueError, match=named):
        build_reward_functions(spec)


def test_built_functions_pickle():
    functions, _ = build_reward_functions(ALL_REWARDS)
    restored = pickle.loads(pickle.dumps(functions))
    assert [f.__name__ for f in restored] == [f.__name__ for f in functions]
    assert trl_call(restored[0], COMPLETIONS, ROWS) == trl_call(functions[0], COMPLETIONS, ROWS)


def test_every_registered_reward_has_a_docstring_example():
    for name, definition in REWARDS.items():
        assert ">>>" in (definition.function.__doc__ or ""), name


@pytest.mark.parametrize(
    "module",
    [
        medmo_pipeline.rewards.box,
        medmo_pipeline.rewards.labels,
        medmo_pipeline.schema.box_text,
        medmo_pipeline.rewards.registry,
    ],
)
def test_docstring_examples_hold(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# Ground truth in pixels of images of several sizes, written by the model as 0-1000 integers.
# Tolerance, worst case: rounding moves each edge by at most 0.5/1000 of the image side, which for
# boxes at least 10% of each side (all below are) is at most 0.5% of the box side. Per dimension the
# overlap keeps >= 99% and the hull grows to <= 101% of the side, so IoU >= (0.99/1.01)^2 > 0.96 and
# union/hull > 0.96, hence GIoU > 0.92: the GIoU term loses < (1 - 0.92)/7 < 0.0115. The L1 term
# loses at most (5/7) * (W + H) / (2000 * sqrt(W^2 + H^2)) < 0.0006. So the reward is > 0.987;
# observed values are about 0.9995.
ROUND_TRIP_TOLERANCE = 0.013
IMAGE_SIZES_AND_BOXES = [
    ((128, 128), [(13, 17, 101, 90)]),
    ((500, 375), [(41.3, 77.7, 211.9, 301.2), (260, 20, 480, 190)]),
    ((1280, 960), [(129, 96, 777.7, 500.5), (800, 600, 1279, 959), (1, 1, 200, 150)]),
    ((640, 1280), [(64, 128, 320, 1279)]),
]


@pytest.mark.parametrize(("size", "pixel_boxes"), IMAGE_SIZES_AND_BOXES)
def test_scale_round_trip_pixels_to_answer_to_reward(size, pixel_boxes):
    width, height = size
    answer = format_box_answer("lesion", [pixels_to_relative(b, width, height) for b in pixel_boxes])
    truth = [{"label": "lesion", "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3]} for b in pixel_boxes]
    rows = [row("grounding", boxes=truth, width=width, height=height)]
    functions, _ = build_reward_functions({"box": {"lambda_fn": 1.0, "lambda_fp": 1.0}})

    [reward] = trl_call(functions[0], [f"<answer>{answer}</answer>"], rows)
    assert reward == pytest.approx(1.0, abs=ROUND_TRIP_TOLERANCE)

    # The same answer scored as if its numbers were pixels is clearly off (0.11 to 0.88 for these
    # sizes): a missing or doubled conversion would fail the check above.
    unconverted = box_reward(parse_boxes(answer), pixel_boxes, image_size=size)
    assert unconverted < 0.9


@pytest.mark.parametrize("completion", [None, 7, ["<answer>yes</answer>"], {"role": "assistant", "content": "yes"},
                                        [{"role": "assistant", "content": None}], [object()]])
def test_every_reward_scores_a_completion_of_an_unexpected_shape_instead_of_raising(completion):
    """TRL hands completions as text or message lists; anything else is read as the text it holds
    (none for None or a number), so one odd completion never ends an RL step."""
    for name, params in (("box", {}), ("label_accuracy", {}), ("tag_count", {})):
        (function,), _ = build_reward_functions({name: params})
        (reward,) = function([None], [completion], task=["vqa"], answer=["yes"], choices=[[]], boxes=[[]],
                             image_width=[64], image_height=[64])
        assert reward is None or 0.0 <= reward <= 1.0


def test_a_gold_label_that_is_not_text_gives_no_label_reward():
    (function,), _ = build_reward_functions({"label_accuracy": {}})
    assert function([None, None], ["yes", "yes"], task=["vqa", "vqa"], answer=[float("nan"), ["yes"]],
                    choices=[[], []]) == [None, None]


@pytest.mark.parametrize("params", [{"max_completion_len": 100, "soft_punish_cache": 200},
                                    {"max_completion_len": 100, "soft_punish_cache": -1},
                                    {"max_completion_len": 0, "soft_punish_cache": 0}])
def test_overlong_lengths_that_do_not_work_together_are_refused_when_the_recipe_loads(params):
    """A cache longer than the completion punished a 10-token reply by -0.55."""
    with pytest.raises(ValueError, match="soft_punish_cache .* must lie within"):
        build_reward_functions({"soft_overlong": params})
