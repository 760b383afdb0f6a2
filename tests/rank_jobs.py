"""Tiny jobs for ``tests/test_job_failures.py``, run as ``python -m tests.rank_jobs MODE DIR`` alone or
under torchrun, through the real launcher.

- ``fail-on-last-rank``: the last rank raises at once; the others would work for a minute (torchrun
  stops them when the last one fails).
- ``leave``: every rank joins a gloo process group; rank 0 works 1.5 s longer than the others. Each
  rank writes when it finished its work and when its process exits.
- ``abort-on-last-rank``: the last rank aborts (SIGABRT, as a crash in native code would), recording
  no exception; the others would work for a minute.
- ``teardown-aborts``: every rank joins a gloo process group, finishes, and leaves behind an object
  that aborts the process when the interpreter's teardown finalizes it, as the communication
  backend's native threads may (SIGABRT after the work is done).
- ``pipes-lines`` / ``console-lines``: write ``LINES`` Dagster Pipes messages with Pipes' own stream
  writer / ``LINES`` console lines with the job reporter, to stderr, as fast as they can: rank 0 and
  another rank of a job sharing one stderr.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
from pathlib import Path

from medmo_pipeline.jobs import JobReporter, entry_point

LINES = 3000

_LEFT_BEHIND = None


class AbortsWhenFinalized:
    def __del__(self) -> None:
        os.abort()


@entry_point
def main(argv: list[str] | None = None) -> None:
    mode, out = argv or sys.argv[1:]
    out = Path(out)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if mode == "fail-on-last-rank":
        if rank == world - 1:
            raise RuntimeError(f"rank {rank} of {world} cannot read its shard")
        time.sleep(60)
    elif mode == "leave":
        import torch.distributed as dist

        dist.init_process_group("gloo")
        atexit.register(lambda: (out / f"exit-{rank}").write_text(repr(time.time())))
        if rank == 0:
            time.sleep(1.5)
        (out / f"done-{rank}").write_text(repr(time.time()))
    elif mode == "abort-on-last-rank":
        if rank == world - 1:
            os.abort()
        time.sleep(60)
    elif mode == "teardown-aborts":
        import torch.distributed as dist

        global _LEFT_BEHIND
        dist.init_process_group("gloo")
        _LEFT_BEHIND = AbortsWhenFinalized()
        (out / f"done-{rank}").write_text(repr(time.time()))
    elif mode == "pipes-lines":
        from dagster_pipes import PipesStreamMessageWriterChannel

        channel = PipesStreamMessageWriterChannel(sys.stderr)
        for index in range(LINES):
            channel.write_message({"__dagster_pipes_version": "0.1", "method": "log",
                                   "params": {"message": f"message {index} " + "x" * 200, "level": "INFO"}})
    elif mode == "console-lines":
        reporter = JobReporter()
        for index in range(LINES):
            reporter.log(f"line {index} of another rank")
    else:
        raise ValueError(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
