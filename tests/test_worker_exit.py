"""An ash-worker that ends leaves no gRPC call or channel for the interpreter's shutdown.

Whatever is still alive when Python finalizes is freed after grpc's daemon threads (the request
consumer, the channel's event loop) were stopped where they stood; a call's finalizer takes the
call's lock, which such a thread may hold, and the worker then hangs instead of exiting. A failed
call raises itself, and the traceback it carries leads back to it: a reference cycle only the
collector frees, so the worker must keep none (ash.worker.stream.Broken). This hung, rarely and
under load, a worker refusing a study (tests/test_worker_trust.py).

A real ash-scheduler on 127.0.0.1 port 0 and a real worker process: the ash-worker entry point,
run with the collector off (a cycle is then never freed by chance before exit) and, at exit,
printing how many gRPC calls and channels are still alive. Each way a worker ends is checked:
refusing the study (exit 2), a scheduler that went away (exit 3), SIGTERM (exit 0).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from helpers import Scheduler, write_study

WORKER = """
import atexit, gc, sys
import grpc
gc.disable()
def left():
    alive = sum(isinstance(o, (grpc.Call, grpc.Channel)) for o in gc.get_objects())
    print(f"grpc objects alive at exit: {alive}", file=sys.stderr, flush=True)
atexit.register(left)
from ash.worker.daemon import main
sys.exit(main())
"""
CLEAN = "grpc objects alive at exit: 0"

# A job that says it started, then runs for a minute.
LONG_TRAINER = """
import os, time

def fit(config, start, stop, state):
    open(os.environ["STARTED"], "w").close()
    time.sleep(60)
    return {"loss": 1.0}, None
"""


def worker(
    target: str, cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """A real ash-worker process (its entry point, in WORKER's harness)."""
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, "--scheduler", target, "--threads", "1", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def test_a_refusing_worker_leaves_no_call_to_shutdown(tmp_path: Path, cleanup: list[Any]) -> None:
    sched = Scheduler(write_study(tmp_path, max_trials=3), tmp_path, "--linger", "0")
    cleanup.append(sched)
    refuser = worker(sched.target, tmp_path, "--id", "refuser", "--allow-trainer", "mlp")
    cleanup.append(refuser)
    code, err = finish(refuser)
    assert code == 2 and "refusing study 'py'" in err, err
    assert CLEAN in err, err


def test_a_stopped_worker_leaves_no_call_to_shutdown_nor_waits_for_its_job(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    """SIGTERM with --grace 0 while a job runs for a minute: the job is handed back, its slot
    killed, and the worker exits 0 at once."""
    spec = write_study(tmp_path, max_trials=3)
    (tmp_path / "user_trainer.py").write_text(LONG_TRAINER)
    sched = Scheduler(spec, tmp_path, "--linger", "0")
    cleanup.append(sched)
    started = tmp_path / "started"
    stopped = worker(
        sched.target, tmp_path, "--id", "stopped", "--grace", "0", env={"STARTED": str(started)}
    )
    cleanup.append(stopped)
    deadline = time.monotonic() + 60
    while not started.exists() and stopped.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), finish(stopped)
    stopped.send_signal(signal.SIGTERM)
    code, err = finish(stopped, timeout=30)
    assert code == 0 and CLEAN in err, err


def test_a_worker_that_gives_up_leaves_no_call_to_shutdown(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    sched = Scheduler(write_study(tmp_path, max_trials=3), tmp_path, "--linger", "0")
    sched.kill()  # nothing listens on its port now
    lost = worker(sched.target, tmp_path, "--id", "lost", "--retry-for", "1")
    cleanup.append(lost)
    code, err = finish(lost)
    assert code == 3 and "giving up" in err, err
    assert CLEAN in err, err
