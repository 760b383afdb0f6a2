"""Gold labels benchmark files keep inside text: options in the question (MMMU-Med, MedXpertQA-MM),
boxes in the reply (MedSG); and the scoring of VQA rows with choices as multiple choice."""

from __future__ import annotations

import doctest
import json

import pytest
from fixtures_formats import png_bytes, write_file

from medmo_pipeline.data.benchmarks import gold
from medmo_pipeline.data.benchmarks.gold import UnreadableGold, first_exchange, question_choices, reply_boxes
from medmo_pipeline.data.benchmarks.loading import load_benchmark
from medmo_pipeline.data.benchmarks.registry import load_registry
from medmo_pipeline.evaluation.scoring import question_kind, score_rows

MMMU_SUBSETS = [loader.options["file"] for loader in load_registry().get("mmmu_med").loaders]


def test_docstring_examples_hold():
    outcome = doctest.testmod(gold)
    assert outcome.attempted > 0 and outcome.failed == 0


# ---- options in the question ----------------------------------------------------------------------

@pytest.mark.parametrize(("question", "expected"), [
    # MMMU-Med as the registry's export writes it: options appended as "A. ..." lines
    (("<image 1> A 58-year-old man has chest pain radiating to the jaw. Which drug should be given first?\n"
     "A. Aspirin\nB. Heparin\nC. Warfarin\nD. Alteplase"), ["Aspirin", "Heparin", "Warfarin", "Alteplase"]),
    ("What is the dose per kilogram?\nA) 5 mg\nB) 10 mg (max 1 g)\nC) 20 mg", ["5 mg", "10 mg (max 1 g)", "20 mg"]),
    ("Which structure is labelled?\n(A) Aorta\n(B) Pulmonary trunk", ["Aorta", "Pulmonary trunk"]),
    # MedXpertQA-MM: one inline list after "Answer Choices:"
    (("A 34-year-old woman presents with fever and painless cervical lymphadenopathy. Biopsy images are "
     "shown. What is the most likely diagnosis?\nAnswer Choices: (A) Hodgkin lymphoma (B) Sarcoidosis "
     "(C) Tuberculous lymphadenitis (D) Castleman disease (E) Metastatic carcinoma"),
     ["Hodgkin lymphoma", "Sarcoidosis", "Tuberculous lymphadenitis", "Castleman disease", "Metastatic carcinoma"]),
    ("Which finding explains the image?\nAnswer Choices: (A) Raised interleukin-2 (IL-2) (B) Low ferritin",
     ["Raised interleukin-2 (IL-2)", "Low ferritin"]),
    # no options: these stay open questions
    ("What abnormality is seen in the left lower lobe?", []),
    ("<image 1> How many lesions are visible? Give a number.", []),
    ("Panel (A) shows the biopsy and panel (B) the CT. What is the diagnosis?", []),
    ("Vitamin A. deficiency causes which eye finding?", []),
    ("Findings:\nA. a mass\nB. an effusion\nWhich finding needs a biopsy?", []),  # the list is not at the end
    ("Which is it?\nA. Aspirin", []),  # one option is no choice
    ("Which is it?\nA. Aspirin\nC. Heparin", []),  # letters must run A, B, C, ...
    ("Which is it?\n(A) (B)", []),  # options need text
    ("Which is it?\nA. Aspirin \t \nB.\tHeparin\t", ["Aspirin", "Heparin"]),  # spaces around a text are not its own
    ("Which is it?  \t (A) Aspirin (B) Heparin", ["Aspirin", "Heparin"]),  # spaces between "?" and the list
    ("Which is it?\n \t(A) Aspirin (B) Heparin", ["Aspirin", "Heparin"]),  # a list starting its line
    ("Which is it, drug \t (A) Aspirin (B) Heparin", []),  # a list must start a line or follow ":" or "?"
])
def test_question_choices(question, expected):
    assert question_choices(question) == expected


def test_medxpertqa_inline_options_are_extracted_at_load_time(tmp_path):
    question = ("A 61-year-old man has a lytic lesion of the skull. What is the diagnosis?\n"
                "Answer Choices: (A) Multiple myeloma (B) Paget disease (C) Osteoid osteoma (D) Metastasis")
    write_file(tmp_path, "images/MM-7-a.jpeg", png_bytes(seed=7))
    write_file(tmp_path, "MM/test.jsonl", json.dumps({
        "id": "MM-7", "question": question, "label": "A", "images": ["MM-7-a.jpeg"],
        "options": {"A": "Multiple myeloma", "B": "Paget disease", "C": "Osteoid osteoma", "D": "Metastasis"}}) + "\n")
    [row] = load_benchmark("medxpertqa_mm", None, root=tmp_path, partial=True)
    assert row["choices"] == ["Multiple myeloma", "Paget disease", "Osteoid osteoma", "Metastasis"]
    assert row["answer"] == "A"
    results, _ = score_rows([row], ["(A) Multiple myeloma"])
    assert [(r.name, r.value) for r in results] == [("mcq_accuracy", 1.0), ("accuracy", 1.0)]


# ---- VQA rows with choices ------------------------------------------------------------------------

def _vqa_row(answer: str, choices: list[str]) -> dict:
    return {"id": "q", "source": "b", "task": "vqa", "answer": answer, "choices": choices, "boxes": [], "images": [],
            "messages": [{"role": "user", "content": "?"}, {"role": "assistant", "content": answer}]}


FUNDUS = ["Normal", "Glaucoma", "Cataract", "Myopia"]


def test_vqa_rows_with_choices_are_multiple_choice_not_open_exact_match():
    rows = [_vqa_row("B", FUNDUS) for _ in range(5)]
    predictions = ["B", "glaucoma.", "(C) Cataract", "It could be glaucoma or normal", "Glaucomatous"]
    results, samples = score_rows(rows, predictions)
    mcq, accuracy = results
    assert mcq.name == "mcq_accuracy" and accuracy.name == "accuracy" and accuracy.value == mcq.value
    assert (mcq.value, mcq.n, mcq.unparseable) == (pytest.approx(0.4), 5, 2)  # never mapped to the nearest option
    assert [sample["score"] for sample in samples] == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_closed_yes_no_vqa_rows_stay_closed_and_open_rows_open():
    rows = [_vqa_row("yes", ["yes", "no"]), _vqa_row("left lung", []), _vqa_row("B", FUNDUS)]
    assert [question_kind(row) for row in rows] == ["closed", "open", "multiple_choice"]
    results, _ = score_rows(rows, ["Yes.", "left lung", "Glaucoma"])
    assert {r.name: (r.value, r.n) for r in results} == {
        "closed_vqa_accuracy": (1.0, 1), "open_vqa_exact_match": (1.0, 1), "open_vqa_token_f1": (1.0, 1),
        "mcq_accuracy": (1.0, 1), "accuracy": (1.0, 3)}


def test_open_questions_give_exact_match_and_token_f1_each_under_its_own_name():
    rows = [_vqa_row("lower lobe", []), _vqa_row("left lung", []), _vqa_row("liver", [])]
    results, samples = score_rows(rows, ["left lower lobe", "The left lung.", ""])
    by_name = {r.name: r for r in results}
    assert [r.name for r in results] == ["open_vqa_exact_match", "open_vqa_token_f1", "accuracy"]
    assert by_name["accuracy"].value == by_name["open_vqa_exact_match"].value  # the paper's accuracy: exact match
    # exact match: 0, 1, 0; token F1: 2 * (2/3 * 1) / (2/3 + 1) = 0.8, 1, 0 (SQuAD v1.1 drops "the")
    assert by_name["open_vqa_exact_match"].value == pytest.approx(1 / 3)
    assert by_name["open_vqa_token_f1"].value == pytest.approx(0.6)
    assert by_name["open_vqa_token_f1"].empty == 1 and by_name["open_vqa_token_f1"].n == 3
    assert by_name["open_vqa_token_f1"].ci_low <= 0.6 <= by_name["open_vqa_token_f1"].ci_high
    assert [(s["score"], s["token_f1"]) for s in samples] == [(0.0, pytest.approx(0.8)), (1.0, 1.0), (0.0, 0.0)]


# ---- boxes in the reply (MedSG) ---------------------------------------------------------------------

def test_first_exchange_keeps_a_separate_gold_label():
    row = {"answer": "B", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "B. x"},
                                       {"role": "user", "content": "why?"}, {"role": "assistant", "content": "..."}]}
    assert first_exchange(row)["answer"] == "B" and len(first_exchange(row)["messages"]) == 2


# ---- the reply's box scale (answers.box_scale) -----------------------------------------------------

def test_registry_names_the_reply_box_scale_of_every_grounding_benchmark():
    registry = load_registry()
    assert {b.name: b.answers.box_scale for b in registry.benchmarks if "boxes" in b.answers.types} == {
        "nih_chest_xray": "relative_1000", "deeplesion": "relative_1000", "bacteria": "relative_1000",
        "medsg_multi_view": "pixels", "medsg_object_tracking": "pixels", "medsg_referring": "pixels",
        "synthetic_heldout": "relative_1000"}


def test_reply_boxes_refuses_an_unknown_scale():
    with pytest.raises(ValueError, match="unknown box scale 'original_pixels'"):
        reply_boxes("<box>[[1, 2, 3, 4]]</box>", 10, 10, scale="original_pixels")
    with pytest.raises(ValueError, match="answers.box_scale"):
        gold.gold_from_text(_vqa_row("x", []) | {"task": "grounding"}, ["boxes"])


# ---- unreadable gold boxes ------------------------------------------------------------------------

def test_scoring_refuses_grounding_rows_without_gold_boxes_naming_them_before_scoring():
    good = {"id": "b:ok", "source": "b", "task": "grounding", "answer": "", "choices": [],
            "boxes": [{"label": "x", "x1": 0, "y1": 0, "x2": 5, "y2": 5}], "images": [{"width": 10, "height": 10}],
            "messages": [{"role": "user", "content": "Where?"}, {"role": "assistant", "content": "x <box>[[0, 0, 500, 500]]</box>"}]}
    bad = good | {"id": "b:empty", "boxes": []}
    unsized = good | {"id": "b:unsized", "boxes": [], "images": [{"width": 0, "height": 0}]}
    unreadable = bad | {"id": "b:unreadable", "messages": [good["messages"][0], {"role": "assistant", "content": "none"}]}
    with pytest.raises(UnreadableGold) as error:
        score_rows([good, bad, unsized, unreadable], ["<box>[[0, 0, 500, 500]]</box>"] * 4)
    assert str(error.value).startswith("3 grounding row(s) have no gold box and cannot be scored (b:empty: empty "
                                       "boxes column (its reply's boxes were never read: load it through "
                                       "data.benchmarks.loading); b:unsized: image size unknown")
    assert "b:unreadable: no box readable in its reply 'none'" in str(error.value) and "b:ok" not in str(error.value)



def test_every_metric_the_scorer_computes_has_a_note_so_a_guard_can_name_it():
    """``METRIC_NOTES`` is the list of metric names a recipe's regression guard may protect (a name
    outside it stops the definitions): every metric any task gets is in it, plug-ins too."""
    from medmo_pipeline.evaluation.scoring import METRIC_NOTES, PLUGIN_METRICS

    grounding = {"id": "g", "source": "b", "task": "grounding", "answer": "", "choices": [],
                 "boxes": [{"label": "x", "x1": 0, "y1": 0, "x2": 5, "y2": 5}], "images": [{"width": 10, "height": 10}],
                 "messages": [{"role": "user", "content": "Where?"}, {"role": "assistant", "content": "x"}]}
    rows = [grounding, _vqa_row("yes", ["yes", "no"]), _vqa_row("left lung", []), _vqa_row("B", FUNDUS)]
    rows += [_vqa_row("a text", []) | {"task": task} for task in ("caption", "report", "instruction")]
    results, _ = score_rows(rows, ["x <box>[[0, 0, 500, 500]]</box>", "yes", "left", "B", "a", "a text", "text"])
    names = {result.name for result in results}
    assert {"grounding_mean_iou", "closed_vqa_accuracy", "open_vqa_token_f1", "mcq_accuracy", "accuracy",
            "caption_cider", "report_rouge_l", "instruction_rouge_l"} <= names
    assert names | set(PLUGIN_METRICS) <= set(METRIC_NOTES), sorted(names | set(PLUGIN_METRICS) - set(METRIC_NOTES))
