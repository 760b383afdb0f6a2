"""The Slurm launcher: one sbatch job per asset materialization, heard back through Dagster Pipes.

The sbatch script comes from ``medmo_pipeline.launch.slurm`` (a pure function). Pipes talks through
two files in the job's directory on the shared filesystem: the context (written here, read by the
job) and the messages (appended by the job's rank 0, tailed here). While the job runs, its Slurm log
is streamed into the Dagster run's log, and its job id is a run tag (``medmo/slurm_job_id``) at once
and asset metadata at the end. If the Dagster run is cancelled (or anything else interrupts the
wait), the job is ``scancel``-ed.

A requeued job (preempted, or near its time limit) keeps its id, appends to the same log and
messages, and resumes from its newest checkpoint; the launcher simply keeps waiting.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
from pydantic import Field

from medmo_pipeline import home
from medmo_pipeline.launch.slurm import (
    FINAL_STATES,
    SlurmSpec,
    job_log_path,
    parse_job_state,
    parse_sbatch_job_id,
    sbatch_script,
)
from resources.launcher import JobSize, Launcher, with_metadata
from resources.pipes_messages import WholeLineFileMessageReader

SLURM_JOB_TAG = "medmo/slurm_job_id"
# Final for this attempt, but a requeue-able job may come back from them: wait before believing them.
_MAYBE_REQUEUED = frozenset({"PREEMPTED", "NODE_FAIL", "BOOT_FAIL"})
_UNKNOWN_GRACE_S = 30.0
_COMMAND_TIMEOUT_S = 60
_LOG_CHUNK_LINES = 200


class SlurmLauncher(Launcher):
    """sbatch on the cluster this process can submit to (``SLURM_CONF`` as usual)."""

    partition: str | None = None
    account: str | None = None
    shared_dir: str | None = None  # job scripts, logs, Pipes files; on the shared filesystem. Default MEDMO_HOME/jobs
    python: str | None = None  # the job's interpreter; default: this one (a venv on the shared filesystem)
    chdir: str | None = None  # the job's working directory; default: this checkout
    setup_lines: list[str] = Field(default_factory=list)  # bash before the job, e.g. "module load cuda/12.4"
    extra_sbatch: list[str] = Field(default_factory=list)  # e.g. ["--qos=high", "--exclusive"]
    requeue: bool = True
    rdzv_port: int = 29500
    poll_interval_s: float = 2.0
    requeue_grace_s: float = 60.0

    def launch(self, context: dg.AssetExecutionContext, module: str, args: list[str]) -> dg.MaterializeResult:
        size = self.size_for(context, module)
        job_dir = self.job_dir(context)
        spec = self.spec(size, job_dir, job_name(context))
        with dg.open_pipes_session(
            context=context,
            context_injector=dg.PipesFileContextInjector(str(job_dir / "pipes-context.json")),
            message_reader=WholeLineFileMessageReader(str(job_dir / "pipes-messages.jsonl")),
        ) as session:
            env = {**self.job_environment(context), **session.get_bootstrap_env_vars()}
            script = job_dir / "job.sbatch"
            script.write_text(sbatch_script(spec, module, args, env=env, python=self.python or sys.executable,
                                            nproc_per_node=size.processes_per_node()))
            job = SlurmJob.submit(script, spec)
            context.log.info(f"Slurm job {job.job_id}: {module} on {size.nodes} node(s) x "
                             f"{size.processes_per_node()} process(es); log {job.log}")
            context.instance.add_run_tags(context.run_id, {SLURM_JOB_TAG: job.job_id})
            state = job.wait(context, self.poll_interval_s, self.requeue_grace_s if self.requeue else 0.0)
            if state != "COMPLETED":
                raise dg.Failure(description=f"Slurm job {job.job_id} ended {state}; log {job.log}",
                                 metadata={"slurm_job_id": job.job_id, "slurm_log_tail": job.log_tail()})
        result = dg.PipesClientCompletedInvocation(session).get_materialize_result()
        return with_metadata(result, slurm_job_id=job.job_id, slurm_log=dg.MetadataValue.path(str(job.log)))

    def job_dir(self, context: dg.AssetExecutionContext) -> Path:
        root = Path(self.shared_dir) if self.shared_dir else home.jobs_dir()
        directory = root / context.run_id / "-".join(context.asset_key.path)
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def spec(self, size: JobSize, job_dir: Path, name: str) -> SlurmSpec:
        return SlurmSpec(
            nodes=size.nodes, gpus_per_node=size.gpus_per_node, cpus_per_task=size.cpus_per_task, time=size.time,
            partition=self.partition, account=self.account, mem=size.mem, job_name=name, output_dir=str(job_dir),
            requeue=self.requeue, extra_sbatch=tuple(self.extra_sbatch), setup_lines=tuple(self.setup_lines),
            chdir=self.chdir or str(home.checkout_root()), rdzv_port=self.rdzv_port,
        )


def job_name(context: dg.AssetExecutionContext) -> str:
    return "medmo-" + "-".join(context.asset_key.path)


class SlurmJob:
    """A submitted job: its state, its log, its cancellation."""

    def __init__(self, job_id: str, log: Path) -> None:
        self.job_id = job_id
        self.log = log
        self._offset = 0

    @classmethod
    def submit(cls, script: Path, spec: SlurmSpec) -> SlurmJob:
        done = _slurm("sbatch", "--parsable", str(script))
        if done.returncode != 0:
            raise dg.Failure(f"sbatch refused {script}: {done.stderr.strip() or done.stdout.strip()}")
        job_id = parse_sbatch_job_id(done.stdout)
        return cls(job_id, Path(job_log_path(spec, job_id)))

    def state(self) -> str | None:
        queued = _slurm("squeue", "-h", "-j", self.job_id, "-o", "%T").stdout
        shown = "" if queued.strip() else _slurm("scontrol", "show", "job", self.job_id).stdout
        return parse_job_state(queued, shown)

    def wait(self, context: dg.AssetExecutionContext, poll_s: float, requeue_grace_s: float) -> str:
        """Poll until the job is over, streaming its log; cancel it if the wait is interrupted."""
        over_since: float | None = None
        try:
            while True:
                state = self.state() or "UNKNOWN"
                self.stream_log(context)
                if state not in FINAL_STATES and state != "UNKNOWN":
                    over_since = None
                else:
                    over_since = over_since or time.monotonic()
                    if time.monotonic() - over_since >= _grace(state, requeue_grace_s):
                        return state
                time.sleep(poll_s)
        except BaseException:  # the run was cancelled (DagsterExecutionInterruptedError) or failed here
            self.cancel(context)
            raise

    def cancel(self, context: dg.AssetExecutionContext) -> None:
        state = self.state()
        if state in FINAL_STATES:
            return
        context.log.warning(f"cancelling Slurm job {self.job_id} (state {state}): the Dagster run stopped waiting")
        done = _slurm("scancel", self.job_id)
        if done.returncode != 0:
            context.log.error(f"scancel {self.job_id} failed: {done.stderr.strip()}")

    def stream_log(self, context: dg.AssetExecutionContext) -> None:
        """Forward the log's new complete lines to the run's log."""
        if not self.log.is_file():
            return
        with open(self.log, "rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        lines = complete.decode(errors="replace").splitlines()
        for start in range(0, len(lines), _LOG_CHUNK_LINES):
            context.log.info(f"[slurm {self.job_id}] " + "\n".join(lines[start:start + _LOG_CHUNK_LINES]))

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.is_file():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _grace(state: str, requeue_grace_s: float) -> float:
    """How long a state must hold before the job counts as over."""
    if state == "UNKNOWN":  # squeue and scontrol both failed to answer: maybe a busy controller
        return max(requeue_grace_s, _UNKNOWN_GRACE_S)
    return requeue_grace_s if state in _MAYBE_REQUEUED else 0.0


def _slurm(*command: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(list(command), capture_output=True, text=True, check=False, timeout=_COMMAND_TIMEOUT_S)
    except FileNotFoundError:
        raise dg.Failure(f"{command[0]} is not on PATH: the Slurm launcher needs Slurm's client commands") from None
