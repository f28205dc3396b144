"""Search efficiency on recorded learning curves: ASHA against its relatives, 1 to 256 workers.

The paper's claims (Li et al., MLSys 2020, section 4) are about how fast each scheduler finds a
good configuration as workers are added, with and without stragglers. This script replays the
curves recorded by ``ash record`` (``curves/*.json.gz``) in the simulator (``simulate``, in
process, on a virtual clock) for six schedulers, four worker counts, two straggler settings and
``--seeds`` seeds, and writes:

- ``results.json.gz``: per run, the time-to-target and the incumbent over virtual time;
- ``results.md``: the tables (time-to-target, speedup, regret at the time limit);
- ``plots/regret-<data>-<stragglers>.png`` and ``plots/speedup.png``.

Definitions (also in docs/efficiency.md):

- time(R): the mean over the recorded configurations of ``seconds_per_unit * R``, the expected
  time to train one random configuration to R on one worker. All times are in units of time(R).
- incumbent: the best value of the metric among results AT R so far (a model trained on the full
  budget, the one you would deploy); lower rungs never count. Regret = incumbent - the best final
  value among all recorded configurations.
- target: the ``--quantile`` quantile of the final values of all recorded configurations (0.01:
  reach a value as good as the top 1% of the recorded configurations).
- budget of a run: ``time_limit_s`` = LIMIT[W] * time(R) virtual seconds (no job is handed out
  after it; jobs in flight still finish), no max_trials. A run that does not reach the target in
  its budget is censored: medians over seeds count it as infinitely late.
- seeds: run i uses seed i for both the core's sampler (the spec seed) and job durations.

    python bench/efficiency/run.py                      # everything (a few minutes on 2 cores)
    python bench/efficiency/run.py --seeds 2 --datasets iris --workers 1,8   # a quick look
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import statistics
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ash.scheduler.benchmarks import Benchmark, Recorded
from ash.scheduler.core import Job
from ash.scheduler.core.ladder import max_rungs
from ash.scheduler.core.space import Config
from ash.scheduler.simulator import simulate
from ash.spec import StudySpec, parse_spec

HERE = Path(__file__).resolve().parent
ETA = 3
# the budget of a run, in units of time(R), by number of workers
LIMIT = {1: 200.0, 8: 40.0, 64: 12.0, 256: 8.0}
STRAGGLERS = {"none": (0.0, 1.5), "stragglers": (0.1, 1.5)}
COSTS = ("measured", "uniform")
# label -> (algorithm, all brackets?)
SCHEDULERS: dict[str, tuple[str, bool]] = {
    "ASHA": ("asha", False),
    "ASHA (stopping)": ("asha-stopping", False),
    "SH (sync)": ("sha", False),
    "Hyperband (sync)": ("hyperband", True),
    "async Hyperband": ("asha", True),
    "random": ("random", False),
}


@dataclass(frozen=True)
class Recording:
    name: str
    path: Path
    metric: str
    mode: str
    max_resource: float
    time_r: float  # seconds: mean time to train one configuration to R
    best: float  # the best final value of all recorded configurations
    target: float
    n_configs: int
    floor: float  # time(R) units: the cheapest configuration reaching the target, trained to R


def load_recording(path: Path, quantile: float) -> Recording:
    doc = json.loads(gzip.decompress(path.read_bytes()))
    big_r = float(doc["resources"][-1])
    finals = [row["values"][-1] for row in doc["trials"]]
    ok = sorted(v for v in finals if v is not None)
    if doc["mode"] == "max":
        ok.reverse()
    k = max(1, math.ceil(quantile * len(ok)))  # the k-th best final value
    time_r = statistics.fmean(row["seconds_per_unit"] for row in doc["trials"]) * big_r
    sign = 1.0 if doc["mode"] == "min" else -1.0
    target = ok[k - 1]
    floor = min(
        row["seconds_per_unit"] * big_r / time_r
        for row, v in zip(doc["trials"], finals, strict=True)
        if v is not None and sign * v <= sign * target
    )
    name = path.name.split(".")[0]
    return Recording(
        name, path, doc["metric"], doc["mode"], big_r, time_r, ok[0], target, len(finals), floor
    )


def make_spec(rec: Recording, label: str, workers: int, seed: int) -> StudySpec:
    algorithm, all_brackets = SCHEDULERS[label]
    top = max_rungs(1, rec.max_resource, ETA)
    asha: dict[str, Any] = {
        "min_resource": 1,
        "max_resource": rec.max_resource,
        "reduction_factor": ETA,
        "time_limit_s": LIMIT[workers] * rec.time_r,
    }
    if all_brackets:
        asha["brackets"] = top + 1
    if algorithm == "sha" or (algorithm == "hyperband" and workers > ETA**top):
        # one synchronous bracket at a time: grow it so that every worker has a job at rung 0
        asha["bracket_trials"] = max(ETA**top, workers)
    return parse_spec(
        {
            "study": {
                "name": f"{rec.name}-{label}",
                "metric": rec.metric,
                "mode": rec.mode,
                "seed": seed,
                "algorithm": algorithm,
            },
            "asha": asha,
            "space": {"unused": 0},  # configurations come from the recording
        },
        source=f"<{rec.name} {label}>",
    )


class UniformCost:
    """A recording replayed with every configuration costing the mean seconds per unit."""

    def __init__(self, inner: Recorded, seconds_per_unit: float) -> None:
        self.inner = inner
        self.metric = inner.metric
        self.mode = inner.mode
        self.seconds_per_unit = seconds_per_unit

    def sampler(self) -> Any:
        return self.inner.sampler()

    def evaluate(self, trial: int, config: Config, resource: float) -> float | None:
        value: float | None = self.inner.evaluate(trial, config, resource)
        return value

    def seconds(self, trial: int, config: Config, start: float, stop: float) -> float:
        return self.seconds_per_unit * (stop - start)


Task = tuple[Recording, str, str, int, str, int]


def one_run(task: Task) -> dict[str, Any]:
    """One simulated study; returns its time-to-target and incumbent curve (time(R) units)."""
    rec, costs, label, workers, strag, seed = task
    spec = make_spec(rec, label, workers, seed)
    recorded = Recorded(rec.path)
    bench: Benchmark = recorded
    if costs == "uniform":
        bench = UniformCost(recorded, rec.time_r / rec.max_resource)
    sign = 1.0 if rec.mode == "min" else -1.0
    best = math.inf  # sign * incumbent
    curve: list[tuple[float, float]] = []  # (time, incumbent) at each improvement
    hit: list[float] = []

    def on_result(now: float, job: Job, value: float | None) -> None:
        nonlocal best
        if value is None or job.stop < rec.max_resource - 1e-9:
            return
        if sign * value < best:
            best = sign * value
            t = now / rec.time_r
            curve.append((round(t, 5), value))
            if not hit and sign * value <= sign * rec.target:
                hit.append(t)

    p, alpha = STRAGGLERS[strag]
    stats = simulate(
        spec,
        bench,
        workers,
        seed=seed,
        stragglers=p,
        straggler_alpha=alpha,
        on_result=on_result,
    )
    limit = LIMIT[workers]
    ttt = hit[0] if hit and hit[0] <= limit else None
    return {
        "data": rec.name,
        "costs": costs,
        "scheduler": label,
        "workers": workers,
        "stragglers": strag,
        "seed": seed,
        "ttt": ttt,
        "curve": curve,
        "results": stats.results,
        "trials": stats.trials,
        "busy": round(stats.busy_fraction, 4),
    }


# -- aggregation ------------------------------------------------------------------------------


Runs = list[dict[str, Any]]


def median_ttt(runs: Runs) -> float:
    """Median time-to-target over seeds; a censored run counts as infinitely late."""
    if not runs:
        return math.inf
    return statistics.median(math.inf if r["ttt"] is None else r["ttt"] for r in runs)


def incumbent_at(curve: list[list[float]], t: float, sign: float) -> float:
    """The incumbent at time t, as sign * value (inf before the first result at R)."""
    best = math.inf
    for when, value in curve:
        if when > t:
            break
        best = sign * value
    return best


def group(runs: Iterable[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], Runs]:
    out: dict[tuple[Any, ...], Runs] = {}
    for r in runs:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def fmt_ttt(runs: Runs, limit: float) -> str:
    if not runs:
        return "-"
    m = median_ttt(runs)
    reached = sum(r["ttt"] is not None for r in runs)
    text = f"> {limit:g}" if math.isinf(m) else f"{m:.2f}"
    return f"{text} ({reached}/{len(runs)})"


def _ratio(a: float, b: float) -> str:
    return "-" if math.isinf(a) or math.isinf(b) or b == 0 else f"{a / b:.1f}x"


def tables(recs: dict[str, Recording], runs: Runs, workers: list[int], costs: list[str]) -> str:
    by = group(runs, "data", "costs", "stragglers", "scheduler", "workers")
    pairs = [
        (a, b) for a, b in ((1, 8), (8, 64), (64, 256), (1, 64)) if a in workers and b in workers
    ]
    lines: list[str] = []
    for name, rec in recs.items():
        lines.append(
            f"### {name}\n\n{rec.n_configs} recorded configurations trained to R = "
            f"{rec.max_resource:g}; time(R) = {rec.time_r:.4g} s; best final {rec.metric} "
            f"{rec.best:.4g}; target {rec.target:.4g}; the cheapest configuration that reaches "
            f"the target trains to R in {rec.floor:.2f} time(R) (measured costs).\n"
        )
        for cost in costs:
            for strag in STRAGGLERS:
                lines.append(
                    f"Median time-to-target in time(R) (seeds that reach it), {cost} costs, "
                    f"{'no stragglers' if strag == 'none' else 'stragglers'}; speedup = ratio of "
                    "the medians:\n"
                )
                lines.append(
                    "| scheduler | "
                    + " | ".join(f"W={w}" for w in workers)
                    + "".join(f" | {a}→{b}" for a, b in pairs)
                    + " |"
                )
                lines.append("|---" * (len(workers) + len(pairs) + 1) + "|")
                for label in SCHEDULERS:
                    rs = {w: by.get((name, cost, strag, label, w), []) for w in workers}
                    med = {w: median_ttt(rs[w]) for w in workers}
                    cells = [fmt_ttt(rs[w], LIMIT[w]) for w in workers]
                    cells += [_ratio(med[a], med[b]) for a, b in pairs]
                    lines.append(f"| {label} | " + " | ".join(cells) + " |")
                lines.append("")
        sign = 1.0 if rec.mode == "min" else -1.0
        for cost in costs:
            lines.append(
                f"Median regret ({rec.metric} above the best recorded) of the incumbent at the "
                f"time limit, {cost} costs ('-': no result at R yet):\n"
            )
            cols = [(w, st) for w in workers for st in STRAGGLERS]
            lines.append(
                "| scheduler | "
                + " | ".join(f"W={w}{'' if st == 'none' else ' strag.'}" for w, st in cols)
                + " |"
            )
            lines.append("|---" * (len(cols) + 1) + "|")
            for label in SCHEDULERS:
                cells = []
                for w, st in cols:
                    group_runs = by.get((name, cost, st, label, w), [])
                    vals = [incumbent_at(r["curve"], LIMIT[w], sign) for r in group_runs]
                    m = statistics.median(vals) if vals else math.inf
                    cells.append("-" if math.isinf(m) else f"{abs(m - sign * rec.best):.4f}")
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def claims(recs: dict[str, Recording], runs: Runs, workers: list[int], costs: list[str]) -> str:
    """The three claims of issue 8, per recording and cost model."""
    by = group(runs, "data", "costs", "stragglers", "scheduler", "workers")
    lines = [
        "| recording | costs | ASHA at W=64: median time-to-target (≤ 2 time(R)?) "
        "| ASHA speedup 8→64 (≥ 6x?) | with stragglers, SH / ASHA median time-to-target, "
        + ", ".join(f"W={w}" for w in workers)
        + " | with stragglers, sync / async Hyperband, "
        + ", ".join(f"W={w}" for w in workers)
        + " |",
        "|---|---|---|---|---|---|",
    ]
    for name in recs:
        for cost in costs:
            a64 = median_ttt(by.get((name, cost, "none", "ASHA", 64), []))
            a8 = median_ttt(by.get((name, cost, "none", "ASHA", 8), []))
            c1 = "-" if math.isinf(a64) else f"{a64:.2f} ({'yes' if a64 <= 2 else 'no'})"
            sp = "-" if math.isinf(a8) or math.isinf(a64) else f"{a8 / a64:.1f}x"
            sp += "" if sp == "-" else (" (yes)" if a8 / a64 >= 6 else " (no)")
            cells = []
            for sync, asyn in (("SH (sync)", "ASHA"), ("Hyperband (sync)", "async Hyperband")):
                ratios = []
                for w in workers:
                    a = median_ttt(by.get((name, cost, "stragglers", sync, w), []))
                    b = median_ttt(by.get((name, cost, "stragglers", asyn, w), []))
                    if math.isinf(b):
                        ratios.append("async censored" if not math.isinf(a) else "both censored")
                    elif math.isinf(a):
                        ratios.append("sync censored")
                    else:
                        ratios.append(f"{a / b:.1f}x")
                cells.append(", ".join(ratios))
            lines.append(f"| {name} | {cost} | {c1} | {sp} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary(recs: dict[str, Recording], runs: Runs, workers: list[int], cost: str) -> str:
    """Median time-to-target without / with stragglers, every recording and scheduler."""
    by = group(runs, "data", "costs", "stragglers", "scheduler", "workers")
    lines = [
        f"Median time-to-target in time(R), {cost} costs, without / with stragglers "
        "('-': not reached in half of the seeds or more):\n",
        "| recording | scheduler | " + " | ".join(f"W={w}" for w in workers) + " |",
        "|---|---" + "|---" * len(workers) + "|",
    ]

    def cell(rs: Runs) -> str:
        m = median_ttt(rs)
        return "-" if math.isinf(m) else f"{m:.2f}"

    for name in recs:
        for label in SCHEDULERS:
            cells = [
                " / ".join(cell(by.get((name, cost, st, label, w), [])) for st in STRAGGLERS)
                for w in workers
            ]
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def diagnostics(recs: dict[str, Recording]) -> str:
    """Per recording and rung resource: how the configurations that reach the target rank."""
    lines = [
        "Rank of each configuration that reaches the target among all recorded configurations "
        "at each rung's resource, against the bar of bracket 0 (ASHA, ASHA stopping, SH): a "
        "rung holds the trials promoted from below and promotes its top 1/eta, so if ranks were "
        "stable a configuration must rank in about the top eta^-(k+1) of all at rung k to go "
        "up; the last column is the Spearman correlation of each resource's values with the "
        "final ones:\n",
        "| recording | resource | bar ≈ top | ranks of the target configurations | Spearman |",
        "|---|---|---|---|---|",
    ]
    for name, rec in recs.items():
        doc = json.loads(gzip.decompress(rec.path.read_bytes()))
        rows = doc["trials"]
        sign = 1.0 if rec.mode == "min" else -1.0
        n = len(rows)
        targets = [
            i
            for i, row in enumerate(rows)
            if row["values"][-1] is not None and sign * row["values"][-1] <= sign * rec.target
        ]
        r, bar = 1, 1 / ETA
        while r <= rec.max_resource:
            k = doc["resources"].index(r)
            key = [
                math.inf if row["values"][k] is None else sign * row["values"][k] for row in rows
            ]
            order = sorted(range(n), key=lambda i: key[i])
            rank = {i: pos for pos, i in enumerate(order)}
            ranks = ", ".join(f"{(rank[i] + 1) / n:.1%}" for i in targets)
            cut = "-" if r >= rec.max_resource else f"{bar:.1%}"
            lines.append(f"| {name} | {r:g} | {cut} | {ranks} | {_spearman(rows, k, sign):.2f} |")
            r, bar = r * ETA, bar / ETA
    return "\n".join(lines) + "\n"


def _spearman(rows: list[dict[str, Any]], k: int, sign: float) -> float:
    pairs = [
        (sign * row["values"][k], sign * row["values"][-1])
        for row in rows
        if row["values"][k] is not None and row["values"][-1] is not None
    ]

    def ranks(xs: list[float]) -> list[float]:
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        out = [0.0] * len(xs)
        for pos, i in enumerate(order):
            out[i] = float(pos)
        return out

    a = ranks([p[0] for p in pairs])
    b = ranks([p[1] for p in pairs])
    return statistics.correlation(a, b)


# -- plots ------------------------------------------------------------------------------------


def plots(
    recs: dict[str, Recording],
    runs: Runs,
    workers: list[int],
    costs: list[str],
    quantile: float,
    out: Path,
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    by = group(runs, "data", "costs", "stragglers", "scheduler", "workers")
    palette = plt.get_cmap("tab10").colors  # type: ignore[attr-defined]
    colors = dict(zip(SCHEDULERS, palette, strict=False))
    for name, rec in recs.items():
        sign = 1.0 if rec.mode == "min" else -1.0
        for cost in costs:
            fig, axes = plt.subplots(
                len(STRAGGLERS),
                len(workers),
                figsize=(3.6 * len(workers), 3.0 * len(STRAGGLERS)),
                sharey=True,
                squeeze=False,
            )
            for row, strag in enumerate(STRAGGLERS):
                for col, w in enumerate(workers):
                    ax = axes[row][col]
                    grid = [LIMIT[w] * 400 ** (i / 200 - 1) for i in range(201)]
                    for label in SCHEDULERS:
                        rs = by.get((name, cost, strag, label, w), [])
                        xs, ys = [], []
                        for t in grid:
                            v = statistics.median(incumbent_at(r["curve"], t, sign) for r in rs)
                            if math.isfinite(v):
                                xs.append(t)
                                ys.append(max(abs(v - sign * rec.best), 1e-4))
                        ax.plot(xs, ys, label=label, color=colors[label], lw=1.2)
                    ax.axhline(max(abs(rec.target - rec.best), 1e-4), color="grey", ls=":", lw=1)
                    ax.set_yscale("log")
                    ax.set_xscale("log")
                    ax.set_xlim(LIMIT[w] / 400, LIMIT[w])
                    ax.xaxis.set_minor_formatter(NullFormatter())
                    ax.set_title(
                        f"{w} worker{'s' if w > 1 else ''}"
                        + ("" if strag == "none" else ", stragglers"),
                        fontsize=9,
                    )
                    if row == len(STRAGGLERS) - 1:
                        ax.set_xlabel("time / time(R)")
                axes[row][0].set_ylabel(f"median regret ({rec.metric})")
            axes[0][-1].legend(fontsize=7)
            fig.suptitle(
                f"{name}, {cost} costs: regret of the incumbent at R (median of seeds; "
                f"dotted: target = top {quantile:.0%} of recorded configs; floor 1e-4)",
                fontsize=10,
            )
            fig.tight_layout()
            path = out / f"regret-{name}-{cost}.png"
            fig.savefig(path, dpi=80)
            plt.close(fig)
            written.append(path)
    fig, axes = plt.subplots(
        len(costs), len(recs), figsize=(4.2 * len(recs), 3.6 * len(costs)), squeeze=False
    )
    for row, cost in enumerate(costs):
        for col, name in enumerate(recs):
            ax = axes[row][col]
            for label in SCHEDULERS:
                for strag, ls in zip(STRAGGLERS, ("-", "--"), strict=True):
                    med = {
                        w: median_ttt(by.get((name, cost, strag, label, w), [])) for w in workers
                    }
                    if math.isinf(med.get(1, math.inf)):
                        continue
                    pts = [(w, med[1] / med[w]) for w in workers if math.isfinite(med[w])]
                    ax.plot(
                        [p[0] for p in pts],
                        [p[1] for p in pts],
                        ls=ls,
                        marker="o",
                        ms=3,
                        color=colors[label],
                        label=label if strag == "none" else None,
                    )
            ax.plot(workers, workers, color="grey", lw=1, ls=":", label="linear")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log", base=2)
            ax.set_title(f"{name}, {cost} costs", fontsize=9)
            if row == len(costs) - 1:
                ax.set_xlabel("workers")
        axes[row][0].set_ylabel("speedup vs 1 worker")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(
        "Speedup of the median time-to-target (solid: no stragglers, dashed: stragglers)",
        fontsize=10,
    )
    fig.tight_layout()
    path = out / "speedup.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--datasets", default="iris,digits,synth", help="recordings in curves/")
    ap.add_argument("--workers", default="1,8,64,256")
    ap.add_argument("--costs", default=",".join(COSTS), help="measured, uniform or both")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--quantile", type=float, default=0.01, help="target: the top fraction")
    ap.add_argument("--jobs", type=int, default=2, help="simulations run in parallel")
    ap.add_argument("--out", default=str(HERE), help="folder for results.json.gz/.md and plots/")
    ap.add_argument(
        "--from-results", action="store_true", help="only redo tables and plots from results"
    )
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    costs = args.costs.split(",")
    for w in workers:
        LIMIT.setdefault(w, max(8.0, 200.0 / w))
    recs = {
        name: load_recording(HERE / "curves" / f"{name}.json.gz", args.quantile)
        for name in args.datasets.split(",")
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.from_results:
        doc = json.loads(gzip.decompress((out / "results.json.gz").read_bytes()))
        runs: Runs = doc["runs"]
        wall = float(doc["meta"]["seconds"])
    else:
        runs, wall = simulate_all(recs, costs, workers, args.seeds, args.jobs)
        meta = {
            "quantile": args.quantile,
            "limits_time_r": {str(w): LIMIT[w] for w in workers},
            "stragglers": STRAGGLERS,
            "eta": ETA,
            "seeds": args.seeds,
            "seconds": round(wall, 1),
            "recordings": {
                n: {k: str(v) if isinstance(v, Path) else v for k, v in vars(r).items()}
                for n, r in recs.items()
            },
        }
        raw = json.dumps({"meta": meta, "runs": runs}, separators=(",", ":")) + "\n"
        (out / "results.json.gz").write_bytes(gzip.compress(raw.encode(), mtime=0))
    text = (
        f"<!-- written by bench/efficiency/run.py: {len(runs)} simulations, {wall:.0f} s -->\n\n"
        "## Claims\n\n"
        + claims(recs, runs, workers, costs)
        + "\n## Summary\n\n"
        + "\n".join(summary(recs, runs, workers, cost) for cost in costs)
        + "\n## Recordings: how early ranks predict the final one\n\n"
        + diagnostics(recs)
        + "\n## Tables\n\n"
        + tables(recs, runs, workers, costs)
    )
    (out / "results.md").write_text(text + "\n")
    for p in plots(recs, runs, workers, costs, args.quantile, out / "plots"):
        print(f"wrote {p}")
    print(text)
    print(f"{len(runs)} simulations in {wall:.0f} s")


def simulate_all(
    recs: dict[str, Recording], costs: list[str], workers: list[int], seeds: int, jobs: int
) -> tuple[Runs, float]:
    tasks: list[Task] = [
        (rec, cost, label, w, strag, seed)
        for rec in recs.values()
        for cost in costs
        for strag in STRAGGLERS
        for w in workers
        for label in SCHEDULERS
        for seed in range(seeds)
    ]
    started = time.perf_counter()
    runs: Runs = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for i, r in enumerate(pool.map(one_run, tasks, chunksize=4), 1):
            runs.append(r)
            if i % 100 == 0 or i == len(tasks):
                print(f"{i}/{len(tasks)} runs, {time.perf_counter() - started:.0f} s", flush=True)
    return runs, time.perf_counter() - started


if __name__ == "__main__":
    main()
