"""How a multiple-choice or closed gold answer is resolved to its option, on both sides the adapters
serve: a gold that names no option is named with its value (the row's ``malformed_record``: one row
quarantined in curation, the load failing on that file and row for a benchmark), a text gold matches
its option as a reader would ("Fundus photography." is "Fundus photography"), and a text gold that
matches two options is ambiguous, never the first of them."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from benchmark_releases import build_release
from registry_sources import registry_fixture

from medmo_pipeline.data.adapters.choices import gold_letter, resolve_answer, spoken
from medmo_pipeline.data.benchmarks.checks import BenchmarkLoadError
from medmo_pipeline.data.benchmarks.loading import load_counted
from medmo_pipeline.data.outcomes import RowError

OMNI = "OmniMedVQA/QA_information/Open-access/ACRIMA.json"


@pytest.fixture
def fixture(tmp_path, monkeypatch):
    return registry_fixture(tmp_path, monkeypatch)


def _load(name, root):
    return load_counted(name, None, root=root, partial=True)


def _edit_json(path, index: int, **fields) -> None:
    records = json.loads(path.read_text())
    records[index].update(fields)
    path.write_text(json.dumps(records))


def _edit_parquet(path, index: int, **fields) -> None:
    records = pq.read_table(path).to_pylist()
    records[index].update(fields)
    pq.write_table(pa.Table.from_pylist(records, schema=pq.read_schema(path)), path)


# ---- the resolution itself ---------------------------------------------------------------------

def test_a_text_gold_matches_as_a_reader_reads_it():
    options = ["CT", "Fundus photography", "MRI"]
    for gold in ("Fundus photography.", "  fundus   PHOTOGRAPHY ", "Fundus photography .", "fundus\tphotography"):
        assert resolve_answer(gold, options, "text") == "B", gold
    assert resolve_answer("Maybe.", ["yes", "no", "maybe"], "text") == "C"
    assert spoken("Fundus photography.") == spoken("fundus  photography") == "fundus photography"
    assert resolve_answer("Fundus", options, "text") == ""  # a part of an option is no option


def test_a_text_gold_matching_two_options_is_ambiguous_not_the_first():
    for options in (["Normal", "Glaucoma", "Cataract", "Glaucoma"], ["Normal", "Glaucoma", "Cataract", "glaucoma"]):
        with pytest.raises(RowError, match=r"^malformed_record: gt_answer 'Glaucoma' is ambiguous: it matches 2 of its "
                                           r"4 options \(B 'Glaucoma', D '[Gg]laucoma'\)$"):
            resolve_answer("Glaucoma", options, "text", what="gt_answer")
    # equal only as a reader reads them: ambiguous too, unless the gold is one option's own text
    with pytest.raises(RowError, match=r"ambiguous: it matches 2 of its 3 options \(A 'CT', B 'CT\.'\)"):
        resolve_answer("ct .", ["CT", "CT.", "MRI"], "text")
    assert resolve_answer("CT.", ["CT", "CT.", "MRI"], "text") == "B"
    # the auto format falls back to the text: the same rule (PMC-VQA's Answer holds either)
    with pytest.raises(RowError, match="ambiguous"):
        resolve_answer("Liver", ["Kidney", "Liver", "Liver", "Lung"], "auto", what="Answer")
    # a letter names its option whatever the texts: no ambiguity
    assert resolve_answer("C", ["Kidney", "Liver", "Liver", "Lung"], "letter") == "C"


def test_empty_options_never_match_and_never_make_a_gold_ambiguous():
    # OmniMedVQA: questions of two options get empty texts for C and D
    assert resolve_answer("CT", ["Fundus photography", "CT", "", ""], "text") == "B"
    assert resolve_answer("", ["a", "", ""], "text") == ""


@pytest.mark.parametrize(("answer", "options", "fmt", "what", "detail"), [
    ("4", ["a", "b", "c", "d"], "index", "cop", "cop '4' names none of its 4 options (counted from 0)"),
    ("-1", ["a", "b", "c", "d"], "index", "cop", "cop '-1' names none of its 4 options (counted from 0)"),
    ("F", ["a", "b", "c", "d"], "letter", "answer_idx", "answer_idx 'F' names none of its 4 options"),
    ("Both", ["a", "b"], "letter", "Answer", "Answer 'Both' names none of its 2 options"),
    ("Perhaps.", ["yes", "no", "maybe"], "text", "final_decision",
     "final_decision 'Perhaps.' names none of its 3 options"),
])
def test_a_gold_naming_no_option_is_named_with_its_value_and_the_options_count(answer, options, fmt, what, detail):
    assert resolve_answer(answer, options, fmt, what=what) == ""  # the lenient form MMMU's reader chains
    with pytest.raises(RowError) as error:
        gold_letter(answer, options, fmt, what=what)
    assert (error.value.reason, error.value.detail) == ("malformed_record", detail)


def test_an_empty_gold_is_still_no_gold_not_a_malformed_one():
    for fmt in ("text", "letter", "index", "auto"):
        assert gold_letter("  ", ["a", "b"], fmt) == ""  # curation: missing_answer


# ---- benchmarks: complete or loud --------------------------------------------------------------

def test_omnimedvqa_text_gold_with_a_final_period_or_other_spacing_is_read(tmp_path):
    build_release("omnimedvqa", tmp_path)
    _edit_json(tmp_path / OMNI, 1, gt_answer="Fundus photography.")  # before: "no gold answer"
    _edit_json(tmp_path / OMNI, 0, gt_answer=" GLAUCOMA ")
    rows = _load("omnimedvqa", tmp_path).rows
    assert [row["answer"] for row in rows] == ["B", "A"]


def test_omnimedvqa_options_of_one_text_make_a_text_gold_ambiguous(tmp_path):
    build_release("omnimedvqa", tmp_path)
    _edit_json(tmp_path / OMNI, 0, option_D="Glaucoma")  # before: silently option B, the first
    with pytest.raises(BenchmarkLoadError, match=r"ACRIMA\.json, row 1: malformed_record: .*gt_answer 'Glaucoma' is "
                                                 r"ambiguous: it matches 2 of its 4 options \(B 'Glaucoma', D 'Glaucoma'\)"):
        _load("omnimedvqa", tmp_path)


@pytest.mark.parametrize(("benchmark", "damage", "problem"), [
    ("omnimedvqa", lambda root: _edit_json(root / OMNI, 0, gt_answer="Retinopathy"),
     r"ACRIMA\.json, row 1: malformed_record: .*gt_answer 'Retinopathy' names none of its 4 options"),
    ("pubmedqa", lambda root: _edit_json_object(root / "data/ori_pqal.json", 1, final_decision="Perhaps"),
     r"ori_pqal\.json, .*malformed_record: .*final_decision 'Perhaps' names none of its 3 options"),
    ("medmcqa", lambda root: _edit_parquet(root / "data/validation-00000-of-00001.parquet", 2, cop=7),
     r"validation-00000-of-00001\.parquet, row 3: malformed_record: .*cop '7' names none of its 4 options"),
    ("mmlu_med", lambda root: _edit_parquet(root / "anatomy/test-00000-of-00001.parquet", 1, answer=4),
     r"anatomy/test-00000-of-00001\.parquet, row 2: malformed_record: .*answer '4' names none of its 4 options"),
    ("medbullets", lambda root: _edit_csv(root / "medbullets_op5.csv", ",B,COPD,", ",F,COPD,"),
     r"medbullets_op5\.csv, row 1: malformed_record: .*answer_idx 'F' names none of its 5 options"),
])
def test_a_benchmark_gold_naming_no_option_fails_the_load_naming_file_row_and_value(tmp_path, benchmark, damage,
                                                                                    problem):
    build_release(benchmark, tmp_path)
    damage(tmp_path)
    with pytest.raises(BenchmarkLoadError, match=problem):
        _load(benchmark, tmp_path)


def test_pubmedqa_maybe_with_a_period_is_maybe(tmp_path):
    build_release("pubmedqa", tmp_path)
    _edit_json_object(tmp_path / "data/ori_pqal.json", 2, final_decision="Maybe.")  # before: "no gold answer"
    rows = _load("pubmedqa", tmp_path).rows
    assert [row["answer"] for row in rows] == ["A", "B", "C"]


def _edit_json_object(path, index: int, **fields) -> None:
    """PubMedQA's ori_pqal.json: records keyed by PMID, in file order."""
    records = json.loads(path.read_text())
    records[list(records)[index]].update(fields)
    path.write_text(json.dumps(records))


def _edit_csv(path, old: str, new: str) -> None:
    content = path.read_text()
    assert old in content
    path.write_text(content.replace(old, new, 1))


# ---- curation: one row quarantined, named; the source goes on ----------------------------------

def test_curation_quarantines_a_gold_naming_no_option_by_its_row_and_value(fixture):
    build, curate = fixture
    folder = build("medmcqa")
    path = next(folder.glob("data/*.parquet"))
    _edit_parquet(path, 1, cop="4")
    report = curate("medmcqa")
    (problem,) = report["problem_details"]  # before: missing_answer, "task text_qa needs a gold answer"
    assert problem[:3] == ("malformed_record", f"data/{path.name}", "row 2")
    assert problem[3].endswith("cop '4' names none of its 4 options (counted from 0)")
    assert report["rows_kept"] == len(pq.read_table(path)) - 1


def test_curation_reads_a_text_gold_with_a_final_period_and_names_one_naming_no_option(fixture):
    build, curate = fixture
    folder = build("pubmedqa")
    path = next(folder.glob("pqa_labeled/*.parquet"))
    _edit_parquet(path, 0, final_decision="Maybe.")
    _edit_parquet(path, 1, final_decision="Perhaps")
    report = curate("pubmedqa")
    assert report["kept_by_id"]["pubmedqa:1000"]["answer"] == "C"
    (problem,) = report["problem_details"]
    assert problem[:3] == ("malformed_record", f"pqa_labeled/{path.name}", "row 2")
    assert problem[3].endswith("final_decision 'Perhaps' names none of its 3 options")


def test_curation_names_a_pmc_vqa_text_answer_that_matches_two_options(fixture):
    build, curate = fixture
    path = build("pmc_vqa") / "train_2.csv"
    lines = path.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    lines[1] = 'vqa0.png,Which organ?,Liver.,"A:Kidney","B:Liver","C:Lung","D:Spleen"\n'
    lines[2] = 'vqa1.png,Which organ?,Liver,"A:Kidney","B:Liver","C:liver","D:Spleen"\n'
    path.write_text("".join(lines), encoding="utf-8")
    report = curate("pmc_vqa")
    (kept,) = [row for row in report["kept"] if row["id"].endswith(":0")]
    assert (kept["answer"], kept["choices"][1]) == ("B", "Liver")
    (problem,) = report["problem_details"]  # before: B, the first, then choices_inconsistent with no word of it
    assert problem[:3] == ("malformed_record", "train_2.csv", "row 2")
    assert problem[3].endswith("Answer 'Liver' is ambiguous: it matches 2 of its 4 options (B 'Liver', C 'liver')")


def test_curation_reads_a_closed_yes_with_a_period_as_yes(fixture):
    build, curate = fixture
    path = build("vqa_rad") / "VQA_RAD Dataset Public.json"
    _edit_json(path, 1, answer="Yes.")  # before: an open answer "Yes.", no choices
    _edit_json(path, 3, answer=" NO ")
    report = curate("vqa_rad")
    closed = [report["kept_by_id"][f"vqa_rad:{qid}"] for qid in ("q1", "q3")]
    assert [(row["answer"], row["choices"]) for row in closed] == [("yes", ["yes", "no"]), ("no", ["yes", "no"])]
    assert report["quarantined"] == 0
