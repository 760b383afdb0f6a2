"""The benchmark registry: every benchmark the paper reports, read by the training adapters from
fixtures in each benchmark's real format; validation errors; missing files and credentials;
the paper's reported numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from benchmark_releases import build_release

from medmo_pipeline.data.benchmarks.checks import BenchmarkLoadError
from medmo_pipeline.data.benchmarks.loading import load_benchmark
from medmo_pipeline.data.benchmarks.registry import (
    METRICS,
    PENDING_METRICS,
    REGISTRY_PATH,
    SCORED_METRICS,
    BenchmarkUnavailable,
    RegistryError,
    load_registry,
)
from medmo_pipeline.evaluation.metrics import summarize
from medmo_pipeline.evaluation.scoring import PLUGIN_METRICS, score_benchmark

REGISTRY = load_registry()
FILE_BENCHMARKS = [b.name for b in REGISTRY.benchmarks if b.origin.kind != "synthetic"]

GROUPS = {
    "vqa": ["mmmu_med", "vqa_rad", "slake", "pathvqa", "pmc_vqa", "omnimedvqa", "medxpertqa_mm"],
    "text_qa": ["mmlu_med", "pubmedqa", "medmcqa", "medqa", "medbullets", "medxpertqa_text", "supergpqa"],
    "report": ["mimic_cxr", "chexpert_plus", "iu_xray", "medtrinity"],
    "grounding": ["nih_chest_xray", "deeplesion", "bacteria", "medsg_multi_view", "medsg_object_tracking",
                  "medsg_referring"],
}
PAPER_TABLES = Path(__file__).parent / "data" / "paper_tables.tsv"  # the paper's Tables 1-2, verbatim
TABLE_COLUMNS = {  # the paper's column headers -> (benchmark, column)
    1: [("mmmu_med", "accuracy"), ("vqa_rad", "accuracy"), ("slake", "accuracy"), ("pathvqa", "accuracy"),
        ("pmc_vqa", "accuracy"), ("omnimedvqa", "accuracy"), ("medxpertqa_mm", "accuracy"), ("AVG", "vqa"),
        ("mmlu_med", "accuracy"), ("pubmedqa", "accuracy"), ("medmcqa", "accuracy"), ("medqa", "accuracy"),
        ("medbullets", "accuracy"), ("medxpertqa_text", "accuracy"), ("supergpqa", "accuracy"), ("AVG", "text_qa")],
    2: [(b, c) for b in ("mimic_cxr", "chexpert_plus", "iu_xray", "medtrinity")
        for c in ("rouge_l", "cider", "ratescore", "sembscore")],
}
MODEL_ROWS = {"MedMO-8B": "medmo_8b", "MedMO-4B": "medmo_4b", "Qwen3VL-8B": "qwen3_vl_8b",
              "Fleming-VL-8B": "fleming_vl_8b", "Lingshu-7B": "lingshu_7b"}


def paper_numbers() -> dict[tuple[str, str, str], float]:
    """(benchmark or AVG, column, model) -> the number in the paper's tables (and its grounding text)."""
    numbers, table = {}, 0
    for line in PAPER_TABLES.read_text(encoding="utf-8").splitlines():
        if line.startswith("# MedMO paper, Table "):
            table = int(line.split("Table ")[1][0])
        elif line.startswith("# Table 3"):
            text = line.split("from the text: ")[1]
            for group in text.split("; "):
                benchmark = {"Bacteria": "bacteria", "NIH": "nih_chest_xray"}[group.split()[0]]
                for model, value in re.findall(r"(MedMO-8B|Qwen3VL-8B|Fleming-VL-8B) ([\d.]+)", group):
                    # The text's MedMO-8B grounding figures are the ones before the RL stage (Table 4).
                    key = "medmo_8b_before_rl" if model == "MedMO-8B" else MODEL_ROWS[model]
                    numbers[(benchmark, "iou", key)] = float(value)
        elif line.split("\t")[0] in MODEL_ROWS:
            cells = line.split("\t")
            for (benchmark, column), cell in zip(TABLE_COLUMNS[table], cells[1:], strict=True):
                if cell != "—":
                    numbers[(benchmark, column, MODEL_ROWS[cells[0]])] = float(cell)
    return numbers


# ---- the registry -------------------------------------------------------------------------------

def test_registry_lists_every_benchmark_of_the_paper():
    for group, names in GROUPS.items():
        assert [b.name for b in REGISTRY.benchmarks if b.group == group] == names
    assert REGISTRY.get("synthetic_heldout").origin.kind == "synthetic"
    assert len(REGISTRY.benchmarks) == 25


def test_metric_names_are_known_and_scoring_names_match():
    assert all(m in METRICS for b in REGISTRY.benchmarks for m in b.metrics)
    assert {"closed_vqa_accuracy", "open_vqa_exact_match", "open_vqa_token_f1", "mcq_accuracy", "report_rouge_l",
            "report_cider", "caption_cider", "grounding_mean_iou", "grounding_acc_iou50"} <= SCORED_METRICS
    # Pending are only the model-based plug-ins, and scoring knows a plug-in for each of them.
    assert PENDING_METRICS == set(PLUGIN_METRICS)
    assert {plugin for _, plugin in PLUGIN_METRICS.values()} == {"ratescore", "sembscore", "llm_judge"}


def test_every_report_benchmark_declares_the_papers_four_report_metrics():
    for name in GROUPS["report"]:
        task = REGISTRY.get(name).tasks[0]
        assert REGISTRY.get(name).metrics == [f"{task}_{m}" for m in ("rouge_l", "cider", "ratescore", "sembscore")]
    for name in ("vqa_rad", "slake", "pathvqa"):
        assert {"open_vqa_exact_match", "open_vqa_token_f1"} <= set(REGISTRY.get(name).metrics)


def test_every_reported_number_is_the_papers():
    paper = paper_numbers()
    assert len(paper) == 5 * 16 + 5 * 16 + 5  # Tables 1-2 for five models; the grounding text's five
    checked = 0
    for benchmark in REGISTRY.benchmarks:
        for column, numbers in benchmark.reported.items():
            for model, value in numbers.model_dump().items():
                if value is None:
                    continue
                key = (benchmark.name, column, model)
                if benchmark.group == "grounding" and key not in paper:
                    assert model in ("medmo_8b", "medmo_8b_before_rl"), key  # Table 4 did not survive extraction
                    continue
                assert paper[key] == value, key
                checked += 1
    for group, numbers in REGISTRY.reported_averages.items():
        for model, value in numbers.model_dump().items():
            if value is not None:
                assert paper[("AVG", group, model)] == value, (group, model)
                checked += 1
    # Every number of the paper's tables for these five models is in the registry.
    assert checked == 5 * 16 + 5 * 16 + 5


def test_paper_averages_are_plain_means_of_the_listed_benchmarks():
    for group in ("vqa", "text_qa"):
        members = REGISTRY.average_members(group)
        assert members == GROUPS[group]
        for model in MODEL_ROWS.values():
            values = [getattr(REGISTRY.get(name).reported["accuracy"], model) for name in members]
            assert sum(values) / len(values) == pytest.approx(getattr(REGISTRY.reported_averages[group], model), abs=0.1)  # the paper rounds each number


def _bad_registry(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(REGISTRY_PATH.read_text())
    mutate({b["name"]: b for b in data["benchmarks"]}, data)
    path = tmp_path / "benchmarks.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda b, d: b["vqa_rad"].update(homepage="x"), "benchmark 'vqa_rad', field homepage: Extra inputs"),
    (lambda b, d: b["slake"]["loaders"][0]["options"].update(question_feld="q"),
     "benchmark 'slake', field loaders.0.question_feld: Extra inputs are not permitted"),
    (lambda b, d: b["medqa"]["loaders"][0].update(family="nope"), "benchmark 'medqa', field loaders.0: Value error, unknown adapter family 'nope'"),
    (lambda b, d: b["pathvqa"].update(metrics=["acc"]), "benchmark 'pathvqa', field (entry): Value error, unknown metrics ['acc']"),
    (lambda b, d: b["vqa_rad"]["loaders"][0].update(where={"answer_type": ["CLOSED"]}),
     "benchmark 'vqa_rad', field (entry): Value error, loaders[].where reads a filtered copy"),
    (lambda b, d: b["omnimedvqa"]["loaders"][0]["layouts"][0].update(question_feld="q"),
     "benchmark 'omnimedvqa', field loaders.0.question_feld: Extra inputs are not permitted"),
    (lambda b, d: b["pathvqa"].pop("layout_source"), "benchmark 'pathvqa', field (entry): Value error, a file benchmark needs layout_source"),
    (lambda b, d: b["mimic_cxr"].pop("credentials"), "benchmark 'mimic_cxr', field (entry): Value error, credentials_required"),
    (lambda b, d: b["medmcqa"]["origin"].pop("split"), "benchmark 'medmcqa', field origin: Value error, origin kind 'hub' needs hub_id and split"),
    (lambda b, d: b["medbullets"]["origin"].pop("instructions"), "benchmark 'medbullets', field origin"),
    (lambda b, d: b["vqa_rad"]["answers"].pop("closed_when"), "benchmark 'vqa_rad', field answers: Value error, closed_when"),
    (lambda b, d: b["deeplesion"]["answers"].update(types=["open"]), "benchmark 'deeplesion', field answers"),
    (lambda b, d: b["pmc_vqa"]["reported"]["accuracy"].update(medmo=1.0), "benchmark 'pmc_vqa', field reported.accuracy.medmo"),
    (lambda b, d: b["iu_xray"]["reported"].update(bleu={"medmo_8b": 1, "qwen3_vl_8b": None}), "benchmark 'iu_xray', field reported.bleu"),
    (lambda b, d: d["benchmarks"].append(dict(b["medqa"])), "duplicate benchmark names ['medqa']"),
    (lambda b, d: b["medqa"].update(tasks=["report"]), "benchmark 'medqa', field (entry): Value error, answer types"),
    (lambda b, d: b["medsg_referring"]["answers"].update(box_scale="original_pixels"),
     "benchmark 'medsg_referring', field answers.box_scale: Input should be 'relative_1000' or 'pixels'"),
    (lambda b, d: b["medsg_referring"]["answers"].pop("box_scale"),
     "benchmark 'medsg_referring', field answers: Value error, box_scale is required with answer type 'boxes'"),
    (lambda b, d: b["medqa"]["answers"].update(box_scale="pixels"),
     "benchmark 'medqa', field answers: Value error, box_scale is required with answer type 'boxes' and only then"),
    (lambda b, d: b["iu_xray"].update(metrics=["report_rouge_l", "report_bleu"]), "unknown metrics ['report_bleu']"),
])
def test_registry_errors_name_the_benchmark_and_field(tmp_path, mutate, expected):
    with pytest.raises(RegistryError) as error:
        load_registry(_bad_registry(tmp_path, mutate))
    assert expected in str(error.value)


# ---- loading (the gold round trip of every benchmark: test_benchmark_releases.py) -------------

@pytest.fixture
def credentials(monkeypatch):
    for benchmark in REGISTRY.benchmarks:
        for variable in benchmark.credentials.env if benchmark.credentials else []:
            monkeypatch.setenv(variable, "test")


@pytest.fixture
def no_plugins(monkeypatch):
    for variable in ("MEDMO_RATESCORE_NER_MODEL", "MEDMO_RATESCORE_EVAL_MODEL", "MEDMO_CHEXBERT_CHECKPOINT",
                     "MEDMO_BERT_BASE_DIR", "OPENAI_API_KEY"):
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize("name", GROUPS["report"])
def test_configured_plugins_are_computed_for_the_declared_metrics(tmp_path, credentials, name):
    build_release(name, tmp_path / name)
    rows = load_benchmark(name, None, root=tmp_path / name, partial=True)
    seen = {}

    def fake(plugin):
        def compute(predictions, references):
            seen[plugin] = (list(predictions), list(references))
            return summarize(plugin, [0.25 + 0.5 * (i % 2) for i in range(len(predictions))])
        return compute

    answers = [row["messages"][-1]["content"] for row in rows]
    scores = score_benchmark(rows, answers, REGISTRY.get(name).metrics,
                             plugins={"ratescore": fake("ratescore"), "sembscore": fake("sembscore")})
    task = REGISTRY.get(name).tasks[0]
    values = {result.name: result for result in scores.results}
    assert scores.not_computed == {}
    expected = summarize("x", [0.25 + 0.5 * (i % 2) for i in range(len(rows))]).value
    assert values[f"{task}_ratescore"].value == values[f"{task}_sembscore"].value == pytest.approx(expected)
    assert seen["ratescore"] == (answers, [row["messages"][-1]["content"] for row in rows])
    assert [sample["ratescore"] for sample in scores.per_sample] == [0.25 + 0.5 * (i % 2) for i in range(len(rows))]


def test_cap_per_task_and_subset(tmp_path):
    build_release("mmlu_med", tmp_path)
    rows = load_benchmark("mmlu_med", None, max_per_task=1, root=tmp_path, partial=True)
    assert len(rows) == 6 * 1
    assert rows[0]["id"] == "mmlu_med:anatomy/0" and rows[-1]["id"] == "mmlu_med:professional_medicine/0"


def test_default_root_is_under_medmo_home(medmo_home, monkeypatch):
    monkeypatch.delenv("MEDMO_BENCHMARKS_ROOT", raising=False)
    monkeypatch.delenv("MEDMO_DATA_ROOT", raising=False)
    build_release("medqa", medmo_home / "benchmarks" / "medqa")
    assert len(load_benchmark("medqa", None, partial=True)) == 2


def test_missing_benchmark_names_it_and_says_how_to_get_it(tmp_path):
    with pytest.raises(BenchmarkUnavailable, match=r"benchmark 'vqa_rad' is not at .*nowhere \(missing\)\. "
                       r"Get it with: huggingface-cli download flaviagiammarino/vqa-rad .*\(split test\)"):
        load_benchmark("vqa_rad", None, root=tmp_path / "nowhere")
    with pytest.raises(BenchmarkUnavailable, match=r"benchmark 'medbullets' .*ChallengeClinicalQA"):
        load_benchmark("medbullets", None, root=tmp_path / "nowhere")


def test_a_benchmark_file_lacking_a_column_or_not_parsing_names_the_benchmark_and_the_file(tmp_path):
    """Medbullets as another export (no answer_idx column), MMLU with a damaged Parquet file: the
    load stops naming the benchmark, the file and what is wrong with it, not the adapter's error alone."""
    build_release("medbullets", tmp_path / "medbullets")
    table = (tmp_path / "medbullets" / "medbullets_op5.csv").read_text()
    (tmp_path / "medbullets" / "medbullets_op5.csv").write_text(table.replace("answer_idx", "answer_letter", 1))
    with pytest.raises(BenchmarkLoadError, match=r"benchmark 'medbullets': medbullets_op5.csv has no column "
                                                 r"'answer_idx' that the layout reads \(its columns: 'question', .*"
                                                 r"'answer_letter'.*layout_source"):
        load_benchmark("medbullets", None, root=tmp_path / "medbullets", partial=True)
    build_release("mmlu_med", tmp_path / "mmlu")
    next((tmp_path / "mmlu" / "anatomy").glob("test-*.parquet")).write_bytes(b"PAR1 truncated")
    with pytest.raises(BenchmarkLoadError, match=r"benchmark 'mmlu_med': anatomy/test-.*parquet: not a Parquet file"):
        load_benchmark("mmlu_med", None, root=tmp_path / "mmlu", partial=True)


def test_missing_credential_names_the_benchmark(tmp_path, monkeypatch):
    (tmp_path / "mimic_cxr").mkdir()
    monkeypatch.delenv("PHYSIONET_USERNAME", raising=False)
    with pytest.raises(BenchmarkUnavailable, match="benchmark 'mimic_cxr' needs PhysioNet credentials.*PHYSIONET_USERNAME"):
        load_benchmark("mimic_cxr", None, root=tmp_path / "mimic_cxr")


def test_unknown_benchmark_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown benchmark 'vqa_radd'; known: .*'synthetic_heldout'.*'vqa_rad'"):
        load_benchmark("vqa_radd", None)


def test_the_benchmark_docs_list_every_benchmark_as_the_registry_says():
    from medmo_pipeline.evaluation.catalogue import DOC, document

    text = DOC.read_text(encoding="utf-8")
    assert document(text, REGISTRY) == text, "run: python -m medmo_pipeline.evaluation.catalogue"
    assert all(f"### `{name}`" in text for name in REGISTRY.paper_benchmarks())
