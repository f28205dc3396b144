"""The sans-I/O scheduler core: ASHA and its relatives as a pure state machine.

Theory of operation
-------------------
The core is driven by three inputs and answers with jobs; it does no I/O, reads no clock and owns
no randomness of its own (h11's style). Whoever drives it (the simulator, the gRPC servicer, the
MPI loop, a journal replay) calls:

- ``next_job(now)`` when a worker asks for work (pull, not push). It returns a ``Job`` or None.
  None means "nothing to hand out right now": ask again after the next result, unless
  ``finished`` is True. The order is fixed: (1) a job re-issued after a lost worker, (2) a
  promotion (for ASHA: scan rungs K-1..0 of each bracket for the best trial in the top
  floor(n_k/eta) not yet promoted), (3) a new trial sampled at rung 0 of a bracket that takes one.
- ``report(job_id, value, now)`` when a job's result arrives (value None = failed). A failed or
  non-finite value ranks worst but still counts in n_k. A report for a job that is no longer in
  flight (a duplicate, or a late one after the job was declared lost) is ignored: job ids make
  reports idempotent.
- ``lose(job_id, now)`` when a job's worker vanished. The job is queued to be re-issued (same trial,
  rung and resources, a new job id) until ``max_attempts`` is spent; then the trial's result at
  that rung counts as failed (``lose`` says which, so the driver can trace it).

A promoted trial resumes from its checkpoint at the rung it completed: a job carries ``start``
(the resource already trained, 0 for a new trial) and ``stop`` (the rung's resource).

Costs: each decision is O(B * K * log n) for B brackets, K rungs and n results (see rungs.py);
nothing scans all results. Determinism: the only randomness is the ``rng`` passed in, used only to
sample configurations, so the same spec, seed and sequence of inputs give the same jobs, which is
what makes a journal replay equal to the live run.

Warm start: the spec's ``enqueue`` configs are the first new trials, in order, before anything
is sampled (an input like the seed: the same list gives the same trials).

Continuing: ``amend`` raises ``max_trials`` or ``time_limit_s`` (a study continued with a larger
budget); the driver journals it, so a replay applies it at the same point.

Sampling: a new trial's configuration comes from the study's sampler (``samplers``: random by
default, TPE or BOHB by ``[study] sampler``, or a user's object), which reads the ``history`` of
results the core records and is told of each one (``observe``); it never decides promotions.

Stopping on reports (``asha-stopping`` with ``[asha] stop_on = "reports"``, ``inline``): a new
trial is one job from 0 to the top rung's resource (its ``rung`` is the top). The trainer's
intermediate reports reach the core as ``milestone(job_id, step, value, now)``: the first report
whose step reaches rung k's resource (for each rung k below the top the trial has not passed) is
the trial's result at rung k, and the stopping rule decides at once (``StoppingBracket.decide``).
A stop is remembered (``stopped``) and ``milestone`` returns True: the driver tells the running
trainer. The job's own result then settles it without being ranked again (``report`` returns the
job as of the rung it stopped at); the result of a job never stopped is its result at the top
rung (or, failed, at the first rung it had not passed). A lost job that was never stopped is
re-issued from scratch; rungs its trial already passed are not recorded again. Reports are
inputs like results (the driver journals them), so a replay re-derives every stop.

Stopping: no new trial after ``max_trials``; nothing at all after ``time_limit_s`` (by ``now``) or
once a result reaches ``target``. ``finished`` is True when nothing is in flight and nothing
can be handed out any more.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, NamedTuple

from ash.scheduler.core.brackets import Bracket, PromotionBracket, StoppingBracket, SyncBracket
from ash.scheduler.core.ladder import bracket_size, max_rungs, rung_resources
from ash.scheduler.core.rungs import score_of
from ash.scheduler.core.samplers import (
    BUILT_IN,
    CheckedSampler,
    FunctionSampler,
    History,
    Sampler,
    make_sampler,
)
from ash.scheduler.core.space import Config

if TYPE_CHECKING:
    from random import Random

    from ash.spec import Schedule, StudySpec


class UnknownJobError(KeyError):
    """A report or loss names a job id that was never issued."""


class Job(NamedTuple):
    """One unit of work: train ``trial`` from resource ``start`` (its checkpoint) to ``stop``."""

    job_id: int
    trial: int
    bracket: int
    rung: int
    start: float
    stop: float
    config: Config
    attempt: int = 1


class Scheduler:
    """ASHA (promotion or stopping), synchronous SH, Hyperband and random search."""

    def __init__(
        self,
        spec: StudySpec,
        rng: Random,
        *,
        sampler: Sampler | object | None = None,
    ) -> None:
        self.algorithm = spec.algorithm
        self.mode = spec.mode
        self.schedule: Schedule = spec.schedule
        self.rng = rng
        self.space = spec.space
        self.sampler: Sampler = _sampler_of(spec, sampler)
        # each trial's config, by trial id: plain dicts in a list, which CPython's cyclic
        # collector need not walk (an object per trial made its full collections pause 15-18 ms
        # at 100k trials); the sampler's history reads the same list
        self.configs: list[Config] = []
        self.history = History(self.configs)
        sch = spec.schedule
        self.eta = sch.reduction_factor
        self.s_max = max_rungs(sch.min_resource, sch.max_resource, sch.reduction_factor)
        self.inflight: dict[int, Job] = {}
        self.retry: deque[Job] = deque()
        self.next_id = 0
        self.halted = False  # time limit or target reached: nothing more is handed out
        self.target_hit = False
        self.queue: deque[Config] = deque(dict(c) for c in getattr(spec, "enqueue", ()))
        self.brackets: list[Bracket] = []
        self._sync_plan: list[int] = []  # for sha/hyperband: early-stopping rates, cycled
        # asha-stopping on reports: a trial is one job; reports at rung milestones are ranked
        self.inline = spec.algorithm == "asha-stopping" and sch.stop_on == "reports"
        self.passed: dict[int, int] = {}  # trial -> rungs below the top it has a result at
        self.stopped: dict[int, tuple[int, float]] = {}  # job in flight -> (rung, step) stopped
        self._build()

    # -- construction ---------------------------------------------------------------------

    def _resources(self, s: int) -> list[float]:
        sch = self.schedule
        return rung_resources(sch.min_resource, sch.max_resource, sch.reduction_factor, s)

    def _build(self) -> None:
        sch = self.schedule
        rates = [sch.early_stopping_rate + b for b in range(sch.brackets)]
        if self.algorithm == "random":
            self.brackets = [PromotionBracket(0, self._resources(self.s_max), self.eta)]
        elif self.algorithm in ("asha", "asha-stopping"):
            if self.algorithm == "asha":
                self.brackets = [
                    PromotionBracket(i, self._resources(s), self.eta) for i, s in enumerate(rates)
                ]
            else:
                self.brackets = [
                    StoppingBracket(i, self._resources(s), self.eta, inline=self.inline)
                    for i, s in enumerate(rates)
                ]
        else:  # sha, hyperband: one synchronous bracket at a time, brackets cycled
            self._sync_plan = rates if self.algorithm == "hyperband" else rates[:1]
            self._open_sync_bracket()

    def _open_sync_bracket(self) -> None:
        index = len(self.brackets)
        s = self._sync_plan[index % len(self._sync_plan)]
        resources = self._resources(s)
        top = len(resources) - 1
        size = self.schedule.bracket_trials or bracket_size(self.s_max, top, self.eta)
        if self.schedule.max_trials is not None:
            size = min(size, self.schedule.max_trials - len(self.configs))
        self.brackets.append(SyncBracket(index, resources, self.eta, size))

    # -- inputs ---------------------------------------------------------------------------

    def next_job(self, now: float) -> Job | None:
        """The job for a worker asking now, or None (see the module docstring)."""
        self._check_time(now)
        if self.halted:
            return None
        if self.retry:
            old = self.retry.popleft()
            return self._issue(
                old.trial, old.bracket, old.rung, old.start, old.stop, old.attempt + 1
            )
        if self.algorithm in ("sha", "hyperband"):
            return self._next_sync()
        for bracket in self.brackets:
            up = bracket.promotion()
            if up is not None:
                return self._promote(bracket, *up)
        if not self._may_sample():
            return None
        index = len(self.configs) % len(self.brackets)
        return self._new_trial(self.brackets[index])

    def _next_sync(self) -> Job | None:
        bracket = self.brackets[-1]
        assert isinstance(bracket, SyncBracket)
        if bracket.done():
            if not self._may_sample():
                return None
            self._open_sync_bracket()
            bracket = self.brackets[-1]
            assert isinstance(bracket, SyncBracket)
        up = bracket.promotion()
        if up is not None:
            return self._promote(bracket, *up)
        if bracket.wants_new() and self._may_sample():
            bracket.took_new()
            return self._new_trial(bracket)
        return None

    def report(self, job_id: int, value: float | None, now: float) -> Job | None:
        """Record a job's result. Returns the job, or None for a duplicate or late report."""
        job = self.inflight.pop(job_id, None)
        if job is None:
            if not 0 <= job_id < self.next_id:
                raise UnknownJobError(job_id)
            return None
        if value is not None and not math.isfinite(value):
            value = None
        if self.inline:
            job = self._settle_inline(job, value)
        else:
            self._record(job, value)
        if value is not None and self._reaches_target(value):
            self.halted = self.target_hit = True
        self._check_time(now)
        return job

    def milestone(self, job_id: int, step: float, value: float | None, now: float) -> bool:
        """A running job's intermediate report of the study metric (``value`` None: failed
        or non-finite) at ``step`` (stopping on reports only; see the module docstring).
        Records it at each rung below the top whose resource ``step`` reached and the trial
        had not passed; True when this report stopped the job (it was told to stop now)."""
        job = self.inflight.get(job_id)
        if job is None or not self.inline or job_id in self.stopped:
            return False
        if value is not None and not math.isfinite(value):
            value = None  # a failed milestone, as in report: ranks worst, never a target
        bracket = self.brackets[job.bracket]
        assert isinstance(bracket, StoppingBracket)
        k = self.passed.get(job.trial, 0)
        score = score_of(value, self.mode)
        stop = recorded = False
        while k < bracket.top and _reached(step, bracket.rungs[k].resource):
            go_on = bracket.decide(job.trial, k, score)
            recorded = True
            self._observe(job.trial, job.config, bracket.rungs[k].resource, score)
            k += 1
            self.passed[job.trial] = k
            if not go_on:
                self.stopped[job_id] = (k - 1, step)
                stop = True
                break
        if recorded and value is not None and self._reaches_target(value):
            self.halted = self.target_hit = True
        self._check_time(now)
        return stop

    def _settle_inline(self, job: Job, value: float | None) -> Job:
        """The result of an inline job: a stopped one is already ranked (it settles at the
        rung and step it stopped at); else its result at the top rung, or, failed, at the
        first rung it had not passed."""
        got = self.stopped.pop(job.job_id, None)
        if got is not None:
            return job._replace(rung=got[0], stop=got[1])
        bracket = self.brackets[job.bracket]
        rung = bracket.top if value is not None else min(self.passed.get(job.trial, 0), bracket.top)
        self.passed[job.trial] = bracket.top + 1
        settled = job._replace(rung=rung, stop=bracket.rungs[rung].resource)
        self._record(settled, value)
        return settled

    def lose(self, job_id: int, now: float, *, charge: bool = True) -> tuple[Job, bool] | None:
        """A job's worker vanished. Returns (the job, whether it will be re-issued), or None if
        the job had already settled. Once ``max_attempts`` are spent the trial's result at that
        rung counts as failed: drivers trace it as a result with value null after the loss.
        With ``charge=False`` (the scheduler's own restart, not the trial's fault) the loss
        does not count as an attempt: the job is re-issued with the same attempt number."""
        job = self.inflight.pop(job_id, None)
        if job is None:
            if not 0 <= job_id < self.next_id:
                raise UnknownJobError(job_id)
            return None
        got = self.stopped.pop(job_id, None)
        if got is not None:  # told to stop, its result lost: it is settled where it stopped
            return job._replace(rung=got[0], stop=got[1]), False
        if not charge:
            self.retry.append(job._replace(attempt=job.attempt - 1))  # re-issued as attempt
            return job, True
        if job.attempt < self.schedule.max_attempts:
            self.retry.append(job)
            return job, True
        if self.inline:
            return self._settle_inline(job, None), False
        self._record(job, None)
        return job, False

    def amend(self, *, max_trials: int | None, time_limit_s: float | None) -> None:
        """Set the study's budget anew (the driver allows raising it only): a study halted by
        its time limit goes on when the limit is raised (re-checked at the next ``now``); one
        halted by its target stays halted."""
        self.schedule = replace(self.schedule, max_trials=max_trials, time_limit_s=time_limit_s)
        if not self.target_hit:
            self.halted = False

    # -- state ----------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        if self.inflight:
            return False
        if self.halted:
            return True
        if self.retry or any(b.peek_promotion() is not None for b in self.brackets):
            return False
        return not self._would_sample()

    @property
    def n_trials(self) -> int:
        return len(self.configs)

    def rung_counts(self) -> list[list[tuple[float, int]]]:
        """(resource, results so far) of each rung of each bracket, for progress displays."""
        return [[(r.resource, len(r)) for r in b.rungs] for b in self.brackets]

    # -- internals ------------------------------------------------------------------------

    def _check_time(self, now: float) -> None:
        limit = self.schedule.time_limit_s
        if limit is not None and now >= limit:
            self.halted = True

    def _reaches_target(self, value: float) -> bool:
        target = self.schedule.target
        if target is None or not math.isfinite(value):
            return False
        return value <= target if self.mode == "min" else value >= target

    def _may_sample(self) -> bool:
        cap = self.schedule.max_trials
        return cap is None or len(self.configs) < cap

    def _would_sample(self) -> bool:
        """Whether next_job would start a new trial if nothing else were to do."""
        last = self.brackets[-1]
        if isinstance(last, SyncBracket) and not (last.done() or last.wants_new()):
            return False
        return self._may_sample()

    def _new_trial(self, bracket: Bracket) -> Job:
        trial = len(self.configs)
        config = (
            self.queue.popleft()
            if self.queue
            else self.sampler.sample(self.rng, self.space, self.history)
        )
        self.configs.append(config)
        if self.inline:  # one job to the top rung; its reports are ranked at the milestones
            top = bracket.top
            return self._issue(trial, bracket.index, top, 0, bracket.rungs[top].resource, 1)
        return self._issue(trial, bracket.index, 0, 0, bracket.rungs[0].resource, 1)

    def adopt(self, job: Job, config: Config) -> Job:
        """``job``, the first of the newest trial, with ``config`` in place of the one sampled:
        a journal's record, which another version of the sampler drew. Later decisions stay
        Algorithm 2's; only the trial's configuration changes."""
        if job.trial != len(self.configs) - 1 or self.inflight.get(job.job_id) != job:
            raise ValueError(f"job {job.job_id} is not the newest trial's first job")
        forget = getattr(self.sampler, "forget", None)
        if forget is not None:  # a model sampler's "tried" set: the sampled one never ran
            forget(job.config)
        self.configs[job.trial] = config
        job = job._replace(config=config)
        self.inflight[job.job_id] = job
        return job

    def _promote(self, bracket: Bracket, trial: int, rung: int) -> Job:
        start = bracket.rungs[rung - 1].resource
        return self._issue(trial, bracket.index, rung, start, bracket.rungs[rung].resource, 1)

    def _issue(
        self, trial: int, bracket: int, rung: int, start: float, stop: float, attempt: int
    ) -> Job:
        job = Job(self.next_id, trial, bracket, rung, start, stop, self.configs[trial], attempt)
        self.next_id += 1
        self.inflight[job.job_id] = job
        return job

    def _record(self, job: Job, value: float | None) -> None:
        score = score_of(value, self.mode)
        self.brackets[job.bracket].record(job.trial, job.rung, score)
        self._observe(job.trial, job.config, job.stop, score)

    def _observe(self, trial: int, config: Config, resource: float, score: float) -> None:
        self.history.add(trial, resource, score)
        self.sampler.observe(trial, config, resource, score)


def _reached(step: float, resource: float) -> bool:
    """Whether a report at ``step`` reached a rung of ``resource`` (which may carry float
    rounding from r * eta^k, e.g. 0.9000000000000001)."""
    return step >= resource * (1 - 1e-9)


def _sampler_of(spec: StudySpec, given: object) -> Sampler:
    """The sampler a Scheduler uses: ``given`` (a Sampler, or a plain ``fn(rng) -> Config`` as
    the simulator's recorded benchmarks pass), else the spec's user object, else its name."""
    if given is None:
        given = spec.custom_sampler
    if given is None:
        return make_sampler(spec.sampler, spec.space)
    if isinstance(given, BUILT_IN):
        return given
    if isinstance(given, Sampler):
        return CheckedSampler(given)  # a user's: its configurations are checked
    if callable(given):
        return FunctionSampler(given)
    raise TypeError(
        f"sampler {given!r}: expected an object with sample(rng, space, history) and "
        "observe(trial, config, resource, score), or a function fn(rng) -> config"
    )
