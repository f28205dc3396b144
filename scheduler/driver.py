"""The driver: the one place where the sans-I/O core meets the world.

Every transport (the embedded pool, the gRPC servicer, the MPI loop) talks to a Driver, never to
the core directly. The driver reads the clock, calls the core, and records what happened: the
trace, the results, and the checkpoints that promoted trials resume from. Its methods take a
lock, so servicer threads may call it concurrently; each call is short (O(log n)).

Checkpoints: the state a trial's job returns is kept (one per trial: the latest) and handed out
with the trial's next job, whose ``start`` equals the resource the state was trained to. States
of top-rung results are dropped, since nothing resumes from them.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ash.scheduler.core import Job, Scheduler
from ash.scheduler.results import Results
from ash.scheduler.spec import StudySpec
from ash.scheduler.trace import TraceWriter


@dataclass(frozen=True)
class Assignment:
    job: Job
    worker: str
    checkpoint: bytes | None


class CheckpointStore:
    """The latest state of each trial, in memory."""

    def __init__(self) -> None:
        self._states: dict[int, tuple[float, bytes]] = {}
        self.bytes = 0

    def put(self, trial: int, resource: float, state: bytes | None) -> None:
        old = self._states.pop(trial, None)
        if old is not None:
            self.bytes -= len(old[1])
        if state is not None:
            self._states[trial] = (resource, state)
            self.bytes += len(state)

    def get(self, trial: int, resource: float) -> bytes | None:
        """The state of ``trial`` trained to ``resource`` (None if there is none)."""
        got = self._states.get(trial)
        if got is None or abs(got[0] - resource) > 1e-9:
            return None
        return got[1]


class Driver:
    def __init__(
        self,
        spec: StudySpec,
        *,
        trace: TraceWriter | None = None,
        results: Results | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.spec = spec
        self.core = Scheduler(spec, random.Random(spec.seed))
        self.trace = trace if trace is not None else TraceWriter(None)
        self.results = results or Results(
            spec.name, spec.metric, spec.mode, spec.schedule.max_resource
        )
        start = time.monotonic()
        self.clock = clock or (lambda: time.monotonic() - start)
        self.checkpoints = CheckpointStore()
        self.lock = threading.Lock()
        self.assigned: dict[int, Assignment] = {}
        self.errors: list[tuple[int, str]] = []  # (trial, message) of failed jobs

    def request(self, worker: str) -> Assignment | None:
        """A job for ``worker`` with the checkpoint it resumes from, or None for now."""
        with self.lock:
            now = self.clock()
            job = self.core.next_job(now)
            if job is None:
                return None
            checkpoint = self.checkpoints.get(job.trial, job.start) if job.start else None
            a = Assignment(job, worker, checkpoint)
            self.assigned[job.job_id] = a
            self.trace.assign(now, job, worker)
            self.results.assign(job)
            return a

    def complete(
        self,
        job_id: int,
        value: float | None,
        metrics: dict[str, Any] | None = None,
        state: bytes | None = None,
        error: str | None = None,
    ) -> bool:
        """Record a job's result; False if it was a duplicate or late report (ignored)."""
        with self.lock:
            now = self.clock()
            job = self.core.report(job_id, value, now)
            self.assigned.pop(job_id, None)
            if job is None:
                return False
            top = job.stop >= self.spec.schedule.max_resource
            self.checkpoints.put(job.trial, job.stop, None if top else state)
            self.trace.result(now, job, value)
            self.results.result(job, value, metrics)
            if error is not None:
                self.errors.append((job.trial, error))
            return True

    def lose(self, job_id: int) -> bool:
        """The worker of ``job_id`` vanished; False if the job had already settled."""
        with self.lock:
            now = self.clock()
            got = self.core.lose(job_id, now)
            self.assigned.pop(job_id, None)
            if got is None:
                return False
            job, retried = got
            self.trace.lost(now, job)
            self.results.lost(job)
            if not retried:
                self.trace.result(now, job, None)
                self.results.result(job, None, {})
            return True

    def inflight(self) -> list[Assignment]:
        with self.lock:
            return list(self.assigned.values())

    @property
    def finished(self) -> bool:
        with self.lock:
            return self.core.finished

    def close(self) -> None:
        self.trace.close()
