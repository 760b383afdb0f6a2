"""Runs build jobs in this (child) process under hard limits, for the hostile-input suite.

    python tests/hostile_job.py '<json list of jobs>'

Address space is capped at what the process already maps plus ``MEMORY_BUDGET`` and CPU time at
``CPU_SECONDS`` (``resource.setrlimit``), so a job that would go beyond fails here with MemoryError
or SIGXCPU instead of being timed by the test. Each job is a curation of a dataset read by an
adapter (``{"family", "root", "options", "out"}``) or a read of one annotation file
(``{"records": file, "root"}``); the result of each, and the peak resident size of this process
while it ran, go to stdout as JSON.

The peak is the kernel's high-water mark of this process's own memory (``VmHWM``), reset before
each job. ``getrusage``'s ``ru_maxrss`` would not do: Linux carries it across ``execve`` from the
process that started this one, so it reports the test runner's own peak (over a GiB late in a
full test run) whatever the jobs cost.
"""

from __future__ import annotations

import json
import resource
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MEMORY_BUDGET = 1 << 30
CPU_SECONDS = 60


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    """Start ``VmHWM`` again from the current resident size (Linux 4.0 and later)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def run(job: dict) -> dict:
    from medmo_pipeline.data.adapters import iter_samples
    from medmo_pipeline.data.adapters.common import iter_records
    from medmo_pipeline.data.curation import curate
    from medmo_pipeline.data.image_limits import ImageLimits, using_limits

    try:
        if "records" in job:
            return {"records": sum(1 for _ in iter_records(Path(job["root"]), job["records"]))}
        with using_limits(ImageLimits()):
            report = curate(iter_samples(job["family"], Path(job["root"]), job["options"]), Path(job["out"]),
                            source="hostile", shard_rows=50)
        return {key: report[key] for key in ("rows_in", "rows_kept", "quarantined_by_reason", "quarantine_path",
                                             "shard_dir")}
    except Exception as error:  # noqa: BLE001 - reported to the test, which decides
        return {"error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()[-2000:]}


def main() -> None:
    jobs = json.loads(sys.argv[1])
    import medmo_pipeline.data.adapters  # noqa: F401 - imports are not the jobs' cost
    import medmo_pipeline.data.curation  # noqa: F401
    import medmo_pipeline.data.pixels  # noqa: F401

    limit = _status_kib("VmSize") * 1024 + MEMORY_BUDGET
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
    results = {}
    for job in jobs:
        _reset_peak()
        before = _status_kib("VmRSS")
        results[job["name"]] = run(job) | {"peak_rss_kib": _status_kib("VmHWM"), "rss_before_kib": before}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
