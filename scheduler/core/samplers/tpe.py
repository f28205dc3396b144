"""TPE: the Tree-structured Parzen Estimator (Bergstra, Bardenet, Bengio, Kegl, NeurIPS 2011).

Written from the paper. Trials are ranked and split at the gamma-quantile (gamma = 0.15 by
default): l(x) is a density fitted on the configurations of the best-ranked ceil(gamma n) trials,
g(x) on the others. Each parameter has its own one-dimensional density (the paper's
tree-structured factorisation: a conditional parameter is fitted only on the trials where it is
active, which is how its tree handles inactive dimensions). A new configuration is the
candidate, among ``candidates`` (24) drawn from l, with the greatest l(x)/g(x), which maximises
the expected improvement (EI is proportional to (gamma + g(x)/l(x) (1 - gamma))^-1); as in the
paper's Section 4, each parameter is optimised on its own.

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
decision costs one parameter's fit at most, however many parameters there are. Drawing
``candidates`` from a tabulated l and keeping the best by l/g has a closed-form distribution
over cells (cell b wins with probability S_b^N - (S_b - m_b)^N, where cells are ranked by l/g,
m_b is l's mass in b and S_b the mass of the cells ranked at or below b), so a decision samples
it directly: one
bisection and one draw per parameter, exact in distribution for the tabulated densities,
whatever N is. Within a cell a real value is uniform. Caps: l holds at most ``max_good`` (32)
trials, g a uniform subsample of at most ``max_bad`` (96) of the others (hashed, so the same
on every run).

Mixing: a fraction ``random_fraction`` (default 0.2) of new trials, and every trial until
``min_points`` (10) trials have results, come from the prior, so the search never collapses.
"""

from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING, Any

from ash.scheduler.core.samplers.base import History
from ash.scheduler.core.samplers.encoding import Dim, Encoding, complete
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
        import numpy  # noqa: F401  (here, not at the first fit: that decision stays fast)

    def observe(self, trial: int, config: Config, resource: float, score: float) -> None:
        self.ranking.observe(trial, config, resource, score)

    def sample(self, rng: Random, space: SearchSpace, history: History) -> Config:
        if self.random_fraction and rng.random() < self.random_fraction:
            return self.space.sample(rng)
        ranking = self.ranking
        if ranking.n < self.min_points or ranking.finite == 0:
            return self.space.sample(rng)
        dims = self.encoding.dims
        if self.schedule.due(0.0, ranking.results):
            self._split = ranking.split(math.ceil(self.gamma * ranking.n))
            self._stale = len(dims)
            self.schedule.done(0.0, ranking.results)
            self.fits += 1
            if not self.tables:  # the first fit: every parameter at once
                good, bad = self._split
                self.tables = [self._fit(i, d, good, bad) for i, d in enumerate(dims)]
                self._stale = 0
        if self._stale:  # one parameter per decision, so a decision's cost is bounded in d
            i = self._cursor
            self.tables[i] = self._fit(i, dims[i], *self._split)
            self._cursor = (i + 1) % len(dims)
            self._stale -= 1
        return self._draw(rng)

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
        return _Table(dim, _best_of(ml, mg, self.candidates))

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

    def _draw(self, rng: Random) -> Config:
        space = self.space
        conditional = bool(space.conditions)
        values: Config = {}
        for table in self.tables:
            dim = table.dim
            if conditional and not space.active(dim.name, values):
                continue
            cdf = table.cdf
            cell = bisect.bisect_right(cdf, rng.random() * cdf[-1])
            if cell >= len(cdf):
                cell = len(cdf) - 1
            if dim.kind == "real":
                values[dim.name] = dim.decode((cell + rng.random()) / len(cdf))
            else:
                values[dim.name] = dim.values[cell]
        if not conditional and not self._constants:
            return values
        return complete(space, values)


class _Table:
    """One parameter's sampling distribution between two fits: a CDF over its cells."""

    __slots__ = ("cdf", "dim")

    def __init__(self, dim: Dim, probabilities: list[float]) -> None:
        self.dim = dim
        self.cdf = list(_cumsum(probabilities))


def _cumsum(xs: list[float]) -> list[float]:
    out, total = [], 0.0
    for x in xs:
        total += x
        out.append(total)
    return out


def _best_of(ml: Any, mg: Any, n: int) -> list[float]:
    """P(the best of ``n`` draws from l, ranked by l/g, falls in each cell). Cells whose ratios
    tie (to 1e-9) share their group's chance in proportion to their mass under l, as random
    tie-breaking would."""
    import numpy as np

    ml = ml / ml.sum()
    ratio = np.log(np.maximum(ml, 1e-300)) - np.log(np.maximum(mg, 1e-300))
    order = np.argsort(ratio, kind="stable")
    r = ratio[order]
    m = ml[order]
    group = np.concatenate([[0], np.cumsum(np.diff(r) > 1e-9)])
    mass = np.bincount(group, weights=m)
    upper = np.minimum(np.cumsum(mass), 1.0)
    lower = np.maximum(upper - mass, 0.0)
    chance = np.maximum(upper**n - lower**n, 0.0)
    share = np.where(mass[group] > 0, m / np.maximum(mass[group], 1e-300), 0.0)
    p = np.empty_like(m)
    p[order] = chance[group] * share
    out: list[float] = p.tolist()
    return out
