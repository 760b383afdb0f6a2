"""Launch specs for Slurm and Kubernetes: golden files for a 2-node x 8-GPU paper stage, plus the
properties that matter whatever the layout (secrets never written, hostile values stay inert).

Regenerate the golden files after an intended change with ``MEDMO_UPDATE_GOLDEN=1 pytest
tests/test_launch_specs.py``, then read the diff.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from medmo_pipeline.config import load_recipe
from medmo_pipeline.launch.k8s import K8sSpec, job_manifest, rendezvous_service_manifest
from medmo_pipeline.launch.slurm import (
    SlurmSpec,
    job_log_path,
    looks_secret,
    parse_sbatch_job_id,
    sbatch_script,
)
from medmo_pipeline.tracking import ASSET_KEY_ENV, DAGSTER_RUN_ID_ENV

GOLDEN = Path(__file__).parent / "golden"
SHARED = "/shared/medmo"
SECRET_VALUES = ("hf_FAKE_token_value_123", "s3cr3t-mlflow-password", "aws-secret-access-key-value")


def paper_stage2_args() -> list[str]:
    recipe = load_recipe("paper")
    assert recipe.stages["stage2"].optim.deepspeed == "zero3.json"  # the spec below is sized for ZeRO-3
    return ["--recipe", "paper", "--stage", "stage2", "--parent", f"{SHARED}/checkpoints/stage1",
            "--corpus", f"{SHARED}/corpus/index.json", "--output", f"{SHARED}/checkpoints/stage2",
            "--expect-hash", recipe.section_hash("stage2")]


def job_environment() -> dict[str, str]:
    return {
        "MEDMO_HOME": SHARED,
        "MLFLOW_TRACKING_URI": "http://mlflow.internal:5000",
        DAGSTER_RUN_ID_ENV: "0a1b2c3d-run",
        ASSET_KEY_ENV: "stage2_checkpoint",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_TOKEN": SECRET_VALUES[0],
        "MLFLOW_TRACKING_PASSWORD": SECRET_VALUES[1],
        "AWS_SECRET_ACCESS_KEY": SECRET_VALUES[2],
    }


def paper_sbatch() -> str:
    spec = SlurmSpec(nodes=2, gpus_per_node=8, cpus_per_task=96, time="3-00:00:00", partition="gpu",
                     account="medmo", mem="0", job_name="medmo-stage2", output_dir=f"{SHARED}/slurm",
                     chdir=f"{SHARED}/medmo-pipeline",
                     setup_lines=(f"source {SHARED}/medmo-pipeline/.venv/bin/activate",))
    return sbatch_script(spec, "medmo_pipeline.training.sft", paper_stage2_args(), env=job_environment())


def paper_k8s_spec() -> K8sSpec:
    env = {k: v for k, v in job_environment().items()
           if k not in ("HF_TOKEN", "MLFLOW_TRACKING_PASSWORD", "AWS_SECRET_ACCESS_KEY")}
    return K8sSpec(
        image="registry.example.org/medmo-pipeline:0.1.0", namespace="medmo", gpus=8, cpu="96", memory="900Gi",
        node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        shared_volume_claim="medmo-shared", mount_path=SHARED, service_account="medmo-jobs", env=env,
        secret_env=[("HF_TOKEN", "medmo-hub", "token"),
                    ("MLFLOW_TRACKING_PASSWORD", "medmo-mlflow", "password")],
    )


def paper_manifest() -> dict:
    return job_manifest(paper_k8s_spec(), "medmo-stage2", "medmo_pipeline.training.sft", paper_stage2_args(),
                        nproc_per_node=8, nnodes=2)


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("MEDMO_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; if intended, regenerate with MEDMO_UPDATE_GOLDEN=1"


# --- golden files -------------------------------------------------------------------------------


def test_sbatch_golden():
    assert_golden("paper_stage2.sbatch", paper_sbatch())


def test_k8s_job_golden():
    assert_golden("paper_stage2.job.yaml", yaml.safe_dump(paper_manifest(), sort_keys=False))


def test_k8s_service_golden():
    service = rendezvous_service_manifest(paper_k8s_spec(), "medmo-stage2")
    assert_golden("paper_stage2.service.yaml", yaml.safe_dump(service, sort_keys=False))


def test_sbatch_is_valid_bash(tmp_path):
    script = tmp_path / "job.sbatch"
    script.write_text(paper_sbatch())
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_manifest_round_trips_through_yaml():
    for manifest in (paper_manifest(), rendezvous_service_manifest(paper_k8s_spec(), "medmo-stage2")):
        assert yaml.safe_load(yaml.safe_dump(manifest)) == manifest


# --- sbatch -------------------------------------------------------------------------------------


def test_sbatch_multi_node_rendezvous_comes_from_slurm():
    text = paper_sbatch()
    assert "#SBATCH --nodes=2" in text and "#SBATCH --gpus-per-node=8" in text
    assert "#SBATCH --requeue" in text and "#SBATCH --open-mode=append" in text
    assert '--nnodes="$SLURM_JOB_NUM_NODES"' in text and "--nproc_per_node=8" in text
    assert '--rdzv_id="$SLURM_JOB_ID"' in text and 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in text


def test_sbatch_single_process_runs_python_directly():
    spec = SlurmSpec(nodes=1, gpus_per_node=0, cpus_per_task=2, time="10", job_name="j", output_dir="/logs")
    text = sbatch_script(spec, "medmo_pipeline.data.build", ["--recipe", "embedded"], env={})
    assert "srun" not in text and "torch.distributed.run" not in text
    assert "python -m medmo_pipeline.data.build --recipe embedded &" in text
    assert "--gpus-per-node" not in text and "--partition" not in text


def test_sbatch_one_node_many_processes_uses_torchrun():
    spec = SlurmSpec(nodes=1, gpus_per_node=4, cpus_per_task=8, time="60", job_name="j", output_dir="/logs")
    text = sbatch_script(spec, "m", [], env={})
    assert "srun " in text and "--nproc_per_node=4" in text


def test_sbatch_never_writes_secret_values():
    text = paper_sbatch()
    for value in SECRET_VALUES:
        assert value not in text
    for name in ("HF_TOKEN", "MLFLOW_TRACKING_PASSWORD", "AWS_SECRET_ACCESS_KEY"):
        assert f"export {name}" not in text
        assert f'"${{{name}?' in text  # named, and checked to be inherited


def test_usr1_requeues_and_the_script_still_waits_for_the_job(tmp_path):
    """Near the time limit Slurm sends the batch shell USR1: the script asks for a requeue, keeps waiting
    for the job, and exits with the job's status. (Slurm and the job are stand-ins here.)"""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text('#!/bin/bash\necho "$*" >> "$CALLS"\n')
    (bin_dir / "python").write_text('#!/bin/bash\ntouch "$STARTED"\nsleep 1\nexit 3\n')
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    spec = SlurmSpec(nodes=1, gpus_per_node=0, cpus_per_task=1, time="1", job_name="j", output_dir="/logs")
    script = tmp_path / "job.sbatch"
    script.write_text(sbatch_script(spec, "m", [], env={}, python=str(bin_dir / "python")))
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n1",
           "CALLS": str(tmp_path / "calls"), "STARTED": str(tmp_path / "started")}
    shell = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        shell.send_signal(signal.SIGUSR1)
        assert shell.wait(timeout=20) == 3
    finally:
        shell.kill()
    assert (tmp_path / "calls").read_text() == "requeue 7\n"
    assert b"time limit near: requeueing job 7" in shell.stdout.read()


@pytest.mark.parametrize(("name", "secret"), [
    ("HF_TOKEN", True), ("WANDB_API_KEY", True), ("AWS_SECRET_ACCESS_KEY", True), ("DB_PASSWORD", True),
    ("GITHUB_TOKENS", True), ("OPENAI_APIKEY", True), ("GOOGLE_APPLICATION_CREDENTIALS", True),
    ("TOKENIZERS_PARALLELISM", False), ("MEDMO_ASSET_KEY", False), ("MLFLOW_TRACKING_URI", False),
    ("KEYBOARD_LAYOUT", False), ("GITHUB_PAT", True), ("MEDMO_PG_PASS", True),
    ("AZURE_STORAGE_CONNECTION_STRING", True), ("COMPAT_MODE", False),
])
def test_secret_names(name, secret):
    assert looks_secret(name) is secret


def test_a_value_holding_credentials_is_secret_whatever_its_name():
    """An MLflow URI of https://user:password@host was written into the sbatch script (readable
    through scontrol) and the Kubernetes Job's manifest."""
    uri = "https://alice:s3cret@mlflow.example.org"
    assert looks_secret("MLFLOW_TRACKING_URI", uri) and not looks_secret("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    spec = SlurmSpec(nodes=1, gpus_per_node=0, cpus_per_task=1, time="1", job_name="j", output_dir="/logs")
    text = sbatch_script(spec, "m", [], env={"MLFLOW_TRACKING_URI": uri, "KEEP": "yes"})
    assert "s3cret" not in text and "MLFLOW_TRACKING_URI" in text and "export KEEP=yes" in text


def test_sbatch_leaves_slurm_and_host_variables_alone():
    spec = SlurmSpec(nodes=1, gpus_per_node=0, cpus_per_task=1, time="1", job_name="j", output_dir="/logs")
    text = sbatch_script(spec, "m", [], env={"SLURM_JOB_ID": "1", "HOSTNAME": "login1", "KEEP": "yes"})
    assert "export SLURM_JOB_ID" not in text and "export HOSTNAME" not in text
    assert "export KEEP=yes" in text


@pytest.mark.parametrize("bad", [{"job_name": "two words"}, {"output_dir": "/logs\n#SBATCH --x"},
                                 {"extra_sbatch": ("--comment=a b",)}])
def test_sbatch_refuses_options_slurm_would_misread(bad):
    fields = {"nodes": 1, "gpus_per_node": 0, "cpus_per_task": 1, "time": "1", "job_name": "j",
              "output_dir": "/logs"} | bad
    with pytest.raises(ValueError, match="whitespace"):
        sbatch_script(SlurmSpec(**fields), "m", [], env={})


def test_sbatch_refuses_invalid_variable_names():
    spec = SlurmSpec(nodes=1, gpus_per_node=0, cpus_per_task=1, time="1", job_name="j", output_dir="/logs")
    with pytest.raises(ValueError, match="not a valid environment variable name"):
        sbatch_script(spec, "m", [], env={"A=$(id)": "x"})


HOSTILE_VALUES = [
    "two words", "it's", 'say "hi"', "$(touch /tmp/medmo-pwned)", "`touch /tmp/medmo-pwned`", "$HOME",
    "a\nb", "back\\slash", "; touch /tmp/medmo-pwned", "", "*", "~",
]


def read_back(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Run a whole generated script in bash, with a stand-in for python that reads the variables back."""
    readback = tmp_path / "values"
    stub = tmp_path / "python-stub"
    stub.write_text('#!/bin/bash\nshift 2\nfor name; do printf "%s\\0" "${!name}"; done > "$READBACK"\n')
    stub.chmod(0o755)
    spec = SlurmSpec(nodes=1, gpus_per_node=0, cpus_per_task=1, time="1", job_name="j", output_dir="/logs")
    script = tmp_path / "job.sbatch"
    script.write_text(sbatch_script(spec, "m", list(env), env=env, python=str(stub)))
    slurm = {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "localhost"}
    subprocess.run(["bash", str(script)], capture_output=True, check=True, cwd=tmp_path,
                   env={"PATH": os.environ["PATH"], "HOME": "/nonexistent", "READBACK": str(readback), **slurm})
    return dict(zip(env, readback.read_bytes().decode().split("\0")[:-1], strict=True))


def test_hostile_values_export_verbatim(tmp_path):
    env = {f"V{i}": value for i, value in enumerate(HOSTILE_VALUES)}
    assert read_back(env, tmp_path) == env
    assert not Path("/tmp/medmo-pwned").exists()


@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=40))
def test_any_value_exports_verbatim(tmp_path_factory, value):
    assert read_back({"VALUE": value}, tmp_path_factory.mktemp("bash")) == {"VALUE": value}


def test_hostile_arguments_stay_single_words():
    spec = SlurmSpec(nodes=1, gpus_per_node=0, cpus_per_task=1, time="1", job_name="j", output_dir="/logs")
    args = ["--output", "/data/my run/$(id)"]
    text = sbatch_script(spec, "m", args, env={})
    launch = next(line for line in text.splitlines() if line.startswith("python -m m "))
    assert shlex.split(launch.removesuffix(" &")) == ["python", "-m", "m", *args]


@pytest.mark.parametrize("stdout", ["Submitted batch job 123\n", "123\n", "123;cluster-a\n",
                                    "sbatch: warning: x\nSubmitted batch job 123"])
def test_parse_sbatch_job_id(stdout):
    assert parse_sbatch_job_id(stdout) == "123"


@pytest.mark.parametrize("stdout", ["", "sbatch: error: Batch job submission failed", "job abc"])
def test_parse_sbatch_job_id_refuses_other_output(stdout):
    with pytest.raises(ValueError, match="no job id"):
        parse_sbatch_job_id(stdout)


def test_job_log_path_names_the_job():
    spec = SlurmSpec(nodes=1, gpus_per_node=0, cpus_per_task=1, time="1", job_name="j", output_dir="/logs/")
    assert job_log_path(spec, "42") == "/logs/j-42.log"


# --- kubernetes ---------------------------------------------------------------------------------


def test_manifest_never_holds_secret_values():
    text = yaml.safe_dump(paper_manifest())
    for value in SECRET_VALUES:
        assert value not in text
    env = {e["name"]: e for e in paper_manifest()["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "medmo-hub", "key": "token"}}}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.internal:5000"


def test_manifest_refuses_literal_secrets():
    with pytest.raises(ValueError, match="secret_env"):
        job_manifest(K8sSpec(image="i", env={"HF_TOKEN": "hf_x"}), "j", "m", [])


def test_manifest_multi_node_is_an_indexed_job():
    manifest = paper_manifest()
    spec = manifest["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == "medmo-stage2" and pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert {"--master_addr=medmo-stage2-0.medmo-stage2", "--node_rank=$(JOB_COMPLETION_INDEX)"} <= set(
        container["args"])
    assert container["env"][0]["name"] == "JOB_COMPLETION_INDEX"
    assert {"name": "shared", "mountPath": SHARED} in container["volumeMounts"]


def test_manifest_single_process():
    manifest = job_manifest(K8sSpec(image="i", shm_size=None), "j", "medmo_pipeline.data.build", ["--x", "1"])
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["python", "-m", "medmo_pipeline.data.build"]
    assert container["args"] == ["--x", "1"]
    assert "completionMode" not in manifest["spec"] and "volumes" not in pod and "resources" not in container


def test_manifest_job_arguments_are_not_expanded_by_kubernetes():
    manifest = job_manifest(K8sSpec(image="i"), "j", "m", ["--output", "/data/$(HF_TOKEN)"])
    assert manifest["spec"]["template"]["spec"]["containers"][0]["args"] == ["--output", "/data/$$(HF_TOKEN)"]


@pytest.mark.parametrize("name", ["Upper", "has_underscore", "x" * 64, "-lead"])
def test_manifest_refuses_invalid_names(name):
    with pytest.raises(ValueError, match="not a valid Kubernetes name"):
        job_manifest(K8sSpec(image="i"), name, "m", [])
