"""The RL policy is registered in MLflow's model registry with its lineage (a real sqlite MLflow store)."""

from __future__ import annotations

import pytest


def test_register_checkpoint_records_the_lineage_as_version_tags(medmo_home, tmp_path):
    from mlflow import MlflowClient

    from medmo_pipeline import home, tracking

    checkpoint = tmp_path / "rl"
    checkpoint.mkdir()
    lineage = {
        "stage": "rl", "data_version": "w" * 64, "mlflow_run_id": None, "git_commit": "abc123", "dagster_run_id": "r1",
        "recipe": {"name": "embedded", "hash": "h" * 16},
        "parent": {"path": "/ck/stage3", "stage": "stage3", "data_version": "p" * 64},
        "corpus": {"data_version": "c" * 64, "sources": {"synth_xray": {"data_version": "x" * 64, "revision": "r"}}},
    }
    assert tracking.register_checkpoint(checkpoint, lineage) == "1"
    assert tracking.register_checkpoint(checkpoint, {**lineage, "data_version": "v" * 64}) == "2"
    client = MlflowClient(tracking_uri=home.mlflow_tracking_uri(), registry_uri=home.mlflow_tracking_uri())
    version = client.get_model_version(tracking.REGISTERED_POLICY, "1")
    assert version.source == checkpoint.resolve().as_uri()
    assert version.tags["data_version"] == "w" * 64
    assert version.tags["parent_data_version"] == "p" * 64 and version.tags["parent_path"] == "/ck/stage3"
    assert version.tags["corpus_data_version"] == "c" * 64
    assert version.tags["corpus.synth_xray"] == f"{'x' * 64} (r)"
    assert version.tags["recipe_hash"] == "h" * 16 and version.tags["git_commit"] == "abc123"
    assert "mlflow_run_id" not in version.tags  # absent values are left out, never written as 'None'


def test_which_stages_are_registered(medmo_home, tmp_path):
    from medmo_pipeline import tracking

    lineage = {"stage": "stage1", "data_version": "d" * 64, "recipe": {"name": "x", "hash": "h"}}
    assert tracking.register_if_chosen("rl", "stage1", tmp_path, lineage) is None
    assert tracking.register_if_chosen("none", "rl", tmp_path, lineage) is None
    assert tracking.register_if_chosen("all", "stage1", tmp_path, lineage) == {"name": "medmo-policy", "version": "1"}
    assert tracking.register_if_chosen("rl", "rl", tmp_path, lineage)["version"] == "2"


@pytest.mark.slow
@pytest.mark.e2e
def test_a_trained_stage_becomes_a_registered_model_version(tmp_path, monkeypatch, stage_inputs, warm_job_host):
    """stage1 trained through Dagster with ``tracking.register_models: all`` (the RL policy's default path runs in
    tests/test_end_to_end.py): a model version whose tags carry the checkpoint's lineage."""
    import json

    import dagster as dg
    from mlflow import MlflowClient

    from assets.definitions import build_definitions
    from medmo_pipeline import home, tracking
    from medmo_pipeline.config import load_recipe
    from medmo_pipeline.launch.warm_host import SOCKET_ENV
    from tests.conftest import write_recipe
    from tests.stage_inputs import STAGE, STAGE_KEY, copy_inputs, inputs_recipe_data

    monkeypatch.setenv("MEDMO_HOME", str(tmp_path / "home"))
    for name in ("MLFLOW_TRACKING_URI", "MEDMO_RECIPE", "MEDMO_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(SOCKET_ENV, warm_job_host)  # registration is the point here, not how a job starts
    inputs = copy_inputs(stage_inputs, tmp_path)
    data = inputs_recipe_data()
    data["tracking"] = {"register_models": "all"}  # not part of any stage's version: the inputs stay fresh
    data["stages"][STAGE]["optim"].update(max_steps=2, logging_steps=1)
    recipe_path = write_recipe(tmp_path / "register-all.yaml", data)
    defs = build_definitions(load_recipe(recipe_path), recipe_path)
    with dg.instance_for_test(temp_dir=str(inputs.dagster_dir)) as instance:
        result = dg.materialize(list(defs.assets), selection=[dg.AssetKey(STAGE_KEY)], resources=defs.resources,
                                instance=instance)
        [materialization] = result.asset_materializations_for_node(STAGE_KEY)
    assert materialization.metadata["registered_model"].value == f"{tracking.REGISTERED_POLICY} version 1"
    checkpoint = materialization.metadata["path"].value
    lineage = json.loads((tmp_path / "home" / "checkpoints" / STAGE).glob("*/lineage.json").__next__().read_text())
    client = MlflowClient(tracking_uri=home.mlflow_tracking_uri(), registry_uri=home.mlflow_tracking_uri())
    version = client.get_model_version(tracking.REGISTERED_POLICY, "1")
    assert version.source == f"file://{checkpoint}"
    assert version.tags["stage"] == STAGE and version.tags["dagster_asset"] == STAGE_KEY
    assert version.tags["data_version"] == lineage["data_version"] == materialization.tags["dagster/data_version"]
    assert version.tags["parent_data_version"] == lineage["parent"]["data_version"]
    assert version.tags["corpus_data_version"] == lineage["corpus"]["data_version"]
    assert version.run_id == lineage["mlflow_run_id"] and version.tags["dagster_run_id"] == result.run_id
