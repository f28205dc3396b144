"""One rung: the ranked results completed at one resource level, and its promotable frontier.

Results are ranked by a key ``(score, trial)`` where score is the metric oriented so that lower is
better (``value`` for mode min, ``-value`` for max, ``+inf`` for a failed or non-finite result), and
ties break by trial id. Two structures make every question O(log n):

- ``ranked``: a SortedList of all keys (promoted or not, failed included), for rank queries;
- ``frontier``: a heap of the keys of successful results not yet promoted.

The best promotable trial of the rung, if any, is the head of the frontier: every key ranked
before it has been promoted already, so it is in the top floor(n/eta) exactly when its rank r
satisfies (r + 1) * eta <= n. Failed results count in n but never enter the frontier.
"""

from __future__ import annotations

import heapq
import math

from sortedcontainers import SortedList

Key = tuple[float, int]


def score_of(value: float | None, mode: str) -> float:
    """Orient a metric so that lower is better; failed or non-finite ranks worst."""
    if value is None or not math.isfinite(value):
        return math.inf
    return value if mode == "min" else -value


class Rung:
    __slots__ = ("frontier", "ranked", "resource")

    def __init__(self, resource: float) -> None:
        self.resource = resource
        self.ranked: SortedList = SortedList()
        self.frontier: list[Key] = []

    def __len__(self) -> int:
        return len(self.ranked)

    def add(self, trial: int, score: float) -> int:
        """Record a completed result; return its rank (0 = best) among all results so far."""
        key = (score, trial)
        self.ranked.add(key)
        if score != math.inf:
            heapq.heappush(self.frontier, key)
        return int(self.ranked.bisect_left(key))

    def best_promotable(self, eta: float) -> Key | None:
        """The best unpromoted trial in the top floor(n/eta), or None."""
        if not self.frontier:
            return None
        head = self.frontier[0]
        rank = self.ranked.bisect_left(head)
        return head if (rank + 1) * eta <= len(self.ranked) else None

    def pop_promotable(self, eta: float) -> int | None:
        """Promote (remove from the frontier) the best promotable trial; return its id."""
        head = self.best_promotable(eta)
        if head is None:
            return None
        heapq.heappop(self.frontier)
        return head[1]
