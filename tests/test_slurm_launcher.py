"""The Slurm launcher against a real single-node Slurm on loopback (``tests/slurm_cluster.py``).

The stage's inputs (corpus partitions, mixture, base model) are materialized once with the local
launcher; then ``stage1_checkpoint`` alone is materialized in a real Dagster instance with
``MEDMO_PROFILE`` pointing at a Slurm profile file, so the definitions' own launcher is the Slurm one.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from slurm_cluster import SlurmCluster, slurm_cluster  # noqa: F401

from tests.stage_inputs import STAGE, STAGE_KEY, StageInputs, copy_inputs, run_messages, stage_recipe

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, stage_inputs) -> StageInputs:
    root = tmp_path_factory.mktemp("slurm-launcher")
    profile = root / "slurm-test.yaml"
    profile.write_text(yaml.safe_dump({"launcher": "slurm", "settings": {
        "partition": "debug", "poll_interval_s": 0.5, "size": {"cpus_per_task": 1, "time": "10"}}}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDMO_HOME", str(root / "home"))
        for name in ("MLFLOW_TRACKING_URI", "MEDMO_RECIPE", "MEDMO_PROFILE"):
            mp.delenv(name, raising=False)
        built = copy_inputs(stage_inputs, root)  # built with the local launcher: the profile is not set yet
        mp.setenv("MEDMO_PROFILE", str(profile))
        yield built


def definitions(recipe_path: Path):
    from assets.definitions import build_definitions
    from medmo_pipeline.config import load_recipe
    from resources.slurm import SlurmLauncher

    defs = build_definitions(load_recipe(recipe_path), recipe_path)
    assert isinstance(defs.resources["launcher"], SlurmLauncher)  # chosen by MEDMO_PROFILE
    return defs


def materialize_stage(defs, instance):
    import dagster as dg

    return dg.materialize(list(defs.assets), selection=[dg.AssetKey(STAGE_KEY)], resources=defs.resources,
                          instance=instance, raise_on_error=False)


def test_stage_materializes_through_slurm(slurm_cluster: SlurmCluster, inputs: StageInputs, tmp_path):  # noqa: F811
    import dagster as dg

    from medmo_pipeline.model.loading import load_model

    defs = definitions(stage_recipe(tmp_path, max_steps=4, save_steps=2, logging_steps=1))
    with dg.instance_for_test(temp_dir=str(inputs.dagster_dir)) as instance:
        result = materialize_stage(defs, instance)
        logged = run_messages(instance, result.run_id)
        run_tags = instance.get_run_by_id(result.run_id).tags
    assert result.success, "\n".join(logged[-30:])

    (materialization,) = result.asset_materializations_for_node(STAGE_KEY)
    meta = {key: value.value for key, value in materialization.metadata.items()}
    job_id = str(meta["slurm_job_id"])
    assert run_tags["medmo/slurm_job_id"] == job_id
    # The job is Slurm's: Slurm knows it, ran it to completion, and wrote its log where the launcher said.
    assert slurm_cluster.state(job_id) == "COMPLETED"
    shown = slurm_cluster.run("scontrol", "show", "job", job_id).stdout
    assert "JobName=medmo-stage1_checkpoint" in shown and "Partition=debug" in shown
    assert Path(meta["slurm_log"]).is_file()
    # Logs arrived both ways: the job's own Pipes messages, and its Slurm log streamed into the run.
    assert any(STAGE in m and "samples planned per pass over" in m for m in logged)
    assert any(m.startswith(f"[slurm {job_id}]") and f"job {job_id} on " in m for m in logged)
    # Metadata reported by the job through Pipes, and the checkpoint with its lineage.
    checkpoint = Path(meta["path"])
    assert meta["steps"] == 4 and materialization.tags["dagster/data_version"]
    lineage = json.loads((checkpoint / "lineage.json").read_text())
    assert lineage["stage"] == STAGE and lineage["dagster_run_id"] == result.run_id
    assert lineage["resume"]["resumed_from"] is None and lineage["parent"]["stage"] == "base_model"
    assert load_model(checkpoint).config.model_type == "qwen3_vl"
    assert not (checkpoint.parent / ".resume" / STAGE / lineage["resume"]["key"]).exists()  # work dir gone


def test_cancelling_the_dagster_run_cancels_the_slurm_job(slurm_cluster: SlurmCluster, inputs: StageInputs,  # noqa: F811
                                                           tmp_path):
    """The UI's Terminate marks the run CANCELING; the run worker's cancellation thread (Dagster's own,
    started here as ``dagster api execute_run`` starts it) interrupts the step, and the launcher scancels."""
    import dagster as dg
    from dagster._core.execution.run_cancellation_thread import start_run_cancellation_thread

    defs = definitions(stage_recipe(tmp_path, max_steps=100_000, logging_steps=50))
    seen: dict[str, str] = {}
    overrides = {"run_monitoring": {"cancellation_thread_poll_interval_seconds": 1}}
    with dg.instance_for_test(temp_dir=str(inputs.dagster_dir), overrides=overrides) as instance:
        def terminate_when_running():
            run, job_id = wait_for_slurm_job(instance, slurm_cluster)
            seen["job_id"] = job_id
            start_run_cancellation_thread(instance, run.run_id)
            instance.report_run_canceling(run)

        watcher = threading.Thread(target=terminate_when_running, daemon=True)
        watcher.start()
        result = materialize_stage(defs, instance)
        watcher.join(timeout=60)
        status = instance.get_run_by_id(result.run_id).status
        logged = run_messages(instance, result.run_id)

    job_id = seen["job_id"]
    assert not result.success and status == dg.DagsterRunStatus.CANCELED
    assert slurm_cluster.wait(job_id, timeout=60) == "CANCELLED"
    assert any(f"cancelling Slurm job {job_id}" in m for m in logged)
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "stage.yaml")], capture_output=True, text=True,
                          check=False).stdout
    assert not left, f"job processes outlived the cancellation: {left}"


def wait_for_slurm_job(instance, cluster: SlurmCluster, timeout: float = 120):
    """The run and its Slurm job, once the job is RUNNING (the launcher tags the run with its id)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in instance.get_runs(limit=5):
            job_id = run.tags.get("medmo/slurm_job_id")
            if job_id and cluster.state(job_id) == "RUNNING":
                return run, job_id
        time.sleep(0.2)
    raise TimeoutError("no Slurm job started")
