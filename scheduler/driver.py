"""The driver: the one place where the sans-I/O core meets the world.

Every transport (the embedded pool, the gRPC service, the MPI loop) talks to a Driver, never to
the core directly. The driver reads the clock, calls the core, and records what happened: the
journal (inputs, for resume), the trace, the results, and the checkpoints that promoted trials
resume from. Its methods take a lock, so service threads may call it concurrently; each call is
short (O(log n)) and does no blocking I/O: journal records and trace lines are buffered, and
``sync`` makes them durable. A transport calls ``sync`` before it lets anything a decision caused
leave the process (an assignment, an acknowledgement), so after a crash the journal holds every
decision anyone saw and the trace holds no event the journal lacks.

Stopping on reports (``[asha] stop_on = "reports"``): ``report`` hands the study metric of each
kept report to the core (``Scheduler.milestone``), which may stop the running job; the stops
decided wait in ``take_stops`` for the transport, which tells the trainers once ``sync`` made the
reports that caused them durable. A stopped job's result (or its loss) settles it at the rung
it stopped at, with its last report when the result itself is lost.

A continued study may raise its budget (``amend``: ``max_trials``, ``time_limit_s``); the
change is journaled (an ``x`` record) and replayed at the same point.

Resume (``resume``) replays the journal's records through the same methods with the clock set
to each record's time, which rebuilds the core exactly (it is deterministic); trace events the
trace file already holds are not written again. Jobs that were in flight at the crash are then
lost (journaled and traced as ``lost``) and re-issued to the next worker that asks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ash.link.checkpoints import State
from ash.scheduler.checkpoints import CheckpointStore, DirectoryStore, MemoryStore
from ash.scheduler.core import Config, Job, Scheduler, UnknownJobError
from ash.scheduler.core.retention import Drop, Retention
from ash.scheduler.core.rungs import score_of
from ash.scheduler.core.space import SpaceError
from ash.scheduler.journal import (
    Journal,
    JournalError,
    amended,
    budget,
    enqueued,
    read_only,
    spec_digest,
)
from ash.scheduler.results import Results
from ash.scheduler.trace import TraceError, TraceWriter, count_events, refuse_used
from ash.spec import SpecError, StudySpec, parse_spec

DROP_BATCH = 64  # checkpoints deleted at once on a store that fsyncs
DROP_SECONDS = 0.5  # ... or after this long


class CheckpointStoreError(JournalError):
    """The checkpoint store failed (a full disk): the driver records and decides nothing more."""


@dataclass(frozen=True)
class Status:
    """A study as it stands: what Status, the progress display and the metrics show."""

    study: str
    algorithm: str
    metric: str
    mode: str
    trials: int
    max_trials: int | None
    results: int
    failed: int
    running: int
    elapsed: float
    time_limit: float | None
    finished: bool
    rungs: list[list[tuple[float, int]]]  # (resource, results) per rung, per bracket
    best: dict[str, Any] | None
    error: str | None  # why nothing more can be recorded (a full disk), or None
    workers: int | None = None  # connected workers, where a transport counts them
    reports: int = 0  # intermediate reports (ctx.report) recorded
    latest: dict[str, Any] | None = None  # the last of them: trial, rung, step, metrics
    devices: dict[str, list[str]] | None = None  # worker -> its --devices, where told


@dataclass(frozen=True)
class Assignment:
    job: Job
    worker: str
    checkpoint: State | None
    t: float = 0.0  # when it was decided (seconds since the start)


class Driver:
    def __init__(
        self,
        spec: StudySpec,
        *,
        trace: TraceWriter | None = None,
        results: Results | None = None,
        journal: Journal | None = None,
        checkpoints: CheckpointStore | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.spec = spec
        self.core = Scheduler(spec, random.Random(spec.seed))
        self.trace = trace if trace is not None else TraceWriter(None)
        self.results = results or Results(
            spec.name, spec.metric, spec.mode, spec.schedule.max_resource
        )
        self.journal = journal
        if journal is not None:
            self.trace.autoflush = None  # the trace must never get ahead of the journal
        self.checkpoints: CheckpointStore = (
            checkpoints if checkpoints is not None else MemoryStore()
        )
        self._t0 = time.monotonic()
        self.clock = clock or (lambda: time.monotonic() - self._t0)
        self.lock = threading.Lock()
        self.assigned: dict[int, Assignment] = {}
        self.errors: list[tuple[int, str]] = []  # (trial, message) of failed jobs
        self.replaying = False
        self.store_error: str | None = None  # the checkpoint store failed: record nothing more
        # called under the lock with (kind, job, fields) for "trial" (a new trial's first job),
        # "report" (a kept batch of ctx reports) and "result" (recorded, or lost for good); not
        # while replaying. Keep them cheap: ash.integrations queues them for a thread of its own
        self.observers: list[Callable[[str, Job, Mapping[str, Any]], None]] = []
        # Checkpoint retention (core/retention.py): drops wait for their results to be durable.
        self.retention = Retention(self.core, spec.keep_best)
        self._drops: list[Drop] = []
        self._ready: list[Drop] = []  # safe to delete, batched on a store that fsyncs
        self._ready_since = 0.0
        self.store_warnings = 0
        # Fail fast: once the first ``fail_fast`` results of this run (replayed ones do not
        # count) have all failed with one error, ``stopped`` holds it and no job is handed out
        # any more; the jobs in flight drain and the study is finished. None: never.
        self.fail_fast: int | None = None
        self.stopped: tuple[int, str] | None = None  # (results that failed alike, the error)
        self._first: list[str | None] = []  # first lines of this run's first results' errors
        self._stops: list[int] = []  # jobs the core stopped on their reports, not yet told
        # trial -> the resource of its latest result below the top that came with no state
        # (journaled as "n": 1, so a replay knows it too): its promotion gets state None by
        # design; any other missing state is lost, and the promotion is retrained from scratch
        self._no_state: dict[int, float] = {}
        self._missing: set[tuple[int, float]] = set()  # lost states already warned of
        self._adopted = 0  # replayed trials whose recorded configuration this ash samples otherwise

    # -- inputs ---------------------------------------------------------------------------

    def request(
        self,
        worker: str,
        *,
        trace_extra: Mapping[str, Any] | None = None,
        defer_trace: bool = False,
    ) -> Assignment | None:
        """A job for ``worker`` with the checkpoint it resumes from, or None for now.

        ``trace_extra`` adds fields to its assign event (e.g. ``threads``). With ``defer_trace``
        the caller writes that event itself with ``trace_assign`` (before ``sync``, and before
        anything else happens to the job): for a transport that decides something about the
        job once it has seen it, such as its threads, and wants that in the trace."""
        with self.lock:
            return self._request(worker, trace_extra, defer_trace, None)

    def _request(
        self,
        worker: str,
        trace_extra: Mapping[str, Any] | None,
        defer_trace: bool,
        replayed: Mapping[str, Any] | None,
    ) -> Assignment | None:
        if self.broken is not None:
            return None  # never decide what cannot be recorded
        if self.stopped is not None and replayed is None:
            return None  # a systematic error: nothing more is handed out
        now = self.clock()
        trials, queued = self.core.n_trials, len(self.core.queue)
        job = self.core.next_job(now)
        if job is None:
            if replayed is not None:
                raise JournalError("journal replay diverged: an ask produced no job")
            return None
        new = self.core.n_trials > trials
        if replayed is not None:
            _check_decision(replayed, job)
            recorded = replayed.get("c")
            if new and isinstance(recorded, dict):  # (an earlier ash kept inactive parameters)
                recorded = self.core.space.active_only(recorded)
            if new and isinstance(recorded, dict) and recorded != job.config:
                if len(self.core.queue) < queued:  # from study.enqueue, not from the sampler
                    raise JournalError(
                        f"trial {job.trial} was trained with {recorded!r} from study.enqueue, "
                        f"which now gives {job.config!r} (was its file changed?): restore it, "
                        "or use a new journal"
                    )
                job = self._adopt(job, recorded)
        record: dict[str, Any] = {"a": worker, "k": [job.trial, job.rung]}
        if new:
            record["c"] = job.config
        record["t"] = now
        self._journal(record)
        self.retention.issued(job)
        checkpoint = None
        sent = job
        if job.start and not self.replaying:
            checkpoint = self.checkpoints.get(job.trial, job.start)
            if checkpoint is None and self.checkpoints.was_dropped(job.trial):
                sent = job._replace(start=0)  # dropped under a lower max_trials: from scratch
            elif checkpoint is None and not _same(self._no_state.get(job.trial), job.start):
                sent = job._replace(start=0)  # its state is lost: never start > 0 without it
                self._state_lost(job)
        a = Assignment(sent, worker, checkpoint, now)
        self.assigned[job.job_id] = a
        self.results.assign(job)
        if not defer_trace:  # after the results know the trial: listeners look it up
            self.trace.assign(now, job, worker, **(trace_extra or {}))
        if new:
            self._tell("trial", job, {})
        return a

    def _adopt(self, job: Job, recorded: dict[str, Any]) -> Job:
        """A replayed trial whose configuration this ash samples differently from the one the
        journal recorded (another version of ash's samplers, or another user sampler; the spec
        is the same, its digest says so): the recorded one is kept, so the study goes on from
        what was really trained, and the trials the journal lacks are drawn by this sampler."""
        try:
            self.core.space.check(recorded)
        except SpaceError as exc:  # a changed enqueue file, or a record forged under its CRC
            raise JournalError(
                f"trial {job.trial} was trained with {recorded!r}, which is not in this "
                f"spec's [space] ({exc}): restore the spec, or use a new journal"
            ) from None
        if not self._adopted and self.journal is not None:  # (a read-only replay draws nothing)
            where = self.journal.path
            print(
                f"ash: warning: {where}: trial {job.trial} was trained with "
                f"{_show(recorded, _differ(recorded, job.config))}, which this ash samples as "
                f"{_show(job.config, _differ(recorded, job.config))} (another ash version or "
                "sampler): the journal's configurations are kept, and new trials are drawn by "
                "this one",
                file=sys.stderr,
                flush=True,
            )
        self._adopted += 1
        return self.core.adopt(job, recorded)

    def _state_lost(self, job: Job) -> None:
        """A promotion whose state should be in the store and is not (a file lost, a journal
        cut short by hand): it is retrained from scratch, and the results say so (under the
        lock; the first one also on stderr)."""
        if (job.trial, job.start) in self._missing:
            return  # a re-issue of the same promotion
        self._missing.add((job.trial, job.start))
        root = getattr(self.checkpoints, "root", "checkpoint store")
        why = (
            f"checkpoint store {root}: the state of trial {job.trial} at resource "
            f"{job.start:g} is missing (a file lost, or a journal cut short or written by an "
            f"older ash); its promotion to {job.stop:g} is retrained from scratch"
        )
        if len(self._missing) == 1:
            more = " (any more: in the results' errors)"
            print(f"ash: warning: {why}{more}", file=sys.stderr, flush=True)
        self.errors.append((job.trial, why))

    def trace_assign(self, a: Assignment, **extra: Any) -> None:
        """The assign event of a ``request(..., defer_trace=True)``, with ``extra`` fields."""
        with self.lock:
            self.trace.assign(a.t, a.job, a.worker, **extra)

    def complete(
        self,
        job_id: int,
        value: float | None,
        metrics: dict[str, Any] | None = None,
        state: State | None = None,
        error: str | None = None,
        trace_extra: Mapping[str, Any] | None = None,
        *,
        no_state: bool = False,
    ) -> bool:
        """Record a job's result; False if it was a duplicate or late report (ignored).
        ``trace_extra`` adds fields to its result event. ``no_state``: a replayed result
        whose job returned no state (its record's ``"n"``).

        The checkpoint is stored before the result is journaled: a result whose state cannot be
        stored is not recorded at all (the job stays in flight, and is re-run after a resume),
        the driver is ``broken`` and decides nothing more, and CheckpointStoreError says why.
        A state that is not kept (a duplicate's, a stopped job's, a top-rung one outside
        ``keep_best``) is discarded: in shared-directory mode its file goes at once."""
        with self.lock:
            if self.broken is not None:
                raise JournalError(self.broken)
            if job_id not in self.core.inflight:
                self.core.report(job_id, value, self.clock())  # raises for unknown ids
                self._discard(state)
                return False
            now = self.clock()
            job = self.core.inflight[job_id]
            below_top = job.stop < self.spec.schedule.max_resource
            if job_id in self.core.stopped:  # a stopped one: no state, and never promoted
                below_top = False
                self._discard(state)
            elif not self.replaying:
                no_state = state is None
                if below_top or self.retention.wants_top(
                    job.trial, score_of(value, self.spec.mode)
                ):
                    try:
                        self.checkpoints.put(job.trial, job.stop, state)
                    except OSError as exc:
                        self.store_error = (
                            f"checkpoint store {getattr(self.checkpoints, 'root', '')}: "
                            f"write failed ({exc.strerror or exc}); no more decisions"
                        )
                        raise CheckpointStoreError(self.store_error) from None
                else:
                    self._discard(state)
            record = {"r": job_id, "v": value, "m": metrics or {}, "e": error}
            if below_top and no_state:
                record["n"] = 1  # no state, by the trainer's choice: none is lost
                self._no_state[job.trial] = job.stop
            else:
                self._no_state.pop(job.trial, None)
            record["t"] = now
            self._journal(record)
            reported = self.core.report(job_id, value, now)
            assert reported is not None
            job = reported
            self._retain(self.retention.result(job, score_of(value, self.spec.mode)))
            self.assigned.pop(job_id, None)
            self.results.result(job, value, metrics, error, t=now)
            if error is not None:
                self.errors.append((job.trial, error))
            self.trace.result(now, job, value, **(trace_extra or {}))  # listeners see it recorded
            self._tell("result", job, {"value": value, "metrics": metrics or {}, "error": error})
            if not self.replaying:
                self._watch_first(error if value is None else None)
            return True

    def _discard(self, state: State | None) -> None:
        """A state that is not kept (under the lock): the store deletes what it names."""
        if state is None:
            return
        try:
            failed = self.checkpoints.discard(state)
        except OSError as exc:
            failed = [f"{state!r} ({exc.strerror or exc})"]
        if failed:
            self._store_warning(failed, locked=True)

    def discard(self, state: State | None) -> None:
        """A state that came with a result the transport did not record (a duplicate or late
        one): deleted in shared-directory mode, unless it is a kept state's file."""
        with self.lock:
            self._discard(state)

    def report(self, job_id: int, reports: Sequence[Sequence[Any]]) -> bool:
        """Record a running job's intermediate reports (``ctx.report``: ``[(step, metrics)]``,
        checked by the caller); False if the job is not in flight (late) or none was kept
        (a job keeps its first MAX_REPORTS_PER_JOB). One journal record per batch; listeners
        get a ``report`` event (not written to the trace file, whose events are decisions)."""
        with self.lock:
            if self.broken is not None:
                return False
            job = self.core.inflight.get(job_id)
            if job is None:
                return False
            kept = self.results.report(job, reports)
            if not kept:
                return False
            now = self.clock()
            if self.journal is not None and not self.replaying:
                self._journal(_report_record(job_id, kept, now))
            if self.core.inline:
                self._milestones(job_id, kept, now)
            if self.trace.listeners:  # a replay's too: a read-only replay's views draw them
                event = {
                    "event": "report",
                    "t": round(now, 6),
                    "trial": job.trial,
                    "rung": job.rung,
                    "bracket": job.bracket,
                    "job": job_id,
                    "reports": [{"step": s, "metrics": m} for s, m in kept],
                }
                event = _jsonable(event)  # non-finite numbers null, as results.json has them
                for listener in self.trace.listeners:
                    listener(event)
            self._tell("report", job, {"reports": kept})
            return True

    def _milestones(self, job_id: int, kept: Sequence[tuple[float, Any]], now: float) -> None:
        """Stopping on reports: each kept report's study metric goes to the core, which may
        stop the job (a report without the metric is no milestone)."""
        metric = self.spec.metric
        for step, metrics in kept:
            v = _number(metrics.get(metric))
            if v is None:
                continue
            if self.core.milestone(job_id, float(step), v, now):
                if not self.replaying:
                    self._stops.append(job_id)
                break

    def take_stops(self) -> list[int]:
        """The jobs stopped on their reports since the last call, for the transport to tell
        their trainers (after ``sync``: the reports that stopped them are then durable)."""
        with self.lock:
            stops, self._stops = self._stops, []
            return [j for j in stops if j in self.core.stopped]

    @property
    def stops_on_reports(self) -> bool:
        """Whether the core ranks reports at rung milestones (``[asha] stop_on``)."""
        return self.core.inline

    def kept_reports(self, job_id: int) -> int:
        """How many reports of running job ``job_id`` are recorded (decided on)."""
        with self.lock:
            return self.results.kept_of(job_id)

    def stopping(self, job_id: int) -> bool:
        """Whether ``job_id`` is in flight and was told (or is to be told) to stop."""
        with self.lock:
            return job_id in self.core.stopped

    def reports(self, trial: int) -> list[dict[str, Any]]:
        """A trial's intermediate reports so far: ``{"rung", "step", "metrics"}`` each."""
        with self.lock:
            rec = self.results.trials.get(trial)
            return list(rec.reports) if rec is not None else []

    def _watch_first(self, error: str | None) -> None:
        """Fail fast: stop when the first ``fail_fast`` results all failed with one error (its
        first line: the exception's type and message)."""
        n = self.fail_fast
        if n is None or self.stopped is not None or len(self._first) >= n:
            return
        self._first.append(None if error is None else error.partition("\n")[0])
        first = self._first[0]
        alike = first is not None and all(e == first for e in self._first)
        if len(self._first) == n and alike and error is not None:
            self.stopped = (n, error)

    def amend(self, limits: Mapping[str, Any], enqueue: Sequence[Config] = ()) -> None:
        """Set the budget (``max_trials``, ``time_limit_s``) from now on and append ``enqueue``
        to the warm-start queue, journaled: a continued study (the journal allows raising the
        budget and appending configs only)."""
        with self.lock:
            now = self.clock()
            cap, limit = limits.get("max_trials"), limits.get("time_limit_s")
            x: dict[str, Any] = {"max_trials": cap, "time_limit_s": limit}
            if enqueue:
                x["enqueue"] = [dict(c) for c in enqueue]
            self._journal({"x": x, "t": now})
            self.core.amend(max_trials=cap, time_limit_s=limit)
            self.core.queue.extend(dict(c) for c in enqueue)
            schedule = dataclasses.replace(self.spec.schedule, max_trials=cap, time_limit_s=limit)
            self.spec = dataclasses.replace(self.spec, schedule=schedule)

    def lose(self, job_id: int, *, charge: bool = True, why: str | None = None) -> bool:
        """The worker of ``job_id`` vanished (``why``); False if the job had already settled,
        or if the driver is broken (the job then stays in flight: a resume re-issues it).
        ``charge=False``: not the trial's fault (a scheduler restart), no attempt is spent."""
        with self.lock:
            if self.broken is not None:
                return False
            if job_id not in self.core.inflight:
                self.core.lose(job_id, self.clock())  # raises for unknown ids
                return False
            now = self.clock()
            record: dict[str, Any] = {"l": job_id}
            if not charge:
                record["c"] = 0
            if why:
                record["w"] = why
            record["t"] = now
            self._journal(record)
            was_stopped = job_id in self.core.stopped
            got = self.core.lose(job_id, now, charge=charge)
            assert got is not None
            self.assigned.pop(job_id, None)
            job, retried = got
            self.trace.lost(now, job)
            if was_stopped:  # stopped on its reports: it settles with its last report
                self._settle_stopped(job, now)
                return True
            self.results.lost(job)
            if not retried:
                self._retain(self.retention.result(job, math.inf))
                self.results.result(job, None, {}, t=now)
                self.errors.append(
                    (
                        job.trial,
                        f"job {job_id} (rung {job.rung}) lost {job.attempt} times, the "
                        f"max_attempts of this study; last: {why or 'its worker vanished'}",
                    )
                )
                self.trace.result(now, job, None)
                lost: dict[str, Any] = {"value": None, "metrics": {}, "error": self.errors[-1][1]}
                self._tell("result", job, lost)
            return True

    def _settle_stopped(self, job: Job, now: float) -> None:
        """A job stopped on its reports whose result was lost: its result is its last report."""
        rec = self.results.trials.get(job.trial)
        last: dict[str, Any] = {}
        if rec is not None:
            mine = [r for r, j in zip(rec.reports, rec.report_jobs, strict=True) if j == job.job_id]
            last = dict(mine[-1]["metrics"]) if mine else {}
        value = _number(last.get(self.spec.metric))
        if value is not None and not math.isfinite(value):
            value = None
        self._retain(self.retention.result(job, score_of(value, self.spec.mode)))
        self.results.result(job, value, last, t=now)
        self.trace.result(now, job, value)
        self._tell("result", job, {"value": value, "metrics": last, "error": None})

    @property
    def broken(self) -> str | None:
        """Why the driver can record nothing more (journal or checkpoint store), or None."""
        if self.store_error is not None:
            return self.store_error
        return self.journal.broken if self.journal is not None else None

    # -- durability and resume ------------------------------------------------------------

    def _journal(self, record: dict[str, Any]) -> None:
        if self.journal is not None and not self.replaying:
            self.journal.append(_jsonable(record))

    def sync(self) -> None:
        """Make every input so far durable, then write the trace lines of those inputs (the
        trace must trail the journal). Raises JournalError if the journal cannot be written.

        Safe to call from a thread while others call the driver: the journal records and the
        trace lines are taken together under the driver's lock, so the trace written never
        holds an event whose record is not yet durable, and concurrent callers share one write
        and fsync (a caller whose records are already durable returns at once)."""
        j = self.journal
        if j is None:
            with self.lock:
                self.trace.flush()
                drops, self._drops = self._drops, []
            self._drop_batched(drops)
            return
        target = j.appended
        with j.io_lock:
            if j.durable >= target and not j.broken and not self.trace.buffered:
                return
            with self.lock:
                records, count = j.take()
                lines = self.trace.take()  # with the records: none ahead of its journal record
                drops, self._drops = self._drops, []  # made safe by records now in ``records``
            j.write(records, count)
            self.trace.write(lines)
            self._drop_batched(drops)  # only now: the results that make them safe are durable

    def pending(self) -> bool:
        """Whether ``sync`` has anything to do."""
        j = self.journal
        return self.trace.buffered or (j is not None and j.appended > j.durable)

    def resume(self, records: list[dict[str, Any]], trace_events_present: int) -> list[int]:
        """Replay journal records, checking each recorded decision; returns the ids of the jobs
        that were in flight (the caller loses them, or waits for their workers to come back)."""
        self.trace.expect(trace_events_present)
        self.replaying = True
        last = 0.0
        line = 1
        try:
            for rec in records:
                line += 1
                last = float(rec.get("t", last))
                self.clock = lambda t=last: t  # type: ignore[misc]
                if "a" in rec:
                    with self.lock:
                        self._request(str(rec["a"]), None, False, rec)
                elif "r" in rec:
                    self.complete(
                        int(rec["r"]),
                        rec.get("v"),
                        rec.get("m"),
                        None,
                        rec.get("e"),
                        no_state=bool(rec.get("n")),
                    )
                elif "l" in rec:
                    self.lose(int(rec["l"]), charge=bool(rec.get("c", 1)), why=rec.get("w"))
                elif "p" in rec:
                    self.report(int(rec["p"]), _recorded_reports(rec))
                elif "x" in rec:
                    self.amend(rec["x"], rec["x"].get("enqueue") or ())
        except (JournalError, UnknownJobError) as exc:
            where = self.journal.path if self.journal is not None else "journal"
            raise JournalError(f"{where}: line {line}: {_plain(exc)}") from None
        finally:
            self.replaying = False
        self._clean_store()
        offset = time.monotonic() - last
        self.clock = lambda: time.monotonic() - offset
        self._check_trace(trace_events_present)
        return list(self.core.inflight)

    def _check_trace(self, present: int) -> None:
        """After a replay: the trace file must be this journal's (each event it holds is one the
        replay produced again); events past the journal's end (records cut from a damaged
        journal, as its error advises) are cut from it, since a trace never holds an event its
        journal lacks."""
        surplus, mismatch = self.trace.unexpected()
        where = self.journal.path if self.journal is not None else "the journal"
        if mismatch is not None:
            raise TraceError(
                f"--trace {self.trace.path}: line {mismatch} is not the event {where} holds "
                "there: it is the trace of another run; delete it or choose another file"
            )
        if surplus and self.trace.path is not None:
            os.truncate(self.trace.path, self.trace.matched)
            print(
                f"ash: note: --trace {self.trace.path}: its last {surplus} events followed "
                f"records {where} no longer holds, and were cut",
                file=sys.stderr,
                flush=True,
            )

    # -- state ----------------------------------------------------------------------------

    def status(self) -> Status:
        with self.lock:
            sch = self.spec.schedule
            return Status(
                study=self.spec.name,
                algorithm=self.spec.algorithm,
                metric=self.spec.metric,
                mode=self.spec.mode,
                trials=self.core.n_trials,
                max_trials=sch.max_trials,
                results=self.results.n_results,
                failed=self.results.n_failed,
                running=len(self.core.inflight),
                elapsed=self.clock(),
                time_limit=sch.time_limit_s,
                finished=self.core.finished
                or (self.stopped is not None and not self.core.inflight),
                rungs=self.core.rung_counts(),
                best=self.results.best(),
                error=self.broken or self.stop_reason(),
                reports=self.results.n_reports,
                latest=self.results.latest,
            )

    def stop_reason(self) -> str | None:
        """Fail fast's one line (``stopped``), or None."""
        if self.stopped is None:
            return None
        n, error = self.stopped
        return (
            f"stopped early: the first {n} results all failed with: {error.partition(chr(10))[0]}"
        )

    def note(self, why: str, job_id: int | None = None) -> None:
        """Note an error for the results: a worker process that died, under the trial of the
        job it ran (``job_id``, while in flight), else under no trial (-1)."""
        with self.lock:
            job = self.core.inflight.get(job_id) if job_id is not None else None
            self.errors.append((job.trial if job is not None else -1, why))

    def running(self) -> int:
        """Jobs in flight."""
        with self.lock:
            return len(self.core.inflight)

    def issued(self, job_id: int) -> bool:
        """Whether ``job_id`` was ever handed out."""
        return 0 <= job_id < self.core.next_id

    def _tell(self, kind: str, job: Job, fields: Mapping[str, Any]) -> None:
        if not self.replaying:
            for observer in self.observers:
                observer(kind, job, fields)

    def listen(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener`` with every trace event as it happens (live views, Watch)."""
        self.trace.listeners.append(listener)

    def inflight(self) -> list[Assignment]:
        with self.lock:
            return list(self.assigned.values())

    @property
    def finished(self) -> bool:
        with self.lock:
            return self.core.finished or (self.stopped is not None and not self.core.inflight)

    def close(self) -> None:
        try:
            with contextlib.suppress(JournalError):
                self.sync()
                final = self.retention.final() if self.broken is None and self.finished else []
                self._drop_batched(final, force=True)  # keep_best: the study is over
        finally:
            if self.journal is not None:
                with contextlib.suppress(JournalError):
                    self.journal.close()
            if self.broken is not None:  # events of records that never became durable: the
                self.trace.take()  # trace must never get ahead of the journal
            self.trace.close()
            self.checkpoints.close()

    # -- checkpoint retention -------------------------------------------------------------

    def _retain(self, drops: list[Drop]) -> None:
        """Queue deletions (under the lock); ``sync`` makes them once their results are
        durable. A replay queues none: ``_clean_store`` settles the store after it."""
        if drops and not self.replaying:
            self._drops.extend(drops)

    def _clean_store(self) -> None:
        """After a resume: delete what a crash left between a durable result and its
        deletion (and, for a finished study, all but its keep_best trials)."""
        if self.core.finished:
            self.retention.final()
        try:
            failed = self.checkpoints.retain(self.retention.needed())
        except OSError as exc:
            failed = [f"{getattr(self.checkpoints, 'root', '')} ({exc.strerror or exc})"]
        self._store_warning(failed)

    def _drop_batched(self, drops: list[Drop], force: bool = False) -> None:
        """Delete now on a store that does not fsync; on one that does (a journal's), in
        batches of up to DROP_BATCH or DROP_SECONDS, so the store's note of dead trials costs
        one fsync per batch, not one per round (the disk bound grows by one batch)."""
        if not getattr(self.checkpoints, "fsync", False):
            self._drop(drops)
            return
        now = time.monotonic()
        with self.lock:
            if not self._ready:
                self._ready_since = now
            self._ready.extend(drops)
            due = force or len(self._ready) >= DROP_BATCH or now - self._ready_since >= DROP_SECONDS
            batch, self._ready = (self._ready, []) if due else ([], self._ready)
        self._drop(batch)

    def _drop(self, drops: list[Drop]) -> None:
        if not drops:
            return
        try:
            failed = self.checkpoints.drop(drops)
        except OSError as exc:
            failed = [f"{len(drops)} checkpoints ({exc.strerror or exc})"]
        self._store_warning(failed)

    def _store_warning(self, failed: list[str], locked: bool = False) -> None:
        """A checkpoint that cannot be deleted is a warning, never a lost study: it stays.
        ``locked``: the caller holds the lock."""
        if not failed:
            return
        self.store_warnings += len(failed)
        if self.store_warnings == len(failed):  # the first time: say it once, in the results too
            root = getattr(self.checkpoints, "root", "checkpoint store")
            why = (
                f"checkpoint store {root}: cannot delete {failed[0]}"
                + (f" and {len(failed) - 1} more" if len(failed) > 1 else "")
                + "; the files stay (the study goes on)"
            )
            print(f"ash: warning: {why}", file=sys.stderr, flush=True)
            with contextlib.nullcontext() if locked else self.lock:
                self.errors.append((-1, why))


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    """Non-finite floats (a failed metric) become null, at any depth (in the dicts and lists
    of a record, e.g. a report record's ``s``): the journal is strict JSON."""
    out = _json_value(record)
    assert isinstance(out, dict)
    return out


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_value(x) for x in v]
    return v


def _report_record(job_id: int, kept: Sequence[tuple[float, Any]], now: float) -> dict[str, Any]:
    """The journal record of a batch of reports: ``s`` as results.json keeps them (non-finite
    numbers null) and, under ``n``, ``[index, metric, "inf" | "-inf" | "nan"]`` for each
    non-finite number, so a replay hands the core the same values: a non-finite study metric
    is a failed milestone, a missing one (or None) none (``Scheduler.milestone``)."""
    rec: dict[str, Any] = {"p": job_id, "s": [[s, m] for s, m in kept], "t": now}
    bad = [
        [i, k, repr(v)]
        for i, (_, metrics) in enumerate(kept)
        for k, v in metrics.items()
        if isinstance(v, float) and not math.isfinite(v)
    ]
    if bad:
        rec["n"] = bad
    return rec  # made strict JSON by _journal


def _recorded_reports(rec: Mapping[str, Any]) -> list[tuple[float, dict[str, Any]]]:
    """The reports of a journal record as they were made (its ``n`` put back)."""
    out = [(step, dict(metrics)) for step, metrics in rec["s"]]
    for i, k, text in rec.get("n", ()):
        out[i][1][k] = float(text)
    return out


def _same(a: float | None, b: float) -> bool:
    """Whether resource ``a`` (None: none) is ``b`` (the stores' tolerance)."""
    return a is not None and abs(a - b) <= 1e-9


def _check_decision(rec: Mapping[str, Any], job: Job) -> None:
    """Refuse a replayed ask whose job (trial and rung) differs from the one the journal
    recorded: Algorithm 2 decided otherwise on the same results."""
    k = rec.get("k")
    if k is not None and list(k) != [job.trial, job.rung]:
        raise JournalError(
            f"journal replay diverged: the journal gave job {job.job_id} to trial {k[0]} at "
            f"rung {k[1]}, this spec and ash give it to trial {job.trial} at rung {job.rung} "
            "(did the spec or the ash version change?)"
        )


def _differ(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return sorted(key for key in a.keys() | b.keys() if a.get(key) != b.get(key))


def _show(config: Mapping[str, Any], keys: list[str]) -> str:
    return "{" + ", ".join(f"{k}={config.get(k, '(none)')!r}" for k in keys) + "}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]


def _plain(exc: BaseException) -> str:
    if isinstance(exc, UnknownJobError):
        return f"the record names job {exc.args[0]}, which was never issued"
    return str(exc)


def fail_fast_after(spec: StudySpec, slots: int | None) -> int | None:
    """How many first results, all failed alike, stop a study: min(slots + 1, 5), at least 3
    (5 when the slots are not known, as over gRPC), for a Python trainer; None (never) for the
    mlp kernel, whose metric names and parameters the spec already checks, and with
    ``[study] fail_fast = false``."""
    if not spec.fail_fast or (spec.trainer is not None and spec.trainer.type != "python"):
        return None
    return 5 if slots is None else max(3, min(slots + 1, 5))


@dataclass(frozen=True)
class Opened:
    driver: Driver
    resumed_records: int
    lost_on_resume: int
    orphans: tuple[int, ...] = ()  # in flight at the crash, kept for their workers to reclaim


def open_study(
    spec: StudySpec,
    *,
    journal: str | Path | None = None,
    trace: str | Path | None = None,
    fsync: bool = True,
    keep_inflight: bool = False,
    shared_checkpoints: Path | None = None,
    slots: int | None = None,
) -> Opened:
    """A Driver for ``spec``; with a journal, resumed from it when it already holds records.

    The journal is locked for this process's life (a second owner is refused). Checkpoints
    live next to the journal (``JOURNAL.ckpt/``), so a resumed study still resumes its promoted
    trials from their states. Jobs in flight at the crash are lost without charging their
    trials an attempt, or, with ``keep_inflight`` (a service whose workers outlive it), kept in
    flight as ``orphans`` for their workers to reclaim. ``shared_checkpoints``: the directory
    shared with the workers (--checkpoint-dir), whose files the retention rule deletes too.

    A Python trainer's study fails fast (``Driver.fail_fast``): it stops once its first
    ``fail_fast_after(slots)`` results of this run all failed with one error."""
    if journal is None:  # states on disk, not in memory, in a directory the study owns
        refuse_used(trace)
        tmp = tempfile.mkdtemp(prefix=f"ash-{_safe(spec.name)}-", suffix=".ckpt")
        store = DirectoryStore(tmp, fsync=False, temporary=True, shared=shared_checkpoints)
        d = Driver(spec, trace=TraceWriter(trace), checkpoints=store)
        d.fail_fast = fail_fast_after(spec, slots)
        return Opened(d, 0, 0)
    if not Path(journal).exists():
        refuse_used(trace)  # before the journal is created: a refused run leaves nothing behind
    j = Journal(
        journal,
        study=spec.name,
        digest=spec_digest(spec.raw),
        fsync=fsync,
        spec=spec.raw,
        order=list(spec.raw.get("space", {})),
    )
    try:  # the trace only once the journal is ours: a refused second owner leaves it alone
        if not j.records:
            refuse_used(trace)
        present = count_events(trace) if trace is not None else 0
        writer = TraceWriter(trace)
        store = _journal_store(journal, fsync, shared_checkpoints)
        start = spec
        raw = j.header.get("raw")
        if isinstance(raw, dict) and (
            j.raise_budget is not None or any("x" in r for r in j.records)
        ):  # the core starts as the journal's study started; its x records amend it
            queue = spec.enqueue  # a file's configs: the same (appending is for inline ones)
            if not isinstance(raw.get("study", {}).get("enqueue"), str):
                queue = spec.enqueue[: len(enqueued(raw))]
            schedule = dataclasses.replace(spec.schedule, **budget(raw))
            start = dataclasses.replace(spec, schedule=schedule, enqueue=queue)
        driver = Driver(start, trace=writer, journal=j, checkpoints=store)
        stale: list[int] = []
        if j.records:
            stale = driver.resume(j.records, present)
            if not keep_inflight:
                for job_id in stale:
                    driver.lose(job_id, charge=False, why="the scheduler restarted")
                driver.sync()
        change = j.raise_budget
        if change is not None and isinstance(raw, dict):
            limits = {"max_trials": change["max_trials"], "time_limit_s": change["time_limit_s"]}
            n = int(change.get("enqueue", 0))
            added = spec.enqueue[len(spec.enqueue) - n :] if n > 0 else ()
            if limits != budget(amended(raw, j.records)) or added:
                driver.amend(limits, added)
                driver.sync()
            cap = driver.spec.schedule.max_trials
            if added and cap is not None and driver.core.n_trials + len(driver.core.queue) > cap:
                print(
                    f"ash: warning: {journal}: {driver.core.n_trials} trials of max_trials {cap} "
                    f"are started, so {len(driver.core.queue)} enqueued configs will not all "
                    "run; raise [asha] max_trials with them",
                    file=sys.stderr,
                    flush=True,
                )
        driver.spec = spec
        driver.fail_fast = fail_fast_after(spec, slots)
    except BaseException:
        j.release()
        raise
    if keep_inflight:
        return Opened(driver, len(j.records), 0, tuple(stale))
    return Opened(driver, len(j.records), len(stale))


def _journal_store(journal: str | Path, fsync: bool, shared: Path | None) -> DirectoryStore:
    """A journal's checkpoint store. States that went through ``JOURNAL.shared/`` (``ash tune
    --transport grpc``) are handed out as their bytes to a transport without that directory
    (this process's slots, MPI ranks), and deleted there by the retention rule."""
    if shared is None and Path(f"{journal}.shared").is_dir():
        return DirectoryStore(
            f"{journal}.ckpt", fsync=fsync, shared=Path(f"{journal}.shared"), resolve=True
        )
    return DirectoryStore(f"{journal}.ckpt", fsync=fsync, shared=shared)


def replay_read_only(
    path: Path, listen: Callable[[Driver], Callable[[dict[str, Any]], None]] | None = None
) -> tuple[Driver, dict[str, Any], list[dict[str, Any]]]:
    """The study in journal ``path`` replayed through a Driver of the spec it holds, without its
    lock and writing nothing (its owner may be running; a torn tail is left out): what
    ``ash.load`` and the dashboard read. ``listen(driver)`` gives a listener that hears the
    replayed trace events as they happen (the driver as it is then). Returns the driver, the
    journal's raw spec and its records; JournalError for what cannot be read."""
    header, records = read_only(path)
    raw = header.get("raw")
    if not isinstance(raw, dict):
        raise JournalError(f"{path}: a version-1 journal holds no spec; read its results.json")
    try:
        spec = parse_spec(raw, source=str(path), base_dir=path.parent)
    except SpecError as exc:
        study = raw.get("study")
        if not (isinstance(study, dict) and isinstance(study.get("enqueue"), str)):
            raise JournalError(f"{path}: its spec no longer parses: {exc}") from None
        # its warm-start file is named relative to the spec, which need not be beside the
        # journal: the configs it gave are the journal's own records, which the replay keeps
        bare = {**raw, "study": {k: v for k, v in study.items() if k != "enqueue"}}
        try:
            spec = parse_spec(bare, source=str(path), base_dir=path.parent)
        except SpecError as again:
            raise JournalError(f"{path}: its spec no longer parses: {again}") from None
    driver = Driver(spec, trace=TraceWriter(None))
    if listen is not None:
        driver.listen(listen(driver))
    driver.resume(records, 0)
    return driver, raw, records


def _number(v: Any) -> float | None:
    """A metric's value as a float, or None when it is not a number (a bool is not one)."""
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
