"""Scheduling overhead of ash's sans-I/O core beside Optuna's SuccessiveHalvingPruner.

Workload (the same for both systems): ASHA with r=1, R=27, eta=3, a no-op objective whose value is
a deterministic function of the config ``x`` and the resource, 2 trials in flight, until
``max_trials`` trials have been started (``max_trials = round(N * 27 / 40)``, so that ash, which
runs 40/27 results per trial, lands on about N results).

- ash: ``Scheduler.next_job`` / ``Scheduler.report``, driven like a 2-worker pool: ask until 2
  jobs are pending, then report the oldest. A "result" is a ``report`` call, a "decision" is a
  ``next_job`` call that returned a job.
- Optuna: ``SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, min_early_stopping_rate=0)``,
  in-memory storage, a seeded ``RandomSampler``, ask/tell. Two trials are interleaved
  round-robin: the older of the two running trials reports its next intermediate value
  (resources 1, 3, 9, 27), then ``should_prune``; a pruned or finished trial is told and a new
  one is asked. A "result" is a ``trial.report`` call.

Every measurement runs in a fresh Python process (this file with ``--child``); only the
scheduling loop is timed (imports, spec parsing and study creation are not). The parent
interleaves ash and Optuna runs so that both see the same machine noise, and prints medians as a
Markdown table.

    /work/venv/bin/python bench/core/run.py                 # full run (1k..1M ash, 1k/10k Optuna)
    /work/venv/bin/python bench/core/run.py --quick         # a smoke run in seconds
    /work/venv/bin/python bench/core/run.py --profile 1000000   # cProfile of one ash run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

SEED = 0
STEPS = (1, 3, 9, 27)
HERE = Path(__file__).resolve()

Row = dict[str, Any]


def objective(x: float, r: float) -> float:
    """The no-op objective both systems see: deterministic in (x, resource), not monotone in x."""
    return (x - 0.3) ** 2 + 0.1 * math.sin(40.0 * x + r) / math.sqrt(r)


def trials_for(n_results: int) -> int:
    """max_trials that gives about ``n_results`` results under ASHA r=1, R=27, eta=3."""
    return max(1, round(n_results * 27 / 40))


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# -- children ------------------------------------------------------------------------------------


def run_ash(n_results: int, seed: int) -> Row:
    import random

    from ash.scheduler.core import Job, Scheduler
    from ash.scheduler.spec import parse_spec

    max_trials = trials_for(n_results)
    spec = parse_spec(
        {
            "study": {"name": "bench", "metric": "loss", "mode": "min", "seed": seed,
                      "algorithm": "asha"},
            "asha": {"min_resource": 1, "max_resource": 27, "reduction_factor": 3,
                     "max_trials": max_trials},
            "space": {"x": {"uniform": [0.0, 1.0]}},
        },
        source="bench",
    )
    core = Scheduler(spec, random.Random(seed))
    rss_before = rss_mib()
    pending: deque[Job] = deque()
    decisions = results = 0
    mark = max(1, (9 * n_results) // 10)  # start of the last ~10%: the marginal cost at size N
    t_mark = -1.0
    d_mark = 0
    best = math.inf
    now = 0.0
    t0 = time.perf_counter()
    while True:
        while len(pending) < 2:
            job = core.next_job(now)
            if job is None:
                break
            decisions += 1
            pending.append(job)
        if not pending:
            if core.finished:
                break
            raise RuntimeError("ash stalled: no job pending and not finished")
        job = pending.popleft()
        value = objective(job.config["x"], job.stop)  # type: ignore[arg-type]
        core.report(job.job_id, value, now)
        if value < best:
            best = value
        results += 1
        now += 1.0
        if results == mark:
            t_mark = time.perf_counter()
            d_mark = decisions
    elapsed = time.perf_counter() - t0
    t_end = t0 + elapsed
    tail = (t_end - t_mark) / (decisions - d_mark) if t_mark > 0 and decisions > d_mark else None
    return {
        "system": "ash", "target": n_results, "trials": core.n_trials, "results": results,
        "decisions": decisions, "seconds": elapsed, "best": best,
        "us_per_decision": 1e6 * elapsed / decisions,
        "tail_us_per_decision": None if tail is None else 1e6 * tail,
        "rss_before_mib": rss_before, "rss_peak_mib": rss_mib(), "complete": True,
    }


def run_optuna(n_results: int, seed: int, budget_s: float) -> Row:
    import optuna
    from optuna.pruners import SuccessiveHalvingPruner
    from optuna.samplers import RandomSampler
    from optuna.storages import InMemoryStorage
    from optuna.trial import Trial, TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    max_trials = trials_for(n_results)
    study = optuna.create_study(
        storage=InMemoryStorage(),
        sampler=RandomSampler(seed=seed),
        pruner=SuccessiveHalvingPruner(min_resource=1, reduction_factor=3,
                                       min_early_stopping_rate=0),
        direction="minimize",
    )
    rss_before = rss_mib()
    active: deque[tuple[Trial, float, int]] = deque()
    started = results = pruned = 0
    best = math.inf
    complete = True
    t0 = time.perf_counter()
    deadline = t0 + budget_s
    while True:
        while len(active) < 2 and started < max_trials:
            trial = study.ask()
            active.append((trial, trial.suggest_float("x", 0.0, 1.0), 0))
            started += 1
        if not active:
            break
        trial, x, i = active.popleft()
        step = STEPS[i]
        value = objective(x, step)
        trial.report(value, step)
        results += 1
        if value < best:
            best = value
        if trial.should_prune():
            study.tell(trial, state=TrialState.PRUNED)
            pruned += 1
        elif i == len(STEPS) - 1:
            study.tell(trial, value)
        else:
            active.append((trial, x, i + 1))
        if results % 256 == 0 and time.perf_counter() > deadline:
            complete = False
            break
    elapsed = time.perf_counter() - t0
    return {
        "system": "optuna", "target": n_results, "trials": started, "results": results,
        "pruned": pruned, "seconds": elapsed, "best": best,
        "rss_before_mib": rss_before, "rss_peak_mib": rss_mib(), "complete": complete,
    }


def profile_ash(n_results: int, seed: int, top: int) -> None:
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    row = run_ash(n_results, seed)
    prof.disable()
    print(json.dumps(row))
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


# -- parent --------------------------------------------------------------------------------------


def spawn(system: str, n: int, seed: int, budget_s: float) -> Row:
    cmd = [sys.executable, str(HERE), "--child", system, "--n", str(n), "--seed", str(seed),
           "--budget", str(budget_s)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    row: Row = json.loads(out.strip().splitlines()[-1])
    return row


def machine() -> dict[str, str]:
    import optuna

    model = "?"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": str(os.cpu_count()),
        "affinity": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "python": platform.python_version(),
        "optuna": optuna.__version__,
        "kernel": platform.release(),
    }


def fmt_k(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k" if n >= 1000 else str(n)


def summarize(rows: list[Row]) -> Row:
    """Medians over repetitions; checks that every repetition made the same decisions."""
    keys = {(r["trials"], r["results"], r["best"]) for r in rows if r["complete"]}
    done = [r for r in rows if r["complete"]]
    use = done or rows
    out: Row = {
        "reps": len(rows),
        "complete": len(done),
        "deterministic": len(keys) <= 1,
        "trials": int(statistics.median(r["trials"] for r in use)),
        "results": int(statistics.median(r["results"] for r in use)),
        "seconds": statistics.median(r["seconds"] for r in use),
        "results_per_s": statistics.median(r["results"] / r["seconds"] for r in use),
        "rss_peak_mib": statistics.median(r["rss_peak_mib"] for r in use),
        "rss_before_mib": statistics.median(r["rss_before_mib"] for r in use),
        "spread": (min(r["results"] / r["seconds"] for r in use),
                   max(r["results"] / r["seconds"] for r in use)),
    }
    if use[0]["system"] == "ash":
        out["decisions"] = int(statistics.median(r["decisions"] for r in use))
        out["decisions_per_s"] = statistics.median(r["decisions"] / r["seconds"] for r in use)
        out["us_per_decision"] = statistics.median(r["us_per_decision"] for r in use)
        tails = [r["tail_us_per_decision"] for r in use if r["tail_us_per_decision"] is not None]
        out["tail_us"] = statistics.median(tails) if tails else math.nan
    return out


def table(summary: dict[tuple[str, int], Row], sizes: list[int]) -> str:
    lines = [
        "| system | target N | trials | results | reps | median s | results/s (min-max) "
        "| decisions/s | us/decision (whole run / last 10%) | peak RSS MiB (before loop) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        for system in ("ash", "optuna"):
            s = summary.get((system, n))
            if s is None:
                continue
            lo, hi = s["spread"]
            rate = f"{s['results_per_s']:,.0f} ({lo:,.0f}-{hi:,.0f})"
            if s["complete"] < s["reps"]:
                rate += f" **stopped at budget, {s['results']:,} results done**"
            dps = f"{s['decisions_per_s']:,.0f}" if system == "ash" else "-"
            usd = f"{s['us_per_decision']:.2f} / {s['tail_us']:.2f}" if system == "ash" else "-"
            det = "" if s["deterministic"] else " (reps differ!)"
            lines.append(
                f"| {system} | {fmt_k(n)} | {s['trials']:,} | {s['results']:,}{det} | {s['reps']} "
                f"| {s['seconds']:.3f} | {rate} | {dps} | {usd} "
                f"| {s['rss_peak_mib']:.0f} ({s['rss_before_mib']:.0f}) |"
            )
    return "\n".join(lines)


def reps_for(n: int, reps: int) -> int:
    """Fewer repetitions for the largest sizes."""
    return reps if n <= 100_000 else max(1, min(reps, 3))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--sizes", default="1000,10000,100000,1000000",
                   help="target result counts for ash (comma-separated)")
    p.add_argument("--optuna-sizes", default="1000,10000",
                   help="target result counts for Optuna (comma-separated; '' for none)")
    p.add_argument("--reps", type=int, default=5, help="repetitions per size (<=3 above 100k)")
    p.add_argument("--budget", type=float, default=300.0,
                   help="seconds after which an Optuna run stops and reports what it reached")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--quick", action="store_true", help="1k and 10k, 2 reps: a smoke run")
    p.add_argument("--json", type=Path, help="also write every raw run to this file")
    p.add_argument("--profile", type=int, metavar="N",
                   help="run ash once in this process under cProfile at N results and exit")
    p.add_argument("--child", choices=("ash", "optuna"), help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        row = (run_ash(args.n, args.seed) if args.child == "ash"
               else run_optuna(args.n, args.seed, args.budget))
        print(json.dumps(row))
        return 0
    if args.profile:
        profile_ash(args.profile, args.seed, 25)
        return 0

    sizes = [int(s) for s in args.sizes.split(",") if s]
    osizes = [int(s) for s in args.optuna_sizes.split(",") if s]
    reps = args.reps
    if args.quick:
        sizes, osizes, reps = [1000, 10000], [1000, 10000], 2
    info = machine()
    print(f"machine: {json.dumps(info)}", file=sys.stderr)
    raw: dict[tuple[str, int], list[Row]] = {}
    t_start = time.perf_counter()
    for n in sorted(set(sizes) | set(osizes)):
        for rep in range(reps_for(n, reps)):
            # Interleaved: ash then Optuna in each repetition, so they share the machine's noise.
            for system in ("ash", "optuna"):
                if n not in (sizes if system == "ash" else osizes):
                    continue
                row = spawn(system, n, args.seed, args.budget)
                raw.setdefault((system, n), []).append(row)
                print(f"{system:6} N={n:>8} rep {rep + 1}: {row['results']:,} results in "
                      f"{row['seconds']:.3f} s = {row['results'] / row['seconds']:,.0f}/s, "
                      f"peak RSS {row['rss_peak_mib']:.0f} MiB"
                      + ("" if row["complete"] else " (stopped at budget)"),
                      file=sys.stderr, flush=True)
    summary = {key: summarize(rows) for key, rows in raw.items()}
    all_sizes = sorted(set(sizes) | set(osizes))
    print(table(summary, all_sizes))
    ash_sizes = sorted(n for (system, n) in summary if system == "ash")
    if len(ash_sizes) >= 2:
        lo, hi = summary[("ash", ash_sizes[0])], summary[("ash", ash_sizes[-1])]
        print(
            f"\nash per-decision cost, {fmt_k(ash_sizes[-1])} / {fmt_k(ash_sizes[0])}: "
            f"whole run {hi['us_per_decision'] / lo['us_per_decision']:.2f}x "
            f"({lo['us_per_decision']:.2f} -> {hi['us_per_decision']:.2f} us), "
            f"last 10% {hi['tail_us'] / lo['tail_us']:.2f}x "
            f"({lo['tail_us']:.2f} -> {hi['tail_us']:.2f} us); goal <= 2x"
        )
        worst = min(summary[("ash", n)]["decisions_per_s"] for n in ash_sizes)
        print(f"ash decisions/s, lowest median over sizes: {worst:,.0f} (goal >= 100,000)")
    for n in all_sizes:
        a, o = summary.get(("ash", n)), summary.get(("optuna", n))
        if a and o and o["complete"] == o["reps"]:
            print(f"{fmt_k(n)}: ash / Optuna results/s = "
                  f"{a['results_per_s'] / o['results_per_s']:,.1f}x")
    print(f"\nwall time {time.perf_counter() - t_start:.0f} s; machine {json.dumps(info)}")
    if args.json:
        args.json.write_text(json.dumps(
            {"machine": info, "runs": [r for rows in raw.values() for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
