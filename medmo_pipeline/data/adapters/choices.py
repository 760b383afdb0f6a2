"""Multiple-choice helpers shared by text and visual QA: answers given as a letter, an index or the
option text all become the option letter (the synthetic corpus and the label-accuracy reward use
letters), and the question lists the options as ``A. ...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

LETTERS = "ABCDEFGHIJ"
AnswerFormat = Literal["text", "letter", "index"]


def lettered_question(question: str, choices: Sequence[str]) -> str:
    lines = [question, *(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices))]
    return "\n".join([*lines, "Answer with the option letter."])


def resolve_answer(answer: str, choices: Sequence[str], answer_format: str, *, index_base: int = 0) -> str:
    """The gold option as a letter; '' when it names no option (curation then quarantines the row).

    >>> resolve_answer("2", ["a", "b", "c"], "index", index_base=1)
    'B'
    >>> resolve_answer("c", ["a", "b", "c"], "text")
    'C'
    """
    answer = answer.strip()
    if answer_format == "letter":
        letter = answer[:1].upper()
        return letter if letter and LETTERS.find(letter) in range(len(choices)) else ""
    if answer_format == "index":
        try:
            position = int(float(answer)) - index_base
        except ValueError:
            return ""
        return LETTERS[position] if 0 <= position < len(choices) else ""
    folded = [choice.strip().casefold() for choice in choices]
    return LETTERS[folded.index(answer.casefold())] if answer.casefold() in folded else ""
