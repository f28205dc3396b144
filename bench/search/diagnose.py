"""Why a model sampler wins or loses on a recording: the evidence behind bench/search's README.

For each recording and ash sampler, at ``--workers`` simulated workers and ``--seeds`` seeds, one
simulated study exactly as ``run.py`` runs it (same spec, same lookup, same time model), with the
sampler wrapped to see every new trial. It prints, medians over seeds:

- ``trials``, ``rows``: trials started and distinct recorded configurations the lookup answered;
- ``dup%``: the share of new trials answered by a recorded configuration the study had already
  started (a wasted trial: the same curve again);
- ``tgt``: trials started on a target configuration (top ``--quantile`` of final values),
  ``tgt@R``: how many of them ASHA promoted to R, and ``t_tgt``: when the first one started
  (time(R));
- ``ttt``: time-to-target (time(R), '-' if missed);
- ``rank``: how the sampler's model, as fitted at 1 time(R), ranks the target configurations
  among all recorded ones by log l(x)/g(x), its acquisition function (median percentile of the
  targets, 0 = ranked best, 0.5 = no better than chance);
- ``level``: the resource level BOHB's model was fitted on at 1 time(R).

And per recording, the data's side: the Spearman rank correlation of each rung's value with the
final value over all recorded configurations, the target's size, and the oracle floor (the
earliest time(R) at which any target configuration can have a result at R: its own training
time from 0 to R).

    python bench/search/diagnose.py --recordings digits-wide,diabetes --seeds 5
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from lookup import Lookup, Recording  # noqa: E402
from run import RECORDINGS, load_all  # noqa: E402

from ash.scheduler.core import Job  # noqa: E402
from ash.scheduler.core.samplers import BOHBSampler, TPESampler, make_sampler  # noqa: E402
from ash.scheduler.simulator import simulate  # noqa: E402
from ash.spec import parse_spec  # noqa: E402

LIMIT = {8: 12.0, 64: 4.0}


def spearman(a: list[float], b: list[float]) -> float:
    ra = np.argsort(np.argsort(a))
    rb = np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def data_side(rec: Recording) -> str:
    rows = [r for r in rec.rows if r["values"][-1] is not None]
    final = [rec.sign * r["values"][-1] for r in rows]
    parts = []
    for k, res in enumerate(rec.resources[:-1]):
        if res not in (1, 3, 9, 27):
            continue
        vals = [rec.sign * (r["values"][k] if r["values"][k] is not None else 1e9) for r in rows]
        parts.append(f"r={res:g}: {spearman(vals, final):.2f}")
    targets = [r for r in rows if rec.sign * r["values"][-1] <= rec.sign * rec.target]
    floor = min(r["seconds_per_unit"] for r in targets) * rec.max_resource / rec.time_r
    return (
        f"{rec.name}: {len(rec.rows)} configs, {len(targets)} targets, oracle floor "
        f"{floor:.2f} time(R); Spearman(rung, final): {', '.join(parts)}"
    )


class NoRepeat:
    """Random sampling without repeats on a finite space (the model samplers' ``Tried`` rule
    alone, without a model): separates what the rule gains from what the model gains."""

    name = "random-norepeat"

    def __init__(self, space: Any) -> None:
        from ash.scheduler.core.samplers.encoding import Encoding, Tried

        self.tried = Tried.of(Encoding(space))

    def sample(self, rng: Any, space: Any, history: Any) -> Any:
        config = space.sample(rng) if self.tried is None else self.tried.prior(rng)
        if self.tried is not None:
            self.tried.add(config)
        return config

    def observe(self, trial: int, config: Any, resource: float, score: float) -> None:
        if self.tried is not None:
            self.tried.add(config)


class Spy:
    """Wraps a built-in sampler: sees each new trial and snapshots the model at a time."""

    def __init__(self, inner: Any, bench: Lookup, snap_at: float) -> None:
        self.inner = inner
        self.bench = bench
        self.name = inner.name
        self.rows: list[int] = []
        self.now = 0.0
        self.snap_at = snap_at
        self.snap: dict[str, Any] | None = None

    def sample(self, rng: Any, space: Any, history: Any) -> Any:
        config = self.inner.sample(rng, space, history)
        self.rows.append(self.bench.row(config))
        if self.snap is None and self.now >= self.snap_at:
            self.snap = snapshot(self.inner, self.bench)
        return config

    def observe(self, trial: int, config: Any, resource: float, score: float) -> None:
        self.inner.observe(trial, config, resource, score)


def snapshot(s: Any, bench: Lookup) -> dict[str, Any] | None:
    """The model's score of every recorded configuration (higher: proposed sooner)."""
    rec = bench.rec
    enc = getattr(s, "encoding", None)
    if enc is None:
        return None
    pts = [enc.encode(r["config"]) for r in rec.rows]
    if isinstance(s, BOHBSampler):
        m = s.model
        if m is None:
            return None
        score = s._log_ratio(s._points(pts), m)
        return {"score": np.asarray(score, dtype=float), "level": s.schedule.level}
    if isinstance(s, TPESampler):
        if not s.tables:
            return None
        out = np.zeros(len(pts))
        for i, table in enumerate(s.tables):
            p = np.exp(table.log_ratio)  # the candidates' ranking: log l/g, per parameter
            dim = table.dim
            for j, v in enumerate(pts):
                x = v[i]
                if x != x:
                    continue
                cell = min(len(p) - 1, int(x * len(p))) if dim.kind == "real" else int(x)
                out[j] += math.log(max(p[cell], 1e-300))
        return {"score": out, "level": None}
    return None


def one(rec: Recording, sampler: str, workers: int, seed: int) -> dict[str, Any]:
    study: dict[str, Any] = {
        "name": rec.name,
        "metric": rec.metric,
        "mode": rec.mode,
        "seed": seed,
        "algorithm": "asha",
        "sampler": "random" if sampler == "random-norepeat" else sampler,
    }
    spec = parse_spec(
        {
            "study": study,
            "asha": {
                "min_resource": 1,
                "max_resource": rec.max_resource,
                "reduction_factor": 3,
                "time_limit_s": LIMIT[workers] * rec.time_r,
            },
            "space": rec.space_table,
        },
        source="<diagnose>",
    )
    bench = Lookup(rec)
    inner = (
        NoRepeat(spec.space) if sampler == "random-norepeat" else make_sampler(sampler, spec.space)
    )
    spy = Spy(inner, bench, rec.time_r)
    bench.sampler = lambda: spy  # type: ignore[method-assign]
    targets = {
        i
        for i, r in enumerate(rec.rows)
        if r["values"][-1] is not None and rec.sign * r["values"][-1] <= rec.sign * rec.target
    }
    first_tgt: list[float] = []
    at_r: set[int] = set()  # trials on a target configuration that got to R
    ttt: list[float] = []
    starts: dict[int, float] = {}

    def on_result(now: float, job: Job, value: float | None) -> None:
        spy.now = now
        if job.trial not in starts:
            starts[job.trial] = now
        row = bench.row(job.config)
        if row in targets and not first_tgt:
            first_tgt.append(now)
        if row in targets and job.stop >= rec.max_resource - 1e-9:
            at_r.add(job.trial)
        if (
            not ttt
            and value is not None
            and job.stop >= rec.max_resource - 1e-9
            and rec.sign * value <= rec.sign * rec.target
        ):
            ttt.append(now)

    simulate(spec, bench, workers, seed=seed, on_result=on_result)
    seen: set[int] = set()
    dups = 0
    for r in spy.rows:
        dups += r in seen
        seen.add(r)
    rank = math.nan
    level = None
    if spy.snap is not None:
        score = spy.snap["score"]
        order = np.argsort(-score, kind="stable")
        pct = np.empty(len(score))
        pct[order] = np.arange(len(score)) / len(score)
        rank = float(np.median([pct[i] for i in targets]))
        level = spy.snap["level"]
    return {
        "trials": len(spy.rows),
        "rows": len(seen),
        "dup": dups / max(1, len(spy.rows)),
        "tgt": sum(r in targets for r in spy.rows),
        "tgt_r": len(at_r),
        "t_tgt": first_tgt[0] / rec.time_r if first_tgt else math.inf,
        "ttt": ttt[0] / rec.time_r if ttt else math.inf,
        "rank": rank,
        "level": level,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recordings", default="digits-wide,diabetes")
    ap.add_argument("--samplers", default="random,random-norepeat,tpe,bohb")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--quantile", type=float, default=0.01)
    a = ap.parse_args()
    recs = load_all(a.recordings.split(","), a.quantile)
    for rec in recs.values():
        print(data_side(rec))
        print("| sampler | trials | rows | dup% | tgt | tgt@R | t_tgt | ttt | rank | level |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for s in a.samplers.split(","):
            runs = [one(rec, s, a.workers, seed) for seed in range(a.seeds)]

            def med(k: str, runs: list[dict[str, Any]] = runs) -> float:
                xs = [r[k] for r in runs if r[k] is not None and r[k] == r[k]]
                return statistics.median(xs) if xs else math.nan

            levels = sorted({r["level"] for r in runs if r["level"] is not None})
            print(
                f"| {s} | {med('trials'):.0f} | {med('rows'):.0f} | {100 * med('dup'):.0f} "
                f"| {med('tgt'):.0f} | {med('tgt_r'):.0f} | {med('t_tgt'):.2f} | {med('ttt'):.2f} "
                f"| {med('rank'):.2f} | {levels} |"
            )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    assert set(RECORDINGS)
    sys.exit(main())
