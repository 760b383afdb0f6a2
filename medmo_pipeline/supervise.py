"""Run a server (``dagster dev``) so that stopping ``medmo`` stops everything the server started.

The server runs in its own session, with SIGINT and SIGTERM at their defaults (a process started from
a shell without job control would otherwise inherit SIGINT as ignored, and ``dagster dev`` maps SIGTERM
to SIGINT's handler, so it would ignore both). ``medmo`` catches SIGINT and SIGTERM itself and passes
a shutdown down: SIGINT to the whole session first (``dagster dev``'s orderly shutdown of its webserver,
daemon and code servers), then SIGTERM, then SIGKILL to whatever of that session is still alive.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

GRACE_S = (20.0, 10.0)  # after SIGINT, after SIGTERM; then SIGKILL


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _signal_session(sid: int, sig: int) -> None:
    for pid in session_members(sid):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_gone(process: subprocess.Popen, sid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        process.poll()
        if process.returncode is not None and not session_members(sid):
            return True
        time.sleep(0.2)
    return False


def stop_session(process: subprocess.Popen) -> None:
    """SIGINT, SIGTERM, SIGKILL to every process of the server's session, until none is left."""
    sid = process.pid
    for sig, grace in ((signal.SIGINT, GRACE_S[0]), (signal.SIGTERM, GRACE_S[1]), (signal.SIGKILL, 5.0)):
        _signal_session(sid, sig)
        if _wait_gone(process, sid, grace):
            return


def run_supervised(command: list[str], *, env: dict[str, str], cwd: Path) -> int:
    """Run ``command`` until it exits or this process gets SIGINT/SIGTERM; then stop its whole session.
    Returns its exit code, or 128 + the signal number when a signal stopped it."""
    received: list[int] = []

    def on_signal(signum, _frame):
        received.append(signum)

    # Handled here, so reset to their defaults in the child when it execs.
    saved = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    process = None
    try:
        process = subprocess.Popen(command, env=env, cwd=cwd, start_new_session=True)
        while process.poll() is None and not received:
            time.sleep(0.2)
    finally:
        if process is not None:
            stop_session(process)
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    return 128 + received[0] if received else process.returncode

