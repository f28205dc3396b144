"""The gRPC service under operators' faults (issue #13), with real processes on 127.0.0.1:
two schedulers on one journal, scheduler restarts during a long job, and a checkpoint disk
that fills up."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ash.scheduler.audit import audit_for
from ash.scheduler.trace import read_trace
from ash.spec import load_spec
from helpers import BIN, Scheduler, results, worker, write_study

if sys.platform != "linux":  # pragma: no cover
    pytest.skip("process tests need Linux", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_second_scheduler_on_the_same_journal_exits_2_naming_the_holder(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    spec = write_study(tmp_path, max_trials=4)
    first = Scheduler(spec, tmp_path, "--journal", "j.jsonl")
    cleanup.append(first)
    second = subprocess.run(
        [str(BIN / "ash-scheduler"), str(spec), "--listen", "127.0.0.1:0", "--journal", "j.jsonl"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 2, second.stderr
    assert f"j.jsonl: in use by pid {first.proc.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    assert first.proc.poll() is None  # the owner is untouched
    first.proc.send_signal(signal.SIGTERM)
    assert first.wait() == 0


LONG = """
import json, time

def fit(config, start, stop, state):
    time.sleep(float(config["sleep"]))
    return {"loss": config["x"] / stop}, json.dumps({"done": stop}).encode()
"""

LONG_SPEC = """
[study]
name = "long"
metric = "loss"
[asha]
min_resource = 1
max_resource = 3
reduction_factor = 3
max_trials = {trials}
max_attempts = 1
[trainer]
type = "python"
entrypoint = "long_trainer:fit"
[space]
x = {{ uniform = [0.0, 1.0] }}
sleep = {sleep}
"""


def one_long_job(
    tmp_path: Path,
    cleanup: list[Any],
    trainer: str,
    sleep: float,
    env: dict[str, str] | None = None,
) -> tuple[Path, int, tuple[str, ...], Scheduler, subprocess.Popen[str]]:
    """A journaled scheduler on a fixed port with a one-job study of ``trainer`` (the job
    sleeps ``sleep`` s, max_attempts = 1) and one worker: (spec, port, args, scheduler, worker)."""
    (tmp_path / "long_trainer.py").write_text(trainer)
    spec = tmp_path / "study.toml"
    spec.write_text(LONG_SPEC.format(trials=1, sleep=sleep))
    port = free_port()
    args = ("--journal", "j.jsonl", "--trace", "t.jsonl", "--out", "out", "--lease", "20")
    s = Scheduler(spec, tmp_path, *args, port=port)
    cleanup.append(s)
    w = worker(s.target, tmp_path, "w", "--retry-for", "60", env=env)
    cleanup.append(w)
    return spec, port, args, s, w


def test_scheduler_restarts_during_a_long_job_cost_it_nothing(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    """max_attempts = 1, and the scheduler is killed (-9) three times while the one job runs:
    the worker keeps training, re-attaches the job to each new scheduler, and the trial ends
    with its result, no loss traced and no error."""
    spec, port, args, s, w = one_long_job(tmp_path, cleanup, LONG, 12.0)
    deadline = time.monotonic() + 30
    trace = tmp_path / "t.jsonl"
    while not trace.exists() or "assign" not in trace.read_text():
        assert time.monotonic() < deadline, "no job was assigned"
        time.sleep(0.1)
    for _ in range(3):
        time.sleep(1.5)
        s.kill()
        s = Scheduler(spec, tmp_path, *args, port=port)
        cleanup.append(s)
    assert s.wait(timeout=60) == 0, s.proc.stderr.read() if s.proc.stderr else ""
    assert w.wait(timeout=30) == 0
    out, _ = w.communicate()
    assert "re-attached 1 running jobs" in out
    doc = results(tmp_path / "out")
    assert doc["errors"] == [], doc["errors"]
    (trial,) = doc["trials"]
    assert trial["status"] != "failed" and trial["results"][0]["value"] is not None
    events = read_trace(tmp_path / "t.jsonl")
    assert [e["event"] for e in events] == ["assign", "result"]
    assert audit_for(events, load_spec(spec)) == []


def test_a_full_checkpoint_disk_stops_the_study_and_a_restart_finishes_it(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    """The checkpoint store fails (ENOSPC, /dev/full): the scheduler stops deciding, says why,
    writes --out and exits 1; the journal records no result whose state was lost. With the
    disk mended, the same command resumes and finishes the study with every trial."""
    spec = write_study(tmp_path, max_trials=6)
    store = tmp_path / "j.jsonl.ckpt"
    store.mkdir()
    for t in range(6):
        for r in (1, 3):
            (store / f"t{t}-r{r}.tmp").symlink_to("/dev/full")
    args = (
        "--journal",
        "j.jsonl",
        "--trace",
        "t.jsonl",
        "--out",
        "out",
        "--lease",
        "6",
        "--heartbeat",
        "1",
    )
    port = free_port()
    s = Scheduler(spec, tmp_path, *args, port=port)
    cleanup.append(s)
    w = worker(s.target, tmp_path, "w", "--retry-for", "60")
    cleanup.append(w)
    assert s.wait(timeout=60) == 1
    err = s.proc.stderr.read() if s.proc.stderr else ""
    assert "checkpoint store" in err and "No space left on device" in err
    assert "Traceback" not in err
    partial = results(tmp_path / "out")
    assert "No space left" in partial["error"] and partial["interrupted"] is True
    for tmp in store.glob("*.tmp"):
        tmp.unlink()
    s = Scheduler(spec, tmp_path, *args, port=port)
    cleanup.append(s)
    assert s.wait(timeout=120) == 0
    assert w.wait(timeout=60) == 0
    doc = results(tmp_path / "out")
    assert len(doc["trials"]) == 6 and "error" not in doc
    errors = " ".join(e["error"] for e in doc["errors"])
    assert "resumed from" not in errors  # no promotion ran without its checkpoint
    assert audit_for(read_trace(tmp_path / "t.jsonl"), load_spec(spec)) == []


def test_status_says_why_the_scheduler_stopped_deciding(tmp_path: Path) -> None:
    """In-process: the Status a user reads carries the error."""
    from ash.scheduler.driver import open_study
    from ash.scheduler.service import SchedulerService, ServiceConfig

    spec = load_spec(write_study(tmp_path, max_trials=3))
    opened = open_study(spec, journal=tmp_path / "j.jsonl")

    async def run() -> Any:
        service = SchedulerService(opened.driver, ServiceConfig(spec_toml=""))
        service._journal_broken("checkpoint store x: write failed (No space left on device)")
        return service.status()

    import asyncio

    status = asyncio.run(run())
    assert "No space left" in status.error
    opened.driver.close()
    json.dumps({"error": status.error})


def test_embedded_tune_on_a_full_checkpoint_disk_exits_1_and_resumes(tmp_path: Path) -> None:
    spec = write_study(tmp_path, max_trials=6)
    store = tmp_path / "j.jsonl.ckpt"
    store.mkdir()
    for t in range(6):
        for r in (1, 3):
            (store / f"t{t}-r{r}.tmp").symlink_to("/dev/full")
    cmd = [str(BIN / "ash"), "tune", str(spec), "--workers", "1", "--threads", "1", "--quiet"]
    cmd += ["--journal", "j.jsonl", "--out", "out"]
    first = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert first.returncode == 1, first.stderr
    assert "No space left on device" in first.stderr and "Traceback" not in first.stderr
    assert "No space left" in results(tmp_path / "out")["error"]
    for tmp in store.glob("*.tmp"):
        tmp.unlink()
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "ash: resumed py from j.jsonl:" in again.stderr
    doc = results(tmp_path / "out")
    assert len(doc["trials"]) == 6 and "error" not in doc


def test_a_peers_oversized_metrics_fail_that_result_not_the_stream(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    import queue

    import grpc

    from ash.link.wire import scheduler_stub
    from ash.proto import ash_pb2 as pb

    spec = write_study(tmp_path, max_trials=1)
    s = Scheduler(spec, tmp_path, "--out", "out", "--trace", "t.jsonl", "--linger", "0")
    cleanup.append(s)
    out: queue.Queue[pb.WorkerMessage | None] = queue.Queue()
    out.put(pb.WorkerMessage(hello=pb.Hello(worker_id="peer", slots=1)))

    def requests() -> Any:
        while (msg := out.get()) is not None:
            yield msg

    with grpc.insecure_channel(s.target) as channel:
        stream = scheduler_stub(channel).Session(requests())
        for msg in stream:
            if msg.WhichOneof("msg") == "assignment":
                r = pb.Result(job_id=msg.assignment.job_id, ok=True, value=0.5)
                for i in range(500):
                    r.metrics[f"m{i}"].number = float(i)
                out.put(pb.WorkerMessage(result=r))
            elif msg.WhichOneof("msg") == "finished":
                break
        out.put(None)
    assert s.wait(timeout=60) == 0
    doc = results(tmp_path / "out")
    [error] = [e["error"] for e in doc["errors"]]
    assert error.startswith("bad metrics: 500 metrics")
    assert [r["value"] for r in doc["trials"][0]["results"]] == [None]


LOGGED = """
import json, os, time

def fit(config, start, stop, state):
    with open(os.environ["RUNS"], "a") as f:
        f.write(f"{config['x']} {start} {stop}\\n")
    time.sleep(float(config["sleep"]))
    return {"loss": config["x"] / stop}, json.dumps({"done": stop}).encode()
"""


def test_a_result_sent_to_a_scheduler_that_died_is_not_trained_again(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    """The scheduler is frozen (SIGSTOP) while the job finishes, so its result reaches the
    socket but never the journal, then killed: the worker kept the result until it was
    recorded, offers it to the restarted scheduler, and the job is not trained twice."""
    runs = tmp_path / "runs.txt"
    spec, port, args, s, w = one_long_job(tmp_path, cleanup, LOGGED, 2.0, {"RUNS": str(runs)})
    deadline = time.monotonic() + 30
    while not runs.exists():
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    s.proc.send_signal(signal.SIGSTOP)
    time.sleep(3.5)  # the job ends and its result is sent to a scheduler that cannot read it
    s.kill()
    s = Scheduler(spec, tmp_path, *args, port=port)
    cleanup.append(s)
    assert s.wait(timeout=60) == 0
    assert w.wait(timeout=30) == 0
    assert len(runs.read_text().splitlines()) == 1  # trained once
    doc = results(tmp_path / "out")
    assert doc["errors"] == [] and doc["trials"][0]["results"][0]["value"] is not None
    assert [e["event"] for e in read_trace(tmp_path / "t.jsonl")] == ["assign", "result"]


def test_a_worker_scaled_down_hands_its_jobs_back_without_spending_their_attempts(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    """SIGTERM to a worker (scale-down, a spot instance taken back): its jobs are released as
    draining, re-issued to another worker without costing their trials an attempt (with
    max_attempts = 1 each would otherwise fail), and the draining worker gets no new job."""
    (tmp_path / "slow.py").write_text(
        "import time\n"
        "def fit(config, start, stop, state):\n"
        "    time.sleep(1.5)\n"
        "    return {'loss': config['x'] + 1 / stop}, b's'\n"
    )
    spec = tmp_path / "s.toml"
    spec.write_text(
        '[study]\nmetric = "loss"\n[asha]\nmin_resource = 1\nmax_resource = 3\n'
        "max_trials = 4\nmax_attempts = 1\n"
        '[trainer]\ntype = "python"\nentrypoint = "slow:fit"\n[space]\nx = { uniform = [0, 1] }\n'
    )
    out = tmp_path / "out"
    s = Scheduler(spec, tmp_path, "--out", str(out), "--linger", "0")
    cleanup.append(s)
    first = worker(s.target, tmp_path, "leaving", "--slots", "2", "--grace", "0")
    cleanup.append(first)
    time.sleep(2.5)  # both its slots are busy with a job
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    second = worker(s.target, tmp_path, "staying", "--slots", "2")
    cleanup.append(second)
    assert s.wait(timeout=120) == 0
    doc = results(out)
    assert doc["errors"] == []
    assert len(doc["trials"]) == 4 and all(t["results"] for t in doc["trials"])
    assert doc["best"] is not None


def test_a_peer_named_with_escapes_or_markup_is_refused(tmp_path: Path, cleanup: list[Any]) -> None:
    """A worker id or device id with a control character (a terminal escape in ash status) or
    markup (a label in the dashboard's plots) is refused with INVALID_ARGUMENT at hello."""
    import grpc

    from ash.link.wire import scheduler_stub
    from ash.proto import ash_pb2 as pb

    spec = write_study(tmp_path, max_trials=1)
    s = Scheduler(spec, tmp_path, "--linger", "0")
    cleanup.append(s)
    hellos = [
        pb.Hello(worker_id="evil\x1b[2J", slots=1),
        pb.Hello(worker_id="<a href='x'>w</a>", slots=1),
        pb.Hello(worker_id="ok", slots=1, devices=["\x1b]0;pwned\x07"]),
    ]
    with grpc.insecure_channel(s.target) as channel:
        stub = scheduler_stub(channel)
        for hello in hellos:
            with pytest.raises(grpc.RpcError) as info:
                list(stub.Session(iter([pb.WorkerMessage(hello=hello)]), timeout=10))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "printable characters, none of < > &" in (info.value.details() or "")
    assert s.proc.poll() is None  # the scheduler serves on
