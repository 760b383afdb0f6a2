"""Resumable training: a job killed with SIGKILL after its first saved checkpoint resumes from it on the
next materialization, and a run with another recipe or other data never does.

The end-to-end tests materialize ``stage1_checkpoint`` through the local launcher in a real Dagster
instance; the rules for which checkpoint may be resumed are also tested directly on work directories.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from medmo_pipeline.training import resume
from tests.stage_inputs import STAGE, STAGE_KEY, StageInputs, copy_inputs, run_messages, stage_recipe

SAVE_STEPS = 4
MAX_STEPS = 24


# --- which checkpoint may be resumed (no training) ------------------------------------------------


def key(**changes) -> resume.ResumeKey:
    fields = {"stage": STAGE, "recipe_hash": "r1", "parent_data_version": "p1", "corpus_data_version": "c1",
              "world_size": 1} | changes
    return resume.ResumeKey(**fields)


def saved(output: Path, run_key: resume.ResumeKey, step: int, complete: bool = True) -> Path:
    checkpoint = resume.work_root(output, run_key.stage) / run_key.digest() / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"log_history": [{"step": step, "loss": 1.0}]}))
    if complete:
        resume.mark_complete(checkpoint, run_key, step)
    resume.write_json_atomic(checkpoint.parent / resume.KEY_FILE, asdict(run_key))
    return checkpoint


def test_resumes_the_newest_complete_checkpoint_and_drops_incomplete_ones(tmp_path):
    output = tmp_path / "checkpoints" / STAGE / "out"
    saved(output, key(), 4)
    newest = saved(output, key(), 8)
    torn = saved(output, key(), 12, complete=False)  # killed while saving

    plan = resume.plan(output, key(), "error")

    assert (plan.checkpoint, plan.step) == (newest, 8)
    assert not torn.exists() and not (newest.parent / "checkpoint-4").exists()  # mark_complete dropped it
    assert plan.history() == [{"step": 8, "loss": 1.0}]
    assert plan.lineage()["resumed_from"] == {"path": str(newest), "step": 8}


@pytest.mark.parametrize("changed", [{"recipe_hash": "r2"}, {"corpus_data_version": "c2"},
                                     {"parent_data_version": "p2"}, {"world_size": 2}])
def test_other_inputs_never_resume(tmp_path, changed):
    output = tmp_path / "checkpoints" / STAGE / "out"
    old = saved(output, key(), 8)
    field = next(iter(changed))

    plan = resume.plan(output, key(**changed), "fresh")
    assert plan.checkpoint is None and plan.step is None
    assert plan.work_dir != old.parent and old.is_dir()  # left alone, not resumed
    assert [o["path"] for o in plan.ignored] == [str(old.parent)]
    assert plan.ignored[0]["differences"][0].startswith(f"{field}: ")

    with pytest.raises(resume.ResumeMismatchError, match=f"{field}: .* -> "):
        resume.plan(output, key(**changed), "error")


def test_another_stage_is_not_a_mismatch(tmp_path):
    output = tmp_path / "checkpoints" / "out"
    saved(output, key(stage="stage2"), 8)
    assert resume.plan(output, key(), "error").ignored == []


def test_run_control_fields_stay_out_of_the_recipe_hash():
    from medmo_pipeline.config import Recipe
    from tests.conftest import small_recipe_data

    data = small_recipe_data()
    before = Recipe.model_validate(data)
    data["stages"][STAGE]["optim"] |= {"save_steps": 3, "on_mismatch": "error"}
    control = Recipe.model_validate(data)
    data["stages"][STAGE]["optim"]["learning_rate"] *= 2
    trained = Recipe.model_validate(data)
    assert control.section_hash(STAGE) == before.section_hash(STAGE)
    assert control.section(STAGE)[STAGE]["optim"]["save_steps"] == 3  # still in the frozen recipe
    assert trained.section_hash(STAGE) != before.section_hash(STAGE)


# --- end to end: SIGKILL, then re-materialize ---------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, stage_inputs) -> StageInputs:
    root = tmp_path_factory.mktemp("resume")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDMO_HOME", str(root / "home"))
        for name in ("MLFLOW_TRACKING_URI", "MEDMO_RECIPE", "MEDMO_PROFILE"):
            mp.delenv(name, raising=False)
        yield copy_inputs(stage_inputs, root)  # the stage runs below start cold: they are killed


def materialize_stage(recipe_path: Path, inputs: StageInputs, *, kill_after_first_save: bool = False):
    """Materialize stage1 alone; optionally SIGKILL its job once its first checkpoint is complete.
    Returns the result, the run's log messages and (when killed) the step of the checkpoint on disk."""
    import dagster as dg

    from assets.definitions import build_definitions
    from medmo_pipeline.config import load_recipe

    defs = build_definitions(load_recipe(recipe_path), recipe_path)
    killer = JobKiller(inputs.home / "checkpoints" / STAGE) if kill_after_first_save else None
    with dg.instance_for_test(temp_dir=str(inputs.dagster_dir)) as instance:
        if killer:
            killer.start()
        result = dg.materialize(list(defs.assets), selection=[dg.AssetKey(STAGE_KEY)], resources=defs.resources,
                                instance=instance, raise_on_error=False)
        logged = run_messages(instance, result.run_id)
    if killer:
        killer.join(timeout=30)
        assert killer.killed_at is not None, "the job finished before its first checkpoint was seen"
    return result, logged, killer.killed_at if killer else None


class JobKiller(threading.Thread):
    """Waits for the first complete checkpoint under a stage's work root, then SIGKILLs the training job."""

    def __init__(self, stage_dir: Path) -> None:
        super().__init__(daemon=True)
        self.stage_dir = stage_dir
        self.killed_at: int | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if list(self.stage_dir.glob(f".resume/{STAGE}/*/checkpoint-*/{resume.MARKER}")):
                os.kill(training_job_pid(), signal.SIGKILL)
                time.sleep(0.5)
                self.killed_at = max(resume.newest_complete(work)[1] or 0
                                     for work in resume.unfinished_runs(self.stage_dir / ".resume" / STAGE))
                return
            time.sleep(0.02)


def training_job_pid() -> int:
    import psutil

    for child in psutil.Process().children(recursive=True):
        if "medmo_pipeline.training.sft" in child.cmdline():
            return child.pid
    raise RuntimeError("no training job among this process's children")


def stage_recipe_batch() -> int:
    from tests.stage_inputs import inputs_recipe_data

    optim = inputs_recipe_data()["stages"][STAGE]["optim"]
    return optim["per_device_train_batch_size"] * optim.get("gradient_accumulation_steps", 1)


def metadata(result) -> dict:
    (materialization,) = result.asset_materializations_for_node(STAGE_KEY)
    return {key: value.value for key, value in materialization.metadata.items()}


def last_logged_step(messages: list[str]) -> int:
    steps = [int(m.group(1)) for text in messages if (m := re.match(r"step (\d+)/", text))]
    return max(steps)


def streamed_samples(log: Path) -> dict[int, str]:
    """Stream index -> sample id of every example a run handed its trainer (``MEDMO_SAMPLE_LOG``); the
    trainer's first look at the data repeats one entry."""
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert {entry["part"] for entry in entries} == {0}
    return {entry["index"]: entry["id"] for entry in entries}


@pytest.mark.e2e
def test_sigkill_after_first_checkpoint_then_rematerialize_resumes(inputs: StageInputs, tmp_path, monkeypatch):
    from medmo_pipeline.model.loading import load_model
    from medmo_pipeline.training.streamed import SAMPLE_LOG_ENV

    recipe = stage_recipe(tmp_path, max_steps=MAX_STEPS, save_steps=SAVE_STEPS, logging_steps=1)
    batch = stage_recipe_batch()

    monkeypatch.setenv(SAMPLE_LOG_ENV, str(tmp_path / "killed.jsonl"))
    killed, killed_log, saved_step = materialize_stage(recipe, inputs, kill_after_first_save=True)
    assert not killed.success
    assert saved_step >= SAVE_STEPS and saved_step % SAVE_STEPS == 0
    reached = last_logged_step(killed_log)

    monkeypatch.setenv(SAMPLE_LOG_ENV, str(tmp_path / "resumed.jsonl"))
    resumed, resumed_log, _ = materialize_stage(recipe, inputs)
    # The resumed job streams on from the checkpoint's position: nothing before it again, nothing skipped.
    before, after = streamed_samples(tmp_path / "killed.jsonl"), streamed_samples(tmp_path / "resumed.jsonl")
    saved_at = saved_step * batch
    assert min(after) == saved_at
    assert set(range(saved_at)) <= set(before)
    assert set(range(MAX_STEPS * batch)) <= set(before) | set(after)
    assert all(before[i] == after[i] for i in set(before) & set(after))  # the same stream both times
    trained_twice = [i for i in after if i in before and i < reached * batch]
    assert len(trained_twice) == (reached - saved_step) * batch <= SAVE_STEPS * batch
    assert resumed.success, "\n".join(resumed_log[-20:])
    meta = metadata(resumed)
    # It resumed from the checkpoint the killed job saved, lost at most one save interval, and finished.
    assert meta["resumed_from_step"] == saved_step
    assert reached - saved_step <= SAVE_STEPS
    assert any(m.startswith(f"resuming {STAGE} from step {saved_step}") for m in resumed_log)
    assert last_logged_step(resumed_log) == MAX_STEPS and meta["steps"] == MAX_STEPS
    assert min(int(m.group(1)) for t in resumed_log if (m := re.match(r"step (\d+)/", t))) == saved_step + 1
    checkpoint = Path(meta["path"])
    lineage = json.loads((checkpoint / "lineage.json").read_text())
    assert lineage["resume"]["resumed_from"]["step"] == saved_step
    assert Path(meta["resumed_from"]).name == f"checkpoint-{saved_step}"
    steps_logged = [entry["step"] for entry in json.loads((checkpoint / "training_log.json").read_text())
                    if "loss" in entry]
    assert steps_logged[0] == 1 and steps_logged[-1] == MAX_STEPS  # curves cover the whole run
    assert load_model(checkpoint).config.model_type == "qwen3_vl"
    assert not resume.unfinished_runs(checkpoint.parent / ".resume" / STAGE)  # work directory cleaned up


@pytest.mark.e2e
def test_changed_recipe_does_not_resume_the_old_checkpoint(inputs: StageInputs, tmp_path):
    recipe = stage_recipe(tmp_path, max_steps=MAX_STEPS, save_steps=SAVE_STEPS, logging_steps=1)
    _, _, saved_step = materialize_stage(recipe, inputs, kill_after_first_save=True)
    old = resume.unfinished_runs(inputs.home / "checkpoints" / STAGE / ".resume" / STAGE)
    assert len(old) == 1

    strict = stage_recipe(tmp_path, "strict.yaml", max_steps=MAX_STEPS, save_steps=SAVE_STEPS, logging_steps=1,
                          learning_rate=1e-3, on_mismatch="error")
    refused, refused_log, _ = materialize_stage(strict, inputs)
    assert not refused.success
    assert any("an unfinished run with other inputs exists" in m and "recipe_hash" in m for m in refused_log)

    fresh = stage_recipe(tmp_path, "fresh.yaml", max_steps=8, save_steps=SAVE_STEPS, logging_steps=1,
                         learning_rate=1e-3, on_mismatch="fresh")
    started, started_log, _ = materialize_stage(fresh, inputs)
    assert started.success, "\n".join(started_log[-20:])
    meta = metadata(started)
    assert "resumed_from_step" not in meta and meta["resumed_from"] == "" and meta["steps"] == 8
    assert min(int(m.group(1)) for t in started_log if (m := re.match(r"step (\d+)/", t))) == 1
    lineage = json.loads((Path(meta["path"]) / "lineage.json").read_text())
    assert lineage["resume"]["resumed_from"] is None
    assert [o["path"] for o in lineage["resume"]["ignored"]] == [str(old[0])]
    assert old[0].is_dir() and resume.newest_complete(old[0])[1] == saved_step  # the old run is left as it was
