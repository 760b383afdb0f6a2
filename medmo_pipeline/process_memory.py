"""This process's resident memory: its current size and its peak, as the kernel counts them.

The peak is ``VmHWM`` from ``/proc/self/status``: the high-water mark of this process's own
resident memory. ``getrusage``'s ``ru_maxrss`` would not do for a job: Linux carries it across
``fork`` and ``execve``, so a job started by a large process (a test runner, a bench that wrote the
corpus) reports its parent's peak whatever the job costs. Where ``/proc`` is missing (not Linux)
``ru_maxrss`` is the fallback, in KiB like ``VmHWM`` (macOS counts it in bytes).
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def _status_kib(field: str, status: Path = _STATUS) -> int | None:
    try:
        text = status.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return None


def peak_rss_kib() -> int:
    """This process's peak resident memory, KiB (since it started, or since ``reset_peak_rss``)."""
    peak = _status_kib("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss // 1024 if sys.platform == "darwin" else maxrss


def peak_rss_kib_of(pid: int) -> int:
    """Another process's peak resident memory, KiB (0 where the kernel does not say, or it ended)."""
    return _status_kib("VmHWM", Path(f"/proc/{pid}/status")) or 0


def current_rss_kib() -> int:
    """This process's resident memory now, KiB (0 where the kernel does not say)."""
    return _status_kib("VmRSS") or 0


def address_space_kib() -> int:
    """The address space this process maps now (``VmSize``), KiB (0 where the kernel does not say)."""
    return _status_kib("VmSize") or 0


def peak_rss_mib() -> float:
    return peak_rss_kib() / 1024


def reset_peak_rss() -> bool:
    """Start the peak again from the current resident size (Linux 4.0 and later), so that it
    measures what comes next; False where that is not possible (the peak then stays since start)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True
