"""The regression guard holds across runs: after a run in which stage 3's guard failed, materializing
rl_policy in a later run refuses to start and names the benchmark, the metric and the drop; a guard
that passed lets it go on (to the next thing it needs)."""

from __future__ import annotations

import dagster as dg

from assets.automation import regression_check
from assets.definitions import build_definitions
from medmo_pipeline.config import load_recipe
from tests.conftest import embedded_recipe_data, write_recipe
from tests.test_regression_guard import fake_eval_table

BENCHMARK = "synthetic_heldout"


def _later_rl_run(tmp_path, child_values: dict[str, float]) -> str:
    data = embedded_recipe_data()
    data["stages"]["stage3"]["guard"] = {"protected": ["grounding_mean_iou"], "margin": 0.05}
    path = write_recipe(tmp_path / "recipe.yaml", data)
    recipe = load_recipe(path)

    def eval_table(name: str, values: dict[str, float]):
        return fake_eval_table(tmp_path, recipe, name, values)

    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        first = dg.materialize([eval_table("stage2", {"grounding_mean_iou": 0.30}), eval_table("stage3", child_values),
                                regression_check("stage3", recipe)], instance=instance, raise_on_error=False,
                               partition_key=BENCHMARK)
        assert len(first.get_asset_check_evaluations()) == 1  # a failed blocking check fails that run
        defs = build_definitions(recipe, path)
        later = dg.materialize(list(defs.assets), selection=[dg.AssetKey("rl_policy")], resources=defs.resources,
                               instance=instance, raise_on_error=False)
        assert not later.success
        [failure] = [e for e in later.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        return failure.step_failure_data.error.message


def test_a_failed_guard_in_an_earlier_run_stops_the_next_stage(tmp_path):
    message = _later_rl_run(tmp_path, {"grounding_mean_iou": 0.12})
    assert "rl_policy refuses to start" in message
    assert f"benchmark {BENCHMARK}" in message and "grounding_mean_iou fell from 0.300 to 0.120 (-0.180)" in message


def test_a_passed_guard_lets_the_next_stage_go_on(tmp_path):
    message = _later_rl_run(tmp_path, {"grounding_mean_iou": 0.29})
    assert "refuses to start" not in message and "has not been materialized yet" in message


def test_training_waits_for_its_pool_and_the_schedule_starts_off():
    import yaml

    from assets.definitions import default_definitions
    from tests.conftest import ROOT

    defs = default_definitions()
    graph = defs.resolve_asset_graph()
    pools = {key.to_user_string(): graph.get(key).pools for key in graph.get_all_asset_keys()
             if not graph.get(key).is_external}
    assert {k for k, v in pools.items() if v == {"training"}} == {
        "stage1_checkpoint", "stage2_checkpoint", "stage3_checkpoint", "rl_policy"}
    assert all(not v for k, v in pools.items() if k.endswith("_eval_table") or k.startswith("corpus"))
    instance = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    # The pool's limit comes from the profile's GPUs (tests/test_training_pool.py), not from the file.
    assert "run_coordinator" not in instance and instance["concurrency"]["pools"]["granularity"] == "op"
    assert instance["concurrency"]["runs"]["max_concurrent_runs"] > 1  # evaluations never queue behind training
    schedule = defs.resolve_schedule_def("nightly_policy_evaluation")
    assert schedule.default_status.value == "STOPPED"
