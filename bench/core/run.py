"""Scheduling overhead of ash's sans-I/O core beside Optuna's SuccessiveHalvingPruner.

Workload (the same for both systems): ASHA with r=1, R=27, eta=3, a no-op objective whose value is
a deterministic function of the config ``x`` and the resource, 2 trials in flight, until
``max_trials`` trials have been started (``max_trials = round(N * 27 / 40)``, so that ash, which
runs 40/27 results per trial, lands on about N results).

- ash: ``Scheduler.next_job`` / ``Scheduler.report``, driven like a 2-worker pool: ask until 2
  jobs are pending, then report the oldest. A "result" is a ``report`` call, a "decision" is a
  ``next_job`` call that returned a job.
- Optuna: ``SuccessiveHalvingPruner(min_resource=1, reduction_factor=3,
  min_early_stopping_rate=0)``, in-memory storage, a seeded ``RandomSampler``, ask/tell. Two
  trials are interleaved round-robin: the older of the two running trials reports its next
  intermediate value (resources 1, 3, 9, 27), then ``should_prune``; a pruned or finished trial
  is told and a new one is asked. A "result" is a ``trial.report`` call.

Samplers (``--samplers``): ash runs with each ``[study] sampler`` (random, tpe, bohb), Optuna
(``--optuna-samplers``) with its ``RandomSampler`` or ``TPESampler`` (seeded), on the same
workload; the objective is the same, so a model sampler also changes which trials are promoted.
"max us" is the longest single ``next_job`` call in the last 10% of a run (refits included);
"full GCs" the generation-2 collections CPython ran inside ash's loop (the most in any run) and
the longest one's pause.

Every measurement runs in a fresh Python process (this file with ``--child``); only the
scheduling loop is timed (imports, spec parsing and study creation are not). The parent
interleaves ash and Optuna runs so that both see the same machine noise, and prints medians as a
Markdown table.

    /work/venv/bin/python bench/core/run.py                 # full run (1k..1M ash, 1k/10k Optuna)
    /work/venv/bin/python bench/core/run.py --quick         # a smoke run in seconds
    /work/venv/bin/python bench/core/run.py --profile 1000000   # cProfile of one ash run
    /work/venv/bin/python bench/core/run.py --sizes 1000,10000,100000 --samplers random,tpe,bohb
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


def run_ash(n_results: int, seed: int, sampler: str = "random") -> Row:
    import random

    from ash.scheduler.core import Job, Scheduler
    from ash.spec import parse_spec

    max_trials = trials_for(n_results)
    spec = parse_spec(
        {
            "study": {
                "name": "bench",
                "metric": "loss",
                "mode": "min",
                "seed": seed,
                "algorithm": "asha",
                "sampler": sampler,
            },
            "asha": {
                "min_resource": 1,
                "max_resource": 27,
                "reduction_factor": 3,
                "max_trials": max_trials,
            },
            "space": {"x": {"uniform": [0.0, 1.0]}},
        },
        source="bench",
    )
    core = Scheduler(spec, random.Random(seed))
    rss_before = rss_mib()
    import gc

    full: list[float] = []  # each generation-2 (full) collection's pause in the loop, s
    began = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if info["generation"] == 2:
            if phase == "start":
                began[0] = time.perf_counter()
            else:
                full.append(time.perf_counter() - began[0])

    gc.callbacks.append(on_gc)
    pending: deque[Job] = deque()
    decisions = results = 0
    mark = max(1, (9 * n_results) // 10)  # start of the last ~10%: the marginal cost at size N
    t_mark = -1.0
    d_mark = 0
    best = math.inf
    now = 0.0
    worst = 0.0  # the longest next_job call in the last 10%
    clock = time.perf_counter
    t0 = time.perf_counter()
    while True:
        while len(pending) < 2:
            if t_mark >= 0:
                t1 = clock()
                job = core.next_job(now)
                t1 = clock() - t1
                if t1 > worst:
                    worst = t1
            else:
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
        value = objective(job.config["x"], job.stop)
        core.report(job.job_id, value, now)
        if value < best:
            best = value
        results += 1
        now += 1.0
        if results == mark:
            t_mark = time.perf_counter()
            d_mark = decisions
    t_end = time.perf_counter()
    gc.callbacks.remove(on_gc)
    elapsed = t_end - t0
    tail = t_mark >= 0 and decisions > d_mark
    return {
        "system": "ash",
        "full_gcs": len(full),
        "full_gc_max_ms": 1e3 * max(full, default=0.0),
        "sampler": sampler,
        "target": n_results,
        "trials": core.n_trials,
        "results": results,
        "decisions": decisions,
        "seconds": elapsed,
        "best": best,
        "us_per_decision": 1e6 * elapsed / decisions,
        "tail_us_per_decision": 1e6 * (t_end - t_mark) / (decisions - d_mark) if tail else None,
        "tail_results_per_s": (results - mark) / (t_end - t_mark) if tail else math.nan,
        "tail_max_us": 1e6 * worst if tail else None,
        "fits": getattr(core.sampler, "fits", None),
        "rss_before_mib": rss_before,
        "rss_peak_mib": rss_mib(),
        "complete": True,
    }


def run_optuna(n_results: int, seed: int, budget_s: float, sampler: str = "random") -> Row:
    import optuna
    from optuna.pruners import SuccessiveHalvingPruner
    from optuna.samplers import RandomSampler, TPESampler
    from optuna.storages import InMemoryStorage
    from optuna.trial import Trial, TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    max_trials = trials_for(n_results)
    study = optuna.create_study(
        storage=InMemoryStorage(),
        sampler=TPESampler(seed=seed) if sampler == "tpe" else RandomSampler(seed=seed),
        pruner=SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=3, min_early_stopping_rate=0
        ),
        direction="minimize",
    )
    rss_before = rss_mib()
    active: deque[tuple[Trial, float, int]] = deque()
    started = results = pruned = 0
    best = math.inf
    complete = True
    marks: list[tuple[int, float]] = []  # (results, time) every 256 results
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
        if results % 256 == 0:
            marks.append((results, time.perf_counter()))
            if marks[-1][1] > deadline:
                complete = False
                break
    t_end = time.perf_counter()
    elapsed = t_end - t0
    # results/s over the last ~10% of the run: the marginal rate at this size
    r_mark, t_mark = next(((r, t) for r, t in marks if r >= 0.9 * results), (0, t0))
    tail_rate = (results - r_mark) / (t_end - t_mark) if t_end > t_mark else math.nan
    return {
        "system": "optuna",
        "sampler": sampler,
        "target": n_results,
        "trials": started,
        "results": results,
        "pruned": pruned,
        "seconds": elapsed,
        "best": best,
        "tail_results_per_s": tail_rate,
        "rss_before_mib": rss_before,
        "rss_peak_mib": rss_mib(),
        "complete": complete,
    }


def profile_ash(n_results: int, seed: int, top: int, sampler: str = "random") -> None:
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    row = run_ash(n_results, seed, sampler)
    prof.disable()
    print(json.dumps(row))
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


# -- parent --------------------------------------------------------------------------------------


def spawn(system: str, n: int, seed: int, budget_s: float, sampler: str = "random") -> Row:
    cmd = [
        sys.executable,
        str(HERE),
        "--child",
        system,
        "--sampler",
        sampler,
        "--n",
        str(n),
        "--seed",
        str(seed),
        "--budget",
        str(budget_s),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    row: Row = json.loads(out.strip().splitlines()[-1])
    row["loadavg_1min_after"] = os.getloadavg()[0]
    return row


def machine() -> dict[str, str]:
    import optuna

    cpu: dict[str, str] = {}
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                break  # the first processor is enough
            key, _, value = line.partition(":")
            cpu[key.strip()] = value.strip()
    model = (
        f"{cpu.get('model name', '?')} (family {cpu.get('cpu family', '?')}, "
        f"model {cpu.get('model', '?')}, "
        f"{'AVX-512' if 'avx512f' in cpu.get('flags', '').split() else 'no AVX-512'})"
    )
    return {
        "nproc": str(os.cpu_count()),
        "affinity": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "python": platform.python_version(),
        "optuna": optuna.__version__,
        "kernel": platform.release(),
        "ash": subprocess.run(
            ["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip(),
    }


def fmt_k(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k" if n >= 1000 else str(n)


def med(rows: list[Row], key: str) -> float:
    vals = [r[key] for r in rows if r.get(key) is not None and not math.isnan(r[key])]
    return statistics.median(vals) if vals else math.nan


def summarize(rows: list[Row]) -> Row:
    """Medians over repetitions; checks that every repetition made the same decisions."""
    done = [r for r in rows if r["complete"]]
    use = done or rows
    for r in use:
        r["results_per_s"] = r["results"] / r["seconds"]
        if "decisions" in r:
            r["decisions_per_s"] = r["decisions"] / r["seconds"]
    rates = [r["results_per_s"] for r in use]
    return {
        "system": use[0]["system"],
        "sampler": use[0].get("sampler", "random"),
        "reps": len(rows),
        "complete": len(done),
        "deterministic": len({(r["trials"], r["results"], r["best"]) for r in done}) <= 1,
        "trials": int(statistics.median(r["trials"] for r in use)),
        "results": int(statistics.median(r["results"] for r in use)),
        "seconds": med(use, "seconds"),
        "results_per_s": med(use, "results_per_s"),
        "spread": (min(rates), max(rates)),
        "tail_results_per_s": med(use, "tail_results_per_s"),
        "decisions_per_s": med(use, "decisions_per_s"),
        "us_per_decision": med(use, "us_per_decision"),
        "tail_us": med(use, "tail_us_per_decision"),
        "tail_max_us": max(
            (r["tail_max_us"] for r in use if r.get("tail_max_us")), default=math.nan
        ),
        "rss_peak_mib": med(use, "rss_peak_mib"),
        "rss_before_mib": med(use, "rss_before_mib"),
        "full_gcs": max((r.get("full_gcs", 0) for r in use), default=0),
        "full_gc_max_ms": max((r.get("full_gc_max_ms", 0.0) for r in use), default=0.0),
    }


def num(x: float, spec: str = ",.0f") -> str:
    return "-" if math.isnan(x) else format(x, spec)


Key = tuple[str, str, int]  # (system, sampler, N)


def table(summary: dict[Key, Row], sizes: list[int]) -> str:
    lines = [
        "| system | sampler | N (target results) | trials | results | runs | median s "
        "| results/s, median (min-max) | results/s, last 10% | decisions/s "
        "| us/decision (whole / last 10%) | max us, last 10% | full GCs (longest ms) "
        "| peak RSS MiB (before loop) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        for key in sorted(k for k in summary if k[2] == n):
            system = key[0]
            s = summary[key]
            lo, hi = s["spread"]
            rate = f"{num(s['results_per_s'])} ({num(lo)}-{num(hi)})"
            results = f"{s['results']:,}"
            if s["complete"] < s["reps"]:
                results += " **(stopped at the time budget)**"
            elif not s["deterministic"]:
                results += " (runs differ!)"
            usd = f"{num(s['us_per_decision'], '.2f')} / {num(s['tail_us'], '.2f')}"
            worst = num(s["tail_max_us"], ",.0f") if system == "ash" else "-"
            gcs = f"{s['full_gcs']} ({s['full_gc_max_ms']:.1f})" if system == "ash" else "-"
            lines.append(
                f"| {system} | {s['sampler']} | {fmt_k(n)} | {s['trials']:,} | {results} "
                f"| {s['reps']} | {s['seconds']:.3f} | {rate} | {num(s['tail_results_per_s'])} "
                f"| {num(s['decisions_per_s'])} | {usd if system == 'ash' else '-'} | {worst} "
                f"| {gcs} | {s['rss_peak_mib']:.0f} ({s['rss_before_mib']:.0f}) |"
            )
    return "\n".join(lines)


def reps_for(system: str, n: int, reps: int, probe: int) -> int:
    """Fewer repetitions for the largest sizes; the Optuna probe runs once."""
    if system == "optuna" and n == probe:
        return 1
    return reps if n <= 100_000 else max(1, min(reps, 3))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--sizes",
        default="1000,10000,100000,1000000",
        help="target result counts for ash (comma-separated)",
    )
    p.add_argument(
        "--optuna-sizes",
        default="1000,10000",
        help="target result counts for Optuna (comma-separated; '' for none)",
    )
    p.add_argument(
        "--optuna-probe",
        type=int,
        default=100_000,
        metavar="N",
        help="one extra Optuna run at N results, stopped after --budget s (0: none)",
    )
    p.add_argument("--reps", type=int, default=5, help="repetitions per size (<=3 above 100k)")
    p.add_argument(
        "--budget",
        type=float,
        default=300.0,
        help="seconds after which an Optuna run stops and reports what it reached",
    )
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument(
        "--quick",
        action="store_true",
        help="1k and 10k, 2 runs each, no probe: a smoke run (~40 s)",
    )
    p.add_argument("--json", type=Path, help="also write every raw run to this file")
    p.add_argument(
        "--profile",
        type=int,
        metavar="N",
        help="run ash once in this process under cProfile at N results and exit",
    )
    p.add_argument(
        "--samplers",
        default="random",
        help="ash's [study] sampler for each run (comma-separated: random, tpe, bohb)",
    )
    p.add_argument(
        "--optuna-samplers",
        default="random",
        help="Optuna's sampler for each run (comma-separated: random, tpe)",
    )
    p.add_argument("--child", choices=("ash", "optuna"), help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--sampler", default="random", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        row = (
            run_ash(args.n, args.seed, args.sampler)
            if args.child == "ash"
            else run_optuna(args.n, args.seed, args.budget, args.sampler)
        )
        print(json.dumps(row))
        return 0
    if args.profile:
        profile_ash(args.profile, args.seed, 25, args.samplers.split(",")[0])
        return 0
    samplers = {
        "ash": [x for x in args.samplers.split(",") if x],
        "optuna": [x for x in args.optuna_samplers.split(",") if x],
    }

    sizes = [int(s) for s in args.sizes.split(",") if s]
    osizes = [int(s) for s in args.optuna_sizes.split(",") if s]
    reps, probe = args.reps, args.optuna_probe
    if args.quick:
        sizes, osizes, reps, probe = [1000, 10000], [1000, 10000], 2, 0
    if probe and probe not in osizes:
        osizes.append(probe)
    info = machine()
    print(f"machine: {json.dumps(info)}", file=sys.stderr)
    raw: dict[Key, list[Row]] = {}
    t_start = time.perf_counter()
    all_sizes = sorted(set(sizes) | set(osizes))
    for n in all_sizes:
        for rep in range(max(reps_for(sys_, n, reps, probe) for sys_ in ("ash", "optuna"))):
            # Interleaved: ash then Optuna in each repetition, so they share the machine's noise.
            for system, sampler in [(x, y) for x in ("ash", "optuna") for y in samplers[x]]:
                if n not in (sizes if system == "ash" else osizes):
                    continue
                if rep >= reps_for(system, n, reps, probe):
                    continue
                row = spawn(system, n, args.seed, args.budget, sampler)
                raw.setdefault((system, sampler, n), []).append(row)
                print(
                    f"{system:6} {sampler:6} N={n:>8} run {rep + 1}: {row['results']:,} results in "
                    f"{row['seconds']:.3f} s = {row['results'] / row['seconds']:,.0f}/s, "
                    f"peak RSS {row['rss_peak_mib']:.0f} MiB"
                    + ("" if row["complete"] else " (stopped at the time budget)"),
                    file=sys.stderr,
                    flush=True,
                )
    summary = {key: summarize(rows) for key, rows in raw.items()}
    print(table(summary, all_sizes))
    print()
    for sampler in samplers["ash"]:
        ash_sizes = sorted(n for (system, x, n) in summary if system == "ash" and x == sampler)
        if len(ash_sizes) >= 2:
            lo = summary[("ash", sampler, ash_sizes[0])]
            hi = summary[("ash", sampler, ash_sizes[-1])]
            print(
                f"- ash ({sampler}) per-decision cost, {fmt_k(ash_sizes[-1])} / "
                f"{fmt_k(ash_sizes[0])}: whole run "
                f"{hi['us_per_decision'] / lo['us_per_decision']:.2f}x "
                f"({lo['us_per_decision']:.2f} -> {hi['us_per_decision']:.2f} us), "
                f"last 10% {hi['tail_us'] / lo['tail_us']:.2f}x "
                f"({lo['tail_us']:.2f} -> {hi['tail_us']:.2f} us); goal <= 2x"
            )
            worst = min(summary[("ash", sampler, n)]["decisions_per_s"] for n in ash_sizes)
            print(
                f"- ash ({sampler}) decisions/s, lowest median over sizes: {worst:,.0f} "
                f"(goal >= {'100,000' if sampler == 'random' else '50,000 at 100k'})"
            )
    for n in all_sizes:
        a, o = summary.get(("ash", "random", n)), summary.get(("optuna", "random", n))
        if a and o and o["complete"] == o["reps"]:
            print(
                f"- {fmt_k(n)}: ash / Optuna results/s (random samplers) = "
                f"{a['results_per_s'] / o['results_per_s']:,.0f}x"
            )
    print(f"- wall time {time.perf_counter() - t_start:.0f} s; machine: {json.dumps(info)}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": info, "runs": [r for rows in raw.values() for r in rows]}, indent=1
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
