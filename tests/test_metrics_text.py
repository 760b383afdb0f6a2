"""ROUGE-L and CIDEr-D against the reference implementations on generated sentences."""

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from rouge_score import rouge_scorer

from medmo_pipeline.evaluation.metrics import cider, cider_per_sample, rouge_l, rouge_l_score, rouge_tokens

VOCABULARY = [
    "no",
    "acute",
    "cardiopulmonary",
    "process",
    "the",
    "heart",
    "size",
    "is",
    "normal",
    "mild",
    "left",
    "right",
    "lower",
    "lobe",
    "opacity",
    "pleural",
    "effusion",
    "pneumothorax",
    "lungs",
    "are",
    "clear",
    "stable",
    "small",
    "large",
    "atelectasis",
]


def sentence(rng: random.Random, min_words: int = 1, max_words: int = 18) -> str:
    return " ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(min_words, max_words)))


def noisy(rng: random.Random, text: str) -> str:
    """Raw-looking text: random capitals and punctuation that tokenisation must remove."""
    words = [w.upper() if rng.random() < 0.2 else w for w in text.split()]
    return " ".join(w + rng.choice(["", "", ",", ".", ";", "-"]) for w in words)


@pytest.fixture(scope="module")
def corpus():
    rng = random.Random(42)
    predictions = [sentence(rng) for _ in range(150)]
    references = [[sentence(rng) for _ in range(rng.randint(1, 5))] for _ in range(150)]
    # Some predictions copy a reference with edits, so scores span the range, and one is empty.
    for i in range(0, 150, 3):
        predictions[i] = references[i][0] + " " + rng.choice(VOCABULARY)
    predictions[5] = ""
    return predictions, references


def test_cider_equals_pycocoevalcap(corpus):
    predictions, references = corpus
    expected_score, expected_per_sample = Cider().compute_score(
        {i: refs for i, refs in enumerate(references)}, {i: [p] for i, p in enumerate(predictions)}
    )
    outcome = cider(predictions, references)
    assert outcome.value == pytest.approx(expected_score, abs=1e-9)
    np.testing.assert_allclose(outcome.per_sample, expected_per_sample, rtol=0, atol=1e-9)
    assert outcome.n == 150 and outcome.empty == 1
    assert outcome.value > 0.5  # the copied predictions make it far from zero


def test_cider_document_frequency_is_over_the_evaluated_corpus(corpus):
    predictions, references = corpus
    # The same pair scores differently in a different corpus, because the IDF changes.
    alone = cider_per_sample(predictions[:10], references[:10])
    whole = cider_per_sample(predictions, references)
    assert not np.allclose(alone, whole[:10])


def test_cider_needs_references():
    with pytest.raises(ValueError, match="reference"):
        cider(["a b"], [[]])


def test_rouge_l_f1_equals_rouge_score_package(corpus):
    predictions, references = corpus
    rng = random.Random(3)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    for prediction, refs in zip(predictions, references):
        raw_prediction, raw_reference = noisy(rng, prediction), noisy(rng, refs[0])
        expected = scorer.score(raw_reference, raw_prediction)["rougeL"].fmeasure
        assert rouge_l(raw_prediction, raw_reference) == pytest.approx(expected, abs=1e-12)


def test_rouge_l_beta_1_2_equals_pycocoevalcap(corpus):
    predictions, references = corpus
    coco = Rouge()
    nonzero = 0
    for prediction, refs in zip(predictions, references):
        if not prediction:
            continue  # pycocoevalcap counts "" as one empty token; both give 0 anyway
        expected = coco.calc_score([prediction], [refs[0]])
        got = rouge_l(prediction, refs[0], beta=1.2)
        assert got == pytest.approx(expected, abs=1e-12)
        nonzero += got > 0
    assert nonzero > 100


def test_beta_changes_the_score_when_precision_differs_from_recall():
    # LCS 2; precision 2/2, recall 2/6: F1 = 0.5, F(beta=1.2) weighs recall more.
    prediction, reference = "heart normal", "the heart size is normal today"
    assert rouge_l(prediction, reference) == pytest.approx(0.5)
    assert rouge_l(prediction, reference, beta=1.2) < 0.5


@settings(max_examples=150, deadline=None)
@given(
    st.text(alphabet="ab c.D,", max_size=30),
    st.text(alphabet="ab c.D,", max_size=30),
)
def test_rouge_l_f1_matches_rouge_score_on_arbitrary_text(prediction, reference):
    expected = rouge_scorer.RougeScorer(["rougeL"]).score(reference, prediction)["rougeL"].fmeasure
    assert rouge_l(prediction, reference) == pytest.approx(expected, abs=1e-12)


def test_rouge_l_score_averages_over_all_samples():
    outcome = rouge_l_score(["lungs are clear", "", "x"], ["lungs are clear", "no effusion", "y"])
    assert (outcome.value, outcome.n, outcome.empty) == (pytest.approx(1 / 3), 3, 1)
    assert rouge_l_score(["a"], ["a"], beta=1.2).name == "rouge_l_beta1.2"


def test_rouge_tokens_match_the_rouge_score_tokenizer():
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    raw = "No acute cardio-pulmonary process; HEART size 12cm (stable)."
    assert rouge_tokens(raw) == scorer._tokenizer.tokenize(raw)


def test_cider_interval_resamples_samples_and_recomputes_the_corpus_score(corpus):
    predictions, references = corpus[0][:40], corpus[1][:40]
    outcome = cider(predictions, references, n_resamples=60, seed=7)
    # The same draws, each scored from scratch as a corpus of its own (pycocoevalcap's IDF of that corpus).
    rng = np.random.default_rng(7)
    counts = rng.multinomial(40, np.full(40, 1 / 40), size=60)
    values = []
    for drawn in counts:
        index = np.repeat(np.arange(40), drawn)
        values.append(Cider().compute_score({k: references[i] for k, i in enumerate(index)},
                                            {k: [predictions[i]] for k, i in enumerate(index)})[0])
    assert (outcome.ci_low, outcome.ci_high) == pytest.approx(tuple(np.percentile(values, [2.5, 97.5])), abs=1e-9)
    assert outcome.ci_low < outcome.value < outcome.ci_high


def test_cider_interval_edge_cases():
    one = cider(["no acute disease"], [["no acute disease"]])
    assert (one.value, one.ci_low, one.ci_high, one.n) == (0.0, 0.0, 0.0, 1)  # log(1) = 0: every IDF is 0
    assert np.isnan(cider([], []).ci_low)
    same = cider(["a b", "c d"], [["a b"], ["c d"]], n_resamples=100)
    assert same.ci_low <= same.value <= same.ci_high


def test_scoring_reports_corpus_cider_as_pycocoevalcap_on_rouge_tokens():
    from medmo_pipeline.evaluation.scoring import score_rows

    rng = random.Random(5)
    references = [noisy(rng, sentence(rng, 4)) for _ in range(30)]
    predictions = [noisy(rng, r) if i % 3 == 0 else noisy(rng, sentence(rng)) for i, r in enumerate(references)]
    rows = [{"id": f"r{i}", "source": "b", "task": "report", "answer": "", "choices": [], "boxes": [], "images": [],
             "messages": [{"role": "user", "content": "Report?"}, {"role": "assistant", "content": ref}]}
            for i, ref in enumerate(references)]
    results, samples = score_rows(rows, predictions)
    by_name = {r.name: r for r in results}
    assert list(by_name) == ["report_rouge_l", "report_cider"]
    tokens = lambda text: " ".join(rouge_tokens(text))
    expected, per_sample = Cider().compute_score({i: [tokens(r)] for i, r in enumerate(references)},
                                                 {i: [tokens(p)] for i, p in enumerate(predictions)})
    assert by_name["report_cider"].value == pytest.approx(expected, abs=1e-9) and expected > 1.0
    np.testing.assert_allclose([s["cider"] for s in samples], per_sample, atol=1e-9)
    assert by_name["report_cider"].ci_low <= expected <= by_name["report_cider"].ci_high
    assert [s["score"] for s in samples] == pytest.approx(by_name["report_rouge_l"].per_sample.tolist())


def _lcs_by_rows(first: list[str], second: list[str]) -> int:
    """The row-by-row dynamic programme: the reference the bit-parallel LCS is held to."""
    previous = [0] * (len(second) + 1)
    for token in first:
        current = [0]
        for j, other in enumerate(second, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def test_the_bit_parallel_lcs_is_the_dynamic_programmes_on_random_sequences():
    from medmo_pipeline.evaluation.metrics.text import _lcs_length

    rng = random.Random(0)
    for _ in range(5000):  # small alphabets make long common subsequences; lengths past 64 bits too
        first = [rng.choice("abcde") for _ in range(rng.randrange(0, 90))]
        second = [rng.choice("abcdef") for _ in range(rng.randrange(0, 90))]
        assert _lcs_length(first, second) == _lcs_length(second, first) == _lcs_by_rows(first, second)


def test_a_huge_reference_is_scored_within_a_cpu_second():
    """A benchmark row whose reference is 200,000 tokens against a 256-token reply: the pairwise
    programme took about 7 CPU seconds a row; a limit, not a timing."""
    from guards import cpu_seconds_limit

    rng = random.Random(1)
    reference = " ".join(rng.choice(VOCABULARY) for _ in range(200_000))
    reply = " ".join(rng.choice(VOCABULARY) for _ in range(256))
    with cpu_seconds_limit(1.0):
        score = rouge_l(reply, reference)
    expected = rouge_scorer.RougeScorer(["rougeL"]).score(" ".join(reference.split()[:2000]), reply)["rougeL"]
    assert 0 < score < expected.fmeasure  # recall falls with the reference's length; the score is real


def test_cider_reads_a_text_up_to_its_word_bound():
    """A 200,000-word reference made the bootstrap's IDF block as wide as its n-grams (minutes a
    row): past ``MAX_CIDER_WORDS`` a text is read as its first words, so it scores as they do."""
    from medmo_pipeline.evaluation.metrics.text import MAX_CIDER_WORDS, cider

    words = [f"w{index % 5000}" for index in range(200_000)]
    long_reference, cut = " ".join(words), " ".join(words[:MAX_CIDER_WORDS])
    predictions, others = ["w1 w2 w3 w4", "no acute disease"], [["no acute disease"]]
    assert cider(predictions, [[long_reference], *others], n_resamples=50).value == \
        cider(predictions, [[cut], *others], n_resamples=50).value
