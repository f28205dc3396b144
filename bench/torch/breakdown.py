"""bench/torch/breakdown.py: where ash's wall time goes on bench/torch's study, beyond training.

Runs ash's study of run.py (``ash.tune(torch_digits.train, workers=2, threads=1, out=...)``, the
same space, 60 trials, 1..27 epochs, eta 3) in a fresh child process, as run.py does, with
timestamps: the child times its imports, every trainer call (split into its epochs, the model
build and the rest, written per job by the slot processes), ash's shutdown and result-writing
steps, and its last ``atexit``; the parent times the child from spawn to exit. Printed: one
column per run, the phases in seconds (core-seconds where both slots add up).

    flock /tmp/ash-bench.lock python bench/torch/breakdown.py --runs 2 --seed 0 [--threads auto]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent.parent / "examples"


def child(seed: int, folder: Path, threads: str) -> None:
    t0 = time.perf_counter()
    sys.path[:0] = [str(EXAMPLES), str(HERE)]
    import timed  # torch_digits with clocks; the slots import it by name (jobs.jsonl)

    import ash

    t_import = time.perf_counter() - t0
    marks: dict[str, Any] = {"import": t_import, "t0": t0}

    def stamp(owner: Any, name: str) -> None:
        f = getattr(owner, name)

        @functools.wraps(f)
        def wrapper(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                marks[name] = time.perf_counter() - t

        setattr(owner, name, wrapper)

    import ash.report
    import ash.scheduler.outcome
    import ash.summary
    import ash.transports.local

    stamp(ash.transports.local.SlotBackend, "close")
    stamp(ash.scheduler.outcome, "write_outcome")
    stamp(ash.report, "_plots")
    stamp(ash.report, "_html")
    stamp(ash.summary, "print_summary")
    from run import SPACE

    space = {
        k: {"log": {"log_uniform": list(v)}, "uniform": {"uniform": list(v)}}.get(
            kind, {"choice": list(v)}
        )
        for k, (kind, v) in SPACE.items()
    }
    marks["tune_called"] = time.perf_counter() - t0
    ash.tune(
        timed.train,
        space=space,
        metric="val_loss",
        mode="min",
        min_resource=1,
        max_resource=27,
        reduction_factor=3,
        max_trials=60,
        seed=seed,
        workers=2,
        threads="auto" if threads == "auto" else int(threads),
        progress=False,
        out=str(folder / "out"),
    )
    marks["tune_returned"] = time.perf_counter() - t0
    import atexit

    def last() -> None:  # registered last, so it runs first: what follows is Python's teardown
        marks["atexit"] = time.perf_counter() - t0
        (folder / "marks.json").write_text(json.dumps(marks))

    atexit.register(last)


def phases(wall: float, folder: Path) -> dict[str, float]:
    marks = json.loads((folder / "marks.json").read_text())
    lines = [json.loads(line) for line in (folder / "jobs.jsonl").read_text().splitlines()]
    jobs = [
        j | {"t0": j["t0"] - marks["t0"], "t1": j["t1"] - marks["t0"]} for j in lines if "call" in j
    ]
    by_slot: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for j in jobs:
        by_slot[j["pid"]].append(j)
    for js in by_slot.values():
        js.sort(key=lambda j: j["t0"])
    firsts = [js[0] for js in by_slot.values()]
    rest = [j for js in by_slot.values() for j in js[1:]]
    ends = sorted(js[-1]["t1"] for js in by_slot.values())
    gaps = sum(b["t0"] - a["t1"] for js in by_slot.values() for a, b in itertools.pairwise(js))
    return {
        "wall, spawn to exit": wall,
        "jobs": float(len(jobs)),
        "epochs trained": float(sum(j["epochs"] for j in jobs)),
        "python start, import torch_digits (torch) and ash": marks["import"],
        "tune() called -> first job starts (ash's set-up, 2 slots started)": min(
            j["t0"] for j in jobs
        )
        - marks["tune_called"],
        "first job of a slot beyond its epochs (mean of the slots, in parallel)": sum(
            f["call"] - f["epochs_s"] for f in firsts
        )
        / len(firsts),
        "  of which the model build (torch.optim imports torch._dynamo)": sum(
            f["build_s"] for f in firsts
        )
        / len(firsts),
        "epochs, core-s (both slots)": sum(j["epochs_s"] for j in jobs),
        "other jobs beyond their epochs, core-s (build, torch.save/load, reports)": sum(
            j["call"] - j["epochs_s"] for j in rest
        ),
        "between a slot's jobs, core-s (context, checkpoint packing, pipe, driver)": gaps,
        "tail: the last job alone": ends[-1] - ends[0],
        "slots exited (waited for after the results are written)": marks["close"],
        "results written (write_outcome)": marks["write_outcome"],
        "  PNG plots": marks["_plots"],
        "  report.html": marks["_html"],
        "summary printed": marks["print_summary"],
        "Python's start (before the first timestamp) and teardown (after ash.tune)": wall
        - marks["atexit"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", default="1", help="ash's threads: a count per slot, or auto")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.seed, Path(args.child), args.threads)
        return
    columns = []
    for _ in range(args.runs):
        folder = Path(tempfile.mkdtemp(prefix="bench-torch-breakdown-"))
        cmd = [sys.executable, __file__, "--seed", str(args.seed), "--child", str(folder)]
        cmd += ["--threads", args.threads]
        env = {
            **os.environ,
            "BENCH_TORCH_LOG": str(folder / "jobs.jsonl"),
            "PYTHONPATH": os.pathsep.join(
                [str(EXAMPLES), str(HERE), os.environ.get("PYTHONPATH", "")]
            ),
        }
        t = time.perf_counter()
        try:
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
            columns.append(phases(time.perf_counter() - t, folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    print("| phase | " + " | ".join(f"run {i + 1}" for i in range(len(columns))) + " |")
    print("|---|" + "---|" * len(columns))
    for key in columns[0]:
        counts = key in ("jobs", "epochs trained")
        cells = [f"{c[key]:.0f}" if counts else f"{c[key]:.2f}" for c in columns]
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
