"""bench/threads: ``ash tune --threads auto`` against the fixed splits, in one run.

Each workload is a study run by ``ash tune`` (the embedded pool, in a fresh process) three ways
on this machine's cores: ``auto`` (the planner of ash.worker.planner: it calibrates the kernel
per model shape and plans every job's threads), ``2x1`` (``--workers 2 --threads 1``) and
``1x2`` (``--workers 1 --threads 2``). The job lists are fixed: ``random`` search (every trial
trains straight to R) and synchronous SH (its promotions are a function of the results, which
the kernel computes bit-identically at 1 and 2 threads), so every split runs the same jobs.

The time of a run is the trace's last event: seconds from the study's start (the driver is
made) to its last result, so it includes starting the slot processes and, for ``auto``, the
calibration. Splits are interleaved within each repetition (rotated order).

The machine is shared: other processes come and go, and a busy second core wrecks every
multi-threaded number. Each run measures the CPU time that *other* processes used during it
(the machine's busy time from /proc/stat minus this run's own processes' CPU time, from
rusage) as a share of the run's cores x seconds. A run where it exceeds ``--max-foreign`` is
retried (up to ``--tries`` attempts, each after waiting up to ``--wait-quiet`` seconds for idle
CPUs); medians are over the clean runs only, and the table says how many there were.

Usage: python bench/threads/run.py [--reps 5] [--wait-quiet 60] [--max-foreign 0.1]
                                   [--tries 4] [--only iris,100k,100k-long,mixed]
                                   [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ASH = str(Path(sys.executable).parent / "ash")

SPLITS: dict[str, list[str]] = {
    "auto": ["--threads", "auto"],
    "2x1": ["--workers", "2", "--threads", "1"],
    "1x2": ["--workers", "1", "--threads", "2"],
}

HEAD = """
[study]
name = "{name}"
metric = "val_loss"
seed = 0
algorithm = "{algorithm}"
[trainer]
type = "mlp"
dataset = "{dataset}"
validation_fraction = 0.3
"""

WORKLOADS: dict[str, tuple[str, str]] = {
    # name: (what, spec body)
    "iris": (
        "Iris (105 train rows), hidden 64, full batch, 27 epochs a job; random search, 6000 jobs",
        """
[asha]
min_resource = 27
max_resource = 27
max_trials = 6000
[space]
lr = { log_uniform = [0.001, 0.5] }
hidden = 64
batch_size = 150
""",
    ),
    "100k": (
        "100k x 64 (70k train rows), hidden 256, batch 256, 3 epochs a job; random search, 48 jobs",
        """
[asha]
min_resource = 3
max_resource = 3
max_trials = 48
[space]
lr = { log_uniform = [0.001, 0.1] }
momentum = 0.9
hidden = 256
batch_size = 256
""",
    ),
    "mixed": (
        "100k x 64, hidden 16 or 256, batch 256; synchronous SH, 3 brackets one after the "
        "other, each 27 trials at 1 epoch, 9 -> 3, 3 -> 9, 1 -> 27 (120 jobs)",
        """
[asha]
min_resource = 1
max_resource = 27
reduction_factor = 3
bracket_trials = 27
max_trials = 81
[space]
lr = { log_uniform = [0.001, 0.1] }
momentum = 0.9
hidden = { choice = [16, 256] }
batch_size = 256
""",
    ),
}

WORKLOADS["100k-long"] = (
    "the 100k study 4x longer: 192 jobs",
    WORKLOADS["100k"][1].replace("max_trials = 48\n", "max_trials = 192\n"),
)


def cpu_snap() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def busy_fraction(interval: float = 0.5) -> float:
    """Share of all CPUs busy (any process) over ``interval``."""
    b0, t0 = cpu_snap()
    time.sleep(interval)
    b1, t1 = cpu_snap()
    return (b1 - b0) / max(1, t1 - t0)


def wait_quiet(limit_s: float) -> float:
    """Wait (at most ``limit_s``) until other work leaves the CPUs mostly idle; the last busy
    share seen."""
    deadline = time.monotonic() + limit_s
    busy = busy_fraction(0.3)
    while time.monotonic() < deadline and busy > 0.10:
        busy = busy_fraction(0.5)
    return busy


def children_cpu() -> float:
    """CPU seconds of this process's waited-for children (and theirs)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def make_100k(path: Path) -> None:
    from sklearn.datasets import make_classification

    X, y = make_classification(
        100000,
        64,
        n_informative=32,
        n_redundant=16,
        n_classes=10,
        n_clusters_per_class=1,
        random_state=0,
    )
    np.savez(path, X=X.astype(np.float32), y=y.astype(np.int64))


def run_one(spec: Path, split: str, work: Path) -> dict[str, Any]:
    trace = work / f"trace-{spec.stem}-{split}-{time.monotonic_ns()}.jsonl"
    hz = os.sysconf("SC_CLK_TCK")
    b0, j0 = cpu_snap()
    own0 = children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [ASH, "tune", str(spec), *SPLITS[split], "--trace", str(trace)],
        capture_output=True,
        text=True,
        cwd=work,
        check=False,
        timeout=1800,
    )
    process_s = time.perf_counter() - t0
    b1, j1 = cpu_snap()
    own = children_cpu() - own0
    foreign = max(0.0, ((b1 - b0) / hz - own) / max((j1 - j0) / hz, 1e-9))
    if proc.returncode != 0:
        raise RuntimeError(f"{spec.name} {split}: exit {proc.returncode}\n{proc.stderr}")
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    trace.unlink()
    threads: dict[int, int] = {}
    for e in events:
        if e["event"] == "assign":
            threads[e["threads"]] = threads.get(e["threads"], 0) + 1
    calib = sum(float(x) for x in re.findall(r"calibrated in ([0-9.]+) s", proc.stderr))
    return {
        "seconds": max(e["t"] for e in events),
        "process_seconds": round(process_s, 3),
        "jobs": sum(1 for e in events if e["event"] == "result"),
        "threads": threads,
        "calibration_seconds": calib,
        "plans": re.findall(r"threads auto: (.*)", proc.stderr),
        "foreign": round(foreign, 3),
        "own_cpu_seconds": round(own, 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--wait-quiet", type=float, default=60.0, help="seconds to wait for idle CPUs")
    ap.add_argument("--max-foreign", type=float, default=0.10, help="other processes' CPU share")
    ap.add_argument("--tries", type=int, default=4, help="attempts per run to get a clean one")
    ap.add_argument("--only", default=",".join(WORKLOADS))
    ap.add_argument("--json", help="write every run here")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n]
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()}", flush=True)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {n: {s: [] for s in SPLITS} for n in names}
    with tempfile.TemporaryDirectory(prefix="ash-bench-threads-") as tmp:
        work = Path(tmp)
        make_100k(work / "big.npz")
        specs = {}
        for name in names:
            algorithm = "sha" if name == "mixed" else "random"
            dataset = "iris" if name == "iris" else "big.npz"
            specs[name] = work / f"{name}.toml"
            specs[name].write_text(
                HEAD.format(name=name, algorithm=algorithm, dataset=dataset) + WORKLOADS[name][1]
            )
        for rep in range(args.reps):
            for name in names:
                order = list(SPLITS)
                order = order[rep % 3 :] + order[: rep % 3]
                for split in order:
                    for attempt in range(max(1, args.tries)):
                        busy = wait_quiet(args.wait_quiet)
                        got = run_one(specs[name], split, work)
                        got["busy_before"] = round(busy, 3)
                        got["clean"] = got["foreign"] <= args.max_foreign
                        runs[name][split].append(got)
                        retry = not got["clean"] and attempt + 1 < args.tries
                        print(
                            f"rep {rep} {name:6s} {split:5s} {got['seconds']:7.3f} s "
                            f"({got['jobs']} jobs, threads {got['threads']}, "
                            f"calibration {got['calibration_seconds']:.2f} s, "
                            f"others used {got['foreign']:.0%} of the CPUs"
                            f"{', retrying' if retry else ''})",
                            flush=True,
                        )
                        if got["clean"]:
                            break
    report(names, runs)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    return 0


def report(names: list[str], runs: dict[str, dict[str, list[dict[str, Any]]]]) -> None:
    print()
    print(
        "| workload | auto (s) | 2 slots x 1 thread (s) | 1 slot x 2 threads (s) | "
        "auto / best fixed | auto's jobs by threads | auto's calibration (s) | clean runs |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        clean = {s: [r for r in runs[name][s] if r["clean"]] or runs[name][s] for s in SPLITS}
        med = {s: statistics.median(r["seconds"] for r in clean[s]) for s in SPLITS}
        n_clean = " / ".join(str(sum(r["clean"] for r in runs[name][s])) for s in SPLITS)
        by_threads: dict[int, int] = {}
        for r in clean["auto"]:
            for t, n in r["threads"].items():
                by_threads[t] = by_threads.get(t, 0) + n
        share = ", ".join(
            f"{t}: {n / len(clean['auto']):.0f}" for t, n in sorted(by_threads.items())
        )
        calib = statistics.median(r["calibration_seconds"] for r in clean["auto"])
        best = min(med["2x1"], med["1x2"])
        print(
            f"| {name} | {med['auto']:.2f} | {med['2x1']:.2f} | {med['1x2']:.2f} | "
            f"{med['auto'] / best:.3f} | {share} | {calib:.2f} | {n_clean} |"
        )
    for name in names:
        print(f"\n{name}: {WORKLOADS[name][0]}")
        for r in clean_or_all(runs[name]["auto"]):
            for p in r["plans"]:
                print(f"  auto planned: {p}")


def clean_or_all(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last clean run (or the last run) as a one-item list."""
    clean = [r for r in runs if r["clean"]]
    return (clean or runs)[-1:]


if __name__ == "__main__":
    sys.exit(main())
