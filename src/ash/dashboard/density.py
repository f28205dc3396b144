"""Every result of a study as counts on a time x value grid: the history plot's whole past.

The history plot draws results as points, which a page can do for a few thousand of them; a study
of 100,000 trials would show only its last few thousand results. So the model also keeps every
successful result's (time, value) here, two arrays of floats, and the page draws them as one
heatmap under the latest points: the whole study in one image, at a cost that does not grow with
the study. The value axis spans the middle 98% of the values (the rest are counted as
``outside``, which the page says), in log space when they are all positive and span more than
two decades, so one diverged trial does not flatten the rest into one row. A grid costs a few
numpy passes over all results (~7 ms at 150,000); the model makes one when a page opens and
then at most every ``DENSITY_S`` seconds while results come.
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np

COLUMNS = 120
ROWS = 60
TAILS = 0.01  # the value axis leaves out this fraction of the values at each end
LOG_SPAN = 100.0  # positive values spanning more than this ratio are binned in log space


class Density:
    """The (time, value) pairs of a study's successful results, and their grid."""

    def __init__(self) -> None:
        self.t = array("d")
        self.v = array("d")

    def __len__(self) -> int:
        return len(self.t)

    def add(self, t: float, value: float) -> None:
        if np.isfinite(value):
            self.t.append(t)
            self.v.append(value)

    def grid(self, t_end: float = 0.0) -> dict[str, Any] | None:
        """Counts per cell: ``x`` (COLUMNS + 1 time edges), ``y`` (ROWS + 1 value edges, in
        value units), ``log`` (the rows are equal in log space), ``z`` (ROWS lists of COLUMNS
        counts), ``n`` (results) and ``outside`` (results beyond the value axis)."""
        n = len(self.t)
        if n == 0:
            return None
        t = np.frombuffer(self.t, dtype=np.float64)
        v = np.frombuffer(self.v, dtype=np.float64)
        lo, hi = (float(q) for q in np.quantile(v, [TAILS, 1.0 - TAILS]))
        log = lo > 0.0 and hi / lo > LOG_SPAN
        if log:
            lo, hi = np.log10(lo), np.log10(hi)
            pos = np.log10(np.where(v > 0.0, v, np.nan))
        else:
            pos = v
        if not hi - lo > 1e-9 * max(abs(lo), abs(hi)):  # one value (or nearly): a band around it
            pad = abs(lo) * 0.01 or 1.0
            lo, hi = lo - pad, hi + pad
        t_hi = max(float(t.max()), t_end, 1e-9)
        with np.errstate(over="ignore", invalid="ignore"):  # values near the float range's ends
            pad = (hi - lo) * 0.02
            lo, hi = lo - pad, hi + pad
            y_edges = np.linspace(lo, hi, ROWS + 1)
            x_edges = np.linspace(0.0, t_hi, COLUMNS + 1)
            finite = np.isfinite(10.0**y_edges if log else y_edges).all() and hi - lo > 0
        if not (finite and np.isfinite(x_edges).all()):
            return None  # values near the float range's ends: no grid (the points still show)
        # equal cells: a result's cell is arithmetic, counted by one bincount
        inside = (pos >= lo) & (pos <= hi)
        row = np.minimum(((pos[inside] - lo) * (ROWS / (hi - lo))).astype(np.int64), ROWS - 1)
        col = np.clip((t[inside] * (COLUMNS / t_hi)).astype(np.int64), 0, COLUMNS - 1)
        z = np.bincount(row * COLUMNS + col, minlength=ROWS * COLUMNS).reshape(ROWS, COLUMNS)
        y_out = 10.0**y_edges if log else y_edges
        return {
            "x": [round(float(x), 6) for x in x_edges],
            "y": [float(f"{y:.12g}") for y in y_out],
            "log": bool(log),
            "z": z.tolist(),
            "n": n,
            "outside": int(n - int(inside.sum())),
        }
