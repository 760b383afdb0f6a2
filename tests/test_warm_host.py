"""The warm job host: a job started through it behaves as ``python -m module args`` would (arguments,
directory, environment, streams, exit code, signals), in its own process, and runs cold when it must.

Real processes throughout: a host subprocess on a Unix socket, clients as subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medmo_pipeline.jobs import ERROR_FILE_ENV
from medmo_pipeline.launch.local import job_command
from medmo_pipeline.launch.warm_host import env_mismatch

PROBE = '''
import os, sys, time
print("argv", sys.argv[1:], "cwd", os.getcwd(), "probe", os.environ.get("PROBE"), "pid", os.getpid(), flush=True)
print("on stderr", file=sys.stderr, flush=True)
if "pidfile" in sys.argv:
    open(sys.argv[sys.argv.index("pidfile") + 1], "w").write(str(os.getpid()))
if "sleep" in sys.argv:
    time.sleep(120)
if "atexit" in sys.argv:
    import atexit, threading
    atexit.register(lambda: print("atexit ran", flush=True))
    threading.Thread(target=lambda: (time.sleep(0.5), print("thread joined", flush=True))).start()
if "fail" in sys.argv:
    raise RuntimeError("probe failed on purpose")
if "torch" in sys.argv:
    import torch
    torch.manual_seed(0)
    x = torch.randn(256, 256)
    print("torch", torch.get_num_threads(), round(float((x @ x).sum()), 3), flush=True)
sys.exit(int(sys.argv[1]) if sys.argv[1:2] and sys.argv[1].isdigit() else 0)
'''


class Host:
    def __init__(self, directory: Path, preload: str | None):
        self.socket = directory / "host.sock"
        command = [sys.executable, "-m", "medmo_pipeline.launch.warm_host", "serve", "--socket", str(self.socket)]
        if preload is not None:
            command += ["--preload", preload]
        self.log = directory / "host.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=base_env())
        deadline = time.time() + 60
        while not self.socket.exists():
            assert self.process.poll() is None, self.log.read_text()
            assert time.time() < deadline, "the host did not start listening in 60 s"
            time.sleep(0.05)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        return self.process.returncode


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PROBE"}


@pytest.fixture
def probe_dir(tmp_path):
    (tmp_path / "probe_job.py").write_text(PROBE)
    return tmp_path


@pytest.fixture
def host(probe_dir):
    running = Host(probe_dir, preload="json")
    yield running
    running.stop()


def client(socket: Path | str, *args: str, cwd: Path, env: dict | None = None, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "medmo_pipeline.launch.warm_host", "run", "--socket", str(socket), "probe_job", "--", *args],
        cwd=cwd, env=env or base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def test_a_job_gets_its_arguments_directory_environment_streams_and_exit_code(host, probe_dir):
    run = client(host.socket, "3", "--flag", "two words", cwd=probe_dir, env=base_env() | {"PROBE": "hello"})
    out, err = run.communicate(timeout=60)
    assert run.returncode == 3
    assert f"argv ['3', '--flag', 'two words'] cwd {probe_dir} probe hello" in out
    assert "on stderr" in err and "cold" not in err
    job_pid = int(out.split("pid ")[1].split()[0])
    assert job_pid not in (run.pid, host.process.pid)  # its own process, a fork of the host


def test_the_job_ends_as_python_does_threads_joined_then_atexit_handlers(host, probe_dir):
    run = client(host.socket, "atexit", cwd=probe_dir)
    out, _ = run.communicate(timeout=60)
    assert run.returncode == 0
    assert out.index("thread joined") < out.index("atexit ran")


def test_an_uncaught_exception_prints_its_traceback_and_exits_1(host, probe_dir):
    run = client(host.socket, "fail", cwd=probe_dir)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 1
    assert "RuntimeError: probe failed on purpose" in err and "Traceback" in err


def test_a_job_whose_import_time_environment_differs_runs_cold(host, probe_dir):
    run = client(host.socket, "0", cwd=probe_dir, env=base_env() | {"OMP_NUM_THREADS": "7", "PROBE": "cold one"})
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0 and "probe cold one" in out
    assert "running probe_job cold: environment differs from the host's in OMP_NUM_THREADS" in err
    assert int(out.split("pid ")[1].split()[0]) == run.pid  # the client exec'd the job itself


def test_without_a_host_the_job_runs_cold(probe_dir):
    run = client(probe_dir / "nobody.sock", "4", cwd=probe_dir)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 4 and "argv ['4']" in out
    assert "running probe_job cold: host at" in err and "did not answer" in err


def _pid_from(path: Path, timeout: float = 30) -> int:
    deadline = time.time() + timeout
    while not (path.exists() and path.read_text()):
        assert time.time() < deadline, "the job never started"
        time.sleep(0.05)
    return int(path.read_text())


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_sigterm_to_the_client_reaches_the_job(host, probe_dir):
    pidfile = probe_dir / "job.pid"
    run = client(host.socket, "sleep", "pidfile", str(pidfile), cwd=probe_dir)
    job = _pid_from(pidfile)
    run.send_signal(signal.SIGTERM)
    run.communicate(timeout=30)
    assert run.returncode == -signal.SIGTERM  # as a cold job killed by SIGTERM would end
    assert _gone(job, timeout=10)


def test_a_killed_client_takes_its_job_with_it(host, probe_dir):
    pidfile = probe_dir / "job.pid"
    run = client(host.socket, "sleep", "pidfile", str(pidfile), cwd=probe_dir)
    job = _pid_from(pidfile)
    run.kill()
    run.communicate(timeout=30)
    assert _gone(job, timeout=15), "the host left a job running after its client was killed"


def test_stopping_the_host_ends_its_jobs_and_removes_the_socket(host, probe_dir):
    pidfile = probe_dir / "job.pid"
    run = client(host.socket, "sleep", "pidfile", str(pidfile), cwd=probe_dir)
    job = _pid_from(pidfile)
    assert host.stop() == 0
    assert _gone(job, timeout=5) and not host.socket.exists()
    run.communicate(timeout=30)
    assert run.returncode == -signal.SIGTERM


def test_a_torch_job_in_a_fork_of_the_preloaded_host_matches_a_cold_one(probe_dir):
    """The default preload (torch, transformers, trl, MLflow ...): torch works in the fork, with the
    same threads and the same numbers as a cold start."""
    warm_host = Host(probe_dir, preload=None)
    try:
        assert "preloaded" in warm_host.log.read_text()
        warm = client(warm_host.socket, "torch", cwd=probe_dir)
        warm_out, warm_err = warm.communicate(timeout=120)
    finally:
        warm_host.stop()
    cold = subprocess.run([sys.executable, "-m", "probe_job", "torch"], cwd=probe_dir, env=base_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert warm.returncode == 0 and "cold" not in warm_err, warm_err
    torch_line = next(line for line in cold.stdout.splitlines() if line.startswith("torch"))
    assert torch_line in warm_out.splitlines()


def test_environment_mismatch_looks_only_at_import_time_variables():
    host = {"HF_HUB_OFFLINE": "1", "PATH": "/a", "OMP_NUM_THREADS": "2"}
    assert env_mismatch(host, host | {"PATH": "/b", "DAGSTER_PIPES_CONTEXT": "x", "MEDMO_ASSET_KEY": "y"}) == []
    # The error file (TORCHELASTIC_ERROR_FILE) is new for every job and read only once it ends.
    assert env_mismatch(host, host | {ERROR_FILE_ENV: "/tmp/medmo-job-x/error.json"}) == []
    assert env_mismatch(host, {**host, "HF_HUB_OFFLINE": "0"}) == ["HF_HUB_OFFLINE"]
    assert env_mismatch(host, {"PATH": "/a"}) == ["HF_HUB_OFFLINE", "OMP_NUM_THREADS"]


def test_job_command_goes_through_the_host_only_for_a_single_process():
    assert job_command("m", ["--x"], python="py", warm_host="/s") == [
        "py", "-m", "medmo_pipeline.launch.warm_host", "run", "--socket", "/s", "m", "--", "--x"]
    assert job_command("m", ["--x"], python="py") == ["py", "-m", "m", "--x"]
    assert "torch.distributed.run" in job_command("m", [], python="py", nproc_per_node=2, warm_host="/s")
