"""The GPUs of this machine, and a lease that gives a local job its own ones (pure; no Dagster).

The training pool has one slot per training job that fits this machine's GPUs; each local job that asks
for GPUs leases distinct devices here (``CUDA_VISIBLE_DEVICES``), so two jobs never share one. Leases
are advisory file locks under MEDMO_HOME: every Dagster run process on the machine sees the same ones,
and a process that dies releases its lock with it.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Mapping
from pathlib import Path

NVIDIA_GPUS_DIR = Path("/proc/driver/nvidia/gpus")  # one entry per GPU the driver sees


def visible_devices(environ: Mapping[str, str] | None = None, driver_dir: Path = NVIDIA_GPUS_DIR) -> list[str]:
    """This process's GPUs: ``CUDA_VISIBLE_DEVICES`` when set, else every GPU the NVIDIA driver lists."""
    environ = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in environ:
        return [d.strip() for d in environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip() and d.strip() != "-1"]
    count = len(list(driver_dir.iterdir())) if driver_dir.is_dir() else 0
    return [str(index) for index in range(count)]


class GpuLease:
    """``count`` of ``devices`` held by this process until ``release`` (or exit); waits while none free."""

    def __init__(self, devices: list[str], count: int, lock_dir: Path, poll_s: float = 1.0) -> None:
        if count > len(devices):
            raise ValueError(f"a job asks for {count} GPU(s); this machine has {len(devices)} ({devices})")
        self.devices, self.count, self.lock_dir, self.poll_s = devices, count, Path(lock_dir), poll_s
        self.held: dict[str, int] = {}

    def acquire(self) -> list[str]:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        while True:
            for device in self.devices:
                if len(self.held) < self.count:
                    self._try(device)
            if len(self.held) == self.count:
                return list(self.held)
            self.release()  # all or none: two jobs holding half each would wait for ever
            time.sleep(self.poll_s)

    def _try(self, device: str) -> None:
        handle = os.open(self.lock_dir / f"gpu-{device}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            return
        self.held[device] = handle

    def release(self) -> None:
        for handle in self.held.values():
            os.close(handle)  # closing the descriptor drops its lock
        self.held.clear()

    def __enter__(self) -> list[str]:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
