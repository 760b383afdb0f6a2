"""Launch specs for jobs on this machine: the command line and its environment (pure functions)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from medmo_pipeline import home
from medmo_pipeline.tracking import ASSET_KEY_ENV, DAGSTER_RUN_ID_ENV


def job_command(module: str, args: list[str], *, python: str | None = None, nproc_per_node: int = 1,
                warm_host: str | None = None) -> list[str]:
    """``python -m module args`` (under torchrun when more than one process per node). With the socket
    of a warm host (``medmo_pipeline.launch.warm_host``), a single-process job starts as a fork of it."""
    python = python or sys.executable
    if nproc_per_node > 1:
        return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
                "-m", module, *args]
    if warm_host:
        return [python, "-m", "medmo_pipeline.launch.warm_host", "run", "--socket", warm_host, module, "--", *args]
    return [python, "-m", module, *args]


def job_env(base: Mapping[str, str], *, run_id: str, asset_key: str, offline: bool) -> dict[str, str]:
    """Environment for a job: the launcher's, plus MEDMO_HOME, run identity and offline flags."""
    env = dict(base)
    env["MEDMO_HOME"] = str(home.medmo_home())
    env[DAGSTER_RUN_ID_ENV] = run_id
    env[ASSET_KEY_ENV] = asset_key
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # A job killed by a fatal signal (a crash in native code, an abort) records no exception: Python's
    # traceback of every thread on its stderr is then what says where it was.
    env.setdefault("PYTHONFAULTHANDLER", "1")
    env.setdefault("MLFLOW_TRACKING_URI", home.mlflow_tracking_uri())
    if offline:  # the embedded default must never reach for a hub
        env["HF_HUB_OFFLINE"] = "1"
        env["HF_DATASETS_OFFLINE"] = "1"
    return env


def current_env() -> dict[str, str]:
    return dict(os.environ)


def fatal_signal(directory: Path) -> tuple[str, str] | None:
    """(message, tracebacks) of the first rank whose fault handler wrote into ``directory``
    (``jobs.FATAL_DIR_ENV``): killed by a fatal signal; None when none was."""
    for path in sorted(Path(directory).glob("rank-*.txt"), key=lambda p: int(p.stem.split("-")[1])):
        try:
            text = path.read_text(errors="replace").strip()
        except OSError:
            continue
        if text:
            return f"{path.stem.replace('-', ' ')}: {text.splitlines()[0]}", text
    return None


def recorded_failure(error_file: Path) -> tuple[str, str] | None:
    """(message, traceback) of the exception a failed job wrote (``jobs.entry_point``); None when it
    wrote none: killed by a signal or a crash in native code, which only its stderr shows."""
    try:
        message = json.loads(Path(error_file).read_text())["message"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if isinstance(message, str):  # the plain form, which torch.distributed.elastic also reads
        return message, ""
    return str(message.get("message", "")), str(message.get("extraInfo", {}).get("py_callstack", ""))
