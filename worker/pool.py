"""The embedded transport: N local worker processes fed by a Driver (``ash tune``).

Processes, not threads, so that a Python trainer uses every core as well as the native one, and
so that a trainer that crashes its process (a segfault, an abort) loses one job, not the study:
the job is reported lost, re-issued by the core, and the worker is restarted. Each child sets its
thread budget with threadpoolctl in the thread that calls the trainer (OpenMP limits are per
calling thread) and ignores SIGINT, so that Ctrl-C is handled once, by the parent.

The parent runs a single-threaded event loop: wait on the children's pipes and process sentinels,
hand each result to the driver, then offer work to idle workers until the driver says "nothing
now" (only a new result can change that answer).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from ash.scheduler.driver import Driver
from ash.scheduler.spec import StudySpec
from ash.worker.trainers import TrainerFn, make_trainer, run_job

MAX_RESTARTS = 100


def _child(conn: Connection, spec: StudySpec, trainer: TrainerFn | None, threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from threadpoolctl import threadpool_limits

    try:
        fn = trainer if trainer is not None else make_trainer(spec)
    except Exception as exc:  # reported to the parent, which stops the study
        conn.send(("setup-error", str(exc)))
        return
    with threadpool_limits(limits=threads):
        while True:
            try:
                msg = conn.recv()
            except EOFError:
                return
            if msg is None:
                return
            job_id, config, start, stop, checkpoint = msg
            t0 = time.perf_counter()
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
                )
            )


class PoolError(RuntimeError):
    """The pool cannot go on (a trainer that cannot be set up, workers that keep dying)."""


@dataclass
class _Worker:
    name: str
    process: Any
    conn: Connection
    job: int | None = None


class LocalPool:
    def __init__(
        self,
        spec: StudySpec,
        driver: Driver,
        workers: int,
        threads: int,
        *,
        trainer: TrainerFn | None = None,
    ) -> None:
        self.spec = spec
        self.driver = driver
        self.n = workers
        self.threads = threads
        self.trainer = trainer
        # fork keeps a notebook's function usable without pickling; spawn is the safe default
        self.ctx: Any = mp.get_context("fork" if trainer is not None else "spawn")
        self.workers: list[_Worker] = []
        self.restarts = 0
        self.job_seconds = 0.0

    def _start(self, name: str) -> _Worker:
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(
            target=_child,
            args=(child, self.spec, self.trainer, self.threads),
            name=name,
            daemon=True,
        )
        p.start()
        child.close()
        return _Worker(name, p, parent)

    def _dispatch(self) -> None:
        """Offer work to idle workers; make it durable (journal, trace) before sending it."""
        out = []
        for w in self.workers:
            if w.job is not None:
                continue
            a = self.driver.request(w.name)
            if a is None:
                break
            out.append((w, a))
            w.job = a.job.job_id
        self.driver.sync()
        for w, a in out:
            j = a.job
            w.conn.send((j.job_id, j.config, j.start, j.stop, a.checkpoint))

    def run(self, tick: Callable[[], None] | None = None, tick_every: float = 0.25) -> None:
        """Run until the driver's study is finished; ``tick`` is called periodically."""
        self.workers = [self._start(f"w{i}") for i in range(self.n)]
        try:
            self._loop(tick, tick_every)
        finally:
            self.shutdown()

    def _loop(self, tick: Callable[[], None] | None, tick_every: float) -> None:
        last = 0.0
        self._dispatch()
        while not self.driver.finished:
            busy = [w for w in self.workers if w.job is not None]
            if not busy:
                self._dispatch()
                if not any(w.job is not None for w in self.workers):
                    if self.driver.finished:
                        break
                    raise PoolError("no job in flight and none to hand out: the study is stuck")
            waitables: list[Any] = [w.conn for w in self.workers]
            waitables += [w.process.sentinel for w in self.workers]
            ready = wait(waitables, timeout=tick_every)
            for w in list(self.workers):
                if w.conn in ready:
                    self._receive(w)
                elif w.process.sentinel in ready and not w.process.is_alive():
                    self._died(w)
            self._dispatch()
            now = time.monotonic()
            if tick is not None and now - last >= tick_every:
                tick()
                last = now

    def _receive(self, w: _Worker) -> None:
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            self._died(w)
            return
        if msg[0] == "setup-error":
            raise PoolError(msg[1])
        _, job_id, value, metrics, state, error, seconds = msg
        self.job_seconds += seconds
        w.job = None
        self.driver.complete(job_id, value, metrics, state, error)

    def _died(self, w: _Worker) -> None:
        w.process.join(timeout=1)
        code = w.process.exitcode
        if w.job is not None:
            self.driver.lose(w.job)
            self.driver.errors.append(
                (-1, f"worker {w.name} died (exit code {code}) during job {w.job}")
            )
        self.restarts += 1
        if self.restarts > MAX_RESTARTS:
            raise PoolError(f"workers died {self.restarts} times; last exit code {code}")
        i = self.workers.index(w)
        w.conn.close()
        self.workers[i] = self._start(w.name)

    def shutdown(self) -> None:
        for w in self.workers:
            with contextlib.suppress(OSError, ValueError):
                w.conn.send(None)
        deadline = time.monotonic() + 2.0
        for w in self.workers:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(timeout=1)
            w.conn.close()
        self.workers = []


def auto_threads(workers: int) -> int:
    """Kernel threads per worker for ``--threads auto``: the cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // workers)
