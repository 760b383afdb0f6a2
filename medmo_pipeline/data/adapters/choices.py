"""Multiple-choice helpers shared by text and visual QA: answers given as a letter, an index or the
option text all become the option letter (the synthetic corpus and the label-accuracy reward use
letters), and the question lists the options as ``A. ...``.

A gold given as text names the one option equal to it without case ("Fundus photography"), else
the one equal to it as a reader takes both (:func:`spoken`: case, runs of spaces and a final
period aside, so "Fundus photography." and "Maybe." name their option); a gold that matches two
options either way is ambiguous (RowError('malformed_record') naming them), never the first. A gold
that names no option is RowError('malformed_record') naming the field, its value and the number of
options (:func:`gold_letter`), so the quarantine or the benchmark load says which value was wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

from medmo_pipeline.data.characters import SPACE, STRIPPED, WHITESPACE_RUN, stripped
from medmo_pipeline.data.outcomes import RowError

from .common import shown

LETTERS = "ABCDEFGHIJ"
AnswerFormat = Literal["text", "letter", "index", "auto"]
# Spaces as ``characters.stripped`` takes them: a control code beside a letter is no space to drop
_PREFIX = re.compile(rf"^{SPACE}*\(?([A-J]){SPACE}*[:.)]{SPACE}*")
# A letter alone, or before its option text; an option key (a letter or a number) the same way
# (The spaces after the letter are taken once, possessively: "A", a run of spaces and text took the
# square of the run's length, each split of it tried against " -")
_LETTER = re.compile(rf"^{SPACE}*\(?([A-Ja-j])\)?{SPACE}*+(?:$|[:.)]|(?<={SPACE})-)")
_KEY = re.compile(rf"^{SPACE}*\(?([A-Za-z]|[0-9]+)\)?{SPACE}*+(?:$|[:.)]|(?<={SPACE})-)")


def lettered_question(question: str, choices: Sequence[str]) -> str:
    """The question followed by its options as ``A. ...`` lines; an empty question raises
    RowError('missing_question'): its options alone ask nothing."""
    if not stripped(question):
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
        out.append(stripped(choice[match.end():] if own else choice))
    return out


def gold_letter(answer: str, choices: Sequence[str], answer_format: str, *, index_base: int = 0,
                keys: Sequence | None = None, what: str = "answer") -> str:
    """The gold option as a letter (:func:`resolve_answer`); '' only for an empty answer (curation
    then says ``missing_answer``, a benchmark load "no gold answer"). An answer that names no option
    raises RowError('malformed_record') naming ``what``, its value and the options' count: the row
    is quarantined (one row, not the source), or the benchmark load fails naming its file and row.

    >>> gold_letter("Maybe.", ["yes", "no", "maybe"], "text", what="final_decision")
    'C'
    >>> gold_letter("4", ["a", "b", "c", "d"], "index", what="cop")
    Traceback (most recent call last):
    ...
    medmo_pipeline.data.outcomes.RowError: malformed_record: cop '4' names none of its 4 options (counted from 0)
    """
    letter = resolve_answer(answer, choices, answer_format, index_base=index_base, keys=keys, what=what)
    if letter or not stripped(answer):
        return letter
    counted = f" (counted from {index_base})" if answer_format == "index" else ""
    plain = keys is None or answer_format not in ("letter", "auto") or [_folded(key) for key in keys] == \
        [name.casefold() for name in LETTERS[:len(keys)]]
    keyed = "" if plain else f" (keyed {', '.join(map(str, keys))})"  # options keyed B..E: "A" is none
    raise RowError("malformed_record", f"{what} {shown(stripped(answer))} names none of its {len(choices)} "
                                       f"options{counted}{keyed}")


def resolve_answer(answer: str, choices: Sequence[str], answer_format: str, *, index_base: int = 0,
                   keys: Sequence | None = None, what: str = "answer") -> str:
    """The gold option as a letter; '' when it names no option (:func:`gold_letter` says which
    value then). ``keys`` are the publisher's names of the options, in order (an options dict's
    keys): a letter or auto answer names the option of that key, wherever it now stands. An index
    answer must be a whole number: RowError('bad_number') naming ``what`` otherwise. A text answer
    matching two options is ambiguous: RowError('malformed_record') naming ``what`` and the options.

    >>> resolve_answer("2", ["a", "b", "c"], "index", index_base=1)
    'B'
    >>> resolve_answer("c", ["a", "b", "c"], "text")
    'C'
    >>> resolve_answer("C", ["Aspirin", "Heparin", "Warfarin"], "letter", keys=["B", "C", "D"])
    'B'
    >>> resolve_answer("Fundus photography.", ["CT", "Fundus photography"], "text")
    'B'
    """
    answer = stripped(answer)
    if keys is not None and answer_format in ("letter", "auto"):
        position = _keyed_position(answer, keys, what)
        if position is not None:
            return LETTERS[position]
        if any(len(name) == 1 and name.isalpha() for name in map(_folded, keys)):  # letter keys, none named
            if answer_format == "letter":
                return ""
            answer_format = "text"
        # keys of numbers ("1".."10"): a letter answer counts the options in key order, as for a list
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
        if not answer:
            return ""
        position = _whole_number(answer, what) - index_base
        return LETTERS[position] if 0 <= position < len(choices) else ""
    return _by_text(answer, choices, what)


def spoken(value: str) -> str:
    """Text as a reader compares it: without case, runs of spaces as one, and no final period
    (control codes are no spaces here: they stay, for curation to quarantine).

    >>> spoken("  Fundus   Photography. "), spoken("Maybe."), spoken("e.g.")
    ('fundus photography', 'maybe', 'e.g')
    """
    return WHITESPACE_RUN.sub(" ", stripped(value)).casefold().removesuffix(".").rstrip(STRIPPED)


def _by_text(answer: str, choices: Sequence[str], what: str) -> str:
    """The letter of the one option equal to ``answer`` without case, else of the one equal to it
    as :func:`spoken`; '' when none is; RowError('malformed_record') when two are (options of the
    same text: the gold is ambiguous, and taking the first would score a guess)."""
    if not answer:
        return ""
    for same in (lambda choice: stripped(choice).casefold() == answer.casefold(),
                 lambda choice: spoken(choice) == spoken(answer)):
        matches = [position for position, choice in enumerate(choices) if stripped(choice) and same(choice)]
        if len(matches) > 1:
            named = ", ".join(f"{LETTERS[position]} {shown(stripped(choices[position]), 40)}" for position in matches)
            raise RowError("malformed_record", f"{what} {shown(answer)} is ambiguous: it matches {len(matches)} of "
                                               f"its {len(choices)} options ({named})")
        if matches:
            return LETTERS[matches[0]]
    return ""


def _keyed_position(answer: str, keys: Sequence, what: str) -> int | None:
    """The position of the option whose key ``answer`` names ("C", "(c)", "C: Heparin", "3", the
    key itself), or None. Two keys alike but for case and spaces ("A" and "a") leave any answer
    ambiguous: RowError('malformed_record')."""
    folded = [_folded(key) for key in keys]
    if len(set(folded)) < len(folded):
        alike = [key for key, name in zip(keys, folded) if folded.count(name) > 1]
        raise RowError("malformed_record", f"option keys {alike!r} are one key but for case or spaces: "
                                           f"{what} {answer!r} is ambiguous")
    match = _KEY.match(answer)
    for named in (answer, match.group(1) if match else ""):
        if named and _folded(named) in folded:
            return folded.index(_folded(named))
    return None


def _folded(key) -> str:
    """An option key as answers name it: case and spaces aside."""
    return "".join(str(key).split()).casefold()


def _whole_number(answer: str, what: str) -> int:
    """An index answer as a number ("2", "2.0"); 1.9, -0.5, inf and "x" raise RowError('bad_number'):
    cut to a whole number, they would name an option the publisher did not."""
    try:
        value = float(answer)
    except ValueError:
        raise RowError("bad_number", f"{what} {answer!r} is not a number") from None
    if not (math.isfinite(value) and value.is_integer()):
        raise RowError("bad_number", f"{what} {answer!r} is not a whole number: it names no option")
    return int(value)
