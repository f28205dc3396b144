"""Batched messages (ResultBatch, AssignmentBatch) and the scheduler's durability pipeline: a real
ash-scheduler with a raw client, the worker's batching sender on its own, the driver's sync
from another thread, and the checkpoint directory's index."""

from __future__ import annotations

import asyncio
import queue
import threading
from pathlib import Path
from typing import Any

import grpc
from test_grpc import RawSession

from ash.link.checkpoints import CheckpointRef
from ash.link.wire import scheduler_stub
from ash.proto import ash_pb2 as pb
from ash.scheduler.checkpoints import DirectoryStore
from ash.scheduler.driver import open_study
from ash.scheduler.journal import Journal, JournalError
from ash.scheduler.trace import read_trace
from ash.worker.daemon import WorkerDaemon
from ash.worker.stream import BATCH_MAX, Session
from helpers import Scheduler, make_spec, write_study


def _assignments(msg: pb.SchedulerMessage) -> list[pb.Assignment]:
    kind = msg.WhichOneof("msg")
    if kind == "assignment":
        return [msg.assignment]
    assert kind == "assignments", kind
    return list(msg.assignments.assignments)


def test_batches_over_grpc(tmp_path: Path, cleanup: list[Any]) -> None:
    spec = write_study(tmp_path, max_trials=20)
    s = Scheduler(spec, tmp_path, "--journal", "j.jsonl", "--linger", "1")
    cleanup.append(s)
    with grpc.insecure_channel(s.target) as ch:
        status = scheduler_stub(ch).Status
        # a worker that takes batches gets its first four jobs in one message
        a = RawSession(ch)
        a.send(hello=pb.Hello(worker_id="a", slots=4, capabilities=["batch"]))
        welcome = a.recv()
        assert welcome.welcome.batches
        first = a.recv()
        assert first.WhichOneof("msg") == "assignments"
        jobs = _assignments(first)
        assert len(jobs) == 4
        # four results in one batch, one of them twice: counted once each
        batch = pb.ResultBatch()
        for j in [*jobs, jobs[0]]:
            batch.results.add(job_id=j.job_id, ok=True, value=0.5)
        a.send(results=batch)
        again = _assignments(a.recv())
        while len(again) < 4:
            again += _assignments(a.recv())
        assert {j.job_id for j in again}.isdisjoint(j.job_id for j in jobs)
        assert status(pb.StatusRequest()).results == 4
        # an empty batch is refused, on this stream only
        a.send(results=pb.ResultBatch())
        assert a.status() == grpc.StatusCode.INVALID_ARGUMENT

        # a worker that does not say "batch" gets one job per message, and its single results
        # still count
        b = RawSession(ch)
        b.send(hello=pb.Hello(worker_id="b", slots=3))
        assert b.recv().WhichOneof("msg") == "welcome"
        kinds = [b.recv() for _ in range(3)]
        assert [m.WhichOneof("msg") for m in kinds] == ["assignment"] * 3
        for m in kinds:
            b.send(result=pb.Result(job_id=m.assignment.job_id, ok=True, value=0.1))
        assert b.recv().WhichOneof("msg") == "assignment"
        assert status(pb.StatusRequest()).results == 7

        # a batch holding a job id never issued ends that stream
        c = RawSession(ch)
        c.send(hello=pb.Hello(worker_id="c", slots=1, capabilities=["batch"]))
        c.recv()
        c.recv()
        bogus = pb.ResultBatch()
        bogus.results.add(job_id=kinds[0].assignment.job_id + 10**6, ok=True, value=0.0)
        c.send(results=bogus)
        assert c.status() == grpc.StatusCode.INVALID_ARGUMENT
        b.close()
    s.kill()


def _daemon(pending: int) -> WorkerDaemon:
    d = WorkerDaemon("127.0.0.1:1", slots=1, threads=1, worker_id="w")
    for k in range(pending):
        d.pending.put(pb.Assignment(job_id=1000 + k))
    return d


def _result(job_id: int) -> pb.WorkerMessage:
    return pb.WorkerMessage(result=pb.Result(job_id=job_id, ok=True, value=1.0))


def _drain(daemon: WorkerDaemon, session: Session) -> list[pb.WorkerMessage]:
    return list(daemon._requests(session))


def test_worker_sends_ready_results_as_one_batch() -> None:
    session = Session("s", queue.Queue(), batches=True)
    for k in range(3):
        session.out.put(_result(k))
    session.out.put(pb.WorkerMessage(heartbeat=pb.Heartbeat()))
    session.out.put(_result(3))
    session.out.put(None)
    sent = _drain(_daemon(pending=2), session)
    assert [m.WhichOneof("msg") for m in sent] == ["results", "heartbeat", "result"]
    assert [r.job_id for r in sent[0].results.results] == [0, 1, 2]
    assert sent[2].result.job_id == 3


def test_worker_batches_are_capped_and_only_for_a_scheduler_that_takes_them() -> None:
    session = Session("s", queue.Queue(), batches=True)
    for k in range(BATCH_MAX + 1):
        session.out.put(_result(k))
    session.out.put(None)
    sent = _drain(_daemon(pending=1), session)
    assert [len(m.results.results) for m in sent[:1]] == [BATCH_MAX]
    assert sent[1].result.job_id == BATCH_MAX
    old = Session("s", queue.Queue(), batches=False)
    for k in range(3):
        old.out.put(_result(k))
    old.out.put(None)
    assert [m.WhichOneof("msg") for m in _drain(_daemon(pending=1), old)] == ["result"] * 3


def test_worker_without_queued_work_sends_a_result_at_once() -> None:
    """No job queued: the worker would idle until this result brings it work, so the sender
    must not wait for more results to batch."""
    session = Session("s", queue.Queue(), batches=True)
    session.out.put(_result(7))
    got: list[pb.WorkerMessage] = []
    gen = _daemon(pending=0)._requests(session)
    t = threading.Thread(target=lambda: got.append(next(gen)), daemon=True)
    t.start()
    t.join(timeout=10)  # the queue stays open: a lingering sender would block here
    assert [m.WhichOneof("msg") for m in got] == ["result"]
    session.out.put(None)


def test_trace_written_by_a_sync_never_holds_an_event_the_journal_lacks(tmp_path: Path) -> None:
    """A sync in another thread takes the journal's records and the trace's lines together:
    events decided while it writes wait for the next sync (the trace trails the journal)."""
    spec = make_spec(max_trials=50)
    opened = open_study(spec, journal=tmp_path / "j.jsonl", trace=tmp_path / "t.jsonl")
    driver = opened.driver
    journal = driver.journal
    assert journal is not None
    original = Journal.write
    raced: list[bool] = []

    def write_while_deciding(self: Journal, lines: list[str], count: int) -> None:
        if not raced:  # while this sync writes, the service decides another job
            raced.append(driver.request("w1") is not None)
        original(self, lines, count)

    journal.write = write_while_deciding.__get__(journal)  # type: ignore[method-assign]
    assert driver.request("w0") is not None
    t = threading.Thread(target=driver.sync)
    t.start()
    t.join()
    assert raced == [True]
    durable = [ln for ln in (tmp_path / "j.jsonl").read_text().splitlines()[1:] if ln]
    events = list(read_trace(tmp_path / "t.jsonl"))
    assert len(durable) == 1 and len(events) == 1  # w1's assign waits for its record
    driver.sync()
    durable = [ln for ln in (tmp_path / "j.jsonl").read_text().splitlines()[1:] if ln]
    assert len(durable) == 2 and [e["worker"] for e in read_trace(tmp_path / "t.jsonl")] == [
        "w0",
        "w1",
    ]
    driver.close()


def test_directory_store_index_survives_a_restart(tmp_path: Path) -> None:
    root = tmp_path / "ck"
    store = DirectoryStore(root, fsync=False)
    assert store.get(1, 3.0) is None  # nothing stored: no file to find
    store.put(1, 1.0, b"a")
    store.put(1, 3.0, CheckpointRef("big.bin", 7, 10))
    store.put(2, 1.5, b"c")
    again = DirectoryStore(root, fsync=False)
    assert again.get(1, 1.0) == b"a"
    assert again.get(1, 3.0) == CheckpointRef("big.bin", 7, 10)
    assert again.get(2, 1.5) == b"c"
    assert again.get(2, 3.0) is None
    again.put(1, 9.0, b"d")  # a put never deletes: core/retention.py decides, drop deletes
    assert again.get(1, 1.0) == b"a"
    assert again.drop([(1, 1.0, False), (1, 3.0, False)]) == []
    assert again.get(1, 1.0) is None and not (root / "t1-r1.ckpt").exists()
    assert again.get(1, 3.0) is None and again.get(1, 9.0) == b"d"


def _service(tmp_path: Path) -> tuple[Any, Any, Journal]:
    from ash.scheduler.service import SchedulerService, ServiceConfig, WorkerSession

    opened = open_study(make_spec(max_trials=5), journal=tmp_path / "j.jsonl")  # fsync on
    service = SchedulerService(opened.driver, ServiceConfig(spec_toml=""))
    session = WorkerSession("s1", "w", 2, asyncio.Queue(), batch=True)
    service.sessions["s1"] = service.hungry["s1"] = session
    assert opened.driver.journal is not None
    return service, session, opened.driver.journal


def test_assignments_leave_only_once_their_asks_are_durable(tmp_path: Path) -> None:
    service, session, journal = _service(tmp_path)
    gate = threading.Event()
    original = journal.write

    def held_write(lines: list[str], count: int) -> None:
        gate.wait(10)
        original(lines, count)

    journal.write = held_write  # type: ignore[method-assign]

    async def main() -> pb.SchedulerMessage:
        service._dispatch()
        await asyncio.sleep(0.05)  # the committer runs, and waits in the write
        assert session.outbox.empty()  # decided, but the asks are not durable yet
        assert journal.durable < journal.appended
        gate.set()
        msg: pb.SchedulerMessage = await asyncio.wait_for(session.outbox.get(), 10)
        assert journal.durable == journal.appended
        service.close()
        return msg

    msg = asyncio.run(main())
    assert [a.job_id for a in _assignments(msg)] == [0, 1]  # both slots, one message


def test_a_journal_that_cannot_be_written_stops_the_assignments(tmp_path: Path) -> None:
    service, session, journal = _service(tmp_path)

    def failing_write(lines: list[str], count: int) -> None:
        raise JournalError("disk full")

    journal.write = failing_write  # type: ignore[method-assign]

    async def main() -> None:
        service._dispatch()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if service.journal_error is not None:
                break
        service.close()

    asyncio.run(main())
    assert service.journal_error == "disk full" and service.draining
    assert session.outbox.empty()  # nothing the journal lacks ever left
