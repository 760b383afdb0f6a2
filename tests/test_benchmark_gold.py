"""Gold labels benchmark files keep inside text: options in the question (MMMU-Med, MedXpertQA-MM),
boxes in the reply (MedSG); and the scoring of VQA rows with choices as multiple choice."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest
from fixtures_formats import png_bytes, write_file

from medmo_pipeline.boxes import pixels_to_relative
from medmo_pipeline.evaluation import gold
from medmo_pipeline.evaluation.benchmarks import load_benchmark, read_benchmark
from medmo_pipeline.evaluation.gold import UnreadableGold, first_exchange, question_choices, reply_boxes
from medmo_pipeline.evaluation.registry import AnswerRules, load_registry
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
])
def test_question_choices(question, expected):
    assert question_choices(question) == expected


def _mmmu_dir(root: Path, records: list[dict]) -> Path:
    """MMMU-Med exported as the registry says: records in the Pharmacy subset, the others empty."""
    for file in MMMU_SUBSETS:
        chosen = [r for r in records if file.startswith("Pharmacy/")]
        write_file(root, file, "".join(json.dumps(r) + "\n" for r in chosen))
    for record in records:
        write_file(root, f"images/{record['image_1']}", png_bytes(seed=len(record["id"])))
    return root


MMMU_RECORDS = [
    {"id": "validation_Pharmacy_1", "image_1": "p1.png", "answer": "B",
     "question": "<image 1> Which anticoagulant acts on antithrombin?\nA. Warfarin\nB. Heparin\nC. Aspirin"},
    {"id": "validation_Pharmacy_2", "image_1": "p2.png", "answer": "Aspirin",  # gold given as option text
     "question": "<image 1> Which drug inhibits COX-1 irreversibly?\nA. Ibuprofen\nB. Celecoxib\nC. Aspirin"},
    {"id": "validation_Pharmacy_3", "image_1": "p3.png", "answer": "12",  # an open MMMU question
     "question": "<image 1> How many tablets are shown in the blister pack?"},
]


def test_mmmu_options_in_the_question_become_choices_and_the_gold_letter(tmp_path):
    rows = load_benchmark("mmmu_med", None, root=_mmmu_dir(tmp_path / "mmmu", MMMU_RECORDS))
    assert [(row["choices"], row["answer"]) for row in rows] == [
        (["Warfarin", "Heparin", "Aspirin"], "B"),
        (["Ibuprofen", "Celecoxib", "Aspirin"], "C"),
        ([], "12"),
    ]
    assert rows[0]["messages"][0]["content"] == MMMU_RECORDS[0]["question"]  # the model still reads the options
    assert [question_kind(row) for row in rows] == ["multiple_choice", "multiple_choice", "open"]


def test_mmmu_scores_letters_and_option_text_and_counts_unparseable_answers(tmp_path):
    rows = load_benchmark("mmmu_med", None, root=_mmmu_dir(tmp_path / "mmmu", MMMU_RECORDS))
    results, samples = score_rows(rows, ["Heparin", "I cannot tell", "12"])
    by_name = {result.name: result for result in results}
    mcq = by_name["mcq_accuracy"]
    assert (mcq.value, mcq.n, mcq.unparseable) == (0.5, 2, 1)
    assert by_name["open_vqa_exact_match"].value == 1.0
    assert [sample["score"] for sample in samples] == [1.0, 0.0, 1.0]


def test_medxpertqa_inline_options_are_extracted_at_load_time(tmp_path):
    question = ("A 61-year-old man has a lytic lesion of the skull. What is the diagnosis?\n"
                "Answer Choices: (A) Multiple myeloma (B) Paget disease (C) Osteoid osteoma (D) Metastasis")
    write_file(tmp_path, "images/MM-7-a.jpeg", png_bytes(seed=7))
    write_file(tmp_path, "MM/test.jsonl", json.dumps({
        "id": "MM-7", "question": question, "label": "A", "images": ["MM-7-a.jpeg"],
        "options": {"A": "Multiple myeloma", "B": "Paget disease", "C": "Osteoid osteoma", "D": "Metastasis"}}) + "\n")
    [row] = load_benchmark("medxpertqa_mm", None, root=tmp_path)
    assert row["choices"] == ["Multiple myeloma", "Paget disease", "Osteoid osteoma", "Metastasis"]
    assert row["answer"] == "A"
    results, _ = score_rows([row], ["(A) Multiple myeloma"])
    assert [(r.name, r.value) for r in results] == [("mcq_accuracy", 1.0)]


# ---- VQA rows with choices ------------------------------------------------------------------------

def _vqa_row(answer: str, choices: list[str]) -> dict:
    return {"id": "q", "source": "b", "task": "vqa", "answer": answer, "choices": choices, "boxes": [], "images": [],
            "messages": [{"role": "user", "content": "?"}, {"role": "assistant", "content": answer}]}


FUNDUS = ["Normal", "Glaucoma", "Cataract", "Myopia"]


def test_vqa_rows_with_choices_are_multiple_choice_not_open_exact_match():
    rows = [_vqa_row("B", FUNDUS) for _ in range(5)]
    predictions = ["B", "glaucoma.", "(C) Cataract", "It could be glaucoma or normal", "Glaucomatous"]
    results, samples = score_rows(rows, predictions)
    [mcq] = results
    assert mcq.name == "mcq_accuracy"
    assert (mcq.value, mcq.n, mcq.unparseable) == (pytest.approx(0.4), 5, 2)  # never mapped to the nearest option
    assert [sample["score"] for sample in samples] == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_closed_yes_no_vqa_rows_stay_closed_and_open_rows_open():
    rows = [_vqa_row("yes", ["yes", "no"]), _vqa_row("left lung", []), _vqa_row("B", FUNDUS)]
    assert [question_kind(row) for row in rows] == ["closed", "open", "multiple_choice"]
    results, _ = score_rows(rows, ["Yes.", "left lung", "Glaucoma"])
    assert {r.name: (r.value, r.n) for r in results} == {
        "closed_vqa_accuracy": (1.0, 1), "open_vqa_exact_match": (1.0, 1), "open_vqa_token_f1": (1.0, 1),
        "mcq_accuracy": (1.0, 1)}


def test_open_questions_give_exact_match_and_token_f1_each_under_its_own_name():
    rows = [_vqa_row("lower lobe", []), _vqa_row("left lung", []), _vqa_row("liver", [])]
    results, samples = score_rows(rows, ["left lower lobe", "The left lung.", ""])
    by_name = {r.name: r for r in results}
    assert [r.name for r in results] == ["open_vqa_exact_match", "open_vqa_token_f1"]
    # exact match: 0, 1, 0; token F1: 2 * (2/3 * 1) / (2/3 + 1) = 0.8, 1, 0 (SQuAD v1.1 drops "the")
    assert by_name["open_vqa_exact_match"].value == pytest.approx(1 / 3)
    assert by_name["open_vqa_token_f1"].value == pytest.approx(0.6)
    assert by_name["open_vqa_token_f1"].empty == 1 and by_name["open_vqa_token_f1"].n == 3
    assert by_name["open_vqa_token_f1"].ci_low <= 0.6 <= by_name["open_vqa_token_f1"].ci_high
    assert [(s["score"], s["token_f1"]) for s in samples] == [(0.0, pytest.approx(0.8)), (1.0, 1.0), (0.0, 0.0)]


# ---- boxes in the reply (MedSG) ---------------------------------------------------------------------

def _medsg_dir(root: Path, conversations: list[list[dict]], *, width: int = 200, height: int = 100) -> Path:
    records = []
    for i, turns in enumerate(conversations):
        write_file(root, f"images/s{i}.png", png_bytes(width, height, seed=i))
        records.append({"id": f"s{i}", "image": f"s{i}.png", "conversations": turns})
    write_file(root, "test.json", json.dumps(records))
    return root


def _ask(reply: str) -> list[dict]:
    return [{"from": "human", "value": "<image>\nLocate the nodule."}, {"from": "gpt", "value": reply}]


def test_medsg_reply_boxes_become_pixel_boxes_that_round_trip(tmp_path):
    [row] = load_benchmark("medsg", None, root=_medsg_dir(tmp_path, [_ask("Nodule <box>[[250, 500, 750, 1000]]</box>")]))
    assert row["boxes"] == [{"label": "Nodule", "x1": 50.0, "y1": 50.0, "x2": 150.0, "y2": 100.0}]
    box = row["boxes"][0]
    assert pixels_to_relative((box["x1"], box["y1"], box["x2"], box["y2"]), 200, 100) == (250, 500, 750, 1000)


def test_medsg_grounding_scores(tmp_path):
    two = "Nodules <box>[[0, 0, 500, 500], [500, 500, 1000, 1000]]</box>"
    root = _medsg_dir(tmp_path, [_ask("Nodule <box>[[250, 500, 750, 1000]]</box>"), _ask(two)])
    rows = load_benchmark("medsg", None, root=root)
    perfect = ["<box>[[250, 500, 750, 1000]]</box>", "<box>[[500, 500, 1000, 1000], [0, 0, 500, 500]]</box>"]
    values = {r.name: r.value for r in score_rows(rows, perfect)[0]}
    assert values["grounding_mean_iou"] == 1.0  # Hungarian matching pairs the reversed boxes
    assert values["grounding_first_box_mean_iou"] == 0.5  # first vs first: 1 on row one, 0 on row two
    assert [values[f"grounding_acc_iou{t}"] for t in (30, 50, 70)] == [1.0, 1.0, 1.0]
    half = ["<box>[[250, 500, 500, 1000]]</box>", ""]  # IoU 0.5 on row one; no answer on row two
    results = {r.name: r for r in score_rows(rows, half)[0]}
    assert results["grounding_mean_iou"].value == pytest.approx(0.25)
    assert [results[f"grounding_acc_iou{t}"].value for t in (30, 50, 70)] == [0.5, 0.5, 0.0]
    assert results["grounding_mean_iou"].empty == 1


def test_medsg_gold_is_the_reply_to_the_question_asked(tmp_path):
    turns = [*_ask("Nodule <box>[[250, 500, 750, 1000]]</box>"),
             {"from": "human", "value": "Which organ?"}, {"from": "gpt", "value": "The lung."}]
    [row] = load_benchmark("medsg", None, root=_medsg_dir(tmp_path, [turns]))
    assert [m["content"] for m in row["messages"]] == ["Locate the nodule.", "Nodule <box>[[250, 500, 750, 1000]]</box>"]
    assert row["answer"] == row["messages"][-1]["content"] and len(row["boxes"]) == 1


def test_first_exchange_keeps_a_separate_gold_label():
    row = {"answer": "B", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "B. x"},
                                       {"role": "user", "content": "why?"}, {"role": "assistant", "content": "..."}]}
    assert first_exchange(row)["answer"] == "B" and len(first_exchange(row)["messages"]) == 2


# ---- the reply's box scale (answers.box_scale) -----------------------------------------------------

def _with_box_scale(scale: str):
    medsg = load_registry().get("medsg")
    return medsg.model_copy(update={"answers": AnswerRules(types=["boxes"], box_scale=scale)})


def test_registry_names_the_reply_box_scale_of_every_grounding_benchmark():
    registry = load_registry()
    assert {b.name: b.answers.box_scale for b in registry.benchmarks if "boxes" in b.answers.types} == {
        "nih_chest_xray": "relative_1000", "deeplesion": "relative_1000", "bacteria": "relative_1000",
        "medsg": "relative_1000", "synthetic_heldout": "relative_1000"}


def test_pixel_scale_reply_boxes_are_taken_as_pixels(tmp_path):
    # 200 x 100 image; the reply gives pixels: read as 0-1000 they would become (20, 10, 40, 20).
    root = _medsg_dir(tmp_path, [_ask("Nodule <box>[[100, 50, 200, 100]]</box>"),
                                 _ask('[{"bbox_2d": [10.5, 20, 60, 80], "label": "cyst"}]')])
    rows = read_benchmark(_with_box_scale("pixels"), root)
    assert [row["boxes"] for row in rows] == [
        [{"label": "Nodule", "x1": 100.0, "y1": 50.0, "x2": 200.0, "y2": 100.0}],
        [{"label": "cyst", "x1": 10.5, "y1": 20.0, "x2": 60.0, "y2": 80.0}]]
    relative = read_benchmark(_with_box_scale("relative_1000"), root)
    assert relative[0]["boxes"][0] | {"label": ""} == {"label": "", "x1": 20.0, "y1": 5.0, "x2": 40.0, "y2": 10.0}
    # A model answers on the 0-1000 scale whatever the benchmark's reply scale: the same pixels score 1.
    values = {r.name: r.value for r in score_rows(rows[:1], ["<box>[[500, 500, 1000, 1000]]</box>"])[0]}
    assert values["grounding_mean_iou"] == 1.0
    values = {r.name: r.value for r in score_rows(relative[:1], ["<box>[[500, 500, 1000, 1000]]</box>"])[0]}
    assert values["grounding_mean_iou"] == 0.0


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
                                       "evaluation.benchmarks); b:unsized: image size unknown")
    assert "b:unreadable: no box readable in its reply 'none'" in str(error.value) and "b:ok" not in str(error.value)

