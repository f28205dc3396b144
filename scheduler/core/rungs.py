"""One rung: the ranked results completed at one resource level, and its promotable frontier.

Results are ranked by a key ``(score, trial)`` where score is the metric oriented so that lower is
better (``value`` for mode min, ``-value`` for max, ``+inf`` for a failed or non-finite result), and
ties break by trial id, so keys are unique. Three binary heaps make every question O(log n):

- ``top`` and ``rest`` split all keys (promoted or not, failed included) into the m best and the
  others, m = floor(n/eta) (ASHA's candidates; ceil(n/eta) for the stopping rule). ``top`` is a
  max-heap (keys negated), so the m-th best key is at its root. As n grows m grows by at most one
  per result, so keeping the split costs O(1) heap moves per result (the running-order-statistic
  two-heap trick); a heap push is O(1) on average, which keeps 1M-result rungs fast.
- ``frontier``: a min-heap of the keys of successful results not yet promoted.

The best promotable trial of the rung, if any, is the head of the frontier: every key better than
it has been promoted already, so it is promotable exactly when it is in ``top``, i.e. when it is
no worse than the m-th best key. Failed results count in n but never enter the frontier.
"""

from __future__ import annotations

import heapq
import math

Key = tuple[float, int]


def score_of(value: float | None, mode: str) -> float:
    """Orient a metric so that lower is better; failed or non-finite ranks worst."""
    if value is None or not math.isfinite(value):
        return math.inf
    return value if mode == "min" else -value


class Rung:
    __slots__ = ("_cached", "_dirty", "ceil", "eta", "frontier", "n", "resource", "rest", "top")

    def __init__(self, resource: float, eta: float, *, ceil: bool = False) -> None:
        self.resource = resource
        self.eta = eta
        self.ceil = ceil  # top holds ceil(n/eta) keys (stopping rule) instead of floor(n/eta)
        self.n = 0
        self.top: list[tuple[float, int]] = []  # negated keys: a max-heap of the m best
        self.rest: list[Key] = []
        self.frontier: list[Key] = []
        self._dirty = False  # the answer of best_promotable may have changed since cached
        self._cached: Key | None = None

    def __len__(self) -> int:
        return self.n

    def add(self, trial: int, score: float, *, promotable: bool = True) -> bool:
        """Record a completed result; return whether it is now among the m best."""
        key = (score, trial)
        self.n += 1
        top, rest = self.top, self.rest
        if top and key < (-top[0][0], -top[0][1]):
            heapq.heappush(top, (-score, -trial))
        else:
            heapq.heappush(rest, key)
        m = int(-(-self.n // self.eta)) if self.ceil else int(self.n // self.eta)
        while len(top) > m:
            s, t = heapq.heappop(top)
            heapq.heappush(rest, (-s, -t))
        while len(top) < m and rest:
            s, t = heapq.heappop(rest)
            heapq.heappush(top, (-s, -t))
        if promotable and score != math.inf:
            heapq.heappush(self.frontier, key)
        self._dirty = True
        return bool(top) and key <= (-top[0][0], -top[0][1])

    def best_promotable(self) -> Key | None:
        """The best unpromoted trial in the top floor(n/eta), or None.

        Its answer changes only when a result is added or a trial is promoted, so it is cached
        in between: asking again (every idle worker does) costs O(1)."""
        if not self._dirty:
            return self._cached
        self._dirty = False
        head = self.frontier[0] if self.frontier else None
        if head is not None:
            top = self.top
            if not top or head > (-top[0][0], -top[0][1]):
                head = None
        self._cached = head
        return head

    def pop_promotable(self) -> int | None:
        """Promote (remove from the frontier) the best promotable trial; return its id."""
        head = self.best_promotable()
        if head is None:
            return None
        heapq.heappop(self.frontier)
        self._dirty = True
        return head[1]
