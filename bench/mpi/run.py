"""Throughput of ``ash tune --transport mpi`` beside ``--transport grpc`` on a no-op workload.

Workload: ASHA r=1, R=27, eta=3, a Python trainer that returns at once (``noop.py``: a loss that
depends on the config ``x`` and the resource), 1,000 and 10,000 trials (about 1.5 results a
trial). Both transports run two workers on this machine with one kernel thread each, no journal:

- mpi:  ``mpiexec -n 3 ash tune SPEC --transport mpi`` (rank 0 schedules, ranks 1-2 train; the
  ``mpiexec`` next to this Python, i.e. the ``mpich`` wheel's Hydra)
- mpi-r0: ``mpiexec -n 2 ash tune SPEC --transport mpi --rank0-trains`` (rank 0 schedules and
  trains in a slot process beside it, rank 1 trains)
- grpc: ``ash tune SPEC --transport grpc --workers 2`` (one ``ash-scheduler`` and two
  ``ash-worker`` processes on 127.0.0.1)

Each run is a fresh command. "study s" is the time of the last trace event (the study clock
starts when the scheduler opens the study), "wall s" the whole command with its start-up;
results/s divides the results counted in results.json by each. Runs of the two transports are
interleaved so that they see the same machine noise; with ``--repeat`` the table shows medians.

    python bench/mpi/run.py                          # 1,000 and 10,000 trials, once each
    python bench/mpi/run.py --trials 1000 --repeat 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

SPEC = """
[study]
name = "noop-{trials}"
metric = "loss"
mode = "min"
seed = 0
algorithm = "asha"

[asha]
min_resource = 1
max_resource = 27
reduction_factor = 3
max_trials = {trials}

[trainer]
type = "python"
entrypoint = "noop:fit"

[space]
x = {{ uniform = [0.0, 1.0] }}
"""


TRANSPORTS = ("mpi", "mpi-r0", "grpc")


def command(transport: str, spec: Path, out: Path, trace: Path) -> list[str]:
    tail = ["--threads", "1", "--out", str(out), "--trace", str(trace), "--quiet"]
    if transport == "mpi":
        launcher = [str(BIN / "mpiexec"), "-n", "3"]
        return [*launcher, str(BIN / "ash"), "tune", str(spec), "--transport", "mpi", *tail]
    if transport == "mpi-r0":
        launcher = [str(BIN / "mpiexec"), "-n", "2"]
        tail = ["--transport", "mpi", "--rank0-trains", *tail]
        return [*launcher, str(BIN / "ash"), "tune", str(spec), *tail]
    return [str(BIN / "ash"), "tune", str(spec), "--transport", "grpc", "--workers", "2", *tail]


def run_once(transport: str, trials: int, work: Path) -> dict[str, Any]:
    spec = work / f"noop-{trials}.toml"
    spec.write_text(SPEC.format(trials=trials))
    out = work / f"{transport}-{trials}"
    trace = work / f"{transport}-{trials}.jsonl"
    trace.unlink(missing_ok=True)
    cmd = command(transport, spec, out, trace)
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{transport} {trials}: exit code {proc.returncode}\n{proc.stderr}")
    doc = json.loads((out / "results.json").read_text())
    results = sum(len(t["results"]) for t in doc["trials"])
    with trace.open() as f:
        last = json.loads(f.readlines()[-1])
    study = float(last["t"])
    return {
        "transport": transport,
        "trials": len(doc["trials"]),
        "results": results,
        "study_s": study,
        "wall_s": wall,
        "results_per_s": results / study,
        "results_per_wall_s": results / wall,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--json", help="write the raw runs here")
    args = p.parse_args()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ash-bench-mpi-") as tmp:
        work = Path(tmp)
        for trials in args.trials:
            for _ in range(args.repeat):
                for transport in TRANSPORTS:
                    r = run_once(transport, trials, work)
                    print(
                        f"{transport:6} {trials:>6} trials: {r['results']} results, "
                        f"study {r['study_s']:.2f} s, wall {r['wall_s']:.2f} s, "
                        f"{r['results_per_s']:,.0f} results/s",
                        file=sys.stderr,
                        flush=True,
                    )
                    runs.append(r)
    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, repeat {args.repeat} (medians)\n"
    )
    print(
        "| trials | results | mpi results/s (study / wall) "
        "| mpi, rank 0 trains (-n 2) results/s (study / wall) "
        "| grpc results/s (study / wall) | mpi / grpc |"
    )
    print("|---|---|---|---|---|---|")
    for trials in args.trials:
        row: dict[str, tuple[float, float, int]] = {}
        for transport in TRANSPORTS:
            mine = [r for r in runs if r["transport"] == transport and r["trials"] == trials]
            row[transport] = (
                statistics.median(r["results_per_s"] for r in mine),
                statistics.median(r["results_per_wall_s"] for r in mine),
                int(statistics.median(r["results"] for r in mine)),
            )
        m, r0, g = row["mpi"], row["mpi-r0"], row["grpc"]
        print(
            f"| {trials:,} | {m[2]:,} | {m[0]:,.0f} / {m[1]:,.0f} | {r0[0]:,.0f} / {r0[1]:,.0f} "
            f"| {g[0]:,.0f} / {g[1]:,.0f} | {m[0] / g[0]:.0f}x |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
