"""TPE: the Tree-structured Parzen Estimator (Bergstra, Bardenet, Bengio, Kegl, NeurIPS 2011).

Written from the paper. Trials are ranked and split at the gamma-quantile (gamma = 0.15 by
default): l(x) is a density fitted on the configurations of the best-ranked ceil(gamma n) trials,
g(x) on the others. Each parameter has its own one-dimensional density (the paper's
tree-structured factorisation: a conditional parameter is fitted only on the trials where it is
active, which is how its tree handles inactive dimensions). A new configuration is the
candidate, among ``candidates`` (24) drawn from l, with the greatest l(x)/g(x), which maximises
the expected improvement (EI is proportional to (gamma + g(x)/l(x) (1 - gamma))^-1), as the
paper's Section 4 defines it: candidates are joint configurations, each parameter drawn from its
own l, and l(x)/g(x) is the product of the parameters' ratios. (An earlier version took each
parameter's own best of 24, a shortcut that sets every parameter to its mode at once.)

Ranking under early stopping (``levels.Ranking``): a trial ranks by the highest resource level it
reached, then by its score there, so a trial ASHA stopped low ranks below every trial that went
further. The paper has one fidelity; fitting on one level alone (as BOHB does) leaves g without
the configurations ASHA eliminated lower down, and then l/g favours exactly those regions.

Densities (Section 4.2): a numeric parameter's is an adaptive Parzen estimator, one Gaussian per
observation with standard deviation the larger of the distances to its left and right neighbours
(clipped to [1/min(100, n + 1), 1] of the range), plus the prior (a Gaussian at the middle of the
range with the range as its deviation) as one more component, truncated to the range; log
domains are modelled in log space, ordered choices and narrow ints on their index positions. A
choice's density is the observed frequencies with the uniform prior as one more observation.

Cost: both densities are tabulated once per fit on ``bins`` equal cells (or on the values of a
discrete parameter): O((max_good + max_bad) * bins * d) with numpy, and O(log n) fits per study
(``levels.RefitSchedule``: when the number of results grew 5%); after the first fit, the
parameters' tables are refitted one per decision, in turn, from the latest split, so a
decision costs one parameter's fit at most, however many parameters there are. A decision
draws ``candidates`` cells per parameter from l's table (a CDF; a real value is uniform within
its cell) and sums their tabulated log l/g: numpy, in batches of ``batch`` (8) decisions drawn
together while no table changes (which changes the cost, not the distribution; the generator is
seeded from the core's RNG at each fit, so decisions are a function of the seed). Caps: l
holds at most ``max_good`` (32) trials, g a uniform subsample of at most ``max_bad`` (96) of the
others (hashed, so the same on every run).

Mixing: a fraction ``random_fraction`` (default 0.2) of new trials, and every trial until
``min_points`` (10) trials have results, come from the prior, so the search never collapses.

Finite spaces (``encoding.Tried``): no configuration is proposed twice while the grid has untried
ones; a candidate already tried never wins, and a prior draw already tried is redrawn.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ash.scheduler.core.samplers.base import History
from ash.scheduler.core.samplers.encoding import Dim, Encoding, Tried, complete
from ash.scheduler.core.samplers.levels import Ranking, RefitSchedule
from ash.scheduler.core.space import Config, SearchSpace

if TYPE_CHECKING:
    from random import Random


class TPESampler:
    name = "tpe"

    def __init__(
        self,
        space: SearchSpace,
        *,
        gamma: float = 0.15,
        candidates: int = 24,
        random_fraction: float = 0.2,
        min_points: int = 10,
        max_good: int = 32,
        max_bad: int = 96,
        bins: int = 128,
        prior_weight: float = 1.0,
        refit_growth: float = 0.05,
        batch: int = 8,
        retries: int = 32,
    ) -> None:
        if not 0 < gamma < 1:
            raise ValueError(f"gamma must be in (0, 1), got {gamma}")
        if not 0 <= random_fraction <= 1:
            raise ValueError(f"random_fraction must be in [0, 1], got {random_fraction}")
        if candidates < 1 or min_points < 2 or max_good < 1 or max_bad < 1 or bins < 2:
            raise ValueError("candidates, min_points, max_good, max_bad and bins must be >= 1, 2")
        self.space = space
        self.gamma = gamma
        self.candidates = candidates
        self.random_fraction = random_fraction
        self.min_points = min_points
        self.bins = bins
        self.prior_weight = prior_weight
        self.encoding = Encoding(space)
        self.ranking = Ranking(self.encoding.encode, max_good, max_bad)
        self.schedule = RefitSchedule(refit_growth)
        self.tables: list[_Table] = []
        self.fits = 0
        self._split: tuple[list[tuple[float, ...]], list[tuple[float, ...]]] = ([], [])
        self._stale = 0  # parameters whose tables predate the latest split
        self._cursor = 0  # the next parameter to refit
        self._constants = [n for n in space.order if n not in self.encoding.index]
        self.batch = max(1, batch)
        self.retries = retries
        self.tried = Tried.of(self.encoding, retries)  # on a finite space: never twice
        self._gen: Any = None
        self._queue: list[Config | None] = []  # None: every candidate was tried already
        import numpy  # noqa: F401  (here, not at the first fit: that decision stays fast)

    def observe(self, trial: int, config: Config, resource: float, score: float) -> None:
        self.ranking.observe(trial, config, resource, score)
        if self.tried is not None:  # enqueued and resumed trials count as tried too
            self.tried.add(config)

    def sample(self, rng: Random, space: SearchSpace, history: History) -> Config:
        config = self._sample(rng)
        if self.tried is not None:
            self.tried.add(config)
        return config

    def forget(self, config: Config) -> None:
        """``config`` was sampled but replaced before it was trained (Scheduler.adopt)."""
        if self.tried is not None:
            self.tried.discard(config)

    def _sample(self, rng: Random) -> Config:
        if self.random_fraction and rng.random() < self.random_fraction:
            return self._prior(rng)
        ranking = self.ranking
        if ranking.n < self.min_points or ranking.finite == 0:
            return self._prior(rng)
        dims = self.encoding.dims
        if self.schedule.due(0.0, ranking.results):
            self._split = ranking.split(math.ceil(self.gamma * ranking.n))
            self._stale = len(dims)
            self.schedule.done(0.0, ranking.results)
            self.fits += 1
            import numpy as np

            self._gen = np.random.Generator(np.random.PCG64(rng.getrandbits(64)))
            self._queue = []
            if not self.tables:  # the first fit: every parameter at once
                good, bad = self._split
                self.tables = [self._fit(i, d, good, bad) for i, d in enumerate(dims)]
                self._stale = 0
        if self._stale:  # one parameter per decision, so a decision's cost is bounded in d
            i = self._cursor
            self.tables[i] = self._fit(i, dims[i], *self._split)
            self._cursor = (i + 1) % len(dims)
            self._stale -= 1
            self._queue = []  # drawn with the old table
        tried = self.tried
        while self._queue:  # a batch's decisions may repeat each other on a finite space
            config = self._queue.pop()
            if config is not None and (tried is None or config not in tried):
                return config
        self._queue = self._draw_batch(1 if self._stale else self.batch)
        config = self._queue.pop()
        if config is None:  # every candidate was tried already: an untried one from the prior
            assert tried is not None
            return tried.prior(rng)
        return config

    def _prior(self, rng: Random) -> Config:
        return self.space.sample(rng) if self.tried is None else self.tried.prior(rng)

    # -- model ------------------------------------------------------------------------------

    def _fit(
        self, i: int, dim: Dim, good: list[tuple[float, ...]], bad: list[tuple[float, ...]]
    ) -> _Table:
        import numpy as np

        xs_l = [p[i] for p in good if p[i] == p[i]]  # active (not NaN) only
        xs_g = [p[i] for p in bad if p[i] == p[i]]
        if dim.kind == "categorical":
            ml, mg = self._frequencies(dim.size, xs_l), self._frequencies(dim.size, xs_g)
        else:
            if dim.kind == "real":
                centres = (np.arange(self.bins) + 0.5) / self.bins
                to_pos = np.asarray(xs_l), np.asarray(xs_g)
            else:
                positions = np.asarray(dim.positions)
                centres = positions
                to_pos = (
                    positions[np.asarray(xs_l, dtype=np.int64)],
                    positions[np.asarray(xs_g, dtype=np.int64)],
                )
            ml = self._parzen(centres, to_pos[0])
            mg = self._parzen(centres, to_pos[1])
        return _Table(dim, ml, mg)

    def _frequencies(self, k: int, xs: list[float]) -> Any:
        import numpy as np

        counts = np.bincount(np.asarray(xs, dtype=np.int64), minlength=k).astype(float)
        return (counts + self.prior_weight / k) / (len(xs) + self.prior_weight)

    def _parzen(self, centres: Any, mus: Any) -> Any:
        """The masses at ``centres`` of the adaptive Parzen estimator of ``mus`` (in [0, 1])."""
        import numpy as np

        n = len(mus)
        mu = np.concatenate([mus, [0.5]])
        order = np.argsort(mu, kind="stable")
        s = mu[order]
        left = np.diff(s, prepend=0.0)
        right = np.diff(s, append=1.0)
        sigma_sorted = np.maximum(left, right)
        sigma = np.empty_like(sigma_sorted)
        sigma[order] = sigma_sorted
        sigma = np.clip(sigma, 1.0 / min(100.0, n + 1.0), 1.0)
        sigma[-1] = 1.0  # the prior: the whole range
        weights = np.ones(n + 1)
        weights[-1] = self.prior_weight
        z = (centres[None, :] - mu[:, None]) / sigma[:, None]
        k = np.exp(-0.5 * z * z)
        k /= k.sum(axis=1, keepdims=True)  # each component truncated to the range
        masses = weights @ k
        return masses / masses.sum()

    def _draw_batch(self, batch: int) -> list[Config | None]:
        """``batch`` decisions (the tables are fixed until one is refitted, so drawing them
        together changes only the cost), each the best by l(x)/g(x) of ``candidates`` joint
        draws from l (the paper's Section 4). On a finite space a candidate already tried
        never wins while an untried one is among them. Returned last-first, for ``pop``."""
        import numpy as np

        gen = self._gen
        c = self.candidates * batch
        space = self.space
        cells = np.zeros((c, len(self.tables)), dtype=np.int64)
        active = np.ones((c, len(self.tables)), dtype=bool)
        score = np.zeros(c)
        index = self.encoding.index
        for i, table in enumerate(self.tables):
            dim = table.dim
            conds = space.conditions.get(dim.name) if space.conditions else None
            if conds:  # parents are choices, modelled and drawn before their children
                for cond in conds:
                    j = index[cond.parent]
                    pdim = self.tables[j].dim
                    ok = [k for k, v in enumerate(pdim.values) if cond.holds({cond.parent: v})]
                    active[:, i] &= active[:, j] & np.isin(cells[:, j], ok)
            col = np.searchsorted(table.cdf_np, gen.random(c) * table.cdf_np[-1], side="right")
            col = np.minimum(col, len(table.cdf_np) - 1)
            cells[:, i] = col
            score += np.where(active[:, i], table.log_ratio[col], 0.0)
        keys = None
        if self.tried is not None:  # cells are the indices of a finite space's values
            keys = list(map(tuple, np.where(active, cells, -1).astype(float).tolist()))
            tried = np.array([k in self.tried.keys for k in keys])
            score = np.where(tried, -np.inf, score)
        best = np.argmax(score.reshape(batch, self.candidates), axis=1)
        picks = best + np.arange(batch) * self.candidates
        within = gen.random((batch, len(self.tables)))
        out: list[Config | None] = []
        for b, row in enumerate(picks.tolist()):
            if keys is not None and self.tried is not None and keys[row] in self.tried.keys:
                out.append(None)  # every candidate was tried already (``_sample`` decides)
                continue
            out.append(self._config(cells[row], active[row], within[b]))
        return out[::-1]

    def _config(self, cells: Any, active: Any, within: Any) -> Config:
        values: Config = {}
        for i, table in enumerate(self.tables):
            if not active[i]:
                continue
            dim = table.dim
            cell = int(cells[i])
            if dim.kind == "real":
                values[dim.name] = dim.decode((cell + float(within[i])) / len(table.cdf))
            else:
                values[dim.name] = dim.values[cell]
        if not self.space.conditions and not self._constants:
            return values
        return complete(self.space, values)


class _Table:
    """One parameter between two fits: l's masses over its cells (as a CDF, to draw from l)
    and log l/g per cell (to rank candidates)."""

    __slots__ = ("cdf", "cdf_np", "dim", "log_ratio")

    def __init__(self, dim: Dim, ml: Any, mg: Any) -> None:
        import numpy as np

        self.dim = dim
        ml = ml / ml.sum()
        self.cdf_np = np.cumsum(ml)
        self.cdf: list[float] = self.cdf_np.tolist()
        self.log_ratio = np.log(np.maximum(ml, 1e-300)) - np.log(np.maximum(mg, 1e-300))
