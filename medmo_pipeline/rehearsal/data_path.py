"""How fast a stage's data path yields rows, and what it costs in memory, on one rank's view.

Measured beside the training job (in the rehearsal's own process) with the function the jobs use,
so the figure is the data path's alone, not the tiny model's step time.
"""

from __future__ import annotations

import resource
import time


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(index: dict, mixture, *, seed: int, rank: int, world_size: int) -> dict:
    """The jobs' data path today: ``mixture.draw_mixture`` reads every eligible row of the stage's
    sources, image bytes included, into memory before the first step, on every rank."""
    from medmo_pipeline.data.mixture import draw_mixture

    before, started = peak_rss_mb(), time.perf_counter()
    rows = len(draw_mixture(index, mixture, seed=seed))
    seconds = time.perf_counter() - started
    return {"description": "draw_mixture (whole mixture in memory, every rank)", "rows": rows,
            "seconds": round(seconds, 2), "rows_per_s": rows / max(seconds, 1e-9),
            "rss_growth_mb": round(peak_rss_mb() - before, 1), "rank": rank, "world_size": world_size}
