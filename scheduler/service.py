"""The gRPC scheduler service (grpc.aio): worker sessions, leases, status and watch streams.

A thin servicer in front of the Driver (grpc's route_guide and Vizier style): it validates every
message, maps errors to statuses in one place (``WireError`` carries the code), and never lets a
peer's message crash the server: a bad message ends that stream only, with INVALID_ARGUMENT,
FAILED_PRECONDITION or the fitting status, and the jobs of that stream go back to the core.

Everything runs on one asyncio event loop, so driver calls (microseconds each) are serialised
without contention. A message is handled without waiting for the disk: the assignments it
causes wait in ``_unsent`` for one committer task, which makes the journal durable (write and
fsync in one thread; without fsync, a write on the loop) for everything appended so far and then
sends them: an assignment leaves the process only after the ask that made it is durable, and
however many messages arrive during one fsync share the next one (group commit). Work is pushed
to sessions with free slots ("hungry" sessions, in FIFO order) whenever something may have
changed: a hello, a result, a release, a lost lease.

Capacity: a worker may change how many jobs it takes at once (a Capacity message, once the
Welcome says ``capacity``): ``ash-worker --prefetch auto`` queues jobs ahead of its slots only
while its jobs are too short to wait for each assignment.

Batches: a worker whose Hello lists the capability "batch" gets the assignments decided for it
at once in one AssignmentBatch; the Welcome says ``batches``, and such a worker may send several
results in one ResultBatch, each handled exactly as a Result message of its own. Older peers
keep the one-result, one-assignment messages.

Leases: each session must send something (a heartbeat at least) every ``lease_s``; otherwise,
or when its stream breaks, its jobs are lost (traced ``lost``) and re-issued. A reconnect is a
fresh hello with a new session. Results are idempotent by job id: a duplicate or a late result
(its job already settled or re-issued) is ignored; a result for a job leased to another session
is refused with FAILED_PRECONDITION; a job id never issued is INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import math
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from ash.link import wire
from ash.link.metrics import clip_error
from ash.proto import ash_pb2 as pb
from ash.proto import ash_pb2_grpc as pb_grpc
from ash.scheduler.core import UnknownJobError
from ash.scheduler.driver import Assignment, Driver
from ash.scheduler.journal import JournalError

WATCH_BATCH_S = 0.05  # WatchRequest.batch: at most one message per watcher per this window

MAX_SLOTS = 1024
MAX_THREADS = 65536
MAX_BATCH = 4096  # results in one ResultBatch
MAX_RUNNING = 65536  # jobs a Hello may claim


@dataclass
class WorkerSession:
    sid: str
    worker: str
    slots: int
    outbox: asyncio.Queue[pb.SchedulerMessage | tuple[grpc.StatusCode, str] | None]
    jobs: set[int] = field(default_factory=set)
    last_seen: float = field(default_factory=time.monotonic)
    threads: int = 0  # kernel threads per job the worker announced; 0: it plans them per job
    batch: bool = False  # takes AssignmentBatch messages
    acks: list[int] | None = None  # results recorded, to acknowledge (a worker that says so)
    devices: list[str] = field(default_factory=list)  # Hello.devices (ash-worker --devices)
    verdicts: bool = False  # takes Verdicts (stopping on reports)
    draining: bool = False  # said it is stopping (Release.draining): no more jobs


def _plain(name: str) -> bool:
    """A peer's name fit to show anywhere: no control characters (a terminal's escapes), none of
    ``< > &`` (markup in a page or a plot's labels)."""
    return name.isprintable() and not any(c in name for c in "<>&")


@dataclass
class ServiceConfig:
    spec_toml: str
    lease_s: float = 30.0
    heartbeat_s: float = 5.0
    max_checkpoint_bytes: int = 64 << 20
    checkpoint_dir: Path | None = None  # shared-directory mode


class SchedulerService(pb_grpc.SchedulerServicer):
    def __init__(
        self, driver: Driver, config: ServiceConfig, orphans: tuple[int, ...] = ()
    ) -> None:
        self.driver = driver
        self.config = config
        self.sessions: dict[str, WorkerSession] = {}
        self.hungry: OrderedDict[str, WorkerSession] = OrderedDict()
        self.lease_of: dict[int, str] = {}  # job id -> session id
        self.ids = itertools.count(1)
        self.done = asyncio.Event()
        self.draining = False
        # each watcher's queue -> whether it wants the detail (watchfeed.enrich)
        self.watchers: dict[asyncio.Queue[dict[str, Any] | None], bool] = {}
        self.finished_sent = False
        self.journal_error: str | None = None
        self.failed = asyncio.Event()  # the journal or the checkpoint store failed
        # jobs in flight when the scheduler restarted -> until when their workers may reclaim
        # them (Hello.running); then they are lost without charging their trials an attempt
        deadline = time.monotonic() + config.lease_s
        self.orphans: dict[int, float] = dict.fromkeys(orphans, deadline)
        self.absent: set[str] = set()  # workers whose stream broke and who have not come back
        self.metrics = {"assigned": 0, "completed": 0, "lost": 0, "rejected": 0}
        self.decision_seconds: collections.deque[float] = collections.deque(maxlen=4096)
        self._unsent: list[tuple[WorkerSession, Assignment]] = []  # decided, not yet durable
        self._verdicts: dict[int, WorkerSession] = {}  # jobs whose reports were decided on
        self._acking: dict[str, WorkerSession] = {}  # sessions with results to acknowledge
        self._commit_wanted = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._io: ThreadPoolExecutor | None = None  # the fsync thread
        driver.listen(self._on_event)

    # -- watch ----------------------------------------------------------------------------

    def _on_event(self, event: dict[str, Any]) -> None:
        """Queue ``event`` for every watcher; detailed ones get it enriched now, while the
        driver's state is the event's (a later failure of the same trial has its own error)."""
        if not self.watchers:
            return
        rich = None
        if any(self.watchers.values()):
            from ash.scheduler import watchfeed

            rich = watchfeed.enrich(event, self.driver)
        for q, detail in list(self.watchers.items()):
            if q.qsize() > 10_000:
                self.watchers.pop(q, None)  # a watcher that does not keep up is dropped
                q.put_nowait(None)
            else:
                q.put_nowait(rich if detail and rich is not None else event)

    async def watch_batches(
        self, detail: bool = False, window: float = WATCH_BATCH_S
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The study's events from now until it finishes, those that came together in one list
        (after the first event of a burst, ``window`` seconds pass before the rest are taken:
        a watcher wakes once per burst, not once per event); with ``detail``, a snapshot first
        and configs, metrics and errors added as each event happens (scheduler/watchfeed.py)."""
        from ash.scheduler import watchfeed

        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.watchers[q] = detail
        try:
            if detail:
                yield [watchfeed.snapshot(self.driver, self.sessions.values(), self.journal_error)]
                if self.finished_sent:
                    return
            while True:
                items = [await q.get()]
                if items[0] is not None and window > 0:
                    await asyncio.sleep(window)
                while items[-1] is not None and not q.empty():
                    items.append(q.get_nowait())
                end = items[-1] is None  # the study's end, or a watcher too slow, dropped
                batch = [e for e in items if e is not None]  # enriched when they happened
                if end and detail and self.finished_sent:
                    batch.append({"event": "finished", "t": self.driver.clock()})
                if batch:
                    yield batch
                if end:
                    return
        finally:
            self.watchers.pop(q, None)

    async def watch(self, detail: bool = False) -> AsyncIterator[str]:
        """``watch_batches`` one JSON line per event, as they come."""
        async for batch in self.watch_batches(detail, window=0.0):
            for event in batch:
                yield json.dumps(event)

    # -- sessions -------------------------------------------------------------------------

    async def Session(
        self, request_iterator: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SchedulerMessage]:
        try:
            first = await self._read(request_iterator)
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed message")
            return
        if first is None:
            return
        if self.journal_error is not None:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"scheduler stopped: {self.journal_error}"
            )
        if first.WhichOneof("msg") != "hello":
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "first message must be hello")
        hello = first.hello
        if not 0 < len(hello.worker_id) <= 256 or not _plain(hello.worker_id):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "hello.worker_id: 1-256 printable characters, none of < > &",
            )
        if not 1 <= hello.slots <= MAX_SLOTS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"hello.slots: must be 1..{MAX_SLOTS}"
            )
        if hello.threads > MAX_THREADS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"hello.threads: must be 0..{MAX_THREADS}"
            )
        if len(hello.running) > MAX_RUNNING:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"hello.running: at most {MAX_RUNNING} jobs"
            )
        if len(hello.devices) > MAX_SLOTS or any(
            not 0 < len(d) <= 128 or not _plain(d) for d in hello.devices
        ):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"hello.devices: at most {MAX_SLOTS} ids of 1-128 printable characters, "
                "none of < > &",
            )
        sid = f"s{next(self.ids)}"
        self.absent.discard(hello.worker_id)
        session = WorkerSession(
            sid,
            hello.worker_id,
            hello.slots,
            asyncio.Queue(),
            threads=hello.threads,
            batch="batch" in hello.capabilities,
            acks=[] if "recorded" in hello.capabilities else None,
            devices=list(hello.devices),
            verdicts="verdicts" in hello.capabilities,
        )
        self.sessions[sid] = session
        attached = self._reattach(session, hello.running)
        for job_id in attached:  # a verdict lost with the last scheduler: sent again
            if session.verdicts and self.driver.stopping(job_id):
                self._verdicts[job_id] = session
        welcome = pb.SchedulerMessage(
            welcome=pb.Welcome(
                study=self.driver.spec.name,
                session=sid,
                heartbeat_s=self.config.heartbeat_s,
                lease_s=self.config.lease_s,
                spec_toml=self.config.spec_toml,
                metric=self.driver.spec.metric,
                max_checkpoint_bytes=self.config.max_checkpoint_bytes,
                shared_checkpoints=self.config.checkpoint_dir is not None,
                batches=True,
                attached=attached,
                capacity=True,
                recorded=True,
                reports=True,
                verdicts=session.verdicts and self.driver.stops_on_reports,
            )
        )
        reader = asyncio.create_task(self._reader(session, request_iterator))
        try:
            yield welcome
            if self.finished_sent:
                yield pb.SchedulerMessage(finished=pb.Finished(reason="study finished"))
                return
            self._make_hungry(session)
            self._dispatch()
            while True:
                msg = await session.outbox.get()
                if msg is None:
                    return
                if isinstance(msg, tuple):
                    self.metrics["rejected"] += 1
                    await context.abort(msg[0], msg[1])
                    return
                yield msg
        finally:
            reader.cancel()
            self._drop(session, f"the session of worker {session.worker} ended")
            if not self.done.is_set():
                self._dispatch()

    async def _read(self, it: Any) -> pb.WorkerMessage | None:
        try:
            msg: pb.WorkerMessage = await it.__anext__()
            return msg
        except StopAsyncIteration:
            return None

    async def _reader(self, session: WorkerSession, it: Any) -> None:
        try:
            async for msg in it:
                session.last_seen = time.monotonic()
                try:
                    self._handle(session, msg)
                except wire.WireError as exc:
                    session.outbox.put_nowait((exc.code, str(exc)))
                    return
                except JournalError as exc:
                    self._journal_broken(str(exc))
                    session.outbox.put_nowait((grpc.StatusCode.UNAVAILABLE, str(exc)))
                    return
                except Exception as exc:  # a bug of ours: say so, never end the stream OK
                    traceback.print_exc()
                    session.outbox.put_nowait((grpc.StatusCode.INTERNAL, f"internal: {exc!r}"))
                    return
            session.outbox.put_nowait(None)  # the worker closed its side
        except asyncio.CancelledError:
            raise
        except DecodeError:
            session.outbox.put_nowait((grpc.StatusCode.INVALID_ARGUMENT, "malformed message"))
        except Exception:  # a broken stream: the session ends, its jobs are lost
            session.outbox.put_nowait(None)

    def _handle(self, session: WorkerSession, msg: pb.WorkerMessage) -> None:
        kind = msg.WhichOneof("msg")
        if kind == "heartbeat":
            return
        if kind == "result":
            self._result(session, msg.result)
        elif kind == "results":
            results = msg.results.results
            if not 1 <= len(results) <= MAX_BATCH:
                raise wire.invalid(f"results: a batch holds 1..{MAX_BATCH} results")
            for r in results:
                self._result(session, r)
        elif kind == "reports":
            self._reports(session, msg.reports)
            return  # nothing to decide: the reports are journaled with the next sync
        elif kind == "release":
            job_id = msg.release.job_id
            if self.lease_of.get(job_id) != session.sid:
                raise wire.precondition(f"release: job {job_id} is not leased to this session")
            why = msg.release.reason[:200] or "no reason given"
            self._settle(job_id)
            if msg.release.draining:  # not the trial's fault; and the worker wants no more
                session.draining = True
                self.hungry.pop(session.sid, None)
            else:  # its slot died, say: in the errors under its trial, as embedded and MPI do
                self.driver.note(f"worker {session.worker}: {why}", job_id)
            self.driver.lose(
                job_id,
                charge=not msg.release.draining,
                why=f"handed back by worker {session.worker}: {why}",
            )
            self.metrics["lost"] += 1
        elif kind == "capacity":
            if not 1 <= msg.capacity.slots <= MAX_SLOTS:
                raise wire.invalid(f"capacity.slots: must be 1..{MAX_SLOTS}")
            session.slots = msg.capacity.slots  # jobs beyond it are not taken back: they run
            if len(session.jobs) >= session.slots:
                self.hungry.pop(session.sid, None)
        elif kind == "hello":
            raise wire.precondition("hello: already said; a reconnect is a new stream")
        else:
            raise wire.invalid("empty message")
        self._make_hungry(session)
        self._dispatch()

    def _result(self, session: WorkerSession, r: pb.Result) -> None:
        owner = self.lease_of.get(r.job_id)
        if owner is None:
            if not self.driver.issued(r.job_id):
                raise wire.invalid(f"result: job {r.job_id} was never issued")
            if r.HasField("checkpoint") and r.checkpoint.ref and self.config.checkpoint_dir:
                with contextlib.suppress(wire.WireError):  # its file, unless a kept state's
                    self.driver.discard(
                        wire.checkpoint_from_pb(r, "checkpoint", 0, self.config.checkpoint_dir)
                    )
            return  # a duplicate or late result: counted once already (or re-issued)
        if owner != session.sid:
            raise wire.precondition(f"result: job {r.job_id} is leased to another worker")
        metrics, bad = wire.metrics_from_pb(r.metrics)
        state = wire.checkpoint_from_pb(
            r, "checkpoint", self.config.max_checkpoint_bytes, self.config.checkpoint_dir
        )
        value: float | None = r.value if r.ok and bad is None else None
        if value is not None and not math.isfinite(value):
            value = None
        error = clip_error(bad or r.error) or None
        if r.threads > MAX_THREADS:
            raise wire.invalid(f"result.threads: must be 0..{MAX_THREADS}")
        # a worker that plans threads per job says in its result what the job ran with
        extra = {"threads": r.threads} if r.threads and not session.threads else None
        try:
            self.driver.complete(r.job_id, value, metrics, state, error, extra)
        except UnknownJobError:
            raise wire.invalid(f"result: job {r.job_id} was never issued") from None
        self._settle(r.job_id)  # the lease ends only once the result is recorded
        if session.acks is not None:
            session.acks.append(r.job_id)
            self._acking[session.sid] = session
        self.metrics["completed"] += 1

    def _reports(self, session: WorkerSession, batch: pb.ReportBatch) -> None:
        """Running jobs' intermediate reports: a malformed batch ends the stream
        (INVALID_ARGUMENT); reports of a job settled meanwhile are dropped."""
        for job_id, items in wire.reports_from_pb(batch):
            owner = self.lease_of.get(job_id)
            if owner is None:
                if not self.driver.issued(job_id):
                    raise wire.invalid(f"reports: job {job_id} was never issued")
                continue  # late: the job settled or was re-issued
            if owner != session.sid:
                raise wire.precondition(f"reports: job {job_id} is leased to another worker")
            self.driver.report(job_id, items)
            if session.verdicts and self.driver.stops_on_reports:
                self._verdicts[job_id] = session  # decided: told once the reports are durable
        if self._verdicts and self._committer is not None:
            self._commit_wanted.set()

    def _settle(self, job_id: int) -> None:
        sid = self.lease_of.pop(job_id, None)
        if sid is not None and sid in self.sessions:
            self.sessions[sid].jobs.discard(job_id)

    def _make_hungry(self, session: WorkerSession) -> None:
        if session.draining:
            return
        if session.sid in self.sessions and len(session.jobs) < session.slots:
            self.hungry[session.sid] = session

    def _reattach(self, session: WorkerSession, running: Any) -> list[int]:
        """Give ``session`` the jobs it claims that are orphans of a scheduler restart."""
        attached = []
        for job_id in running:
            if self.orphans.pop(job_id, None) is not None:
                session.jobs.add(job_id)
                self.lease_of[job_id] = session.sid
                attached.append(job_id)
        return attached

    def _drop(self, session: WorkerSession, why: str) -> None:
        """The session is over: its jobs are lost and go back to the core."""
        self.sessions.pop(session.sid, None)
        self.hungry.pop(session.sid, None)
        if not self.finished_sent:
            self.absent.add(session.worker)
        for job_id in sorted(session.jobs):
            if self.lease_of.pop(job_id, None) is not None:
                self.driver.lose(job_id, why=why)
                self.metrics["lost"] += 1
        session.jobs.clear()

    def _dispatch(self) -> None:
        """Give work to hungry sessions; the committer sends it once the asks are durable."""
        out = self._unsent
        while self.hungry and not self.draining:
            sid, session = next(iter(self.hungry.items()))
            t0 = time.perf_counter()
            known = {"threads": session.threads} if session.threads else None
            a = self.driver.request(session.worker, trace_extra=known)
            self.decision_seconds.append(time.perf_counter() - t0)
            if a is None:
                break
            session.jobs.add(a.job.job_id)
            self.lease_of[a.job.job_id] = sid
            self.metrics["assigned"] += 1
            self.hungry.move_to_end(sid)
            if len(session.jobs) >= session.slots:
                del self.hungry[sid]
            out.append((session, a))
        self._commit_wanted.set()
        if self._committer is None:
            self._committer = asyncio.get_running_loop().create_task(self._commit())

    async def _commit(self) -> None:
        """Forever: make what was decided durable, then send the assignments it made."""
        loop = asyncio.get_running_loop()
        journal = self.driver.journal
        threaded = journal is not None and journal.fsync
        if threaded:
            self._io = ThreadPoolExecutor(1, thread_name_prefix="ash-journal")
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted.clear()
            out, self._unsent = self._unsent, []
            verdicts = self._take_verdicts()  # on reports the sync below makes durable
            acks = [(s, s.acks) for s in self._acking.values() if s.acks]
            for s, _ in acks:
                s.acks = []
            self._acking.clear()
            if self.driver.pending():
                try:
                    if threaded:
                        await loop.run_in_executor(self._io, self.driver.sync)
                    else:
                        self.driver.sync()  # a write to the page cache: no thread hop
                except JournalError as exc:
                    self._journal_broken(str(exc))
                    continue
                except Exception as exc:  # e.g. the trace cannot be written: stop deciding
                    self._journal_broken(f"cannot record decisions ({exc!r})")
                    continue
            self._send(out, acks)
            self._send_verdicts(verdicts)
            self._check_finished()

    def _send(
        self,
        out: list[tuple[WorkerSession, Assignment]],
        acks: list[tuple[WorkerSession, list[int]]] | None = None,
    ) -> None:
        """Send what this commit made durable: the assignments, and to a worker that asked,
        which of its results are recorded (along with its assignments when it has some)."""
        by_session: dict[str, list[Assignment]] = {}
        sessions: dict[str, WorkerSession] = {}
        acks = acks or []
        recorded = {s.sid: ids for s, ids in acks}
        for session, a in out:
            if session.batch:
                by_session.setdefault(session.sid, []).append(a)
                sessions[session.sid] = session
            else:
                session.outbox.put_nowait(wire.assignment_to_pb(a))
        for sid, assignments in by_session.items():
            ids = recorded.pop(sid, [])
            if len(assignments) == 1 and not ids:
                sessions[sid].outbox.put_nowait(wire.assignment_to_pb(assignments[0]))
            else:
                msg = wire.assignments_to_pb(assignments)
                msg.assignments.recorded.extend(ids)
                sessions[sid].outbox.put_nowait(msg)
        for session, ids in acks:
            if session.sid in recorded:
                session.outbox.put_nowait(pb.SchedulerMessage(recorded=pb.Recorded(job_ids=ids)))

    def _take_verdicts(self) -> list[tuple[WorkerSession, pb.Verdict]]:
        """The verdicts on the reports recorded so far (before the sync that makes them
        durable): for each job that reported, whether it is stopped and on how many reports."""
        if not self._verdicts:
            return []
        stopped = set(self.driver.take_stops())
        out = []
        for job_id, session in self._verdicts.items():
            stop = job_id in stopped or self.driver.stopping(job_id)
            n = self.driver.kept_reports(job_id)
            out.append((session, pb.Verdict(job_id=job_id, stop=stop, reports=n)))
        self._verdicts = {}
        return out

    def _send_verdicts(self, verdicts: list[tuple[WorkerSession, pb.Verdict]]) -> None:
        by_session: dict[str, tuple[WorkerSession, list[pb.Verdict]]] = {}
        for session, v in verdicts:
            if self.lease_of.get(v.job_id) == session.sid:  # still that session's job
                by_session.setdefault(session.sid, (session, []))[1].append(v)
        for session, vs in by_session.values():
            session.outbox.put_nowait(pb.SchedulerMessage(verdicts=pb.Verdicts(verdicts=vs)))

    def close(self) -> None:
        """Stop the committer (the driver's close syncs what is left)."""
        if self._committer is not None:
            self._committer.cancel()
        if self._io is not None:
            self._io.shutdown(wait=True)

    def _journal_broken(self, why: str) -> None:
        """Stop deciding: nothing more can be recorded. ``failed`` tells the server to end the
        sessions (UNAVAILABLE: workers keep their results and retry, so a scheduler restarted
        on a mended disk gets them back) and to exit non-zero after writing what is done."""
        if self.journal_error is not None:
            return
        self.journal_error = why
        self.draining = True
        self.failed.set()
        print(f"ash-scheduler: error: {why}; no more assignments", file=sys.stderr, flush=True)

    def end_sessions(self, code: grpc.StatusCode, why: str) -> None:
        for s in list(self.sessions.values()):
            s.outbox.put_nowait((code, why))

    def _check_finished(self) -> None:
        if self.finished_sent or not self.driver.finished:
            return
        self.finished_sent = True
        for s in list(self.sessions.values()):
            s.outbox.put_nowait(pb.SchedulerMessage(finished=pb.Finished(reason="study finished")))
            s.outbox.put_nowait(None)
        for q in list(self.watchers):
            q.put_nowait(None)
        self.done.set()

    # -- leases ---------------------------------------------------------------------------

    async def expire_leases(self) -> None:
        """Forever: end sessions silent for longer than lease_s (their jobs are lost)."""
        period = max(0.05, self.config.lease_s / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for job_id, deadline in list(self.orphans.items()):
                if now > deadline:
                    del self.orphans[job_id]
                    self.driver.lose(
                        job_id,
                        charge=False,
                        why="its worker did not come back after the scheduler restarted",
                    )
                    self.metrics["lost"] += 1
            for s in list(self.sessions.values()):
                if now - s.last_seen > self.config.lease_s:
                    self._drop(s, f"worker {s.worker} sent nothing for {self.config.lease_s} s")
                    s.outbox.put_nowait(
                        (
                            grpc.StatusCode.DEADLINE_EXCEEDED,
                            f"no message for {self.config.lease_s} s: lease expired",
                        )
                    )
            if not self.done.is_set():
                self._dispatch()

    # -- read-only calls ------------------------------------------------------------------

    async def Status(
        self, request: pb.StatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.StudyStatus:
        st = self.status()
        if request.results:  # the whole results document (ash.load("host:port"))
            from ash.scheduler.outcome import outcome

            with self.driver.lock:
                doc, _ = outcome(self.driver, interrupted=False)
            st.results_json = json.dumps(doc, allow_nan=False)
        return st

    def status(self) -> pb.StudyStatus:
        st = self.driver.status()
        out = pb.StudyStatus(
            study=st.study,
            algorithm=st.algorithm,
            metric=st.metric,
            mode=st.mode,
            trials=st.trials,
            max_trials=st.max_trials if st.max_trials is not None else -1,
            results=st.results,
            failed=st.failed,
            running=st.running,
            workers=len(self.sessions),
            elapsed_s=st.elapsed,
            finished=st.finished,
            time_limit_s=st.time_limit or 0.0,
            error=self.journal_error or st.error or "",
            reports=st.reports,
        )
        for session in self.sessions.values():
            out.worker_info.add(id=session.worker, slots=session.slots, devices=session.devices)
        if st.latest is not None:
            out.latest.trial = st.latest["trial"]
            out.latest.rung = st.latest["rung"]
            out.latest.step = st.latest["step"]
            wire.metrics_to_pb(st.latest["metrics"], out.latest.metrics)
        for b, counts in enumerate(st.rungs):
            for k, (resource, n) in enumerate(counts):
                out.rungs.add(bracket=b, rung=k, resource=resource, results=n)
        if st.best is not None:
            out.best.trial = st.best["trial"]
            out.best.value = st.best["value"]
            out.best.resource = st.best["resource"]
            out.best.rung = st.best["rung"]
            wire.config_to_pb(st.best["config"], out.best.config)
        return out

    async def Watch(
        self, request: pb.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StudyEvent]:
        if request.batch:
            async for batch in self.watch_batches(request.detail):
                yield pb.StudyEvent(events=[json.dumps(e) for e in batch])
            return
        async for line in self.watch(request.detail):
            yield pb.StudyEvent(json=line)
