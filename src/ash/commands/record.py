"""``ash record``: learning curves of random configurations, in the simulator's curves format.

It samples N configurations from the spec's space (``random.Random(seed)``, the spec's seed by
default) and trains each with the spec's trainer from 0 to ``max_resource`` ONE unit of resource
(one epoch for the mlp trainer) at a time, resuming from the state the previous unit returned,
exactly as a promoted trial resumes from its checkpoint. After every unit it records the study
metric and the trainer's other numeric metrics.

Timing. Each unit is timed in its slot process around the trainer call, by the wall clock and by
the CPU clock of the training thread. ``seconds_per_unit`` is the median over a trial's units of
the thread's CPU time when the trainer is the native mlp kernel on one thread (the kernel then
runs entirely in that thread, so this is its cost, and other load on a shared machine, which
preempts the worker, does not inflate it), and of the wall time otherwise (several kernel
threads, or a Python trainer that may wait on I/O or a device). Both medians are kept per trial
(``wall_seconds_per_unit``, ``cpu_seconds_per_unit``).

Work runs on the same slot processes as a study (``ash.worker.slots`` fed by
``ash.worker.feeder``), W of them with K kernel threads each: every unit is one job, resuming
from the state the trial's previous unit returned, and a trial's next unit goes out as soon as
its last one is back. A slot process that dies costs its trial from that unit on and is
replaced; Ctrl-C stops the slots and writes nothing.

A failed unit (the trainer raised, a missing or non-finite metric such as a diverged run, a dead
process) records ``null`` for that resource and every later one: the trial is not trained
further, as a failed result in a study is never promoted. The file is written with
``write_curves`` (gzipped when its name ends in ``.gz``); extra per-trial keys, which readers of
the format ignore, are ``metrics`` (the other metrics, one list per name aligned with
``resources``), the two timing medians, and ``error`` (why the trial stopped early).
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import random
import signal
import statistics
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ash.errors import UserError
from ash.scheduler.benchmarks import write_curves
from ash.scheduler.core.space import Choice, Config, Constant, Int, Value
from ash.spec import StudySpec, load_spec
from ash.worker.slots import Died

if TYPE_CHECKING:
    from ash.worker.slots import Finished

SIGNIFICANT = 7  # digits kept of a metric value (the kernel computes in float32)
MAX_DEATHS = 20  # worker processes that may die before the recording gives up


def _round(x: float, digits: int = SIGNIFICANT) -> float:
    return float(f"{x:.{digits}g}")


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


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


# -- the recording -----------------------------------------------------------------------------


@dataclass
class _Curve:
    """One configuration's curve as its units come back."""

    config: dict[str, Any]
    values: list[float | None]
    metrics: dict[str, list[float | None]] = field(default_factory=dict)
    times: list[tuple[float, float]] = field(default_factory=list)  # (wall, cpu) per unit
    state: bytes | None = None
    k: int = 0  # units done
    error: str | None = None

    def add(self, ev: Finished, metric: str) -> bool:
        """A unit's result; True when the curve is complete (or stopped early)."""
        units = len(self.values)
        self.times.append((ev.seconds, ev.cpu_seconds))
        for name, v in ev.metrics.items():
            if name != metric and isinstance(v, int | float) and not isinstance(v, bool):
                series = self.metrics.setdefault(name, [None] * units)
                series[self.k] = _round(v) if math.isfinite(v) else None
        if ev.value is None:
            return self.stop(f"unit {self.k + 1}: {ev.error or 'failed'}")
        self.values[self.k] = _round(ev.value)
        self.state = ev.state
        self.k += 1
        return self.k == units

    def stop(self, why: str) -> bool:
        self.error = why
        return True

    def row(self, cpu_clock: bool) -> dict[str, Any]:
        return _row(self.config, self.values, self.metrics, self.times, cpu_clock, self.error)


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
    configs: list[Config] | None = None,
) -> list[dict[str, Any]]:
    """Train ``trials`` sampled configurations (or the given ``configs``) unit by unit; the
    rows of a curves file."""
    from ash.worker.feeder import Feeder, Work
    from ash.worker.slots import Slots

    units = int(spec.schedule.max_resource)
    rng = random.Random(seed)
    if configs is None:
        configs = [spec.space.sample(rng) for _ in range(trials)]
    trials = len(configs)
    curves = [_Curve(config, [None] * units) for config in configs]
    # the native kernel on one thread runs in the training thread: its CPU clock is its cost
    cpu_clock = spec.trainer is not None and spec.trainer.type == "mlp" and threads == 1
    pending: deque[int] = deque(range(trials))  # trials not started
    ready: deque[int] = deque()  # trials whose next unit may go out
    running: dict[int, int] = {}  # job id -> trial
    ids = itertools.count()
    done = failed = 0
    bar = _Progress(trials, trials * units, progress)
    feeder = Feeder(Slots(spec, min(workers, trials), threads, max_restarts=MAX_DEATHS))
    try:
        while done < trials:
            round: list[Work] = []
            while feeder.next_slot(round) is not None and (ready or pending):
                i = ready.popleft() if ready else pending.popleft()
                c = curves[i]
                job = next(ids)
                running[job] = i
                round.append(Work(job, c.config, float(c.k), float(c.k + 1), c.state, i, c.k))
            feeder.start(round, more=False)
            for ev in feeder.wait(1.0):
                i = running.pop(ev.job_id)
                c = curves[i]
                if isinstance(ev, Died):
                    why = f"unit {c.k + 1}: worker process died (exit code {ev.exitcode})"
                    end = c.stop(why)
                else:
                    end = c.add(ev, spec.metric)
                if end:
                    done += 1
                    failed += c.error is not None
                else:
                    ready.append(i)
            bar.update(done, sum(c.k for c in curves), failed)
    finally:
        feeder.slots.shutdown(grace=0.5 if done == trials else 0.0)
    bar.update(done, trials * units, failed, final=True)
    return [c.row(cpu_clock) for c in curves]


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


def grid(spec: StudySpec) -> list[Config]:
    """Every configuration of a finite space (choices, ordered choices, ints, constants), in
    the space's order with the last parameter varying fastest; a parameter whose ``when`` does
    not hold is left out, so a conditional space has no duplicate points. UserError naming the
    first continuous parameter otherwise."""
    space = spec.space
    options: dict[str, list[Value]] = {}
    for name in space.order:
        d = space.domains[name]
        if isinstance(d, Choice):
            options[name] = list(d.values)
        elif isinstance(d, Constant):
            options[name] = [d.value]
        elif isinstance(d, Int):
            options[name] = list(range(d.low, d.high + 1))
        else:
            raise UserError(
                f"{spec.source}: space.{name}: --grid needs a finite space (choice, ordered "
                "choice, int or constant); this parameter is continuous"
            )
    out: list[Config] = [{}]
    for name in space.order:
        nxt: list[Config] = []
        for partial in out:
            if not space.active(name, partial):
                nxt.append(partial)
                continue
            nxt.extend({**partial, name: v} for v in options[name])
        out = nxt
    return out


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from ash.cores import available_cores, resolve_threads
    from ash.worker.trainers import check_trainer

    signal.signal(signal.SIGTERM, _interrupt)  # stop the workers as Ctrl-C does
    spec = load_spec(args.spec)
    out, units = _check_args(args, spec)
    check_trainer(spec)  # a missing dataset or entrypoint fails now, naming the file
    configs = grid(spec) if args.grid else None
    if configs is not None and len(configs) > args.trials:
        raise UserError(
            f"{spec.source}: space: --grid has {len(configs)} configurations, more than "
            f"--trials {args.trials} (raise --trials to record them all)"
        )
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
        configs=configs,
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
