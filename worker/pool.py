"""The embedded transport: local slots fed by a Driver in one loop (``ash tune``).

A single-threaded event loop: wait for the slots' results, hand each to the driver, then offer
work to idle slots until the driver says "nothing now" (only a new result can change that
answer). Assignments are made durable (``driver.sync``) before they are sent. A slot that dies
mid-job loses that job: the core re-issues it up to ``max_attempts`` times.

Threads: with a fixed split every job gets the slots' count. With a ``Planner``
(``--threads auto``) the cores are a budget: a round asks the driver for one job at a time while
the jobs so far leave cores free, the planner gives each its threads (spare cores of a round that
ran out of jobs go to its longest ones), and only then are the round's assign events traced, with
``threads``, so the trace says what each job ran with. Running jobs about to end
(``Planner.ending``) lend their cores and slots to the round: a job planned on them waits
(``waiting``) for a free slot and its cores, so a job that turns out to be alone can have all
the cores; its assign event is traced when it starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from ash.scheduler.driver import Assignment, Driver
from ash.spec import StudySpec
from ash.worker.planner import Planner, Task
from ash.worker.slots import Died, Slots, _Slot, auto_threads
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
        self.planned: dict[int, tuple[Task, int]] = {}  # running jobs: (task, threads)
        # planned, waiting for a slot and their cores: (job, task, threads)
        self.waiting: list[tuple[Assignment, Task, int]] = []
        self.slots: Slots | None = None

    def run(self, tick: Callable[[], None] | None = None, tick_every: float = 0.25) -> None:
        """Run until the driver's study is finished; ``tick`` is called periodically."""
        if self.planner is not None:
            self.planner.warm()  # before the slots start: nothing else runs yet
            if self.planner.serial():  # every shape on one thread: nothing to plan per job
                self.planner, self.threads = None, 1
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
        self._start_waiting(slots)
        now = time.monotonic()
        busy = [s for s in slots.slots if s.job is not None and s.job in self.planned]
        running = [
            (self.planned[s.job][0], s.threads, now - s.started if s.started else 0.0)
            for s in busy
            if s.job is not None
        ]
        ending = [busy[i] for i in planner.ending(running)]
        # the slots a new job may have: idle ones and those about to be, less the waiting jobs'
        names = [s.name for s in slots.idle()] + [s.name for s in ending]
        names = names[len(self.waiting) :]
        cores = planner.budget - slots.threads_in_use() - sum(w[2] for w in self.waiting)
        cores += sum(s.threads for s in ending)
        out: list[Assignment] = []
        tasks: list[Task] = []
        more = True
        for name in names:
            if not planner.fits(tasks, cores):
                break
            a = self.driver.request(name, defer_trace=True)
            if a is None:
                more = False
                break
            out.append(a)
            tasks.append(planner.task(a.job.config, a.job.stop - a.job.start))
        threads = planner.plan(tasks, cores, more) if out else []
        self.driver.sync()
        self.waiting += zip(out, tasks, threads, strict=True)
        self._start_waiting(slots)

    def _start_waiting(self, slots: Slots) -> None:
        """Start planned jobs, in order, on the first slots to come free, as their cores do.
        A job's assign event is traced when it starts, with the slot it runs on and its threads
        (a job planned on the cores of one about to end need not get that job's slot: when the
        estimate was short, another slot frees first)."""
        assert self.planner is not None
        while self.waiting:
            a, task, t = self.waiting[0]
            idle = slots.idle()
            if not idle or self.planner.budget - slots.threads_in_use() < t:
                return
            self.waiting.pop(0)
            self.driver.trace_assign(
                replace(a, worker=idle[0].name, t=self.driver.clock()), threads=t
            )
            self.planned[a.job.job_id] = (task, t)
            self._submit(slots, idle[0], a, t)

    def _submit(self, slots: Slots, slot: _Slot, a: Assignment, threads: int | None) -> None:
        j = a.job
        state = a.checkpoint
        assert state is None or isinstance(state, bytes)  # no shared directory here
        slots.submit(slot, (j.job_id, j.config, j.start, j.stop, state), threads)

    def _loop(self, slots: Slots, tick: Callable[[], None] | None, tick_every: float) -> None:
        last = 0.0
        self._dispatch(slots)
        while not self.driver.finished:
            if not slots.busy() and not self.waiting:
                raise PoolError("no job in flight and none to hand out: the study is stuck")
            for ev in slots.wait(tick_every):
                planned = self.planned.pop(ev.job_id, None)
                if isinstance(ev, Died):
                    why = f"worker process died (exit code {ev.exitcode}) during job {ev.job_id}"
                    self.driver.errors.append((-1, why))
                    self.driver.lose(ev.job_id, why=why)
                else:
                    if planned is not None and self.planner is not None and ev.error is None:
                        self.planner.observe(*planned, ev.seconds)
                    self.driver.complete(ev.job_id, ev.value, ev.metrics, ev.state, ev.error)
            self._dispatch(slots)
            now = time.monotonic()
            if tick is not None and now - last >= tick_every:
                tick()
                last = now
