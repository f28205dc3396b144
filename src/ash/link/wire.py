"""Conversions between ash's values and the wire messages (proto/ash.proto), with validation.

Configs and metrics travel as typed ``Value``s, never pickles (a result's metrics within the limits
of ash.link.metrics, see ``metrics_from_pb``); checkpoints as bytes with a CRC32
and a size that the receiver checks against its limit. Anything malformed raises ``WireError``
carrying the gRPC status a servicer answers with, so the service maps errors to statuses in one
table and never crashes on a peer's message.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from ash.link.checkpoints import (
    CheckpointPathError,
    CheckpointRef,
    CorruptCheckpoint,
    State,
    read_ref,
    shared_file,
)
from ash.link.metrics import MAX_METRICS, MAX_REPORT_BATCH, check_metrics, check_step
from ash.proto import ash_pb2 as pb
from ash.proto import ash_pb2_grpc as pb_grpc
from ash.scheduler.core.space import Config, Value

if TYPE_CHECKING:
    from ash.scheduler.driver import Assignment


class WireError(ValueError):
    """A peer's message is malformed or out of place; ``code`` is the status to answer with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def invalid(message: str) -> WireError:
    return WireError(grpc.StatusCode.INVALID_ARGUMENT, message)


def precondition(message: str) -> WireError:
    return WireError(grpc.StatusCode.FAILED_PRECONDITION, message)


def scheduler_stub(channel: grpc.Channel | grpc.aio.Channel) -> Any:
    """A client stub of the Scheduler service (the generated code is untyped)."""
    return pb_grpc.SchedulerStub(channel)  # type: ignore[no-untyped-call]


def add_scheduler_servicer(servicer: Any, server: grpc.aio.Server) -> None:
    pb_grpc.add_SchedulerServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]


def value_to_pb(v: Value, out: pb.Value) -> None:
    if isinstance(v, bool):
        out.flag = v
    elif isinstance(v, int):
        out.integer = v
    elif isinstance(v, float):
        out.number = v
    elif isinstance(v, str):
        out.text = v
    else:
        raise TypeError(f"cannot send a value of type {type(v).__name__}")


def value_from_pb(v: pb.Value, where: str) -> Value:
    kind = v.WhichOneof("kind")
    if kind is None:
        raise invalid(f"{where}: empty value")
    got: Value = getattr(v, kind)
    return got


def config_to_pb(config: Mapping[str, Any], out: Any) -> None:
    """Fill a ``map<string, Value>`` field."""
    for k, v in config.items():
        value_to_pb(v, out[k])


def config_from_pb(field: Any, where: str, *, finite: bool = True) -> Config:
    out: Config = {}
    for k, v in field.items():
        val = value_from_pb(v, f"{where}.{k}")
        if finite and isinstance(val, float) and not math.isfinite(val):
            raise invalid(f"{where}.{k}: {val} is not finite")
        out[str(k)] = val
    return out


def metrics_from_pb(field: Any) -> tuple[dict[str, Value | None], str | None]:
    """A peer's ``Result.metrics`` map: ``(metrics, None)``, or ``({}, reason)`` when they break
    the limits of ash.link.metrics (too many, a name or text too long, too many bytes).

    Over the limits is the trainer's fault, not the peer's: the caller records a failed result
    (value None) with ``reason`` as its error instead of answering INVALID_ARGUMENT. Non-finite
    numbers are kept (they are written as null). An empty Value is a malformed message and raises
    WireError (INVALID_ARGUMENT), as ``config_from_pb`` does."""
    if len(field) > MAX_METRICS:  # before converting a peer's map of any size
        return {}, f"bad metrics: {len(field)} metrics (at most {MAX_METRICS})"
    raw = {str(k): value_from_pb(v, f"result.metrics.{_clip(str(k))}") for k, v in field.items()}
    metrics, problem = check_metrics(raw)
    return metrics, None if problem is None else f"bad metrics: {problem}"


def _clip(text: str, n: int = 64) -> str:
    return text if len(text) <= n else text[:n] + "..."


def metrics_to_pb(metrics: Mapping[str, Any], out: Any) -> None:
    for k, v in metrics.items():
        if v is None:
            continue
        if isinstance(v, bool | int | float | str):
            value_to_pb(v, out[k])


MAX_REPORT_JOBS = 1024  # job entries in one ReportBatch


def reports_to_pb(
    batches: Mapping[int, list[tuple[float, Mapping[str, Any]]]],
    out: pb.WorkerMessage | None = None,
) -> pb.WorkerMessage:
    """A ReportBatch message of running jobs' reports (``{job id: [(step, metrics)]}``),
    appended to ``out`` when given (several batches of one job stay separate entries)."""
    msg = out if out is not None else pb.WorkerMessage()
    for job_id, items in batches.items():
        for at in range(0, len(items), MAX_REPORT_BATCH):
            entry = msg.reports.jobs.add(job_id=job_id)
            for step, metrics in items[at : at + MAX_REPORT_BATCH]:
                r = entry.reports.add(step=step)
                metrics_to_pb(metrics, r.metrics)
    if not batches:
        msg.reports.SetInParent()
    return msg


def reports_from_pb(batch: pb.ReportBatch) -> list[tuple[int, list[tuple[float, Any]]]]:
    """A peer's ReportBatch as ``[(job id, [(step, metrics)])]``; WireError (INVALID_ARGUMENT)
    for anything malformed or beyond the limits (too many entries or reports, a non-finite
    step, metrics that break the limits of a result's, none at all)."""
    if not 1 <= len(batch.jobs) <= MAX_REPORT_JOBS:
        raise invalid(f"reports: a batch holds 1..{MAX_REPORT_JOBS} jobs")
    out: list[tuple[int, list[tuple[float, Any]]]] = []
    for entry in batch.jobs:
        if not 1 <= len(entry.reports) <= MAX_REPORT_BATCH:
            raise invalid(f"reports: job {entry.job_id}: 1..{MAX_REPORT_BATCH} reports per entry")
        items: list[tuple[float, Any]] = []
        for r in entry.reports:
            step, problem = check_step(r.step)
            if problem is not None or step is None:
                raise invalid(f"reports: job {entry.job_id}: {problem}")
            if not r.metrics:
                raise invalid(f"reports: job {entry.job_id}: a report without metrics")
            metrics, bad = metrics_from_pb(r.metrics)
            if bad is not None:
                raise invalid(f"reports: job {entry.job_id}: {bad}")
            items.append((step, metrics))
        out.append((entry.job_id, items))
    return out


def checkpoint_to_pb(state: State | None, out: pb.Checkpoint) -> None:
    if state is None:
        return
    if isinstance(state, CheckpointRef):
        out.ref, out.crc32, out.size = state.name, state.crc32, state.size
        return
    out.data = state
    out.crc32 = zlib.crc32(state)
    out.size = len(state)


def fill_assignment(a: Assignment, msg: pb.Assignment) -> None:
    """Fill ``msg`` with job ``a`` (and the checkpoint it resumes from)."""
    j = a.job
    msg.job_id = j.job_id
    msg.trial = j.trial
    msg.rung = j.rung
    msg.bracket = j.bracket
    msg.start = j.start
    msg.stop = j.stop
    msg.attempt = j.attempt
    config_to_pb(j.config, msg.config)
    if a.checkpoint is not None:
        checkpoint_to_pb(a.checkpoint, msg.checkpoint)


def assignment_to_pb(a: Assignment) -> pb.SchedulerMessage:
    """The scheduler's message handing job ``a`` (with its checkpoint) to a worker."""
    msg = pb.SchedulerMessage()
    fill_assignment(a, msg.assignment)
    return msg


def assignments_to_pb(assignments: list[Assignment]) -> pb.SchedulerMessage:
    """One message handing several jobs to a worker that takes batches."""
    msg = pb.SchedulerMessage()
    batch = msg.assignments.assignments
    for a in assignments:
        fill_assignment(a, batch.add())
    return msg


def checkpoint_from_pb(
    msg: Any, field: str, limit: int, shared_dir: Path | None = None
) -> State | None:
    """The checkpoint of ``msg.<field>`` after checking size and checksum, or None if absent.

    A reference (shared-directory mode) is accepted only with ``shared_dir``: its name must be a
    plain file inside it, present, of the announced size."""
    if not msg.HasField(field):
        return None
    ck = getattr(msg, field)
    if ck.ref:
        if shared_dir is None:
            raise invalid("checkpoint by reference, but there is no shared checkpoint directory")
        try:
            path = shared_file(shared_dir, ck.ref)
        except CheckpointPathError as exc:
            raise invalid(str(exc)) from None
        try:
            size = path.stat().st_size
        except OSError:
            raise WireError(grpc.StatusCode.NOT_FOUND, f"checkpoint {ck.ref!r} not found") from None
        if size != ck.size:
            raise WireError(
                grpc.StatusCode.DATA_LOSS,
                f"checkpoint {ck.ref!r}: {size} bytes, announced {ck.size}",
            )
        return CheckpointRef(ck.ref, ck.crc32, ck.size)
    data = bytes(ck.data)
    if len(data) > limit:
        raise WireError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"checkpoint of {len(data)} bytes exceeds the limit of {limit} bytes",
        )
    if ck.size != len(data):
        raise invalid(f"checkpoint size field {ck.size} != {len(data)} bytes received")
    if zlib.crc32(data) != ck.crc32:
        raise WireError(grpc.StatusCode.DATA_LOSS, "checkpoint checksum mismatch")
    return data


def read_shared(shared_dir: Path, ref: CheckpointRef) -> bytes:
    """The bytes of a referenced checkpoint, checked against its size and checksum."""
    try:
        return read_ref(shared_dir, ref)
    except CorruptCheckpoint as exc:
        raise WireError(grpc.StatusCode.DATA_LOSS, str(exc)) from None


def write_shared(shared_dir: Path, name: str, data: bytes) -> CheckpointRef:
    """Write a state into the shared directory atomically; return its reference."""
    path = shared_file(shared_dir, name)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return CheckpointRef(name, zlib.crc32(data), len(data))


def channel_options(max_checkpoint_bytes: int) -> list[tuple[str, int]]:
    """Message size limits and keepalive, the same on both ends of a session."""
    size = max_checkpoint_bytes + (1 << 20)
    return [
        ("grpc.max_receive_message_length", size),
        ("grpc.max_send_message_length", size),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


# what a viewer may get in one message: a whole study (Status with results, a Watch snapshot),
# ~450 bytes a trial, so tens of MB for 100,000 trials
MAX_VIEW_BYTES = 1 << 30


def viewer_channel(address: str, ca: bytes | None, *, aio: bool = False) -> Any:
    """A channel for a viewer of a study (the dashboard's Watch with ``aio``, ``ash.load``'s
    Status): TLS when ``ca`` is given, and able to receive a whole study (``MAX_VIEW_BYTES``)."""
    mod: Any = grpc.aio if aio else grpc
    options = [("grpc.max_receive_message_length", MAX_VIEW_BYTES)]
    if ca is not None:
        return mod.secure_channel(address, grpc.ssl_channel_credentials(ca), options=options)
    return mod.insecure_channel(address, options=options)


def server_options(max_checkpoint_bytes: int) -> list[tuple[str, int]]:
    """``channel_options`` for the server, which may send a viewer a whole study (up to
    ``MAX_VIEW_BYTES``; what it takes in stays bounded by the checkpoint size), and no
    SO_REUSEPORT: gRPC sets it by default, and then a second scheduler on the same port binds
    too and the workers split between them."""
    size = max(max_checkpoint_bytes + (1 << 20), MAX_VIEW_BYTES)
    options = [
        o for o in channel_options(max_checkpoint_bytes) if o[0] != "grpc.max_send_message_length"
    ]
    return [*options, ("grpc.max_send_message_length", size), ("grpc.so_reuseport", 0)]
