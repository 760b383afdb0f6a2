"""A real single-node Slurm on loopback, started and stopped by a session-scoped pytest fixture.

Use it from a test module with ``from slurm_cluster import slurm_cluster  # noqa: F401``.

The Debian packages (``slurm-wlm``, ``munge``) come from ``scripts/install-system-deps.sh``; when
their binaries are missing the tests that need the cluster skip and say so. Everything the daemons
write (munge key and socket, slurm.conf, state, spool, logs) lives in one temporary directory, and
the ports are picked free, so several test sessions on one machine do not meet. With no systemd,
the fixture starts munged, slurmctld and slurmd itself, each in its own process group, and on
teardown cancels every job, shuts Slurm down and kills whatever is left by PID.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from medmo_pipeline.launch.slurm import parse_sbatch_job_id

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
FINISHED_STATES = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
    "PREEMPTED", "TIMEOUT",
})
NODE = "localhost"
PARTITION = "debug"
STARTUP_TIMEOUT_S = 60


@dataclass
class SlurmCluster:
    """Handle on the running cluster: its config, the environment for clients, job helpers."""

    root: Path
    conf_path: Path
    env: dict[str, str]
    startup_seconds: float = 0.0
    _daemons: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    def run(self, *command: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(list(command), env=self.env, capture_output=True, text=True, check=check,
                              timeout=timeout)

    def submit(self, script_path: str | os.PathLike, *sbatch_args: str, env: Mapping[str, str] = {}) -> str:
        """sbatch the script; ``env`` adds variables to sbatch's environment (the job inherits them)."""
        done = subprocess.run(["sbatch", "--parsable", *sbatch_args, str(script_path)], env={**self.env, **env},
                              capture_output=True, text=True, check=True, timeout=30)
        return parse_sbatch_job_id(done.stdout)

    def state(self, job_id: str) -> str:
        """PENDING, RUNNING, ... while queued; the final state (COMPLETED, ...) once it left the queue."""
        queued = self.run("squeue", "-h", "-j", job_id, "-o", "%T", check=False).stdout.strip()
        if queued:
            return queued
        shown = self.run("scontrol", "show", "job", job_id, check=False).stdout
        for word in shown.split():
            if word.startswith("JobState="):
                return word.removeprefix("JobState=")
        return "UNKNOWN"

    def wait(self, job_id: str, timeout: float = 60, states: frozenset[str] = FINISHED_STATES) -> str:
        """Poll until the job reaches one of ``states`` (default: finished); returns that state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(job_id)
            if state in states:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {state} after {timeout}s\n{self.logs()}")
            time.sleep(0.25)

    def cancel(self, job_id: str) -> None:
        self.run("scancel", job_id)

    def logs(self, lines: int = 30) -> str:
        """The tail of every daemon log, for failure messages."""
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None]


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    missing = missing_binaries()
    if missing:
        pytest.skip(f"Slurm is not installed (missing {', '.join(missing)}); "
                    "run scripts/install-system-deps.sh to install slurm-wlm and munge")
    cluster = _start()
    saved_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf_path)  # so sbatch/squeue/scancel run by tests find it
    try:
        yield cluster
    finally:
        if saved_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved_conf
        _stop(cluster)


def _start() -> SlurmCluster:
    started = time.monotonic()
    # Not under pytest's 0700 tmp dirs: munged runs as user munge and must reach its own directory.
    root = Path(tempfile.mkdtemp(prefix="medmo-slurm-"))
    root.chmod(0o755)
    for sub in ("log", "state", "spool"):
        (root / sub).mkdir()
    conf_path = root / "slurm.conf"
    env = {**os.environ, "SLURM_CONF": str(conf_path)}
    cluster = SlurmCluster(root=root, conf_path=conf_path, env=env)
    try:
        munge_socket = _start_munged(cluster)
        conf_path.write_text(_slurm_conf(root, munge_socket))
        cluster._daemons["slurmctld"] = _spawn(cluster, "slurmctld", ["slurmctld", "-D", "-f", str(conf_path)])
        cluster._daemons["slurmd"] = _spawn(cluster, "slurmd", ["slurmd", "-D", "-N", NODE, "-f", str(conf_path)])
        _wait_until_idle(cluster)
    except BaseException:
        _stop(cluster)
        raise
    cluster.startup_seconds = time.monotonic() - started
    return cluster


def _start_munged(cluster: SlurmCluster) -> Path:
    munge_dir = cluster.root / "munge"
    munge_dir.mkdir()
    munge_dir.chmod(0o755)  # clients of every user must reach the socket; the key itself stays 0400
    key = munge_dir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    sock = munge_dir / "munge.socket"
    command = ["munged", "--foreground", f"--key-file={key}", f"--socket={sock}",
               f"--pid-file={munge_dir / 'munged.pid'}", f"--seed-file={munge_dir / 'munged.seed'}",
               f"--log-file={cluster.root / 'log' / 'munged.log'}"]
    if os.geteuid() == 0:
        # munged refuses to run as root; it runs as the package's user and owns its key and socket.
        user = pwd.getpwnam("munge")
        os.chown(munge_dir, user.pw_uid, user.pw_gid)
        os.chown(key, user.pw_uid, user.pw_gid)
        os.chown(cluster.root / "log", user.pw_uid, user.pw_gid)  # munged checks its log directory
        command = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", *command]
    cluster._daemons["munged"] = _spawn(cluster, "munged", command)
    _poll(lambda: sock.exists(), "munged to open its socket", cluster)
    return sock


def _slurm_conf(root: Path, munge_socket: Path) -> str:
    controller_port, node_port = free_port(), free_port()
    user = pwd.getpwuid(os.geteuid()).pw_name
    host = socket.gethostname().split(".")[0]  # slurmctld only runs on a host named in SlurmctldHost
    return "\n".join([
        "ClusterName=medmo-test",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={controller_port}",
        f"SlurmdPort={node_port}",
        f"SlurmUser={user}",
        f"SlurmdUser={user}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={munge_socket}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        "ProctrackType=proctrack/linuxproc",  # no cgroups in containers
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "SchedulerType=sched/backfill",
        "MpiDefault=none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "ReturnToService=2",  # the node comes back idle by itself after any restart
        "MinJobAge=600",  # keep finished jobs visible to `scontrol show job`
        "KillWait=5",
        "InactiveLimit=0",
        "MailProg=/bin/true",
        f"NodeName={NODE} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _spawn(cluster: SlurmCluster, name: str, command: list[str]) -> subprocess.Popen:
    output = open(cluster.root / "log" / f"{name}.out", "wb")  # noqa: SIM115 - the daemon keeps it
    with output:
        # Own process group, so teardown can kill the daemon and anything it forked in one go.
        return subprocess.Popen(command, env=cluster.env, stdout=output, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _wait_until_idle(cluster: SlurmCluster) -> None:
    def idle() -> bool:
        shown = cluster.run("sinfo", "-h", "-n", NODE, "-o", "%T", check=False).stdout.strip()
        return shown == "idle"

    _poll(idle, f"node {NODE} to become idle", cluster)


def _poll(ready, what: str, cluster: SlurmCluster, timeout: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        for name, process in cluster._daemons.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode} while waiting for {what}\n"
                                   f"{cluster.logs()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}\n{cluster.logs()}")
        time.sleep(0.2)


def _stop(cluster: SlurmCluster) -> None:
    daemons = cluster._daemons
    if "slurmctld" in daemons and daemons["slurmctld"].poll() is None:
        # slurmstepd outlives slurmd by design: end every job first, then shut the daemons down.
        cluster.run("scancel", "--full", f"--partition={PARTITION}", check=False)
        try:
            _poll(lambda: not cluster.run("squeue", "-h", check=False).stdout.strip(), "jobs to end", cluster,
                  timeout=20)
        except RuntimeError:
            pass  # killed by PID below
        cluster.run("scontrol", "shutdown", check=False)
    for name in ("slurmd", "slurmctld", "munged"):
        process = daemons.get(name)
        if process is not None:
            _terminate(process, grace_s=0 if name == "munged" else 10)
    shutil.rmtree(cluster.root, ignore_errors=True)


def _terminate(process: subprocess.Popen, grace_s: float) -> None:
    try:
        process.wait(timeout=grace_s)  # a daemon told to shut down gets time to do it cleanly
    except subprocess.TimeoutExpired:
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)  # the group also holds anything the daemon forked
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue
