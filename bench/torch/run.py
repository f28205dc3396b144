"""bench/torch: the PyTorch digits CNN (examples/torch_digits.py) tuned by ash, by Ray Tune's
ASHAScheduler (reuse_actors=True) and by Optuna's TPE + SuccessiveHalvingPruner, on the same
model, data, search space, budget (N trials, 1..R epochs, eta 3) and 2 workers of 1 thread each.

Each tuner runs in a fresh child process (``--tuner NAME``) in a fresh working directory that
is also its TMPDIR (and Ray's temp dir and storage path), so that everything it leaves behind
is measured. The parent samples the resident memory of the child's whole process tree (Ray's
raylet, GCS and workers; ash's slot processes; Optuna's second process) every 0.1 s from /proc,
times the child from spawn to exit and measures the bytes left in its directory.

Best accuracy: the validation accuracy of each tuner's best trial by validation loss among the
trials trained to the full R epochs (what each would hand back), and the highest validation
accuracy among them.

    flock /tmp/ash-bench.lock python bench/torch/run.py --seeds 0 1 2 \
        --json bench/torch/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent.parent / "examples"
TUNERS = ("ash", "ray", "optuna", "ash-stop", "ash-bohb", "ash-auto")

# the search space, once per tuner's own vocabulary
SPACE: dict[str, tuple[str, Any]] = {
    "lr": ("log", (1e-3, 0.3)),
    "momentum": ("uniform", (0.0, 0.95)),
    "weight_decay": ("log", (1e-6, 1e-2)),
    "dropout": ("uniform", (0.0, 0.5)),
    "channels": ("choice", (8, 16, 32)),
    "hidden": ("choice", (32, 64, 128)),
    "batch_size": ("choice", (32, 64, 128)),
}


# -- the tuners (each runs in its own child process) ----------------------------------------


def run_ash(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """ash's promotion ASHA; ``extra``: ash.tune keywords of a variant (the stopping variant
    on reports, a sampler, threads)."""
    import timed

    import ash

    space = {
        k: {"log": {"log_uniform": list(v)}, "uniform": {"uniform": list(v)}}.get(
            kind, {"choice": list(v)}
        )
        for k, (kind, v) in SPACE.items()
    }
    doc = ash.tune(
        timed.train,
        space=space,
        metric="val_loss",
        mode="min",
        min_resource=1,
        max_resource=args.epochs,
        reduction_factor=3,
        max_trials=args.trials,
        seed=args.seed,
        **{"workers": 2, "threads": 1, "progress": False, "out": "out", **extra},
    )
    full = []
    for t in doc["trials"]:
        for r in t["results"]:
            if r["resource"] >= args.epochs and r["value"] is not None:
                full.append((r["value"], r["metrics"]["val_accuracy"]))
    epochs = sum(len(t["reports"]) for t in doc["trials"])  # one report per epoch trained
    return {"full": full, "trials": len(doc["trials"]), "epochs": epochs}


def run_ash_stop(args: argparse.Namespace) -> dict[str, Any]:
    """ash's stopping variant on ctx.report (stop_on="reports", the default for a (config,
    ctx) trainer): a trial is one job, stopped at a rung milestone like Ray's ASHAScheduler."""
    return run_ash(args, algorithm="asha-stopping")


def run_ash_bohb(args: argparse.Namespace) -> dict[str, Any]:
    """ash's promotion ASHA with the BOHB sampler."""
    return run_ash(args, sampler="bohb")


def run_ash_auto(args: argparse.Namespace) -> dict[str, Any]:
    """ash's promotion ASHA with its default ``threads="auto"``: the same 2 slots on the same 2
    cores, one thread each while both train; a job that runs alone (ASHA's tail) gets both."""
    return run_ash(args, threads="auto")


def ray_trainable(config: dict[str, Any]) -> None:
    import timed  # noqa: F401  (clocks torch_digits.epoch, as in every tuner)
    import torch
    import torch_digits
    from ray import tune

    torch.set_num_threads(1)
    model, opt = torch_digits.build(config)
    for e in range(config["epochs_max"]):
        _, val_loss, acc = torch_digits.epoch(model, opt, int(config["batch_size"]), e)
        tune.report({"val_loss": val_loss, "val_accuracy": acc, "epochs": e + 1})


def run_ray(args: argparse.Namespace) -> dict[str, Any]:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    work = Path.cwd()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=str(work / "ray_tmp"),
        logging_level="ERROR",
        log_to_driver=False,
    )
    space: dict[str, Any] = {"epochs_max": args.epochs}
    for k, (kind, v) in SPACE.items():
        space[k] = (
            tune.loguniform(*v)
            if kind == "log"
            else tune.uniform(*v)
            if kind == "uniform"
            else tune.choice(list(v))
        )
    tuner = tune.Tuner(
        tune.with_resources(ray_trainable, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="val_loss",
            mode="min",
            scheduler=ASHAScheduler(
                time_attr="training_iteration",
                max_t=args.epochs,
                grace_period=1,
                reduction_factor=3,
            ),
            search_alg=BasicVariantGenerator(random_state=args.seed),
            num_samples=args.trials,
            reuse_actors=True,
            max_concurrent_trials=2,
        ),
        run_config=tune.RunConfig(storage_path=str(work / "ray_results"), verbose=0),
    )
    grid = tuner.fit()
    full, epochs = [], 0
    for res in grid:
        m = res.metrics or {}
        epochs += int(m.get("training_iteration", 0))
        if m.get("training_iteration", 0) >= args.epochs:
            full.append((m["val_loss"], m["val_accuracy"]))
    ray.shutdown()
    return {"full": full, "trials": len(grid), "epochs": epochs}


def optuna_worker(storage_path: str, seed: int, rank: int, n: int, epochs: int) -> None:
    import optuna
    import timed  # noqa: F401  (clocks torch_digits.epoch, as in every tuner)
    import torch
    import torch_digits
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name="digits",
        storage=JournalStorage(JournalFileBackend(storage_path)),
        sampler=optuna.samplers.TPESampler(seed=seed * 100 + rank),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
    )

    def objective(trial: optuna.Trial) -> float:
        config: dict[str, Any] = {}
        for k, (kind, v) in SPACE.items():
            if kind == "choice":
                config[k] = trial.suggest_categorical(k, list(v))
            else:
                config[k] = trial.suggest_float(k, *v, log=kind == "log")
        model, opt = torch_digits.build(config)
        val_loss = float("inf")
        for e in range(epochs):
            _, val_loss, acc = torch_digits.epoch(model, opt, int(config["batch_size"]), e)
            trial.set_user_attr("val_accuracy", acc)
            trial.set_user_attr("epochs", e + 1)
            trial.report(val_loss, e + 1)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return val_loss

    study.optimize(objective, n_trials=n)


def run_optuna(args: argparse.Namespace) -> dict[str, Any]:
    import multiprocessing as mp

    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = str(Path.cwd() / "optuna.log")
    storage = JournalStorage(JournalFileBackend(path))
    optuna.create_study(study_name="digits", storage=storage, direction="minimize")
    ctx = mp.get_context("spawn")
    share = [args.trials // 2, args.trials - args.trials // 2]
    procs = [
        ctx.Process(target=optuna_worker, args=(path, args.seed, r, share[r], args.epochs))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    study = optuna.load_study(study_name="digits", storage=storage)
    full, epochs = [], 0
    for t in study.trials:
        epochs += int(t.user_attrs.get("epochs", 0))
        if t.state == optuna.trial.TrialState.COMPLETE:
            full.append((t.value, t.user_attrs["val_accuracy"]))
    return {"full": full, "trials": len(study.trials), "epochs": epochs}


# -- the parent: one child per (tuner, seed), measured from outside ----------------------------


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            with open(f"/proc/{d}/statm") as f:
                pages = int(f.read().split()[1])
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d))
        rss[int(d)] = pages * page
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def disk_bytes(path: Path) -> tuple[int, int]:
    size, files = 0, 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            try:
                size += os.lstat(os.path.join(dirpath, n)).st_size
                files += 1
            except OSError:
                pass
    return size, files


def measure(tuner: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"bench-torch-{tuner}-"))
    (work / "tmp").mkdir()
    clocks = Path(tempfile.mkdtemp(prefix="bench-torch-clocks-")) / "epochs.jsonl"  # not in work
    env = {
        **os.environ,
        "TMPDIR": str(work / "tmp"),
        "PYTHONPATH": os.pathsep.join([str(EXAMPLES), str(HERE), os.environ.get("PYTHONPATH", "")]),
        "BENCH_TORCH_LOG": str(clocks),
    }
    cmd = [sys.executable, str(Path(__file__).resolve()), "--tuner", tuner, "--seed", str(seed)]
    trials = args.ash_trials if tuner.startswith("ash") and args.ash_trials else args.trials
    cmd += ["--trials", str(trials), "--epochs", str(args.epochs), "--result", "r.json"]
    peak = 0
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=work, env=env)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rc = proc.wait()
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    if rc != 0:
        raise SystemExit(f"{tuner} seed {seed} failed (exit {rc}); its folder: {work}")
    got = json.loads((work / "r.json").read_text())
    (work / "r.json").unlink()
    size, files = disk_bytes(work)
    lines = [json.loads(x) for x in clocks.read_text().splitlines()] if clocks.exists() else []
    epoch_s = [line["epoch_s"] for line in lines if "epoch_s" in line]
    shutil.rmtree(clocks.parent, ignore_errors=True)
    full = got["full"]
    best = min(full) if full else None
    row = {
        "tuner": tuner,
        "seed": seed,
        "wall_s": round(wall, 2),
        "tune_s": round(got["tune_s"], 2),
        "best_loss": None if best is None else round(best[0], 4),
        "best_accuracy": None if best is None else round(best[1], 4),
        "max_accuracy": round(max(a for _, a in full), 4) if full else None,
        "full_trials": len(full),
        "trials": got["trials"],
        "epochs": got["epochs"],
        "epochs_timed": len(epoch_s),
        "train_core_s": round(sum(epoch_s), 2),
        "peak_rss_mb": round(peak / 2**20, 1),
        "disk_mb": round(size / 2**20, 2),
        "disk_files": files,
    }
    print(json.dumps(row), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tuner", choices=TUNERS, help="(child) run one tuner here")
    p.add_argument("--tuners", nargs="+", choices=TUNERS, default=list(TUNERS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--trials", type=int, default=60)
    p.add_argument("--epochs", type=int, default=27)
    p.add_argument(
        "--ash-trials", type=int, help="ash's trials, if not --trials (e.g. to match the epochs)"
    )
    p.add_argument("--result", help="(child) write its result here")
    p.add_argument("--json", help="write every row here")
    args = p.parse_args()
    if args.tuner:
        sys.path.insert(0, str(EXAMPLES))
        t0 = time.perf_counter()
        runs = {
            "ash": run_ash,
            "ray": run_ray,
            "optuna": run_optuna,
            "ash-stop": run_ash_stop,
            "ash-bohb": run_ash_bohb,
            "ash-auto": run_ash_auto,
        }
        got = runs[args.tuner](args)
        got["tune_s"] = time.perf_counter() - t0
        Path(args.result).write_text(json.dumps(got))
        return
    rows = []
    for s in args.seeds:
        for t in args.tuners:
            rows.append(measure(t, s, args))
            if args.json:  # after every run: a long benchmark stopped early keeps its rows
                Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
