"""The study loop: one loop that drives a Driver over any backend (Syne Tune's ``Tuner.run``
over swappable backends).

A backend is where jobs run (the embedded slots, the MPI ranks): it names the worker for each
job of a round, starts the round's jobs, and reports what came back: ``Done`` (a result) or
``Lost`` (the worker vanished). The loop asks the driver for a job for each worker the backend
names, makes the asks durable (``driver.sync``) before any job leaves, starts them, and feeds
back what the backend reports, until the study is finished. A backend that plans each job's
threads (``plans``) traces a job's assign event itself when the job starts
(``Driver.trace_assign``), with the threads and slot it got. Jobs the driver stopped on their
reports (``[asha] stop_on = "reports"``) are told to the backend (``decided``) after the sync
that made those reports durable, with the reports it decided on (a trainer's report at a rung
milestone waits for that verdict).

The gRPC service drives the same Driver interface (request, complete, lose) from its asyncio
event loop instead: it pushes work to sessions as they become hungry and cannot block here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ash.link.checkpoints import State
from ash.scheduler.driver import Assignment, Driver


@dataclass(frozen=True)
class Done:
    """A job's result (``value`` None: failed, with ``error``)."""

    job_id: int
    value: float | None
    metrics: dict[str, Any]
    state: State | None
    error: str | None
    extra: Mapping[str, Any] | None = None  # more fields for its trace event


@dataclass(frozen=True)
class Reported:
    """Intermediate reports of a running job (``ctx.report``): ``[(step, metrics)]``."""

    job_id: int
    reports: list[tuple[float, dict[str, Any]]]


@dataclass(frozen=True)
class Lost:
    """A job whose worker vanished (``why``); ``crash`` also notes it in the study's errors."""

    job_id: int
    why: str
    crash: bool = False


class Backend(Protocol):
    plans: bool  # traces each job's assign event itself, when it starts
    assign_extra: Mapping[str, Any] | None  # more fields for assign events (when not planning)

    def next_worker(self, round: Sequence[Assignment]) -> str | None: ...

    def start(self, round: Sequence[Assignment], more: bool) -> None: ...

    def wait(self, timeout: float) -> list[Done | Lost | Reported]: ...

    def busy(self) -> bool: ...

    def decided(self, stops: Sequence[int]) -> None: ...


class StuckError(RuntimeError):
    """Nothing in flight and nothing to hand out: the study cannot go on."""


def dispatch(driver: Driver, backend: Backend) -> None:
    """One round: a job for each worker the backend names, durable, then started."""
    round: list[Assignment] = []
    more = True
    while (worker := backend.next_worker(round)) is not None:
        a = driver.request(worker, trace_extra=backend.assign_extra, defer_trace=backend.plans)
        if a is None:
            more = False
            break
        round.append(a)
    driver.sync()  # journal first: no worker sees a decision the journal lacks
    backend.start(round, more)
    backend.decided(driver.take_stops())  # verdicts on the reports that sync made durable


def apply(driver: Driver, events: Sequence[Done | Lost | Reported]) -> None:
    for ev in events:
        if isinstance(ev, Reported):
            driver.report(ev.job_id, ev.reports)
        elif isinstance(ev, Lost):
            if ev.crash:
                driver.note(ev.why, ev.job_id)
            driver.lose(ev.job_id, why=ev.why)
        else:
            driver.complete(ev.job_id, ev.value, ev.metrics, ev.state, ev.error, ev.extra)


def run(
    driver: Driver,
    backend: Backend,
    tick: Callable[[], None] | None = None,
    tick_every: float = 0.25,
) -> None:
    """Drive ``backend`` until the driver's study is finished; ``tick`` is called periodically
    (a progress display)."""
    last = time.monotonic()
    dispatch(driver, backend)
    while not driver.finished:
        if not backend.busy():
            raise StuckError("no job in flight and none to hand out: the study is stuck")
        apply(driver, backend.wait(tick_every))
        dispatch(driver, backend)
        now = time.monotonic()
        if tick is not None and now - last >= tick_every:
            tick()
            last = now
