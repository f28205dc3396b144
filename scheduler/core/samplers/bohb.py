"""BOHB's model (Falkner, Klein, Hutter, ICML 2018, Section 3.1 and Algorithm 2).

Written from the paper. With probability ``random_fraction`` (rho, 1/3 in the paper) a new trial
is drawn from the prior. Otherwise the model is fitted on the highest resource level (budget) b
with at least N_min + 2 results, N_min = ``min_points`` (d + 1 by default, d the number of
modelled parameters); with no such level the trial is drawn from the prior. The level's results
are split into the best n_l = max(N_min, q n) (q = ``top_fraction``, 15%) and the worst
n_g = max(N_min, n - n_l) (they overlap while n < 2 N_min), and a multivariate kernel density
estimate with a product kernel is fitted on each: l(x) on the best, g(x) on the worst.
``candidates`` samples (N_s = 64) are drawn from l'(x), which is l(x) with every bandwidth
multiplied by ``bandwidth_factor`` (b_w = 3), and the one with the highest l(x)/g(x) is chosen.

Kernels and bandwidths: a Gaussian kernel on the unit coordinate of a numeric parameter (log
space for log domains, index positions for ordered choices and narrow ints; samples from l' are
truncated to the range and rounded to the nearest position), with the normal-reference
bandwidth 1.06 sigma n^(-1/5); an Aitchison-Aitken kernel on a choice (weight 1 - lambda on the
observed value, lambda/(k - 1) on each other), lambda = (k - 1)/k min(1, 1.06 s n^(-1/5)), with
s in [0, 1] the spread of the points' values (their Gini-Simpson index 1 - sum p_j^2 over its
maximum (k - 1)/k): the choice's sigma, so that lambda, like a numeric bandwidth, shrinks as the
points agree and l concentrates on the value the best results share. (A lambda of n alone gave
l, fitted on fewer points than g, more mass on values no good point had, and l/g steered away
from the shared value.) Every bandwidth is at least ``min_bandwidth`` (1e-3), so no kernel
collapses to a point and l' still proposes, rarely, other values of a parameter whose good
values agree; widened ones are capped (at 1 for numeric, (k - 1)/k for a choice).

Conditional spaces (inactive parameters): a coordinate that is inactive in an observation or in
a candidate contributes a factor 1 to the product kernel, which is the expectation of imputing
it with a uniform value on [0, 1] (the prior's density is 1 there), BOHB's imputation in the
mean; a candidate drawn around an observation where a now-active parameter was inactive takes
that parameter from the prior.

Cost: l holds at most ``max_good`` points and g a uniform subsample of at most ``max_bad``
(``levels``), refits are O(log n) per study, and a decision scores N_s candidates against at
most max_good + max_bad points: bounded, vectorised with numpy, in batches of up to 16 // d
decisions drawn together (the model is fixed between fits, so this changes only the cost).
Finite spaces (``encoding.Tried``): no configuration is proposed twice while the grid has untried
ones; a candidate already tried never wins, and a prior draw already tried is redrawn.
Randomness: each fit seeds a numpy generator from the core's RNG (64 bits), so decisions are a
function of the seed and the inputs, as replay requires.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ash.scheduler.core.samplers.base import History
from ash.scheduler.core.samplers.encoding import Encoding, Tried, complete
from ash.scheduler.core.samplers.levels import Levels, RefitSchedule
from ash.scheduler.core.space import Config, SearchSpace, Value

if TYPE_CHECKING:
    from random import Random

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class BOHBSampler:
    name = "bohb"

    def __init__(
        self,
        space: SearchSpace,
        *,
        random_fraction: float = 1 / 3,
        top_fraction: float = 0.15,
        candidates: int = 64,
        min_points: int | None = None,
        bandwidth_factor: float = 3.0,
        min_bandwidth: float = 1e-3,
        max_good: int = 32,
        max_bad: int = 64,
        refit_growth: float = 0.05,
        retries: int = 32,
    ) -> None:
        import numpy as np

        if not 0 <= random_fraction <= 1:
            raise ValueError(f"random_fraction must be in [0, 1], got {random_fraction}")
        if not 0 < top_fraction < 1:
            raise ValueError(f"top_fraction must be in (0, 1), got {top_fraction}")
        self.np = np
        self.space = space
        self.encoding = Encoding(space)
        d = len(self.encoding.dims)
        self.min_points = max(2, min_points if min_points is not None else d + 1)
        if candidates < 1 or bandwidth_factor <= 0 or min_bandwidth <= 0:
            raise ValueError("candidates >= 1, bandwidth_factor > 0 and min_bandwidth > 0")
        self.random_fraction = random_fraction
        self.top_fraction = top_fraction
        self.candidates = candidates
        self.bandwidth_factor = bandwidth_factor
        self.min_bandwidth = min_bandwidth
        max_good = max(max_good, self.min_points)
        self.levels = Levels(self.encoding.encode, max_good, max(max_bad, self.min_points))
        self.schedule = RefitSchedule(refit_growth)
        dims = self.encoding.dims
        self.kinds = [d.kind for d in dims]
        self.sizes = np.array([max(1, d.size) for d in dims], dtype=float)
        self.categorical = np.array([d.kind == "categorical" for d in dims], dtype=bool)
        self.numeric = ~self.categorical
        self.cat_dims = [i for i, d in enumerate(dims) if d.kind == "categorical"]
        self.cat_sizes = [dims[i].size for i in self.cat_dims]
        # index -> position of each ordinal dimension (None for others)
        self.positions = [np.asarray(d.positions) if d.kind == "ordinal" else None for d in dims]
        self.model: _Model | None = None
        self.fits = 0
        self.tried = Tried.of(self.encoding, retries)  # on a finite space: never twice

    def observe(self, trial: int, config: Config, resource: float, score: float) -> None:
        self.levels.observe(trial, config, resource, score)
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

    def _prior(self, rng: Random) -> Config:
        return self.space.sample(rng) if self.tried is None else self.tried.prior(rng)

    def _sample(self, rng: Random) -> Config:
        if self.random_fraction and rng.random() < self.random_fraction:
            return self._prior(rng)
        found = self.levels.highest(self.min_points + 2)
        if found is None or not self.encoding.dims:
            return self._prior(rng)
        resource, stats = found
        if self.schedule.due(resource, stats.n):
            n_l = min(max(self.min_points, math.ceil(self.top_fraction * stats.n)), stats.n)
            n_l = min(n_l, stats.n_finite(), self.levels.max_good)
            if n_l == 0:
                return self._prior(rng)
            n_g = max(self.min_points, stats.n - n_l)
            good, bad = stats.split(n_l, n_g)
            # decisions drawn per batch: about as many as come before the next refit, and at
            # most 16 // d, so that one decision's cost stays bounded as d grows
            cap = max(1, 16 // max(1, len(self.kinds)))
            batch = min(cap, max(1, math.ceil(self.schedule.growth * stats.n / 2)))
            self.model = self._fit(good, bad, rng, batch)
            self.schedule.done(resource, stats.n)
            self.fits += 1
        if self.model is None:
            return self._prior(rng)
        return self._draw(self.model, rng)

    # -- model ------------------------------------------------------------------------------

    def _points(self, vecs: list[tuple[float, ...]]) -> Any:
        """Coordinates for the kernels: ordinal indices become positions in [0, 1]."""
        np = self.np
        x = np.array(vecs, dtype=float).reshape(len(vecs), len(self.kinds))
        for i, pos in enumerate(self.positions):
            if pos is not None:
                col = x[:, i]
                ok = ~np.isnan(col)
                col[ok] = pos[col[ok].astype(np.int64)]
        return x

    def _bandwidths(self, x: Any) -> Any:
        np = self.np
        active = ~np.isnan(x)
        n = np.maximum(active.sum(axis=0), 1)
        mean = np.where(active, x, 0.0).sum(axis=0) / n
        var = np.where(active, (x - mean) ** 2, 0.0).sum(axis=0) / np.maximum(n - 1, 1)
        factor = 1.06 * n ** (-0.2)
        numeric = factor * np.sqrt(var)
        k = self.sizes
        cat = (k - 1) / k * np.minimum(1.0, factor * self._spread(x, active))
        bw = np.where(self.categorical, cat, numeric)
        return np.maximum(bw, self.min_bandwidth)

    def _spread(self, x: Any, active: Any) -> Any:
        """Each choice's spread in [0, 1] (1 for other dimensions): the Gini-Simpson index of
        its active values' frequencies, 1 - sum p_j^2, over its maximum (k - 1)/k. 0 when the
        points agree on one value, 1 when they are spread evenly over all k: the choice's
        counterpart of sigma in the normal-reference rule, so lambda shrinks as points agree."""
        np = self.np
        spread = np.ones(len(self.kinds))
        if not self.cat_dims:
            return spread
        counts = self._one_hot(np.where(active, x, 0.0), active).sum(axis=0)
        offset = 0
        for i, k in zip(self.cat_dims, self.cat_sizes, strict=True):
            c = counts[offset : offset + k]
            offset += k
            m = float(c.sum())
            if k > 1 and m > 0:  # no active point: no evidence, the widest kernel
                spread[i] = (1.0 - float(((c / m) ** 2).sum())) * k / (k - 1)
        return spread

    def _fit(
        self, good: list[tuple[float, ...]], bad: list[tuple[float, ...]], rng: Random, batch: int
    ) -> _Model:
        np = self.np
        xl, xg = self._points(good), self._points(bad)
        bw_l = self._bandwidths(xl)
        w = np.concatenate([self._kde(xl, bw_l), self._kde(xg, self._bandwidths(xg))], axis=1)
        gen = np.random.Generator(np.random.PCG64(rng.getrandbits(64)))
        return _Model(xl, bw_l, w, len(xl), len(xg), gen, batch)

    def _kde(self, x: Any, bw: Any) -> Any:
        """The product-kernel KDE of points ``x`` (n, d) with bandwidths ``bw`` (d,) as a matrix
        W (3d + sum k, n) such that ``features(C) @ W`` is the log kernel of every candidate
        and point: a Gaussian's log kernel is a quadratic in the candidate's coordinate (rows
        for c^2, c and 1), an Aitchison-Aitken kernel's a constant plus a bonus when the values
        agree (one-hot rows). A coordinate inactive on either side contributes 0 (factor 1)."""
        np = self.np
        num = self.numeric
        active = ~np.isnan(x)
        x0 = np.where(active, x, 0.0)
        mn = (active & num).astype(float)  # active numeric coordinates
        h2 = bw * bw
        quad = -0.5 * mn / h2  # times c^2
        lin = x0 * mn / h2  # times c
        const = mn * (-0.5 * x0 * x0 / h2 - np.log(bw) - _LOG_SQRT_2PI)  # times 1
        k = self.sizes
        lam = np.minimum(bw, (k - 1) / k)
        differ = np.log(np.maximum(lam, 1e-300) / np.maximum(k - 1, 1))
        bonus = np.log1p(-lam) - differ
        const = const + (active & self.categorical) * differ
        hot = self._one_hot(x0, active) * np.repeat(bonus[self.categorical], self.cat_sizes)
        return np.concatenate([quad, lin, const, hot], axis=1).T

    def _one_hot(self, x0: Any, active: Any) -> Any:
        np = self.np
        out = np.zeros((x0.shape[0], int(sum(self.cat_sizes))))
        offset = 0
        for i, k in zip(self.cat_dims, self.cat_sizes, strict=True):
            rows = np.nonzero(active[:, i])[0]
            out[rows, offset + x0[rows, i].astype(np.int64)] = 1.0
            offset += k
        return out

    def _features(self, cand: Any) -> Any:
        np = self.np
        active = ~np.isnan(cand)
        c0 = np.where(active, cand, 0.0)
        parts = [c0 * c0, c0, active.astype(float)]
        if self.cat_dims:
            parts.append(self._one_hot(c0, active))
        return np.concatenate(parts, axis=1)

    def _log_ratio(self, cand: Any, m: _Model) -> Any:
        """log l(x) - log g(x) at each candidate (C,). In float32, points by rows: the log
        kernels of all candidates and points are one product, and the log-sum-exp reduces
        over contiguous rows (4-10x faster than float64 by columns, here)."""
        np = self.np
        f = self._features(cand).astype(np.float32)
        total = m.wt @ f.T  # (n_l + n_g, C): every log kernel
        out = []
        for block, log_n in ((total[: m.n_l], m.log_n_l), (total[m.n_l :], m.log_n_g)):
            top = block.max(axis=0)
            out.append(top + np.log(np.exp(block - top).sum(axis=0)) - log_n)
        return out[0] - out[1]

    def _draw(self, m: _Model, rng: Random) -> Config:
        tried = self.tried
        while m.queue:  # a batch's decisions may repeat each other on a finite space
            config = self._config(m.queue.pop())
            if tried is None or config not in tried:
                return config
        m.queue = self._draw_batch(m, m.batch)
        point = m.queue.pop()
        if tried is not None and self._keys(point[None, :])[0] in tried.keys:
            # every candidate was tried already: an untried one from the prior
            return tried.prior(rng)
        return self._config(point)

    def _keys(self, cand: Any) -> list[tuple[float, ...]]:
        """The ``Tried`` keys of candidates (n, d): ordinal positions back to indices."""
        np = self.np
        idx = cand.copy()
        for i, pos in enumerate(self.positions):
            if pos is not None:
                col = idx[:, i]
                ok = ~np.isnan(col)
                col[ok] = np.searchsorted(pos, col[ok])
        return list(map(tuple, np.where(np.isnan(idx), -1.0, idx).tolist()))

    def _draw_batch(self, m: _Model, batch: int) -> list[Any]:
        """``batch`` decisions at once (the model is fixed until the next fit, so drawing them
        together changes nothing but the cost): each the best of ``candidates`` draws from l'.
        Returned last-first, for ``pop``."""
        np = self.np
        gen = m.gen
        c, d = self.candidates * batch, len(self.kinds)
        pick = m.xl[gen.integers(0, m.xl.shape[0], size=c)]  # (c, d)
        missing = np.isnan(pick)
        wide = m.bw_l * self.bandwidth_factor
        unif = gen.random((c, d))
        # numeric: a Gaussian around the picked point, truncated to [0, 1] by redrawing
        sigma = np.minimum(1.0, wide)
        cand = pick + sigma * gen.standard_normal((c, d))
        for _ in range(8):
            out = ((cand < 0) | (cand > 1)) & self.numeric
            if not out.any():
                break
            cand = np.where(out, pick + sigma * gen.standard_normal((c, d)), cand)
        cand = np.where(missing, unif, np.clip(cand, 0.0, 1.0))
        for i, kind in enumerate(self.kinds):
            if kind == "ordinal":  # snap to the nearest position
                pos = self.positions[i]
                assert pos is not None
                col = cand[:, i]
                idx = np.clip(np.searchsorted(pos, col), 1, max(1, len(pos) - 1))
                if len(pos) > 1:
                    idx = idx - ((col - pos[idx - 1]) < (pos[idx] - col))
                else:
                    idx = np.zeros_like(idx)
                cand[:, i] = pos[idx]
            elif kind == "categorical":  # Aitchison-Aitken: keep, or any other value
                k = int(self.sizes[i])
                lam = min((k - 1) / k, wide[i])
                centre = pick[:, i]
                other = gen.integers(0, max(1, k - 1), size=c)
                other = other + (other >= np.nan_to_num(centre, nan=k))
                col = np.where(unif[:, i] >= lam, centre, other)
                cand[:, i] = np.where(missing[:, i], gen.integers(0, k, size=c), col)
        self._deactivate(cand)
        score = self._log_ratio(cand, m)
        if self.tried is not None:  # a candidate tried already never wins over an untried one
            keys = self.tried.keys
            tried = np.array([k in keys for k in self._keys(cand)])
            score = np.where(tried, -np.inf, score)
        best = np.argmax(score.reshape(batch, self.candidates), axis=1)
        rows = cand.reshape(batch, self.candidates, d)[np.arange(batch), best]
        return list(rows[::-1])

    def _deactivate(self, cand: Any) -> None:
        """Set to NaN each candidate's coordinates whose conditions do not hold."""
        space = self.space
        if not space.conditions:
            return
        np = self.np
        index = self.encoding.index
        dims = self.encoding.dims
        for i, dim in enumerate(dims):  # dims are in sampling order: parents first
            conds = space.conditions.get(dim.name)
            if not conds:
                continue
            ok = np.ones(cand.shape[0], dtype=bool)
            for cond in conds:
                j = index[cond.parent]  # parents are choices: always modelled
                pdim = dims[j]
                col = cand[:, j]
                if pdim.kind == "ordinal":
                    pos = self.positions[j]
                    assert pos is not None
                    col = np.where(np.isnan(col), np.nan, np.searchsorted(pos, col))
                allowed = [k for k, v in enumerate(pdim.values) if cond.holds({cond.parent: v})]
                ok &= np.isin(col, allowed)  # NaN (an inactive parent) is never in it
            cand[~ok, i] = np.nan

    def _config(self, point: Any) -> Config:
        values: dict[str, Value] = {}
        for i, dim in enumerate(self.encoding.dims):
            x = float(point[i])
            if x != x:
                continue
            if dim.kind == "real":
                values[dim.name] = dim.decode(x)
            elif dim.kind == "ordinal":
                pos = self.positions[i]
                assert pos is not None
                values[dim.name] = dim.values[min(dim.size - 1, int(self.np.searchsorted(pos, x)))]
            else:
                values[dim.name] = dim.values[round(x)]
        return complete(self.space, values)


class _Model:
    """l's points and bandwidths (to draw from l'), l and g as one matrix (``_kde``), the
    generator, and the decisions drawn ahead."""

    __slots__ = ("batch", "bw_l", "gen", "log_n_g", "log_n_l", "n_l", "queue", "w", "wt", "xl")

    def __init__(
        self, xl: Any, bw_l: Any, w: Any, n_l: int, n_g: int, gen: Any, batch: int
    ) -> None:
        self.xl, self.bw_l, self.w, self.gen, self.batch = xl, bw_l, w, gen, batch
        self.wt = w.T.astype("float32")  # (n_l + n_g, features), C-contiguous
        self.n_l = n_l
        self.log_n_l, self.log_n_g = math.log(n_l), math.log(n_g)
        self.queue: list[Any] = []
