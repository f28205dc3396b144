"""Samplers at equal compute on recorded learning curves: ash's samplers against Optuna and DEHB.

For each recording (bench/efficiency's iris, digits and synth; this folder's digits-wide and
diabetes), 8 and 64 simulated workers and ``--seeds`` seeds, every system of ``systems.py`` runs
one simulated study under the same time model and the same lookup (``lookup.py``), and this
script writes:

- ``results.json.gz``: per run, the time-to-target and the incumbent over virtual time;
- ``results.md``: time-to-target and regret tables and the goal check of issue 16;
- ``plots/<recording>.png``: median regret over time, one panel per worker count.

Definitions (as in bench/efficiency): time(R) is the mean over the recorded configurations of
``seconds_per_unit * R``; all times are in units of time(R). The target is the ``--quantile``
quantile (default 0.01) of the recorded final values. A run that does not reach the target
within its budget (LIMIT[W] time(R); no job is handed out after it) is censored: it counts as
infinitely late in the medians. Seed i seeds the sampler of every system (ash's core RNG,
Optuna's TPESampler, DEHB); durations are deterministic.

    python bench/search/run.py                                   # everything
    python bench/search/run.py --seeds 2 --recordings iris --workers 8 --systems ash-random
    python bench/search/run.py --from-results                    # only redo tables and plots
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from lookup import Recording, load  # noqa: E402
from systems import run_ash, run_dehb, run_optuna  # noqa: E402

EFF = HERE.parent / "efficiency"
RECORDINGS: dict[str, tuple[Path, Path]] = {
    "iris": (EFF / "curves/iris.json.gz", EFF / "specs/iris.toml"),
    "digits": (EFF / "curves/digits.json.gz", EFF / "specs/digits.toml"),
    "synth": (EFF / "curves/synth.json.gz", EFF / "specs/synth.toml"),
    "digits-wide": (HERE / "curves/digits-wide.json.gz", HERE / "specs/digits-wide.toml"),
    "diabetes": (HERE / "curves/diabetes.json.gz", HERE / "specs/diabetes.toml"),
    "digits-grid": (HERE / "curves/digits-grid.json.gz", HERE / "specs/digits-grid.toml"),
    "diabetes-grid": (HERE / "curves/diabetes-grid.json.gz", HERE / "specs/diabetes-grid.toml"),
}
SYSTEMS = ("ash-random", "ash-tpe", "ash-bohb", "optuna-tpe-sh", "dehb")
LABELS = {
    "ash-random": "random-ASHA",
    "ash-tpe": "ash TPE",
    "ash-bohb": "ash BOHB",
    "optuna-tpe-sh": "Optuna TPE+SH",
    "dehb": "DEHB",
}
COLORS = {
    "ash-random": "tab:blue",
    "ash-tpe": "tab:orange",
    "ash-bohb": "tab:green",
    "optuna-tpe-sh": "tab:red",
    "dehb": "tab:purple",
}
# the five recordings issue 16's goal counts: bench/efficiency's three and the two new ones as
# full grids (every proposal is a recorded configuration). digits-wide and diabetes (random
# configurations answered by the nearest one) stay in the tables, but their lookup turns
# nearby proposals into the same recorded model, which penalises any sampler that exploits
# (README.md, "Why the model samplers lost"), so they are not counted. Chosen before the grids
# were simulated.
GOAL = ("iris", "digits", "synth", "digits-grid", "diabetes-grid")
LIMIT = {8: 12.0, 64: 4.0}  # the budget of a run, in time(R), by number of workers


def available(system: str) -> str | None:
    """None if the system can run here, else why not."""
    if system in ("ash-tpe", "ash-bohb"):
        name = system.removeprefix("ash-")
        try:
            from ash.scheduler.core.samplers import SAMPLERS
        except ImportError:
            SAMPLERS = ("random",)  # an ash before [study] sampler
        if name not in SAMPLERS:
            return f"this ash has no sampler {name!r}"
    elif system == "optuna-tpe-sh":
        try:
            import optuna  # noqa: F401
        except ImportError:
            return "optuna is not installed (pip install -e '.[bench]')"
    elif system == "dehb":
        try:
            import dehb  # noqa: F401
        except ImportError:
            return "dehb is not installed (pip install -e '.[bench]')"
    return None


def load_all(names: list[str], quantile: float) -> dict[str, Recording]:
    return {n: load(n, *RECORDINGS[n], quantile) for n in names}


Task = tuple[str, str, int, int, float]

_RECS: dict[str, Recording] = {}


def _init(names: list[str], quantile: float) -> None:
    _RECS.update(load_all(names, quantile))


def one_run(task: Task) -> dict[str, Any]:
    name, system, workers, seed, limit = task
    rec = _RECS[name]
    limit_s = limit * rec.time_r
    t0 = time.process_time()
    if system.startswith("ash-"):
        run = run_ash(rec, system.removeprefix("ash-"), workers, seed, limit_s)
    elif system == "optuna-tpe-sh":
        run = run_optuna(rec, workers, seed, limit_s)
    elif system == "dehb":
        run = run_dehb(rec, workers, seed, limit_s)
    else:
        raise ValueError(system)
    return {
        "data": name,
        "system": system,
        "workers": workers,
        "seed": seed,
        "ttt": None if run.ttt is None else round(run.ttt / rec.time_r, 5),
        "curve": [(round(t / rec.time_r, 5), v) for t, v in run.curve],
        "trials": run.trials,
        "results": run.results,
        "rows": run.rows,
        "cpu_s": round(time.process_time() - t0, 3),
    }


# -- aggregation ------------------------------------------------------------------------------

Runs = list[dict[str, Any]]


def ttts(runs: Runs) -> list[float]:
    return [math.inf if r["ttt"] is None else r["ttt"] for r in runs]


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.inf


def quartiles(xs: list[float]) -> tuple[float, float]:
    """The 25% and 75% quantiles (inf stays inf: censored runs are late)."""
    s = sorted(xs)
    if not s:
        return math.inf, math.inf

    def q(p: float) -> float:
        x = p * (len(s) - 1)
        lo, hi = math.floor(x), math.ceil(x)
        if math.isinf(s[hi]) or math.isinf(s[lo]):
            return s[hi] if x - lo > 0 else s[lo]
        return s[lo] + (s[hi] - s[lo]) * (x - lo)

    return q(0.25), q(0.75)


def incumbent_at(curve: list[list[float]], t: float, sign: float) -> float:
    best = math.inf
    for when, value in curve:
        if when > t:
            break
        best = sign * value
    return best


def group(runs: Runs, *keys: str) -> dict[tuple[Any, ...], Runs]:
    out: dict[tuple[Any, ...], Runs] = {}
    for r in runs:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def fmt(x: float) -> str:
    return "-" if math.isinf(x) else f"{x:.2f}"


def tables(recs: dict[str, Recording], runs: Runs, workers: list[int], systems: list[str]) -> str:
    by = group(runs, "data", "system", "workers")
    lines = [
        "Median time-to-target in time(R) [25%, 75% quantiles over seeds] (seeds that reach "
        "it / seeds); '-': not reached by half the seeds (or a quarter) within the budget.\n",
        "| recording | system | " + " | ".join(f"W={w}" for w in workers) + " |",
        "|---|---" + "|---" * len(workers) + "|",
    ]
    for name in recs:
        for s in systems:
            cells = []
            for w in workers:
                rs = by.get((name, s, w), [])
                if not rs:
                    cells.append("n/a")
                    continue
                xs = ttts(rs)
                q1, q3 = quartiles(xs)
                hit = sum(r["ttt"] is not None for r in rs)
                cells.append(f"{fmt(median(xs))} [{fmt(q1)}, {fmt(q3)}] ({hit}/{len(rs)})")
            lines.append(f"| {name} | {LABELS[s]} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Median regret (incumbent minus the best recorded final value) at the budget, and the "
        "trials each system started (median):\n"
    )
    lines.append(
        "| recording | system | "
        + " | ".join(f"W={w} regret | W={w} trials" for w in workers)
        + " |"
    )
    lines.append("|---|---" + "|---|---" * len(workers) + "|")
    for name, rec in recs.items():
        for s in systems:
            cells = []
            for w in workers:
                rs = by.get((name, s, w), [])
                vals = [incumbent_at(r["curve"], LIMIT[w], rec.sign) for r in rs]
                m = median(vals)
                cells.append("-" if math.isinf(m) else f"{abs(m - rec.sign * rec.best):.4f}")
                cells.append(f"{median([r['trials'] for r in rs]):.0f}" if rs else "n/a")
            lines.append(f"| {name} | {LABELS[s]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def goal(recs: dict[str, Recording], runs: Runs, systems: list[str], w: int = 8) -> str:
    """Issue 16's goal at W workers, for each ash model-based sampler that ran."""
    by = group(runs, "data", "system", "workers")
    ash_models = [s for s in ("ash-tpe", "ash-bohb") if s in systems]
    peers = [s for s in ("optuna-tpe-sh", "dehb") if s in systems]
    if not ash_models:
        return "No ash model-based sampler ran: the goal cannot be checked.\n"
    lines = [
        f"Goal at W={w}: (a) median time-to-target of random-ASHA / of the sampler >= 1.5 on at "
        "least 3 recordings; (b) the sampler's median is never later than a peer's median plus "
        "the peer's seed spread (its interquartile range).\n",
        "| sampler | recording | speed-up over random-ASHA |"
        + "".join(f" vs {LABELS[p]}: sampler - peer median (peer IQR) |" for p in peers),
        "|---|---|---" + "|---" * len(peers) + "|",
    ]
    verdicts = []
    counted = [n for n in recs if n in GOAL]
    for s in ash_models:
        wins, ok_b = 0, True
        for name in recs:
            count = name in GOAL
            if not by.get((name, s, w)) or not by.get((name, "ash-random", w)):
                lines.append(f"| {LABELS[s]} | {name} | n/a |" + " n/a |" * len(peers))
                continue
            a = median(ttts(by.get((name, s, w), [])))
            base = median(ttts(by.get((name, "ash-random", w), [])))
            if math.isinf(a):
                sp = "censored"
            elif math.isinf(base):
                sp = "random censored"
                wins += count
            else:
                sp = f"{base / a:.2f}x"
                wins += count and base / a >= 1.5
            cells = [sp]
            for p in peers:
                xs = ttts(by.get((name, p, w), []))
                m = median(xs)
                q1, q3 = quartiles(xs)
                spread = q3 - q1 if not math.isinf(q3) else math.inf
                later = a - m if not (math.isinf(a) and math.isinf(m)) else 0.0
                bad = later > spread if not math.isinf(spread) else math.isinf(a) and False
                if math.isinf(a) and not math.isinf(m):
                    bad = True
                ok_b &= not (bad and count)
                cells.append(
                    f"{'-' if math.isnan(later) else f'{later:+.2f}'} ({fmt(spread)})"
                    + (" LATE" if bad else "")
                )
            label = name if count else f"{name} (not counted)"
            lines.append(f"| {LABELS[s]} | {label} | " + " | ".join(cells) + " |")
        verdicts.append(
            f"- {LABELS[s]}: (a) {wins}/{len(counted)} counted recordings at >= 1.5x "
            f"({'met' if wins >= 3 else 'NOT met'}); (b) "
            f"{'met' if ok_b else 'NOT met'}."
        )
    return "\n".join(lines) + "\n\n" + "\n".join(verdicts) + "\n"


def ramp_up(recs: dict[str, Recording], runs: Runs, systems: list[str], w: int = 8) -> str:
    """When the first result at R arrives (any configuration): no time-to-target can be earlier,
    since the incumbent is the best result at R. Beside it, the goal's bound (random-ASHA's
    median time-to-target / 1.5): where the two are close, only a sampler whose very first
    configurations to reach R are targets could meet it."""
    by = group(runs, "data", "system", "workers")
    lines = [
        f"When the first result at R arrives, at W={w} (median [25%, 75%] over seeds, time(R)), "
        "against the goal's bound, random-ASHA's median time-to-target / 1.5:\n",
        "| recording | goal's bound | " + " | ".join(LABELS[s] for s in systems) + " |",
        "|---|---" + "|---" * len(systems) + "|",
    ]
    for name in recs:
        base = median(ttts(by.get((name, "ash-random", w), [])))
        cells = []
        for s in systems:
            firsts = [
                r["curve"][0][0] if r["curve"] else math.inf for r in by.get((name, s, w), [])
            ]
            if not firsts:
                cells.append("n/a")
                continue
            q1, q3 = quartiles(firsts)
            cells.append(f"{fmt(median(firsts))} [{fmt(q1)}, {fmt(q3)}]")
        lines.append(f"| {name} | {fmt(base / 1.5)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plots(
    recs: dict[str, Recording], runs: Runs, workers: list[int], systems: list[str], out: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = out / "plots"
    out.mkdir(parents=True, exist_ok=True)
    by = group(runs, "data", "system", "workers")
    for name, rec in recs.items():
        fig, axes = plt.subplots(1, len(workers), figsize=(5.5 * len(workers), 4), squeeze=False)
        for ax, w in zip(axes[0], workers, strict=True):
            grid = [LIMIT[w] * i / 200 for i in range(1, 201)]
            floor = 1e-4 * max(abs(rec.best), 1e-3)
            for s in systems:
                rs = by.get((name, s, w), [])
                if not rs:
                    continue
                med, lo, hi = [], [], []
                for t in grid:
                    vals = sorted(
                        abs(incumbent_at(r["curve"], t, rec.sign) - rec.sign * rec.best) for r in rs
                    )
                    q1, q3 = quartiles(vals)
                    med.append(max(median(vals), floor))
                    lo.append(max(q1, floor))
                    hi.append(max(q3, floor))
                ax.plot(grid, med, label=LABELS[s], color=COLORS[s])
                ax.fill_between(grid, lo, hi, color=COLORS[s], alpha=0.12)
            gap = abs(rec.target - rec.best)
            if gap > 0:
                ax.axhline(gap, color="grey", ls=":", lw=1, label="target")
            ax.set_yscale("log")
            ax.set_xlabel("time / time(R)")
            ax.set_ylabel(f"regret ({rec.metric})")
            ax.set_title(f"{name}, {w} workers (median, 25-75%)")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=90)
        plt.close(fig)


def _read_runs(path: Path) -> dict[str, Any]:
    """A results.json.gz, or the runs.partial.jsonl of an interrupted run."""
    if path.suffix == ".jsonl":
        runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return {"systems": sorted({r["system"] for r in runs}), "runs": runs}
    doc: dict[str, Any] = json.loads(gzip.decompress(path.read_bytes()))
    return doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recordings", default=",".join(RECORDINGS))
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--workers", default="8,64")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument(
        "--cap",
        action="append",
        default=[],
        metavar="SYSTEM:W:SEEDS[:RECORDING]",
        help="run SYSTEM at W workers (on RECORDING, or all) with fewer seeds, 0 for none",
    )
    ap.add_argument("--quantile", type=float, default=0.01)
    ap.add_argument("--jobs", type=int, default=2, help="processes")
    ap.add_argument("--out", default=str(HERE), help="folder for results.json.gz, results.md")
    ap.add_argument("--from-results", action="store_true")
    ap.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="RESULTS",
        help="combine these results.json.gz files (runs of other recordings) into --out",
    )
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args()
    names = args.recordings.split(",")
    for n in names:
        if n not in RECORDINGS:
            ap.error(f"--recordings: unknown recording {n!r} (expected {', '.join(RECORDINGS)})")
    workers = [int(w) for w in args.workers.split(",")]
    for w in workers:
        LIMIT.setdefault(w, LIMIT[8] if w < 64 else LIMIT[64])
    out = Path(args.out)
    recs = load_all(names, args.quantile)
    results = out / "results.json.gz"
    if args.merge:
        docs = [_read_runs(Path(p)) for p in args.merge]
        # a later file's run replaces an earlier one of the same cell and seed (a rerun)
        keyed = {
            (r["data"], r["system"], r["workers"], r["seed"]): r for d in docs for r in d["runs"]
        }
        runs = sorted(
            keyed.values(), key=lambda r: (r["data"], r["system"], r["workers"], r["seed"])
        )
        systems = [s for s in SYSTEMS if any(s in d["systems"] for d in docs)]
        doc = {**docs[0], "systems": systems, "runs": runs}
        out.mkdir(parents=True, exist_ok=True)
        results.write_bytes(gzip.compress(json.dumps(doc, separators=(",", ":")).encode()))
    elif args.from_results:
        doc = json.loads(gzip.decompress(results.read_bytes()))
        runs, systems = doc["runs"], doc["systems"]
    else:
        systems = []
        for s in args.systems.split(","):
            if s not in SYSTEMS:
                ap.error(f"--systems: unknown system {s!r} (expected {', '.join(SYSTEMS)})")
            why = available(s)
            if why:
                print(f"skipping {s}: {why}", file=sys.stderr)
            else:
                systems.append(s)
        caps: dict[tuple[str, int, str], int] = {}
        for c in args.cap:
            system, w, k, *rest = c.split(":")
            for n in rest or names:
                caps[(system, int(w), n)] = int(k)
        tasks: list[Task] = [
            (n, s, w, seed, LIMIT[w])
            for w in workers
            for n in names
            for s in systems
            for seed in range(min(args.seeds, caps.get((s, w, n), args.seeds)))
        ]
        started = time.monotonic()
        runs = []
        out.mkdir(parents=True, exist_ok=True)
        partial = (out / "runs.partial.jsonl").open("w")  # every run as it ends
        with ProcessPoolExecutor(
            args.jobs, initializer=_init, initargs=(names, args.quantile)
        ) as ex:
            futures = [ex.submit(one_run, t) for t in tasks]
            for i, fut in enumerate(as_completed(futures)):
                r = fut.result()
                runs.append(r)
                partial.write(json.dumps(r) + "\n")
                partial.flush()
                if (i + 1) % 20 == 0 or i + 1 == len(tasks):
                    print(
                        f"{i + 1}/{len(tasks)} runs, {time.monotonic() - started:.0f} s",
                        file=sys.stderr,
                    )
        partial.close()
        runs.sort(key=lambda r: (r["data"], r["system"], r["workers"], r["seed"]))
        doc = {
            "quantile": args.quantile,
            "limit": {str(w): LIMIT[w] for w in workers},
            "caps": args.cap,
            "systems": systems,
            "runs": runs,
        }
        out.mkdir(parents=True, exist_ok=True)
        results.write_bytes(gzip.compress(json.dumps(doc, separators=(",", ":")).encode()))
    head = ["| recording | configs | R | time(R) s | metric | best | target |", "|---" * 7 + "|"]
    for n, rec in recs.items():
        head.append(
            f"| {n} | {len(rec.rows)} | {rec.max_resource:g} | {rec.time_r:.3g} | "
            f"{rec.metric} ({rec.mode}) | {rec.best:.4g} | {rec.target:.4g} |"
        )
    cpu = group(runs, "system", "workers")
    cost = [
        "| system | " + " | ".join(f"CPU s per study, W={w} (median)" for w in workers) + " |",
        "|---" * (len(workers) + 1) + "|",
    ]
    for s in systems:
        cells = [
            f"{median([r['cpu_s'] for r in cpu[(s, w)]]):.2f}" if (s, w) in cpu else "n/a"
            for w in workers
        ]
        cost.append(f"| {LABELS[s]} | " + " | ".join(cells) + " |")
    text = (
        "# bench/search results\n\n"
        + "\n".join(head)
        + "\n\n"
        + f"Budget: {', '.join(f'{LIMIT[w]:g} time(R) at W={w}' for w in workers)}.\n\n"
        + tables(recs, runs, workers, systems)
        + "\n"
        + goal(recs, runs, systems)
        + "\n"
        + ramp_up(recs, runs, systems)
        + "\n"
        + "\n".join(cost)
        + "\n"
    )
    (out / "results.md").write_text(text)
    print(text)
    if not args.no_plots:
        plots(recs, runs, workers, systems, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
