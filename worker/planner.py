"""The thread planner of ``--threads auto``: how many kernel threads each job gets.

Given the jobs running, the jobs runnable and a budget of cores, a ``Planner`` decides each new
job's threads from its shape's calibration (``ash.worker.calibration``), and corrects that
calibration by what finished jobs took. A transport (the embedded pool, ``ash.worker.pool``; the
gRPC worker, ``ash.worker.daemon``) turns each job into a ``Task`` once and asks ``fits``,
``plan`` and ``ending`` about lists of them; the slot processes apply the decision
(``ash.worker.slots``) and the transports record it in the trace.

- Each job gets its shape's best t (``best_threads``; capped by the free cores). When a dispatch
  round finds fewer runnable jobs than free cores, the spare cores go to the round's longest jobs
  (higher rungs train longer) as far as they make those jobs faster (``lone_threads``). A
  trainer whose shape is unknown (a Python trainer) gets an equal share, ``C // S``, plus spare
  cores when the round leaves some. The budget is ``max(cores, slots)``.
- A running job about to end (``ending``: past 85% of its expected time and not yet 30% over
  it) lends its cores to the next round (the embedded pool does this): a job planned on them
  waits for them, so that a job that turns out to be alone (the last of a rung at an SH barrier,
  ASHA's tail) can take every core instead of the leftover ones.
- Observed slowdown: after every finished job (``observe``) the planner keeps, per shape and
  thread count, how much longer than calibrated its jobs took (a moving average of the ratio)
  and decides that shape's split again (``_decide``) on the calibrated rates divided by these
  ratios (a count no job ran on yet is taken to be off like the ones seen); ``expected``, and so
  ``ending``, use them too.
- One check of a close call: once ``TRIES`` (one) job of a shape the kernel parallelises ran on
  the chosen count, the best other count whose calibrated rate is at least ``EXPLORE`` (60%) of
  the chosen one's and that no job ran on yet takes that shape's next jobs, until the first of
  them finishes; from then on the two compare by what their jobs took. Each count is checked
  once: the calibration is a tenth of a second on a machine whose cores come and go.
- When every shape the study can produce was calibrated (``warm``) and the kernel keeps each on
  one thread (``serial``), there is nothing to plan and a transport runs one thread per slot.

``planner_for`` makes the planner of a study. Nothing here does I/O beyond the calibration it
asks for (``measure``), loading the study's dataset for its size (``planner_for``) and an
optional log callback; for given speeds it is deterministic, so tests inject ``measure``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from ash.cores import available_cores
from ash.scheduler.core.space import Config
from ash.spec import StudySpec
from ash.worker.calibration import (
    SHAPE_PARAMS,
    Shape,
    Speeds,
    best_threads,
    describe,
    lone_threads,
    mlp_shape,
    shape_configs,
    speeds,
    stream_rates,
)

#: A split whose calibrated rate is at least this share of the chosen one's is checked with jobs.
EXPLORE = 0.6
#: Jobs that run on a thread count before a close call is tried the other way.
TRIES = 1


class Task(NamedTuple):
    """One job as the planner sees it, worked out once when the job is handed out."""

    span: float  # resource to train (epochs for the mlp trainer)
    base: int  # threads of its shape's best split for a stream of such jobs
    lone: int  # the most threads worth giving it when it runs alone
    rows: int = 1  # rows per epoch (1: unknown shape)
    speeds: Speeds | None = None  # None: a trainer whose speed cannot be measured
    shape: Shape | None = None

    def seconds(self, threads: int) -> float:
        """Calibrated run time on ``threads`` threads beside as many jobs like it as fit (for
        an unknown shape: its span, which only orders jobs by length)."""
        if self.speeds is None:
            return self.span
        return self.span * self.rows / self.speeds.per_job(threads)


class Planner:
    """Decides each job's kernel threads within a budget of ``cores`` on ``slots`` slots.

    The budget is ``max(cores, slots)``: every slot may run a job with at least one thread, so
    more slots than cores oversubscribe as they would with a fixed split of one thread.

    ``shape_of`` maps a job's config to its Shape (None: a trainer whose speed cannot be
    measured, which gets an equal share); ``measure`` gives a shape's Speeds (default: the
    cached calibration). A transport turns each job into a ``Task`` once (``task``) and asks
    ``fits``, ``plan`` and ``ending`` about lists of them. Deterministic for given speeds, so
    tests inject ``measure``."""

    def __init__(
        self,
        cores: int,
        slots: int,
        *,
        shape_of: Callable[[Config], Shape | None] | None = None,
        measure: Callable[[Shape], Speeds] | None = None,
        log: Callable[[str], None] | None = None,
        warm: Iterable[Config] = (),
        complete: bool = False,
    ) -> None:
        self.cores = max(1, cores)
        self.slots = max(1, slots)
        self.budget = max(self.cores, self.slots)  # threads that may run at once
        self.shape_of = shape_of
        self.measure = measure or (lambda shape: speeds(shape, self.cores))
        self.log = log
        self.warm_configs = list(warm)
        self.complete = complete  # warm holds every shape the study can produce
        self._warmed = False
        self._known: dict[Shape, Speeds] = {}
        self._split: dict[Shape, tuple[int, int]] = {}  # shape -> (base, lone) threads
        self._scale: dict[tuple[Shape | None, int], float] = {}  # (shape, threads) -> observed
        self._seen: dict[tuple[Shape, int], int] = {}  # (shape, threads) -> jobs finished
        self._logged: dict[Shape, int] = {}  # shape -> the base threads last decided

    def speeds(self, config: Config) -> tuple[Shape, Speeds] | None:
        shape = self.shape_of(config) if self.shape_of is not None else None
        if shape is None:
            return None
        sp = self._known.get(shape)
        if sp is None:
            sp = self._known[shape] = self.measure(shape)
            if self.log is not None:
                self.log(f"threads auto: {describe(shape, sp, self.slots)}")
        return shape, sp

    def warm(self, budget_s: float = 2.0) -> None:
        """Calibrate the shapes the study can produce, before any job runs (a calibration
        beside running jobs would measure them too), within ``budget_s``; others come lazily."""
        t0 = time.perf_counter()
        for config in self.warm_configs:
            if time.perf_counter() - t0 > budget_s:
                return
            self.speeds(config)
        self._warmed = True

    def serial(self) -> bool:
        """Whether there is nothing to plan: every shape the study can produce was calibrated
        (``warm``) and the kernel keeps each on one thread, so every job gets one thread
        whatever runs beside it. A transport then runs the fixed split of one thread per slot
        and skips the per-job planning (tens of microseconds a job, which Iris-size jobs of half
        a millisecond feel)."""
        return (
            self.complete
            and self._warmed
            and bool(self._known)
            and not any(sp.parallel for sp in self._known.values())
        )

    def task(self, config: Config, span: float) -> Task:
        """A job with ``config`` training ``span`` of the resource, as the planner sees it."""
        got = self.speeds(config)
        if got is None:
            return Task(span, max(1, self.cores // self.slots), self.cores)
        shape, sp = got
        split = self._split.get(shape)
        if split is None:
            split = self._split[shape] = self._decide(shape, sp)
        return Task(span, split[0], split[1], shape.rows, sp, shape)

    def _decide(self, shape: Shape, sp: Speeds) -> tuple[int, int]:
        """(base, lone) threads for jobs of ``shape``: the calibrated rates, each divided by how
        much longer than calibrated its jobs really took (a count not yet seen is taken to be
        off like the seen ones: much of a small job's time is the same whatever its threads).
        And the check of a call the calibration could have got wrong: once ``TRIES`` jobs ran
        on the choice, a split whose calibrated rate came within ``EXPLORE`` of it runs
        ``TRIES`` jobs too, and from then on the two compare by what their jobs took. (The
        calibration is a tenth of a second on a machine whose cores come and go; on this
        project's 2-core VMs real 2-thread jobs ran 1.3-2x slower than calibrated while
        1-thread jobs kept to it, and one calibration put two 1-thread jobs at 73% of one
        2-thread job when they were faster.)"""
        seen = {t: self._seen.get((shape, t), 0) for t in range(1, self.cores + 1)}
        observed = [self._scale[shape, t] for t in seen if seen[t]]
        default = sum(observed) / len(observed) if observed else 1.0
        scale = {t: self._scale[shape, t] if seen[t] else default for t in seen}
        base = best_threads(sp, self.slots, scale=scale)
        why = "calibration" if not observed else "jobs seen"
        if sp.parallel and seen[base] >= TRIES:
            rates = stream_rates(sp, self.slots)  # the calibration alone: how close was it
            for t, rate in sorted(rates.items(), key=lambda kv: -kv[1]):
                if t != base and seen[t] < TRIES and rate >= EXPLORE * rates[base]:
                    base, why = t, "checking a close call"
                    break
        split = (base, lone_threads(sp, self.cores))
        if self.log is not None and observed and split[0] != self._logged.get(shape, split[0]):
            ts = [t for t in seen if seen[t]]
            counts = " / ".join(str(t) for t in ts)
            took = " / ".join(f"{self._scale[shape, t]:.2f}x" for t in ts)
            k = min(self.slots, self.cores // base)
            self.log(
                f"threads auto: {shape}: jobs on {counts} threads took {took} their calibrated"
                f" time -> {k} slot{'s' if k != 1 else ''} x {base} thread"
                f"{'s' if base != 1 else ''} ({why})"
            )
        self._logged[shape] = split[0]
        return split

    def expected(self, task: Task, threads: int) -> float:
        """Seconds a job should take on ``threads`` threads: the calibrated estimate, scaled by
        what finished jobs of its shape and thread count actually took (``observe``)."""
        return task.seconds(threads) * self._scale.get((task.shape, threads), 1.0)

    def observe(self, task: Task, threads: int, seconds: float) -> None:
        """A job finished in ``seconds`` (as its slot timed it): learn how far the calibration's
        estimate is off for its shape and thread count, and decide that shape's split again.
        The calibration times the kernel alone on a subsample for a tenth of a second; a job
        also evaluates, moves its state, runs in its own process and meets the machine's load."""
        shape = task.shape
        if shape is None or seconds <= 0.0:
            return
        ratio = seconds / max(task.seconds(threads), 1e-9)
        key = (shape, threads)
        old = self._scale.get(key)
        self._scale[key] = ratio if old is None else 0.7 * old + 0.3 * ratio
        self._seen[key] = self._seen.get(key, 0) + 1
        self._split.pop(shape, None)

    def fits(self, tasks: Sequence[Task], free: int) -> bool:
        """Whether another job may start after ``tasks`` on ``free`` cores."""
        used = 0
        for task in tasks:
            used += max(1, min(task.base, free - used))
        return used < free

    def plan(self, tasks: Sequence[Task], free: int, more: bool) -> list[int]:
        """Threads for a round of jobs on ``free`` cores, in order. The caller asks for one job
        at a time and stops once the threads so far fill ``free`` (``fits``); ``more`` says
        whether further jobs were runnable. When none were and cores are left, they go to the
        longest jobs as long as those get faster."""
        threads: list[int] = []
        left = free
        for task in tasks:
            t = max(1, min(task.base, left))
            threads.append(t)
            left -= t
        if more or left <= 0:
            return threads
        longest = sorted(range(len(tasks)), key=lambda i: (-tasks[i].seconds(threads[i]), i))
        for i in longest:
            if left <= 0:
                break
            add = max(0, min(tasks[i].lone, threads[i] + left, self.cores) - threads[i])
            threads[i] += add
            left -= add
        return threads

    def ending(self, running: Sequence[tuple[Task, int, float]]) -> list[int]:
        """Which running jobs are about to end: past 85% of their expected time and not yet 30%
        over it. ``running``: (task, threads, seconds since it started) per running job. A
        transport plans its next round on the free cores plus theirs: a job that fits now
        starts now, one planned on their cores waits for them, so a job that turns out to be
        alone can take all the cores instead of keeping the leftover ones for its whole run.
        Jobs of an unknown shape are never about to end (there is no estimate)."""
        out = []
        for i, (task, threads, elapsed) in enumerate(running):
            if task.speeds is None:
                continue
            est = self.expected(task, threads)
            if 0.85 * est <= elapsed < 1.3 * est:
                out.append(i)
        return out


def planner_for(
    spec: StudySpec,
    slots: int,
    *,
    cores: int | None = None,
    custom_trainer: bool = False,
    log: Callable[[str], None] | None = None,
) -> Planner:
    """The planner of ``--threads auto`` for a study: mlp trainers are calibrated per shape
    (the dataset is loaded here for its size), other trainers share the cores equally."""
    n = cores or available_cores()
    t = spec.trainer
    if custom_trainer or t is None or t.type != "mlp":
        return Planner(n, slots, log=log)
    from ash.worker.datasets import cached_split

    d = cached_split(t.dataset, str(spec.base_dir), t.validation_fraction, spec.seed)
    n_in, n_out, rows = int(d.X_train.shape[1]), int(d.n_classes), len(d.X_train)

    shapes: dict[tuple[Any, ...], Shape] = {}

    def shape_of(config: Config) -> Shape:  # called per job: memoised on the raw values
        key = tuple(config.get(name) for name in SHAPE_PARAMS)
        got = shapes.get(key)
        if got is None:
            got = shapes[key] = mlp_shape(config, n_in, n_out, rows)
        return got

    warm = shape_configs(spec.space)
    return Planner(n, slots, shape_of=shape_of, log=log, warm=warm or [], complete=warm is not None)
