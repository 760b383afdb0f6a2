"""Launch specs for Slurm: the sbatch script for a job (pure functions, no cluster needed).

The script asks for ``nodes`` nodes with one task each and starts the job as follows:

- one node, one process: ``python -m module args`` straight from the batch shell;
- otherwise: ``srun`` starts one ``torchrun`` (``python -m torch.distributed.run``) per node, and the
  torchrun agents meet at a c10d rendezvous on the allocation's first node, keyed by the Slurm job id,
  so every rank of a multi-node run comes from Slurm's own environment.

Preemption and time limits: the job is ``--requeue``-able and its log opens in append mode, so a
requeued run keeps writing to the same file. Slurm sends the batch shell USR1 shortly before the
time limit; the script then requeues itself, and the requeued run resumes from the newest saved
checkpoint (the training job's business, not this script's).

Secrets: values of variables whose names look secret are never written into the script, because
scripts are stored in Slurm's state directory and readable through ``scontrol write batch_script``.
A name looks secret when one of its ``_``-separated words is, or ends with, TOKEN, PASSWORD, PASSWD,
SECRET, KEY or CREDENTIAL (plural too): ``HF_TOKEN``, ``WANDB_API_KEY``, ``AWS_SECRET_ACCESS_KEY``,
``DB_PASSWORD``, but not ``TOKENIZERS_PARALLELISM``; the pipeline's own ``MEDMO_ASSET_KEY`` (an
asset name) is public. The script
names them only: it checks that they are set and relies on ``--export=ALL``, so the job inherits
them from the environment that runs ``sbatch``. Run sbatch with those variables in its environment.

Variables Slurm sets for each job (``SLURM_*``, ...) and those that belong to the submitting shell or
host (``HOSTNAME``, ``PWD``, ...) are never exported either: they would overwrite the job's own.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from medmo_pipeline.tracking import ASSET_KEY_ENV

SECRET_WORDS = ("TOKEN", "PASSWORD", "PASSWD", "SECRET", "KEY", "CREDENTIAL")
PUBLIC_NAMES = frozenset({ASSET_KEY_ENV})
_SLURM_OWNED_PREFIXES = ("SLURM_", "SBATCH_", "SRUN_", "SALLOC_")
_HOST_OWNED_NAMES = frozenset({"_", "PWD", "OLDPWD", "SHLVL", "HOSTNAME", "HOST"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BANNER = ('echo "[slurm] job ${SLURM_JOB_ID} on $(hostname): nodes ${SLURM_JOB_NODELIST},'
           ' restart ${SLURM_RESTART_COUNT:-0}"')
# States after which a job never runs again (a requeued job goes back to PENDING instead).
FINAL_STATES = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
    "TIMEOUT",
})
_SUBMITTED = re.compile(r"^\s*(?:Submitted batch job\s+)?(\d+)(?:;\S+)?\s*$", re.MULTILINE)


@dataclass(frozen=True, kw_only=True)
class SlurmSpec:
    """Where and how big a Slurm job is, and what runs before it starts."""

    nodes: int
    gpus_per_node: int
    cpus_per_task: int
    time: str  # Slurm's format: "MM", "HH:MM:SS", "D-HH:MM:SS"
    partition: str | None = None
    account: str | None = None
    mem: str | None = None  # per node, e.g. "0" (all of it) or "256G"
    job_name: str
    output_dir: str  # must exist before submission: Slurm does not create it
    requeue: bool = True
    extra_sbatch: Sequence[str] = ()  # further options, e.g. ("--qos=high", "--exclusive")
    setup_lines: Sequence[str] = ()  # bash run before the job, e.g. "source /opt/venv/bin/activate"
    chdir: str | None = None  # working directory of the job (default: where sbatch ran)
    rdzv_port: int = 29500
    requeue_before_time_limit_s: int | None = 120  # USR1 this long before the limit; None: no signal


def looks_secret(name: str) -> bool:
    """Whether an environment variable's name says its value is a secret (see the module docstring)."""
    if name in PUBLIC_NAMES:
        return False
    words = [word.removesuffix("S") for word in name.upper().split("_")]
    return any(word.endswith(secret) for word in words for secret in SECRET_WORDS)


def log_path(spec: SlurmSpec) -> str:
    """The job's log (stdout and stderr), with Slurm's ``%j`` standing for the job id."""
    return f"{spec.output_dir.rstrip('/')}/{spec.job_name}-%j.log"


def job_log_path(spec: SlurmSpec, job_id: str) -> str:
    return log_path(spec).replace("%j", job_id)


def sbatch_script(spec: SlurmSpec, module: str, args: Sequence[str], *, env: Mapping[str, str],
                  python: str = "python", nproc_per_node: int | None = None) -> str:
    """A complete bash batch script that runs ``python -m module args`` on ``spec``'s allocation.

    ``env`` holds the job's own variables (MEDMO_HOME, run identity, MLflow, Pipes); the rest of the
    submitting environment reaches the job through ``--export=ALL``. ``nproc_per_node`` defaults to
    the GPUs per node (at least one).
    """
    nproc = nproc_per_node if nproc_per_node is not None else max(spec.gpus_per_node, 1)
    if spec.nodes < 1 or nproc < 1 or spec.cpus_per_task < 1 or spec.gpus_per_node < 0:
        raise ValueError(f"nodes, processes per node and CPUs must be >= 1, GPUs >= 0: {spec}")
    lines = ["#!/bin/bash", f"# {module}: generated by medmo_pipeline.launch.slurm"]
    lines += [f"#SBATCH {option}" for option in _sbatch_options(spec)]
    lines += ["", "set -euo pipefail", ""]
    lines += _environment_lines(env)
    if spec.setup_lines:
        lines += ["# Site set-up (from the launcher's profile)", *spec.setup_lines, ""]
    lines += [_BANNER, ""]
    lines += _launch_lines(spec, module, list(args), python=python, nproc=nproc)
    return "\n".join(lines) + "\n"


def _sbatch_options(spec: SlurmSpec) -> list[str]:
    log = log_path(spec)
    options = [
        f"--job-name={spec.job_name}",
        f"--nodes={spec.nodes}",
        "--ntasks-per-node=1",  # one launcher (python or torchrun) per node; torchrun forks the ranks
        f"--cpus-per-task={spec.cpus_per_task}",
    ]
    if spec.gpus_per_node:  # never "--gpus-per-node=0": clusters without GPU GRES reject it
        options.append(f"--gpus-per-node={spec.gpus_per_node}")
    options.append(f"--time={spec.time}")
    for name, value in (("partition", spec.partition), ("account", spec.account), ("mem", spec.mem),
                        ("chdir", spec.chdir)):
        if value is not None:
            options.append(f"--{name}={value}")
    options += [f"--output={log}", f"--error={log}", "--open-mode=append", "--export=ALL"]
    if spec.requeue:
        options.append("--requeue")
    if spec.requeue and spec.requeue_before_time_limit_s:
        options.append(f"--signal=B:USR1@{spec.requeue_before_time_limit_s}")
    options += list(spec.extra_sbatch)
    for option in options:
        # sbatch reads #SBATCH lines with its own parser, not bash: keep each value one plain word.
        if any(ch.isspace() for ch in option):
            raise ValueError(f"sbatch option {option!r} contains whitespace; Slurm would split or cut it")
    return options


def _environment_lines(env: Mapping[str, str]) -> list[str]:
    exports, secrets = [], []
    for name in sorted(env):
        if not _ENV_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid environment variable name")
        if name.startswith(_SLURM_OWNED_PREFIXES) or name in _HOST_OWNED_NAMES:
            continue
        if looks_secret(name):
            secrets.append(name)
        else:
            exports.append(f"export {name}={shlex.quote(str(env[name]))}")
    lines = []
    if secrets:
        lines.append("# Secrets: inherited from the environment that ran sbatch (--export=ALL), never written here.")
        lines += [f': "${{{name}?{name} must be set in the environment that runs sbatch}}"' for name in secrets]
        lines.append("")
    if exports:
        lines += ["# Job environment", *exports, ""]
    return lines


def _launch_lines(spec: SlurmSpec, module: str, args: list[str], *, python: str, nproc: int) -> list[str]:
    job_args = " ".join(shlex.quote(a) for a in ["-m", module, *args])
    if spec.nodes == 1 and nproc == 1:
        command = f"{shlex.quote(python)} {job_args}"
        lines = []
    else:
        srun = ["srun", "--nodes=\"$SLURM_JOB_NUM_NODES\"", "--ntasks-per-node=1",
                # since Slurm 22.05 srun no longer inherits --cpus-per-task from sbatch
                f"--cpus-per-task={spec.cpus_per_task}", "--kill-on-bad-exit=1"]
        if spec.gpus_per_node:
            srun.append(f"--gpus-per-node={spec.gpus_per_node}")
        torchrun = [shlex.quote(python), "-m", "torch.distributed.run", "--nnodes=\"$SLURM_JOB_NUM_NODES\"",
                    f"--nproc_per_node={nproc}", "--rdzv_backend=c10d",
                    "--rdzv_endpoint=\"$rdzv_endpoint\"", "--rdzv_id=\"$SLURM_JOB_ID\""]
        command = " ".join(srun + torchrun) + " " + job_args
        lines = [
            "# torchrun agents meet on the allocation's first node, keyed by the job id.",
            'mapfile -t job_nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")',
            f'rdzv_endpoint="${{job_nodes[0]}}:{spec.rdzv_port}"',
            "",
        ]
    if spec.requeue and spec.requeue_before_time_limit_s:
        lines += [
            "# Near the time limit Slurm sends USR1: requeue, and the next run resumes from the newest checkpoint.",
            "requeue_before_time_limit() {",
            '  echo "[slurm] time limit near: requeueing job ${SLURM_JOB_ID}"',
            '  scontrol requeue "$SLURM_JOB_ID"',
            "}",
            "trap requeue_before_time_limit USR1",
            "",
        ]
    lines += [
        # In the background so the trap runs as soon as the signal arrives, not when the job ends.
        f"{command} &",
        "job_pid=$!",
        "while true; do",
        '  wait "$job_pid" && exit 0 || status=$?',
        '  kill -0 "$job_pid" 2>/dev/null || exit "$status"  # still running: a trapped signal woke wait',
        "done",
    ]
    return lines


def parse_sbatch_job_id(stdout: str) -> str:
    """The job id from sbatch's output: ``Submitted batch job 123`` or ``--parsable``'s ``123[;cluster]``."""
    match = _SUBMITTED.search(stdout)
    if not match:
        raise ValueError(f"no job id in sbatch output: {stdout!r}")
    return match.group(1)


def parse_job_state(squeue_stdout: str, scontrol_stdout: str = "") -> str | None:
    """A job's state from ``squeue -h -j ID -o %T`` (while queued) or ``scontrol show job ID`` (after);
    None when neither knows the job."""
    queued = squeue_stdout.strip().split()
    if queued:
        return queued[0]
    for word in scontrol_stdout.split():
        if word.startswith("JobState="):
            return word.removeprefix("JobState=")
    return None
