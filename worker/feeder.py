"""The slot feeder: the one dispatcher of slot-backed workers (the embedded pool, ``ash-worker``
and MPI rank 0's own trainer). It owns which slot a job runs on and with how many kernel threads.

A round: the caller asks ``next_slot(round)`` before taking each job (None: no room for more),
then calls ``start(round, more)`` with the jobs it took and whether more were to be had. With a
fixed split every job gets the slots' threads and starts at once on an idle slot. With a Planner
(``--threads auto``) the cores are a budget: jobs are taken while the round's jobs leave cores
free (``Planner.fits``), the planner gives each its threads (spare cores of a round that ran out
of jobs go to its longest ones), and ``on_start(work, slot, threads)`` is called as each starts.
With ``lookahead`` (the embedded pool), running jobs about to end (``Planner.ending``) lend
their cores and slots to the round: a job planned on them waits (``waiting``) for the first slot
to come free and its cores, so a job that turns out to be alone can have all the cores. Finished
jobs correct the planner's estimates (``Planner.observe``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ash.scheduler.core.space import Config
from ash.worker.planner import Planner, Task
from ash.worker.slots import Died, Finished, Slots


@dataclass(frozen=True)
class Work:
    """A job as a slot runs it: train ``config`` from ``start`` (``checkpoint``) to ``stop``."""

    job_id: int
    config: Config
    start: float
    stop: float
    checkpoint: bytes | None
    trial: int = -1  # for a (config, ctx) trainer's context (-1: not a study's trial)
    rung: int = 0


class Feeder:
    def __init__(
        self,
        slots: Slots,
        planner: Planner | None = None,
        *,
        lookahead: bool = False,
        on_start: Callable[[Work, str, int], None] | None = None,
    ) -> None:
        self.slots = slots
        self.planner = planner
        self.lookahead = lookahead
        self.on_start = on_start
        self.planned: dict[int, tuple[Task, int]] = {}  # running planned jobs: (task, threads)
        self.waiting: list[tuple[Work, Task, int]] = []  # planned, waiting for a slot and cores
        self._names: list[str] = []  # this round's slots
        self._cores = 0  # this round's cores
        self._tasks: list[Task] = []  # this round's jobs as the planner sees them

    @property
    def plans(self) -> bool:
        """Whether threads are planned per job (``on_start`` is then called as jobs start)."""
        return self.planner is not None

    def next_slot(self, round: Sequence[Work]) -> str | None:
        """The slot for another job of this round (which holds the jobs taken so far), or None
        when the round is full."""
        if not round:
            self._begin()
        if self.planner is not None:
            self._tasks += [
                self.planner.task(w.config, w.stop - w.start) for w in round[len(self._tasks) :]
            ]
            if not self.planner.fits(self._tasks, self._cores):
                return None
        i = len(round)
        return self._names[i] if i < len(self._names) else None

    def _begin(self) -> None:
        self._tasks = []
        if self.planner is None:
            self._names = [s.name for s in self.slots.idle()]
            return
        self._start_waiting()
        planner, slots = self.planner, self.slots
        ending = []
        if self.lookahead:
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
        self._names = names[len(self.waiting) :]
        cores = planner.budget - slots.threads_in_use() - sum(w[2] for w in self.waiting)
        self._cores = cores + sum(s.threads for s in ending)

    def start(self, round: Sequence[Work], more: bool) -> None:
        """Start this round's jobs (``more``: further jobs were runnable)."""
        if self.planner is None:
            idle = {s.name: s for s in self.slots.idle()}
            for work, name in zip(round, self._names, strict=False):
                self._submit(work, idle[name], None)
            return
        if round:
            tasks = self._tasks + [
                self.planner.task(w.config, w.stop - w.start) for w in round[len(self._tasks) :]
            ]
            threads = self.planner.plan(tasks, self._cores, more)
            self.waiting += zip(round, tasks, threads, strict=True)
        self._start_waiting()

    def _start_waiting(self) -> None:
        """Start planned jobs, in order, on the first slots to come free, as their cores do (a
        job planned on the cores of one about to end need not get that job's slot: when the
        estimate was short, another slot frees first)."""
        assert self.planner is not None
        while self.waiting:
            work, task, t = self.waiting[0]
            idle = self.slots.idle()
            if not idle or self.planner.budget - self.slots.threads_in_use() < t:
                return
            self.waiting.pop(0)
            if self.on_start is not None:
                self.on_start(work, idle[0].name, t)
            self.planned[work.job_id] = (task, t)
            self._submit(work, idle[0], t)

    def _submit(self, work: Work, slot: Any, threads: int | None) -> None:
        job = (
            work.job_id,
            work.config,
            work.start,
            work.stop,
            work.checkpoint,
            work.trial,
            work.rung,
        )
        self.slots.submit(slot, job, threads)

    def wait(self, timeout: float, wake: Any = None) -> list[Finished | Died]:
        """What the slots reported within ``timeout`` (see ``Slots.wait``); finished planned
        jobs teach the planner how long jobs of their shape really take."""
        events = self.slots.wait(timeout, wake=wake)
        for ev in events:
            planned = self.planned.pop(ev.job_id, None)
            if planned is None or self.planner is None:
                continue
            if isinstance(ev, Finished) and ev.error is None:
                self.planner.observe(*planned, ev.seconds)
        return events

    def busy(self) -> bool:
        """Whether any job is running or waiting to start."""
        return bool(self.slots.busy()) or bool(self.waiting)

    def idle(self) -> bool:
        return bool(self.slots.idle())
