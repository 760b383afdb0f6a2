"""Answer-accuracy metrics, the absence of the MedEvalKit defects, and the bootstrap interval."""

import doctest

import numpy as np
import pytest

from medmo_pipeline.evaluation import metrics
from medmo_pipeline.evaluation.metrics import (
    answers,
    bootstrap_ci,
    closed_accuracy,
    grounding,
    multiple_choice_accuracy,
    open_accuracy,
    option_index,
    plugins,
    result,
    text,
    yes_no,
)


@pytest.mark.parametrize("module", [answers, grounding, plugins, result, text], ids=lambda m: m.__name__)
def test_docstring_examples_hold(module):
    outcome = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert outcome.attempted > 0
    assert outcome.failed == 0


def test_every_public_metric_documents_an_example():
    for name in metrics.__all__:
        obj = getattr(metrics, name)
        if callable(obj) and not isinstance(obj, type):
            assert obj.__doc__ and ">>>" in obj.__doc__, name


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("Yes.", "yes"),
        ("yes, there is", "yes"),
        ("No", "no"),
        ("NO!", "no"),
        ("Answer: yes", "yes"),
        ("<think>looks fine</think><answer>No</answer>", "no"),
        ("There is no fracture", None),
        ("Yesterday", None),
        ("Yes or no", None),  # a hedge between the two is unparseable
        ("<answer>yes</answer> <answer>No</answer>", "no"),  # the last answer block counts
        ("", None),
        (None, None),
    ],
)
def test_yes_no_normalisation(response, expected):
    assert yes_no(response) == expected


def test_closed_accuracy_counts_unparseable_as_wrong():
    outcome = closed_accuracy(["Yes.", "No", "maybe", "yes"], ["yes", "no", "no", "no"])
    assert outcome.value == pytest.approx(0.5)
    assert (outcome.n, outcome.unparseable) == (4, 1)
    assert outcome.per_sample.tolist() == [1.0, 1.0, 0.0, 0.0]


def test_closed_accuracy_rejects_non_yes_no_reference():
    with pytest.raises(ValueError, match="neither yes nor no"):
        closed_accuracy(["yes"], ["left lung"])


def test_open_accuracy_is_divided_once_by_the_total():
    # MedEvalKit divided the summed score by the total twice (0.5 / 4 = 0.125 here).
    outcome = open_accuracy(
        ["left lung", "Liver.", "heart", "spleen"], ["left lung", "liver", "lung", "kidney"]
    )
    assert outcome.exact_match.value == pytest.approx(0.5)
    assert outcome.exact_match.n == 4


def test_open_precision_and_recall_keep_their_names():
    # 1 shared token: precision 1/4 (of the prediction), recall 1/1 (of the reference).
    outcome = open_accuracy(["left lower lobe opacity"], ["opacity"])
    assert outcome.token_precision.value == pytest.approx(0.25)
    assert outcome.token_recall.value == pytest.approx(1.0)
    assert outcome.token_f1.value == pytest.approx(0.4)
    assert outcome.per_sample[0] == answers.TokenOverlap(precision=0.25, recall=1.0, f1=pytest.approx(0.4))
    assert [r.name for r in outcome.results()] == [
        "open_exact_match",
        "open_token_precision",
        "open_token_recall",
        "open_token_f1",
    ]


def test_token_overlap_counts_repeated_tokens_once_each():
    overlap = answers.token_overlap("lung lung lung", "lung")
    assert (overlap.precision, overlap.recall) == (pytest.approx(1 / 3), 1.0)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("B", 1),
        ("(B)", 1),
        ("B.", 1),
        ("B) Edema", 1),
        ("B. Edema", 1),
        ("Answer: B", 1),
        ("The answer is (c)", 2),
        ("b", 1),
        ("Edema", 1),
        ("the edema.", 1),
        ("A lesion is visible", None),  # the article is not option A
        ("D", None),  # out of range for three options
        ("Edemas", None),  # similar is not equal
        ("I think it is B", None),
        # ambiguous: never the first letter seen, never the nearest option
        ("B. Normal", None),  # the letter and the text name different options
        ("A, B", None),
        ("(A) or (B)", None),
        ("b. edema", None),  # a lower-case letter with text needs brackets
        ("", None),
    ],
)
def test_option_index(response, expected):
    assert option_index(response, ["Pneumonia", "Edema", "Normal"]) == expected


def test_open_answers_are_read_without_the_answer_prefix_and_reasoning():
    outcome = open_accuracy(["<think>liver?</think><answer>Final answer: the spleen</answer>"], ["spleen"])
    assert outcome.exact_match.value == 1.0
    assert outcome.token_precision.value == 1.0


def test_option_text_starting_with_a_prefix_word_is_not_truncated():
    assert option_index("Optional surgery", ["Observation", "Optional surgery"]) == 1
    assert yes_no("Answering that: no") is None


def test_unparseable_multiple_choice_answer_scores_zero_not_one_in_k():
    # MedEvalKit mapped any unreadable answer to the most similar option (~1/k expected accuracy).
    rng = np.random.default_rng(7)
    choices = [["Pneumonia", "Edema", "Normal", "Effusion"]] * 100
    gold = [str(letter) for letter in rng.choice(list("ABCD"), size=100)]
    outcome = multiple_choice_accuracy(["I cannot tell from this image."] * 100, choices, gold)
    assert outcome.value == 0.0
    assert (outcome.n, outcome.unparseable) == (100, 100)


def test_answer_close_to_the_gold_option_is_unparseable_not_the_nearest_option():
    # MedEvalKit's fallback picked the most similar option, so these near misses would all score 1.
    choices = [["Pneumonia", "Edema", "Normal", "Effusion"]] * 3
    outcome = multiple_choice_accuracy(["Edemas", "pneumonic", "effusions present"], choices, ["B", "A", "D"])
    assert (outcome.value, outcome.n, outcome.unparseable) == (0.0, 3, 3)


def test_multiple_choice_mixed_answers():
    choices = [["CT", "MRI", "X-ray"]] * 4
    outcome = multiple_choice_accuracy(
        ["(A)", "mri", "Answer: C", "none of these"], choices, ["A", "B", "B", "C"]
    )
    assert outcome.value == pytest.approx(0.5)
    assert outcome.unparseable == 1


def test_multiple_choice_rejects_answer_outside_the_options():
    with pytest.raises(ValueError, match="option letter"):
        multiple_choice_accuracy(["A"], [["CT", "MRI"]], ["C"])


def test_empty_responses_are_wrong_and_stay_in_the_denominator():
    # MedEvalKit skipped empty responses but still divided by the full count.
    closed = closed_accuracy(["", "yes", "  ", "no"], ["yes", "yes", "no", "no"])
    assert (closed.value, closed.n, closed.empty, closed.unparseable) == (0.5, 4, 2, 2)
    opened = open_accuracy(["", "liver"], ["liver", "liver"])
    assert (opened.exact_match.value, opened.token_f1.value, opened.exact_match.n) == (0.5, 0.5, 2)
    assert opened.token_f1.empty == 1
    multiple = multiple_choice_accuracy([None, "A"], [["CT", "MRI"]] * 2, ["A", "A"])
    assert (multiple.value, multiple.n, multiple.empty) == (0.5, 2, 1)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        closed_accuracy(["yes"], ["yes", "no"])


def test_bootstrap_is_deterministic_for_a_seed():
    values = np.random.default_rng(1).random(120)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)


def test_bootstrap_interval_contains_the_mean_and_narrows_with_more_samples():
    rng = np.random.default_rng(2)
    small, large = rng.random(40) < 0.6, rng.random(4000) < 0.6
    low_small, high_small = bootstrap_ci(small)
    low_large, high_large = bootstrap_ci(large)
    assert low_small <= small.mean() <= high_small
    assert low_large <= large.mean() <= high_large
    assert high_large - low_large < (high_small - low_small) / 3


def test_bootstrap_wider_for_higher_confidence():
    values = np.random.default_rng(5).random(80)
    low90, high90 = bootstrap_ci(values, confidence=0.90)
    low99, high99 = bootstrap_ci(values, confidence=0.99)
    assert low99 < low90 and high90 < high99


def test_bootstrap_degenerate_inputs():
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    assert all(np.isnan(bootstrap_ci([])))


def test_metric_result_carries_interval_and_converts_to_float():
    outcome = closed_accuracy(["yes", "no"] * 30, ["yes"] * 60)
    assert outcome.ci_low <= outcome.value <= outcome.ci_high
    assert 0.0 < outcome.ci_low < outcome.ci_high < 1.0
    assert float(outcome) == outcome.value == 0.5
