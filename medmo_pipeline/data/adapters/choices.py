"""Multiple-choice helpers shared by text and visual QA: answers given as a letter, an index or the
option text all become the option letter (the synthetic corpus and the label-accuracy reward use
letters), and the question lists the options as ``A. ...``.

A gold given as text names the one option equal to it without case ("Fundus photography"), else
the one equal to it as a reader takes both (:func:`spoken`: case, runs of spaces and a final
period aside, so "Fundus photography." and "Maybe." name their option); a gold that matches two
options either way is ambiguous (RowError('malformed_record') naming them), never the first. A gold
that names no option is RowError('malformed_record') naming the field, its value and the number of
options (:func:`gold_letter`), so the quarantine or the benchmark load says which value was wrong.

Options are shown once, as ``A. ...`` lines: a question that already ends with the same options
(MedXpertQA-Text's ``Answer Choices: (A) ... (J) ...``) loses its own list (:func:`lettered_question`),
and options kept one per column (OmniMedVQA's ``option_A..option_D``) are only those the record
fills (:func:`column_options`), never an empty ``C. `` line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Literal

from medmo_pipeline.data.characters import SPACE, STRIPPED, WHITESPACE_RUN, stripped
from medmo_pipeline.data.outcomes import RowError

from .common import shown, text

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
    RowError('missing_question'): its options alone ask nothing.

    A question that already lists these very options at its end (:func:`question_choices`: an
    inline ``(A) ... (B) ...`` list or ``A) ...`` lines; each option equal to its choice as
    :func:`spoken` reads both, and as many) loses its own list, its lead-in ("Answer Choices:")
    kept: the options are shown once, and in the one form every multiple-choice prompt of the
    project has (the form the model is trained on and the option-letter scoring expects), whatever
    the publisher's. A list of other options (another text or count) is left where it is.

    >>> print(lettered_question("Which?\\nAnswer Choices: (A) CT (B) MRI.", ["CT", "MRI"]))
    Which?
    Answer Choices:
    A. CT
    B. MRI
    Answer with the option letter.
    """
    start, end, listed = _listed_options(question)
    if listed and len(listed) == len(choices) and all(map(_same_option, listed, choices)):
        before, after = question[:start].rstrip(STRIPPED), stripped(question[end:])
        question = f"{before}\n{after}" if before and after else before or after
    if not stripped(question):
        raise RowError("missing_question", "the question is empty: only its options are there")
    lines = [question, *(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices))]
    return "\n".join([*lines, "Answer with the option letter."])


def _same_option(listed: str, choice: str) -> bool:
    return spoken(listed) == spoken(choice)


def column_options(record: Mapping, fields: Sequence[str]) -> list[str]:
    """The options of a record that keeps one option a column (OmniMedVQA's ``option_A..option_D``,
    PMC-VQA's ``Choice A..D``, MedMCQA's ``opa..opd``) as text, without the last columns it leaves
    empty (absent, null, blank): a question of two options in four columns has two. An empty column
    before a filled one raises RowError('malformed_record') naming both: the options after it would
    be shown under another letter than the publisher's, or beside an empty one.

    >>> column_options({"option_A": "CT", "option_B": "MRI", "option_C": None}, ["option_A", "option_B",
    ...                "option_C", "option_D"])
    ['CT', 'MRI']
    >>> column_options({"opa": "x", "opb": " ", "opc": "z"}, ["opa", "opb", "opc"])
    Traceback (most recent call last):
    ...
    medmo_pipeline.data.outcomes.RowError: malformed_record: opb is empty but opc is not: a gap in the options
    """
    texts = [text(record.get(field)) for field in fields]
    while texts and not texts[-1]:
        texts.pop()
    if "" in texts:
        gap = texts.index("")
        later = next(position for position in range(gap + 1, len(texts)) if texts[position])
        raise RowError("malformed_record",
                       f"{fields[gap]} is empty but {fields[later]} is not: a gap in the options")
    return texts


# (Options listed in a question's text, read here for the adapters and data.benchmarks.gold alike.)
# "A. text", "A) text", "A: text" or "(A) text" filling one line (the text's trailing spaces are
# stripped after the match: a lazy text before optional spaces would try every split of a long line).
_OPTION_LINE = re.compile(r"[ \t]*(?:\(([A-J])\)|([A-J])[.):])[ \t]+(\S.*)")
# "(A)" standing as a word, inline; the option list must start a line or follow ":" / "?".
_INLINE_MARKER = re.compile(r"(?<!\S)\(([A-J])\)")


def question_choices(question: str) -> list[str]:
    """Option texts listed at the end of ``question``, in letter order; [] when it lists none.

    Options are read as trailing lines (``A. ...``, ``A) ...``, ``(A) ...``) or as one inline list
    ``(A) ... (B) ...`` that starts a line or follows ":" or "?" (its last option ends with the
    line). Letters must run A, B, C, ... and there must be at least two options.

    >>> question_choices("Which drug is shown?\\nA. Aspirin\\nB. Heparin")
    ['Aspirin', 'Heparin']
    >>> question_choices("Diagnosis?\\nAnswer Choices: (A) Sarcoidosis (B) Lymphoma (C) Tuberculosis")
    ['Sarcoidosis', 'Lymphoma', 'Tuberculosis']
    >>> question_choices("Panel (A) shows the biopsy and panel (B) the CT. What is seen?")
    []
    """
    return _listed_options(question)[2]


def _listed_options(question: str) -> tuple[int, int, list[str]]:
    """(start, end, texts): where in ``question`` the option list of :func:`question_choices` is, and
    its texts; texts [] when it lists none."""
    return _trailing_option_lines(question) or _inline_options(question)


def _trailing_option_lines(question: str) -> tuple[int, int, list[str]] | None:
    lines = question.rstrip().splitlines()
    options: list[tuple[str, str]] = []  # from the last line up
    for line in reversed(lines):
        match = _OPTION_LINE.fullmatch(line)
        if match is None:
            break
        options.append((match.group(1) or match.group(2), match.group(3).rstrip(" \t")))
    options.reverse()
    letters = [letter for letter, _ in options]
    if "A" not in letters:
        return None
    options = options[len(letters) - 1 - letters[::-1].index("A"):]  # from the last "A" on
    texts = _in_letter_order([letter for letter, _ in options], [option for _, option in options])
    ended = question.rstrip().splitlines(keepends=True)  # the same lines, with their line ends
    start = sum(map(len, ended[:len(lines) - len(options)]))
    return (start, len(question), texts) if texts else None


def _inline_options(question: str) -> tuple[int, int, list[str]]:
    markers = list(_INLINE_MARKER.finditer(question))
    firsts = [m for m in markers if m.group(1) == "A" and _leads_a_list(question, m.start())]
    if not firsts:
        return len(question), len(question), []
    kept = []
    for marker in markers[markers.index(firsts[-1]):]:
        if len(kept) < len(LETTERS) and marker.group(1) == LETTERS[len(kept)]:
            kept.append(marker)
    line_end = question.find("\n", kept[-1].end())
    ends = [marker.start() for marker in kept[1:]] + [line_end if line_end >= 0 else len(question)]
    texts = [question[marker.end():end].strip() for marker, end in zip(kept, ends)]
    return kept[0].start(), ends[-1], _in_letter_order([marker.group(1) for marker in kept], texts)


def _leads_a_list(question: str, at: int) -> bool:
    """Whether an inline option list may start at ``at``: a line starts there, or ":" or "?" comes
    before it, spaces and tabs aside. Looks back only over those spaces (searching the whole text
    before each "(A)" made a question of many markers cost their number times its length)."""
    before = at
    while before and question[before - 1] in " \t":
        before -= 1
    return before == 0 or question[before - 1] in "\n:?"


def _in_letter_order(letters: list[str], texts: list[str]) -> list[str]:
    """``texts`` when ``letters`` read A, B, C, ... (two or more) and every text is non-empty."""
    if len(letters) < 2 or "".join(letters) != LETTERS[: len(letters)] or not all(texts):
        return []
    return texts


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
