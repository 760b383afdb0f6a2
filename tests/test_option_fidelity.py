"""What the model is shown and scored against matches what the publisher wrote: options listed once
(MedXpertQA-Text's question already ends with ``Answer Choices: (A) ...``), no empty ``C. `` / ``D. ``
lines for questions of fewer options than columns (OmniMedVQA, PMC-VQA, MedMCQA), and a numeric gold
answer written as the number it is ("1", not "1.0")."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from benchmark_releases import IMAGE_STRUCT, _csv, _image, _jsonl, _parquet, build_release

from medmo_pipeline.data.adapters import multiple_choice, vqa
from medmo_pipeline.data.adapters.choices import LETTERS, lettered_question
from medmo_pipeline.data.adapters.common import text
from medmo_pipeline.data.benchmarks import gold
from medmo_pipeline.data.benchmarks.checks import BenchmarkLoadError
from medmo_pipeline.data.benchmarks.loading import load_counted
from medmo_pipeline.data.outcomes import RowError, RowQuarantined
from medmo_pipeline.evaluation.scoring import score_rows
from medmo_pipeline.schema.rows import prompt_text


def _load(name, root):
    return load_counted(name, None, root=root, partial=True)


def _rows(name, root):
    return {row["id"]: row for row in _load(name, root).rows}


# ---- 1. options already listed in the question ---------------------------------------------------

def test_medxpertqa_text_lists_its_options_once(tmp_path):
    build_release("medxpertqa_text", tmp_path)
    rows = _load("medxpertqa_text", tmp_path).rows
    assert [row["answer"] for row in rows] == ["J", "A"]
    for row in rows:
        prompt = prompt_text(row)
        # before: "Answer Choices: (A) option A ... (J) option J" and then "A. option A" ... "J. option J"
        for letter in LETTERS:
            assert prompt.count(f"option {letter}") == 1, prompt
        assert "(A)" not in prompt
        assert prompt.endswith("\n".join([*(f"{c}. option {c}" for c in LETTERS), "Answer with the option letter."]))
        assert "Answer Choices:\nA. option A\n" in prompt  # the publisher's lead-in stays, the list is ours
        assert row["choices"] == [f"option {c}" for c in LETTERS]


def test_a_question_ending_in_option_lines_keeps_one_list(tmp_path):
    # MedQA-style options dict with a question that already lists them as "A) ..." lines
    _jsonl(tmp_path, "phrases_no_exclude_test.jsonl", [
        {"question": "Which drug?\nA) Ampicillin\nB) Ceftriaxone.\nC) doxycycline\nD)  Nitrofurantoin",
         "options": {"A": "Ampicillin", "B": "Ceftriaxone", "C": "Doxycycline", "D": "Nitrofurantoin"},
         "answer_idx": "D"}])
    [row] = _load("medqa", tmp_path).rows
    assert prompt_text(row) == ("Which drug?\nA. Ampicillin\nB. Ceftriaxone\nC. Doxycycline\nD. Nitrofurantoin\n"
                                "Answer with the option letter.")


def test_a_question_listing_other_options_is_left_as_it_is():
    # Not the options being appended (another text, another count): nothing is cut
    question = "Which is it?\nAnswer Choices: (A) Aspirin (B) Heparin"
    assert lettered_question(question, ["Aspirin", "Warfarin"]).startswith(question + "\nA. Aspirin\nB. Warfarin")
    assert lettered_question(question, ["Aspirin", "Heparin", "Warfarin"]).startswith(question + "\nA. Aspirin")
    panels = "Panel (A) shows the biopsy and panel (B) the CT. Which is it?"
    assert lettered_question(panels, ["A", "B"]).startswith(panels + "\nA. A")


def test_a_question_that_is_only_its_options_asks_nothing():
    with pytest.raises(RowError, match="missing_question"):
        lettered_question("(A) Aspirin (B) Heparin", ["Aspirin", "Heparin"])


def test_question_choices_is_the_adapters_one():
    from medmo_pipeline.data.adapters import choices
    assert gold.question_choices is choices.question_choices


# ---- 2. fewer options than option columns --------------------------------------------------------

def test_omnimedvqa_question_of_two_options_shows_two(tmp_path):
    build_release("omnimedvqa", tmp_path)  # ACRIMA_0001 has option_A and option_B only, as released
    row = _rows("omnimedvqa", tmp_path)["omnimedvqa:ACRIMA_0001"]
    assert row["choices"] == ["Fundus photography", "CT"]
    assert prompt_text(row) == "Which modality?\nA. Fundus photography\nB. CT\nAnswer with the option letter."


@pytest.mark.parametrize("missing", [None, "", "  \t"])
def test_omnimedvqa_null_or_blank_trailing_options_are_dropped(tmp_path, missing):
    build_release("omnimedvqa", tmp_path)
    path = tmp_path / "OmniMedVQA/QA_information/Open-access/ACRIMA.json"
    records = json.loads(path.read_text())
    records[0].update(option_C=missing, option_D=missing)
    path.write_text(json.dumps(records))
    row = _rows("omnimedvqa", tmp_path)["omnimedvqa:ACRIMA_0000"]
    assert row["choices"] == ["Normal", "Glaucoma"] and row["answer"] == "B"
    assert "C." not in prompt_text(row) and "D." not in prompt_text(row)


def test_omnimedvqa_empty_option_before_a_filled_one_fails_the_load(tmp_path):
    build_release("omnimedvqa", tmp_path)
    path = tmp_path / "OmniMedVQA/QA_information/Open-access/ACRIMA.json"
    records = json.loads(path.read_text())
    records[0]["option_A"] = None  # B, C, D filled: the letters after A would shift
    path.write_text(json.dumps(records))
    with pytest.raises(BenchmarkLoadError, match=r"ACRIMA\.json, row 1: malformed_record: .*option_A is empty "
                       r"but option_B is not"):
        _load("omnimedvqa", tmp_path)


def test_pmc_vqa_empty_last_choice_is_dropped_in_training_and_a_gap_quarantined(tmp_path):
    header = ["index", "Figure_path", "Caption", "Question", "Choice A", "Choice B", "Choice C", "Choice D",
              "Answer", "split"]
    _csv(tmp_path, "train_2.csv", header, [
        [0, "a.jpg", "c", "What is shown?", "A:Kidney", "B:Liver", "C:Spleen", "", "B", "train"],
        [1, "b.jpg", "c", "Which modality?", "A:CT", "", "C:US", "D:PET", "D", "train"]])
    options = {"file": "train_2.csv", "image_dir": "figures", "image_field": "Figure_path",
               "question_field": "Question", "answer_field": "Answer",
               "option_fields": ["Choice A", "Choice B", "Choice C", "Choice D"], "answer_format": "auto"}
    first, second = list(vqa.iter_outcomes(tmp_path, options))
    assert first["choices"] == ["Kidney", "Liver", "Spleen"]
    assert first["messages"][0]["content"] == "What is shown?\nA. Kidney\nB. Liver\nC. Spleen\n" \
                                              "Answer with the option letter."
    assert isinstance(second, RowQuarantined) and second.reason == "malformed_record"
    assert "Choice B is empty but Choice C is not" in second.detail


def test_medmcqa_missing_last_option_is_dropped_and_a_gap_fails_the_load(tmp_path):
    records = [{"id": "q0", "question": "Which vitamin?", "opa": "A1", "opb": "B12", "opc": "C", "opd": None,
                "cop": 1}]
    _parquet(tmp_path, "data/validation-00000-of-00001.parquet", records)
    [row] = _load("medmcqa", tmp_path).rows
    assert row["choices"] == ["A1", "B12", "C"] and row["answer"] == "B"
    assert prompt_text(row) == "Which vitamin?\nA. A1\nB. B12\nC. C\nAnswer with the option letter."
    _parquet(tmp_path, "data/validation-00000-of-00001.parquet", [{**records[0], "opb": " ", "opd": "D"}])
    with pytest.raises(BenchmarkLoadError, match=r"parquet, row 1: malformed_record: .*opb is empty but opc is not"):
        _load("medmcqa", tmp_path)


def test_multiple_choice_training_rows_quarantine_a_gap(tmp_path):
    _jsonl(tmp_path, "train.jsonl", [{"question": "Q?", "opa": "x", "opb": None, "opc": "z", "cop": 0}])
    [outcome] = multiple_choice.iter_outcomes(tmp_path, {
        "file": "train.jsonl", "option_fields": ["opa", "opb", "opc"], "answer_field": "cop",
        "answer_format": "index"})
    assert isinstance(outcome, RowQuarantined) and outcome.reason == "malformed_record"
    assert "opb is empty but opc is not" in outcome.detail


# ---- 3. a numeric gold answer --------------------------------------------------------------------

@pytest.mark.parametrize("value, spelled", [
    (1.0, "1"), (-3.0, "-3"), (0.0, "0"), (-0.0, "0"), (0.5, "0.5"), (2.25, "2.25"), (0.1, "0.1"),
    (1e20, "1e+20"), (1, "1"), ("1.0", "1.0"), (float("nan"), ""),
])
def test_numbers_as_text(value, spelled):
    assert text(value) == spelled


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_infinite_numbers_are_refused(value):
    with pytest.raises(RowError, match="bad_number"):
        text(value)


def test_a_float_answer_column_is_scored_as_its_number(tmp_path):
    schema = pa.schema([("image", IMAGE_STRUCT), ("question", pa.string()), ("answer", pa.float64())])
    records = [{"image": _image(0, "0.jpg"), "question": "How many lesions?", "answer": 1.0},
               {"image": _image(1, "1.jpg"), "question": "Which fraction?", "answer": 0.5}]
    path = tmp_path / "data/test-00000-of-00001-x.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(records, schema=schema), path)
    rows = _load("vqa_rad", tmp_path).rows
    assert [row["answer"] for row in rows] == ["1", "0.5"]  # before: "1.0", normalised to "1 0"
    results, _ = score_rows(rows, ["1", "0.5"])
    assert {r.name: r.value for r in results}["accuracy"] == 1.0
