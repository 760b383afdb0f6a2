"""One SFT stage of the embedded default trained by 2 processes on CPU: under torchrun (DDP, gloo) and
under DeepSpeed ZeRO-2, both through the Dagster asset and the local launcher.

The stage's inputs are materialized once with a one-process launcher; then ``stage1_checkpoint`` alone is
materialized with ``MEDMO_PROFILE`` pointing at a local profile file that sizes it to
``nproc_per_node: 2``, so the launcher itself builds the torchrun command line. Each run must publish
one checkpoint that loads through ``medmo_pipeline.model.loading``, holds finite weights that moved away
from the base model, and generates; only rank 0 may report, log to MLflow and publish.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from medmo_pipeline.training import resume
from tests.stage_inputs import STAGE, STAGE_KEY, StageInputs, copy_inputs, run_messages, stage_recipe

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MAX_STEPS = 4
NPROC = 2


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, stage_inputs) -> StageInputs:
    root = tmp_path_factory.mktemp("distributed")
    profile = root / "two-processes.yaml"
    profile.write_text(yaml.safe_dump({"launcher": "local", "settings": {
        "sizes": {STAGE_KEY: {"nproc_per_node": NPROC}}}}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDMO_HOME", str(root / "home"))
        for name in ("MLFLOW_TRACKING_URI", "MEDMO_RECIPE", "MEDMO_PROFILE"):
            mp.delenv(name, raising=False)
        built = copy_inputs(stage_inputs, root)  # built with one process each: the profile is not set yet
        mp.setenv("MEDMO_PROFILE", str(profile))
        yield built


class SavedCheckpointWatcher(threading.Thread):
    """Lists the first resumable checkpoint marked complete under the stage's work root (the work
    directory is removed once the stage publishes, so it is read while the job runs)."""

    def __init__(self, stage_dir: Path) -> None:
        super().__init__(daemon=True)
        self.stage_dir, self.files, self.stop = stage_dir, None, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and self.files is None:
            for marker in self.stage_dir.glob(f".resume/{STAGE}/*/checkpoint-*/{resume.MARKER}"):
                try:
                    self.files = sorted(str(p.relative_to(marker.parent)) for p in marker.parent.rglob("*"))
                except (FileNotFoundError, ValueError):  # dropped by a newer checkpoint meanwhile
                    continue
                break
            time.sleep(0.02)


def materialize_stage(recipe_path: Path, inputs: StageInputs):
    import dagster as dg

    from assets.definitions import build_definitions
    from medmo_pipeline.config import load_recipe
    from resources.local import LocalLauncher

    defs = build_definitions(load_recipe(recipe_path), recipe_path)
    launcher = defs.resources["launcher"]
    assert isinstance(launcher, LocalLauncher) and launcher.sizes[STAGE_KEY].processes_per_node() == NPROC
    watcher = SavedCheckpointWatcher(inputs.home / "checkpoints" / STAGE)
    watcher.start()
    with dg.instance_for_test(temp_dir=str(inputs.dagster_dir)) as instance:
        result = dg.materialize(list(defs.assets), selection=[dg.AssetKey(STAGE_KEY)], resources=defs.resources,
                                instance=instance, raise_on_error=False)
        logged = run_messages(instance, result.run_id)
        parent = instance.get_latest_materialization_event(dg.AssetKey("base_model")).asset_materialization
    watcher.stop.set()
    watcher.join(timeout=10)
    assert result.success, "\n".join(logged[-40:])
    assert watcher.files is not None, "no complete resumable checkpoint was seen while the job ran"
    (materialization,) = result.asset_materializations_for_node(STAGE_KEY)  # one report: rank 0's
    meta = {key: value.value for key, value in materialization.metadata.items()}
    return result, logged, meta, Path(str(parent.metadata["path"].value)), watcher.files


def check_two_process_run(result, logged: list[str], meta: dict, parent: Path) -> dict:
    """What every 2-process run must show; returns the checkpoint's lineage."""
    from medmo_pipeline.training.sft import __name__ as sft_module

    # The launcher built the torchrun command line itself.
    (launch,) = [m for m in logged if m.startswith("launching: ")]
    assert f"-m torch.distributed.run --standalone --nproc_per_node={NPROC} -m {sft_module}" in launch
    # One loss line per step: rank 1 reports nothing.
    steps = [int(m.group(1)) for text in logged if (m := re.match(r"step (\d+)/\d+ .* loss=", text))]
    assert steps == list(range(1, MAX_STEPS + 1))

    checkpoint = Path(meta["path"])
    lineage = json.loads((checkpoint / "lineage.json").read_text())
    assert meta["steps"] == MAX_STEPS == lineage["metrics"]["steps"]
    assert lineage["resume"]["inputs"]["world_size"] == NPROC
    assert lineage["dagster_run_id"] == result.run_id
    # Published once: no staging directory (atomic.staged_dir's ".tmp-*") nor resume work directory left.
    assert not [p.name for p in checkpoint.parent.iterdir() if p.name.startswith(".tmp-")]
    assert not list((checkpoint.parent / ".resume" / STAGE).iterdir())
    assert only_one_mlflow_run(result.run_id) == lineage["mlflow_run_id"] == meta["mlflow_run_id"]
    check_checkpoint_loads(checkpoint, parent)
    return lineage


def only_one_mlflow_run(dagster_run_id: str) -> str:
    """The stage's single MLflow run (rank 1 opens none), with one loss value per logged step."""
    import mlflow

    from medmo_pipeline import home

    client = mlflow.MlflowClient(tracking_uri=home.mlflow_tracking_uri())
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string=f"tags.dagster_run_id = '{dagster_run_id}'")
    assert len(runs) == 1, [r.info.run_name for r in runs]
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "loss")] == list(range(1, MAX_STEPS + 1))
    return runs[0].info.run_id


def check_checkpoint_loads(checkpoint: Path, parent: Path) -> None:
    """Loads through the project's safetensors path, weights finite and trained, and it generates."""
    import io

    import torch
    from PIL import Image

    from medmo_pipeline.evaluation.generation import generate_answers
    from medmo_pipeline.model.loading import load_model, load_processor

    assert sorted(p.name for p in checkpoint.glob("*.safetensors")) == ["model.safetensors"]
    model, base = load_model(checkpoint), load_model(parent)
    weights, base_weights = model.state_dict(), base.state_dict()
    assert weights.keys() == base_weights.keys()
    assert all(torch.isfinite(t).all() for t in weights.values())
    moved = [name for name in weights if not torch.equal(weights[name], base_weights[name])]
    assert len(moved) > len(weights) // 2, f"only {len(moved)} of {len(weights)} tensors changed"

    png = io.BytesIO()
    Image.new("RGB", (64, 64), (60, 60, 60)).save(png, format="PNG")
    row = {"task": "vqa", "images": [{"bytes": png.getvalue()}],
           "messages": [{"role": "user", "content": "Is there a lesion?"}, {"role": "assistant", "content": ""}]}
    (answer,) = generate_answers(model, load_processor(checkpoint), [row], max_new_tokens={"vqa": 8}, batch_size=1)
    assert isinstance(answer, str)


def test_sft_stage_under_torchrun_with_two_processes(inputs: StageInputs, tmp_path, monkeypatch):
    from medmo_pipeline.training.streamed import SAMPLE_LOG_ENV

    recipe = stage_recipe(tmp_path, max_steps=MAX_STEPS, save_steps=2, logging_steps=1)
    monkeypatch.setenv(SAMPLE_LOG_ENV, str(tmp_path / "samples.jsonl"))

    result, logged, meta, parent, saved = materialize_stage(recipe, inputs)

    lineage = check_two_process_run(result, logged, meta, parent)
    assert lineage["recipe"]["resolved"][STAGE]["optim"]["deepspeed"] is None
    # DDP: one optimizer file, and each of the two ranks saved its own RNG state and stream position.
    assert {"optimizer.pt", "rng_state_0.pth", "rng_state_1.pth"} <= set(saved)
    assert {"stream_position-rank0.json", "stream_position-rank1.json"} <= set(saved)
    assert not [name for name in saved if name.startswith("global_step")]
    # Each rank read its own part of the one stream: rank r the positions 2i + r.
    from medmo_pipeline.data import corpus, stream

    entries = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    parts = {part: {e["index"]: e["id"] for e in entries if e["part"] == part} for part in range(NPROC)}
    data = yaml.safe_load(recipe.read_text())
    used = MAX_STEPS * data["stages"][STAGE]["optim"]["per_device_train_batch_size"]
    plan = corpus.load_index(Path(lineage["corpus"]["index_path"]))["plan"]
    whole = [row["id"] for _, row in zip(range(NPROC * used), (r for _, r in stream.MixtureStream(
        plan, seed=data["seed"]).rows()))]
    for rank, part in parts.items():
        assert [part[i] for i in range(used)] == whole[rank::NPROC]


@pytest.mark.parametrize("config", ["zero2.json", "zero3.json"])
def test_sft_stage_under_deepspeed_zero_with_two_processes(inputs: StageInputs, tmp_path, config):
    """ZeRO-3 also checks that the partitioned weights are gathered before rank 0 publishes them."""
    recipe = stage_recipe(tmp_path, max_steps=MAX_STEPS, save_steps=2, logging_steps=1, deepspeed=config)

    result, logged, meta, parent, saved = materialize_stage(recipe, inputs)

    lineage = check_two_process_run(result, logged, meta, parent)
    assert lineage["recipe"]["resolved"][STAGE]["optim"]["deepspeed"] == config
    # ZeRO partitions the optimizer state: one shard per rank, written by DeepSpeed's engine.
    step = saved_step(saved)
    assert {f"global_step{step}/zero_pp_rank_{rank}_mp_rank_00_optim_states.pt" for rank in range(NPROC)} <= set(saved)
    assert "optimizer.pt" not in saved
    assert math.isfinite(meta["final_loss"])


def saved_step(files: list[str]) -> int:
    (step,) = {int(m.group(1)) for name in files if (m := re.match(r"global_step(\d+)$", name))}
    return step


def test_rows_skipped_on_each_rank_are_summed_for_the_report(tmp_path):
    """Under SFT each rank decodes its own part of the rows, so rank 0's count alone would miss the
    others' skipped rows: ``resume.summed_over_ranks`` adds them up (two real gloo processes)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = ("import os, torch.distributed as dist\n"
              "from medmo_pipeline.training.resume import summed_over_ranks\n"
              "dist.init_process_group('gloo')\n"
              "print(summed_over_ranks(int(os.environ['RANK']) * 5 + 1))\n"
              "dist.destroy_process_group()\n")
    env = {**os.environ, "WORLD_SIZE": str(NPROC), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    ranks = [subprocess.Popen([sys.executable, "-c", script], env={**env, "RANK": str(rank)},
                              cwd=Path(__file__).parents[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in range(NPROC)]
    outputs = [rank.communicate(timeout=120) for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0], outputs
    assert [int(out.split()[-1]) for out, _ in outputs] == [1 + 6, 1 + 6]
    assert resume.summed_over_ranks(4) == 4  # no process group: the value itself
