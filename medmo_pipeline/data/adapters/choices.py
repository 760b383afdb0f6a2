"""Multiple-choice helpers shared by text and visual QA: answers given as a letter, an index or the
option text all become the option letter (the synthetic corpus and the label-accuracy reward use
letters), and the question lists the options as ``A. ...``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from medmo_pipeline.data.outcomes import RowError

LETTERS = "ABCDEFGHIJ"
AnswerFormat = Literal["text", "letter", "index", "auto"]
_PREFIX = re.compile(r"^\s*\(?([A-J])\s*[:.)]\s*")
_LETTER = re.compile(r"^\s*\(?([A-Ja-j])\)?\s*(?:$|[:.)]|\s+-)")  # a letter alone, or before its option text


def lettered_question(question: str, choices: Sequence[str]) -> str:
    """The question followed by its options as ``A. ...`` lines; an empty question raises
    RowError('missing_question'): its options alone ask nothing."""
    if not question.strip():
        raise RowError("missing_question", "the question is empty: only its options are there")
    lines = [question, *(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices))]
    return "\n".join([*lines, "Answer with the option letter."])


def unprefixed(choices: Sequence[str]) -> list[str]:
    """Options without the letter their publisher wrote into them ("A:Diffuse uptake" in PMC-VQA):
    ``lettered_question`` adds its own. Only an option's own letter is removed.

    >>> unprefixed(["A:CT", " B: MRI", "C.X-ray", "D) PET", "Vitamin D: low"])
    ['CT', 'MRI', 'X-ray', 'PET', 'Vitamin D: low']
    """
    out = []
    for position, choice in enumerate(choices):
        match = _PREFIX.match(choice)
        own = match is not None and match.group(1) == LETTERS[position] and match.end() < len(choice)
        out.append(choice[match.end():].strip() if own else choice.strip())
    return out


def resolve_answer(answer: str, choices: Sequence[str], answer_format: str, *, index_base: int = 0) -> str:
    """The gold option as a letter; '' when it names no option (curation then quarantines the row).

    >>> resolve_answer("2", ["a", "b", "c"], "index", index_base=1)
    'B'
    >>> resolve_answer("c", ["a", "b", "c"], "text")
    'C'
    """
    answer = answer.strip()
    if answer_format == "auto":  # a letter ("B", "B:", "B: text") if it names an option, else the option text
        match = _PREFIX.match(answer)
        letter = match.group(1) if match else answer.upper() if len(answer) == 1 else ""
        if letter and LETTERS.find(letter) in range(len(choices)):
            return letter
        answer_format = "text"
    if answer_format == "letter":  # "B", "b", "(B)", "B.", "B: Heparin"; not "Both" (its first letter)
        match = _LETTER.match(answer)
        letter = match.group(1).upper() if match else ""
        return letter if letter and LETTERS.find(letter) in range(len(choices)) else ""
    if answer_format == "index":
        try:
            position = int(float(answer)) - index_base
        except ValueError:
            return ""
        return LETTERS[position] if 0 <= position < len(choices) else ""
    folded = [choice.strip().casefold() for choice in choices]
    return LETTERS[folded.index(answer.casefold())] if answer.casefold() in folded else ""
