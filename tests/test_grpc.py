"""The gRPC service with real processes: a real ash-scheduler on 127.0.0.1 port 0, real
ash-worker subprocesses, and a raw client for the protocol's edges."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ash.link.wire import scheduler_stub
from ash.proto import ash_pb2 as pb
from ash.scheduler.audit import audit_for
from ash.scheduler.trace import read_trace
from ash.spec import load_spec
from helpers import BIN, EXAMPLES, Scheduler, results, worker, write_study


def test_study_end_to_end_with_health_and_reflection(tmp_path: Path, cleanup: list[Any]) -> None:
    spec = write_study(tmp_path, max_trials=30)
    s = Scheduler(spec, tmp_path, "--out", "out", "--trace", "t.jsonl")
    cleanup.append(s)
    with grpc.insecure_channel(s.target) as ch:
        check = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        reply = next(
            stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
        )
        names = {svc.name for svc in reply.list_services_response.service}
        assert {"ash.v1.Scheduler", "grpc.health.v1.Health"} <= names
    workers = [worker(s.target, tmp_path, f"w{i}") for i in range(2)]
    cleanup.extend(workers)
    assert s.wait() == 0
    for w in workers:
        assert w.wait(timeout=30) == 0, w.stderr.read() if w.stderr else ""
    doc = results(tmp_path / "out")
    assert len(doc["trials"]) == 30 and doc["best"]["resource"] == 9
    events = list(read_trace(tmp_path / "t.jsonl"))
    assert audit_for(events, load_spec(spec)) == []
    assert {e["worker"] for e in events if e["event"] == "assign"} == {"w0", "w1"}
    errors = " ".join(e["error"] for e in doc["errors"])
    assert "resumed from" not in errors  # every promotion carried its checkpoint over the wire
    crashed = {t["trial"] for t in doc["trials"] if t["config"]["mode"] == "crash"}
    assert crashed
    for trial in crashed:  # each death is in the errors under its trial, then the verdict
        mine = [e["error"] for e in doc["errors"] if e["trial"] == trial]
        died = r"worker w[01]: slot process died \(exit code 9\)"
        assert len(mine) == 3 and all(re.fullmatch(died, e) for e in mine[:2]), mine
        assert "lost 2 times, the max_attempts of this study" in mine[2], mine


def test_worker_killed_mid_job_is_released(tmp_path: Path, cleanup: list[Any]) -> None:
    spec = write_study(tmp_path, max_trials=12)
    s = Scheduler(
        spec, tmp_path, "--out", "out", "--trace", "t.jsonl", "--lease", "3", "--linger", "1"
    )
    cleanup.append(s)
    victim = worker(s.target, tmp_path, "victim", env={"SLEEP": "60"})
    cleanup.append(victim)
    time.sleep(2.0)  # the victim now holds its first job
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    survivor = worker(s.target, tmp_path, "survivor")
    cleanup.append(survivor)
    assert s.wait() == 0
    assert survivor.wait(timeout=30) == 0, survivor.stderr.read() if survivor.stderr else ""
    events = list(read_trace(tmp_path / "t.jsonl"))
    assert audit_for(events, load_spec(spec)) == []
    held = [e for e in events if e["event"] == "assign" and e["worker"] == "victim"]
    assert len(held) == 1  # the victim hung in its first job
    key = (held[0]["trial"], held[0]["rung"])
    first_lost = next(e for e in events if e["event"] == "lost")
    assert (first_lost["trial"], first_lost["rung"]) == key
    again = [
        e["worker"] for e in events if e["event"] == "assign" and (e["trial"], e["rung"]) == key
    ]
    assert again[:2] == ["victim", "survivor"]  # re-leased to the survivor
    doc = results(tmp_path / "out")
    assert len(doc["trials"]) == 12


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_scheduler_killed_and_restarted_on_its_journal(tmp_path: Path, cleanup: list[Any]) -> None:
    spec = write_study(tmp_path, max_trials=40)
    port = free_port()
    args = ("--out", "out", "--trace", "t.jsonl", "--journal", "j.jsonl")
    s = Scheduler(spec, tmp_path, *args, port=port)
    cleanup.append(s)
    env = {"SLOW": "0.02"}
    workers = [worker(s.target, tmp_path, f"w{i}", "--retry-for", "60", env=env) for i in range(2)]
    cleanup.extend(workers)
    trace = tmp_path / "t.jsonl"
    for round_ in range(2):  # kill -9 twice at different moments
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if trace.exists() and trace.read_text().count("\n") >= 20 * (round_ + 1):
                break
            time.sleep(0.05)
        before = [e for e in read_trace(tmp_path / "t.jsonl") if e["event"] == "result"]
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
        s = Scheduler(spec, tmp_path, *args, port=port)
        cleanup.append(s)
    assert s.wait() == 0
    for w in workers:
        assert w.wait(timeout=60) == 0
    events = list(read_trace(tmp_path / "t.jsonl"))
    assert audit_for(events, load_spec(spec)) == []
    after = [e for e in events if e["event"] == "result"]
    assert before == after[: len(before)]  # nothing traced before the crash was lost
    assert any(e["event"] == "lost" for e in events)  # jobs in flight at a crash were re-issued
    doc = results(tmp_path / "out")
    assert len(doc["trials"]) == 40
    counted = sum(len(t["results"]) for t in doc["trials"])
    assert counted == len(after)  # every result counted exactly once
    errors = " ".join(e["error"] for e in doc["errors"])
    assert "resumed from" not in errors  # promoted trials resumed from the right checkpoint


# -- the protocol's edges, with a raw client -------------------------------------------------


class RawSession:
    """A hand-driven worker session."""

    def __init__(self, channel: grpc.Channel) -> None:
        import queue

        self.q: queue.Queue[pb.WorkerMessage | None] = queue.Queue()

        def gen() -> Iterator[pb.WorkerMessage]:
            while (m := self.q.get()) is not None:
                yield m

        self.call = scheduler_stub(channel).Session(gen())

    def send(self, **kw: Any) -> None:
        self.q.put(pb.WorkerMessage(**kw))

    def recv(self) -> pb.SchedulerMessage:
        msg: pb.SchedulerMessage = next(self.call)
        return msg

    def status(self) -> grpc.StatusCode:
        try:
            for _ in self.call:
                pass
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    def close(self) -> None:
        self.q.put(None)


def hello(name: str, slots: int = 1) -> pb.Hello:
    return pb.Hello(worker_id=name, slots=slots)


def test_duplicate_late_and_malformed_messages(tmp_path: Path, cleanup: list[Any]) -> None:
    spec = write_study(tmp_path, max_trials=6)
    s = Scheduler(spec, tmp_path, "--out", "out", "--trace", "t.jsonl", "--linger", "1")
    cleanup.append(s)
    with grpc.insecure_channel(s.target) as ch:
        status = scheduler_stub(ch).Status
        a = RawSession(ch)
        a.send(hello=hello("a"))
        assert a.recv().WhichOneof("msg") == "welcome"
        job = a.recv().assignment
        ok = pb.Result(job_id=job.job_id, ok=True, value=0.5)
        a.send(result=ok)
        a.send(result=ok)  # a duplicate: counted once, the stream lives on
        nxt = a.recv().assignment
        assert nxt.job_id != job.job_id
        assert status(pb.StatusRequest()).results == 1

        # the first message must be a hello
        bad = RawSession(ch)
        bad.send(heartbeat=pb.Heartbeat())
        assert bad.status() == grpc.StatusCode.FAILED_PRECONDITION
        bad = RawSession(ch)
        bad.send(hello=hello("zero", slots=0))
        assert bad.status() == grpc.StatusCode.INVALID_ARGUMENT

        # b takes a job; a's result for b's job is refused, on a's stream only
        b = RawSession(ch)
        b.send(hello=hello("b"))
        b.recv()
        bjob = b.recv().assignment
        a.send(result=pb.Result(job_id=bjob.job_id, ok=True, value=1.0))
        assert a.status() == grpc.StatusCode.FAILED_PRECONDITION  # a's job nxt is now lost

        # a job id never issued, and a checkpoint whose checksum is wrong
        c = RawSession(ch)
        c.send(hello=hello("c"))
        c.recv()
        cjob = c.recv().assignment
        c.send(
            result=pb.Result(
                job_id=cjob.job_id,
                ok=True,
                value=0.1,
                checkpoint=pb.Checkpoint(data=b"abc", crc32=1, size=3),
            )
        )
        assert c.status() == grpc.StatusCode.DATA_LOSS
        d = RawSession(ch)
        d.send(hello=hello("d"))
        d.recv()
        d.recv()
        d.send(result=pb.Result(job_id=10**9, ok=True, value=0.1))
        assert d.status() == grpc.StatusCode.INVALID_ARGUMENT

        # a late result (its job was lost when c's stream ended) is ignored on a live stream
        e = RawSession(ch)
        e.send(hello=hello("e"))
        e.recv()
        e.recv()
        before = status(pb.StatusRequest()).results
        e.send(result=pb.Result(job_id=cjob.job_id, ok=True, value=0.0))
        e.send(heartbeat=pb.Heartbeat())
        time.sleep(0.3)
        assert status(pb.StatusRequest()).results == before
        for sess in (b, e):
            sess.close()
    # the server kept serving: a real worker finishes the study
    w = worker(s.target, tmp_path, "finisher")
    cleanup.append(w)
    assert s.wait() == 0
    events = list(read_trace(tmp_path / "t.jsonl"))
    assert audit_for(events, load_spec(spec)) == []
    assert sum(1 for e in events if e["event"] == "lost") >= 3


def test_contract_inproc_and_grpc_give_the_same_study(tmp_path: Path) -> None:
    """One transport contract: with one sequential worker the core sees the same inputs in the
    same order, so both transports must produce the very same trials and values."""
    text = (EXAMPLES / "iris.toml").read_text().replace("max_trials = 200", "max_trials = 25")
    spec = tmp_path / "iris.toml"
    spec.write_text(text)
    docs = {}
    for transport in ("inproc", "grpc"):
        out = tmp_path / transport
        proc = subprocess.run(
            [
                str(BIN / "ash"),
                "tune",
                str(spec),
                "--workers",
                "1",
                "--threads",
                "1",
                "--transport",
                transport,
                *(["--prefetch", "0"] if transport == "grpc" else []),  # decided one by one
                "--out",
                str(out),
                "--trace",
                f"{out}.jsonl",
                "--quiet",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        docs[transport] = results(out)
        assert audit_for(read_trace(f"{out}.jsonl"), load_spec(spec)) == []

    def strip(doc: dict[str, Any]) -> list[Any]:
        return [
            (
                t["trial"],
                t["config"],
                t["status"],
                [(r["rung"], r["resource"], r["value"]) for r in t["results"]],
            )
            for t in doc["trials"]
        ]

    assert strip(docs["inproc"]) == strip(docs["grpc"])
    assert docs["inproc"]["best"] == docs["grpc"]["best"]


def test_sigterm_drains_and_resume_continues(tmp_path: Path, cleanup: list[Any]) -> None:
    spec = write_study(tmp_path, max_trials=30)
    args = ("--out", "out", "--trace", "t.jsonl", "--journal", "j.jsonl")
    port = free_port()
    s = Scheduler(spec, tmp_path, *args, port=port)
    cleanup.append(s)
    # jobs of 0.1 s: the study outlasts the 1.5 s before SIGTERM (and no prefetch)
    w = worker(s.target, tmp_path, "w", "--retry-for", "60", env={"SLEEP": "0.1"})
    cleanup.append(w)
    time.sleep(1.5)
    s.proc.send_signal(signal.SIGTERM)
    assert s.wait(timeout=60) == 0
    partial = results(tmp_path / "out")
    assert partial["interrupted"] is True and len(partial["trials"]) < 30
    s = Scheduler(spec, tmp_path, *args, port=port)
    cleanup.append(s)
    assert s.wait() == 0
    assert w.wait(timeout=60) == 0
    doc = results(tmp_path / "out")
    assert len(doc["trials"]) == 30 and doc["interrupted"] is False
    assert audit_for(read_trace(tmp_path / "t.jsonl"), load_spec(spec)) == []


def test_worker_gives_up_on_an_absent_scheduler(tmp_path: Path) -> None:
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(BIN / "ash-worker"), "--scheduler", f"127.0.0.1:{free_port()}", "--retry-for", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 3
    assert "unreachable" in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - t0 < 30


def test_status_command(tmp_path: Path, cleanup: list[Any]) -> None:
    spec = write_study(tmp_path, max_trials=4)
    s = Scheduler(spec, tmp_path)
    cleanup.append(s)
    proc = subprocess.run(
        [str(BIN / "ash"), "status", "--scheduler", s.target, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    snap = json.loads(proc.stdout)
    assert snap["study"] == "py" and snap["trials"] == 0 and snap["max_trials"] == 4
    s.proc.send_signal(signal.SIGTERM)
    assert s.wait() == 0
    proc = subprocess.run(
        [str(BIN / "ash"), "status", "--scheduler", s.target, "--once"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "UNAVAILABLE" in proc.stderr


if sys.platform != "linux":  # pragma: no cover
    pytest.skip("process tests need Linux", allow_module_level=True)


def test_network_drops_and_stalls(tmp_path: Path, cleanup: list[Any]) -> None:
    """Workers behind a proxy that drops every connection for a while, then stalls them
    without closing: workers reconnect, leases expire and re-issue, nothing counts twice."""
    from helpers import FaultyProxy

    spec = write_study(tmp_path, max_trials=40)
    s = Scheduler(
        spec, tmp_path, "--out", "out", "--trace", "t.jsonl", "--lease", "2", "--heartbeat", "0.3"
    )
    cleanup.append(s)
    proxy = FaultyProxy(s.port)
    try:
        workers = [
            worker(proxy.target, tmp_path, f"w{i}", "--retry-for", "60", env={"SLEEP": "0.05"})
            for i in range(2)
        ]
        cleanup.extend(workers)
        time.sleep(1.5)
        proxy.set("drop")
        time.sleep(2.5)
        proxy.set("forward")
        time.sleep(1.5)
        proxy.set("stall")
        time.sleep(4.0)  # longer than the lease: the scheduler gives the jobs back
        proxy.set("forward")
        assert s.wait(timeout=180) == 0
        for w in workers:
            assert w.wait(timeout=60) == 0
    finally:
        proxy.close()
    events = list(read_trace(tmp_path / "t.jsonl"))
    assert audit_for(events, load_spec(spec)) == []
    assert sum(e["event"] == "lost" for e in events) >= 2
    jobs = [e["job"] for e in events if e["event"] == "result"]
    assert len(jobs) == len(set(jobs))  # no result counted twice
    doc = results(tmp_path / "out")
    assert len(doc["trials"]) == 40
    assert sum(len(t["results"]) for t in doc["trials"]) == len(jobs)


def test_shared_directory_checkpoints(tmp_path: Path, cleanup: list[Any]) -> None:
    """Large states go through a shared directory by reference; promoted trials still resume
    from the right state, and a reference cannot name a path outside the directory."""
    spec = write_study(tmp_path, max_trials=20)
    shared = tmp_path / "shared"
    s = Scheduler(spec, tmp_path, "--out", "out", "--checkpoint-dir", str(shared), "--linger", "1")
    cleanup.append(s)
    with grpc.insecure_channel(s.target) as ch:
        for name in ("../../etc/passwd", "/etc/passwd", "a/b", ".hidden", "x" * 300):
            bad = RawSession(ch)
            bad.send(hello=hello("evil"))
            bad.recv()
            job = bad.recv().assignment
            bad.send(
                result=pb.Result(
                    job_id=job.job_id,
                    ok=True,
                    value=0.1,
                    checkpoint=pb.Checkpoint(ref=name, crc32=0, size=4),
                )
            )
            assert bad.status() == grpc.StatusCode.INVALID_ARGUMENT, name
    w = worker(s.target, tmp_path, "w", "--checkpoint-dir", str(shared), "--inline-mb", "0")
    cleanup.append(w)
    assert s.wait() == 0
    assert w.wait(timeout=30) == 0
    doc = results(tmp_path / "out")
    assert len(doc["trials"]) == 20
    assert not [e for e in doc["errors"] if "resumed from" in e["error"]]
    assert any(shared.glob("t*-r*-j*.ckpt"))


def test_stay_keeps_serving_after_the_study(tmp_path: Path, cleanup: list[Any]) -> None:
    spec = write_study(tmp_path, max_trials=4)
    s = Scheduler(spec, tmp_path, "--out", "out", "--stay", "--linger", "0")
    cleanup.append(s)
    w = worker(s.target, tmp_path, "w")
    cleanup.append(w)
    assert w.wait(timeout=60) == 0
    deadline = time.monotonic() + 30
    while not (tmp_path / "out/results.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert results(tmp_path / "out")["interrupted"] is False
    assert s.proc.poll() is None  # still serving
    with grpc.insecure_channel(s.target) as ch:
        assert scheduler_stub(ch).Status(pb.StatusRequest(), timeout=10).finished
    again = worker(s.target, tmp_path, "late")  # a restarted worker hears it is finished
    cleanup.append(again)
    assert again.wait(timeout=60) == 0
    s.proc.send_signal(signal.SIGTERM)
    assert s.wait(timeout=30) == 0
