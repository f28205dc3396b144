"""Property-based fuzzing of the scheduler's RPCs: malformed, oversized, out-of-order and
wrongly typed messages get a status on their own stream, the server keeps serving, and the
core's invariants hold afterwards (the trace still obeys Algorithm 2)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ash.link.wire import scheduler_stub
from ash.proto import ash_pb2 as pb
from ash.scheduler.audit import audit_for
from ash.scheduler.trace import read_trace
from ash.spec import load_spec
from helpers import Scheduler, worker, write_study

# Statuses a peer's bad message may earn; never INTERNAL or UNKNOWN (a crash in a handler).
ANSWERS = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}

job_ids = st.one_of(st.integers(0, 60), st.integers(0, 2**64 - 1))
floats = st.floats(allow_nan=True, allow_infinity=True)
values = st.one_of(
    floats.map(lambda x: pb.Value(number=x)),
    st.integers(-(2**63), 2**63 - 1).map(lambda x: pb.Value(integer=x)),
    st.text(max_size=50).map(lambda x: pb.Value(text=x)),
    st.booleans().map(lambda x: pb.Value(flag=x)),
    st.just(pb.Value()),
)


@st.composite
def checkpoints(draw: st.DrawFn) -> pb.Checkpoint:
    data = draw(st.binary(max_size=64))
    good = draw(st.booleans())
    crc = zlib.crc32(data) if good else draw(st.integers(0, 2**32 - 1))
    size = len(data) if good or draw(st.booleans()) else draw(st.integers(0, 2**64 - 1))
    return pb.Checkpoint(data=data, crc32=crc, size=size)


@st.composite
def results(draw: st.DrawFn) -> pb.WorkerMessage:
    r = pb.Result(
        job_id=draw(job_ids),
        ok=draw(st.booleans()),
        value=draw(floats),
        error=draw(st.text(max_size=30)),
    )
    for k, v in draw(st.dictionaries(st.text(max_size=10), values, max_size=3)).items():
        r.metrics[k].CopyFrom(v)
    if draw(st.booleans()):
        r.checkpoint.CopyFrom(draw(checkpoints()))
    return pb.WorkerMessage(result=r)


@st.composite
def report_batches(draw: st.DrawFn) -> pb.WorkerMessage:
    msg = pb.WorkerMessage()
    msg.reports.SetInParent()
    for _ in range(draw(st.integers(0, 3))):
        entry = msg.reports.jobs.add(job_id=draw(job_ids))
        for _ in range(draw(st.integers(0, 3))):
            r = entry.reports.add(step=draw(floats))
            for k, v in draw(st.dictionaries(st.text(max_size=10), values, max_size=3)).items():
                r.metrics[k].CopyFrom(v)
    return msg


hellos = st.builds(
    lambda w, s, c, r: pb.WorkerMessage(
        hello=pb.Hello(worker_id=w, slots=s, capabilities=c, running=r)
    ),
    st.one_of(st.text(min_size=1, max_size=20), st.just(""), st.just("x" * 300)),
    st.one_of(st.integers(1, 4), st.integers(0, 2**32 - 1)),
    st.lists(st.text(max_size=5), max_size=3),
    st.lists(job_ids, max_size=4),  # claims of jobs from before a restart
)
messages = st.one_of(
    hellos,
    results(),
    report_batches(),
    st.builds(
        lambda j: pb.WorkerMessage(heartbeat=pb.Heartbeat(job_ids=j)), st.lists(job_ids, max_size=4)
    ),
    st.builds(
        lambda j, r: pb.WorkerMessage(release=pb.Release(job_id=j, reason=r)),
        job_ids,
        st.text(max_size=20),
    ),
    st.just(pb.WorkerMessage()),
)
sessions = st.tuples(st.one_of(hellos, messages), st.lists(messages, max_size=6))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Scheduler, Path]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    spec = write_study(tmp, max_trials=150)
    s = Scheduler(
        spec, tmp, "--trace", "t.jsonl", "--lease", "5", "--max-checkpoint-mb", "0.00003"
    )  # ~31 bytes: oversized checkpoints too
    try:
        yield s, tmp
    finally:
        s.kill()


def run_session(target: str, msgs: list[pb.WorkerMessage]) -> grpc.StatusCode:
    with grpc.insecure_channel(target) as ch:
        call = scheduler_stub(ch).Session(iter(msgs), timeout=10)
        try:
            for _ in call:
                pass
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            return code
    return grpc.StatusCode.OK


def test_raw_garbage_bytes_do_not_hurt(server: tuple[Scheduler, Path]) -> None:
    s, _ = server
    with grpc.insecure_channel(s.target) as ch:
        raw = ch.stream_stream(
            "/ash.v1.Scheduler/Session",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        hello = pb.WorkerMessage(hello=pb.Hello(worker_id="g", slots=1)).SerializeToString()
        for junk in ([b"\xff\xff\xff"], [b"\x0a\x05hello"], [b"\x00" * 1000], [hello, b"\xff"]):
            with pytest.raises(grpc.RpcError) as info:
                list(raw(iter(junk), timeout=10))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert s.proc.poll() is None


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(session=sessions)
def test_every_message_gets_a_status_and_the_server_lives(
    server: tuple[Scheduler, Path], session: tuple[pb.WorkerMessage, list[pb.WorkerMessage]]
) -> None:
    s, _ = server
    first, rest = session
    code = run_session(s.target, [first, *rest])
    assert code in ANSWERS, code
    assert s.proc.poll() is None


def test_after_the_fuzz_the_study_still_finishes_correctly(server: tuple[Scheduler, Path]) -> None:
    s, tmp = server
    with grpc.insecure_channel(s.target) as ch:
        status: Any = scheduler_stub(ch).Status(pb.StatusRequest(), timeout=10)
    assert status.study == "py"
    w = worker(s.target, tmp, "finisher")
    try:
        assert s.wait(timeout=300) == 0
        assert w.wait(timeout=60) == 0
    finally:
        if w.poll() is None:
            w.kill()
    events = list(read_trace(tmp / "t.jsonl"))
    assert audit_for(events, load_spec(tmp / "study.toml")) == []
    per_job = {}
    for e in events:
        if e["event"] == "result":
            assert e["job"] not in per_job, "a result counted twice"
            per_job[e["job"]] = e
