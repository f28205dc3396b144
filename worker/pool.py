"""The embedded transport: local slots fed by a Driver in one loop (``ash tune``).

A single-threaded event loop: wait for the slots' results, hand each to the driver, then offer
work to idle slots until the driver says "nothing now" (only a new result can change that
answer). Assignments are made durable (``driver.sync``) before they are sent. A slot that dies
mid-job loses that job: the core re-issues it up to ``max_attempts`` times.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ash.scheduler.driver import Driver
from ash.scheduler.spec import StudySpec
from ash.worker.slots import Died, Slots, auto_threads
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
    ) -> None:
        self.spec = spec
        self.driver = driver
        self.n = workers
        self.threads = threads
        self.trainer = trainer
        self.job_seconds = 0.0
        self.slots: Slots | None = None

    def run(self, tick: Callable[[], None] | None = None, tick_every: float = 0.25) -> None:
        """Run until the driver's study is finished; ``tick`` is called periodically."""
        self.slots = Slots(self.spec, self.n, self.threads, trainer=self.trainer)
        try:
            self._loop(self.slots, tick, tick_every)
        finally:
            self.slots.shutdown()

    def _dispatch(self, slots: Slots) -> None:
        out = []
        for slot in slots.idle():
            a = self.driver.request(slot.name)
            if a is None:
                break
            out.append((slot, a))
        self.driver.sync()
        for slot, a in out:
            j = a.job
            state = a.checkpoint
            assert state is None or isinstance(state, bytes)  # no shared directory here
            slots.submit(slot, (j.job_id, j.config, j.start, j.stop, state))

    def _loop(self, slots: Slots, tick: Callable[[], None] | None, tick_every: float) -> None:
        last = 0.0
        self._dispatch(slots)
        while not self.driver.finished:
            if not slots.busy():
                raise PoolError("no job in flight and none to hand out: the study is stuck")
            for ev in slots.wait(tick_every):
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
