"""How fast a stage's data path yields rows, and what it costs in memory, on one rank's view.

Measured beside the training job (in the rehearsal's own process) with what the jobs use: the
stage plan (``training.streamed.stage_plan``, which reads only the shards' split and task columns)
and the rank's part of the mixture stream (``data.stream.MixtureStream``), each row's images decoded
as the collator would. So the figure is the data path's alone, not the tiny model's step time.
"""

from __future__ import annotations

import io
import time

from medmo_pipeline.process_memory import current_rss_kib, peak_rss_kib, reset_peak_rss


def measure(index: dict, mixture, *, seed: int, rank: int, world_size: int, rows: int = 20_000,
            seconds: float = 10.0) -> dict:
    """Plan the stage, then stream rank ``rank``'s part for ``rows`` rows or ``seconds``, whichever
    comes first, decoding every image."""
    from PIL import Image

    from medmo_pipeline.data.stream import MixtureStream
    from medmo_pipeline.training.streamed import stage_plan

    # From the resident size now: the growth is the stream's, whatever the process held before.
    before, started = current_rss_kib() if reset_peak_rss() else peak_rss_kib(), time.perf_counter()
    plan = stage_plan(index, mixture)
    planned = time.perf_counter()
    streamed = 0
    for _, row in MixtureStream(plan, seed=seed).rows(0, rank=rank, world=world_size):
        for image in row["images"]:
            Image.open(io.BytesIO(image["bytes"])).convert("RGB")
        streamed += 1
        if streamed >= rows or time.perf_counter() - planned > seconds:
            break
    elapsed = time.perf_counter() - planned
    return {"description": f"stream (rank {rank} of {world_size}, images decoded)",
            "planned_samples": plan["planned_samples"], "plan_seconds": round(planned - started, 2),
            "rows": streamed, "seconds": round(elapsed, 2), "rows_per_s": streamed / max(elapsed, 1e-9),
            "rss_growth_mb": round((peak_rss_kib() - before) / 1024, 1), "rank": rank, "world_size": world_size}
