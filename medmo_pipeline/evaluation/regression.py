"""Regression guard: has a stage lost what its parent could do?

The paper names catastrophic forgetting as its limitation. Each stage's recipe lists the metrics
it is not meant to make worse (``guard.protected``) and a margin; a protected metric that drops by
more than the margin below the parent checkpoint's value is a finding, and a finding stops the
next stage (the Dagster layer turns this into a blocking asset check).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Drop:
    benchmark: str
    metric: str
    parent: float
    child: float

    @property
    def drop(self) -> float:
        return self.parent - self.child

    def describe(self) -> str:
        return (f"{self.benchmark}/{self.metric} fell from {self.parent:.3f} to {self.child:.3f} "
                f"(-{self.drop:.3f})")


def find_drops(parent_table, child_table, protected: list[str], margin: float) -> list[Drop]:
    """Protected metrics whose value fell more than ``margin`` below the parent's, per benchmark.

    Tables are the long evaluation tables (benchmark, metric, value, ...). A protected metric that
    the parent measured but the child did not (no row, or a "not computed" row without a value) is a
    drop to zero, never silently passed; one the parent did not measure cannot have dropped.

    >>> import pandas as pd
    >>> parent = pd.DataFrame({"benchmark": ["b", "b"], "metric": ["iou", "acc"], "value": [0.4, 0.9]})
    >>> child = pd.DataFrame({"benchmark": ["b", "b"], "metric": ["iou", "acc"], "value": [0.2, 0.89]})
    >>> [d.describe() for d in find_drops(parent, child, ["iou", "acc"], margin=0.05)]
    ['b/iou fell from 0.400 to 0.200 (-0.200)']
    """
    before = {(r.benchmark, r.metric): float(r.value) for r in parent_table.itertuples() if math.isfinite(r.value)}
    after = {(r.benchmark, r.metric): float(r.value) for r in child_table.itertuples() if math.isfinite(r.value)}
    drops = []
    for (benchmark, metric), value in sorted(before.items()):
        if metric not in protected:
            continue
        now = after.get((benchmark, metric), 0.0)
        if value - now > margin:
            drops.append(Drop(benchmark, metric, value, now))
    return drops


def compare_eval_dirs(parent_dir: Path, child_dir: Path, protected: list[str], margin: float) -> list[Drop]:
    import pandas as pd

    return find_drops(pd.read_parquet(Path(parent_dir) / "table.parquet"),
                      pd.read_parquet(Path(child_dir) / "table.parquet"), protected, margin)
