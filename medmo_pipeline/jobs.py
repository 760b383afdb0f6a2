"""What every job entry point shares: reporting back to whoever launched it.

Launched by Dagster (``DAGSTER_PIPES_CONTEXT`` is set), messages go through Dagster Pipes:
logs, progress, and the final materialization with its metadata and data version. Run by hand
(``python -m medmo_pipeline.training.sft ...``), the same calls print to the console, so entry
points run with no Dagster at all.
"""

from __future__ import annotations

import functools
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# torchrun's name for it: its agent gives every rank its own file and copies the first failing rank's
# into the file this names in torchrun's own environment, so one file explains a job of any size.
ERROR_FILE_ENV = "TORCHELASTIC_ERROR_FILE"
# A directory the launcher names for Python's fault handler: a rank killed by a fatal signal records no
# exception, so its tracebacks go to ``rank-<R>.txt`` there, where the launcher reads why it ended.
# Unset, they go to stderr (``PYTHONFAULTHANDLER``).
FATAL_DIR_ENV = "MEDMO_FATAL_TRACEBACKS"


def entry_point(main: Callable[..., None]) -> Callable[..., None]:
    """Decorates a job's ``main``.

    An uncaught exception is written, with its traceback, to the file ``ERROR_FILE_ENV`` names (in
    torch.distributed.elastic's format), where the launcher reads why the job failed: on any rank,
    including those that report nothing through Pipes. After a normal return, the ranks of a
    distributed job leave together: a rank that exits while another still works aborts the gloo
    operations the other has in flight (seen as rank 0 dying mid-publish under ZeRO-3). A rank that
    left a process group then ends without the interpreter's teardown (``leave_now``) once the
    program's own ``main`` returns: a program that calls another job's ``main`` (the rehearsal's
    probe) goes on with its work first.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> None:
        whole_lines_on_stderr()
        fatal_tracebacks_to_file()
        try:
            main(*args, **kwargs)
        except Exception as error:
            record_failure(error)
            raise
        leave_together()
        if main.__module__ == "__main__" and _LEFT_A_PROCESS_GROUP:
            leave_now()

    return wrapper


# Big enough for any one line a job writes (a Pipes message with its metadata), so a line leaves whole.
_STDERR_BUFFER_BYTES = 1 << 20


def whole_lines_on_stderr() -> None:
    """Makes every line this process writes to stderr reach it in one ``write(2)``.

    The ranks of a distributed job share one stderr, and rank 0's Dagster Pipes messages travel on
    it (Kubernetes reads them from the pod's log). Unbuffered (``PYTHONUNBUFFERED``, which container
    images often set), Python writes a line's text and its newline apart, and so does Pipes' stream
    writer; buffered, a line longer than the buffer (8 KiB) leaves in pieces. Another rank's line
    could land between them, and Dagster would lose the message the pieces became. Line-buffered
    over a buffer larger than any line, each line is one write, which a pipe keeps whole
    (atomically up to ``PIPE_BUF``, in practice up to its free space).
    """
    if getattr(sys.stderr, "_medmo_whole_lines", False):  # a program that runs a second job's main
        return
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a stream with no descriptor (captured by a test runner)
        return
    sys.stderr.flush()
    raw = io.FileIO(fd, "w", closefd=False)
    stream = io.TextIOWrapper(io.BufferedWriter(raw, buffer_size=_STDERR_BUFFER_BYTES), encoding="utf-8",
                              errors="backslashreplace", line_buffering=True)
    stream._medmo_whole_lines = True
    sys.stderr = stream


def fatal_tracebacks_to_file() -> None:
    directory = os.environ.get(FATAL_DIR_ENV)
    if not directory:
        return
    import faulthandler

    # Kept open for the process's life: the handler writes to it at the crash, when nothing can open a file.
    stream = open(Path(directory) / f"rank-{os.environ.get('RANK', '0')}.txt", "w")  # noqa: SIM115
    faulthandler.enable(file=stream, all_threads=True)


def record_failure(error: BaseException) -> None:
    if not os.environ.get(ERROR_FILE_ENV):
        return
    # torch's own writer (it reads ERROR_FILE_ENV), so torchrun reads back exactly what it expects;
    # imported only on failure, so jobs that never import torch stay free of it.
    from torch.distributed.elastic.multiprocessing.errors.error_handler import ErrorHandler

    ErrorHandler().record_exception(error)


_LEFT_A_PROCESS_GROUP = False  # set once this process's ranks left their process group together


def leave_together() -> None:
    global _LEFT_A_PROCESS_GROUP
    if "torch" not in sys.modules:  # a job that never imported torch started no process group
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        _LEFT_A_PROCESS_GROUP = True


def leave_now() -> None:
    """Ends a rank whose job is done on every rank (exit code 0), without the interpreter's teardown.

    The exit handlers run as at any exit; what is skipped is the finalization of the objects left,
    where the communication backend's native threads may still hold tensors (DeepSpeed keeps its
    own references to the process groups) and abort the process ("terminate called without an
    active exception", SIGABRT): torchrun would then report the job failed after every rank had
    finished and rank 0 had published.
    """
    import atexit

    atexit._run_exitfuncs()  # logging's own shutdown among them, once logging is imported at all
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def job_parser(description: str):
    """Command line every job shares: the recipe, and the hash Dagster expects it to have."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--recipe", default=None, help="recipe name (embedded, paper) or YAML path")
    parser.add_argument("--expect-hash", default=None,
                        help="refuse to run unless the recipe section hashes to this (set by Dagster)")
    return parser


def checked_recipe(args, section: str, load: Callable[[str | None], Any] | None = None):
    """Load the recipe; fail if ``section`` is missing or no longer hashes to ``--expect-hash``.

    ``load`` checks the recipe; by default its shape (``recipe_schema.load_recipe_shape``), all that
    the curation job, in the data layer below the reward registry, can see. The training and
    evaluation jobs take ``config.checked_recipe``, which passes ``config.load_recipe``: every
    registry name resolved too, so a job run by hand fails at start like one launched by Dagster.
    """
    from medmo_pipeline.recipe_schema import RecipeError, load_recipe_shape

    recipe = (load or load_recipe_shape)(args.recipe)
    known = ["base_model", "corpus", "evaluation", "rl", *recipe.stages]
    if section not in known:
        raise RecipeError(f"recipe {recipe.name!r} has no section {section!r} (sections: {known})")
    code_version = recipe.section_hash(section)
    if args.expect_hash and args.expect_hash != code_version:
        raise RecipeError(
            f"recipe section {section!r} hashes to {code_version}, the launcher expected {args.expect_hash}: "
            "the recipe file changed after the job was planned; reload the definitions and relaunch"
        )
    return recipe, code_version


class JobReporter:
    """Console reporter; the Pipes one below overrides the three outputs."""

    def __init__(self) -> None:
        self.started = time.time()

    def log(self, message: str) -> None:
        sys.stderr.write(f"[medmo] {message}\n")  # one call: the line leaves whole (whole_lines_on_stderr)
        sys.stderr.flush()

    def progress(self, done: int, total: int, **metrics: float) -> None:
        elapsed = time.time() - self.started
        eta = elapsed / done * (total - done) if done else float("nan")
        shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        self.log(f"step {done}/{total} ({100 * done / max(total, 1):.0f}%) eta {eta:.0f}s {shown}".rstrip())

    def report(self, metadata: dict[str, Any], data_version: str | None = None) -> None:
        self.log("result: " + json.dumps(_plain(metadata), default=str, sort_keys=True))
        if data_version:
            self.log(f"data version: {data_version}")

    def check(self, name: str, passed: bool, description: str, metadata: dict[str, Any] | None = None) -> None:
        """An asset check's result, computed by the job that has the data at hand."""
        self.log(f"check {name}: {'passed' if passed else 'FAILED'}: {description}")


class PipesJobReporter(JobReporter):
    def __init__(self, pipes: Any) -> None:
        super().__init__()
        self.pipes = pipes

    def log(self, message: str) -> None:
        self.pipes.log.info(message)

    def report(self, metadata: dict[str, Any], data_version: str | None = None) -> None:
        self.pipes.report_asset_materialization(metadata=_typed(metadata), data_version=data_version)

    def check(self, name: str, passed: bool, description: str, metadata: dict[str, Any] | None = None) -> None:
        self.pipes.report_asset_check(check_name=name, passed=passed, severity="ERROR",
                                      metadata=_typed({"description": description, **(metadata or {})}))


@contextmanager
def job_reporter() -> Iterator[JobReporter]:
    """Pipes when launched by Dagster, else the console. Under torchrun only rank 0 talks to Dagster:
    one session, one materialization, whatever the number of processes."""
    if os.environ.get("DAGSTER_PIPES_CONTEXT") and os.environ.get("RANK", "0") == "0":
        from dagster_pipes import open_dagster_pipes  # only jobs import this, and only here

        with open_dagster_pipes() as pipes:
            yield PipesJobReporter(pipes)
    else:
        yield JobReporter()


class Md(str):
    """A metadata value that Dagster should render as Markdown (tables, for instance)."""


def _plain(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in metadata.items()}


def _typed(metadata: dict[str, Any]) -> dict[str, Any]:
    """Pipes metadata with explicit types, so paths and tables render as such in the UI."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, Md):
            out[key] = {"raw_value": str(value), "type": "md"}
        elif isinstance(value, Path):
            out[key] = {"raw_value": str(value), "type": "path"}
        elif isinstance(value, bool):
            out[key] = {"raw_value": value, "type": "bool"}
        elif isinstance(value, int):
            out[key] = {"raw_value": value, "type": "int"}
        elif isinstance(value, float):
            out[key] = {"raw_value": value, "type": "float"}
        elif isinstance(value, (dict, list)):
            out[key] = {"raw_value": value, "type": "json"}
        else:
            out[key] = {"raw_value": str(value), "type": "text"}
    return out
