"""Evaluation tables partitioned by benchmark, the stage ablation with the paper's reported rows, and
the nightly re-evaluation schedule."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.definitions import build_definitions
from medmo_pipeline.config import load_recipe
from medmo_pipeline.evaluation.ablation import build_stage_ablation
from medmo_pipeline.evaluation.run import TABLE_COLUMNS, publish_eval_table
from tests.conftest import embedded_recipe_data, write_recipe

EVAL_ASSETS = ["base_model_eval_table", "stage1_checkpoint_eval_table", "stage2_checkpoint_eval_table",
               "stage3_checkpoint_eval_table", "rl_policy_eval_table"]


def _defs(tmp_path, benchmarks: list[str]):
    data = embedded_recipe_data()
    data["evaluation"]["benchmarks"] = benchmarks
    path = write_recipe(tmp_path / f"recipe-{len(benchmarks)}.yaml", data)
    return build_definitions(load_recipe(path), path)


@pytest.fixture
def vqa_rad_copy(tmp_path, monkeypatch):
    """A VQA-RAD copy under the benchmarks root, so the recipe's vqa_rad has a partition."""
    from benchmark_releases import build_release

    monkeypatch.setenv("MEDMO_BENCHMARKS_ROOT", str(tmp_path / "benchmarks"))
    build_release("vqa_rad", tmp_path / "benchmarks" / "vqa_rad")


def test_every_evaluation_table_has_one_partition_per_benchmark(tmp_path, vqa_rad_copy):
    graph = _defs(tmp_path, ["synthetic_heldout", "vqa_rad"]).resolve_asset_graph()
    for name in EVAL_ASSETS:
        assert graph.get(dg.AssetKey(name)).partitions_def.get_partition_keys() == ["synthetic_heldout", "vqa_rad"]


def test_adding_a_benchmark_changes_no_evaluation_code_version(tmp_path, vqa_rad_copy):
    one = _defs(tmp_path, ["synthetic_heldout"]).resolve_asset_graph()
    two = _defs(tmp_path, ["synthetic_heldout", "vqa_rad"]).resolve_asset_graph()
    for name in EVAL_ASSETS:
        key = dg.AssetKey(name)
        assert one.get(key).code_version == two.get(key).code_version, name


def test_nightly_schedule_asks_for_the_policy_on_every_benchmark(tmp_path, vqa_rad_copy):
    import datetime

    defs = _defs(tmp_path, ["synthetic_heldout", "vqa_rad"])
    schedule = defs.resolve_schedule_def("nightly_policy_evaluation")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED  # off until switched on
    when = datetime.datetime(2026, 11, 23, 2, 0, tzinfo=datetime.UTC)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                            repository_def=defs.get_repository_def())
        requests = list(schedule.evaluate_tick(context).run_requests)
    assert [(r.partition_key, [k.to_user_string() for k in r.asset_selection]) for r in requests] == [
        ("synthetic_heldout", ["rl_policy_eval_table"]), ("vqa_rad", ["rl_policy_eval_table"])]
    assert {r.run_key for r in requests} == {"2026-11-23:synthetic_heldout", "2026-11-23:vqa_rad"}


def _eval_dir(root, checkpoint: str, benchmark: str, values: dict[str, float]):
    rows = [{"checkpoint": checkpoint, "benchmark": benchmark, "metric": m, "value": v, "n": 50,
             "ci_low": v - 0.05, "ci_high": v + 0.05, "unparseable": 0, "empty": 0} for m, v in values.items()]
    directory = root / checkpoint / benchmark
    publish_eval_table(directory, pd.DataFrame(rows, columns=TABLE_COLUMNS), [{"score": 1.0}], lineage={})
    return directory


def test_stage_ablation_joins_benchmarks_and_adds_the_papers_reported_rows(tmp_path):
    eval_dirs = {
        name: [_eval_dir(tmp_path / "eval", name, "synthetic_heldout",
                         {"grounding_mean_iou": 0.1 * i, "closed_vqa_accuracy": 0.5 + 0.1 * i}),
               _eval_dir(tmp_path / "eval", name, "vqa_rad", {"closed_vqa_accuracy": 0.4 + 0.1 * i,
                                                             "accuracy": 0.3 + 0.1 * i})]
        for i, name in enumerate(["base_model", "stage1", "stage2", "stage3", "rl"])
    }
    result = build_stage_ablation(eval_dirs, tmp_path / "reports")
    table = pd.read_csv(result["csv"], index_col="checkpoint")
    assert list(table.index) == ["base_model", "stage1", "stage2", "stage3", "rl", "MedMO-8B (reported)",
                                 "Qwen3VL-8B (reported)"]
    assert table.loc["stage2", "vqa_rad/closed_vqa_accuracy"] == 0.6
    assert table.loc["rl", "synthetic_heldout/grounding_mean_iou"] == 0.4
    # Table 1: MedMO-8B 64.7 and Qwen3VL-8B 64.1 on VQA-RAD (accuracy).
    assert table.loc["MedMO-8B (reported)", "vqa_rad/accuracy"] == 0.647
    assert table.loc["Qwen3VL-8B (reported)", "vqa_rad/accuracy"] == 0.641
    # The paper comparison: every benchmark the paper reports, ours beside five reported models, Avg. columns.
    paper = pd.read_csv(result["paper_csv"], index_col="model")
    assert paper.loc["rl", "vqa_rad/accuracy"] == pytest.approx(70.0)
    assert paper.loc["MedMO-8B (reported)", "mimic_cxr/cider"] == 140.0
    assert paper.loc["Qwen3VL-8B (reported)", "iu_xray/rouge_l"] == 25.0
    assert paper.loc["Lingshu-7B (reported)", "VQA Avg."] == 61.8 and np.isnan(paper.loc["rl", "VQA Avg."])
    assert {"Fleming-VL-8B (reported)", "MedMO-4B (reported)"} <= set(paper.index)
    assert {f"{b}/accuracy" for b in ("mmmu_med", "supergpqa")} <= set(paper.columns)
    for key in ("png", "qa_png", "reports_grounding_png", "paper_png"):
        assert result[key].stat().st_size > 10_000, key


def test_stage_ablation_of_one_benchmark_keeps_plain_metric_columns_and_no_reported_rows(tmp_path):
    eval_dirs = {name: _eval_dir(tmp_path / "eval", name, "synthetic_heldout", {"mcq_accuracy": 0.25})
                 for name in ["base_model", "rl"]}
    table = build_stage_ablation(eval_dirs, tmp_path / "reports")["table"]
    assert list(table.columns) == ["mcq_accuracy"] and list(table.index) == ["base_model", "rl"]


def _report_rows(n: int) -> list[dict]:
    return [{"id": f"r{i}", "source": "b", "task": "report", "answer": "", "choices": [], "boxes": [], "images": [],
             "messages": [{"role": "user", "content": "Report?"},
                          {"role": "assistant", "content": f"Lungs are clear {i}. No effusion."}]} for i in range(n)]


def test_declared_metrics_not_computed_stay_in_the_table_with_the_reason(tmp_path, monkeypatch):
    import math

    from medmo_pipeline.evaluation.regression import find_drops
    from medmo_pipeline.evaluation.run import _markdown, table_rows
    from medmo_pipeline.evaluation.scoring import score_benchmark

    monkeypatch.delenv("MEDMO_CHEXBERT_CHECKPOINT", raising=False)
    rows = _report_rows(4)
    declared = ["report_rouge_l", "report_cider", "report_sembscore", "caption_cider"]
    scores = score_benchmark(rows, [r["messages"][-1]["content"] for r in rows], declared)
    table = pd.DataFrame(table_rows("stage2", "mimic_cxr", scores), columns=TABLE_COLUMNS)
    publish_eval_table(tmp_path / "eval", table, scores.per_sample, lineage={})
    table = pd.read_parquet(tmp_path / "eval" / "table.parquet").set_index("metric")
    assert list(table.index) == ["report_rouge_l", "report_cider", "report_sembscore", "caption_cider"]
    assert table.loc["report_cider", "value"] == pytest.approx(10.0)  # pycocoevalcap's scale: a copy of each report
    assert "beta 1" in table.loc["report_rouge_l", "note"] and "pycocoevalcap" in table.loc["report_cider", "note"]
    assert math.isnan(table.loc["report_sembscore", "value"]) and table.loc["report_sembscore", "n"] == 0
    assert table.loc["report_sembscore", "note"].startswith("not computed: sembscore plug-in unavailable: ")
    assert "MEDMO_CHEXBERT_CHECKPOINT" in table.loc["report_sembscore", "note"]
    assert table.loc["caption_cider", "note"] == "not computed: no evaluated row is of the kind this metric scores"
    assert "| mimic_cxr | report_sembscore | - | - | 0 | 0 | not computed: sembscore" in _markdown(table.reset_index())
    predictions = pd.read_parquet(tmp_path / "eval" / "predictions.parquet")
    assert predictions["cider"].tolist() == pytest.approx([10.0] * 4)
    # The regression guard: a metric the child did not compute is a drop; one the parent did not, none.
    parent = table.reset_index().assign(value=lambda t: t["value"].fillna(0.5))
    drops = find_drops(parent, table.reset_index(), ["report_sembscore", "report_cider"], 0.05)
    assert [(d.metric, d.child) for d in drops] == [("report_sembscore", 0.0)]
    assert find_drops(table.reset_index(), table.reset_index(), ["report_sembscore"], 0.05) == []


def test_stage_ablation_plots_cider_and_skips_metrics_not_computed(tmp_path):
    eval_dirs = {name: _eval_dir(tmp_path / "eval", name, "iu_xray",
                                 {"report_rouge_l": 0.2 + 0.05 * i, "report_cider": 0.5 + i, "report_ratescore": float("nan")})
                 for i, name in enumerate(["base_model", "stage2", "rl"])}
    result = build_stage_ablation(eval_dirs, tmp_path / "reports")
    table = result["table"]
    assert table.loc["rl", "report_cider"] == 2.5
    assert table.loc["MedMO-8B (reported)", "cider"] == pytest.approx(1.697)  # 169.7 in the paper's x100 print
    assert "report_ratescore" not in table.columns  # never computed: no column of empty values
    assert result["reports_grounding_png"].stat().st_size > 10_000


def test_benchmarks_without_a_local_copy_get_no_partition_and_are_listed_with_how_to_get_them(
        tmp_path, medmo_home, monkeypatch):
    from benchmark_releases import build_release

    monkeypatch.setenv("MEDMO_BENCHMARKS_ROOT", str(tmp_path / "benchmarks"))
    build_release("medqa", tmp_path / "benchmarks" / "medqa")
    graph = _defs(tmp_path, ["synthetic_heldout", "medqa", "vqa_rad"]).resolve_asset_graph()
    for name in EVAL_ASSETS:
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def.get_partition_keys() == ["synthetic_heldout", "medqa"]
        missing = node.metadata["missing_benchmarks"].value
        assert list(missing) == ["vqa_rad"] and "huggingface-cli download flaviagiammarino/vqa-rad" in missing["vqa_rad"]


def test_an_evaluation_partition_whose_copy_went_away_fails_fast_naming_how_to_get_it(
        tmp_path, medmo_home, monkeypatch):
    import shutil

    from benchmark_releases import build_release

    monkeypatch.setenv("MEDMO_BENCHMARKS_ROOT", str(tmp_path / "benchmarks"))
    build_release("medqa", tmp_path / "benchmarks" / "medqa")
    defs = _defs(tmp_path, ["synthetic_heldout", "medqa"])
    shutil.rmtree(tmp_path / "benchmarks" / "medqa")
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        result = dg.materialize(list(defs.assets), selection=[dg.AssetKey("base_model_eval_table")],
                                partition_key="medqa", resources=defs.resources, instance=instance,
                                raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.user_failure_data.description
    # Failed before the checkpoint was looked up: its message is the benchmark's, not "not materialized yet".
    assert message.startswith("benchmark 'medqa' is not at ") and "GBaker/MedQA-USMLE-4-options" in message
    assert failure.step_failure_data.user_failure_data.metadata["benchmark"].value == "medqa"


def test_the_evaluation_job_fails_on_a_missing_benchmark_before_any_model_loads(tmp_path, medmo_home, monkeypatch):
    from medmo_pipeline.evaluation import run
    from medmo_pipeline.model import loading

    monkeypatch.delenv("MEDMO_BENCHMARKS_ROOT", raising=False)
    monkeypatch.delenv("MEDMO_DATA_ROOT", raising=False)

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(loading, "load_model", no_model)
    data = embedded_recipe_data()
    data["evaluation"]["benchmarks"] = ["synthetic_heldout", "medqa"]
    recipe = write_recipe(tmp_path / "recipe.yaml", data)
    index = tmp_path / "index.json"
    index.write_text('{"sources": {}}')
    with pytest.raises(BaseException) as error:  # the entry point reports the failure and exits
        run.main(["--recipe", str(recipe), "--name", "base_model", "--checkpoint", "x", "--corpus", str(index),
                  "--output", str(tmp_path / "out"), "--benchmark", "medqa"])
    text = str(error.value) + repr(error.value.__context__)
    assert "benchmark 'medqa' is not at" in text and "GBaker/MedQA-USMLE-4-options" in text


def test_unavailable_lists_missing_benchmarks_with_how_to_get_them(tmp_path, monkeypatch):
    from benchmark_releases import build_release

    from medmo_pipeline.data.benchmarks.loading import unavailable

    monkeypatch.setenv("MEDMO_BENCHMARKS_ROOT", str(tmp_path))
    build_release("medqa", tmp_path / "medqa")
    missing = unavailable(["synthetic_heldout", "medqa", "vqa_rad", "medsg_referring"])
    assert set(missing) == {"vqa_rad", "medsg_referring"}
    assert "huggingface-cli download flaviagiammarino/vqa-rad" in missing["vqa_rad"]
    assert str(tmp_path / "medsg") in missing["medsg_referring"]
