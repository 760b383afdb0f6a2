"""Runs build jobs in this (child) process under hard limits, for the hostile-input suite.

    python tests/hostile_job.py '<json list of jobs>'

Address space is capped at what the process already maps plus ``MEMORY_BUDGET`` and CPU time at
``CPU_SECONDS`` (``resource.setrlimit``), so a job that would go beyond fails here with MemoryError
or SIGXCPU instead of being timed by the test. Each job is a curation of a dataset read by an
adapter (``{"family", "root", "options", "out"}``: its rows and the adapter's outcomes, as a build
reads them), a read of one annotation file (``{"records": file, "root"}``) or a read of one
benchmark's release (``{"benchmark": name, "root"}``: its rows' gold, as an evaluation reads them);
the result of each, and the peak resident size of this process while it ran, go to stdout as JSON.

The peak is this process's own (``process_memory.peak_rss_kib``), reset before each job.

Arrow allocates with the system allocator here: mimalloc, its default, reserves address space by
the GiB up front (a whole ``MEMORY_BUDGET`` at the first allocation, or a failed allocation when
the budget is just short of that), so the address-space cap would measure its reservations, not
the jobs' use.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback
from pathlib import Path

os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"  # before pyarrow is imported: see the module doc
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MEMORY_BUDGET = 1 << 30
CPU_SECONDS = 60


def run(job: dict) -> dict:
    from medmo_pipeline.data.adapters import iter_outcomes
    from medmo_pipeline.data.adapters.records import iter_records
    from medmo_pipeline.data.curation import curate
    from medmo_pipeline.data.image_limits import ImageLimits, using_limits

    try:
        if "benchmark" in job:
            from medmo_pipeline.data.benchmarks.loading import read_counted
            from medmo_pipeline.data.benchmarks.registry import load_registry

            load = read_counted(load_registry().get(job["benchmark"]), Path(job["root"]), partial=True)
            return {"rows": {row["id"]: {"answer": row["answer"], "choices": [choice[:8] + "..." + choice[-8:]
                                                                              for choice in row["choices"]]}
                             for row in load.rows}}
        if "records" in job:  # counted as read, not held: a file may hold millions
            count, quarantined, unreadable = 0, [], 0
            for item in iter_records(Path(job["root"]), job["records"]):
                count += 1
                if not isinstance(item, dict):
                    unreadable += 1
                    if len(quarantined) < 20:  # the first ones: a file may hold millions
                        quarantined.append([item.reason, item.detail[:300]])
            return {"records": count, "quarantined": quarantined, "unreadable": unreadable}
        with using_limits(ImageLimits()):
            report = curate(iter_outcomes(job["family"], Path(job["root"]), job["options"]), Path(job["out"]),
                            source="hostile", shard_rows=50)
        return {key: report[key] for key in ("rows_in", "rows_kept", "quarantined_by_reason", "quarantine_path",
                                             "shard_dir")}
    except Exception as error:  # noqa: BLE001 - reported to the test, which decides
        return {"error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()[-2000:]}


def main() -> None:
    jobs = json.loads(sys.argv[1])
    import medmo_pipeline.data.adapters
    import medmo_pipeline.data.curation
    import medmo_pipeline.data.pixels  # noqa: F401
    from medmo_pipeline.process_memory import address_space_kib, current_rss_kib, peak_rss_kib, reset_peak_rss

    limit = address_space_kib() * 1024 + MEMORY_BUDGET
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
    results = {}
    for job in jobs:
        if not reset_peak_rss():
            raise RuntimeError("cannot reset the peak resident size (/proc/self/clear_refs)")
        before = current_rss_kib()
        results[job["name"]] = run(job) | {"peak_rss_kib": peak_rss_kib(), "rss_before_kib": before}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
