"""Local slots as a study-loop backend: the embedded pool (``ash tune``) and MPI rank 0's own
trainer (``--rank0-trains``) run jobs on ``ash.worker.feeder.Feeder``'s slots through this
adapter, which turns the driver's assignments into slot work and slot events into results and
losses for ``ash.scheduler.loop``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ash.scheduler.driver import Assignment, Driver
from ash.scheduler.loop import Done, Lost, Reported
from ash.worker.feeder import Feeder, Work
from ash.worker.planner import Planner
from ash.worker.slots import Died, Slots


class SlotBackend:
    def __init__(
        self,
        driver: Driver,
        slots: Slots,
        planner: Planner | None = None,
        *,
        died: str = "worker process died (exit code {code}) during job {job}",
    ) -> None:
        self.driver = driver
        self.died = died
        self.feeder = Feeder(slots, planner, lookahead=True, on_start=self._started)
        self.plans = planner is not None
        self.assign_extra: Mapping[str, Any] | None = (
            None if self.plans else {"threads": slots.threads}
        )
        self._round: dict[int, Assignment] = {}
        self._reports: list[Reported] = []
        self._counts: dict[int, int] = {}  # running job -> reports received
        self._undecided: set[int] = set()  # jobs with reports the driver has not yet decided on
        slots.on_report = self._reported  # a (config, ctx) trainer's ctx.report batches

    def _reported(self, job_id: int, batch: list[Any]) -> None:
        self._reports.append(Reported(job_id, batch))
        self._counts[job_id] = self._counts.get(job_id, 0) + len(batch)
        self._undecided.add(job_id)

    def next_worker(self, round: Sequence[Assignment]) -> str | None:
        return self.feeder.next_slot([_work(a) for a in round])

    def start(self, round: Sequence[Assignment], more: bool) -> None:
        if self.plans:  # traced as each starts (_started)
            self._round.update((a.job.job_id, a) for a in round)
        self.feeder.start([_work(a) for a in round], more)

    def _started(self, work: Work, slot: str, threads: int) -> None:
        """A planned job starts: its assign event says the slot and threads it got."""
        a = self._round.pop(work.job_id)
        self.driver.trace_assign(replace(a, worker=slot, t=self.driver.clock()), threads=threads)

    def wait(self, timeout: float) -> list[Done | Lost | Reported]:
        events = self.feeder.wait(timeout)
        out: list[Done | Lost | Reported] = list(self._reports)  # a job's reports precede it
        self._reports.clear()
        for ev in events:
            if isinstance(ev, Died):
                why = self.died.format(code=ev.exitcode, job=ev.job_id)
                out.append(Lost(ev.job_id, why, crash=True))
            else:
                out.append(Done(ev.job_id, ev.value, ev.metrics, ev.state, ev.error))
            self._counts.pop(ev.job_id, None)
            self._undecided.discard(ev.job_id)
        return out

    def busy(self) -> bool:
        return self.feeder.busy()

    def decided(self, stops: Sequence[int]) -> None:
        """The driver decided on every report so far (durably): tell the trainers of
        ``stops`` to stop, and the others' waiting milestone reports to go on."""
        slots = self.feeder.slots
        for job_id in stops:
            slots.stop(job_id)
        for job_id in self._undecided:
            slots.decided(job_id, self._counts.get(job_id, 0))
        self._undecided.clear()

    def wind_down(self, grace: float = 2.0) -> None:
        """Tell the slots to end; ``close`` waits for them (see ``Slots.wind_down``)."""
        self.feeder.slots.wind_down(grace)

    def close(self, grace: float = 2.0) -> None:
        """Stop the slots: each finishes its job within ``grace`` seconds (from ``wind_down``)
        or is killed, as is every slot when the wait is interrupted (``Slots.shutdown``)."""
        self.feeder.slots.shutdown(grace)


def _work(a: Assignment) -> Work:
    j = a.job
    state = a.checkpoint
    assert state is None or isinstance(state, bytes)  # no shared directory here
    return Work(j.job_id, j.config, j.start, j.stop, state, j.trial, j.rung)
