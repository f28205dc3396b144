"""How much each hyperparameter matters: fANOVA-style main effects of a random forest (numpy).

Hutter, Hoos and Leyton-Brown ("An Efficient Approach for Assessing Hyperparameter
Importance", ICML 2014) fit a random forest of regression trees to (config, metric) pairs and
split the variance of its prediction over the configuration space into per-parameter parts. This
module does the same with the first-order part only, estimated from the data: a bagged forest
of CART trees (variance-reduction splits, depth-limited); for parameter ``i`` the marginal
``f_i(v)`` is the forest's mean prediction over the observed configs with ``i`` set to ``v``
(``v`` on up to ``GRID`` quantiles of ``i``), and its importance is ``Var_v f_i(v) / Var f(X)``,
the share of the prediction's variance ``i`` explains alone. Shares need not sum to 1: the rest
is interactions. Numbers are encoded as they are (trees care only about order), strings and
booleans as category codes; a config without the parameter gets the median (or a category of
its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

GRID = 16


def encode(configs: Sequence[dict[str, Any]], params: Sequence[str]) -> np.ndarray:
    """An (n, p) float matrix of ``configs``: numbers as they are, anything else as codes."""
    X = np.zeros((len(configs), len(params)))
    for j, name in enumerate(params):
        col = [c.get(name) for c in configs]
        numeric = all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in col if v is not None
        )
        if numeric:
            arr = np.array([np.nan if v is None else float(v) for v in col])
            fill = np.nanmedian(arr) if np.isfinite(arr).any() else 0.0
            arr[~np.isfinite(arr)] = fill
        else:
            codes: dict[str, int] = {}
            arr = np.array([codes.setdefault(repr(v), len(codes)) for v in col], dtype=float)
        X[:, j] = arr
    return X


class _Tree:
    __slots__ = ("feature", "left", "right", "threshold", "value")

    def __init__(self) -> None:
        self.feature: list[int] = []
        self.threshold: list[float] = []
        self.left: list[int] = []
        self.right: list[int] = []
        self.value: list[float] = []

    def _node(self, value: float) -> int:
        self.feature.append(-1)
        self.threshold.append(0.0)
        self.left.append(-1)
        self.right.append(-1)
        self.value.append(value)
        return len(self.value) - 1

    def fit(self, X: np.ndarray, y: np.ndarray, depth: int, min_leaf: int) -> _Tree:
        stack = [(self._node(float(y.mean())), np.arange(len(y)), 0)]
        while stack:
            node, idx, d = stack.pop()
            if d >= depth or len(idx) < 2 * min_leaf:
                continue
            split = _best_split(X[idx], y[idx], min_leaf)
            if split is None:
                continue
            f, thr = split
            go_left = X[idx, f] <= thr
            li, ri = idx[go_left], idx[~go_left]
            self.feature[node] = f
            self.threshold[node] = thr
            self.left[node] = self._node(float(y[li].mean()))
            self.right[node] = self._node(float(y[ri].mean()))
            stack.append((self.left[node], li, d + 1))
            stack.append((self.right[node], ri, d + 1))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        feature = np.array(self.feature)
        threshold = np.array(self.threshold)
        left = np.array(self.left)
        right = np.array(self.right)
        node = np.zeros(len(X), dtype=int)
        rows = np.arange(len(X))
        while True:
            f = feature[node]
            inner = f >= 0
            if not inner.any():
                break
            r, n = rows[inner], node[inner]
            go_left = X[r, f[inner]] <= threshold[n]
            node[inner] = np.where(go_left, left[n], right[n])
        return np.array(self.value)[node]


def _best_split(X: np.ndarray, y: np.ndarray, min_leaf: int) -> tuple[int, float] | None:
    """The (feature, threshold) that most reduces the squared error, or None."""
    n = len(y)
    best: tuple[float, int, float] | None = None
    total = y.sum()
    for f in range(X.shape[1]):
        order = np.argsort(X[:, f], kind="stable")
        xs, ys = X[order, f], y[order]
        csum = np.cumsum(ys)[:-1]
        nl = np.arange(1, n)
        # the sum of squares is fixed: maximise sum_l^2/n_l + sum_r^2/n_r
        gain = csum**2 / nl + (total - csum) ** 2 / (n - nl)
        ok = (xs[:-1] < xs[1:]) & (nl >= min_leaf) & (n - nl >= min_leaf)
        if not ok.any():
            continue
        gain = np.where(ok, gain, -np.inf)
        i = int(np.argmax(gain))
        if best is None or gain[i] > best[0]:
            best = (float(gain[i]), f, float((xs[i] + xs[i + 1]) / 2))
    return None if best is None else (best[1], best[2])


def importance(
    configs: Sequence[dict[str, Any]],
    values: Sequence[float],
    params: Sequence[str],
    *,
    seed: int = 0,
    trees: int = 16,
    depth: int = 6,
    max_rows: int = 1000,
    background: int = 200,
) -> dict[str, float]:
    """The share of the metric's variance each parameter explains alone (fANOVA first-order
    indices of a random forest), or {} when there is too little to say (< 8 results)."""
    if len(values) < 8 or not params:
        return {}
    rng = np.random.default_rng(seed)
    X = encode(configs, params)
    y = np.asarray(values, dtype=float)
    if len(y) > max_rows:
        keep = rng.choice(len(y), max_rows, replace=False)
        X, y = X[keep], y[keep]
    sd = y.std()
    if not np.isfinite(sd) or sd == 0:
        return dict.fromkeys(params, 0.0)
    y = (y - y.mean()) / sd
    min_leaf = max(2, len(y) // 100)
    forest = []
    for _ in range(trees):
        boot = rng.integers(0, len(y), len(y))
        forest.append(_Tree().fit(X[boot], y[boot], depth, min_leaf))

    def predict(A: np.ndarray) -> np.ndarray:
        return np.mean([t.predict(A) for t in forest], axis=0)  # type: ignore[no-any-return]

    bg = X if len(X) <= background else X[rng.choice(len(X), background, replace=False)]
    total = float(np.var(predict(bg)))
    if total <= 0:
        return dict.fromkeys(params, 0.0)
    out: dict[str, float] = {}
    for j, name in enumerate(params):
        grid, n_of = np.unique(X[:, j], return_counts=True)
        counts = n_of.astype(float)
        if len(grid) > GRID:  # quantiles, each standing for an equal share of the data
            grid = np.quantile(X[:, j], (np.arange(GRID) + 0.5) / GRID)
            counts = np.ones(GRID)
        A = np.repeat(bg[None, :, :], len(grid), axis=0)
        A[:, :, j] = grid[:, None]
        marginal = predict(A.reshape(-1, X.shape[1])).reshape(len(grid), len(bg)).mean(axis=1)
        w = counts / counts.sum()
        mean = float(np.sum(w * marginal))
        out[name] = min(1.0, float(np.sum(w * (marginal - mean) ** 2)) / total)
    return out
