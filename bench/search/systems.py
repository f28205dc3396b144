"""The five systems of bench/search, each run as one simulated study on a recording.

One time model for all (the one ``ash simulate`` uses): W workers on a virtual clock, an event
heap of job completions; a job that trains configuration i from resource a to b takes
``seconds_per_unit(i) * (b - a)`` virtual seconds (i's recorded median cost per epoch); a free
worker asks its system for work at once; nothing is handed out after the time limit (jobs in
flight finish). A trial that continues from a checkpoint pays only the units it adds. The
incumbent is the best value among results AT R (a model trained on the full budget); lower
fidelities never count, for any system.

- ``ash`` (random-ASHA, ash-TPE, ash-BOHB): ash's own simulator (``ash.scheduler.simulator``)
  driving the real core, ``algorithm = "asha"`` (Algorithm 2, promotion), eta = 3, r = 1, with
  ``[study] sampler`` set; configurations come from the core's sampler over the recording's
  space and are answered by the lookup.
- ``optuna``: Optuna's TPESampler (``constant_liar=True``, Optuna's advice for parallel workers)
  with its SuccessiveHalvingPruner (min_resource 1, reduction factor 3, the same rungs as ASHA),
  through ``study.ask()`` / ``study.tell()``. Each worker runs one trial at a time as Optuna's
  workers do: it trains to the next rung, reports the value there (``trial.report``), asks
  ``trial.should_prune()``, and goes on (paying only the new epochs) or tells PRUNED and asks a
  new trial; a trial that reaches R is told COMPLETE with its value, a diverged one FAIL.
- ``dehb``: the ``dehb`` package's DEHB through its ``ask()`` / ``tell()`` interface, which is
  asynchronous by design (``ask`` never blocks: a bracket waiting for results makes DEHB open
  the next one), so W workers ask whenever free. Fidelities 1, 3, ..., R (eta = 3). A config
  DEHB re-evaluates at a higher fidelity (the same ``config_id``: promotions in its first
  brackets) resumes from its checkpoint; a new DE offspring trains from scratch, as DEHB is
  designed. Failures are told as fitness 1e10 (DEHB takes ``inf`` for "not evaluated").
"""

from __future__ import annotations

import heapq
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lookup import Lookup, Recording

from ash.scheduler.core import Job
from ash.scheduler.core.space import Choice, Config, Constant, Int, LogUniform, Ordered, Uniform
from ash.scheduler.simulator import simulate
from ash.spec import parse_spec

ETA = 3
ASH_SAMPLERS = ("random", "tpe", "bohb")


@dataclass
class Run:
    """One simulated study: when it reached the target and its incumbent over time."""

    ttt: float | None = None  # virtual seconds to the first result at R reaching the target
    curve: list[tuple[float, float]] = field(default_factory=list)  # (t, incumbent) improvements
    trials: int = 0
    results: int = 0
    rows: int = 0  # distinct recorded configurations the lookup answered with


class Incumbent:
    """Tracks the incumbent (results at R only) and the time-to-target."""

    def __init__(self, rec: Recording) -> None:
        self.rec = rec
        self.best = math.inf  # sign * incumbent
        self.run = Run()

    def result(self, now: float, resource: float, value: float | None) -> None:
        self.run.results += 1
        if value is None or resource < self.rec.max_resource - 1e-9:
            return
        s = self.rec.sign * value
        if s < self.best:
            self.best = s
            self.run.curve.append((now, value))
            if self.run.ttt is None and s <= self.rec.sign * self.rec.target:
                self.run.ttt = now


def run_ash(rec: Recording, sampler: str, workers: int, seed: int, limit_s: float) -> Run:
    study: dict[str, Any] = {
        "name": f"{rec.name}-{sampler}",
        "metric": rec.metric,
        "mode": rec.mode,
        "seed": seed,
        "algorithm": "asha",
    }
    if sampler != "random":
        study["sampler"] = sampler
    spec = parse_spec(
        {
            "study": study,
            "asha": {
                "min_resource": 1,
                "max_resource": rec.max_resource,
                "reduction_factor": ETA,
                "time_limit_s": limit_s,
            },
            "space": rec.space_table,
        },
        source=f"<{rec.name} ash-{sampler}>",
    )
    bench = Lookup(rec)
    inc = Incumbent(rec)

    def on_result(now: float, job: Job, value: float | None) -> None:
        inc.result(now, job.stop, value)

    stats = simulate(spec, bench, workers, seed=seed, on_result=on_result)
    inc.run.trials = stats.trials
    inc.run.rows = len(bench.rows_used)
    return inc.run


# -- the peers' event loop ---------------------------------------------------------------------


@dataclass
class PeerJob:
    row: int
    start: float
    stop: float
    token: Any  # the system's handle


def run_peer(
    rec: Recording,
    workers: int,
    limit_s: float,
    ask: Callable[[int, float], PeerJob | None],
    tell: Callable[[int, PeerJob, float | None, float], None],
    bench: Lookup,
) -> Run:
    """W workers on a virtual clock: ``ask(worker, now)`` -> job, ``tell(worker, job, value,
    now)`` at its completion; nothing is handed out after ``limit_s``."""
    inc = Incumbent(rec)
    heap: list[tuple[float, int, int, PeerJob]] = []
    seq = 0

    def dispatch(w: int, now: float) -> None:
        nonlocal seq
        if now >= limit_s:
            return
        job = ask(w, now)
        if job is None:
            return
        cost = bench.spu(job.row) * (job.stop - job.start)
        heapq.heappush(heap, (now + cost, seq, w, job))
        seq += 1

    for w in range(workers):
        dispatch(w, 0.0)
    while heap:
        now, _, w, job = heapq.heappop(heap)
        value = bench.value(job.row, job.stop)
        inc.result(now, job.stop, value)
        tell(w, job, value, now)
        dispatch(w, now)
    inc.run.rows = len(bench.rows_used)
    return inc.run


def rungs(rec: Recording) -> list[float]:
    out, r = [], 1.0
    while r < rec.max_resource - 1e-9:
        out.append(r)
        r *= ETA
    return [*out, rec.max_resource]


def run_optuna(rec: Recording, workers: int, seed: int, limit_s: float) -> Run:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize" if rec.mode == "min" else "maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True),
        pruner=optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=ETA, min_early_stopping_rate=0
        ),
    )
    bench = Lookup(rec)
    ladder = rungs(rec)
    dists = _optuna_space(rec)
    current: dict[int, tuple[Any, int, int]] = {}  # worker -> (trial, row, rung index)
    n_trials = 0

    def ask(w: int, now: float) -> PeerJob | None:
        nonlocal n_trials
        if w not in current:
            trial = study.ask(dists)
            n_trials += 1
            current[w] = (trial, bench.row(_from_optuna(rec, trial.params)), 0)
        trial, row, k = current[w]
        start = 0.0 if k == 0 else ladder[k - 1]
        return PeerJob(row, start, ladder[k], trial)

    def tell(w: int, job: PeerJob, value: float | None, now: float) -> None:
        trial, row, k = current[w]
        if value is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            del current[w]
        elif k == len(ladder) - 1:
            study.tell(trial, value)
            del current[w]
        else:
            trial.report(value, round(ladder[k]))
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                del current[w]
            else:
                current[w] = (trial, row, k + 1)

    run = run_peer(rec, workers, limit_s, ask, tell, bench)
    run.trials = n_trials
    return run


def _optuna_space(rec: Recording) -> dict[str, Any]:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, Any] = {}
    for name, dom in rec.space.domains.items():
        if isinstance(dom, Constant):
            continue  # filled in by _from_optuna
        if isinstance(dom, Ordered):  # ordered values: an integer index, so Optuna sees order
            out[name] = IntDistribution(0, len(dom.values) - 1)
        elif isinstance(dom, Uniform):
            out[name] = FloatDistribution(dom.low, dom.high)
        elif isinstance(dom, LogUniform):
            out[name] = FloatDistribution(dom.low, dom.high, log=True)
        elif isinstance(dom, Int):
            out[name] = IntDistribution(dom.low, dom.high, log=dom.log)
        elif isinstance(dom, Choice):
            out[name] = CategoricalDistribution(list(dom.values))
        else:
            raise TypeError(f"{rec.name}: space.{name}: no Optuna distribution for {dom}")
    return out


def _from_optuna(rec: Recording, params: dict[str, Any]) -> Config:
    """Optuna's parameters as a configuration of the space: ordered indices to their values,
    constants filled in."""
    out: Config = {}
    for name, dom in rec.space.domains.items():
        if isinstance(dom, Constant):
            out[name] = dom.value
        elif isinstance(dom, Ordered):
            out[name] = dom.values[int(params[name])]
        else:
            out[name] = params[name]
    return out


def _from_configspace(rec: Recording, config: dict[str, Any]) -> Config:
    """A ConfigSpace configuration as one of the space (constants filled in)."""
    out: Config = {}
    for name, dom in rec.space.domains.items():
        out[name] = dom.value if isinstance(dom, Constant) else config[name]
    return out


def _configspace(rec: Recording, seed: int) -> Any:
    import ConfigSpace as CS

    cs = CS.ConfigurationSpace(seed=seed)
    for name, dom in rec.space.domains.items():
        if isinstance(dom, Constant):
            continue  # filled in by _from_configspace
        if isinstance(dom, Ordered):
            cs.add(CS.OrdinalHyperparameter(name, list(dom.values)))
        elif isinstance(dom, Uniform):
            cs.add(CS.UniformFloatHyperparameter(name, dom.low, dom.high))
        elif isinstance(dom, LogUniform):
            cs.add(CS.UniformFloatHyperparameter(name, dom.low, dom.high, log=True))
        elif isinstance(dom, Int):
            cs.add(CS.UniformIntegerHyperparameter(name, dom.low, dom.high, log=dom.log))
        elif isinstance(dom, Choice):
            cs.add(CS.CategoricalHyperparameter(name, list(dom.values)))
        else:
            raise TypeError(f"{rec.name}: space.{name}: no ConfigSpace hyperparameter for {dom}")
    return cs


FAILED_FITNESS = 1e10


def run_dehb(rec: Recording, workers: int, seed: int, limit_s: float) -> Run:
    from dehb import DEHB

    bench = Lookup(rec)
    trained: dict[int, float] = {}  # DEHB config_id -> resource its checkpoint holds
    n_configs = 0
    with tempfile.TemporaryDirectory(prefix="ash-bench-dehb-") as tmp:
        opt = DEHB(
            cs=_configspace(rec, seed),
            min_fidelity=1,
            max_fidelity=rec.max_resource,
            eta=ETA,
            n_workers=1,  # no Dask pool: this loop is the W workers
            seed=seed,
            output_path=tmp,
            save_freq="end",
            log_level="ERROR",
        )

        def ask(w: int, now: float) -> PeerJob | None:
            nonlocal n_configs
            info = opt.ask()
            stop = float(round(info["fidelity"]))
            cid = int(info["config_id"])
            start = trained.get(cid, 0.0)
            if start == 0.0:
                n_configs += 1
            if start >= stop:  # DEHB asked again for a fidelity this config already has
                start = 0.0
            row = bench.row(_from_configspace(rec, dict(info["config"])))
            return PeerJob(row, start, stop, info)

        def tell(w: int, job: PeerJob, value: float | None, now: float) -> None:
            cid = int(job.token["config_id"])
            trained[cid] = max(trained.get(cid, 0.0), job.stop)
            fitness = FAILED_FITNESS if value is None else rec.sign * value
            cost = bench.spu(job.row) * (job.stop - job.start)
            opt.tell(job.token, {"fitness": fitness, "cost": cost})

        run = run_peer(rec, workers, limit_s, ask, tell, bench)
    run.trials = n_configs
    return run
