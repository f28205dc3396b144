"""CPU seconds per result of ash-scheduler and of each ash-worker, for two installs side by side.

Throughput on two shared cores varies by +-30% from run to run; the CPU each process spends per
result varies much less, so this is how two versions of ash are compared (an A/B): each
repetition runs the bench/overhead no-op study once per venv, interleaved, with
``ash-scheduler --journal`` (fsync) and two ``ash-worker --slots 1 --threads 1 --prefetch K``.
The scheduler's own main runs under a small wrapper that prints ``getrusage(RUSAGE_SELF)`` at
exit (all its threads); each worker's CPU comes from ``wait4`` (the daemon and the slot
processes it reaped). ``--profile DIR`` also writes cProfile files, one per thread, of the
scheduler and of the first worker.

    python bench/overhead/cpu_ab.py --venv new=.venv --venv old=/tmp/ash-old/.venv \
        --sizes 10000,100000 --reps 3

A venv is any virtualenv with ash installed (``pip install -e`` of another commit's tree).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as R  # noqa: E402  (journal_stats)
import sessions as S  # noqa: E402  (spec, environment)

WRAP = r"""
import atexit, os, resource, sys
prof = os.environ.get("AB_PROFILE")
if prof:
    import cProfile, threading
    main_prof = cProfile.Profile()
    main_prof.enable()
    _run = threading.Thread.run
    def run(self, *a, **k):
        p = cProfile.Profile()
        p.enable()
        try:
            return _run(self, *a, **k)
        finally:
            p.disable()
            p.dump_stats(f"{prof}.thread-{self.name}-{threading.get_ident()}")
    threading.Thread.run = run
def done():
    if prof:
        main_prof.disable()
        main_prof.dump_stats(prof)
    r = resource.getrusage(resource.RUSAGE_SELF)
    sys.stderr.write("RUSAGE %f %f\n" % (r.ru_utime, r.ru_stime))
    sys.stderr.flush()
atexit.register(done)
from ash.cli import scheduler_main, worker_main
sys.argv = ["ash"] + sys.argv[1:]
sys.exit((worker_main if os.environ.get("AB_ROLE") == "worker" else scheduler_main)())
"""


def one(venv: Path, size: int, prefetch: int, profile: Path | None) -> dict[str, Any]:
    py = str(venv / "bin" / "python")
    folder = Path(tempfile.mkdtemp(prefix="ash-cpu-ab-"))
    spec = S.write_spec(folder, "overhead", size)
    journal = str(folder / "journal.jsonl")
    env = S.child_env()
    if profile:
        env["AB_PROFILE"] = str(profile)
    with open(folder / "scheduler.stderr", "w") as err:
        sched = subprocess.Popen(
            [py, "-c", WRAP, str(spec), "--listen", "127.0.0.1:0", "--journal", journal],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        assert sched.stdout is not None
        port = next(
            line.strip().rsplit(":", 1)[-1].split()[0]
            for line in sched.stdout
            if "listening on" in line
        )
        workers = []
        for w in range(2):
            cmd = [str(venv / "bin" / "ash-worker"), "--scheduler", f"127.0.0.1:{port}"]
            cmd += ["--slots", "1", "--threads", "1", "--id", f"w{w}", "--retry-for", "5"]
            cmd += ["--prefetch", str(prefetch)]
            wenv = S.child_env()
            if profile and w == 0:
                cmd = [py, "-c", WRAP, *cmd[1:]]
                wenv |= {"AB_PROFILE": f"{profile}.worker", "AB_ROLE": "worker"}
            workers.append(
                subprocess.Popen(
                    cmd,
                    cwd=folder,
                    env=wenv,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        t0 = time.monotonic()
        for _ in sched.stdout:
            pass
        sched.wait()
    wall = time.monotonic() - t0
    worker_cpu = []
    for p in workers:
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        worker_cpu.append(usage.ru_utime + usage.ru_stime)
    lines = (folder / "scheduler.stderr").read_text().splitlines()
    rusage = [line.split()[1:3] for line in lines if line.startswith("RUSAGE")]
    sched_cpu = sum(map(float, rusage[-1])) if rusage else float("nan")
    stats = R.journal_stats(folder / "journal.jsonl")
    n = int(stats["results"])
    out = {
        "venv": str(venv),
        "size": size,
        "prefetch": prefetch,
        "results": n,
        "rate": n / stats["busy_s"],
        "wall_s": wall,
        "scheduler_ms_per_result": 1e3 * sched_cpu / n,
        "worker_ms_per_result": [1e3 * c / n for c in worker_cpu],
        "journal_bytes_per_result": (folder / "journal.jsonl").stat().st_size / n,
        "loadavg_1min_after": os.getloadavg()[0],
    }
    shutil.rmtree(folder, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--venv", action="append", required=True, help="NAME=PATH, repeatable")
    p.add_argument("--sizes", default="10000,100000", help="trials, comma-separated")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--prefetch", type=int, default=32)
    p.add_argument("--profile", type=Path, help="write cProfile files here (one rep each)")
    p.add_argument("--json", type=Path, help="write every run here")
    args = p.parse_args(argv)
    venvs = [(n, Path(v)) for n, _, v in (x.partition("=") for x in args.venv)]
    runs = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for _ in range(1 if args.profile else args.reps):
            for name, venv in venvs:
                prof = None
                if args.profile:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    prof = args.profile / f"{name}-{size}.prof"
                r = {"name": name} | one(venv, size, args.prefetch, prof)
                runs.append(r)
                print(
                    f"{name:8} {size:>7,} trials: {r['rate']:,.0f} results/s, CPU per result: "
                    f"scheduler {r['scheduler_ms_per_result']:.3f} ms, workers "
                    + ", ".join(f"{x:.3f}" for x in r["worker_ms_per_result"])
                    + f" ms; journal {r['journal_bytes_per_result']:.0f} B/result, "
                    f"load {r['loadavg_1min_after']:.1f}",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
