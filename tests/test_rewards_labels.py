"""Answer extraction and matching, tag counting, and the soft overlong check values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trl.rewards import get_soft_overlong_punishment

from medmo_pipeline.rewards.labels import (
    closed_answer,
    extract_answer,
    label_match,
    normalize_answer,
    option_letter,
    tag_count_score,
)

CHOICES = ["Pneumonia", "Pleural effusion", "Normal study", "Cardiomegaly"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  The LEFT-lung, nodule!! ", "left lung nodule"),
        ("An   apple", "apple"),
        ("A", "a"),  # a lone article is kept, so option "A" does not vanish
        ("", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>B?</think><answer> C </answer>", "C"),
        ("<answer>A</answer> then <answer>B</answer>", "B"),
        ("<think>x</think><answer>truncated", "truncated"),
        ("  no tags  ", "no tags"),
        ("</answer> stray close", "</answer> stray close"),
        ("<think>draft <answer>A</answer></think><answer>B</answer>", "B"),  # reasoning is dropped
        ("<answer>B <think>hmm</think></answer>", "B"),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes", "yes"),
        ("yes.", "yes"),
        ("No, there is no fracture.", "no"),
        ("Answer: NO", "no"),
        ("The answer is yes", "yes"),
        ("Maybe", None),
        ("Not sure, yes", None),
        ("yes/no", None),
        ("", None),
    ],
)
def test_closed_answer(text, expected):
    assert closed_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("b)", "B"),
        ("Answer: B", "B"),
        ("The answer is (B).", "B"),
        ("B. Pleural effusion", "B"),
        ("pleural effusion", "B"),
        ("The answer is: Cardiomegaly.", "D"),
        ("The correct answer is B", "B"),
        ("Option (b)", "B"),
        ("<think>A?</think><answer>B</answer>", "B"),
        # unparseable or ambiguous: never guess the nearest option
        ("E", None),  # out of range for four choices
        ("A or B", None),
        ("A, B", None),
        ("(A) or (B)", None),
        ("A) and B)", None),
        ("B. Cardiomegaly", None),  # letter and text disagree
        ("effusion", None),  # only similar to an option
        ("A nodule is seen", None),  # the article "A" is not a letter
        ("", None),
    ],
)
def test_option_letter(text, expected):
    assert option_letter(text, CHOICES) == expected


def test_option_letter_with_choices_that_carry_their_letter():
    choices = ["A. Pneumonia", "B. Effusion"]
    assert option_letter("Effusion", choices) == "B"
    assert option_letter("a. pneumonia", choices) == "A"


def test_option_letter_duplicate_option_texts_are_ambiguous():
    assert option_letter("Normal", ["Normal", "normal.", "Abnormal"]) is None


@pytest.mark.parametrize(
    ("prediction", "answer", "choices", "expected"),
    [
        ("<answer>Yes.</answer>", "yes", (), True),
        ("<answer>no</answer>", "Yes", (), False),
        ("<answer>I cannot tell</answer>", "no", (), False),
        ("<answer>(B)</answer>", "Pleural effusion", CHOICES, True),
        ("<answer>pleural effusion</answer>", "B", CHOICES, True),
        ("<answer>C</answer>", "B", CHOICES, False),
        ("<answer>no idea</answer>", "A", CHOICES, False),
        ("<answer>The Liver.</answer>", "liver", (), True),
        ("<answer>kidney</answer>", "liver", (), False),
        ("<answer>(a)</answer>", "A", (), True),  # letter gold without choices: normalised text
        ("<answer></answer>", "", (), False),  # empty gold never matches
        ("<answer>Answered</answer>", "ed", (), False),  # "answer" prefix only as a whole word
        ("<answer>Answer island</answer>", "island", (), True),
        ("Final answer: the liver", "Liver", (), True),
    ],
)
def test_label_match(prediction, answer, choices, expected):
    assert label_match(prediction, answer, choices) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>a</think><answer>b</answer>", 1.0),
        ("<think>a</think>", 0.5),
        ("<think><think>a</think><answer>b</answer>", 0.75),  # duplicated tag earns nothing
        ("plain", 0.0),
    ],
)
def test_tag_count_score(text, expected):
    assert tag_count_score(text) == expected


def test_tag_count_score_custom_tags_and_empty_tags():
    assert tag_count_score("<box>x</box>", tags=("<box>", "</box>")) == 1.0
    with pytest.raises(ValueError):
        tag_count_score("x", tags=())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_label_helpers_never_raise(text):
    assert 0.0 <= tag_count_score(text) <= 1.0
    assert closed_answer(text) in (None, "yes", "no")
    assert option_letter(text, CHOICES) in (None, "A", "B", "C", "D")
    assert isinstance(label_match(text, "B", CHOICES), bool)


def test_soft_overlong_check_values_from_the_recipe():
    # docs/paper_recipe.md: L_max 1024, L_c 256 -> 700 gives 0, 900 gives (768 - 900) / 256, 1024 gives -1.
    punish = get_soft_overlong_punishment(max_completion_len=1024, soft_punish_cache=256)
    assert punish([[0] * 700, [0] * 900, [0] * 1024, [0] * 1025]) == [0.0, -0.515625, -1.0, -1.0]
