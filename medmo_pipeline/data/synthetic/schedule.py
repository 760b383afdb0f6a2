"""Which question kind each row asks, in a fixed repeating cycle.

A fixed cycle (rather than a random draw) gives every split an exact task mix, and the
``occurrence`` number (how many earlier rows asked the same kind) lets closed questions alternate
yes/no so the answers are balanced over any split of a few rows or more.
"""

from __future__ import annotations

from collections.abc import Sequence


def slot(index: int, cycle: Sequence[str]) -> tuple[str, int]:
    """(kind, occurrence) of row ``index`` for a repeating ``cycle`` of kinds.

    >>> [slot(i, ("a", "b", "a")) for i in range(5)]
    [('a', 0), ('b', 0), ('a', 1), ('a', 2), ('b', 1)]
    """
    position = index % len(cycle)
    kind = cycle[position]
    per_cycle = cycle.count(kind)
    earlier_in_cycle = cycle[:position].count(kind)
    return kind, (index // len(cycle)) * per_cycle + earlier_in_cycle
