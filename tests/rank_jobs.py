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
"""

from __future__ import annotations

import atexit
import os
import sys
import time
from pathlib import Path

from medmo_pipeline.jobs import entry_point

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
    else:
        raise ValueError(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
