"""Real, not simulated: ASHA (``ash tune``) against random search and Optuna at equal wall time.

On the bundled digits data, with 2 worker processes (one kernel thread each) on this machine,
each method tunes the same native MLP over the same space (``specs/digits.toml``: 9
hyperparameters, R = 81 epochs) to maximise validation accuracy, for ``--seconds`` of wall time:

- ``ash-asha``: ``ash tune`` (the CLI, a subprocess), algorithm ``asha`` (the promotion variant,
  eta = 3, rungs 1, 3, 9, 27, 81 epochs), ``time_limit_s`` = the budget;
- ``ash-random``: the same with ``algorithm = "random"`` (every trial trains to 81 epochs);
- ``optuna``: Optuna's TPE sampler with its SuccessiveHalvingPruner (min_resource 1,
  reduction_factor 3), ``study.optimize(n_jobs=2, timeout=budget)``; each trial trains the same
  native kernel epoch by epoch through the ``MlpTrainer`` contract, reporting val_accuracy after
  every epoch (``trial.report`` / ``trial.should_prune``). Threads, since the kernel releases
  the GIL; each limits its kernel to one thread with threadpoolctl.

All three stop handing out work at the budget and let work in flight finish (ash: at most one
rung; Optuna: a trial runs to its end or its pruning); each run reports when its last result came
in (from the study's start) and its wall time (ash's includes starting its worker processes and
writing the report).
The score is the best validation accuracy among models trained to R = 81 epochs (Optuna: its
best complete trial). Seed s selects the validation split (the trainer's seed), the
configurations and, for Optuna, TPE's seed. ``OMP_NUM_THREADS=1`` is set for every process
(see docs/efficiency.md: without it an idle OpenMP thread spins beside the kernel).

    python bench/efficiency/real.py --seconds 60 --seeds 5
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SPEC = HERE / "specs" / "digits.toml"
METHODS = ("ash-asha", "ash-random", "optuna")


def write_spec(folder: Path, algorithm: str, seed: int, seconds: float) -> Path:
    """specs/digits.toml, maximising val_accuracy under a wall-time limit."""
    text = SPEC.read_text()
    data = tomllib.loads(text)
    space = "\n".join(line for line in text.split("[space]", 1)[1].splitlines() if line.strip())
    path = folder / f"digits-{algorithm}-{seed}.toml"
    path.write_text(
        f"""[study]
name = "digits-{algorithm}"
metric = "val_accuracy"
mode = "max"
seed = {seed}
algorithm = "{algorithm}"

[asha]
min_resource = 1
max_resource = {data["asha"]["max_resource"]}
reduction_factor = 3
max_trials = 1000000
time_limit_s = {seconds}

[trainer]
type = "mlp"
dataset = "digits"
validation_fraction = {data["trainer"]["validation_fraction"]}

[space]
{space}
"""
    )
    return path


def run_ash(algorithm: str, seed: int, seconds: float, folder: Path) -> dict[str, Any]:
    spec = write_spec(folder, algorithm, seed, seconds)
    out = folder / f"out-{algorithm}-{seed}"
    ash = Path(sys.executable).parent / "ash"
    t0 = time.monotonic()
    trace = folder / f"trace-{algorithm}-{seed}.jsonl"
    cmd = [str(ash), "tune", str(spec), "--workers", "2", "--threads", "1", "--out", str(out)]
    subprocess.run(
        [*cmd, "--trace", str(trace), "--quiet"],
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    wall = time.monotonic() - t0
    doc = json.loads((out / "results.json").read_text())
    best = doc["best"]
    at_r = sum(
        1
        for t in doc["trials"]
        for r in t["results"]
        if r["resource"] == 81 and r["value"] is not None
    )
    events = [json.loads(line) for line in trace.read_text().splitlines() if line.strip()]
    return {
        "best": best["value"] if best and best["resource"] == 81 else None,
        "trials": len(doc["trials"]),
        "trained_to_R": at_r,
        "last_result_s": max((e["t"] for e in events if e["event"] == "result"), default=None),
        "wall": wall,
    }


def run_optuna(seed: int, seconds: float) -> dict[str, Any]:
    """In this process (spawned with OMP_NUM_THREADS=1): TPE + SuccessiveHalvingPruner."""
    import optuna
    from threadpoolctl import threadpool_limits

    from ash.spec import load_spec
    from ash.worker.trainers import MlpTrainer

    spec = load_spec(SPEC)
    assert spec.trainer is not None
    trainer = MlpTrainer(spec.trainer, seed, spec.base_dir)
    trainer.data()
    big_r = int(spec.schedule.max_resource)
    space = spec.raw["space"]

    def objective(trial: optuna.Trial) -> float:
        config: dict[str, Any] = {}
        for name, dom in space.items():
            ((kind, args),) = dom.items()
            if kind == "log_uniform":
                config[name] = trial.suggest_float(name, args[0], args[1], log=True)
            elif kind == "uniform":
                config[name] = trial.suggest_float(name, args[0], args[1])
            elif kind == "choice":
                config[name] = trial.suggest_categorical(name, args)
            else:
                raise ValueError(f"space.{name}: {kind} is not mapped to Optuna")
        state: bytes | None = None
        acc = 0.0
        with threadpool_limits(limits=1):  # in the thread that calls the kernel
            for epoch in range(1, big_r + 1):
                metrics, state = trainer(config, epoch - 1, epoch, state)
                acc = float(metrics["val_accuracy"])
                if metrics["val_loss"] == float("inf"):
                    return 0.0  # diverged: the worst accuracy
                trial.report(acc, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        return acc

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
    )
    t0 = time.monotonic()
    started = datetime.datetime.now()
    study.optimize(objective, timeout=seconds, n_jobs=2)
    wall = time.monotonic() - t0
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    ends = [t.datetime_complete for t in study.trials if t.datetime_complete is not None]
    return {
        "best": study.best_value if complete else None,
        "trials": len(study.trials),
        "trained_to_R": len(complete),
        "last_result_s": (max(ends) - started).total_seconds() if ends else None,
        "wall": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="wall-time budget per run")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--json", default=str(HERE / "real.json"))
    ap.add_argument("--optuna-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.optuna_child is not None:
        print(json.dumps(run_optuna(args.optuna_child, args.seconds)))
        return
    methods = args.methods.split(",")
    rows: list[dict[str, Any]] = []
    child = ["--optuna-child"]
    with tempfile.TemporaryDirectory(prefix="ash-real-") as tmp:
        for seed in range(args.seeds):
            for method in methods:  # interleaved, so that machine load hits all alike
                if method == "optuna":
                    proc = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--seconds",
                            str(args.seconds),
                            *child,
                            str(seed),
                        ],
                        check=True,
                        capture_output=True,
                        text=True,
                        env={**os.environ, "OMP_NUM_THREADS": "1"},
                    )
                    got = json.loads(proc.stdout.strip().splitlines()[-1])
                else:
                    got = run_ash(method.removeprefix("ash-"), seed, args.seconds, Path(tmp))
                row = {"method": method, "seed": seed, **got}
                rows.append(row)
                print(json.dumps(row), flush=True)
    Path(args.json).write_text(json.dumps({"seconds": args.seconds, "runs": rows}) + "\n")
    print(
        "\n| method | best val_accuracy per seed | mean | trials (to R) | last result s | wall s |"
    )
    print("|---|---|---|---|---|---|")
    for method in methods:
        rs = [r for r in rows if r["method"] == method]
        vals = [r["best"] for r in rs if r["best"] is not None]
        last = [r["last_result_s"] for r in rs if r["last_result_s"] is not None]
        print(
            f"| {method} | {', '.join(f'{v:.4f}' for v in vals) or '-'} ({len(vals)}/{len(rs)})"
            f" | {statistics.fmean(vals) if vals else math.nan:.4f}"
            f" | {statistics.fmean(r['trials'] for r in rs):.0f}"
            f" ({statistics.fmean(r['trained_to_R'] for r in rs):.0f})"
            f" | {statistics.fmean(last) if last else math.nan:.1f}"
            f" | {statistics.fmean(r['wall'] for r in rs):.1f} |"
        )


if __name__ == "__main__":
    main()
