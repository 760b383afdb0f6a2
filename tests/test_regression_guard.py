"""The regression guard: a protected metric that drops below the parent's stops the next stage.

The guard check is the real one from the asset layer, run by a real Dagster instance. The two
evaluation tables it compares are written by small stand-in assets (real Parquet tables in the
evaluation format), so the test needs no training; the next stage is a stand-in that records
whether it ran.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from assets.automation import regression_check
from assets.evaluation import benchmark_partitions
from assets.keys import eval_key
from medmo_pipeline.config import load_recipe
from medmo_pipeline.evaluation.regression import find_drops
from medmo_pipeline.evaluation.run import TABLE_COLUMNS
from tests.conftest import embedded_recipe_data, write_recipe


def _table(values: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame([{"checkpoint": "x", "benchmark": "synthetic_heldout", "metric": m, "value": v, "n": 100,
                          "ci_low": v, "ci_high": v, "unparseable": 0, "empty": 0} for m, v in values.items()],
                        columns=TABLE_COLUMNS)


def fake_eval_table(tmp_path, recipe, name: str, values: dict[str, float]):
    """An eval-table asset that writes a table of `values` under tmp_path (no model runs)."""
    @dg.asset(key=eval_key(name), partitions_def=benchmark_partitions(recipe))
    def _table_asset(context) -> dg.MaterializeResult:
        directory = tmp_path / name / context.partition_key
        directory.mkdir(parents=True, exist_ok=True)
        _table(values).to_parquet(directory / "table.parquet", index=False)
        return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(directory))})

    return _table_asset


def test_find_drops_respects_margin_protection_and_missing_metrics():
    parent = _table({"grounding_mean_iou": 0.40, "closed_vqa_accuracy": 0.95, "report_rouge_l": 0.9})
    child = _table({"grounding_mean_iou": 0.37, "closed_vqa_accuracy": 0.80})
    drops = find_drops(parent, child, ["grounding_mean_iou", "closed_vqa_accuracy", "report_rouge_l"], 0.05)
    assert [(d.metric, round(d.drop, 3)) for d in drops] == [("closed_vqa_accuracy", 0.15), ("report_rouge_l", 0.9)]
    assert find_drops(parent, child, ["grounding_mean_iou"], 0.05) == []  # -0.03 is within the margin
    assert find_drops(parent, child, [], 0.0) == []


def _run(tmp_path, child_values: dict[str, float]):
    data = embedded_recipe_data()
    data["stages"]["stage3"]["guard"] = {"protected": ["grounding_mean_iou", "closed_vqa_accuracy"], "margin": 0.05}
    recipe = load_recipe(write_recipe(tmp_path / "recipe.yaml", data))
    ran = []

    def eval_table(name: str, values: dict[str, float]):
        return fake_eval_table(tmp_path, recipe, name, values)

    @dg.asset(key="rl_policy", deps=[eval_key("stage3")])
    def next_stage() -> None:
        ran.append(True)

    parent = eval_table("stage2", {"grounding_mean_iou": 0.30, "closed_vqa_accuracy": 1.0})
    child = eval_table("stage3", child_values)
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        result = dg.materialize([parent, child, next_stage, regression_check("stage3", recipe)],
                                instance=instance, raise_on_error=False, partition_key="synthetic_heldout")
        evaluations = result.get_asset_check_evaluations()
    return ran, evaluations


def test_guard_stops_the_next_stage_when_a_protected_score_drops(tmp_path):
    ran, [evaluation] = _run(tmp_path, {"grounding_mean_iou": 0.12, "closed_vqa_accuracy": 1.0})
    assert not evaluation.passed
    assert "grounding_mean_iou fell from 0.300 to 0.120" in evaluation.description
    assert evaluation.metadata["benchmark"].value == "synthetic_heldout"
    assert ran == []


def test_guard_lets_the_next_stage_run_when_nothing_drops(tmp_path):
    ran, [evaluation] = _run(tmp_path, {"grounding_mean_iou": 0.28, "closed_vqa_accuracy": 0.99})
    assert evaluation.passed
    assert ran == [True]


@pytest.mark.parametrize("name", ["embedded", "paper"])
def test_shipped_recipes_guard_every_stage_after_the_first(name):
    recipe = load_recipe(name)
    assert all(recipe.stage(s).guard.protected for s in ["stage2", "stage3", "rl"])
