"""Deterministic random streams for the synthetic corpus.

Each row gets its own numpy Generator seeded from (seed, source, split, row index). Python's
``hash()`` is salted per process, so the (source, split) part goes through sha256 instead. One
stream per row means a row never depends on how many rows were asked for: the first 10 rows of
``n=100`` are the 10 rows of ``n=10``, and a train row never shares a stream with an eval row.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stream_key(source: str, split: str) -> tuple[int, ...]:
    """Four 32-bit words derived from (source, split), stable across processes and platforms."""
    digest = hashlib.sha256(f"{source}\x00{split}".encode()).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))


def row_rng(seed: int, source: str, split: str, index: int) -> np.random.Generator:
    """The random stream of row ``index`` of (source, split) under ``seed``."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    return np.random.default_rng([seed, *stream_key(source, split), index])
