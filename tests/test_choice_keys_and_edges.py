"""Multiple-choice golds named by the publisher's option keys, index answers that are no whole
number, and control codes at a field's edge: each written in the published layout and curated the
way the corpus job does (``curate_source``), so what is kept and why the rest is not is what a run
would report."""

# ruff: noqa: F811 (the curate fixture is imported from test_published_layouts and requested by name)
from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixtures_formats import jpeg_bytes, png_bytes, write_file
from test_published_layouts import (
    accounted,
    curate,  # noqa: F401 (a fixture: tests name it as a parameter)
    dataset,
    kept_rows,
    quarantine,
)

from medmo_pipeline.data.adapters import coco
from medmo_pipeline.data.adapters.choices import resolve_answer, unprefixed
from medmo_pipeline.data.adapters.common import as_list, strip_image_tokens, text
from medmo_pipeline.data.adapters.image_folder import folder_label
from medmo_pipeline.data.characters import stripped
from medmo_pipeline.data.outcomes import RowError

# ---- MedQA: the answer names the publisher's option key -------------------------------------------

MEDQA = "phrases_no_exclude_train.jsonl"


def _medqa(tmp_path, records: list[dict]) -> None:
    path = dataset(tmp_path, "medqa") / MEDQA
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def _gold_text(row: dict) -> str:
    """The option text the row's gold letter stands for in its prompt."""
    prompt = row["messages"][0]["content"]
    return next(line[3:] for line in prompt.splitlines() if line.startswith(f"{row['answer']}. "))


def test_medqa_options_keyed_from_b_resolve_the_answer_by_its_key(tmp_path, curate):
    drugs = ["Aspirin", "Heparin", "Warfarin", "Insulin"]
    _medqa(tmp_path, [
        {"question": "Keyed B..E: which is an anticoagulant given by injection?",
         "options": dict(zip("BCDE", drugs)), "answer_idx": "C", "answer": "Heparin"},
        {"question": "Keyed b..e in lower case?", "options": dict(zip("bcde", drugs)), "answer_idx": "(c)",
         "answer": "Heparin"},
        {"question": "Keyed A..D, as the card shows?", "options": dict(zip("ABCD", drugs)), "answer_idx": "B",
         "answer": "Heparin"},
        {"question": "Keyed B..E, the answer a key not there?", "options": dict(zip("BCDE", drugs)),
         "answer_idx": "A", "answer": "Aspirin"}])
    report = curate("medqa")
    rows = kept_rows(report)
    assert [(row["answer"], _gold_text(row)) for row in rows] == [("B", "Heparin")] * 3
    assert [row["choices"] for row in rows] == [drugs] * 3  # lettered anew from A, in key order
    assert report["quarantined_by_reason"] == {"malformed_record": 1} and accounted(report)
    (problem,) = quarantine(report)  # before: missing_answer, the value "A" lost
    assert problem["detail"].endswith(": answer_idx 'A' names none of its 4 options (keyed B, C, D, E)")


@pytest.mark.parametrize("keys", [("A", "a"), ("B", " B")])
def test_medqa_option_keys_alike_but_for_case_or_spaces_are_quarantined(tmp_path, curate, keys):
    _medqa(tmp_path, [{"question": "Which is heparin?", "options": {keys[0]: "Aspirin", keys[1]: "Heparin",
                                                                   "C": "Warfarin"},
                       "answer_idx": keys[1], "answer": "Heparin"}])
    report = curate("medqa")
    assert kept_rows(report) == [] and accounted(report)
    (problem,) = quarantine(report)
    assert problem["reason"] == "malformed_record"
    assert repr(list(keys)) in problem["detail"] and "answer_idx" in problem["detail"]


def test_number_keys_still_take_a_letter_by_position_and_their_own_number():
    choices = [f"option {n}" for n in range(1, 11)]
    keys = [str(n) for n in range(1, 11)]
    assert resolve_answer("J", choices, "letter", keys=keys) == "J"
    assert resolve_answer("3", choices, "letter", keys=keys) == "C"
    assert resolve_answer("Heparin", ["Aspirin", "Heparin"], "auto", keys=["B", "C"]) == "B"
    assert resolve_answer("C: Heparin", ["Aspirin", "Heparin"], "auto", keys=["B", "C"]) == "B"


# ---- MedMCQA: cop must be a whole number ----------------------------------------------------------

MEDMCQA = "data/train-00000-of-00001.parquet"


def _medmcqa(tmp_path, cop) -> None:
    record = {"id": "e9ad821a", "question": "Chronic urethral obstruction due to BPH can lead to:",
              "opa": "Hyperplasia", "opb": "Hyperophy", "opc": "Atrophy", "opd": "Dyplasia", "cop": cop,
              "choice_type": "single", "exp": None, "subject_name": "Anatomy", "topic_name": None}
    path = dataset(tmp_path, "medmcqa") / MEDMCQA
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([record]), path)


@pytest.mark.parametrize("cop", [1.9, -0.5, 0.999, float("inf"), "1.9", "inf", "nan", "x"])
def test_medmcqa_cop_that_is_no_whole_number_is_quarantined_as_a_bad_number(tmp_path, curate, cop):
    _medmcqa(tmp_path, cop)
    report = curate("medmcqa")
    assert kept_rows(report) == [] and accounted(report)
    (problem,) = quarantine(report)
    assert problem["reason"] == "bad_number" and problem["record"] == "row 1"
    assert "inf" in problem["detail"] if cop == float("inf") else repr(str(cop)) in problem["detail"]


@pytest.mark.parametrize("cop", [2, 2.0, "2", "2.0", " 2 "])
def test_medmcqa_cop_written_as_a_whole_number_names_its_option(tmp_path, curate, cop):
    _medmcqa(tmp_path, cop)
    (row,) = kept_rows(curate("medmcqa"))
    assert (row["answer"], _gold_text(row)) == ("C", "Atrophy")


def test_an_index_answer_must_be_whole_and_an_empty_one_names_no_option():
    with pytest.raises(RowError, match=r"bad_number: cop '1\.9' is not a whole number"):
        resolve_answer("1.9", ["a", "b", "c"], "index", what="cop")
    assert resolve_answer("", ["a", "b", "c"], "index") == ""  # missing: curation says missing_answer
    assert resolve_answer("7", ["a", "b", "c"], "index") == ""  # whole but past the options


# ---- VQA-RAD: a control code at a field's edge is quarantined as inside it ------------------------

VQA_RAD = "VQA_RAD Dataset Public.json"
EDGE_CONTROLS = ["\x0b", "\x0c", "\x1c", "\x1f", "\x85"]


def _vqa_rad(tmp_path, records: list[dict]) -> None:
    root = dataset(tmp_path, "vqa_rad")
    write_file(root, "VQA_RAD Image Folder/synpic54610.jpg", jpeg_bytes())
    write_file(root, VQA_RAD, json.dumps([{"qid": qid, "image_name": "synpic54610.jpg", "answer_type": "OPEN",
                                           **record} for qid, record in enumerate(records, 1)]))


@pytest.mark.parametrize("control", EDGE_CONTROLS)
def test_vqa_rad_control_codes_at_an_edge_of_question_or_answer_are_quarantined(tmp_path, curate, control):
    _vqa_rad(tmp_path, [
        {"question": f"{control}Which lobe?", "answer": "left upper lobe"},
        {"question": f"Which lobe?{control}", "answer": "left upper lobe"},
        {"question": "Which lobe?", "answer": f"{control}left upper lobe"},
        {"question": "Which lobe?", "answer": f"left upper lobe {control}\n"},
        {"question": "Which lobe?", "answer": f"left{control}upper lobe"},  # inside, as before
        {"question": "Is this a CT?", "answer": f"yes{control}", "answer_type": "CLOSED"}])
    report = curate("vqa_rad")
    assert kept_rows(report) == [] and accounted(report)
    assert [(q["reason"], q["record"]) for q in quarantine(report)] == \
        [("control_characters", f"row {n}") for n in range(1, 7)]


def test_vqa_rad_spaces_tabs_and_line_breaks_around_text_are_stripped_and_kept(tmp_path, curate):
    _vqa_rad(tmp_path, [
        {"question": " \tWhich lobe?\r\n", "answer": "\n left upper lobe \t"},
        {"question": "\u00a0\u200bIs this a CT?\u3000", "answer": " Yes\n", "answer_type": "CLOSED"}])
    report = curate("vqa_rad")
    assert [(row["messages"][0]["content"], row["answer"]) for row in kept_rows(report)] == \
        [("Which lobe?", "left upper lobe"), ("Is this a CT?", "yes")]
    assert report["quarantined"] == 0 and accounted(report)


# ---- the other places adapters strip record text ---------------------------------------------------

@pytest.mark.parametrize("control", EDGE_CONTROLS)
def test_adapter_text_helpers_keep_a_control_code_at_an_edge(control):
    assert stripped(f" \u200b{control}CT\t") == f"{control}CT"
    assert text(f"  yes{control} ") == f"yes{control}"
    assert as_list(f"atelectasis | {control}effusion |  ", "|") == ["atelectasis", f"{control}effusion"]
    assert strip_image_tokens(f"<image>{control}What is shown?") == f"{control}What is shown?"
    assert strip_image_tokens(f"What is shown?{control} <image>\n") == f"What is shown?{control}"
    assert folder_label(f"{control}nodule/a.png") == f"{control}nodule"
    assert resolve_answer(f"{control}B", ["CT", "MRI"], "letter") == ""  # no letter hides behind it
    assert resolve_answer(f"B{control}", ["CT", "MRI"], "letter") == ""


def test_option_prefixes_take_spaces_not_control_codes():
    assert unprefixed([" A:\u00a0CT ", "\x0bB: MRI", "C:\x1fX-ray"]) == ["CT", "\x0bB: MRI", "\x1fX-ray"]


def test_coco_category_names_keep_a_control_code_at_an_edge(tmp_path):
    write_file(tmp_path, "imgs/a.png", png_bytes(32, 32))
    write_file(tmp_path, "ann.json", json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 32}],
        "categories": [{"id": 1, "name": " nodule\x1f"}, {"id": 2, "name": "\tmass \n"}],
        "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]},
                        {"image_id": 1, "category_id": 2, "bbox": [2, 2, 10, 10]}]}))
    rows = [item for item in coco.iter_outcomes(tmp_path, {"file": "ann.json", "image_dir": "imgs"})
            if type(item) is dict]
    assert sorted(box["label"] for row in rows for box in row["boxes"]) == ["mass", "nodule\x1f"]
    assert any(re.search("nodule\x1f", row["messages"][0]["content"]) for row in rows)


def test_a_letter_answer_followed_by_a_long_run_of_spaces_is_read_in_linear_time():
    """Each split of the run was tried against " -": 20,000 spaces took 0.36 s, a record's 16 MiB
    bound minutes."""
    from guards import cpu_seconds_limit

    answer = "A" + " " * 2_000_000 + "x"
    with cpu_seconds_limit(2.0):
        assert resolve_answer(answer, ["one", "two"], "letter") == ""
        assert resolve_answer(answer, ["one", "two"], "letter", keys=["A", "B"]) == ""
    assert resolve_answer("B  -  two", ["one", "two"], "letter") == "B"
