"""The discrete-event simulator behind ``ash simulate``: N workers on a virtual clock.

It drives the very same Scheduler core the services use (Syne Tune's simulator-backend idea):
an event heap of job completions ordered by virtual time. At t=0 every worker asks for a job;
when a job completes, its result is reported, the worker asks again, and idle workers are offered
work until the core says "nothing now" (a new result is the only thing that can change that
answer, so idle workers never poll). Cost per event is O(log N + decision), so 10,000 workers and
1,000,000 results run in minutes.

Job durations come from the benchmark; stragglers multiply a job's duration, with probability
``stragglers``, by a Pareto(``straggler_alpha``) factor (heavy tailed, mean alpha/(alpha-1)).
All randomness is seeded: the core's RNG from the spec seed, durations from ``seed``.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ash.scheduler.benchmarks import Benchmark
from ash.scheduler.core import Job, Scheduler
from ash.scheduler.results import Results
from ash.scheduler.trace import TraceWriter
from ash.spec import SpecError, StudySpec


@dataclass
class SimulationStats:
    results: int
    trials: int
    virtual_seconds: float
    busy_fraction: float


def simulate(
    spec: StudySpec,
    benchmark: Benchmark,
    workers: int,
    *,
    seed: int = 0,
    stragglers: float = 0.0,
    straggler_alpha: float = 1.5,
    trace: TraceWriter | None = None,
    results: Results | None = None,
    on_result: Callable[[float, Job, float | None], None] | None = None,
) -> SimulationStats:
    """Run one simulated study to its end; events go to ``trace`` and ``results``."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if spec.schedule.stop_on == "reports":
        raise SpecError(
            spec.source,
            [("asha.stop_on", "'reports' is not simulated (the simulator has no reports)")],
        )
    core = Scheduler(spec, random.Random(spec.seed), sampler=benchmark.sampler())
    durations = random.Random(seed)
    names = [f"w{i}" for i in range(workers)]
    idle: deque[int] = deque(range(workers))
    heap: list[tuple[float, int, int, Job]] = []
    seq = 0
    busy = 0.0
    now = 0.0
    n_results = 0

    def dispatch(now: float) -> None:
        nonlocal seq, busy
        while idle:
            job = core.next_job(now)
            if job is None:
                return
            w = idle.popleft()
            cost = benchmark.seconds(job.trial, job.config, job.start, job.stop)
            if stragglers and durations.random() < stragglers:
                cost *= durations.paretovariate(straggler_alpha)
            busy += cost
            heapq.heappush(heap, (now + cost, seq, w, job))
            seq += 1
            if trace is not None:
                trace.assign(now, job, names[w])
            if results is not None:
                results.assign(job)

    dispatch(0.0)
    while heap:
        now, _, w, job = heapq.heappop(heap)
        value = benchmark.evaluate(job.trial, job.config, job.stop)
        core.report(job.job_id, value, now)
        n_results += 1
        if trace is not None:
            trace.result(now, job, value)
        if results is not None:
            results.result(job, value, {benchmark.metric: value})
        if on_result is not None:
            on_result(now, job, value)
        idle.append(w)
        dispatch(now)
    if trace is not None:
        trace.flush()
    return SimulationStats(
        results=n_results,
        trials=core.n_trials,
        virtual_seconds=now,
        busy_fraction=busy / (now * workers) if now > 0 else 0.0,
    )
