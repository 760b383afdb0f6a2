"""The RL policy is registered in MLflow's model registry with its lineage (a real sqlite MLflow store)."""

from __future__ import annotations


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
