"""Soak: kill -9 the scheduler (and half of the workers) again and again during one study.

Runs ``ash-scheduler`` with a journal and a trace on loopback, N ``ash-worker`` processes, and
kills the scheduler with SIGKILL at random moments (at least ``--kills`` times), restarting it on
the same journal and port each time; every other round it also SIGKILLs half of the workers and
starts new ones. At the end it checks, from the trace and results.json:

- 0 results lost: every result traced before each crash is still in the final trace, in order;
- 0 results counted twice: job ids of result events are unique and match results.json;
- the trace obeys Algorithm 2 (ash.scheduler.audit);
- promoted trials resumed from the right checkpoint (the trainer verifies its state).

Bounded: each wait has a timeout, and every process is killed on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ash.scheduler.audit import audit_for
from ash.scheduler.trace import read_trace
from ash.spec import load_spec

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SPEC = """
[study]
name = "soak"
metric = "loss"
seed = 1
[asha]
min_resource = 1
max_resource = 27
reduction_factor = 3
max_trials = {trials}
[trainer]
type = "python"
entrypoint = "trainer:fit"
[space]
x = {{ uniform = [0.0, 1.0] }}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_scheduler(spec: Path, port: int, work: Path) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [
            str(BIN / "ash-scheduler"),
            str(spec),
            "--listen",
            f"127.0.0.1:{port}",
            "--journal",
            "j.jsonl",
            "--trace",
            "t.jsonl",
            "--out",
            "out",
            "--lease",
            "3",
        ],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert p.stdout is not None
    for line in p.stdout:
        if "listening on" in line:
            return p
    raise RuntimeError("scheduler did not start")


def start_worker(port: int, work: Path, name: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    return subprocess.Popen(
        [
            str(BIN / "ash-worker"),
            "--scheduler",
            f"127.0.0.1:{port}",
            "--id",
            name,
            "--threads",
            "1",
            "--retry-for",
            "120",
        ],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def results_in(trace: Path) -> list[dict[str, Any]]:
    return [e for e in read_trace(trace) if e["event"] == "result"] if trace.exists() else []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--trials", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="ash-soak-"))
    spec = work / "soak.toml"
    spec.write_text(SPEC.format(trials=args.trials))
    port = free_port()
    t0 = time.monotonic()
    sched = start_scheduler(spec, port, work)
    workers = [start_worker(port, work, f"w{i}") for i in range(args.workers)]
    prefixes: list[list[dict[str, Any]]] = []
    kills = worker_kills = 0
    try:
        while kills < args.kills and sched.poll() is None:
            time.sleep(rng.uniform(0.5, 2.5))
            if sched.poll() is not None:
                break
            prefixes.append(results_in(work / "t.jsonl"))
            sched.send_signal(signal.SIGKILL)
            sched.wait()
            kills += 1
            if kills % 2 == 0:
                for i in rng.sample(range(len(workers)), len(workers) // 2):
                    workers[i].send_signal(signal.SIGKILL)
                    workers[i].wait()
                    worker_kills += 1
                    workers[i] = start_worker(port, work, f"w{i}-{kills}")
            sched = start_scheduler(spec, port, work)
        code = sched.wait(timeout=600)
        for w in workers:
            w.wait(timeout=120)
    finally:
        for p in [sched, *workers]:
            if p.poll() is None:
                p.kill()
    wall = time.monotonic() - t0
    events = list(read_trace(work / "t.jsonl"))
    final = [e for e in events if e["event"] == "result"]
    lost = sum(1 for prefix in prefixes if final[: len(prefix)] != prefix)
    jobs = [e["job"] for e in final]
    doc = json.loads((work / "out/results.json").read_text())
    counted = sum(len(t["results"]) for t in doc["trials"])
    bad_resume = [e for e in doc.get("errors", []) if "resumed from" in e["error"]]
    report = {
        "scheduler_kills": kills,
        "worker_kills": worker_kills,
        "exit_code": code,
        "trials": len(doc["trials"]),
        "results": len(final),
        "results_lost": lost,
        "results_counted_twice": len(jobs) - len(set(jobs)) + abs(counted - len(final)),
        "jobs_lost_and_reissued": sum(e["event"] == "lost" for e in events),
        "algorithm2_violations": len(audit_for(events, load_spec(spec))),
        "wrong_checkpoint_resumes": len(bad_resume),
        "wall_seconds": round(wall, 1),
    }
    print(json.dumps(report, indent=1))
    ok = (
        kills >= args.kills
        and code == 0
        and lost == 0
        and report["results_counted_twice"] == 0
        and report["algorithm2_violations"] == 0
        and not bad_resume
        and len(doc["trials"]) == args.trials
    )
    print("soak:", "ok" if ok else "FAILED", f"(files in {work})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
