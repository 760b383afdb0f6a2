"""The RL rewards with TRL's signature, and the one registry that recipes pick them from by name.

A reward function is ``f(prompts, completions, **columns) -> list[float | None]``: TRL's GRPO trainer
passes every dataset column as a list (one entry per completion) plus ``completion_ids``,
``trainer_state``, ``log_extra`` and ``log_metric``; ``None`` marks a row the reward does not cover.
Columns of the RL dataset: ``task``, ``answer``, ``choices``, ``boxes`` (pixels of the original
image), ``image_width`` and ``image_height``.

A recipe names rewards with their parameters::

    rewards:
      box: {weight: 1.0, squared: false, normalise_by: ground_truth_extent}
      label_accuracy: {weight: 1.0, box_labels: true}
      tag_count: {weight: 0.5}
      soft_overlong: {weight: 1.0, max_completion_len: 1024, soft_punish_cache: 256}

and ``build_reward_functions`` turns that into TRL's ``reward_funcs`` and ``reward_weights``. The
paper's choices and ours are in docs/paper_recipe.md.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from medmo_pipeline.reply_format import TAGS
from medmo_pipeline.rewards.box import box_reward
from medmo_pipeline.rewards.labels import extract_answer, label_match, normalize_answer, tag_count_score
from medmo_pipeline.safe_yaml import refuse_yes_or_no
from medmo_pipeline.schema.box_text import MAX_REPLY_BOXES, parse_boxes, parse_labeled_boxes
from medmo_pipeline.schema.boxes import relative_to_pixels

GROUNDING_TASKS = frozenset({"grounding"})
LABELED_TASKS = frozenset({"vqa", "text_qa"})
# How the box reward's L1 term is normalised: by (H, W) inferred from the ground truth's extents (the
# paper's appendix A.1) or by the row's true image size.
BoxNormalisation = Literal["ground_truth_extent", "image_size"]
BOX_NORMALISATIONS = typing.get_args(BoxNormalisation)

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
    if isinstance(completion, Mapping):  # one message rather than a list of them
        completion = [completion]
    if not isinstance(completion, Sequence):  # None, a number: no text, scored as an empty reply
        return ""
    return "".join(
        item if isinstance(item, str) else _content_text(item.get("content"))
        for item in completion
        if isinstance(item, str) or isinstance(item, Mapping) and item.get("role", "assistant") == "assistant"
    )


def box_scorable(task: str, boxes: Sequence[Mapping[str, Any]] | None, width: int, height: int) -> bool:
    """Whether the box reward can score a row: a grounding row with a gold box and a known image size.

    >>> box_scorable("grounding", [{"x1": 1, "y1": 1, "x2": 5, "y2": 5}], 64, 64), box_scorable("grounding", [], 64, 64)
    (True, False)
    """
    return task in GROUNDING_TASKS and bool(boxes) and width > 0 and height > 0


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
    normalise_by: BoxNormalisation = "image_size",
    **_: Any,
) -> list[float | None]:
    """Bounding-box reward (paper appendix A.1) of grounding rows with a gold box; None for others.

    Boxes are read from the ``<answer>`` (or the whole reply) on Qwen3-VL's 0-1000 scale, converted
    to pixels of the row's image and scored against ``boxes``. ``normalise_by`` names the (H, W) of
    the L1 term: ``image_size`` (the row's image) or ``ground_truth_extent`` (inferred from the gold
    boxes' extents, as the paper does). A row with no gold box is None, never the formula's neutral
    0.5 (the RL job keeps such rows out and counts them); a gold box without an image size is a
    ValueError. Box labels are scored by ``label_accuracy``. A reply of more than ``MAX_REPLY_BOXES``
    boxes scores 0 (see :mod:`medmo_pipeline.rewards.box`); reading stops just past that many.

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
    if normalise_by not in BOX_NORMALISATIONS:
        raise ValueError(f"box reward: normalise_by must be one of {list(BOX_NORMALISATIONS)}, got {normalise_by!r}")
    rewards: list[float | None] = []
    for completion, row_task, row_boxes, width, height in zip(
        completions, task, boxes, image_width, image_height, strict=True
    ):
        if row_task not in GROUNDING_TASKS or not row_boxes:
            rewards.append(None)
            continue
        if not box_scorable(row_task, row_boxes, width, height):  # the RL job keeps such rows out
            raise ValueError(f"grounding row without an image size ({width}x{height}): cannot place boxes")
        predicted = [
            relative_to_pixels(relative, width, height)
            for relative in parse_boxes(extract_answer(completion_text(completion)), MAX_REPLY_BOXES + 1)
        ]
        truth = [(b["x1"], b["y1"], b["x2"], b["y2"]) for b in row_boxes]
        rewards.append(
            box_reward(
                predicted,
                truth,
                image_size=(width, height) if normalise_by == "image_size" else None,
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
    boxes: list[Sequence[Mapping[str, Any]]] | None = None,
    box_labels: bool = False,
    **_: Any,
) -> list[float | None]:
    """1.0 when the reply's answer matches the gold label, else 0.0; None for rows with no label.

    Covers vqa and text_qa rows with a non-empty ``answer`` (yes/no, option letter or text, or
    normalised free text; an unparseable reply is wrong). With ``box_labels``, also grounding rows
    whose gold boxes are labelled: 1.0 when the labels written before the answer's boxes are, after
    normalisation, exactly the set of gold labels (see :func:`box_labels_match`).

    >>> label_accuracy(
    ...     [None, None, None, None],
    ...     ["<answer>(B)</answer>", "<answer>no</answer>", "a caption", "<answer>Cell <box>[[1, 1, 9, 9]]</box></answer>"],
    ...     task=["text_qa", "vqa", "caption", "grounding"],
    ...     answer=["Effusion", "yes", "", "cell <box>[[1, 1, 9, 9]]</box>"],
    ...     choices=[["Pneumonia", "Effusion"], [], [], []],
    ...     boxes=[[], [], [], [{"label": "cell", "x1": 1, "y1": 1, "x2": 9, "y2": 9}]],
    ...     box_labels=True,
    ... )
    [1.0, 0.0, None, 1.0]
    """
    row_choices = choices if choices is not None else [()] * len(completions)
    row_boxes = boxes if boxes is not None else [()] * len(completions)
    rewards: list[float | None] = []
    for completion, row_task, gold, options, gold_boxes in zip(
        completions, task, answer, row_choices, row_boxes, strict=True
    ):
        text = completion_text(completion)
        if row_task in GROUNDING_TASKS:
            labels = gold_box_labels(gold_boxes) if box_labels else set()
            rewards.append(float(box_labels_match(text, labels)) if labels else None)
        elif row_task in LABELED_TASKS and isinstance(gold, str) and gold:  # a NaN or list gold is no label
            rewards.append(float(label_match(text, gold, list(options) if options is not None else [])))
        else:
            rewards.append(None)
    return rewards


def gold_box_labels(boxes: Sequence[Mapping[str, Any]] | None) -> set[str]:
    """Normalised non-empty labels of a row's gold boxes (empty when the data names none)."""
    return {label for label in (normalize_answer(b.get("label") or "") for b in boxes or ()) if label}


def box_labels_match(reply: str, gold_labels: set[str]) -> bool:
    """Whether the labels of the boxes in the reply's answer are exactly ``gold_labels`` (normalised);
    never for a reply of more than ``MAX_REPLY_BOXES`` boxes, malformed as for the box reward.

    >>> box_labels_match("<answer>Nodule <box>[[1, 2, 3, 4]]</box></answer>", {"nodule"})
    True
    >>> box_labels_match("<answer>cell <box>[[1, 2, 3, 4]]</box></answer>", {"nodule"})
    False
    """
    labeled = parse_labeled_boxes(extract_answer(reply), MAX_REPLY_BOXES + 1)
    if len(labeled) > MAX_REPLY_BOXES:
        return False
    found = {normalize_answer(label) for label, _ in labeled}
    return bool(found) and found == gold_labels


def tag_count(prompts: list, completions: list[Completion], **_: Any) -> list[float | None]:
    """Share of the reply format's tags (``reply_format.TAGS``) that appear exactly once, for every row.

    >>> tag_count([None, None], ["<think>a</think><answer>b</answer>", "<answer>b"])
    [1.0, 0.25]
    """
    return [tag_count_score(completion_text(completion), TAGS) for completion in completions]


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


def _box_problem(params: Mapping[str, Any]) -> str | None:
    """Why the box reward cannot use these penalty weights (``box_reward`` would refuse them at the
    first RL step): a negative one would reward missed or spurious boxes."""
    for key in ("lambda_fn", "lambda_fp"):
        if params.get(key, 0.0) < 0:
            return f"parameter {key!r} is {params[key]}: a penalty weight must be >= 0"
    return None


def _overlong_problem(max_completion_len: int, soft_punish_cache: int) -> str | None:
    """Why DAPO's overlong punishment cannot use these lengths: the punished stretch lies within
    the completion length, neither negative (a 10-token reply would be punished)."""
    if max_completion_len < 1 or not 0 <= soft_punish_cache <= max_completion_len:
        return (f"soft_punish_cache ({soft_punish_cache}) must lie within 0..max_completion_len "
                f"({max_completion_len}), which must be at least 1")
    return None


@dataclass(frozen=True)
class RewardDefinition:
    """A registered reward: its function and the parameters a recipe may set."""

    function: Callable[..., list[float | None]]
    params: tuple[str, ...] = field(default=())
    # why a set of (typed) parameters does not work together, or None: checked when the recipe loads
    check: Callable[[Mapping[str, Any]], str | None] = field(default=lambda params: None)

    def required_params(self) -> set[str]:
        signature = inspect.signature(self.function).parameters
        return {name for name in self.params if signature[name].default is inspect.Parameter.empty}


REWARDS: dict[str, RewardDefinition] = {
    "box": RewardDefinition(box, ("squared", "lambda_fn", "lambda_fp", "normalise_by"), _box_problem),
    "label_accuracy": RewardDefinition(label_accuracy, ("box_labels",)),
    "tag_count": RewardDefinition(tag_count),
    "soft_overlong": RewardDefinition(soft_overlong, ("max_completion_len", "soft_punish_cache"),
                                      lambda params: _overlong_problem(**params)),
}
WEIGHT = "weight"


def reward_tasks(name: str, params: Mapping[str, Any] | None = None) -> frozenset[str] | None:
    """The tasks whose answers a registry reward scores; None for one that scores every reply the same
    way whatever its task (its format, its length)."""
    if name == "box":
        return GROUNDING_TASKS
    if name == "label_accuracy":
        return LABELED_TASKS | (GROUNDING_TASKS if (params or {}).get("box_labels") else frozenset())
    return None


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
        weight = _typed(name, WEIGHT, float, params.pop(WEIGHT, 1.0))
        if weight < 0:  # a negative weight trains the policy away from what the reward scores
            raise ValueError(f"reward {name!r}: weight {weight} is negative (0 logs a reward without training on it)")
        unknown = sorted(set(params) - set(definition.params))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {unknown} for reward {name!r}; it takes {list(definition.params)}"
            )
        missing = sorted(definition.required_params() - set(params))
        if missing:
            raise ValueError(f"reward {name!r} needs parameter(s) {missing}")
        hints = typing.get_type_hints(definition.function)
        params = {key: _typed(name, key, hints.get(key, Any), value) for key, value in params.items()}
        if (problem := definition.check(params)) is not None:
            raise ValueError(f"reward {name!r}: {problem}")
        functions.append(BoundReward(name, definition.function, params))
        weights.append(weight)
    return functions, weights


def _typed(reward: str, key: str, annotation: Any, value: Any) -> Any:
    """``value`` as the reward function's ``annotation`` asks (a finite number, a bool, one of a few
    words...), so a recipe's ``squared: maybe`` or ``weight: .nan`` fails when the recipe loads,
    naming reward and parameter, instead of in the first RL step."""
    from pydantic import ConfigDict, TypeAdapter, ValidationError

    refuse_yes_or_no(f"reward {reward!r} parameter {key!r}", value, annotation)
    try:
        return TypeAdapter(annotation, config=ConfigDict(allow_inf_nan=False)).validate_python(value)
    except ValidationError as error:
        problem = error.errors()[0]["msg"]
        raise ValueError(f"reward {reward!r} parameter {key!r}: {problem} (got {value!r})") from None


def _content_text(content: Any) -> str:
    """A message's text: its content string, or its text parts joined; a part whose text is not a
    string (None, a list) holds no text, so a broken reply scores as an empty one."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        texts = (part.get("text") for part in content if isinstance(part, Mapping) and part.get("type") == "text")
        return "".join(text for text in texts if isinstance(text, str))
    return ""
