"""Kernel calibration: how fast the native kernel trains a model shape on 1..C threads.

Threads are a scheduled resource (``--threads auto``). A worker with C cores can run S jobs at
once with T kernel threads each (S * T <= C). Few jobs with many threads suit big models; many
jobs with one thread suit ASHA's many small early-rung jobs (the kernel keeps small batches on one
thread anyway). Which is faster depends on the shape and on the machine, so this module measures
it; what each job then gets is decided from these measurements by ``ash.worker.planner``.

- ``calibrate`` times the native kernel on synthetic data of a job's shape (features, hidden
  sizes, classes, batch size, rows): one job alone at 1..C threads, and C // t concurrent jobs at
  t threads (Python threads, each under its own threadpool limit: OpenMP limits are per calling
  thread), so contention between jobs is measured, not assumed. It uses a subsample of rows and
  a time budget (0.25 s; about 0.1 s in practice for a shape the kernel parallelises,
  milliseconds for one it does not) and is cached per shape in this process (``speeds``).
- ``best_threads`` is the uniform-workload rule: the t that completes the most jobs per second,
  ``min(S, C // t) * speed(t)`` (``stream_rates``); ``lone_threads`` is how many threads still
  speed one job up.
- ``mlp_shape`` and ``shape_configs`` are the mlp trainer's shapes: a job's shape from its config,
  and every shape a small search space can produce (calibrated before any job runs).

Nothing here does I/O beyond timing the kernel; the only state is the per-process cache of
``speeds``.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ash.scheduler.core.space import Choice, Config, Constant, Int, SearchSpace
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
