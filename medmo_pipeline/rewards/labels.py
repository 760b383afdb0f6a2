"""The pieces of the label-accuracy and tag-count rewards.

Answers are read by :mod:`medmo_pipeline.answers`, the same code the evaluation metrics use, so a
reply that earns reward scores the same at evaluation. Parsing is strict on purpose: an answer that
names no option, or names two, is unparseable and scores as wrong. Falling back to "the most similar
option" (as MedEvalKit does) would hand a non-answer about 1/k accuracy.

``extract_answer``, ``normalize_answer``, ``closed_answer`` and ``option_letter`` are the reward-side
names of :func:`~medmo_pipeline.answers.answer_text`, :func:`~medmo_pipeline.answers.normalize_text`,
:func:`~medmo_pipeline.answers.yes_no` and :func:`~medmo_pipeline.answers.option_letter`.
"""

from __future__ import annotations

from collections.abc import Sequence

from medmo_pipeline.answers import answer_body, answer_text, normalize_text, option_letter, yes_no
from medmo_pipeline.reply_format import ANSWER_CLOSE, ANSWER_OPEN, TAGS

__all__ = [
    "ANSWER_CLOSE",
    "ANSWER_OPEN",
    "CLOSED_ANSWERS",
    "DEFAULT_TAGS",
    "closed_answer",
    "extract_answer",
    "label_match",
    "normalize_answer",
    "option_letter",
    "tag_count_score",
]

DEFAULT_TAGS = TAGS  # the tags of the one reply format (medmo_pipeline.reply_format)
CLOSED_ANSWERS = ("yes", "no")

extract_answer = answer_text
normalize_answer = normalize_text
closed_answer = yes_no


def label_match(prediction: str, answer: str, choices: Sequence[str] = ()) -> bool:
    """Whether a model reply gives the gold ``answer``: yes/no, option letter or text, free text.

    The reply's ``<answer>`` content is used when present.

    >>> label_match("<answer>Yes.</answer>", "yes")
    True
    >>> label_match("<answer>(B)</answer>", "Effusion", ["Pneumonia", "Effusion"])
    True
    >>> label_match("<answer>I am not sure</answer>", "A", ["Pneumonia", "Effusion"])
    False
    """
    gold = normalize_text(answer)
    if gold in CLOSED_ANSWERS:
        return yes_no(prediction) == gold
    if choices:
        gold_letter = option_letter(answer, choices)
        if gold_letter is not None:
            return option_letter(prediction, choices) == gold_letter
    return bool(gold) and normalize_text(answer_body(prediction)) == gold


def tag_count_score(text: str, tags: Sequence[str] = DEFAULT_TAGS) -> float:
    """Share of ``tags`` that appear exactly once in ``text``, in [0, 1].

    >>> tag_count_score("<think>x</think><answer>y</answer>")
    1.0
    >>> tag_count_score("<think>x</think><answer>y<answer>")
    0.5
    """
    if not tags:
        raise ValueError("tag_count_score needs at least one tag")
    return sum(text.count(tag) == 1 for tag in tags) / len(tags)
