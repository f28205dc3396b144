"""The cost of BOHB's choice bandwidths (review 8, finding 2): one refit (``BOHBSampler._fit``)
and one decision (``_draw_batch`` per decision) on a mixed space, with a choice's lambda from
the points' spread (the sampler as it is) and from n alone (the earlier rule, re-stated here
as a subclass), interleaved in one process. Run under the benchmark lock:

    flock /tmp/ash-bench.lock python bench/search/bandwidth_cost.py
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

from ash.scheduler.core.samplers.bohb import BOHBSampler
from ash.scheduler.core.space import SearchSpace

SPACE = {
    "lr": {"log_uniform": [1e-5, 1.0]},
    "x": {"uniform": [0.0, 1.0]},
    "act": {"choice": ["relu", "tanh", "gelu", "elu"]},
    "opt": {"choice": ["sgd", "adam"]},
    "bs": {"ordered": [16, 32, 64, 128]},
    "norm": {"choice": ["none", "batch", "layer"]},
}


class OldBOHB(BOHBSampler):
    """A choice's lambda of n alone: (k - 1)/k min(1, 1.06 n^(-1/5))."""

    def _bandwidths(self, x: Any) -> Any:
        np = self.np
        active = ~np.isnan(x)
        n = np.maximum(active.sum(axis=0), 1)
        mean = np.where(active, x, 0.0).sum(axis=0) / n
        var = np.where(active, (x - mean) ** 2, 0.0).sum(axis=0) / np.maximum(n - 1, 1)
        factor = 1.06 * n ** (-0.2)
        k = self.sizes
        cat = (k - 1) / k * np.minimum(1.0, factor)
        bw = np.where(self.categorical, cat, factor * np.sqrt(var))
        return np.maximum(bw, self.min_bandwidth)


def setup(cls: type[BOHBSampler], n: int) -> tuple[BOHBSampler, Any, Any]:
    space = SearchSpace.from_table(SPACE)
    s = cls(space, random_fraction=0.0)
    rng = random.Random(0)
    for t in range(n):
        c = space.sample(rng)
        loss = (float(c["x"]) - 0.3) ** 2 + (c["act"] != "gelu") * 0.2 + rng.random() * 0.1
        s.observe(t, c, 9.0, loss)
    found = s.levels.highest(s.min_points + 2)
    assert found is not None
    stats = found[1]
    good, bad = stats.split(s.levels.max_good, s.levels.max_bad)
    return s, good, bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", type=int, default=3000, help="results at the level")
    ap.add_argument("--reps", type=int, default=7, help="interleaved rounds (median)")
    ap.add_argument("--fits", type=int, default=200, help="refits per round")
    ap.add_argument("--decisions", type=int, default=2000, help="decisions per round")
    args = ap.parse_args()
    cases = {
        "spread (now)": setup(BOHBSampler, args.results),
        "n alone (before)": setup(OldBOHB, args.results),
    }
    fit_us: dict[str, list[float]] = {k: [] for k in cases}
    dec_us: dict[str, list[float]] = {k: [] for k in cases}
    for s, good, bad in cases.values():  # warm up: imports, caches
        s._draw_batch(s._fit(good, bad, random.Random(1), 1), 1)
    for rep in range(args.reps):
        order = list(cases.items())
        for name, (s, good, bad) in order[:: 1 if rep % 2 else -1]:  # alternate who goes first
            rng = random.Random(1)
            t0 = time.perf_counter()
            for _ in range(args.fits):
                m = s._fit(good, bad, rng, 1)
            fit_us[name].append((time.perf_counter() - t0) / args.fits * 1e6)
            batch = max(1, 16 // len(s.kinds))  # as the sampler draws them
            rounds = max(1, args.decisions // batch)
            t0 = time.perf_counter()
            for _ in range(rounds):
                s._draw_batch(m, batch)
            dec_us[name].append((time.perf_counter() - t0) / (rounds * batch) * 1e6)
    head = "| bandwidth of a choice | us per refit (32 + 64 points), median (min-max) |"
    print(head + " us per decision |")
    print("|---|---|---|")
    for name in cases:
        f, d = fit_us[name], dec_us[name]
        print(
            f"| {name} | {statistics.median(f):.0f} ({min(f):.0f}-{max(f):.0f}) "
            f"| {statistics.median(d):.1f} ({min(d):.1f}-{max(d):.1f}) |"
        )


if __name__ == "__main__":
    main()
