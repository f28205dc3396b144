"""Slots: local worker processes that each run one job at a time with a trainer.

Shared by the embedded pool (``ash tune``) and the worker daemon (``ash-worker``). Processes, not
threads, so that a Python trainer uses every core as well as the native one, and so that a
trainer that kills its process (a segfault, an abort) costs one job, not the worker: the slot
reports the job as ``died`` and is restarted. Each child sets its thread budget with
threadpoolctl in the thread that calls the trainer (OpenMP limits are per calling thread) and
ignores SIGINT and SIGTERM, so that the parent alone decides how to stop. A job may carry its own
thread count (``--threads auto``: ash.worker.planner plans it per job); the child then sets that
limit around that job only, so a slot's threads can change from job to job.

Messages between parent and children are our own (a pipe between processes of one program), so
they may be pickled; nothing from the network travels this way without being validated first.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from ash.errors import UserError
from ash.spec import StudySpec
from ash.worker.trainers import TrainerFn, make_trainer, run_job

JobMsg = tuple[int, dict[str, Any], float, float, "bytes | None"]


def _child(conn: Connection, spec: StudySpec, trainer: TrainerFn | None, threads: int) -> None:
    # Before libgomp loads (spawn): a pool sized for every core would leave idle OpenMP threads
    # spinning beside a one-thread job; threadpool_limits can still raise it per job.
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from threadpoolctl import threadpool_limits

    try:
        fn = trainer if trainer is not None else make_trainer(spec)
        load = getattr(fn, "data", None)
        if load is not None:  # the dataset now, not in the first job's time (and its timeout)
            load()
    except BaseException as exc:  # reported to the parent, which stops (SIGINT is ignored here)
        why = str(exc) if isinstance(exc, Exception) else f"trainer set-up raised {exc!r}"
        conn.send(("setup-error", why))
        return
    with threadpool_limits(limits=threads):
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg is None:
                return
            job_id, config, start, stop, checkpoint, job_threads = msg
            conn.send(("start", job_id))  # the job's timeout counts from here, not from spawn
            t0, c0 = time.perf_counter(), time.thread_time()
            if job_threads == threads:
                out = run_job(fn, spec.metric, config, start, stop, checkpoint)
            else:  # this job's own budget, in the thread that calls the trainer
                with threadpool_limits(limits=job_threads):
                    out = run_job(fn, spec.metric, config, start, stop, checkpoint)
            conn.send(
                (
                    "result",
                    job_id,
                    out.value,
                    out.metrics,
                    out.state,
                    out.error,
                    time.perf_counter() - t0,
                    time.thread_time() - c0,
                )
            )


class SlotError(UserError, RuntimeError):
    """Slots cannot go on (a trainer that cannot be set up, slots that keep dying)."""


@dataclass
class Finished:
    job_id: int
    value: float | None
    metrics: dict[str, Any]
    state: bytes | None
    error: str | None
    seconds: float  # wall time of the trainer call
    threads: int = 0  # kernel threads the job ran with
    cpu_seconds: float = 0.0  # CPU time of the thread that called the trainer


@dataclass
class Died:
    job_id: int
    exitcode: int | None


@dataclass
class _Slot:
    name: str
    process: Any
    conn: Connection
    job: int | None = None
    started: float = 0.0
    threads: int = 0  # of the running job


class Slots:
    def __init__(
        self,
        spec: StudySpec,
        n: int,
        threads: int,
        *,
        trainer: TrainerFn | None = None,
        max_restarts: int = 100,
        prefix: str = "w",
    ) -> None:
        self.spec = spec
        self.n = n
        self.threads = threads
        self.trainer = trainer
        # fork keeps a notebook's function usable without pickling; spawn is the safe default
        self.ctx: Any = mp.get_context("fork" if trainer is not None else "spawn")
        self.max_restarts = max_restarts
        self.restarts = 0
        self.slots = [self._start(f"{prefix}{i}") for i in range(n)]

    def _start(self, name: str) -> _Slot:
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(
            target=_child,
            args=(child, self.spec, self.trainer, self.threads),
            name=name,
            daemon=True,
        )
        p.start()
        child.close()
        return _Slot(name, p, parent)

    def idle(self) -> list[_Slot]:
        return [s for s in self.slots if s.job is None]

    def busy(self) -> list[int]:
        return [s.job for s in self.slots if s.job is not None]

    def threads_in_use(self) -> int:
        """Kernel threads of the running jobs."""
        return sum(s.threads for s in self.slots if s.job is not None)

    def submit(self, slot: _Slot, job: JobMsg, threads: int | None = None) -> None:
        """Run ``job`` on ``slot`` with ``threads`` kernel threads (default: the slots' own)."""
        slot.job = job[0]
        slot.threads = threads or self.threads
        slot.started = 0.0  # set when the child says it started (a fresh one imports first)
        with contextlib.suppress(OSError, ValueError):  # a dead slot: wait() reports it Died
            slot.conn.send((*job, slot.threads))

    def wait(self, timeout: float, wake: Any = None) -> list[Finished | Died]:
        """Results and deaths that arrive within ``timeout`` seconds; a readable ``wake``
        socket (drained here) ends the wait early, e.g. when new work arrived."""
        waitables: list[Any] = [s.conn for s in self.slots]
        waitables += [s.process.sentinel for s in self.slots]
        if wake is not None:
            waitables.append(wake)
        ready = wait(waitables, timeout=timeout)
        if wake is not None and wake in ready:
            with contextlib.suppress(BlockingIOError):
                while wake.recv(4096):
                    pass
        events: list[Finished | Died] = self._timeouts()
        for slot in list(self.slots):
            if slot.conn in ready:
                ev = self._receive(slot)
            elif slot.process.sentinel in ready and not slot.process.is_alive():
                ev = self._died(slot)
            else:
                continue
            if ev is not None:
                events.append(ev)
        return events

    def _timeouts(self) -> list[Finished | Died]:
        """Jobs past the trainer's timeout_s fail; their processes are killed and replaced."""
        limit = self.spec.trainer.timeout_s if self.spec.trainer is not None else None
        if limit is None:
            return []
        now = time.monotonic()
        out: list[Finished | Died] = []
        for slot in list(self.slots):
            if slot.job is not None and slot.started and now - slot.started > limit:
                job, slot.job = slot.job, None
                slot.process.kill()
                slot.process.join(timeout=5)
                slot.conn.close()
                self.slots[self.slots.index(slot)] = self._start(slot.name)
                why = f"timed out after {limit:g} s (trainer.timeout_s); its process was killed"
                out.append(Finished(job, None, {}, None, why, now - slot.started))
        return out

    def _receive(self, slot: _Slot) -> Finished | Died | None:
        try:
            msg = slot.conn.recv()
        except (EOFError, OSError):
            return self._died(slot)
        if msg[0] == "setup-error":
            raise SlotError(msg[1])
        if msg[0] == "start":
            slot.started = time.monotonic()
            return None
        _, job_id, value, metrics, state, error, seconds, cpu = msg
        slot.job = None
        return Finished(job_id, value, metrics, state, error, seconds, slot.threads, cpu)

    def _died(self, slot: _Slot) -> Died | None:
        slot.process.join(timeout=1)
        code = slot.process.exitcode
        job, slot.job = slot.job, None
        self.restarts += 1
        if self.restarts > self.max_restarts:
            raise SlotError(f"slots died {self.restarts} times; last exit code {code}")
        i = self.slots.index(slot)
        slot.conn.close()
        self.slots[i] = self._start(slot.name)
        return None if job is None else Died(job, code)

    def shutdown(self, grace: float = 2.0) -> None:
        for s in self.slots:
            with contextlib.suppress(OSError, ValueError):
                s.conn.send(None)
        deadline = time.monotonic() + grace
        for s in self.slots:
            s.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if s.process.is_alive():
                s.process.terminate()
                s.process.join(timeout=1)
            s.conn.close()
        self.slots = []
