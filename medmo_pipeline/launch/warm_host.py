"""A warm job host, the local launcher's ``warm_host`` option: jobs start as forks of a process that
has already imported torch, transformers, trl and MLflow.

Why it exists: every job imports those before its own work, and on the embedded demo that import is a
large share of most jobs (the base model, the evaluations, the short stages), which run one after
another; starting them from a warm fork takes that import off the demo's critical path
(``benches/job_start.py`` measures one job cold and warm; docs/measurements.md has the demo's figures). Cluster launchers do not use it: there a job's start is
small beside its training. ``medmo demo`` starts one host for its materialization and points the
local launcher at it (``MEDMO_WARM_HOST``); the launcher then runs each single-process job as

    python -m medmo_pipeline.launch.warm_host run --socket S -- MODULE ARGS...

a small client that hands the host its standard streams (file descriptors), working directory,
environment and arguments over a Unix socket. The host forks; the fork runs ``MODULE`` as
``__main__`` exactly as ``python -m`` would, in its own process, and the client exits with its exit
code. The client forwards SIGINT/SIGTERM to the job, and the host kills a job whose client went away.

A job runs cold (the client execs ``python -m MODULE`` itself) when no host answers, or when its
environment differs from the host's in a variable that libraries read when they are imported
(``HF_HUB_OFFLINE``, ``OMP_NUM_THREADS``, ...), since the host imported them under its own values.
Our own modules are never preloaded: every job imports the checkout's code fresh.

The socket lives in a private (0700) temporary directory; only this user can connect.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import select
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from medmo_pipeline.jobs import ERROR_FILE_ENV

SOCKET_ENV = "MEDMO_WARM_HOST"  # the host's socket path, set in the environment the launcher sees

# Heavy third-party modules the jobs import; a missing one is skipped.
PRELOAD = (
    "torch", "numpy", "pandas", "pyarrow.parquet", "PIL.Image", "scipy.optimize", "datasets", "mlflow",
    "transformers", "transformers.models.qwen3_vl.modeling_qwen3_vl",
    "transformers.models.qwen3_vl.processing_qwen3_vl", "transformers.generation.utils", "transformers.trainer",
    "trl", "trl.trainer.sft_trainer", "trl.trainer.grpo_trainer",
)
# Read by libraries at import time: a job whose value differs from the host's runs cold.
IMPORT_TIME_PREFIXES = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TOKENIZERS_", "TORCH", "PYTORCH_", "OMP_",
                        "MKL_", "OPENBLAS_", "CUDA_", "NCCL_", "PYTHON", "LD_", "MLFLOW_ENABLE")
MAX_MESSAGE = 16 << 20


# ...except these, which match a prefix but are read only when a job fails or ends (a fresh path per job).
READ_AT_RUN_TIME = frozenset({ERROR_FILE_ENV})


def import_sensitive(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_PREFIXES) and k not in READ_AT_RUN_TIME}


def env_mismatch(host_env: Mapping[str, str], job_env: Mapping[str, str]) -> list[str]:
    """Import-time variables whose value differs between the host and the job (sorted names)."""
    host, job = import_sensitive(host_env), import_sensitive(job_env)
    return sorted(k for k in host.keys() | job.keys() if host.get(k) != job.get(k))


# ---- framing: a 4-byte length, then JSON --------------------------------------------------------

def send_message(sock: socket.socket, payload: dict, fds: Sequence[int] = ()) -> None:
    data = json.dumps(payload).encode()
    frame = struct.pack("!I", len(data)) + data
    if fds:
        socket.send_fds(sock, [frame], list(fds))
    else:
        sock.sendall(frame)


def receive_message(sock: socket.socket, max_fds: int = 0) -> tuple[dict | None, list[int]]:
    """One message (None at end of stream) and the file descriptors sent with it."""
    fds: list[int] = []
    if max_fds:
        header, fds, _flags, _addr = socket.recv_fds(sock, 4, max_fds)
    else:
        header = sock.recv(4)
    header = header + _read_exactly(sock, 4 - len(header)) if header else header
    if len(header) < 4:
        return None, fds
    (size,) = struct.unpack("!I", header)
    if size > MAX_MESSAGE:
        raise ValueError(f"warm host message of {size} bytes is over the {MAX_MESSAGE}-byte limit")
    return json.loads(_read_exactly(sock, size)), fds


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = sock.recv(size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


# ---- the host ------------------------------------------------------------------------------------

def serve(socket_path: Path, *, preload: Sequence[str] = PRELOAD, idle_timeout: float = 3600.0) -> None:
    """Accept jobs on ``socket_path`` until SIGTERM, SIGINT or ``idle_timeout`` seconds with no job.

    One thread: forks happen with no other thread alive, and a select loop watches the clients and
    reaps the jobs. The socket appears once the imports are done; a job that starts earlier runs cold."""
    started, host_env = time.time(), dict(os.environ)
    skipped = preload_modules(preload)
    # What the imports themselves put in the environment (torch sets a cache path): a cold job's
    # imports would set the same, so the fork gets them on top of its own environment.
    set_by_imports = {k: v for k, v in os.environ.items() if k not in host_env}
    if threading.active_count() > 1:  # a fork copies only the forking thread: refuse rather than risk it
        print("[warm host] a preloaded module started a thread; not serving (jobs run cold)", flush=True)
        return
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    partial = socket_path.with_name(socket_path.name + ".binding")
    partial.unlink(missing_ok=True)
    listener.bind(str(partial))
    os.chmod(partial, 0o600)
    listener.listen(16)
    os.replace(partial, socket_path)  # clients see the socket only once it listens
    print(f"[warm host] {socket_path}: preloaded {len(preload) - len(skipped)} modules in "
          f"{time.time() - started:.1f} s" + (f" (not importable: {', '.join(skipped)})" if skipped else ""),
          flush=True)
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    jobs: dict[int, socket.socket] = {}  # pid -> its client's connection
    abandoned: dict[int, float] = {}  # pid -> when its client went away
    last_job, closing = time.time(), False
    try:
        while jobs or not (stopping or time.time() - last_job > idle_timeout):
            if stopping and not closing:  # stop taking jobs; end the running ones as their clients would
                closing = True
                for pid in jobs:
                    _signal(pid, signal.SIGTERM)
                    abandoned.setdefault(pid, time.time())
            watched = [c for p, c in jobs.items() if p not in abandoned]
            readable, _, _ = select.select(watched if closing else [listener, *watched], [], [], 0.5)
            for ready in readable:
                if ready is listener:
                    connection, _ = listener.accept()
                    pid = start_job(connection, host_env, set_by_imports, [listener, *jobs.values()])
                    if pid is None:
                        connection.close()
                    else:
                        jobs[pid] = connection
                elif _client_gone(ready):
                    pid = next(p for p, c in jobs.items() if c is ready)
                    _signal(pid, signal.SIGTERM)  # its client exited or was killed: so does the job
                    abandoned[pid] = time.time()
            for pid, since in abandoned.items():
                if time.time() - since > KILL_GRACE:
                    _signal(pid, signal.SIGKILL)
            reap(jobs, abandoned)
            if jobs:
                last_job = time.time()
    finally:
        listener.close()
        socket_path.unlink(missing_ok=True)


KILL_GRACE = 10.0  # seconds between SIGTERM and SIGKILL for a job whose client went away


def _client_gone(connection: socket.socket) -> bool:
    try:
        return connection.recv(1) == b""
    except OSError:
        return True


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def reap(jobs: dict[int, socket.socket], abandoned: dict[int, float]) -> None:
    """Send each finished job's exit code to its client and forget it."""
    for pid in list(jobs):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            connection = jobs.pop(pid)
            abandoned.pop(pid, None)
            _reply(connection, {"exit": os.waitstatus_to_exitcode(status)})
            connection.close()


def preload_modules(names: Sequence[str]) -> list[str]:
    skipped = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module a job cannot import either; the job reports it
            skipped.append(name)
    return skipped


def start_job(connection: socket.socket, host_env: Mapping[str, str], set_by_imports: Mapping[str, str],
              others: Sequence[socket.socket]) -> int | None:
    """Read one request and fork its job; the job's pid (also sent to the client), or None if refused.
    ``others``: the host's other sockets, closed in the fork."""
    fds: list[int] = []
    try:
        connection.settimeout(10)  # a request is one message; a client that sends nothing is dropped
        request, fds = receive_message(connection, max_fds=3)
        connection.settimeout(None)
        if request is None or len(fds) != 3:
            raise ValueError("a request needs its module, arguments, environment and 3 standard streams")
        mismatch = env_mismatch(host_env, request["env"])
        if mismatch:
            raise ValueError(f"environment differs from the host's in {', '.join(mismatch)}")
    except (OSError, ValueError, KeyError) as error:
        _reply(connection, {"cold": str(error)})
        for fd in fds:
            os.close(fd)
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        for sock in (*others, connection):
            sock.close()
        os._exit(run_in_child(request | {"env": set_by_imports | request["env"]}, fds))
    for fd in fds:
        os.close(fd)
    _reply(connection, {"pid": pid})
    return pid


def _reply(connection: socket.socket, payload: dict) -> None:
    try:
        send_message(connection, payload)
    except OSError:
        pass


def run_in_child(request: dict, fds: list[int]) -> int:
    """In the fork: become ``python -m module args`` in the client's streams, directory and environment."""
    import runpy

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    sys.stdin = open(0, encoding="utf-8", errors="strict", closefd=False)  # noqa: SIM115 - the process's stdin
    sys.stdout = open(1, "w", encoding="utf-8", errors="strict", closefd=False,  # noqa: SIM115
                      buffering=1 if os.isatty(1) or unbuffered else -1)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)  # noqa: SIM115
    sys.argv = [request["module"], *request["args"]]
    sys.path[0] = request["cwd"]  # what `python -m` puts first
    code = 0
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if not isinstance(stop.code, int | None):
            print(stop.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - printed as `python -m` would, then a non-zero exit
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        finish_like_python()
    return code


def finish_like_python() -> None:
    """What interpreter shutdown does before the fork's ``os._exit``: join the job's non-daemon
    threads, run the atexit handlers (MLflow, logging), flush the streams."""
    import atexit

    try:
        threading._shutdown()  # private, but the step Py_FinalizeEx takes first
    except Exception as error:  # noqa: BLE001 - a thread that fails to join must not hide the exit code
        print(f"[warm host] joining the job's threads failed: {error!r}", file=sys.stderr)
    atexit._run_exitfuncs()  # handlers that raise are printed, as at shutdown
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass


# ---- the client ----------------------------------------------------------------------------------

def run_job(socket_path: str | None, module: str, args: list[str]) -> int:
    """Run ``python -m module args`` through the host at ``socket_path``; cold when none answers."""
    reason = "no warm host configured"
    if socket_path:
        try:
            return _run_warm(socket_path, module, args)
        except _RunCold as cold:
            reason = str(cold)
    print(f"[warm host] running {module} cold: {reason}", file=sys.stderr, flush=True)
    os.execv(sys.executable, [sys.executable, "-m", module, *args])
    return 1  # not reached


class _RunCold(Exception):
    pass


def _run_warm(socket_path: str, module: str, args: list[str]) -> int:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_path)
        send_message(sock, {"module": module, "args": args, "cwd": os.getcwd(), "env": dict(os.environ)},
                     fds=[0, 1, 2])
        reply, _ = receive_message(sock)
    except OSError as error:
        sock.close()
        raise _RunCold(f"host at {socket_path} did not answer ({error})") from error
    if reply is None or "cold" in reply:
        sock.close()
        raise _RunCold(reply["cold"] if reply else f"host at {socket_path} closed the connection")
    pid = reply["pid"]

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    try:
        done, _ = receive_message(sock)
    finally:
        sock.close()
    if done is None:
        print(f"[warm host] lost the host while {module} ran (pid {pid})", file=sys.stderr, flush=True)
        return 1
    code = int(done["exit"])
    if code < 0:  # killed by a signal: end the same way, as a cold job's parent would see it
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


# ---- for ``medmo demo``: a host for the duration of a block ------------------------------------

class WarmHost:
    """``with WarmHost() as env_update:`` starts a host, yields {SOCKET_ENV: path}, stops it after."""

    def __init__(self, env: Mapping[str, str] | None = None, log_path: Path | None = None):
        self.env = dict(os.environ if env is None else env)
        self.log_path = log_path

    def __enter__(self) -> dict[str, str]:
        import subprocess

        self.directory = Path(tempfile.mkdtemp(prefix="medmo-warm-"))  # 0700, short enough for AF_UNIX
        self.socket_path = self.directory / "host.sock"
        log = self.log_path.open("w") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "medmo_pipeline.launch.warm_host", "serve", "--socket", str(self.socket_path)],
            env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        if self.log_path:
            log.close()
        return {SOCKET_ENV: str(self.socket_path)}  # jobs run cold until the host listens

    def wait_until_listening(self, timeout: float = 120.0) -> None:
        """Block until the host has imported everything and listens (jobs never need to: they run cold)."""
        deadline = time.time() + timeout
        while not self.socket_path.exists():
            if self.process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the warm host at {self.socket_path} is not listening"
                                   + (f" (exit {self.process.returncode})" if self.process.poll() is not None else
                                      f" after {timeout:.0f} s"))
            time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        import shutil
        import subprocess

        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medmo_pipeline.launch.warm_host", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="preload the heavy modules and run jobs as forks")
    p_serve.add_argument("--socket", type=Path, required=True)
    p_serve.add_argument("--idle-timeout", type=float, default=3600.0)
    p_serve.add_argument("--preload", default=None,
                         help="comma-separated modules to import first (default: torch, transformers, trl, MLflow, ...)")
    p_run = sub.add_parser("run", help="run `python -m MODULE ARGS` through a host (cold if none answers)")
    p_run.add_argument("--socket", default=os.environ.get(SOCKET_ENV))
    p_run.add_argument("module")
    p_run.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    if ns.command == "serve":
        preload = PRELOAD if ns.preload is None else [m for m in ns.preload.split(",") if m]
        serve(ns.socket, preload=preload, idle_timeout=ns.idle_timeout)
        return 0
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    return run_job(ns.socket, ns.module, args)


if __name__ == "__main__":
    sys.exit(main())
