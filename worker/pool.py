"""The embedded transport: local slots fed by a Driver in one loop (``ash tune``).

A single-threaded event loop: wait for the slots' results, hand each to the driver, then offer
work to idle slots until the driver says "nothing now" (only a new result can change that
answer). Assignments are made durable (``driver.sync``) before they are sent. A slot that dies
mid-job loses that job: the core re-issues it up to ``max_attempts`` times.

Threads: with a fixed split every job gets the slots' count. With a ``Planner``
(``--threads auto``) the cores are a budget: a round asks the driver for one job at a time while
the jobs so far leave cores free, the planner gives each its threads (spare cores of a round that
ran out of jobs go to its longest ones), and only then are the round's assign events traced, with
``threads``, so the trace says what each job ran with. While a running job is about to end (by
its calibrated estimate), no new job starts on the leftover cores (``Planner.hold``): the loop
waits for that job, at most until its estimate runs out.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ash.scheduler.driver import Assignment, Driver
from ash.scheduler.space import Config
from ash.scheduler.spec import StudySpec
from ash.worker.slots import Died, Slots, _Slot, auto_threads
from ash.worker.threads import Planner
from ash.worker.trainers import TrainerFn

__all__ = ["LocalPool", "PoolError", "auto_threads"]


class PoolError(RuntimeError):
    """The study cannot go on: nothing in flight and nothing to hand out."""


class LocalPool:
    def __init__(
        self,
        spec: StudySpec,
        driver: Driver,
        workers: int,
        threads: int,
        *,
        trainer: TrainerFn | None = None,
        planner: Planner | None = None,
    ) -> None:
        self.spec = spec
        self.driver = driver
        self.n = workers
        self.threads = threads
        self.trainer = trainer
        self.planner = planner
        self.job_seconds = 0.0
        self.planned: dict[int, tuple[Config, float]] = {}  # running job -> (config, span)
        self.wake: float | None = None  # a planner's hold: dispatch again after this long
        self.slots: Slots | None = None

    def run(self, tick: Callable[[], None] | None = None, tick_every: float = 0.25) -> None:
        """Run until the driver's study is finished; ``tick`` is called periodically."""
        if self.planner is not None:
            self.planner.warm()  # before the slots start: nothing else runs yet
        self.slots = Slots(self.spec, self.n, self.threads, trainer=self.trainer)
        try:
            self._loop(self.slots, tick, tick_every)
        finally:
            self.slots.shutdown()

    def _dispatch(self, slots: Slots) -> None:
        if self.planner is not None:
            self._dispatch_planned(slots, self.planner)
            return
        out = []
        for slot in slots.idle():
            a = self.driver.request(slot.name, trace_extra={"threads": self.threads})
            if a is None:
                break
            out.append((slot, a))
        self.driver.sync()
        for slot, a in out:
            self._submit(slots, slot, a, None)

    def _dispatch_planned(self, slots: Slots, planner: Planner) -> None:
        free = planner.budget - slots.threads_in_use()
        now = time.monotonic()
        running = [
            (*self.planned[s.job], s.threads, now - s.started if s.started else 0.0)
            for s in slots.slots
            if s.job is not None and s.job in self.planned
        ]
        self.wake = planner.hold(running, free) or None
        if self.wake is not None:
            return  # a job is about to end: plan the next ones on its cores too
        out: list[tuple[_Slot, Assignment]] = []
        jobs: list[tuple[Config, float]] = []
        for slot in slots.idle():
            if not planner.fits(jobs, free):
                break
            a = self.driver.request(slot.name, defer_trace=True)
            if a is None:
                break
            out.append((slot, a))
            jobs.append((a.job.config, a.job.stop - a.job.start))
        threads = planner.plan(jobs, free, more=False) if out else []
        for (_, a), t in zip(out, threads, strict=True):
            self.driver.trace_assign(a, threads=t)
        self.driver.sync()
        for (slot, a), t in zip(out, threads, strict=True):
            self.planned[a.job.job_id] = (a.job.config, a.job.stop - a.job.start)
            self._submit(slots, slot, a, t)

    def _submit(self, slots: Slots, slot: _Slot, a: Assignment, threads: int | None) -> None:
        j = a.job
        state = a.checkpoint
        assert state is None or isinstance(state, bytes)  # no shared directory here
        slots.submit(slot, (j.job_id, j.config, j.start, j.stop, state), threads)

    def _loop(self, slots: Slots, tick: Callable[[], None] | None, tick_every: float) -> None:
        last = 0.0
        self._dispatch(slots)
        while not self.driver.finished:
            if not slots.busy():
                raise PoolError("no job in flight and none to hand out: the study is stuck")
            for ev in slots.wait(tick_every if self.wake is None else min(tick_every, self.wake)):
                self.planned.pop(ev.job_id, None)
                if isinstance(ev, Died):
                    self.driver.lose(ev.job_id)
                    why = f"worker process died (exit code {ev.exitcode}) during job {ev.job_id}"
                    self.driver.errors.append((-1, why))
                else:
                    self.job_seconds += ev.seconds
                    self.driver.complete(ev.job_id, ev.value, ev.metrics, ev.state, ev.error)
            self._dispatch(slots)
            now = time.monotonic()
            if tick is not None and now - last >= tick_every:
                tick()
                last = now
