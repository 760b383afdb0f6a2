"""Stage-3 text datasets read from copies laid out as their hub repositories ship them: the real
file names (the registry names the one file of the release, so a sibling file of the snapshot is
never read by accident), the real column names, and records as the dataset cards show them."""

# ruff: noqa: F811 (the curate fixture is imported from test_published_layouts and requested by name)
from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_published_layouts import (
    accounted,
    curate,  # noqa: F401 (a fixture: tests name it as a parameter)
    dataset,
    kept_rows,
)


def _write(root: Path, file: str, records: list[dict]) -> None:
    path = root / file
    path.parent.mkdir(parents=True, exist_ok=True)
    if file.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(records), path)
    elif file.endswith(".jsonl"):
        path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    else:  # the hub's JSON files are one indented list
        path.write_text(json.dumps(records, indent=4, ensure_ascii=False), encoding="utf-8")


def _turns(row: dict) -> tuple[str, str]:
    return row["messages"][0]["content"], row["messages"][1]["content"]


# ---- MedQuAD (keivalya/MedQuad-MedicalQnADataset: one CSV, qtype,Question,Answer) ----------------

def test_medquad_csv_with_quoted_multiline_answers_and_an_empty_answer(tmp_path, curate):
    root = dataset(tmp_path, "medquad")
    root.mkdir(parents=True)
    with open(root / "medDataset_processed.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)  # pandas' to_csv: answers with commas / newlines in quotes
        writer.writerow(["qtype", "Question", "Answer"])
        writer.writerow(["susceptibility", "Who is at risk for Lymphocytic Choriomeningitis (LCM)? ?",
                         ("LCMV infections can occur after exposure to fresh urine, droppings, saliva,\n"
                         "or nesting materials from infected rodents.")])
        writer.writerow(["symptoms", "What are the symptoms of Parasites - Cysticercosis ?", ""])
        for _ in range(2):  # the same pair twice: kept once, the repeat filtered as a duplicate
            writer.writerow(["treatment", "What are the treatments for Glaucoma ?",
                             "Glaucoma is treated with medicines, laser trabeculoplasty, conventional surgery."])
    report = curate("medquad")
    rows = kept_rows(report)
    assert [_turns(row) for row in rows] == [
        ("Who is at risk for Lymphocytic Choriomeningitis (LCM)? ?",
         ("LCMV infections can occur after exposure to fresh urine, droppings, saliva,\n"
         "or nesting materials from infected rodents.")),
        ("What are the treatments for Glaucoma ?",
         "Glaucoma is treated with medicines, laser trabeculoplasty, conventional surgery.")]
    assert all(row["task"] == "text_qa" for row in rows)
    assert report["quarantined_by_reason"] == {"missing_answer": 1} and report["filtered_by_reason"] == {"duplicate": 1}
    assert accounted(report)


# ---- ChatDoctor (lavita/ChatDoctor-HealthCareMagic-100k, lavita/ChatDoctor-iCliniq) -------------

CHATDOCTOR_INSTRUCTION = "If you are a doctor, please answer the medical questions based on the patient's description."


def test_healthcaremagic_parquet_joins_the_fixed_instruction_and_the_patient_text(tmp_path, curate):
    root = dataset(tmp_path, "chatdoctor_healthcaremagic_100k")
    _write(root, "data/train-00000-of-00001-5e7cb295b9cff0bf.parquet", [
        {"instruction": CHATDOCTOR_INSTRUCTION,
         "input": "I woke up this morning feeling the whole room is spinning when i was sitting down.",
         "output": "Hi, Thank you for posting your query. The most likely cause for your symptoms is benign "
                   "paroxysmal positional vertigo (BPPV)."},
        {"instruction": CHATDOCTOR_INSTRUCTION, "input": "My baby has been pooing 5-6 times a day for a week.",
         "output": None}])  # a null answer: quarantined, not a reply of "None"
    report = curate("chatdoctor_healthcaremagic_100k")
    (row,) = kept_rows(report)
    assert _turns(row) == (
        CHATDOCTOR_INSTRUCTION + "\n\nI woke up this morning feeling the whole room is spinning when i was sitting down.",
        ("Hi, Thank you for posting your query. The most likely cause for your symptoms is benign paroxysmal "
        "positional vertigo (BPPV)."))
    assert report["quarantined_by_reason"] == {"missing_answer": 1} and accounted(report)


def test_icliniq_trains_on_the_doctors_answer_not_the_model_answers(tmp_path, curate):
    root = dataset(tmp_path, "chatdoctor_icliniq")
    _write(root, "data/train-00000-of-00001-7f15f39e4c3a7ee9.parquet", [
        {"input": "Hello doctor, I have a small lump on my neck for two weeks. Should I be worried?",
         "answer_icliniq": "Hi. A lymph node that persists beyond three weeks needs an ultrasound.",
         "answer_chatgpt": "I'm not a doctor, but a lump in the neck can have many causes.",
         "answer_chatdoctor": "Hi, it could be a reactive lymph node."}])
    report = curate("chatdoctor_icliniq")
    (row,) = kept_rows(report)
    assert _turns(row) == ("Hello doctor, I have a small lump on my neck for two weeks. Should I be worried?",
                           "Hi. A lymph node that persists beyond three weeks needs an ultrasound.")
    assert report["quarantined"] == 0 and accounted(report)


# ---- AlpaCare MedInstruct-52k (xz97/MedInstruct: data/MedInstruct-52k.json + the test set) --------

def test_alpacare_reads_the_52k_training_file_and_not_the_test_set_beside_it(tmp_path, curate):
    root = dataset(tmp_path, "alpacare_medinstruct_52k")
    _write(root, "data/MedInstruct-52k.json", [
        {"instruction": "Rewrite this instruction on how to use an inhaler to be more patient-friendly.",
         "input": "Exhale deeply, engage mouthpiece of inhaler, depress canister while inhaling.",
         "output": "1. Breathe out completely.\n2. Seal your lips around the mouthpiece."},
        {"instruction": "List three common side effects of metformin.", "input": "",
         "output": "Nausea, diarrhoea and abdominal discomfort."}])
    _write(root, "data/MedInstruct-test.jsonl", [  # evaluation set: must never become training data
        {"instruction": "My sister keeps getting bouts of high fever after a trip to the tropics.",
         "difficulty": "3", "gpt-4-answer": "She could be suffering from malaria."}])
    report = curate("alpacare_medinstruct_52k")
    assert [_turns(row) for row in kept_rows(report)] == [
        (("Rewrite this instruction on how to use an inhaler to be more patient-friendly.\n\n"
         "Exhale deeply, engage mouthpiece of inhaler, depress canister while inhaling."),
         "1. Breathe out completely.\n2. Seal your lips around the mouthpiece."),
        ("List three common side effects of metformin.", "Nausea, diarrhoea and abdominal discomfort.")]
    assert report["rows_in"] == 2 and accounted(report)


# ---- reasoning traces: MedReason, Medical-R1-Distill-Data ----------------------------------------

def test_medreason_puts_the_options_after_the_question_and_the_trace_in_think(tmp_path, curate):
    root = dataset(tmp_path, "medreason")
    _write(root, "ours_quality_33000.jsonl", [
        {"dataset_name": "medmcqa", "id_in_dataset": 1042,
         "question": "Which vitamin deficiency causes pellagra?",
         "options": "Answer Choices:\nA. Thiamine\nB. Niacin\nC. Riboflavin\nD. Pyridoxine",
         "reasoning": "Finding reasoning paths:\n1. Pellagra -> niacin deficiency -> dermatitis, diarrhoea, dementia.",
         "answer": "Niacin deficiency causes pellagra. The answer is B. Niacin."}])
    report = curate("medreason")
    (row,) = kept_rows(report)
    prompt, reply = _turns(row)
    assert prompt == ("Which vitamin deficiency causes pellagra?\n\n"
                      "Answer Choices:\nA. Thiamine\nB. Niacin\nC. Riboflavin\nD. Pyridoxine")
    assert reply.startswith("<think>\nFinding reasoning paths:") and reply.endswith(
        "</think>\nNiacin deficiency causes pellagra. The answer is B. Niacin.")
    assert row["answer"] == "Niacin deficiency causes pellagra. The answer is B. Niacin." and accounted(report)


def _r1_record(question: str, reasoning: str, response: str) -> dict:
    return {"question": question, "reasoning (reasoning_content)": reasoning, "response (content)": response}


def test_medical_r1_distill_reads_its_parenthesised_column_names(tmp_path, curate):
    _write(dataset(tmp_path, "medical_r1_distill_data"), "medical_r1_distill_sft.json", [
        _r1_record("A 45-year-old man presents with crushing chest pain radiating to the left arm...",
                   "Okay, so the patient has classic anginal pain...",
                   "**Acute inferior myocardial infarction**; obtain an ECG immediately."),
        # an empty reply: quarantined, the trace alone is not an answer
        _r1_record("What is the first-line drug for absence seizures?", "Absence seizures respond to ethosuximide...", "")])
    report = curate("medical_r1_distill_data")
    (row,) = kept_rows(report)
    assert _turns(row)[1] == ("<think>\nOkay, so the patient has classic anginal pain...\n</think>\n"
                              "**Acute inferior myocardial infarction**; obtain an ECG immediately.")
    assert report["quarantined_by_reason"] == {"missing_answer": 1} and accounted(report)


# ---- Medical Meadow (medalpaca/medical_meadow_*: one JSON list each) -----------------------------

MEADOW = {
    "medical_meadow_medqa": ("medical_meadow_medqa.json", {
        "instruction": "Please answer with one of the option in the bracket",
        "input": "Q:A 23-year-old pregnant woman at 22 weeks gestation presents with burning upon urination. "
                 "Which of the following is the best treatment for this patient?? \n"
                 "{'A': 'Ampicillin', 'B': 'Ceftriaxone', 'C': 'Doxycycline', 'D': 'Nitrofurantoin'},",
        "output": "D: Nitrofurantoin"}),
    "meadow_wikidoc": ("medical_meadow_wikidoc.json", {
        "instruction": "Answer this question truthfully",
        "input": "What are the risk factors for developing hypertension?",
        "output": "Common risk factors include age, obesity, a high-salt diet and a family history."}),
    "meadow_medical_flashcards": ("medical_meadow_wikidoc_medical_flashcards.json", {
        "instruction": "Answer this question truthfully",
        "input": "What is the relationship between very low Mg2+ levels, PTH levels, and Ca2+ levels?",
        "output": "Very low Mg2+ levels correspond to low PTH levels which in turn results in low Ca2+ levels."}),
    "medical_meadow_cord19": ("medical_meadow_cord19.json", {
        "instruction": "Summarize this paper in one sentence.",
        "input": "Coronaviruses are enveloped viruses with a positive-sense RNA genome...",
        "output": "Coronavirus spike proteins mediate entry into host cells."}),
    "meadow_pubmed_causal": ("medical_meadow_pubmed_causal.json", {
        "instruction": "Is this sentence describing a causal relationship?",
        "input": "Smoking cessation was associated with a lower risk of cardiovascular events.",
        "output": "This is a correlational relationship."}),
}


@pytest.mark.parametrize("name", sorted(MEADOW))
def test_medical_meadow_sets_read_their_published_json_file(tmp_path, curate, name):
    file, record = MEADOW[name]
    _write(dataset(tmp_path, name), file, [record, {**record, "output": ""}])  # an empty output: quarantined
    report = curate(name)
    (row,) = kept_rows(report)
    assert _turns(row) == (f"{record['instruction']}\n\n{record['input']}", record["output"])
    assert report["quarantined_by_reason"] == {"missing_answer": 1} and accounted(report)


def test_meadow_medqa_is_the_medical_meadow_medqa_release_listed_again(tmp_path, curate):
    file, record = MEADOW["medical_meadow_medqa"]
    _write(dataset(tmp_path, "meadow_medqa"), file, [record])
    (row,) = kept_rows(curate("meadow_medqa"))
    assert row["answer"] == "D: Nitrofurantoin" and row["task"] == "text_qa"


# ---- MIMIC-IV-Ext-BHC (PhysioNet labelled-notes-hospital-course: mimic-iv-bhc.csv) ----------------

def test_mimic_iv_bhc_csv_with_a_note_longer_than_the_csv_module_default(tmp_path, curate):
    root = dataset(tmp_path, "mimic_iv_ext_bhc")
    root.mkdir(parents=True)
    long_note = "<SEX> F <SERVICE> MEDICINE <ALLERGIES> No Known Allergies <CHIEF COMPLAINT> dyspnea " + (
        "<HISTORY OF PRESENT ILLNESS> worsening shortness of breath, orthopnea. " * 2000)  # > 131072 characters
    with open(root / "mimic-iv-bhc.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["note_id", "input", "target", "input_tokens", "target_tokens"])
        writer.writerow(["10000032-DS-21", long_note, ("Ms. ___ was admitted with a CHF exacerbation, diuresed with IV "
                         "furosemide."), "31842", "15"])
        writer.writerow(["10000084-DS-17", "<SEX> M <SERVICE> NEUROLOGY ...", "", "120", "0"])
    report = curate("mimic_iv_ext_bhc")
    (row,) = kept_rows(report)
    prompt, reply = _turns(row)
    assert prompt == "Summarise the brief hospital course from these clinical notes.\n\n" + long_note.strip()
    assert reply == "Ms. ___ was admitted with a CHF exacerbation, diuresed with IV furosemide."
    assert row["id"].endswith("10000032-DS-21")
    assert report["quarantined_by_reason"] == {"missing_answer": 1} and accounted(report)
