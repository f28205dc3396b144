"""Threads as a scheduled resource: kernel calibration per model shape and the thread planner.

A worker with C cores can run S jobs at once with T kernel threads each (S * T <= C). Few jobs
with many threads suit big models; many jobs with one thread suit ASHA's many small early-rung
jobs (the kernel keeps small batches on one thread anyway). With ``--threads auto`` this module
decides, per job, how many threads it gets:

- ``calibrate`` times the native kernel on synthetic data of a job's shape (features, hidden
  sizes, classes, batch size, rows): one job alone at 1..C threads, and C // t concurrent jobs at
  t threads (Python threads, each under its own threadpool limit: OpenMP limits are per calling
  thread), so contention between jobs is measured, not assumed. It uses a subsample of rows and
  a time budget (0.25 s; about 0.1 s in practice for a shape the kernel parallelises,
  milliseconds for one it does not) and is cached per shape in this process (``speeds``).
- ``best_threads`` is the uniform-workload rule: the t that completes the most jobs per second,
  ``min(S, C // t) * speed(t)``; ``lone_threads`` is how many threads still speed one job up.
- ``Planner`` applies them per job: each job gets its shape's best t (capped by the free cores);
  when a dispatch round finds fewer runnable jobs than free cores, the spare cores go to the
  round's longest jobs (higher rungs train longer) as far as they make those jobs faster. A
  running job about to end (``ending``: by its calibrated time, corrected by what finished jobs
  took, ``observe``) lends its cores to the next round (the embedded pool does this): a job
  planned on them waits for them, so that a job that turns out to be alone (the last of a rung
  at an SH barrier, ASHA's tail) can take every core instead of the leftover ones. A trainer
  whose shape is unknown (a Python trainer) gets an equal share, ``C // S``, plus spare cores
  when the round leaves some.
- Real jobs check the calibration: after every finished job the planner decides that shape's
  split again with the calibrated speeds corrected by what its jobs took, and a close call is
  tried both ways with a job (``_decide``). When no shape can use a second thread
  (``serial``) there is nothing to plan and a transport runs one thread per slot.

Nothing here does I/O beyond timing the kernel and an optional log callback; the slot
processes apply the decision (``ash.worker.slots``) and the transports record it in the trace.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ash.scheduler.core.space import Choice, Config, Constant, Int, SearchSpace
from ash.spec import StudySpec
from ash.worker.mlp_params import PARAMS

#: The parameters of the mlp trainer that change a job's shape (and so its best thread count).
SHAPE_PARAMS = ("hidden", "layers", "batch_size")


@dataclass(frozen=True, order=True)
class Shape:
    """What the kernel's speed depends on: layer sizes, batch size and rows per epoch."""

    n_in: int
    hidden: tuple[int, ...]
    n_out: int
    batch_size: int
    rows: int

    def __str__(self) -> str:
        layers = "-".join(str(x) for x in (self.n_in, *self.hidden, self.n_out))
        batch = "full batch" if self.batch_size >= self.rows else f"batch {self.batch_size}"
        return f"mlp {layers}, {batch}, {self.rows} rows"


@dataclass(frozen=True)
class Speeds:
    """Measured kernel throughput of one shape, in training rows per second.

    ``alone[t]``: one job with t threads; ``packed[t]``: ``cores // t`` jobs with t threads each,
    running together (their sum). ``parallel`` is False when the kernel keeps this shape on one
    thread whatever it is allowed (then more threads cannot help and nothing else is timed)."""

    cores: int
    alone: Mapping[int, float]
    packed: Mapping[int, float]
    parallel: bool = True
    seconds: float = 0.0

    def per_job(self, t: int, jobs: int | None = None) -> float:
        """Rows/s of one job with t threads while ``jobs`` jobs like it run (default: as many as
        fit, ``cores // t``); one job alone is ``alone[t]``, more are taken as packed."""
        copies = max(1, self.cores // t)
        if (jobs if jobs is not None else copies) <= 1 or t not in self.packed:
            return self.alone[t]
        return self.packed[t] / copies


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def stream_rates(
    speeds: Speeds, slots: int, scale: Mapping[int, float] | None = None
) -> dict[int, float]:
    """Rows per second a stream of jobs of this shape completes on ``slots`` slots with t
    threads each, for every t that fits: ``min(slots, cores // t) * per_job(t)``, divided by
    ``scale[t]`` (how much longer than calibrated real jobs took, when known)."""
    out = {}
    for t in range(1, speeds.cores + 1):
        k = min(slots, speeds.cores // t)
        if k >= 1:
            out[t] = k * speeds.per_job(t, k) / (scale.get(t, 1.0) if scale else 1.0)
    return out


def best_threads(
    speeds: Speeds, slots: int, margin: float = 0.10, scale: Mapping[int, float] | None = None
) -> int:
    """Threads per job that complete the most jobs per second for a stream of jobs of this
    shape on ``slots`` slots (``stream_rates``). More threads must win by ``margin``, otherwise
    the smaller count stays: beyond measurement noise, a job on more threads loses the most when
    a core is disturbed later (its barriers wait for the slowest thread), while one-thread jobs
    slow down gracefully."""
    best_t, best_rate = 1, 0.0
    for t, rate in stream_rates(speeds, slots, scale).items():
        if rate > best_rate * (1.0 + margin):
            best_t, best_rate = t, rate
    return best_t


def lone_threads(speeds: Speeds, limit: int, gain: float = 0.10) -> int:
    """The most threads (up to ``limit``) worth giving one job running alone: each step up must
    make it at least ``gain`` faster than the best count below it."""
    best = 1
    for t in range(2, min(limit, speeds.cores) + 1):
        if speeds.alone.get(t, 0.0) > speeds.alone[best] * (1.0 + gain):
            best = t
    return best


# -- calibration --------------------------------------------------------------------------


def _data(shape: Shape, rows: int, seed: int) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, shape.n_in), dtype=np.float32)
    y = rng.integers(0, shape.n_out, rows, dtype=np.int32)
    return X, y


_omp: Any = None


def _omp_limit(threads: int) -> Any:
    """A context that limits OpenMP to ``threads`` in the calling thread. One controller for the
    process: ``threadpool_limits`` would scan the loaded libraries on every call (milliseconds)."""
    global _omp
    if _omp is None:
        from threadpoolctl import ThreadpoolController

        import ash.native  # noqa: F401  (loads libgomp before the scan)

        _omp = ThreadpoolController().select(user_api="openmp")
    return _omp.limit(limits=threads)


def _run(state: bytes, data: Sequence[tuple[Any, Any]], batch: int, threads: int) -> float:
    """Seconds for ``len(data)`` concurrent one-epoch trainings, each with ``threads`` threads
    (each in its own Python thread, which holds its own OpenMP limit): from the first one's
    start to the last one's end."""
    from ash.native import mlp

    start = threading.Barrier(len(data))
    spans: list[tuple[float, float]] = []

    def one(X: Any, y: Any) -> None:
        with _omp_limit(threads):
            start.wait()
            t0 = time.perf_counter()
            mlp.train(state, X, y, 1, lr=1e-3, batch_size=batch)
            spans.append((t0, time.perf_counter()))

    if len(data) == 1:  # in the calling thread: no thread start in the timing
        with _omp_limit(threads):
            t0 = time.perf_counter()
            mlp.train(state, data[0][0], data[0][1], 1, lr=1e-3, batch_size=batch)
            return time.perf_counter() - t0
    workers = [threading.Thread(target=one, args=xy) for xy in data]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    # from the first start to the last end, as each job timed itself: a job that got going late
    # (the GIL after the barrier) lengthens the window instead of shortening it
    return max(e for _, e in spans) - min(s for s, _ in spans)


def calibrate(shape: Shape, cores: int, *, budget_s: float = 0.25, reps: int = 3) -> Speeds:
    """Time the native kernel on ``shape`` at 1..cores threads, alone and packed.

    Synthetic data of the shape's width (the kernel is dense: values do not change its speed).
    A probe of one mini-batch at 1 and at ``cores`` threads tells whether the kernel splits this
    shape at all; if not, the probe's timing is all (milliseconds). Otherwise every
    configuration (one job at t threads; ``cores // t`` jobs at t threads) is timed on a
    subsample of rows sized from the probe so that ``reps`` rounds fit the budget, in rotating
    order, keeping each one's best (other processes only ever slow a run down). One round
    always runs; later ones only while the budget lasts."""
    from ash.native import mlp

    t_start = time.perf_counter()
    full = shape.batch_size >= shape.rows
    # the probe: one mini-batch (a full batch is subsampled, and stays a full batch)
    step = min(shape.rows, 2048) if full else shape.batch_size
    state = mlp.init_state(shape.n_in, list(shape.hidden), shape.n_out, seed=0)
    X, y = _data(shape, step, 0)

    def probe(threads: int) -> tuple[float, int]:
        with _omp_limit(threads):
            mlp.train(state, X, y, 1, lr=1e-3, batch_size=step)  # warm up (and the team)
            t0 = time.perf_counter()
            used = mlp.train(state, X, y, 1, lr=1e-3, batch_size=step).threads
            return max(time.perf_counter() - t0, 1e-7) / step, used

    per_row = {1: probe(1)[0]}
    parallel = False
    if cores > 1:
        per_row[cores], used = probe(cores)
        parallel = used > 1
    if not parallel:
        one = 1.0 / per_row[1]
        return Speeds(
            cores,
            {t: one for t in range(1, cores + 1)},
            {1: one * cores} if cores > 1 else {},
            parallel=False,
            seconds=time.perf_counter() - t_start,
        )

    configs = [(1, t) for t in range(1, cores + 1)]  # (copies, threads)
    configs += [(cores // t, t) for t in range(1, cores + 1) if cores // t >= 2]
    target = budget_s / (max(1, reps) * len(configs) * 1.5)

    def rows_for(t: int) -> int:
        cost = per_row.get(t, max(per_row[1] / t, per_row[cores]))
        if full:
            return max(step, min(shape.rows, int(target / cost)))
        return max(step, min(shape.rows, math.floor(target / cost / step) * step))

    rows = {t: rows_for(t) for _, t in configs}
    most = max(rows.values())
    data = [_data(shape, most, 1 + i) for i in range(max(c for c, _ in configs))]
    best: dict[tuple[int, int], float] = {}
    for r in range(max(1, reps)):
        if r > 0 and time.perf_counter() - t_start > budget_s:
            break
        order = configs[r % len(configs) :] + configs[: r % len(configs)]
        for copies, t in order:
            n = rows[t]
            part = [(X[:n], y[:n]) for X, y in data[:copies]]
            seconds = _run(state, part, n if full else shape.batch_size, t)
            best[copies, t] = max(best.get((copies, t), 0.0), copies * n / max(seconds, 1e-9))
    alone = {t: best[1, t] for t in range(1, cores + 1)}
    packed = {t: best[c, t] for c, t in configs if c >= 2}
    return Speeds(cores, alone, packed, parallel=True, seconds=time.perf_counter() - t_start)


_cache: dict[tuple[Shape, int], Speeds] = {}
_cache_lock = threading.Lock()


def speeds(shape: Shape, cores: int, *, budget_s: float = 0.25) -> Speeds:
    """``calibrate``, once per shape and core count in this process."""
    key = (shape, cores)
    with _cache_lock:
        got = _cache.get(key)
        if got is None:
            got = _cache[key] = calibrate(shape, cores, budget_s=budget_s)
        return got


def describe(shape: Shape, sp: Speeds, slots: int) -> str:
    """One log line: the shape, what was measured and the split it gives."""
    t = best_threads(sp, slots)
    k = min(slots, sp.cores // t)
    split = f"{k} slot{'s' if k != 1 else ''} x {t} thread{'s' if t != 1 else ''}"
    if not sp.parallel:
        seen = f"the kernel keeps it on 1 thread ({sp.alone[1] / 1e6:.2f} M rows/s)"
    else:
        alone = " / ".join(f"{sp.alone[t] / 1e6:.2f}" for t in sorted(sp.alone))
        packed = ", ".join(
            f"{sp.cores // t} x {t}: {v / 1e6:.2f}" for t, v in sorted(sp.packed.items())
        )
        seen = f"one job on 1..{sp.cores} threads {alone} M rows/s; together {packed}"
    return f"{shape}: {seen} -> {split} (calibrated in {sp.seconds:.2f} s)"


# -- the mlp trainer's shapes ---------------------------------------------------------------


def mlp_shape(config: Config, n_in: int, n_out: int, rows: int) -> Shape:
    """The shape of an mlp-trainer job with ``config`` on data of that size."""
    p = {name: config.get(name, PARAMS[name][0]) for name in SHAPE_PARAMS}
    hidden = (int(str(p["hidden"])),) * int(str(p["layers"]))
    return Shape(n_in, hidden, n_out, int(str(p["batch_size"])), rows)


def shape_configs(space: SearchSpace, limit: int = 16) -> list[Config] | None:
    """Every combination of the shape parameters the space can produce, if they are few
    (choices, constants, small integer ranges); None when they are not."""
    values: list[list[Any]] = []
    for name in SHAPE_PARAMS:
        d = space.domains.get(name)
        if d is None:
            values.append([PARAMS[name][0]])
        elif isinstance(d, Choice):
            values.append(list(d.values))
        elif isinstance(d, Constant):
            values.append([d.value])
        elif isinstance(d, Int) and d.high - d.low < limit:
            values.append(list(range(d.low, d.high + 1)))
        else:
            return None
    if math.prod(len(v) for v in values) > limit:
        return None
    return [dict(zip(SHAPE_PARAMS, combo, strict=True)) for combo in itertools.product(*values)]


# -- the planner ----------------------------------------------------------------------------

#: A split whose calibrated rate is within this share of the chosen one's is checked with jobs.
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
