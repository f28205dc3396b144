"""Scheduling overhead of ash over real gRPC, side by side with Optuna and Ray Tune, in one run.

Workload: ASHA r=1, R=27, eta=3 on a no-op objective (``noop.loss(x, r)``, deterministic in the
config and the resource), a one-parameter space, ``N`` trials, two trials at a time:

- **ash (daemons)**: ``ash-scheduler`` (journal with fsync, or ``--no-fsync``) and two
  ``ash-worker --slots 1 --threads 1 [--prefetch K]`` processes running ``noop:fit`` in their
  slot processes, all over gRPC on 127.0.0.1. A result is a ``result`` record of the scheduler's
  journal. Three settings: ``--prefetch K`` (system ``ash``), ``--prefetch 0`` (``ash-p0``) and
  no flag at all (``ash-auto``: the worker's default, ``auto`` since 97c1c9b). ``--prefetch`` is
  passed only when ``ash-worker --help`` offers it.
- **ash (scheduler + 2 asyncio clients)**: the same ``ash-scheduler``, with the workers replaced
  by two lightweight grpc.aio client processes (``sessions.py``), one session each, that answer
  every assignment at once: what the scheduler and the wire cost without the worker daemon.
  ``slots = 1 + K`` in the hello keeps K more assignments in flight (what ``--prefetch K``
  would do).
- **Optuna journal**: ``SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)`` on
  ``JournalStorage(JournalFileBackend(path))``, two processes each calling ``study.optimize`` on
  the same file (``RandomSampler``, seeds 0 and 1). The objective reports at resources 1, 3, 9,
  27 and asks ``should_prune`` after each report; a result is a ``trial.report``.
- **Optuna in-memory**: the same objective, in-memory storage, one process, ``n_jobs=2`` threads.
- **Ray Tune**: ``ASHAScheduler(time_attr="resource", max_t=27, grace_period=1,
  reduction_factor=3)``, a function trainable that reports at resources 1, 3, 9, 27,
  ``num_cpus=2``, ``max_concurrent_trials=2``, ``reuse_actors=True``, Tune's automatic logger
  callbacks off (``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``; with them on it is ~3x slower); a
  result is an ``on_trial_result``.

results/s = results / (time from the first job handed out to the last result received); "total"
is the wall time from launching the system to its exit, start-up and the final write included.
A run that hits its time budget is stopped (ash: SIGTERM, it drains and writes what is done;
Optuna: ``timeout``; Ray: ``time_budget_s``) and its throughput is marked partial. Every system
runs in fresh processes in their own process groups, which are killed at the end whatever
happened. Each repetition runs every system once, so all see the same machine noise.

    /work/venv/bin/python bench/overhead/run.py                 # everything (~25 min)
    /work/venv/bin/python bench/overhead/run.py --quick         # a smoke run (~3 min)
    /work/venv/bin/python bench/overhead/run.py --sizes 1000 --reps 5 --no-sessions
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sessions as S  # noqa: E402  (this folder's load generator and scheduler helpers)

STEPS = (1, 3, 9, 27)


@dataclass
class Run:
    system: str
    size: int  # max_trials / trials asked for
    results: int
    trials: int
    busy_s: float  # first job handed out -> last result received
    total_s: float  # launch -> exit, start-up and final writes included
    partial: bool
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.results / self.busy_s if self.busy_s > 0 else float("nan")


# -- ash --------------------------------------------------------------------------------------


def worker_has_prefetch() -> bool:
    out = subprocess.run(
        [str(S.BIN / "ash-worker"), "--help"], capture_output=True, text=True, check=False
    )
    return "--prefetch" in out.stdout


def journal_stats(path: Path) -> dict[str, Any]:
    """Results and timing from the scheduler's journal: the k-th ask made job id k."""
    asks: list[float] = []
    done: list[tuple[int, float]] = []
    lost = 0
    with path.open("rb") as f:
        f.readline()  # header
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            if "a" in rec:
                asks.append(float(rec["t"]))
            elif "r" in rec:
                done.append((int(rec["r"]), float(rec["t"])))
            elif "l" in rec:
                lost += 1
    if not asks or not done:
        return {"results": 0, "busy_s": float("nan"), "lost": lost}
    rtt = sorted(t - asks[j] for j, t in done if j < len(asks))
    return {
        "results": len(done),
        "asks": len(asks),
        "busy_s": max(t for _, t in done) - asks[0],
        "last_result_t": max(t for _, t in done),
        "lost": lost,
        "job_rtt_ms_p50": 1e3 * rtt[len(rtt) // 2],
        "job_rtt_ms_p99": 1e3 * rtt[min(len(rtt) - 1, int(0.99 * len(rtt)))],
    }


def run_ash(
    size: int,
    *,
    fsync: bool,
    budget: float,
    tmp: Path,
    prefetch: int | None = None,
    client_slots: int | None = None,
    out: bool = False,
) -> Run:
    """ash over gRPC: with two ash-worker daemons (``--prefetch prefetch``; None: no flag, the
    worker's default), or with two asyncio client processes of one session each
    (``client_slots`` in their hello)."""
    folder = Path(tempfile.mkdtemp(prefix="ash-", dir=tmp))
    spec = S.write_spec(folder, "overhead", size)
    if client_slots is None:
        setting = "default prefetch" if prefetch is None else f"prefetch {prefetch}"
        kind = f"ash (2 ash-worker daemons, {setting})"
    else:
        kind = f"ash (scheduler + 2 asyncio clients, slots {client_slots})"
    system = f"{kind}, {'fsync' if fsync else 'no fsync'}" + (", --out" if out else "")
    t0 = time.monotonic()
    sched = S.Scheduler(spec, folder, fsync=fsync, extra=[], out=out)
    procs: list[subprocess.Popen[Any]] = []
    partial = True
    code: int | None = None
    trials = -1
    logs = []
    try:
        port = sched.wait_listening()
        for w in range(2):
            if client_slots is None:
                cmd = [
                    str(S.BIN / "ash-worker"),
                    "--scheduler",
                    f"127.0.0.1:{port}",
                    "--slots",
                    "1",
                    "--threads",
                    "1",
                    "--id",
                    f"w{w}",
                    "--retry-for",
                    "5",
                ]
                if prefetch is not None:
                    cmd += ["--prefetch", str(prefetch)]
            else:
                cmd = S.client_cmd(
                    port,
                    w,
                    1,
                    duration=budget + 30,
                    warmup=0.0,
                    job_seconds=0.0,
                    per_channel=1,
                    slots=client_slots,
                    result=folder / f"client{w}.json",
                )
            log = open(folder / f"worker{w}.log", "wb")  # noqa: SIM115 (closed below)
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=folder,
                    env=S.child_env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        with contextlib.suppress(subprocess.TimeoutExpired):
            sched.proc.wait(timeout=max(1.0, t0 + budget - time.monotonic()))
        if sched.proc.poll() is None:
            with contextlib.suppress(Exception):
                trials = int(S.status(port)["trials"])
        code = sched.stop(timeout=120)  # SIGTERM if still running: drain, write, exit 0
        t_exit = time.monotonic()
        total = t_exit - t0
        partial = not any("study finished" in line for _, line in sched.lines)
        if not partial:
            trials = size
        t_listen = next((t for t, line in sched.lines if "listening on" in line), t0)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                S.kill_group(p, signal.SIGTERM)
    finally:
        for p in procs:
            S.kill_group(p)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)
        sched.close()
        for log in logs:
            log.close()
    stats = journal_stats(folder / "journal.jsonl")
    # the driver's clock starts just before "listening on": exit - last result, roughly
    stats["teardown_s"] = t_exit - (t_listen + float(stats.get("last_result_t", math.nan)))
    notes = []
    if code != 0:
        notes.append(f"scheduler exit {code}: {sched.stderr_tail(600)!r}")
    bad = [p.returncode for p in procs if p.returncode not in (0, None)]
    if bad and not partial:
        notes.append(f"worker exit codes {bad}")
    if stats.get("lost") and not partial:
        notes.append(f"{stats['lost']} jobs lost")
    for w in range(2):
        with contextlib.suppress(OSError, ValueError):
            errors = json.loads((folder / f"client{w}.json").read_text())["errors"]
            if errors and not partial:
                notes.append(f"client {w} errors: {errors}")
    shutil.rmtree(folder, ignore_errors=True)
    return Run(
        system,
        size,
        int(stats["results"]),
        trials,
        float(stats["busy_s"]),
        total,
        partial,
        "; ".join(notes),
        {k: v for k, v in stats.items() if k.startswith("job_rtt") or k == "teardown_s"},
    )


# -- peers (each in a fresh child process: this file with --child) --------------------------


def _objective_factory(rec: Any) -> Any:
    import optuna
    from noop import loss

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        v = 0.0
        for r in STEPS:
            v = loss(x, r)
            trial.report(v, r)
            rec()
            if trial.should_prune():
                raise optuna.TrialPruned()
        return v

    return objective


class _Recorder:
    def __init__(self) -> None:
        import threading

        self.lock = threading.Lock()
        self.n = 0
        self.first: float | None = None
        self.last = 0.0

    def start(self) -> None:
        with self.lock:
            if self.first is None:
                self.first = time.monotonic()

    def __call__(self) -> None:
        with self.lock:
            self.n += 1
            self.last = time.monotonic()


def _optuna_quiet() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _pruner() -> Any:
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=1, reduction_factor=3, min_early_stopping_rate=0
    )


def _journal_worker(path: str, n_trials: int, seed: int, deadline: float, out: str) -> None:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    _optuna_quiet()
    storage = optuna.storages.JournalStorage(JournalFileBackend(path))
    study = optuna.load_study(
        study_name="overhead",
        storage=storage,
        sampler=optuna.samplers.RandomSampler(seed=seed),
        pruner=_pruner(),
    )
    rec = _Recorder()
    objective = _objective_factory(rec)

    def wrapped(trial: optuna.Trial) -> float:
        rec.start()
        return float(objective(trial))

    study.optimize(wrapped, n_trials=n_trials, timeout=max(0.1, deadline - time.monotonic()))
    Path(out).write_text(json.dumps({"n": rec.n, "first": rec.first, "last": rec.last}))


def child_optuna_journal(size: int, budget: float, folder: Path) -> dict[str, Any]:
    import multiprocessing as mp

    import optuna
    from optuna.storages.journal import JournalFileBackend

    _optuna_quiet()
    path = str(folder / "optuna.journal")
    storage = optuna.storages.JournalStorage(JournalFileBackend(path))
    optuna.create_study(study_name="overhead", storage=storage, direction="minimize")
    ctx = mp.get_context("spawn")
    deadline = time.monotonic() + budget
    outs = [str(folder / f"w{i}.json") for i in range(2)]
    procs = [
        ctx.Process(
            target=_journal_worker,
            args=(path, size // 2 + (i < size % 2), i, deadline, outs[i]),
        )
        for i in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    parts = [json.loads(Path(o).read_text()) for o in outs if Path(o).exists()]
    study = optuna.load_study(study_name="overhead", storage=storage)
    trials = len(study.get_trials(deepcopy=False))
    firsts = [p["first"] for p in parts if p["first"] is not None]
    return {
        "results": sum(p["n"] for p in parts),
        "trials": trials,
        "busy_s": max(p["last"] for p in parts) - min(firsts) if firsts else float("nan"),
        "partial": trials < size or len(parts) < 2,
        "exit_codes": [p.exitcode for p in procs],
    }


def child_optuna_memory(size: int, budget: float, folder: Path) -> dict[str, Any]:
    import optuna

    _optuna_quiet()
    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.RandomSampler(seed=0), pruner=_pruner()
    )
    rec = _Recorder()
    objective = _objective_factory(rec)

    def wrapped(trial: optuna.Trial) -> float:
        rec.start()
        return float(objective(trial))

    study.optimize(wrapped, n_trials=size, n_jobs=2, timeout=budget)
    trials = len(study.get_trials(deepcopy=False))
    return {
        "results": rec.n,
        "trials": trials,
        "busy_s": rec.last - rec.first if rec.first is not None else float("nan"),
        "partial": trials < size,
    }


def child_ray(size: int, budget: float, folder: Path) -> dict[str, Any]:
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    import ray
    from noop import loss
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    def trainable(config: dict[str, Any]) -> None:
        for r in STEPS:
            tune.report({"resource": r, "loss": loss(config["x"], r)})

    class Count(tune.Callback):  # type: ignore[misc, unused-ignore]
        def __init__(self) -> None:
            self.n = 0
            self.trials = 0
            self.first: float | None = None
            self.last = 0.0

        def on_trial_start(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            self.trials += 1
            if self.first is None:
                self.first = time.monotonic()

        def on_trial_result(
            self, iteration: int, trials: Any, trial: Any, result: Any, **info: Any
        ) -> None:
            self.n += 1
            self.last = time.monotonic()

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        _temp_dir=str(folder / "ray"),
    )
    cb = Count()
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={"x": tune.uniform(0.0, 1.0)},
            tune_config=tune.TuneConfig(
                metric="loss",
                mode="min",
                num_samples=size,
                max_concurrent_trials=2,
                reuse_actors=True,
                scheduler=ASHAScheduler(
                    time_attr="resource", max_t=27, grace_period=1, reduction_factor=3
                ),
                time_budget_s=budget,
            ),
            run_config=tune.RunConfig(
                storage_path=str(folder / "results"), verbose=0, callbacks=[cb]
            ),
        )
        tuner.fit()
    finally:
        ray.shutdown()
    return {
        "results": cb.n,
        "trials": cb.trials,
        "busy_s": cb.last - cb.first if cb.first is not None else float("nan"),
        "partial": cb.trials < size,
        "ray": ray.__version__,
    }


CHILDREN = {
    "optuna-journal": child_optuna_journal,
    "optuna-memory": child_optuna_memory,
    "ray": child_ray,
}
PEER_NAMES = {
    "optuna-journal": "Optuna journal file (2 processes)",
    "optuna-memory": "Optuna in-memory (1 process, n_jobs=2)",
    "ray": "Ray Tune ASHAScheduler (reuse_actors)",
}


def run_child(kind: str, size: int, budget: float, tmp: Path) -> Run:
    folder = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=tmp))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind]
    cmd += ["--child-size", str(size), "--budget", str(budget), "--child-dir", str(folder)]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        env=S.child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=budget + 180)
    except subprocess.TimeoutExpired:
        S.kill_group(proc)
        out, err = proc.communicate(timeout=30)
    finally:
        S.kill_group(proc)  # and whatever it left in its group (spawned workers, raylets)
    total = time.monotonic() - t0
    shutil.rmtree(folder, ignore_errors=True)
    line = next((x for x in reversed(out.splitlines()) if x.startswith("RESULT ")), None)
    if line is None:
        tail = (err or "").strip().splitlines()[-3:]
        return Run(PEER_NAMES[kind], size, 0, 0, float("nan"), total, True, f"failed: {tail}")
    r = json.loads(line[len("RESULT ") :])
    return Run(
        PEER_NAMES[kind],
        size,
        int(r["results"]),
        int(r["trials"]),
        float(r["busy_s"]),
        total,
        bool(r["partial"]),
        extra={k: v for k, v in r.items() if k in ("ray", "exit_codes")},
    )


# -- the table --------------------------------------------------------------------------------


def fmt_int(x: float) -> str:
    return "-" if x != x else f"{x:,.0f}"


def summarise(runs: list[Run], budget_of: dict[str, float]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    keys: list[tuple[str, int]] = []
    for r in runs:
        if (r.system, r.size) not in keys:
            keys.append((r.system, r.size))
    for system, size in keys:
        rs = [r for r in runs if r.system == system and r.size == size]
        rates = [r.rate for r in rs if r.rate == r.rate]
        rows.append(
            {
                "system": system,
                "size": size,
                "runs": len(rs),
                "results": statistics.median([r.results for r in rs]),
                "trials": statistics.median([r.trials for r in rs]),
                "rate": statistics.median(rates) if rates else float("nan"),
                "rate_min": min(rates, default=float("nan")),
                "rate_max": max(rates, default=float("nan")),
                "total_s": statistics.median([r.total_s for r in rs]),
                "busy_s": statistics.median([r.busy_s for r in rs]),
                "partial": any(r.partial for r in rs),
                "budget": budget_of.get(system, float("nan")),
                "notes": "; ".join(sorted({r.note for r in rs if r.note})),
                "rtt": statistics.median([r.extra["job_rtt_ms_p50"] for r in rs])
                if all("job_rtt_ms_p50" in r.extra for r in rs)
                else None,
                "teardown": statistics.median([r.extra["teardown_s"] for r in rs])
                if all("teardown_s" in r.extra for r in rs)
                else None,
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| system | trials asked | runs | results | results/s (first job -> last result), "
        "median (min-max) | busy s | total s (incl. start-up) | last result -> exit s "
        "| assign -> result p50 ms | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = fmt_int(r["rate"])
        if r["runs"] > 1:
            rate += f" ({fmt_int(r['rate_min'])}-{fmt_int(r['rate_max'])})"
        note = r["notes"]
        if r["partial"]:
            stop = (
                f"stopped at the {r['budget']:.0f} s budget: partial, {fmt_int(r['trials'])} trials"
            )
            rate = f"**{rate}** (partial)"
            note = f"{stop}; {note}" if note else stop
        rtt = "-" if r["rtt"] is None else f"{r['rtt']:.1f}"
        down = "-" if r["teardown"] is None else f"{r['teardown']:.1f}"
        lines.append(
            f"| {r['system']} | {r['size']:,} | {r['runs']} | {fmt_int(r['results'])} | {rate} "
            f"| {r['busy_s']:.1f} | {r['total_s']:.1f} | {down} | {rtt} | {note} |"
        )
    return "\n".join(lines) + "\n"


def goals(rows: list[dict[str, Any]], sizes: list[int]) -> str:
    journal = {r["size"]: r for r in rows if r["system"].startswith("Optuna journal")}
    ash_rows = [r for r in rows if r["system"].startswith("ash")]
    systems = list(dict.fromkeys(r["system"] for r in ash_rows))
    lines = [
        "| ash configuration | "
        + " | ".join(f"{s:,} trials: results/s, x Optuna journal" for s in sizes)
        + " | >= 4x at every size | >= 2,500 results/s at 100k |",
        "|---|" + "---|" * len(sizes) + "---|---|",
    ]
    for system in systems:
        cells = []
        ok4 = True
        big = "not run"
        for s in sizes:
            a = next((r for r in ash_rows if r["system"] == system and r["size"] == s), None)
            j = journal.get(s)
            if a is None:
                cells.append("-")
                ok4 = False
                continue
            ratio = a["rate"] / j["rate"] if j and j["rate"] == j["rate"] else float("nan")
            mark = " (partial)" if a["partial"] else ""
            cells.append(f"{fmt_int(a['rate'])}{mark}, {ratio:.1f}x")
            ok4 = ok4 and ratio >= 4
            if s == 100_000:
                big = "yes" if a["rate"] >= 2500 else "no"
        lines.append(
            f"| {system} | " + " | ".join(cells) + f" | {'yes' if ok4 else 'no'} | {big} |"
        )
    return "\n".join(lines) + "\n"


def machine() -> dict[str, Any]:
    from importlib import metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    cpu = "?"
    fam = model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            key, val = key.strip(), val.strip()
            if key == "model name" and cpu == "?":
                cpu = val
            elif key == "cpu family" and fam == "?":
                fam = val
            elif key == "model" and model == "?":
                model = val
    commit = subprocess.run(
        ["git", "-C", str(HERE), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": f"{cpu} (family {fam} model {model})",
        "python": platform.python_version(),
        "optuna": version("optuna"),
        "ray": version("ray"),
        "grpcio": version("grpcio"),
        "ash": f"{version('ash-hpo')} ({commit})",
        "kernel": platform.release(),
    }


# -- main -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000", help="trial counts, comma-separated")
    p.add_argument("--reps", default="3,1,1", help="repetitions per size (one value or per size)")
    p.add_argument("--budget", type=float, default=120.0, help="seconds per peer run before a stop")
    p.add_argument(
        "--budget-ash",
        type=float,
        default=240.0,
        help="seconds per ash run (prefetch, clients) before a stop",
    )
    p.add_argument(
        "--budget-slow",
        type=float,
        default=30.0,
        help="budget of the ash daemon runs without prefetch (their rate is steady within s)",
    )
    p.add_argument("--prefetch", type=int, default=32, help="ash-worker --prefetch when offered")
    p.add_argument(
        "--systems",
        default="ash,ash-auto,ash-p0,ash-out,ash-clients,optuna-journal,optuna-memory,ray",
        help="which systems to run (ash = daemons with --prefetch K; ash-auto = no --prefetch "
        "flag, the worker's default; ash-p0 = --prefetch 0)",
    )
    p.add_argument("--no-sessions", action="store_true", help="skip the 1,000-session part")
    p.add_argument("--sessions", type=int, default=1000, help="sessions in the second part")
    p.add_argument("--sessions-duration", type=float, default=45.0, help="seconds per load run")
    p.add_argument(
        "--sessions-think",
        default="1,2",
        help="think times (s) of the session runs; 0 adds a closed loop",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: small sizes, short budgets")
    p.add_argument("--json", help="write every raw run here")
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--child-size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--child-dir", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        res = CHILDREN[args.child](args.child_size, args.budget, Path(args.child_dir))
        print("RESULT " + json.dumps(res), flush=True)
        return 0
    if args.quick:
        args.sizes, args.reps, args.budget, args.budget_slow = "200,1000", "1", 30.0, 10.0
        args.budget_ash = 30.0
        args.sessions, args.sessions_duration, args.sessions_think = 200, 12.0, "1"
    sizes = [int(s) for s in args.sizes.split(",")]
    reps_in = [int(r) for r in args.reps.split(",")]
    reps = {s: reps_in[min(i, len(reps_in) - 1)] for i, s in enumerate(sizes)}
    systems = set(args.systems.split(","))
    info = machine()
    prefetch_ok = worker_has_prefetch()
    info["ash_worker_prefetch"] = prefetch_ok
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="ash-overhead-"))
    runs: list[Run] = []
    budget_of: dict[str, float] = {}
    t_start = time.monotonic()

    def record(r: Run, budget: float) -> None:
        r.extra["loadavg_1min_after"] = os.getloadavg()[0]
        runs.append(r)
        budget_of[r.system] = budget
        flag = " PARTIAL" if r.partial else ""
        print(
            f"  {r.system} @ {r.size:,}: {r.results:,} results, {r.rate:,.0f}/s, "
            f"total {r.total_s:.1f} s, load {r.extra['loadavg_1min_after']:.1f}{flag} {r.note}",
            flush=True,
        )

    try:
        for size in sizes:
            for rep in range(reps[size]):
                print(f"size {size:,}, repetition {rep + 1}/{reps[size]}", flush=True)
                if systems & {"ash", "ash-auto", "ash-p0", "ash-out"}:
                    for fsync in (True, False):
                        if prefetch_ok and "ash" in systems:
                            record(
                                run_ash(
                                    size,
                                    fsync=fsync,
                                    budget=args.budget_ash,
                                    tmp=tmp,
                                    prefetch=args.prefetch,
                                ),
                                args.budget_ash,
                            )
                        if "ash-auto" in systems:
                            record(
                                run_ash(size, fsync=fsync, budget=args.budget_ash, tmp=tmp),
                                args.budget_ash,
                            )
                        if rep == 0 and "ash-p0" in systems:
                            record(
                                run_ash(
                                    size,
                                    fsync=fsync,
                                    budget=args.budget_slow,
                                    tmp=tmp,
                                    prefetch=0 if prefetch_ok else None,
                                ),
                                args.budget_slow,
                            )
                    if rep == 0 and size <= 10_000 and "ash-out" in systems:
                        r = run_ash(
                            size,
                            fsync=True,
                            budget=args.budget_ash,
                            tmp=tmp,
                            prefetch=args.prefetch if prefetch_ok else None,
                            out=True,
                        )
                        record(r, args.budget_ash)
                if "ash-clients" in systems:
                    variants = [(True, 1 + args.prefetch), (False, 1 + args.prefetch)]
                    if size <= 10_000:
                        variants.insert(0, (True, 1))
                    for fsync, slots in variants:
                        record(
                            run_ash(
                                size,
                                fsync=fsync,
                                budget=args.budget_ash,
                                tmp=tmp,
                                client_slots=slots,
                            ),
                            args.budget_ash,
                        )
                for kind in ("optuna-journal", "optuna-memory", "ray"):
                    if kind in systems and (kind != "ray" or rep == 0):
                        record(run_child(kind, size, args.budget, tmp), args.budget)
        session_results: list[dict[str, Any]] = []
        if not args.no_sessions:
            for think in [float(x) for x in args.sessions_think.split(",")]:
                print(f"sessions: {args.sessions:,} sessions, think time {think:g} s", flush=True)
                sargs = S.build_parser().parse_args(
                    [
                        "--sessions",
                        str(args.sessions),
                        "--duration",
                        str(args.sessions_duration),
                        "--job-seconds",
                        str(think),
                    ]
                )
                res = S.run(sargs)
                session_results.append(res)
                print(S.table(res), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.monotonic() - t_start
    rows = summarise(runs, budget_of)
    print()
    print(f"## Scheduling overhead (total run {elapsed / 60:.1f} min)\n")
    print(table(rows))
    loads = sorted(r.extra["loadavg_1min_after"] for r in runs)
    if loads:
        print(
            f"1-min load average after each run (2 cores): min {loads[0]:.1f}, "
            f"median {statistics.median(loads):.1f}, max {loads[-1]:.1f}\n"
        )
    print("## Goals\n")
    print(goals(rows, sizes))
    if not prefetch_ok:
        print(
            "ash-worker offers no --prefetch: the daemon rows run without it; the 'slots 1 + K' "
            "client rows show what K assignments in flight per worker give.\n"
        )
    if session_results:
        print(f"## {args.sessions:,} worker sessions on one scheduler\n")
        head, sep, *body = S.table(session_results[0]).splitlines()
        body += [S.table(r).splitlines()[2] for r in session_results[1:]]
        print("\n".join([head, sep, *body]) + "\n")
    if args.json:
        doc = {
            "machine": info,
            "args": vars(args),
            "elapsed_s": elapsed,
            "runs": [asdict(r) | {"rate": r.rate} for r in runs],
            "rows": rows,
            "sessions": [
                {k: v for k, v in r.items() if k not in ("series",)} for r in session_results
            ],
        }
        Path(args.json).write_text(json.dumps(doc, indent=1, default=_json_default))
    return 0


def _json_default(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return str(x)


if __name__ == "__main__":
    sys.exit(main())
