"""The benchmark registry: every benchmark the paper reports, read by the training adapters from
fixtures in each benchmark's real format; validation errors; missing files and credentials;
the paper's reported numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from fixtures_formats import build_fixture, png_bytes, write_file

from medmo_pipeline.data.adapters.choices import LETTERS
from medmo_pipeline.data.schema import validate_row
from medmo_pipeline.evaluation.benchmarks import load_benchmark
from medmo_pipeline.evaluation.gold import UnreadableGold
from medmo_pipeline.evaluation.metrics import summarize
from medmo_pipeline.evaluation.registry import (
    METRICS,
    PENDING_METRICS,
    REGISTRY_PATH,
    SCORED_METRICS,
    BenchmarkUnavailable,
    RegistryError,
    load_registry,
)
from medmo_pipeline.evaluation.scoring import PLUGIN_METRICS, score_benchmark

REGISTRY = load_registry()
FILE_BENCHMARKS = [b.name for b in REGISTRY.benchmarks if b.origin.kind != "synthetic"]

PAPER = {  # MEDMO_RECIPE.md, "Evaluation" (grounding: Table 4, after RL / before RL)
    "mmmu_med": {"accuracy": 64.6}, "vqa_rad": {"accuracy": 64.7}, "slake": {"accuracy": 81.6},
    "pathvqa": {"accuracy": 56.3}, "pmc_vqa": {"accuracy": 59.4}, "omnimedvqa": {"accuracy": 84.8},
    "medxpertqa_mm": {"accuracy": 26.2},
    "mmlu_med": {"accuracy": 81.0}, "pubmedqa": {"accuracy": 77.6}, "medmcqa": {"accuracy": 65.0},
    "medqa": {"accuracy": 90.4}, "medbullets": {"accuracy": 60.2}, "medxpertqa_text": {"accuracy": 19.9},
    "supergpqa": {"accuracy": 36.0},
    "mimic_cxr": {"rouge_l": 31.7, "cider": 140.0, "ratescore": 57.1, "sembscore": 50.0},
    "chexpert_plus": {"rouge_l": 23.6, "cider": 87.5, "ratescore": 47.3, "sembscore": 42.2},
    "iu_xray": {"rouge_l": 31.1, "cider": 169.7, "ratescore": 45.3, "sembscore": 41.3},
    "medtrinity": {"rouge_l": 37.0, "cider": 270.4, "ratescore": 53.0, "sembscore": 39.2},
    "nih_chest_xray": {"iou": 13.3}, "deeplesion": {"iou": 38.9}, "bacteria": {"iou": 55.0}, "medsg": {"iou": None},
}
BEFORE_RL = {"nih_chest_xray": 8.8, "deeplesion": 38.5, "bacteria": 54.6}
AVERAGES = {"vqa": (62.5, 48.8), "text_qa": (61.4, 54.5)}
GROUPS = {
    "vqa": ["mmmu_med", "vqa_rad", "slake", "pathvqa", "pmc_vqa", "omnimedvqa", "medxpertqa_mm"],
    "text_qa": ["mmlu_med", "pubmedqa", "medmcqa", "medqa", "medbullets", "medxpertqa_text", "supergpqa"],
    "report": ["mimic_cxr", "chexpert_plus", "iu_xray", "medtrinity"],
    "grounding": ["nih_chest_xray", "deeplesion", "bacteria", "medsg"],
}


# ---- fixtures in real formats the shared builders do not write ---------------------------------

def _mmlu(root: Path, options: dict) -> int:
    """cais/mmlu parquet: question, subject, choices (list), answer (0-based int)."""
    path = root / options["file"].replace("*", "00000-of-00001")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([
        {"question": f"Which nerve {i}?", "subject": "anatomy", "choices": ["Vagus", "Facial", "Optic", "Ulnar"],
         "answer": i % 4} for i in range(3)]), path)
    return 3


def _mmmu(root: Path, options: dict) -> int:
    """MMMU validation rows exported as the registry's instructions say."""
    write_file(root, f"images/{options['file'].split('/')[0]}_1.png", png_bytes(seed=1))
    record = {"id": "validation_Pharmacy_1", "question": "Which drug is shown?\nA. Aspirin\nB. Heparin",
              "answer": "B", "image_1": f"{options['file'].split('/')[0]}_1.png"}
    write_file(root, options["file"], json.dumps(record) + "\n")
    return 1


def _medxpertqa_mm(root: Path, options: dict) -> int:
    """MedXpertQA MM/test.jsonl: options dict, label letter, images list (files from images.zip)."""
    lines = []
    for i in range(2):
        write_file(root, f"images/MM-{i}-a.jpeg", png_bytes(seed=i))
        lines.append(json.dumps({
            "id": f"MM-{i}", "question": f"Case {i}. What is the diagnosis?\nAnswer Choices: (A) x (B) y (C) z (D) w (E) v",
            "options": {"A": "x", "B": "y", "C": "z", "D": "w", "E": "v"}, "label": "CE"[i],
            "images": [f"MM-{i}-a.jpeg"], "medical_task": "Diagnosis", "body_system": "Lymphatic",
            "question_type": "Reasoning"}))
    write_file(root, options["file"], "\n".join(lines) + "\n")
    return 2


def _omnimedvqa(root: Path, options: dict) -> int:
    """OmniMedVQA QA_information/Open-access/<dataset>.json with Images/ paths relative to the root."""
    records = []
    for i in range(3):
        write_file(root, f"Images/ACRIMA/img{i}.png", png_bytes(seed=i))
        records.append({"dataset": "ACRIMA", "question_id": f"ACRIMA_{i:04d}", "question_type": "Disease Diagnosis",
                        "question": "What is the finding in this fundus image?", "gt_answer": "Glaucoma",
                        "image_path": f"Images/ACRIMA/img{i}.png", "option_A": "Normal", "option_B": "Glaucoma",
                        "option_C": "Cataract", "option_D": "Myopia", "modality_type": "Fundus Photography"})
    write_file(root, options["file"].replace("*", "ACRIMA"), json.dumps(records))
    return 3


CUSTOM = {"mmlu_med": _mmlu, "mmmu_med": _mmmu, "medxpertqa_mm": _medxpertqa_mm, "omnimedvqa": _omnimedvqa}
EVAL_ONLY = {"deeplesion": 1}  # the builder writes one test-subset slice (Train_Val_Test 3) of two


def build_benchmark(name: str, root: Path) -> int:
    """A fixture directory for benchmark ``name``; returns how many rows it should yield."""
    root.mkdir(parents=True, exist_ok=True)
    total = 0
    for loader in REGISTRY.get(name).loaders:
        if name in CUSTOM:
            total += CUSTOM[name](root, dict(loader.options))
        else:
            total += build_fixture(loader.family, root, dict(loader.options))
    return EVAL_ONLY.get(name, total)


@pytest.fixture
def credentials(monkeypatch):
    for benchmark in REGISTRY.benchmarks:
        for variable in benchmark.credentials.env if benchmark.credentials else []:
            monkeypatch.setenv(variable, "test")


# ---- the registry -------------------------------------------------------------------------------

def test_registry_lists_every_benchmark_of_the_paper():
    for group, names in GROUPS.items():
        assert [b.name for b in REGISTRY.benchmarks if b.group == group] == names
    assert REGISTRY.get("synthetic_heldout").origin.kind == "synthetic"
    assert len(REGISTRY.benchmarks) == 23


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


@pytest.mark.parametrize("name", list(PAPER))
def test_reported_numbers_equal_the_recipe(name):
    reported = REGISTRY.get(name).reported
    assert {column: numbers.medmo_8b for column, numbers in reported.items()} == PAPER[name]
    assert all(numbers.qwen3_vl_8b is None for numbers in reported.values())  # the paper gives only averages
    assert reported.get("iou") is None or reported["iou"].medmo_8b_before_rl == BEFORE_RL.get(name)


def test_reported_averages_and_long_rows():
    averages = {group: (n.medmo_8b, n.qwen3_vl_8b) for group, n in REGISTRY.reported_averages.items()}
    assert averages == AVERAGES
    rows = REGISTRY.reported_rows()
    assert {"benchmark": "vqa_rad", "group": "vqa", "column": "accuracy", "model": "medmo_8b", "value": 64.7} in rows
    assert len(rows) == 7 + 7 + 16 + 3 + 3


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
    (lambda b, d: b["pathvqa"].update(metrics=["accuracy"]), "benchmark 'pathvqa', field (entry): Value error, unknown metrics ['accuracy']"),
    (lambda b, d: b["mimic_cxr"].pop("credentials"), "benchmark 'mimic_cxr', field (entry): Value error, credentials_required"),
    (lambda b, d: b["medmcqa"]["origin"].pop("split"), "benchmark 'medmcqa', field origin: Value error, origin kind 'hub' needs hub_id and split"),
    (lambda b, d: b["medbullets"]["origin"].pop("instructions"), "benchmark 'medbullets', field origin"),
    (lambda b, d: b["vqa_rad"]["answers"].pop("closed_when"), "benchmark 'vqa_rad', field answers: Value error, closed_when"),
    (lambda b, d: b["deeplesion"]["answers"].update(types=["open"]), "benchmark 'deeplesion', field answers"),
    (lambda b, d: b["pmc_vqa"]["reported"]["accuracy"].update(medmo=1.0), "benchmark 'pmc_vqa', field reported.accuracy.medmo"),
    (lambda b, d: b["pmc_vqa"]["reported"]["accuracy"].pop("qwen3_vl_8b"), "field reported.accuracy.qwen3_vl_8b: Field required"),
    (lambda b, d: b["iu_xray"]["reported"].update(bleu={"medmo_8b": 1, "qwen3_vl_8b": None}), "benchmark 'iu_xray', field reported.bleu"),
    (lambda b, d: d["benchmarks"].append(dict(b["medqa"])), "duplicate benchmark names ['medqa']"),
    (lambda b, d: b["medqa"].update(tasks=["report"]), "benchmark 'medqa', field (entry): Value error, answer types"),
    (lambda b, d: b["medsg"]["answers"].update(box_scale="original_pixels"),
     "benchmark 'medsg', field answers.box_scale: Input should be 'relative_1000' or 'pixels'"),
    (lambda b, d: b["medsg"]["answers"].pop("box_scale"),
     "benchmark 'medsg', field answers: Value error, box_scale is required with answer type 'boxes'"),
    (lambda b, d: b["medqa"]["answers"].update(box_scale="pixels"),
     "benchmark 'medqa', field answers: Value error, box_scale is required with answer type 'boxes' and only then"),
    (lambda b, d: b["iu_xray"].update(metrics=["report_rouge_l", "report_bleu"]), "unknown metrics ['report_bleu']"),
])
def test_registry_errors_name_the_benchmark_and_field(tmp_path, mutate, expected):
    with pytest.raises(RegistryError) as error:
        load_registry(_bad_registry(tmp_path, mutate))
    assert expected in str(error.value)


# ---- loading ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", FILE_BENCHMARKS)
def test_loader_reads_a_fixture_in_the_benchmarks_real_format(tmp_path, credentials, name):
    benchmark = REGISTRY.get(name)
    expected = build_benchmark(name, tmp_path / name)
    rows = load_benchmark(name, None, root=tmp_path / name)
    assert len(rows) == expected > 0
    for row in rows:
        validate_row(row)
        assert row["split"] == "eval" and row["source"] == name and row["license"] == benchmark.licence
        assert row["task"] in benchmark.tasks and row["messages"][-1]["content"]
        assert row["id"].startswith(f"{name}:")
        if benchmark.answers.types == ["multiple_choice"]:
            assert row["answer"] in LETTERS and (not row["choices"] or LETTERS.index(row["answer"]) < len(row["choices"]))
        if row["task"] != "text_qa" and benchmark.origin.kind != "synthetic":
            assert row["images"] and all(image["bytes"] for image in row["images"])
    assert len({row["id"] for row in rows}) == len(rows)
    assert load_benchmark(name, None, root=tmp_path / name) == rows  # deterministic


@pytest.fixture
def no_plugins(monkeypatch):
    for variable in ("MEDMO_RATESCORE_NER_MODEL", "MEDMO_RATESCORE_EVAL_MODEL", "MEDMO_CHEXBERT_CHECKPOINT",
                     "MEDMO_BERT_BASE_DIR", "OPENAI_API_KEY"):
        monkeypatch.delenv(variable, raising=False)


# What the gold reply scores on each metric. CIDEr of a perfect reply is 10 on pycocoevalcap's scale
# when each n-gram order has an n-gram not in every reference (the fixtures number their reports);
# IoU is 1 up to the 0-1000 scale's rounding.
PERFECT = {"report_cider": 10.0, "caption_cider": 10.0}


@pytest.mark.parametrize("name", FILE_BENCHMARKS)
def test_scoring_produces_the_registry_metrics(tmp_path, credentials, no_plugins, name):
    build_benchmark(name, tmp_path / name)
    rows = load_benchmark(name, None, root=tmp_path / name)
    declared = REGISTRY.get(name).metrics
    scores = score_benchmark(rows, [row["messages"][-1]["content"] for row in rows], declared)
    values = {result.name: result for result in scores.results}
    # Every declared metric is either computed or named as not computed; only plug-ins may be missing.
    assert set(declared) <= set(values) | set(scores.not_computed)
    assert set(scores.not_computed) == set(declared) & PENDING_METRICS
    for metric in set(declared) & SCORED_METRICS:
        result = values[metric]
        assert 0 < result.n <= len(rows) and result.ci_low <= result.value <= result.ci_high, metric
        if metric.endswith("mean_iou"):
            assert result.value >= 0.95, metric
        else:
            assert result.value == pytest.approx(PERFECT.get(metric, 1.0), abs=1e-9), metric
    for metric, reason in scores.not_computed.items():  # what is missing is named, not dropped
        assert reason.startswith(f"{PLUGIN_METRICS[metric][1]} plug-in unavailable: ")
        assert any(hint in reason for hint in ("not installed", "MEDMO_", "OPENAI_API_KEY")), reason


@pytest.mark.parametrize("name", GROUPS["report"])
def test_configured_plugins_are_computed_for_the_declared_metrics(tmp_path, credentials, name):
    build_benchmark(name, tmp_path / name)
    rows = load_benchmark(name, None, root=tmp_path / name)
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


def test_a_grounding_row_without_a_readable_gold_box_fails_the_load_naming_it(tmp_path):
    records = [{"id": f"s{i}", "image": f"s{i}.png",
                "conversations": [{"from": "human", "value": "<image>\nLocate the nodule."},
                                  {"from": "gpt", "value": reply}]}
               for i, reply in enumerate(["Nodule <box>[[250, 500, 750, 1000]]</box>", "No nodule is visible.",
                                          "Nodule at [[0.2, 0.3]]"])]
    for i in range(3):
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "images" / f"s{i}.png").write_bytes(png_bytes(40, 30, seed=i))
    (tmp_path / "test.json").write_text(json.dumps(records))
    with pytest.raises(UnreadableGold) as error:
        load_benchmark("medsg", None, root=tmp_path)
    message = str(error.value)
    assert message.startswith("benchmark 'medsg': 2 grounding row(s) have no gold box and cannot be scored")
    assert "medsg:s1: no box readable in its reply 'No nodule is visible.'" in message
    assert "medsg:s2: no box readable" in message and "medsg:s0" not in message


def test_cap_per_task_and_subset(tmp_path):
    build_benchmark("mmlu_med", tmp_path)
    rows = load_benchmark("mmlu_med", None, max_per_task=2, root=tmp_path)
    assert len(rows) == 6 * 2
    assert rows[0]["id"] == "mmlu_med:anatomy/0" and rows[-1]["id"] == "mmlu_med:professional_medicine/1"


def test_default_root_is_under_medmo_home(medmo_home):
    build_benchmark("medqa", medmo_home / "benchmarks" / "medqa")
    assert len(load_benchmark("medqa", None)) == 3


def test_missing_benchmark_names_it_and_says_how_to_get_it(tmp_path):
    with pytest.raises(BenchmarkUnavailable, match=r"benchmark 'vqa_rad' is not at .*nowhere \(missing\)\. "
                       r"Get it with: huggingface-cli download flaviagiammarino/vqa-rad .*\(split test\)"):
        load_benchmark("vqa_rad", None, root=tmp_path / "nowhere")
    with pytest.raises(BenchmarkUnavailable, match=r"benchmark 'medbullets' .*ChallengeClinicalQA"):
        load_benchmark("medbullets", None, root=tmp_path / "nowhere")


def test_missing_credential_names_the_benchmark(tmp_path, monkeypatch):
    (tmp_path / "mimic_cxr").mkdir()
    monkeypatch.delenv("PHYSIONET_USERNAME", raising=False)
    with pytest.raises(BenchmarkUnavailable, match="benchmark 'mimic_cxr' needs PhysioNet credentials.*PHYSIONET_USERNAME"):
        load_benchmark("mimic_cxr", None, root=tmp_path / "mimic_cxr")


def test_unknown_benchmark_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown benchmark 'vqa_radd'; known: .*'synthetic_heldout'.*'vqa_rad'"):
        load_benchmark("vqa_radd", None)
