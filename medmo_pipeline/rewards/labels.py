"""Answers and tags out of model text: the pieces of the label-accuracy and tag-count rewards.

Parsing is strict on purpose: an answer that names no option, or names two, is unparseable and
scores as wrong. Falling back to "the most similar option" (as MedEvalKit does) would hand a
non-answer about 1/k accuracy.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
DEFAULT_TAGS = ("<think>", "</think>", ANSWER_OPEN, ANSWER_CLOSE)
CLOSED_ANSWERS = ("yes", "no")

_ARTICLES = frozenset({"a", "an", "the"})
_PUNCTUATION = re.compile(r"[^\w\s]|_")
# "Answer: B", "The final answer is (B)", "answer - yes"; anchored, so matched at one place only.
_ANSWER_PREFIX = re.compile(r"(?:the\s+)?(?:final\s+)?answer\b(?:\s+is\b)?\s*[:\-]?\s*", re.IGNORECASE)
_LETTER_ALONE = re.compile(r"\(?([A-Za-z])\)?[.:)]?")
# A letter followed by text needs a marker ("B." "B)" "(b)"), else "A nodule" would read as A.
_LETTER_WITH_TEXT = re.compile(r"(?:\(([A-Za-z])\)|([A-Z])[.:)])\s*(.+)", re.DOTALL)


def normalize_answer(text: str) -> str:
    """Lower case, punctuation to spaces, articles dropped, whitespace collapsed.

    Articles stay when nothing else is left, so the answer "A" still reads as "a".

    >>> normalize_answer("  The Left-Lung  nodule. "), normalize_answer("(A)")
    ('left lung nodule', 'a')
    """
    words = _PUNCTUATION.sub(" ", text.lower()).split()
    content = [word for word in words if word not in _ARTICLES]
    return " ".join(content or words)


def extract_answer(text: str) -> str:
    """Content of the last ``<answer>...</answer>``; after an unclosed ``<answer>``; else the text.

    >>> extract_answer("<think>maybe B</think><answer> C </answer>")
    'C'
    >>> extract_answer("plain reply")
    'plain reply'
    """
    close_at = text.rfind(ANSWER_CLOSE)
    open_at = text.rfind(ANSWER_OPEN, 0, close_at) if close_at >= 0 else text.rfind(ANSWER_OPEN)
    if open_at < 0:
        return text.strip()
    end = close_at if close_at > open_at else len(text)
    return text[open_at + len(ANSWER_OPEN) : end].strip()


def closed_answer(text: str) -> str | None:
    """Return "yes" or "no" when the answer starts with that word, else None.

    >>> closed_answer("Yes, there is a fracture.")
    'yes'
    >>> closed_answer("Answer: no") , closed_answer("Probably")
    ('no', None)
    """
    words = normalize_answer(_without_answer_prefix(text)).split()
    return words[0] if words and words[0] in CLOSED_ANSWERS else None


def option_letter(text: str, choices: Sequence[str] = ()) -> str | None:
    """The option ("A".."Z") an answer names, or None when it names none or several.

    Accepts "B", "(B)", "B.", "Answer: B", "B. <text>" and the option text itself. With
    ``choices`` the letter must be one of theirs, and "B. <text of another option>" is ambiguous.

    >>> choices = ["Pneumonia", "Effusion", "Normal"]
    >>> option_letter("(B)", choices), option_letter("The answer is effusion.", choices)
    ('B', 'B')
    >>> option_letter("A or B", choices), option_letter("D", choices), option_letter("B. Normal", choices)
    (None, None, None)
    """
    letters = string.ascii_uppercase[: len(choices)] if choices else string.ascii_uppercase
    body = _without_answer_prefix(text)
    alone = _LETTER_ALONE.fullmatch(body)
    if alone:
        letter = alone.group(1).upper()
        return letter if letter in letters else None
    with_text = _LETTER_WITH_TEXT.fullmatch(body)
    if with_text:
        letter = (with_text.group(1) or with_text.group(2)).upper()
        named_by_text = _option_by_text(with_text.group(3), choices)
        if letter not in letters or named_by_text not in (None, letter):
            return None
        return letter
    return _option_by_text(body, choices)


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
    predicted = extract_answer(prediction)
    if normalize_answer(answer) in CLOSED_ANSWERS:
        return closed_answer(predicted) == normalize_answer(answer)
    if choices:
        gold_letter = option_letter(answer, choices)
        if gold_letter is not None:
            return option_letter(predicted, choices) == gold_letter
    gold = normalize_answer(answer)
    return bool(gold) and normalize_answer(_without_answer_prefix(predicted)) == gold


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


def _without_answer_prefix(text: str) -> str:
    stripped = text.strip()
    prefix = _ANSWER_PREFIX.match(stripped)
    return stripped[prefix.end() :] if prefix else stripped


def _option_by_text(text: str, choices: Sequence[str]) -> str | None:
    """The letter of the one choice whose normalised text equals ``text``'s, else None."""
    wanted = normalize_answer(text)
    if not wanted:
        return None
    hits = [
        letter
        for letter, choice in zip(string.ascii_uppercase, choices)
        if normalize_answer(_without_own_marker(choice, letter)) == wanted
    ]
    return hits[0] if len(hits) == 1 else None


def _without_own_marker(choice: str, letter: str) -> str:
    """Option text without a leading "B." / "(B)" naming its own letter (some sets store it)."""
    marked = _LETTER_WITH_TEXT.fullmatch(choice.strip())
    if marked and (marked.group(1) or marked.group(2)).upper() == letter:
        return marked.group(3)
    return choice
