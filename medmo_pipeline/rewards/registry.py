"""The RL rewards with TRL's signature, and the one registry that recipes pick them from by name.

A reward function is ``f(prompts, completions, **columns) -> list[float | None]``: TRL's GRPO trainer
passes every dataset column as a list (one entry per completion) plus ``completion_ids``,
``trainer_state``, ``log_extra`` and ``log_metric``; ``None`` marks a row the reward does not cover.
Columns of the RL dataset: ``task``, ``answer``, ``choices``, ``boxes`` (pixels of the original
image), ``image_width`` and ``image_height``.

A recipe names rewards with their parameters::

    rewards:
      box: {weight: 1.0, squared: false}
      label_accuracy: {weight: 1.0}
      tag_count: {weight: 0.5}
      soft_overlong: {weight: 1.0, max_completion_len: 1024, soft_punish_cache: 256}

and ``build_reward_functions`` turns that into TRL's ``reward_funcs`` and ``reward_weights``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medmo_pipeline.boxes import relative_to_pixels
from medmo_pipeline.rewards.box import box_reward
from medmo_pipeline.rewards.labels import DEFAULT_TAGS, extract_answer, label_match, tag_count_score
from medmo_pipeline.rewards.parsing import parse_boxes

GROUNDING_TASKS = frozenset({"grounding"})
LABELED_TASKS = frozenset({"vqa", "text_qa"})

Completion = str | Sequence[Mapping[str, Any]]


def completion_text(completion: Completion) -> str:
    """Text of a completion, plain or conversational (assistant turns, content string or parts).

    >>> completion_text("<answer>yes</answer>")
    '<answer>yes</answer>'
    >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "no"}]}])
    'no'
    """
    if isinstance(completion, str):
        return completion
    return "".join(
        _content_text(message.get("content"))
        for message in completion
        if message.get("role", "assistant") == "assistant"
    )


def box(
    prompts: list,
    completions: list[Completion],
    *,
    task: list[str],
    boxes: list[list[Mapping[str, Any]]],
    image_width: list[int],
    image_height: list[int],
    squared: bool = False,
    lambda_fn: float = 0.0,
    lambda_fp: float = 0.0,
    **_: Any,
) -> list[float | None]:
    """Bounding-box reward (paper appendix A.1) of grounding rows; None for other tasks.

    Boxes are read from the ``<answer>`` (or the whole reply) on Qwen3-VL's 0-1000 scale, converted
    to pixels of the row's image and scored against ``boxes`` with the image size as frame. Box
    labels are not compared: the paper's reward scores geometry only.

    >>> box(
    ...     [None, None],
    ...     ["<answer>lesion <box>[[250, 500, 750, 1000]]</box></answer>", "<answer>yes</answer>"],
    ...     task=["grounding", "vqa"],
    ...     boxes=[[{"label": "lesion", "x1": 32, "y1": 64, "x2": 96, "y2": 128}], []],
    ...     image_width=[128, 0],
    ...     image_height=[128, 0],
    ... )
    [1.0, None]
    """
    rewards: list[float | None] = []
    for completion, row_task, row_boxes, width, height in zip(
        completions, task, boxes, image_width, image_height, strict=True
    ):
        if row_task not in GROUNDING_TASKS:
            rewards.append(None)
            continue
        if not (width > 0 and height > 0):
            raise ValueError(f"grounding row without an image size ({width}x{height}): cannot place boxes")
        predicted = [
            relative_to_pixels(relative, width, height)
            for relative in parse_boxes(extract_answer(completion_text(completion)))
        ]
        truth = [(b["x1"], b["y1"], b["x2"], b["y2"]) for b in (row_boxes if row_boxes is not None else ())]
        rewards.append(
            box_reward(
                predicted,
                truth,
                image_size=(width, height),
                lambda_fn=lambda_fn,
                lambda_fp=lambda_fp,
                squared=squared,
            )
        )
    return rewards


def label_accuracy(
    prompts: list,
    completions: list[Completion],
    *,
    task: list[str],
    answer: list[str],
    choices: list[Sequence[str]] | None = None,
    **_: Any,
) -> list[float | None]:
    """1.0 when the reply's answer matches the gold label, else 0.0; None for rows with no label.

    Covers vqa and text_qa rows with a non-empty ``answer`` (yes/no, option letter or text, or
    normalised free text; an unparseable reply is wrong).

    >>> label_accuracy(
    ...     [None, None, None],
    ...     ["<answer>(B)</answer>", "<answer>no</answer>", "a caption"],
    ...     task=["text_qa", "vqa", "caption"],
    ...     answer=["Effusion", "yes", ""],
    ...     choices=[["Pneumonia", "Effusion"], [], []],
    ... )
    [1.0, 0.0, None]
    """
    row_choices = choices if choices is not None else [()] * len(completions)
    rewards: list[float | None] = []
    for completion, row_task, gold, options in zip(completions, task, answer, row_choices, strict=True):
        if row_task not in LABELED_TASKS or not gold:
            rewards.append(None)
            continue
        options = list(options) if options is not None else []
        rewards.append(float(label_match(completion_text(completion), gold, options)))
    return rewards


def tag_count(
    prompts: list,
    completions: list[Completion],
    *,
    tags: Sequence[str] = DEFAULT_TAGS,
    **_: Any,
) -> list[float | None]:
    """Share of the expected tags that appear exactly once, for every row.

    >>> tag_count([None, None], ["<think>a</think><answer>b</answer>", "<answer>b"])
    [1.0, 0.25]
    """
    return [tag_count_score(completion_text(completion), tuple(tags)) for completion in completions]


def soft_overlong(
    prompts: list,
    completions: list[Completion],
    *,
    max_completion_len: int,
    soft_punish_cache: int,
    completion_ids: list[Sequence[int]] | None = None,
    **_: Any,
) -> list[float | None]:
    """DAPO's soft overlong punishment (trl.rewards) on completion token counts, for every row.

    0 up to ``max_completion_len - soft_punish_cache`` tokens, then down linearly to -1.

    >>> soft_overlong(
    ...     [None] * 3, [""] * 3, max_completion_len=1024, soft_punish_cache=256,
    ...     completion_ids=[[0] * 700, [0] * 900, [0] * 1024],
    ... )
    [0.0, -0.515625, -1.0]
    """
    if completion_ids is None:
        raise ValueError("soft_overlong needs completion_ids (TRL's GRPO trainer passes them)")
    from trl.rewards import get_soft_overlong_punishment  # here: evaluation jobs import this package, not trl

    return get_soft_overlong_punishment(max_completion_len, soft_punish_cache)(completion_ids)


@dataclass(frozen=True)
class RewardDefinition:
    """A registered reward: its function and the parameters a recipe may set."""

    function: Callable[..., list[float | None]]
    params: tuple[str, ...] = field(default=())

    def required_params(self) -> set[str]:
        signature = inspect.signature(self.function).parameters
        return {name for name in self.params if signature[name].default is inspect.Parameter.empty}


REWARDS: dict[str, RewardDefinition] = {
    "box": RewardDefinition(box, ("squared", "lambda_fn", "lambda_fp")),
    "label_accuracy": RewardDefinition(label_accuracy),
    "tag_count": RewardDefinition(tag_count, ("tags",)),
    "soft_overlong": RewardDefinition(soft_overlong, ("max_completion_len", "soft_punish_cache")),
}
WEIGHT = "weight"


class BoundReward:
    """A registry reward with its recipe parameters fixed; named after its registry entry.

    A class rather than a closure so it pickles (TRL may hand reward functions to another process).
    """

    def __init__(self, name: str, function: Callable[..., list[float | None]], params: Mapping[str, Any]):
        self.__name__ = name
        self.__doc__ = function.__doc__
        self.function = function
        self.params = dict(params)

    def __call__(self, prompts: list, completions: list[Completion], **columns: Any) -> list[float | None]:
        return self.function(prompts, completions, **columns, **self.params)

    def __repr__(self) -> str:
        return f"BoundReward({self.__name__!r}, {self.params!r})"


def build_reward_functions(spec: Mapping[str, Mapping[str, Any]]) -> tuple[list[BoundReward], list[float]]:
    """TRL ``reward_funcs`` and ``reward_weights`` from {reward name: params}, in spec order.

    Every params dict may carry ``weight`` (default 1.0). Unknown names or parameters and
    missing required parameters raise ValueError naming them.

    >>> funcs, weights = build_reward_functions({"box": {"weight": 2.0, "squared": True}, "tag_count": {}})
    >>> [f.__name__ for f in funcs], weights
    (['box', 'tag_count'], [2.0, 1.0])
    """
    functions, weights = [], []
    for name, given in spec.items():
        definition = REWARDS.get(name)
        if definition is None:
            raise ValueError(f"unknown reward {name!r}; known rewards: {sorted(REWARDS)}")
        params = dict(given or {})
        weight = float(params.pop(WEIGHT, 1.0))
        unknown = sorted(set(params) - set(definition.params))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {unknown} for reward {name!r}; it takes {list(definition.params)}"
            )
        missing = sorted(definition.required_params() - set(params))
        if missing:
            raise ValueError(f"reward {name!r} needs parameter(s) {missing}")
        functions.append(BoundReward(name, definition.function, params))
        weights.append(weight)
    return functions, weights


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""
