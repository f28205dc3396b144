"""One session of ``ash-worker`` on the wire: its state and its outgoing stream.

A session is one bidirectional stream (proto/ash.proto). ``Session`` holds what the worker
queued to send and the jobs the scheduler gave it in this session; ``outgoing`` is the stream's
request iterator, which batches results for a scheduler that takes ResultBatch messages. The
reconnect loop and the jobs' side live in ``ash.worker.daemon``.

The scheduler's Welcome says how large a state it takes inline (``--max-checkpoint-mb``); a
larger one would make it end the stream (RESOURCE_EXHAUSTED), the worker exit, and the job go to
the next worker, which would exit too. So ``outgoing`` sends such a result as the failed result
it is (``oversized``: the trial's error in results.json, counted by fail-fast) and keeps the
session; and a ResultBatch never holds more bytes than that limit (the stream's message size).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc

from ash.proto import ash_pb2 as pb

BATCH_MAX = 64  # results in one ResultBatch
REPORT_JOBS_MAX = 512  # job entries in one merged ReportBatch (the scheduler takes 1024)
BATCH_LINGER_S = 0.002  # how long a result may wait for others while the worker has work queued


@dataclass(frozen=True)
class Broken:
    """How a session's stream broke: its gRPC status, without the call.

    A grpc call that fails raises itself, and the traceback it then carries leads back to it
    (through the reading frame): a reference cycle that, if nothing else runs the collector,
    lives until the interpreter finalizes. There the call's finalizer takes the call's lock,
    which one of grpc's daemon threads (the request consumer, the channel's event loop) may
    hold, stopped mid-way as the interpreter finalizes: the worker hangs at exit instead of
    exiting. So a session keeps only this, and the call goes with the session."""

    code: grpc.StatusCode
    details: str


@dataclass
class Session:
    """One session's state: what the worker sends, and the jobs it got in it."""

    sid: str
    out: queue.Queue[pb.WorkerMessage | None]
    jobs: set[int] = field(default_factory=set)  # assigned in this session, not yet reported
    finished: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    error: Broken | Exception | None = None  # how the stream broke, or a bad message
    batches: bool = False  # the scheduler takes ResultBatch messages (its Welcome says so)
    capacity: bool = False  # the scheduler takes Capacity messages (its Welcome says so)
    recorded: bool = False  # the scheduler acknowledges recorded results (its Welcome says so)
    reports: bool = False  # the scheduler takes ReportBatch messages (its Welcome says so)
    sent: dict[int, pb.WorkerMessage] = field(default_factory=dict)  # results not yet recorded
    max_checkpoint_bytes: int = 0  # the largest inline state the scheduler takes (0: not told)


def oversized(size: int, limit: int) -> str:
    """The error of a result whose state the scheduler would refuse."""
    return (
        f"state of {size} bytes exceeds the scheduler's --max-checkpoint-mb {limit / (1 << 20):g}: "
        "give the scheduler and the workers a shared --checkpoint-dir, or raise "
        "--max-checkpoint-mb (docs/distributed.md#checkpoints)"
    )


def within_limit(msg: pb.WorkerMessage, limit: int) -> pb.WorkerMessage:
    """``msg``, or, for a result whose inline state is over ``limit`` bytes, that result failed
    with ``oversized`` and without its state (``msg`` itself is left as it is: a later session's
    scheduler may take more)."""
    if limit <= 0 or msg.WhichOneof("msg") != "result":
        return msg
    size = len(msg.result.checkpoint.data)
    if size <= limit:
        return msg
    failed = pb.WorkerMessage()
    failed.result.CopyFrom(msg.result)
    failed.result.ClearField("checkpoint")
    failed.result.ok = False
    failed.result.value = 0.0
    failed.result.error = oversized(size, limit)
    return failed


def outgoing(session: Session, idle: Callable[[], bool]) -> Iterator[pb.WorkerMessage]:
    """The session's outgoing messages. To a scheduler that takes batches, results that are
    ready together go as one ResultBatch; while the worker still has jobs queued (so nothing
    waits for this result to get work) a result may wait up to BATCH_LINGER_S for others.
    Without queued work, or to an older scheduler, each result goes at once on its own."""
    out = session.out
    carry: pb.WorkerMessage | None = None
    while True:
        msg = carry if carry is not None else out.get()
        carry = None
        if msg is None:
            return
        limit = session.max_checkpoint_bytes
        msg = within_limit(msg, limit)
        if msg.WhichOneof("msg") == "reports":
            msg, carry = _coalesce_reports(msg, out)
            yield msg
            continue
        if not session.batches or msg.WhichOneof("msg") != "result":
            yield msg
            continue
        batch = [msg]
        size = msg.ByteSize()
        deadline = 0.0
        while len(batch) < BATCH_MAX:
            try:
                nxt = out.get_nowait()
            except queue.Empty:
                if idle():
                    break
                now = time.monotonic()
                if not deadline:
                    deadline = now + BATCH_LINGER_S
                if now >= deadline:
                    break
                try:
                    nxt = out.get(timeout=deadline - now)
                except queue.Empty:
                    break
            if nxt is None:
                out.put(None)  # still the end, after this batch
                break
            nxt = within_limit(nxt, limit)
            if nxt.WhichOneof("msg") != "result" or (limit and size + nxt.ByteSize() > limit):
                carry = nxt  # goes next, on its own (or first in the next batch)
                break
            size += nxt.ByteSize()
            batch.append(nxt)
        if len(batch) == 1:
            yield batch[0]
        else:
            many = pb.WorkerMessage()
            many.results.results.extend(m.result for m in batch)
            yield many


def _coalesce_reports(
    first: pb.WorkerMessage, out: queue.Queue[pb.WorkerMessage | None]
) -> tuple[pb.WorkerMessage, pb.WorkerMessage | None]:
    """``first`` (a ReportBatch) with the report messages queued right behind it merged in (up
    to REPORT_JOBS_MAX entries), and the message that ended the run (sent next), if any."""
    jobs = len(first.reports.jobs)
    while jobs < REPORT_JOBS_MAX:
        try:
            nxt = out.get_nowait()
        except queue.Empty:
            return first, None
        if nxt is None or nxt.WhichOneof("msg") != "reports":
            if nxt is None:
                out.put(None)
                return first, None
            return first, nxt
        first.reports.jobs.extend(nxt.reports.jobs)
        jobs += len(nxt.reports.jobs)
    return first, None
