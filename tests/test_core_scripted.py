"""Exact expected decisions of the core on small scripted scenarios."""

from __future__ import annotations

import math
import random

import pytest

from ash.scheduler.core import Job, Scheduler, UnknownJobError
from helpers import make_spec


def sched(**kw: object) -> Scheduler:
    algorithm = str(kw.pop("algorithm", "asha"))
    mode = str(kw.pop("mode", "min"))
    return Scheduler(make_spec(algorithm, mode=mode, **kw), random.Random(0))


def take(s: Scheduler, now: float = 0.0) -> Job:
    job = s.next_job(now)
    assert job is not None
    return job


def step(s: Scheduler, value: float | None) -> tuple[int, int, float, float]:
    """Ask for one job, report ``value`` for it; return (trial, rung, start, stop)."""
    job = take(s)
    s.report(job.job_id, value, 0.0)
    return job.trial, job.rung, job.start, job.stop


def test_eta2_promotion_sequence_exact() -> None:
    s = sched(min_resource=1, max_resource=4, reduction_factor=2, max_trials=4)
    assert [b.rungs[k].resource for b in s.brackets for k in range(3)] == [1, 2, 4]
    assert step(s, 5.0) == (0, 0, 0, 1)  # nothing to promote: new trial
    assert step(s, 3.0) == (1, 0, 0, 1)  # n0=1, floor(1/2)=0: new trial
    assert step(s, 2.0) == (1, 1, 1, 2)  # n0=2: trial 1 is the top 1 -> resumes from 1 to 2
    assert step(s, 4.0) == (2, 0, 0, 1)  # rung 1 has n=1; trial 1 already promoted
    assert step(s, 1.0) == (3, 0, 0, 1)  # n0=3, top 1 is still trial 1
    assert step(s, 2.5) == (3, 1, 1, 2)  # n0=4, top 2 = {3, 1}: 3 not yet promoted
    assert step(s, 1.5) == (1, 2, 2, 4)  # rung 1 (n=2) top 1 = trial 1 -> top rung
    assert s.next_job(0.0) is None  # max_trials reached, nothing promotable
    assert s.finished


def test_higher_rung_promotes_first() -> None:
    s = sched(min_resource=1, max_resource=4, reduction_factor=2, max_trials=10)
    a, b = take(s), take(s)
    s.report(a.job_id, 1.0, 0)
    s.report(b.job_id, 2.0, 0)
    up = take(s)  # trial 0 to rung 1
    assert (up.trial, up.rung) == (0, 1)
    c = take(s)  # rung 0 n=2, top 1 promoted -> new trial 2
    assert (c.trial, c.rung) == (2, 0)
    s.report(c.job_id, 0.5, 0)  # rung 0 now n=3: top 1 is trial 2 (promotable)
    s.report(up.job_id, 1.0, 0)  # rung 1 n=1: nothing; then ...
    d = take(s)
    assert (d.trial, d.rung) == (2, 1)  # rung 1 had nothing promotable, so rung 0's best
    s.report(d.job_id, 0.9, 0)  # rung 1 n=2: top 1 is trial 2 -> rung 2 beats rung 0
    e = take(s)
    assert (e.trial, e.rung, e.start, e.stop) == (2, 2, 2, 4)


@pytest.mark.parametrize("eta,expected", [(2, [1, 2, 4, 8, 16]), (3, [1, 3, 16]), (4, [1, 4, 16])])
def test_ladders(eta: int, expected: list[int]) -> None:
    s = sched(min_resource=1, max_resource=16, reduction_factor=eta)
    assert [r.resource for r in s.brackets[0].rungs] == expected


def test_early_stopping_rate_1_starts_higher() -> None:
    s = sched(min_resource=1, max_resource=27, reduction_factor=3, early_stopping_rate=1)
    assert [r.resource for r in s.brackets[0].rungs] == [3, 9, 27]
    assert step(s, 1.0) == (0, 0, 0, 3)


def test_eta4_needs_four_results_to_promote() -> None:
    s = sched(min_resource=1, max_resource=16, reduction_factor=4)
    values = [4.0, 3.0, 2.0]
    assert [step(s, v)[:2] for v in values] == [(0, 0), (1, 0), (2, 0)]
    assert step(s, 5.0)[:2] == (3, 0)  # the 4th result arrives after the ask: still new
    assert step(s, 1.0)[:2] == (2, 1)  # n0=4, top 1 = trial 2 (value 2.0)


def test_ties_break_by_trial_id() -> None:
    s = sched(min_resource=1, max_resource=4, reduction_factor=2)
    a, b = take(s), take(s)
    s.report(b.job_id, 1.0, 0)
    s.report(a.job_id, 1.0, 0)
    assert take(s).trial == a.trial == 0


def test_failed_results_rank_worst_and_count() -> None:
    s = sched(min_resource=1, max_resource=4, reduction_factor=2)
    a, b = take(s), take(s)
    s.report(a.job_id, None, 0)
    s.report(b.job_id, math.nan, 0)  # non-finite = failed
    c = take(s)
    assert (c.trial, c.rung) == (2, 0)  # n0=2 but both failed: nobody is promoted
    s.report(c.job_id, 9.0, 0)
    d = take(s)
    assert (d.trial, d.rung) == (2, 1)  # n0=3: top 1 = the only success, despite 9.0


def test_max_mode_prefers_larger() -> None:
    s = sched(min_resource=1, max_resource=4, reduction_factor=2, mode="max")
    a, b = take(s), take(s)
    s.report(a.job_id, 0.2, 0)
    s.report(b.job_id, 0.9, 0)
    assert take(s).trial == 1


def test_lost_job_is_reissued_first_then_fails_after_max_attempts() -> None:
    s = sched(min_resource=1, max_resource=4, reduction_factor=2, max_attempts=2)
    a = take(s)
    assert s.lose(a.job_id, 0) == (a, True)
    again = take(s)
    assert (again.trial, again.rung, again.attempt) == (0, 0, 2)
    assert again.job_id != a.job_id
    assert s.lose(again.job_id, 0) == (again, False)  # last attempt: counts as failed
    assert len(s.brackets[0].rungs[0]) == 1
    assert take(s).trial == 1


def test_duplicate_and_late_reports_are_ignored_unknown_raise() -> None:
    s = sched(min_resource=1, max_resource=4, reduction_factor=2)
    a = take(s)
    assert s.report(a.job_id, 1.0, 0) == a
    assert s.report(a.job_id, 0.0, 0) is None  # duplicate
    b = take(s)
    s.lose(b.job_id, 0)
    assert s.report(b.job_id, 0.5, 0) is None  # late: its job was declared lost
    assert len(s.brackets[0].rungs[0]) == 1
    with pytest.raises(UnknownJobError):
        s.report(99, 1.0, 0)
    with pytest.raises(UnknownJobError):
        s.lose(-1, 0)


def test_time_limit_and_target_halt() -> None:
    s = sched(min_resource=1, max_resource=4, reduction_factor=2, time_limit_s=10.0)
    a = take(s)
    assert s.next_job(10.0) is None
    assert not s.finished  # a job is still in flight
    s.report(a.job_id, 1.0, 11.0)
    assert s.finished
    t = sched(min_resource=1, max_resource=4, reduction_factor=2, target=0.5)
    step(t, 0.7)
    step(t, 0.4)  # reaches the target
    assert t.next_job(0) is None and t.finished


def test_stopping_variant_continues_or_stops_at_once() -> None:
    s = sched(algorithm="asha-stopping", min_resource=1, max_resource=4, reduction_factor=2)
    assert step(s, 5.0) == (0, 0, 0, 1)
    assert step(s, 4.0) == (0, 1, 1, 2)  # the first result at a rung continues
    assert step(s, 3.0) == (0, 2, 2, 4)
    assert step(s, 6.0) == (1, 0, 0, 1)  # rank 1 of 2: 1*2 < 2 is false -> stops
    assert step(s, 1.0) == (2, 0, 0, 1)
    assert step(s, 1.0) == (2, 1, 1, 2)  # rank 0 of 3 -> continues


def test_synchronous_sh_waits_for_the_whole_rung() -> None:
    s = sched(algorithm="sha", min_resource=1, max_resource=4, reduction_factor=2, max_trials=4)
    jobs = [take(s) for _ in range(4)]  # bracket of eta^K = 4 trials at rung 0
    assert [j.rung for j in jobs] == [0, 0, 0, 0]
    assert s.next_job(0) is None  # rung 0 not complete: nothing, even with idle workers
    for job, v in zip(jobs[:3], [3.0, 1.0, 2.0], strict=False):
        s.report(job.job_id, v, 0)
    assert s.next_job(0) is None
    s.report(jobs[3].job_id, 4.0, 0)
    ups = [take(s), take(s)]
    assert [(j.trial, j.rung) for j in ups] == [(1, 1), (2, 1)]
    s.report(ups[0].job_id, 2.0, 0)
    s.report(ups[1].job_id, 1.0, 0)
    top = take(s)
    assert (top.trial, top.rung, top.start, top.stop) == (2, 2, 2, 4)
    s.report(top.job_id, 0.5, 0)
    assert s.next_job(0) is None and s.finished


def test_hyperband_cycles_brackets_and_random_trains_to_r() -> None:
    hb = sched(
        algorithm="hyperband",
        min_resource=1,
        max_resource=4,
        reduction_factor=2,
        brackets=3,
        max_trials=100,
    )
    seen = set()
    while not hb.finished:
        job = hb.next_job(0)
        assert job is not None
        seen.add((job.bracket, job.rung, job.stop))
        hb.report(job.job_id, float(job.trial), 0)
    starts = {(b, stop) for b, rung, stop in seen if rung == 0}
    assert {1, 2, 4} <= {stop for _, stop in starts}
    r = sched(algorithm="random", min_resource=1, max_resource=4, reduction_factor=2, max_trials=3)
    assert [step(r, 1.0) for _ in range(3)] == [(0, 0, 0, 4), (1, 0, 0, 4), (2, 0, 0, 4)]
    assert r.finished


def test_async_hyperband_round_robins_new_trials() -> None:
    s = sched(min_resource=1, max_resource=9, reduction_factor=3, brackets=2)
    jobs = [take(s) for _ in range(4)]
    assert [(j.bracket, j.stop) for j in jobs] == [(0, 1), (1, 3), (0, 1), (1, 3)]
