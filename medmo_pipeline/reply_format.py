"""The reply format a stage teaches and the RL policy is asked for (docs/paper_recipe.md, "Reply format").

The paper's tag-count reward credits ``<think>``, ``</think>``, ``<answer>`` and ``</answer>``, so the
format it rewards is reasoning in a think block, then the answer in an answer block::

    <think>one lesion in the right upper zone</think><answer>lesion <box>[[120, 80, 310, 260]]</answer>

Two formats, named in a recipe stage's ``reply_format``:

- ``plain``: the prompt is the question; the target is the reply alone (a reasoning trace the data
  carries is left out, since nothing asked for it).
- ``think_answer``: rows whose reply carries reasoning (a leading ``<think>...</think>`` block, as
  the reasoning adapters and the synthetic corpus write it) are asked for the format by
  :data:`FORMAT_INSTRUCTION` and taught ``<think>reasoning</think><answer>reply</answer>``; half of
  them (a stable hash of the row id, :func:`asks_for_format`) are asked plainly and taught the
  reply alone instead, so the model writes the format when asked for it and still answers plainly
  when a benchmark asks plainly. Rows without reasoning stay plain, since there is no reasoning to
  teach. Every RL prompt of a ``think_answer`` stage carries the instruction.

:func:`medmo_pipeline.answers.answer_text` reads the answer back out of either form, and the
tag-count reward counts exactly :data:`TAGS`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

ReplyFormat = Literal["plain", "think_answer"]
REPLY_FORMATS: tuple[str, ...] = ("plain", "think_answer")

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
FORMAT_INSTRUCTION = "Think inside <think></think>, then answer inside <answer></answer>."

_LEADING_THINK = re.compile(r"\s*<think>(.*?)</think>\s*", re.DOTALL)


def split_reasoning(reply: str) -> tuple[str, str]:
    """(reasoning, reply without it) of a reply that opens with a think block; ("", reply) otherwise.

    >>> split_reasoning("<think>\\ntwo cells\\n</think>\\ncell <box>[[1, 2, 3, 4]]</box>")
    ('two cells', 'cell <box>[[1, 2, 3, 4]]</box>')
    >>> split_reasoning("yes")
    ('', 'yes')
    """
    match = _LEADING_THINK.match(reply)
    if match is None or not match.group(1).strip():
        return "", reply if match is None else reply[match.end() :]
    return match.group(1).strip(), reply[match.end() :].strip()


def tagged(reasoning: str, answer: str) -> str:
    """``<think>reasoning</think><answer>answer</answer>``.

    >>> tagged("one lesion", "yes")
    '<think>one lesion</think><answer>yes</answer>'
    """
    return f"{THINK_OPEN}{reasoning}{THINK_CLOSE}{ANSWER_OPEN}{answer}{ANSWER_CLOSE}"


def asking_for_format(question: str) -> str:
    """The question with :data:`FORMAT_INSTRUCTION` on a line of its own after it."""
    return f"{question}\n{FORMAT_INSTRUCTION}"


def asks_for_format(row_id: str) -> bool:
    """Whether a ``think_answer`` stage asks this row (when it has reasoning) for the format: half of
    the rows, chosen by a stable hash of the id so that every run and every rank agrees."""
    return hashlib.sha256(str(row_id).encode()).digest()[0] % 2 == 0


def sft_turns(question: str, reply: str, reply_format: ReplyFormat, ask: bool = True) -> tuple[str, str]:
    """(prompt, target) a stage trains on for one exchange; ``ask``: ask for the format (see
    :func:`asks_for_format`) where the reply has reasoning and the stage teaches ``think_answer``.

    >>> sft_turns("Locate the cells.", "<think>two cells</think>cell <box>[[1, 2, 3, 4]]</box>", "plain")
    ('Locate the cells.', 'cell <box>[[1, 2, 3, 4]]</box>')
    >>> sft_turns("Is there a lesion?", "<think>none seen</think>no", "think_answer")[1]
    '<think>none seen</think><answer>no</answer>'
    >>> sft_turns("Is there a lesion?", "<think>none seen</think>no", "think_answer", ask=False)
    ('Is there a lesion?', 'no')
    >>> sft_turns("Is there a lesion?", "no", "think_answer")
    ('Is there a lesion?', 'no')
    """
    _check(reply_format)
    reasoning, answer = split_reasoning(reply)
    if reply_format == "think_answer" and reasoning and ask:
        return asking_for_format(question), tagged(reasoning, answer)
    return question, answer


def rl_prompt(question: str, reply_format: ReplyFormat) -> str:
    """The RL prompt: the question, asking for the format under ``think_answer``."""
    _check(reply_format)
    return asking_for_format(question) if reply_format == "think_answer" else question


def _check(reply_format: str) -> None:
    if reply_format not in REPLY_FORMATS:
        raise ValueError(f"unknown reply format {reply_format!r}; known: {list(REPLY_FORMATS)}")
