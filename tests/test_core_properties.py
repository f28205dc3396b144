"""Property tests of the core: Algorithm 2's invariants under any order of asks, results and
losses, and replay (the same inputs on a fresh core) giving the same decisions."""

from __future__ import annotations

import math
import random
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ash.scheduler.audit import audit_for
from ash.scheduler.core import Job, Scheduler
from helpers import make_spec

VALUES = st.one_of(
    st.sampled_from([0.1, 0.2, 0.3, 1.0]),  # few distinct values: many ties
    st.floats(min_value=-10, max_value=10, allow_nan=False),
    st.sampled_from([None, math.nan, math.inf]),  # failures
)


def trace_event(kind: str, job: Job, **extra: Any) -> dict[str, Any]:
    return {"event": kind, "trial": job.trial, "rung": job.rung, "bracket": job.bracket, **extra}


class CoreMachine(RuleBasedStateMachine):
    """Drives a Scheduler with arbitrary interleavings; checks the trace against the paper."""

    def __init__(self) -> None:
        super().__init__()
        self.spec: Any = None
        self.core: Scheduler | None = None

    @precondition(lambda self: self.core is None)
    @rule(
        algorithm=st.sampled_from(["asha", "asha", "asha-stopping", "sha", "hyperband", "random"]),
        eta=st.sampled_from([2, 3, 4]),
        s=st.sampled_from([0, 1]),
        brackets=st.sampled_from([1, 2]),
        mode=st.sampled_from(["min", "max"]),
        max_trials=st.integers(1, 40),
        seed=st.integers(0, 3),
    )
    def start(
        self, algorithm: str, eta: int, s: int, brackets: int, mode: str, max_trials: int, seed: int
    ) -> None:
        self.spec = make_spec(
            algorithm,
            mode=mode,
            seed=seed,
            min_resource=1,
            max_resource=16,
            reduction_factor=eta,
            early_stopping_rate=s,
            brackets=brackets,
            max_trials=max_trials,
            max_attempts=2,
        )
        self.core = Scheduler(self.spec, random.Random(seed))
        self.inputs: list[tuple[str, Any, Any]] = []
        self.decisions: list[Job | None] = []
        self.events: list[dict[str, Any]] = []
        self.inflight: list[Job] = []
        self.issued: set[int] = set()
        self.promotions: set[tuple[int, int, int]] = set()

    @precondition(lambda self: self.core is not None)
    @rule()
    def ask(self) -> None:
        assert self.core is not None
        was_finished = self.core.finished
        job = self.core.next_job(0.0)
        self.inputs.append(("ask", None, None))
        self.decisions.append(job)
        if job is None:
            return
        assert not was_finished, "a finished study handed out a job"
        assert job.job_id not in self.issued, "a job id was handed out twice"
        self.issued.add(job.job_id)
        if job.rung > 0 and job.attempt == 1:
            key = (job.bracket, job.trial, job.rung)
            assert key not in self.promotions, "promoted twice to the same rung"
            self.promotions.add(key)
        self.inflight.append(job)
        self.events.append(trace_event("assign", job))

    @precondition(lambda self: self.core is not None)
    @rule(data=st.data(), value=VALUES)
    def report(self, data: st.DataObject, value: float | None) -> None:
        assert self.core is not None
        if not self.inflight:
            return
        job = self.inflight.pop(data.draw(st.integers(0, len(self.inflight) - 1)))
        assert self.core.report(job.job_id, value, 0.0) == job
        assert self.core.report(job.job_id, value, 0.0) is None  # idempotent
        self.inputs.append(("report", job.job_id, value))
        ok = value is not None and math.isfinite(value)
        self.events.append(trace_event("result", job, value=value if ok else None))

    @precondition(lambda self: self.core is not None)
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        assert self.core is not None
        if not self.inflight:
            return
        job = self.inflight.pop(data.draw(st.integers(0, len(self.inflight) - 1)))
        outcome = self.core.lose(job.job_id, 0.0)
        assert outcome is not None and outcome[0] == job
        self.inputs.append(("lose", job.job_id, None))
        self.events.append(trace_event("lost", job))
        if not outcome[1]:
            self.events.append(trace_event("result", job, value=None))

    @invariant()
    def inflight_matches(self) -> None:
        if self.core is not None:
            assert set(self.core.inflight) == {j.job_id for j in self.inflight}

    def teardown(self) -> None:
        if self.core is None:
            return
        assert audit_for(self.events, self.spec) == []
        replay = Scheduler(self.spec, random.Random(self.spec.seed))
        got: list[Job | None] = []
        for kind, job_id, value in self.inputs:
            if kind == "ask":
                got.append(replay.next_job(0.0))
            elif kind == "report":
                replay.report(job_id, value, 0.0)
            else:
                replay.lose(job_id, 0.0)
        assert got == self.decisions


CoreMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCore = CoreMachine.TestCase


def test_every_study_finishes_with_sequential_workers() -> None:
    for algorithm in ["asha", "asha-stopping", "sha", "hyperband", "random"]:
        for eta in (2, 3, 4):
            spec = make_spec(
                algorithm,
                min_resource=1,
                max_resource=16,
                reduction_factor=eta,
                brackets=2,
                max_trials=60,
            )
            core = Scheduler(spec, random.Random(1))
            rng = random.Random(2)
            pending: list[Job] = []
            for _ in range(10_000):
                while len(pending) < 3 and (job := core.next_job(0.0)) is not None:
                    pending.append(job)
                if not pending:
                    break
                job = pending.pop(rng.randrange(len(pending)))
                core.report(job.job_id, rng.random(), 0.0)
            assert core.finished, (algorithm, eta)
            assert core.n_trials == 60
