"""Checkpoint retention: memory and disk of an embedded study, with the rule and without it.

Two workloads, each run in a fresh process per mode (so peak RSS is that run's own):

- **mem**: ``ash tune``'s embedded transport (``run_inproc``) without a journal, a Python
  trainer returning a 4 MB state (``os.urandom``: incompressible), ASHA r=1, R=27, eta=3,
  150 trials, 2 workers x 1 thread. Peak RSS (VmHWM) of the process that holds the driver, the
  largest slot process's peak, and the peak of the checkpoint folder while it runs.
- **files**: the same transport with a journal (fsync on), an Iris-sized study: ASHA r=1,
  R=27, eta=3, 5,000 trials, a cheap Python trainer returning a 1 KB state (a 7-parameter
  space like examples/iris.toml; the loss is a smooth function of the config and the
  resource). Files in ``JOURNAL.ckpt/`` while it runs (peak) and when it ends.

Modes: ``retention`` is this code (core/retention.py; default ``keep_best = 1``). ``legacy``
is the behaviour before it, rebuilt here from the same code by switching the rule off: no
deletions, the top rung's state not stored (``keep_best = 0``), states in a ``MemoryStore``
in the driver's process without a journal, and with a journal the old DirectoryStore policy
(the latest two files per trial, never fewer).

    flock /tmp/ash-bench.lock .venv/bin/python bench/retention/run.py \
        --reps 3 --json bench/retention/results.json
    .venv/bin/python bench/retention/run.py --quick     # 40 / 500 trials: a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

STATE_MB = 4


def mem_fit(
    config: dict[str, Any], start: float, stop: float, state: bytes | None
) -> tuple[dict[str, Any], bytes]:
    if start and (state is None or len(state) != STATE_MB << 20):
        raise RuntimeError("resumed without its state")
    loss = (config["x"] - 0.3) ** 2 + 1.0 / stop
    return {"loss": loss}, os.urandom(STATE_MB << 20)


def iris_fit(
    config: dict[str, Any], start: float, stop: float, state: bytes | None
) -> tuple[dict[str, Any], bytes]:
    if start and state is None:
        raise RuntimeError("resumed without its state")
    lr = math.log10(config["lr"])
    loss = (
        (lr + 2.0) ** 2 / 4
        + config["dropout"]
        + abs(config["momentum"] - 0.9)
        + 0.01 * math.log10(config["weight_decay"]) ** 2 / 36
        + 0.1 * (config["hidden"] != 32)
        + 0.05 * (config["activation"] != "tanh")
        + 0.002 * config["batch_size"] / 150
        + 2.0 / (1.0 + stop)
    )
    return {"loss": loss}, json.dumps({"done": stop}).encode().ljust(1024)


def spec_for(workload: str, trials: int, keep_best: int) -> Any:
    from ash.spec import parse_spec

    space: dict[str, Any] = {"x": {"uniform": [0.0, 1.0]}}
    if workload == "files":
        space = {
            "lr": {"log_uniform": [1e-4, 1.0]},
            "hidden": {"choice": [8, 16, 32, 64]},
            "activation": {"choice": ["relu", "tanh", "sigmoid"]},
            "dropout": {"uniform": [0.0, 0.5]},
            "momentum": {"uniform": [0.0, 0.99]},
            "weight_decay": {"log_uniform": [1e-6, 1e-2]},
            "batch_size": {"choice": [16, 32, 150]},
        }
    return parse_spec(
        {
            "study": {"name": f"retention-{workload}", "metric": "loss", "seed": 0},
            "asha": {
                "min_resource": 1,
                "max_resource": 27,
                "reduction_factor": 3,
                "max_trials": trials,
            },
            "checkpoints": {"keep_best": keep_best},
            "space": space,
        },
        source="bench",
    )


def legacy() -> None:
    """Switch the rule off: the behaviour before it (see the module docstring)."""
    import ash.scheduler.driver as drv
    import ash.transports.inproc as inproc
    from ash.scheduler.checkpoints import DirectoryStore
    from ash.scheduler.core.retention import Retention
    from ash.scheduler.trace import TraceWriter

    Retention.result = lambda self, job, score: []  # type: ignore[method-assign]
    Retention.final = lambda self: []  # type: ignore[method-assign]

    class KeepTwo(DirectoryStore):
        def put(self, trial: int, resource: float, state: Any) -> None:
            super().put(trial, resource, state)
            if state is None:
                return
            kept = self.__dict__.setdefault("kept", {}).setdefault(trial, [])
            name = self._stem(trial, resource) + ".ckpt"
            if name not in kept:
                kept.append(name)
            while len(kept) > 2:
                self._unlink(kept.pop(0))

    drv.DirectoryStore = KeepTwo  # type: ignore[misc]
    real = inproc.open_study

    def open_study(spec: Any, *, journal: Any = None, trace: Any = None, **kw: Any) -> Any:
        if journal is None:  # states in the driver's memory, as before
            return drv.Opened(drv.Driver(spec, trace=TraceWriter(trace)), 0, 0)
        return real(spec, journal=journal, trace=trace, **kw)

    inproc.open_study = open_study  # type: ignore[assignment]


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def child(workload: str, mode: str, trials: int) -> dict[str, Any]:
    from ash.transports.inproc import run_inproc

    if mode == "legacy":
        legacy()
    work = Path(tempfile.mkdtemp(prefix=f"ash-bench-retention-{workload}-"))
    journal = work / "j.jsonl" if workload == "files" else None
    watched: list[Path] = [Path(journal.as_posix() + ".ckpt")] if journal else []
    if not watched:  # the temporary folder the study makes for itself
        real_mkdtemp = tempfile.mkdtemp

        def mkdtemp(*a: Any, **kw: Any) -> str:
            path = real_mkdtemp(*a, **kw)
            watched.append(Path(path))
            return path

        tempfile.mkdtemp = mkdtemp  # type: ignore[assignment]
    peak = {"files": 0, "mb": 0.0}
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            for d in list(watched):
                try:
                    sizes = [e.stat().st_size for e in os.scandir(d) if e.name.endswith(".ckpt")]
                except OSError:
                    continue
                peak["files"] = max(peak["files"], len(sizes))
                peak["mb"] = max(peak["mb"], sum(sizes) / 2**20)

    threading.Thread(target=watch, daemon=True).start()
    keep_best = 0 if mode == "legacy" else 1
    fn = mem_fit if workload == "mem" else iris_fit
    t0 = time.monotonic()
    doc = run_inproc(
        spec_for(workload, trials, keep_best),
        workers=2,
        threads=1,
        journal=journal,
        progress=False,
        trainer=fn,
    )
    wall = time.monotonic() - t0
    stop.set()
    left = [e for d in watched if d.exists() for e in os.scandir(d) if e.name.endswith(".ckpt")]
    return {
        "workload": workload,
        "mode": mode,
        "trials": len(doc["trials"]),
        "errors": len(doc.get("errors", [])),
        "wall_s": round(wall, 2),
        "driver_peak_rss_mb": round(vm_hwm_mb(), 1),
        "slot_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "ckpt_files_peak": peak["files"],
        "ckpt_mb_peak": round(peak["mb"], 1),
        "ckpt_files_left": len(left),
        "ckpt_mb_left": round(sum(e.stat().st_size for e in left) / 2**20, 2),
        "folder_left": any(d.exists() for d in watched) if journal is None else True,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--child", nargs=3, metavar=("WORKLOAD", "MODE", "TRIALS"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=1, help="runs of each mode, interleaved")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.child:
        workload, mode, trials = args.child
        print(json.dumps(child(workload, mode, int(trials))))
        return
    sizes = {"mem": 40 if args.quick else 150, "files": 500 if args.quick else 5000}
    rows = []
    for workload in ("mem", "files"):
        for mode in ("legacy", "retention") * args.reps:
            cmd = [sys.executable, __file__, "--child", workload, mode, str(sizes[workload])]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        meta = {"loadavg": os.getloadavg(), "python": sys.version.split()[0]}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
