"""sbatch scripts from medmo_pipeline.launch.slurm, run by a real Slurm on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_cluster import SlurmCluster, free_port, slurm_cluster  # noqa: F401

from medmo_pipeline.launch.slurm import SlurmSpec, job_log_path, sbatch_script

pytestmark = pytest.mark.slow

# A stand-in for a job module: records what the job saw, then optionally sleeps.
PROBE = '''
import argparse, json, os, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--sleep", type=float, default=0)
args = parser.parse_args()
rank = os.environ.get("RANK", "0")
seen = {name: os.environ.get(name) for name in ("MEDMO_PROBE_VALUE", "MEDMO_PROBE_TOKEN", "RANK", "WORLD_SIZE")}
with open(os.path.join(args.out, f"rank-{rank}.json"), "w") as f:
    json.dump(seen, f)
print(f"probe rank {rank} wrote its file", flush=True)
time.sleep(args.sleep)
'''
HOSTILE = "it's a \"test\" with $(touch /tmp/medmo-pwned) and `id` ; $HOME"


def write_job(tmp_path: Path, name: str, *, args: list[str], nproc_per_node: int = 1) -> tuple[Path, SlurmSpec]:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "medmo_probe.py").write_text(PROBE)
    spec = SlurmSpec(nodes=1, gpus_per_node=0, cpus_per_task=1, time="5", partition="debug",
                     job_name=name, output_dir=str(tmp_path), rdzv_port=free_port())
    env = {"PYTHONPATH": str(code), "MEDMO_PROBE_VALUE": HOSTILE, "MEDMO_PROBE_TOKEN": "must-not-be-written"}
    script = sbatch_script(spec, "medmo_probe", args, env=env, python=sys.executable,
                           nproc_per_node=nproc_per_node)
    path = tmp_path / f"{name}.sbatch"
    path.write_text(script)
    return path, spec


def test_job_runs_and_logs(slurm_cluster: SlurmCluster, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    script, spec = write_job(tmp_path, "probe", args=["--out", str(out)])
    assert "must-not-be-written" not in script.read_text()

    job_id = slurm_cluster.submit(script, env={"MEDMO_PROBE_TOKEN": "from-submitter"})
    state = slurm_cluster.wait(job_id, timeout=60)

    log = Path(job_log_path(spec, job_id)).read_text()
    assert state == "COMPLETED", log
    seen = json.loads((out / "rank-0.json").read_text())
    assert seen["MEDMO_PROBE_VALUE"] == HOSTILE  # exported verbatim, nothing expanded
    assert seen["MEDMO_PROBE_TOKEN"] == "from-submitter"  # inherited through --export=ALL
    assert not Path("/tmp/medmo-pwned").exists()
    assert f"job {job_id} on " in log and "probe rank 0 wrote its file" in log


def test_secret_missing_from_submitter_fails_the_job(slurm_cluster: SlurmCluster, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    script, spec = write_job(tmp_path, "no-secret", args=["--out", str(out)])
    assert "MEDMO_PROBE_TOKEN" not in slurm_cluster.env
    job_id = slurm_cluster.submit(script)
    assert slurm_cluster.wait(job_id, timeout=60) == "FAILED"
    assert "MEDMO_PROBE_TOKEN must be set" in Path(job_log_path(spec, job_id)).read_text()
    assert not (out / "rank-0.json").exists()


def test_torchrun_rendezvous_from_slurm_environment(slurm_cluster: SlurmCluster, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    script, spec = write_job(tmp_path, "ranks", args=["--out", str(out)], nproc_per_node=2)
    assert "srun" in script.read_text()

    job_id = slurm_cluster.submit(script, env={"MEDMO_PROBE_TOKEN": "x"})
    state = slurm_cluster.wait(job_id, timeout=120)

    assert state == "COMPLETED", Path(job_log_path(spec, job_id)).read_text()
    ranks = sorted(p.name for p in out.iterdir())
    assert ranks == ["rank-0.json", "rank-1.json"]
    assert '"WORLD_SIZE": "2"' in (out / "rank-1.json").read_text()


def test_cancelled_job(slurm_cluster: SlurmCluster, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    script, _ = write_job(tmp_path, "sleeper", args=["--out", str(out), "--sleep", "300"])

    job_id = slurm_cluster.submit(script, env={"MEDMO_PROBE_TOKEN": "x"})
    assert slurm_cluster.wait(job_id, timeout=60, states=frozenset({"RUNNING"})) == "RUNNING"
    slurm_cluster.cancel(job_id)

    assert slurm_cluster.wait(job_id, timeout=60) == "CANCELLED"
    left = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True, check=False).stdout
    assert not left, f"job processes outlived scancel: {left}"
