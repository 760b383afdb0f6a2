"""Reading a model's answer: extraction, normalisation, yes/no and option parsing.

The RL label-accuracy reward (:mod:`medmo_pipeline.rewards.labels`) and the evaluation metrics
(:mod:`medmo_pipeline.evaluation.metrics.answers`) both read answers through this module, so a reply
that earns reward during training is scored the same way at evaluation. It imports nothing from
either side.

Rules, applied in this order:

1. **Extraction** (:func:`answer_text`). Closed ``<think>...</think>`` blocks are dropped first, so
   an ``<answer>`` written while reasoning does not count. Then the content of the *last* complete
   ``<answer>...</answer>`` block is used; without one, the text after the last unclosed
   ``<answer>``; without any ``<answer>``, the whole reply. A ``<think>`` left open inside what
   remains is dropped to the end. Tags are matched case-insensitively. ``None`` reads as ``""``.
2. **Prefix** (:func:`answer_body`). One leading "Answer:", "The final answer is", "The correct
   answer is", "Option", "Choice -" ... is removed; the keyword must be a whole word, so "Answering"
   and "Optional surgery" stay intact.
3. **Normalisation** (:func:`normalize_text`). Lower case; every non-word character (Unicode
   punctuation included) and ``_`` become spaces; the articles a/an/the are dropped unless nothing
   else is left (so the answer "A" still reads as "a"); whitespace is collapsed.
4. **Yes/no** (:func:`yes_no`). "yes" or "no" when the normalised answer starts with that word;
   ``None`` otherwise, and also for a hedge between the two ("yes or no", "No/Yes").
5. **Options** (:func:`option_index`, :func:`option_letter`). An answer names an option by

   * a lone letter: "B", "b", "(B)", "[b]", "B.", "b)", "B,";
   * a marked letter followed by text: "B. Effusion", "B) Effusion", "(b) Effusion", "B: ...";
     an upper-case letter needs ")", or "." or ":" and a space, so "A nodule" and "A.I. says" are not
     option A. The text must name that same option or no option at all: "B. <text of option C>" is
     ambiguous. A hedge to another letter ("(A) or (B)", "A) and B)", "(A), (B)") is ambiguous too;
   * text equal, after normalisation, to exactly one option (an option's own leading "B." marker,
     which some data sets store, is ignored). Two options with the same text make it ambiguous.

   The letter must be within the choices. Anything else, including "A or B", "I think it is B" and
   text merely similar to an option, is unparseable (``None``): an unreadable answer is never mapped
   to the most similar option, which would hand a non-answer about 1/k accuracy.

>>> reply = "<think>maybe <answer>A</answer></think><answer> Answer: (B) </answer>"
>>> answer_text(reply), answer_body(reply), option_letter(reply, ["Pneumonia", "Effusion"])
('Answer: (B)', '(B)', 'B')
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

__all__ = [
    "answer_body",
    "answer_text",
    "normalize_text",
    "option_index",
    "option_letter",
    "yes_no",
]

# The reply's tags, found in one pass: a lazy ".*?</think>" from every "<think>" of a reply that
# never closes one rescans the rest of it each time (50,000 of them took minutes)
_TAG = re.compile(r"<(/?)(think|answer)>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_ANSWER_PREFIX = re.compile(
    r"(?:the\s+)?(?:correct\s+|final\s+)?(?:answer|option|choice)\b(?:\s+is\b)?\s*[:\-]?\s*",
    re.IGNORECASE,
)
_ARTICLES = frozenset({"a", "an", "the"})
_NON_WORD = re.compile(r"[^\w\s]|_")
# "yes / no", "yes or no": the run before a "/" holds no "/", so no two repetitions overlap and a
# long run of "/" is read in linear time (two \W* on either side of "/" backtracked quadratically)
_HEDGED_YES_NO = re.compile(r"(yes|no)\b(?:[^\w/]*/|\W*\b(?:or|and)\b)\W*(yes|no)\b", re.IGNORECASE)

_LETTER_ALONE = re.compile(r"[(\[]?([A-Za-z])[)\]]?[.:,;!]?")
# A lower-case letter followed by text must be bracketed ("a. pneumonia" could be prose), and "." or
# ":" needs a space after it ("A.I. suggests" is not option A).
_LETTER_WITH_TEXT = re.compile(r"(?:[(\[]([A-Za-z])[)\]]\s*|([A-Z])(?:\)\s*|[.:]\s+))(.+)", re.DOTALL)
# Leading marker an option may carry in the data ("B. Effusion", "(B)Effusion"); dropped only when
# it names the option's own letter.
_OWN_MARKER = re.compile(r"[(\[]?([A-Za-z])[)\].:]\s*(.+)", re.DOTALL)
# Text after a marked letter that hedges to another one: ", (B)", "/ B.", " C", "or ...", "and ...".
_LETTER_HEDGE = re.compile(r"[\s,;/&]*(?:[(\[][A-Za-z][)\]]|[A-Z](?:[.:,)\]]|\s*$))")
_CONJUNCTION = re.compile(r"[\s,;/&]*(?:or|and)\b", re.IGNORECASE)


def answer_text(response: str | None) -> str:
    """The answer part of a model reply: the last ``<answer>`` block's content, without reasoning.

    >>> answer_text("<think>opacity on the left</think><answer> Yes </answer>")
    'Yes'
    >>> answer_text("<answer>A</answer> on second thought <answer>B</answer>")
    'B'
    >>> answer_text("<answer>truncated"), answer_text("  plain reply "), answer_text(None)
    ('truncated', 'plain reply', '')
    """
    text = _without_closed_thinking(response or "")
    block, pending, last_opened = None, None, None  # pending: an "<answer>" not yet closed
    for tag in _TAG.finditer(text):  # the last complete block holding no further "<answer>"
        if tag.group(2).lower() != "answer":
            continue
        if not tag.group(1):
            pending = last_opened = tag
        elif pending is not None:
            block, pending = text[pending.end():tag.start()], None
    if block is not None:
        text = block
    elif last_opened is not None:
        text = text[last_opened.end():]
    unclosed = _THINK_OPEN.search(text)  # reasoning never closed: dropped to the end
    return (text[:unclosed.start()] + " " if unclosed else text).strip()


def _without_closed_thinking(text: str) -> str:
    """``text`` with each ``<think>`` ... first following ``</think>`` span replaced by a space."""
    pieces, kept_from, opened = [], 0, None
    for tag in _TAG.finditer(text):
        if tag.group(2).lower() != "think":
            continue
        if not tag.group(1):
            opened = tag.start() if opened is None else opened
        elif opened is not None:
            pieces += [text[kept_from:opened], " "]
            kept_from, opened = tag.end(), None
    return "".join(pieces) + text[kept_from:] if pieces else text


def answer_body(response: str | None) -> str:
    """:func:`answer_text` without one leading "Answer:"-style prefix.

    >>> answer_body("<answer>The final answer is: left lung</answer>")
    'left lung'
    >>> answer_body("Answering is hard"), answer_body("Optional surgery")
    ('Answering is hard', 'Optional surgery')
    """
    text = answer_text(response)
    prefix = _ANSWER_PREFIX.match(text)
    return text[prefix.end() :].strip() if prefix else text


def normalize_text(text: str | None) -> str:
    """Lower case, punctuation to spaces, articles dropped (unless alone), whitespace collapsed.

    >>> normalize_text("The  Left-lung nodule."), normalize_text("(A)"), normalize_text(None)
    ('left lung nodule', 'a', '')
    """
    words = _NON_WORD.sub(" ", (text or "").lower()).split()
    content = [word for word in words if word not in _ARTICLES]
    return " ".join(content or words)


def yes_no(response: str | None) -> str | None:
    """'yes' or 'no' when the answer starts with that word (after an optional "Answer:"), else None.

    >>> [yes_no(r) for r in ["Yes.", "no, there is none", "<answer>Answer: No</answer>", "maybe", ""]]
    ['yes', 'no', 'no', None, None]
    >>> yes_no("Yes or no"), yes_no("Not sure, yes"), yes_no("Yesterday")
    (None, None, None)
    """
    body = answer_body(response)
    hedge = _HEDGED_YES_NO.match(body)
    if hedge and hedge.group(1).lower() != hedge.group(2).lower():
        return None
    words = normalize_text(body).split()
    return words[0] if words and words[0] in ("yes", "no") else None


def option_index(response: str | None, choices: Sequence[str]) -> int | None:
    """Index into ``choices`` of the option the answer names unambiguously, else None.

    See the module's rules; with no ``choices`` the answer names no option.

    >>> choices = ["Pneumonia", "Edema", "Normal"]
    >>> [option_index(r, choices) for r in ["(B)", "answer: c", "the edema.", "B. Edema", "D"]]
    [1, 2, 1, 1, None]
    >>> [option_index(r, choices) for r in ["A or B", "B. Normal", "A nodule", "edemas", "(A) or (B)"]]
    [None, None, None, None, None]
    """
    letter = option_letter(response, choices) if choices else None  # no choices: no option to name
    return None if letter is None else ord(letter) - ord("A")


def option_letter(response: str | None, choices: Sequence[str] = ()) -> str | None:
    """The option letter ("A".."Z") the answer names, or None when it names none or several.

    Without ``choices`` any letter A-Z is accepted and option text cannot be matched.

    >>> choices = ["Pneumonia", "Effusion", "Normal"]
    >>> option_letter("The answer is effusion.", choices), option_letter("b)", choices)
    ('B', 'B')
    >>> option_letter("A, B", choices), option_letter("I think it is B", choices), option_letter("Q")
    (None, None, 'Q')
    """
    letters = string.ascii_uppercase[: len(choices)] if choices else string.ascii_uppercase
    body = answer_body(response)
    alone = _LETTER_ALONE.fullmatch(body)
    if alone:
        letter = alone.group(1).upper()
        return letter if letter in letters else None
    with_text = _LETTER_WITH_TEXT.fullmatch(body)
    if with_text:
        letter = (with_text.group(1) or with_text.group(2)).upper()
        rest = with_text.group(3)
        if letter not in letters or _LETTER_HEDGE.match(rest) or _CONJUNCTION.match(rest):
            return None
        return letter if _option_by_text(rest, choices) in (None, letter) else None
    return _option_by_text(body, choices)


def _option_by_text(text: str, choices: Sequence[str]) -> str | None:
    """The letter of the one choice whose normalised text equals ``text``'s, else None."""
    wanted = normalize_text(text)
    if not wanted:
        return None
    hits = [
        letter
        for letter, choice in zip(string.ascii_uppercase, choices)
        if normalize_text(_without_own_marker(choice, letter)) == wanted
    ]
    return hits[0] if len(hits) == 1 else None


def _without_own_marker(choice: str, letter: str) -> str:
    """Option text without a leading "B." / "(B)" naming its own letter (some data sets store it)."""
    marked = _OWN_MARKER.fullmatch(choice.strip())
    if marked and marked.group(1).upper() == letter:
        return marked.group(2)
    return choice
