"""The shared answer reader, and agreement of the label-accuracy reward with the evaluation metrics."""

from __future__ import annotations

import ast
import doctest
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import medmo_pipeline.answers
from medmo_pipeline import rewards
from medmo_pipeline.answers import (
    answer_body,
    answer_text,
    normalize_text,
    option_index,
    option_letter,
    yes_no,
)
from medmo_pipeline.evaluation import metrics
from medmo_pipeline.evaluation.metrics import closed_accuracy, multiple_choice_accuracy, open_accuracy
from medmo_pipeline.rewards.labels import label_match

CHOICES = ["Pneumonia", "Pleural effusion", "Normal study", "Cardiomegaly"]


def test_docstring_examples_hold():
    outcome = doctest.testmod(medmo_pipeline.answers)
    assert outcome.attempted > 0 and outcome.failed == 0


def test_module_depends_on_neither_evaluation_nor_rewards():
    tree = ast.parse(Path(medmo_pipeline.answers.__file__).read_text())
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    ]
    assert not [name for name in imported if name and name.startswith("medmo_pipeline")]


def test_both_sides_use_the_same_functions():
    assert metrics.answer_text is rewards.extract_answer is answer_text
    assert metrics.normalize_text is rewards.normalize_answer is normalize_text
    assert metrics.yes_no is rewards.closed_answer is yes_no
    assert rewards.option_letter is option_letter and metrics.option_index is option_index


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("<think>B?</think><answer> C </answer>", "C"),
        ("<answer>A</answer> then <answer>B</answer>", "B"),  # the last complete block
        ("<answer>A</answer> then <answer>B", "A"),  # a truncated block loses to a complete one
        ("<think>x</think><answer>truncated", "truncated"),
        ("<think>draft <answer>A</answer></think><answer>B</answer>", "B"),  # drafts do not count
        ("<think>draft <answer>A</answer></think> B", "B"),
        ("<think>never closed <answer>A</answer>", "A"),
        ("<answer>A <think>hmm</answer>", "A"),
        ("<answer>x <answer>y</answer>", "y"),
        ("<ANSWER>yes</Answer>", "yes"),
        ("<think>reasoning that never ends", ""),
        ("</answer> stray close", "</answer> stray close"),
        ("  plain  ", "plain"),
        ("", ""),
        (None, ""),
    ],
)
def test_answer_text(reply, expected):
    assert answer_text(reply) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Answer: B", "B"),
        ("answer - yes", "yes"),
        ("The final answer is: left lung", "left lung"),
        ("The correct answer is (C)", "(C)"),
        ("Option B", "B"),
        ("Choice: B", "B"),
        ("Answering is hard", "Answering is hard"),
        ("Optional surgery", "Optional surgery"),
        ("Answer: Answer: B", "Answer: B"),  # one prefix only
    ],
)
def test_answer_body(reply, expected):
    assert answer_body(reply) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  The LEFT-lung, nodule!! ", "left lung nodule"),
        ("left\u2010lung \u201cnodule\u201d", "left lung nodule"),  # Unicode hyphen and quotes
        ("snake_case", "snake case"),
        ("An   apple", "apple"),
        ("A", "a"),
        ("the", "the"),
        ("", ""),
    ],
)
def test_normalize_text(text, expected):
    assert normalize_text(text) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Yes", "yes"),
        ("no, there is no fracture", "no"),
        ("Yes, no doubt", "yes"),
        ("<think>yes?</think><answer>No.</answer>", "no"),
        ("The answer is yes", "yes"),
        ("Yes or no", None),
        ("no/yes", None),
        ("Yes and no", None),
        ("Not sure, yes", None),
        ("Yesterday", None),
        ("Answering that: no", None),
        ("", None),
    ],
)
def test_yes_no(reply, expected):
    assert yes_no(reply) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("B", "B"),
        ("b", "B"),
        ("(b)", "B"),
        ("[B]", "B"),
        ("B.", "B"),
        ("B,", "B"),
        ("b)", "B"),
        ("(B).", "B"),
        ("Answer: B", "B"),
        ("The correct answer is (B).", "B"),
        ("<answer>Option B</answer>", "B"),
        ("B. Pleural effusion", "B"),
        ("B) Pleural effusion", "B"),
        ("(b) pleural effusion", "B"),
        ("[B] Pleural effusion", "B"),
        ("B. The fluid collection at the base", "B"),  # text that names no option
        ("B. A small effusion", "B"),  # an article after the marker is not a second letter
        ("pleural effusion", "B"),
        ("The Pleural-Effusion.", "B"),
        ("A nodule", None),  # the article is not option A
        ("A.I. suggests pneumonia", None),
        ("E", None),  # out of range
        ("A or B", None),
        ("A, B", None),
        ("A/B", None),
        ("(A) or (B)", None),
        ("(A), (B)", None),
        ("A) and B)", None),
        ("B. C", None),
        ("B. Cardiomegaly", None),  # letter and text disagree
        ("b. pleural effusion", None),  # a lower-case letter with text needs brackets
        ("effusion", None),  # only similar to an option
        ("I think it is B", None),
        ("", None),
        (None, None),
    ],
)
def test_option_letter(reply, expected):
    assert option_letter(reply, CHOICES) == expected
    assert option_index(reply, CHOICES) == (None if expected is None else "ABCD".index(expected))


def test_option_letter_without_choices_accepts_any_letter_but_no_text():
    assert option_letter("(Q)") == "Q"
    assert option_letter("Pneumonia") is None
    assert option_index("A", []) is None


def test_options_that_carry_their_own_letter():
    choices = ["A. Pneumonia", "(B)Effusion", "C: Normal"]
    assert [option_letter(r, choices) for r in ["Effusion", "normal", "A", "a. pneumonia"]] == [
        "B",
        "C",
        "A",
        "A",
    ]


def test_duplicate_option_texts_are_ambiguous():
    assert option_letter("Normal", ["Normal", "normal.", "Abnormal"]) is None
    assert option_letter("C", ["Normal", "normal.", "Abnormal"]) == "C"


# (reply, gold answer, choices): label_match and the matching evaluation metric must agree.
AGREEMENT_CASES = [
    ("<answer>Yes.</answer>", "yes", ()),
    ("<think>no?</think><answer>yes</answer>", "no", ()),
    ("<answer>yes or no</answer>", "yes", ()),
    ("Final answer: No", "no", ()),
    ("<answer>A</answer><answer>B</answer>", "B", CHOICES),
    ("<answer>(B)</answer>", "B", CHOICES),
    ("<answer>B. Cardiomegaly</answer>", "B", CHOICES),
    ("<answer>A or B</answer>", "A", CHOICES),
    ("<answer>A nodule</answer>", "A", CHOICES),
    ("<answer>pleural effusion</answer>", "B", CHOICES),
    ("<answer>effusion</answer>", "B", CHOICES),
    ("<answer>The answer is cardiomegaly</answer>", "D", CHOICES),
    ("<answer>Final answer: the liver</answer>", "liver", ()),
    ("<answer>Answer island</answer>", "island", ()),
    ("<think>liver</think><answer>spleen</answer>", "liver", ()),
    ("<answer>left lung.</answer>", "Left lung", ()),
]


@pytest.mark.parametrize(("reply", "gold", "choices"), AGREEMENT_CASES)
def test_reward_and_metrics_agree(reply, gold, choices):
    rewarded = label_match(reply, gold, choices)
    if gold in ("yes", "no"):
        scored = closed_accuracy([reply], [gold]).value
    elif choices:
        scored = multiple_choice_accuracy([reply], [choices], [gold]).value
    else:
        scored = open_accuracy([reply], [gold]).exact_match.value
    assert float(rewarded) == scored


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["A", "B", "C", "D"]))
def test_reward_and_multiple_choice_metric_agree_on_any_text(reply, gold):
    rewarded = label_match(reply, gold, CHOICES)
    assert float(rewarded) == multiple_choice_accuracy([reply], [CHOICES], [gold]).value


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=120),
        st.builds(
            "".join,
            st.lists(
                st.sampled_from(
                    ["<answer>", "</answer>", "<think>", "</think>", "yes", "no", " or ", "B", ". ", "(", ")"]
                ),
                max_size=12,
            ),
        ),
    ),
    st.sampled_from(["yes", "no"]),
)
def test_reward_and_closed_metric_agree_on_any_text(reply, gold):
    assert float(label_match(reply, gold)) == closed_accuracy([reply], [gold]).value
    assert yes_no(reply) in (None, "yes", "no")
    assert option_letter(reply, CHOICES) in (None, "A", "B", "C", "D")


def _regex_answer_text(response: str) -> str:
    """The former implementation, by regular expressions: the same text, in time quadratic in a
    reply of unclosed tags (the reference for the one-pass reading)."""
    import re

    flags = re.IGNORECASE | re.DOTALL
    text = re.sub(r"<think>.*?</think>", " ", response, flags=flags)
    blocks = re.findall(r"<answer>((?:(?!<answer>).)*?)</answer>", text, flags=flags)
    if blocks:
        text = blocks[-1]
    else:
        opened = list(re.finditer(r"<answer>", text, flags=re.IGNORECASE))
        if opened:
            text = text[opened[-1].end():]
    return re.sub(r"<think>.*", " ", text, flags=flags).strip()


_TAG_SOUP = st.lists(st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "<THINK>", "</Answer>",
                                      "yes", " no ", "B", "\n", "<", ">", "answer", "/"]), max_size=14).map("".join)


@settings(max_examples=600, deadline=None)
@given(_TAG_SOUP)
def test_answer_text_reads_the_tags_as_the_regular_expressions_did(reply):
    assert answer_text(reply) == _regex_answer_text(reply)


def test_a_reply_of_unclosed_tags_is_read_in_one_pass():
    """50,000 unclosed <think> and <answer> tags took the regular expressions minutes; read in one
    pass, well within a CPU-time limit of 2 s (tens of milliseconds)."""
    from guards import cpu_seconds_limit

    with cpu_seconds_limit(2.0):
        assert answer_body("<think>" * 50_000 + "<answer>" * 50_000 + "yes") == "yes"
        assert answer_body("<answer>" * 50_000 + "no</answer>" + "<think>" * 50_000) == "no"
