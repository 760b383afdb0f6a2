"""Crash anywhere: SIGKILL every kind of job at a random point, then run it again.

Each kind (curation of one source, an SFT stage, the RL stage, an evaluation) first runs once
uninterrupted to time it and to give the reference result. Each trial then starts the same job,
kills it with SIGKILL after a random share of that time, checks that nothing partial is visible where
a reader looks (every non-hidden entry beside the output is complete and valid), re-runs it to
completion and validates the result: shards match their manifest, a checkpoint loads and its weights
hash is its data version, an evaluation table equals the mean of its per-sample predictions.

``MEDMO_FAULT_TRIALS`` sets the trials per kind (default 1: the quick variant in ``make test``;
``MEDMO_FAULT_TRIALS=10 pytest -m e2e tests/test_crash_anywhere.py`` is the long one). The seed is
printed so a failing trial can be replayed with ``MEDMO_FAULT_SEED``.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, launched_job_env, small_recipe_data, write_recipe

pytestmark = pytest.mark.e2e

TRIALS = int(os.environ.get("MEDMO_FAULT_TRIALS", "1"))
SEED = int(os.environ.get("MEDMO_FAULT_SEED", "20261122"))
REPORT = []  # one line per trial, printed at the end of the module


def _run(args: list[str], env: dict, *, kill_after: float | None = None,
         warm_host: str | None = None) -> subprocess.CompletedProcess | None:
    """Run a job module (as a fork of ``warm_host`` when given); with ``kill_after``, SIGKILL its process
    group after that many seconds and return None if it was still running then."""
    from medmo_pipeline.launch.local import job_command

    assert kill_after is None or warm_host is None  # a killed job is its own process, started cold
    command = job_command(args[0], args[1:], warm_host=warm_host)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=kill_after if kill_after is not None else 600)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return None
    result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    assert kill_after is not None or result.returncode == 0, (out + err)[-3000:]
    return result


def _result(completed: subprocess.CompletedProcess) -> dict:
    """The job's reported metadata (the console reporter's 'result:' line)."""
    match = re.search(r"\[medmo\] result: (\{.*\})", completed.stderr)
    assert match, completed.stderr[-2000:]
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, warm_job_host):
    """Inputs every job kind needs: corpus, base model, a stage-1 checkpoint, a corpus index; built by
    jobs started as forks of the session's warm job host (they are not what is tested)."""
    tmp = tmp_path_factory.mktemp("crash")
    recipe = write_recipe(tmp / "small.yaml", small_recipe_data())
    base_env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DAGSTER_PIPES_CONTEXT")}
    env = launched_job_env(tmp / "home", base_env)  # as the local launcher starts a job: forks of the host match
    r = ["--recipe", str(recipe)]
    index = _result(_run(["medmo_pipeline.data.build", *r], env, warm_host=warm_job_host))["index_path"]
    base = tmp / "base"
    _run(["medmo_pipeline.training.base_model", *r, "--output", str(base)], env, warm_host=warm_job_host)
    stage1 = tmp / "stage1"
    _run(["medmo_pipeline.training.sft", *r, "--stage", "stage1", "--parent", str(base), "--corpus", index,
          "--output", str(stage1)], env, warm_host=warm_job_host)
    yield {"tmp": tmp, "env": env, "recipe": r, "index": index, "base": base, "stage1": stage1,
           "warm_host": warm_job_host}
    print("\n".join(["", "crash-anywhere trials:", *REPORT]))


def _kinds(p: dict) -> dict:
    """kind -> (job arguments writing into ``out``, validator of ``out``)."""
    r, index = p["recipe"], p["index"]
    return {
        "curation": (lambda out: ["medmo_pipeline.data.build", *r, "--source", "synth_xray"], _valid_corpus),
        "sft": (lambda out: ["medmo_pipeline.training.sft", *r, "--stage", "stage2", "--parent", str(p["stage1"]),
                             "--corpus", index, "--output", str(out)], _valid_checkpoint),
        "rl": (lambda out: ["medmo_pipeline.training.grpo", *r, "--stage", "rl", "--parent", str(p["stage1"]),
                            "--corpus", index, "--output", str(out)], _valid_checkpoint),
        "evaluation": (lambda out: ["medmo_pipeline.evaluation.run", *r, "--name", "stage1", "--checkpoint",
                                    str(p["stage1"]), "--corpus", index, "--output", str(out)], _valid_eval),
    }


def _valid_corpus(_out: Path, home: Path) -> None:
    from medmo_pipeline.data.shards import verify_shards

    source_root = home / "corpus" / "synth_xray"
    published = [d for d in source_root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    for directory in published:
        assert verify_shards(directory) == [], directory


def _valid_checkpoint(out: Path, _home: Path) -> None:
    from medmo_pipeline.model.checkpoint import weights_version
    from medmo_pipeline.model.loading import load_model

    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["data_version"] == weights_version(out)
    load_model(out)


def _valid_eval(out: Path, _home: Path) -> None:
    import pandas as pd

    from medmo_pipeline.evaluation.run import _tables_version

    assert len(pd.read_parquet(out / "table.parquet")) and len(pd.read_parquet(out / "predictions.parquet"))
    assert json.loads((out / "lineage.json").read_text())["data_version"] == _tables_version(out)


def _nothing_partial_visible(out: Path, home: Path, kind: str) -> None:
    """After a kill: the output is absent or complete, and nothing half-written sits under a visible name."""
    if kind == "curation":
        _valid_corpus(out, home)
        return
    if out.exists():
        _validator(kind)(out, home)
    visible = [p.name for p in out.parent.iterdir() if not p.name.startswith(".")]
    assert visible in ([], [out.name]), visible


def _validator(kind: str):
    return {"sft": _valid_checkpoint, "rl": _valid_checkpoint, "evaluation": _valid_eval,
            "curation": _valid_corpus}[kind]


@pytest.mark.parametrize("kind", ["curation", "sft", "rl", "evaluation"])
def test_a_killed_job_leaves_nothing_partial_and_a_rerun_completes(pipeline, kind):
    rng = random.Random(f"{SEED}:{kind}")
    command, validate = _kinds(pipeline)[kind]
    home = Path(pipeline["env"]["MEDMO_HOME"])
    reference_out = pipeline["tmp"] / kind / "reference" / "out"
    started = time.monotonic()
    _run(command(reference_out), pipeline["env"])  # cold, as the killed run starts: it times the kill
    duration = time.monotonic() - started
    validate(reference_out, home)
    for trial in range(TRIALS):
        out = pipeline["tmp"] / kind / f"trial-{trial}" / "out"
        out.parent.mkdir(parents=True)
        kill_after = rng.uniform(0.05, 0.95) * duration
        killed = _run(command(out), pipeline["env"], kill_after=kill_after) is None
        _nothing_partial_visible(out, home, kind)
        _run(command(out), pipeline["env"], warm_host=pipeline["warm_host"])  # the re-run only has to finish
        validate(out, home)
        REPORT.append(f"  {kind} trial {trial}: killed={killed} at {kill_after:.1f}s of {duration:.1f}s "
                      f"(seed {SEED}); afterwards valid, re-run valid")
