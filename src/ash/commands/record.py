"""``ash record``: learning curves of random configurations, in the simulator's curves format.

It samples N configurations from the spec's space (``random.Random(seed)``, the spec's seed by
default) and trains each with the spec's trainer from 0 to ``max_resource`` ONE unit of resource
(one epoch for the mlp trainer) at a time, resuming from the state the previous unit returned,
exactly as a promoted trial resumes from its checkpoint. After every unit it records the study
metric and the trainer's other numeric metrics.

Timing. Each unit is timed in the worker around the trainer call, by the wall clock and by the
CPU clock of the training thread. ``seconds_per_unit`` is the median over a trial's units of
the thread's CPU time when the trainer is the native mlp kernel on one thread (the kernel then
runs entirely in that thread, so this is its cost, and other load on a shared machine, which
preempts the worker, does not inflate it), and of the wall time otherwise (several kernel
threads, or a Python trainer that may wait on I/O or a device). Both medians are kept per trial
(``wall_seconds_per_unit``, ``cpu_seconds_per_unit``). The median ignores the first unit of a
process, which also loads the dataset.

Work runs on W spawned worker processes, each training whole trials (the state never leaves the
process) with its kernel threads limited by threadpoolctl in the thread that trains. A worker
process that dies costs the trial it was training (recorded as failed from that unit on) and is
replaced; Ctrl-C stops the workers and writes nothing.

A failed unit (the trainer raised, a missing or non-finite metric such as a diverged run, a dead
process) records ``null`` for that resource and every later one: the trial is not trained
further, as a failed result in a study is never promoted. The file is written with
``write_curves`` (gzipped when its name ends in ``.gz``); extra per-trial keys, which readers of
the format ignore, are ``metrics`` (the other metrics, one list per name aligned with
``resources``), the two timing medians, and ``error`` (why the trial stopped early).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing as mp
import os
import random
import signal
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, TextIO

from ash.errors import UserError
from ash.scheduler.benchmarks import write_curves
from ash.spec import StudySpec, load_spec

SIGNIFICANT = 7  # digits kept of a metric value (the kernel computes in float32)
MAX_DEATHS = 20  # worker processes that may die before the recording gives up


def _round(x: float, digits: int = SIGNIFICANT) -> float:
    return float(f"{x:.{digits}g}")


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


# -- the worker side ---------------------------------------------------------------------------


def train_curve(
    trainer: Any,
    spec: StudySpec,
    config: dict[str, Any],
    units: int,
    cpu_clock: bool,
    on_unit: Callable[[], None] = lambda: None,
) -> tuple[dict[str, Any], list[tuple[float, float]]]:
    """Train one configuration unit by unit: its curves-file row and (wall, cpu) per unit."""
    from ash.worker.trainers import run_job

    values: list[float | None] = [None] * units
    metrics: dict[str, list[float | None]] = {}
    times: list[tuple[float, float]] = []
    state: bytes | None = None
    error: str | None = None
    for k in range(units):
        w0, c0 = time.perf_counter(), time.thread_time()
        out = run_job(trainer, spec.metric, config, float(k), float(k + 1), state)
        times.append((time.perf_counter() - w0, time.thread_time() - c0))
        on_unit()
        for name, v in out.metrics.items():
            if name != spec.metric and isinstance(v, int | float) and not isinstance(v, bool):
                series = metrics.setdefault(name, [None] * units)
                series[k] = _round(v) if math.isfinite(v) else None
        if out.value is None:
            error = f"unit {k + 1}: {out.error or 'failed'}"
            break
        values[k] = _round(out.value)
        state = out.state
    return _row(config, values, metrics, times, cpu_clock, error), times


def _row(
    config: dict[str, Any],
    values: list[float | None],
    metrics: dict[str, list[float | None]],
    times: list[tuple[float, float]],
    cpu_clock: bool,
    error: str | None,
) -> dict[str, Any]:
    wall = _median([w for w, _ in times])
    cpu = _median([c for _, c in times])
    row: dict[str, Any] = {
        "config": config,
        "values": values,
        "seconds_per_unit": _round(cpu if cpu_clock else wall, 4),
        "wall_seconds_per_unit": _round(wall, 4),
        "cpu_seconds_per_unit": _round(cpu, 4),
    }
    if metrics:
        row["metrics"] = metrics
    if error is not None:
        row["error"] = error
    return row


def _worker(conn: Connection, spec: StudySpec, units: int, threads: int) -> None:
    """A worker process: receive (index, config), send progress per unit, then the row."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if "ash.native" not in sys.modules:
        # Also fix the OpenMP runtime's default before the kernel loads: with only the
        # threadpoolctl limit, an idle libgomp pool thread was seen spinning beside the
        # single-threaded kernel, inflating a unit's time up to 50x on a loaded machine.
        os.environ["OMP_NUM_THREADS"] = str(threads)
    from threadpoolctl import threadpool_limits

    from ash.worker.trainers import MlpTrainer, make_trainer

    try:
        trainer = make_trainer(spec)
    except Exception as exc:  # reported to the parent, which stops
        conn.send(("setup-error", str(exc)))
        return
    cpu_clock = isinstance(trainer, MlpTrainer) and threads == 1

    with threadpool_limits(limits=threads):  # in the thread that calls the kernel
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg is None:
                return
            index, config = msg
            row, _ = train_curve(
                trainer, spec, config, units, cpu_clock, lambda: conn.send(("unit",))
            )
            conn.send(("row", index, row))


# -- the parent side ---------------------------------------------------------------------------


@dataclass
class _Proc:
    process: Any
    conn: Connection
    index: int | None = None  # the trial it trains
    units: int = 0  # units of that trial done so far


class _Progress:
    """One status line on stderr: rewritten in place on a terminal, every 10 s otherwise."""

    def __init__(self, total_trials: int, total_units: int, stream: TextIO | None) -> None:
        self.total_trials = total_trials
        self.total_units = total_units
        self.stream = stream
        self.tty = bool(stream is not None and stream.isatty())
        self.started = time.monotonic()
        self.last = 0.0

    def update(self, trials: int, units: int, failed: int, *, final: bool = False) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if not final and now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        elapsed = now - self.started
        left = elapsed / units * (self.total_units - units) if units else math.nan
        line = (
            f"recorded {trials}/{self.total_trials} configs, {units}/{self.total_units} units"
            f"{f', {failed} stopped early' if failed else ''}, {elapsed:.0f} s elapsed"
            + ("" if final or math.isnan(left) else f", ~{left:.0f} s left")
        )
        if self.tty:
            self.stream.write("\r" + line.ljust(79) + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def record(
    spec: StudySpec,
    trials: int,
    *,
    workers: int,
    threads: int,
    seed: int,
    progress: TextIO | None = None,
) -> list[dict[str, Any]]:
    """Train ``trials`` sampled configurations unit by unit; the rows of a curves file."""
    units = int(spec.schedule.max_resource)
    rng = random.Random(seed)
    configs = [spec.space.sample(rng) for _ in range(trials)]
    rows: list[dict[str, Any] | None] = [None] * trials
    pending: deque[int] = deque(range(trials))
    ctx = mp.get_context("spawn")
    procs: list[_Proc] = []
    done = failed = deaths = 0
    bar = _Progress(trials, trials * units, progress)

    def start() -> _Proc:
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(child, spec, units, threads), daemon=True)
        p.start()
        child.close()
        return _Proc(p, parent)

    def finish(i: int, row: dict[str, Any]) -> None:
        nonlocal done, failed
        rows[i] = row
        done += 1
        failed += "error" in row

    def feed(proc: _Proc) -> None:
        if pending and proc.index is None:
            proc.index, proc.units = pending.popleft(), 0
            with contextlib.suppress(OSError, ValueError):  # a dead process: its sentinel says
                proc.conn.send((proc.index, configs[proc.index]))

    try:
        procs = [start() for _ in range(min(workers, trials))]
        for proc in procs:
            feed(proc)
        while done < trials:
            ready = wait([p.conn for p in procs] + [p.process.sentinel for p in procs], 1.0)
            for n, proc in enumerate(list(procs)):
                if proc.conn in ready:
                    try:
                        msg = proc.conn.recv()
                    except (EOFError, OSError):
                        pass  # it died: below
                    else:
                        if msg[0] == "setup-error":
                            raise UserError(msg[1])
                        if msg[0] == "unit":
                            proc.units += 1
                        else:
                            proc.index = None
                            finish(msg[1], msg[2])
                            feed(proc)
                        continue  # a death is handled once its messages are read
                elif proc.process.sentinel not in ready:
                    continue
                proc.process.join(timeout=5)
                deaths += 1
                code = proc.process.exitcode
                if deaths > MAX_DEATHS:
                    raise UserError(
                        f"worker processes died {deaths} times (last exit code {code}); "
                        "is the trainer crashing its process?"
                    )
                if proc.index is not None:
                    i = proc.index
                    why = f"unit {proc.units + 1}: worker process died (exit code {code})"
                    finish(i, _row(configs[i], [None] * units, {}, [], False, why))
                proc.conn.close()
                procs[n] = start()
                feed(procs[n])
            running = sum(p.units for p in procs if p.index is not None)
            bar.update(done, done * units + running, failed)
    finally:
        for proc in procs:
            with contextlib.suppress(OSError, ValueError):
                proc.conn.send(None)
        for proc in procs:
            proc.process.join(timeout=0.5 if done == trials else 0)
            if proc.process.is_alive():
                proc.process.terminate()
                proc.process.join(timeout=5)
            proc.conn.close()
    bar.update(done, trials * units, failed, final=True)
    return [r for r in rows if r is not None]


def _check_args(args: argparse.Namespace, spec: StudySpec) -> tuple[Path, int]:
    """The output path and the number of units (max_resource); UserError for a mistake."""
    out = Path(args.out)
    if not (out.name.endswith(".json") or out.name.endswith(".json.gz")):
        raise UserError(f"--out {args.out}: expected a .json or .json.gz file name")
    if out.is_dir():
        raise UserError(f"--out {args.out}: is a directory (give a file name)")
    parent = out.parent
    if not parent.is_dir():
        raise UserError(f"--out {args.out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UserError(f"--out {args.out}: folder {parent} is not writable")
    if spec.trainer is None:
        raise UserError(
            f"{spec.source}: trainer: missing [trainer] table: ash record trains the spec's trainer"
        )
    big_r = spec.schedule.max_resource
    if not float(big_r).is_integer() or big_r < 1:
        raise UserError(
            f"{spec.source}: asha.max_resource: ash record trains one unit of resource at a time, "
            f"so it must be a whole number >= 1, got {big_r}"
        )
    return out, int(big_r)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from ash.cores import available_cores, resolve_threads
    from ash.worker.trainers import check_trainer

    signal.signal(signal.SIGTERM, _interrupt)  # stop the workers as Ctrl-C does
    spec = load_spec(args.spec)
    out, units = _check_args(args, spec)
    check_trainer(spec)  # a missing dataset or entrypoint fails now, naming the file
    workers = min(args.workers or available_cores(), args.trials)
    threads = resolve_threads(args.threads, workers)
    seed = spec.seed if args.seed is None else args.seed
    started = time.monotonic()
    rows = record(
        spec,
        args.trials,
        workers=workers,
        threads=threads,
        seed=seed,
        progress=None if args.quiet else sys.stderr,
    )
    write_curves(
        out,
        metric=spec.metric,
        mode=spec.mode,
        resources=list(range(1, units + 1)),
        trials=rows,
    )
    if not args.quiet:
        failed = sum(1 for r in rows if "error" in r)
        mean_r = statistics.fmean(r["seconds_per_unit"] for r in rows) * units
        print(
            f"{spec.name}: recorded {len(rows)} configs x {units} units of {spec.metric} "
            f"({failed} stopped early) on {workers} workers x {threads} threads in "
            f"{time.monotonic() - started:.1f} s; mean time to train one config to "
            f"{units}: {mean_r:.3g} s; wrote {out} ({out.stat().st_size / 1024:.0f} KiB)"
        )
    return 0
