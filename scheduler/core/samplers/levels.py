"""Bounded, incremental statistics of each resource level: what a model sampler fits on.

A model is fitted on one level's results, split into the good ones (l) and the others (g). To
keep every refit bounded however large the study grows, each level keeps, updated in O(log k)
per result (``observe``):

- ``best``: the ``max_good`` best results (key ``(score, trial)``, lower is better; failed
  results, score +inf, never count as good), in a max-heap;
- ``pool``: a uniform sample of ``max_bad`` of all its results, the bottom-k sketch of a fixed
  hash of the trial id (splitmix64), so it is the same sample on every run and after a resume;
- ``n``: how many results it has.

``split`` gives the points of l (the best ``n_good``) and of g (the pool without l's members,
and, when the level is small enough for the pool to hold all of it but that leaves fewer than
``n_bad``, its worst ``n_bad``: BOHB lets l and g overlap below 2 N_min points). While a level
has at most ``max_bad`` results the split is exact; above, g is a uniform subsample of the
rest. ``RefitSchedule`` says when to refit: on a new level, or once the level's count has
grown by a constant factor since the last fit, so there are O(log n) refits in a study.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Callable

Vec = tuple[float, ...]
_M64 = (1 << 64) - 1


def trial_hash(trial: int) -> int:
    """splitmix64 of the trial id: a fixed, well-mixed 64-bit hash."""
    x = (trial + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


class LevelStats:
    __slots__ = ("best", "max_bad", "max_good", "n", "pool")

    def __init__(self, max_good: int, max_bad: int) -> None:
        self.max_good = max_good
        self.max_bad = max_bad
        self.n = 0
        self.best: list[tuple[float, int, Vec]] = []  # (-score, -trial, point): max-heap
        self.pool: list[tuple[int, int, float, Vec]] = []  # (-hash, trial, score, point)

    def observe(self, trial: int, score: float, point: Callable[[], Vec]) -> None:
        self.n += 1
        vec: Vec | None = None
        best = self.best
        if score != math.inf:
            item = (-score, -trial)
            if len(best) < self.max_good or item > best[0][:2]:
                vec = point()
                if len(best) < self.max_good:
                    heapq.heappush(best, (-score, -trial, vec))
                else:
                    heapq.heapreplace(best, (-score, -trial, vec))
        if not self.max_bad:
            return
        pool = self.pool
        h = -trial_hash(trial)
        if len(pool) < self.max_bad or h > pool[0][0]:
            entry = (h, trial, score, vec if vec is not None else point())
            if len(pool) < self.max_bad:
                heapq.heappush(pool, entry)
            else:
                heapq.heapreplace(pool, entry)

    def n_finite(self) -> int:
        return len(self.best)

    def split(self, n_good: int, n_bad: int) -> tuple[list[Vec], list[Vec]]:
        """The points of l (the best ``n_good``) and of g (see the module docstring)."""
        ranked = sorted(self.best, reverse=True)  # best first: (-score, -trial) descending
        good = ranked[: max(0, n_good)]
        taken = {-t for _, t, _ in good}
        bad = [e for e in self.pool if e[1] not in taken]
        if len(bad) < n_bad and self.n <= self.max_bad:
            worst_first = sorted(self.pool, key=lambda e: (-e[2], -e[1]))
            bad = worst_first[:n_bad]
        bad.sort(key=lambda e: e[1])  # trial order: a fixed order for the fit
        return [v for _, _, v in good], [e[3] for e in bad]


class RefitSchedule:
    """Refit when the level changes or its count grew by ``growth`` (a fraction) since."""

    __slots__ = ("growth", "level", "n")

    def __init__(self, growth: float) -> None:
        self.growth = growth
        self.level: float | None = None
        self.n = 0

    def due(self, level: float, n: int) -> bool:
        if level != self.level:
            return True
        return n >= self.n + max(1, math.ceil(self.growth * self.n))

    def done(self, level: float, n: int) -> None:
        self.level, self.n = level, n


class Levels:
    """LevelStats for every resource level, fed from ``observe``."""

    def __init__(self, encode: Callable[..., Vec], max_good: int, max_bad: int) -> None:
        self.encode = encode
        self.max_good = max_good
        self.max_bad = max_bad
        self.by_resource: dict[float, LevelStats] = {}
        self._descending: list[tuple[float, LevelStats]] = []

    def observe(self, trial: int, config: object, resource: float, score: float) -> None:
        stats = self.by_resource.get(resource)
        if stats is None:
            stats = self.by_resource[resource] = LevelStats(self.max_good, self.max_bad)
            self._descending = sorted(self.by_resource.items(), reverse=True)
        encode = self.encode
        stats.observe(trial, score, lambda: encode(config))

    def highest(self, min_results: int) -> tuple[float, LevelStats] | None:
        """The highest resource level with at least ``min_results`` results, if any."""
        for resource, stats in self._descending:
            if stats.n >= min_results:
                return resource, stats
        return None


class Ranking:
    """All trials ranked across levels, for TPE: a trial ranks by the highest level it reached,
    then by its score there (a trial that stopped lower ranks below every trial that went
    further, whatever its score). Kept bounded and incremental: each level's ``max_good`` best,
    every trial's highest level (8 bytes a trial), and a hashed bottom-k ``pool`` of
    ``max_bad`` distinct trials with their points."""

    def __init__(self, encode: Callable[..., Vec], max_good: int, max_bad: int) -> None:
        self.levels = Levels(encode, max_good, 0)
        self.encode = encode
        self.max_bad = max_bad
        self.highest = array("d")  # trial -> the highest resource it has a result at (0: none)
        self.n = 0  # trials with a result
        self.results = 0
        self.finite = 0  # results with a finite score
        self.pool: list[tuple[int, int, Vec]] = []  # (-hash, trial, point): max-heap on hash
        self.in_pool: set[int] = set()

    def observe(self, trial: int, config: object, resource: float, score: float) -> None:
        vec: Vec | None = None
        stats = self.levels.by_resource.get(resource)
        if stats is None:
            self.levels.observe(trial, config, resource, score)
        else:  # LevelStats.observe without its pool, inlined: this runs for every result
            stats.n += 1
            if score != math.inf:
                best = stats.best
                if len(best) < stats.max_good:
                    vec = self.encode(config)
                    heapq.heappush(best, (-score, -trial, vec))
                elif -score > best[0][0] or (-score == best[0][0] and -trial > best[0][1]):
                    vec = self.encode(config)
                    heapq.heapreplace(best, (-score, -trial, vec))
        self.results += 1
        if score != math.inf:
            self.finite += 1
        hi = self.highest
        while trial >= len(hi):
            hi.append(0.0)
        if hi[trial] == 0.0:
            self.n += 1
            pool, h = self.pool, -trial_hash(trial)
            if len(pool) < self.max_bad or h > pool[0][0]:
                entry = (h, trial, vec if vec is not None else self.encode(config))
                if len(pool) < self.max_bad:
                    heapq.heappush(pool, entry)
                else:
                    self.in_pool.discard(heapq.heapreplace(pool, entry)[1])
                self.in_pool.add(trial)
        if resource > hi[trial]:
            hi[trial] = resource

    def split(self, n_good: int) -> tuple[list[Vec], list[Vec]]:
        """The points of the ``n_good`` best-ranked trials (each level contributes at most its
        ``max_good`` best), and of the pool's other trials."""
        good: list[tuple[int, Vec]] = []
        hi = self.highest
        for resource, stats in self.levels._descending:
            for neg_score, neg_trial, vec in sorted(stats.best, reverse=True):
                if len(good) >= n_good:
                    break
                if hi[-neg_trial] == resource and neg_score != -math.inf:
                    good.append((-neg_trial, vec))
        taken = {t for t, _ in good}
        bad = sorted((t, v) for _, t, v in self.pool if t not in taken)
        return [v for _, v in good], [v for _, v in bad]
