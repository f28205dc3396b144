"""Threads as a scheduled resource (``--threads auto``): calibration, planner, slots, traces."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, cast

import pytest

from ash.scheduler import loop
from ash.scheduler.audit import audit_for
from ash.scheduler.core import Job
from ash.scheduler.core.space import Config, SearchSpace
from ash.scheduler.driver import Assignment
from ash.scheduler.trace import read_trace
from ash.spec import load_spec
from ash.transports.local import SlotBackend
from ash.worker import calibration as th
from ash.worker.calibration import Shape, Speeds, best_threads, lone_threads
from ash.worker.planner import Planner, Task
from ash.worker.slots import Finished, Slots
from helpers import EXAMPLES, Scheduler, worker, write_study
from helpers import run_ash as ash_cli

BIG = Speeds(2, alone={1: 1.0e6, 2: 1.95e6}, packed={1: 1.6e6})  # memory-bound when packed
TINY = Speeds(2, alone={1: 5.0e6, 2: 5.0e6}, packed={1: 10.0e6}, parallel=False)
MID = Speeds(2, alone={1: 1.0e6, 2: 1.7e6}, packed={1: 1.95e6})  # 2 x 1 wins, alone 2 helps


def planner(table: dict[int, Speeds], cores: int = 2, slots: int = 2) -> Planner:
    """A planner whose shapes are the config's ``hidden`` and whose speeds are ``table``."""

    def shape_of(config: Config) -> Shape:
        return Shape(4, (int(str(config["hidden"])),), 3, 32, 1000)

    return Planner(cores, slots, shape_of=shape_of, measure=lambda s: table[s.hidden[0]])


def ts(p: Planner, *jobs: int | tuple[int, float]) -> list[Task]:
    """Tasks of jobs given as ``hidden`` (span 1) or ``(hidden, span)``."""
    out = []
    for j in jobs:
        hidden, span = j if isinstance(j, tuple) else (j, 1.0)
        out.append(p.task({"hidden": hidden}, span))
    return out


# -- the planner, on injected speed tables (deterministic) ---------------------------------


def test_big_model_gets_one_slot_with_two_threads() -> None:
    assert best_threads(BIG, slots=2) == 2
    p = planner({256: BIG})
    assert p.plan(ts(p, 256), free=2, more=True) == [2]
    assert not p.fits(ts(p, 256), 2)  # a second job would have no core: 1 slot x 2 threads


def test_tiny_model_gets_two_slots_with_one_thread() -> None:
    assert best_threads(TINY, slots=2) == 1
    p = planner({8: TINY})
    assert p.fits(ts(p, 8), 2)
    assert p.plan(ts(p, 8, 8), free=2, more=True) == [1, 1]
    assert p.plan(ts(p, 8), free=2, more=False) == [1]  # alone it still cannot use 2


def test_mixed_shapes_are_planned_per_job() -> None:
    p = planner({8: TINY, 256: BIG})
    assert p.plan(ts(p, 256), free=2, more=True) == [2]
    assert p.plan(ts(p, 8, 8), free=2, more=True) == [1, 1]
    assert p.plan(ts(p, 8, 256), free=2, more=True) == [1, 1]  # capped by the free cores


def test_spare_cores_go_to_the_longest_job_that_speeds_up() -> None:
    p = planner({64: MID, 8: TINY})
    assert best_threads(MID, slots=2) == 1
    assert p.plan(ts(p, 64), free=2, more=True) == [1]  # others may be runnable: keep 1
    assert p.plan(ts(p, 64), free=2, more=False) == [2]  # nothing else to run: boost
    assert p.plan(ts(p, 8), free=2, more=False) == [1]  # the kernel keeps it on one thread
    q = planner({64: Speeds(4, {1: 1.0, 2: 1.8, 3: 2.5, 4: 3.0}, {1: 3.9, 2: 3.0})}, 4, 4)
    assert q.plan(ts(q, (64, 1), (64, 9)), free=4, more=False) == [1, 3]


def test_jobs_about_to_end_are_found() -> None:
    p = planner({64: MID, 8: TINY})
    (t,) = ts(p, (64, 2.0))
    est = 2 * 1000 / MID.per_job(1)  # span 2 of 1000 rows at the packed one-thread speed
    assert t.seconds(1) == pytest.approx(est)
    assert p.ending([(t, 1, 0.9 * est)]) == [0]
    assert p.ending([(t, 1, 0.5 * est), (t, 1, 1.1 * est)]) == [1]  # the first is half way
    assert p.ending([(t, 1, 2.0 * est)]) == []  # overdue: no idea when it ends
    unknown = Planner(2, 2)
    assert unknown.ending([(unknown.task({}, 2.0), 1, 1.0)]) == []  # no estimate at all


def test_finished_jobs_correct_the_estimates() -> None:
    p = planner({64: MID})
    (t,) = ts(p, (64, 2.0))
    est = t.seconds(1)
    p.observe(t, 1, 2.0 * est)  # jobs take twice what the calibration says
    assert p.expected(t, 1) == pytest.approx(2.0 * est)
    assert p.expected(t, 2) == pytest.approx(t.seconds(2))  # per thread count
    assert p.ending([(t, 1, 1.0 * est)]) == []  # half way, by what jobs really take
    assert p.ending([(t, 1, 1.8 * est)]) == [0]
    p.observe(t, 1, 1.0 * est)
    assert p.expected(t, 1) == pytest.approx(1.7 * est)  # a moving average


FAR = Speeds(2, alone={1: 1.0e6, 2: 1.1e6}, packed={1: 2.0e6})  # 2 x 1 by far


def finish(p: Planner, hidden: int, threads: int, times: float, n: int = 2) -> None:
    """``n`` jobs of ``hidden`` ran on ``threads`` threads, taking ``times`` their estimate."""
    for _ in range(n):
        (t,) = ts(p, hidden)
        p.observe(t, threads, times * t.seconds(threads))


def test_a_close_call_is_checked_with_jobs_and_decided_by_them() -> None:
    p = planner({256: BIG})
    assert ts(p, 256)[0].base == 2  # the calibration: 1 x 2 beats 2 x 1 by 22%
    finish(p, 256, 2, 1.05, n=1)
    assert ts(p, 256)[0].base == 1  # a job ran as promised: now the close alternative runs one
    finish(p, 256, 1, 1.0)
    assert ts(p, 256)[0].base == 2  # both as calibrated: the calibration was right
    finish(p, 256, 2, 1.05, n=5)
    assert ts(p, 256)[0].base == 2  # settled: nothing left to check


def test_a_check_that_refutes_the_calibration_settles_the_other_way() -> None:
    p = planner({256: BIG})
    finish(p, 256, 2, 1.5, n=1)
    assert ts(p, 256)[0].base == 1
    finish(p, 256, 1, 1.0)
    assert ts(p, 256)[0].base == 1  # 2 threads took 1.5x their estimate, 1 thread as said
    finish(p, 256, 1, 1.0, n=5)
    assert ts(p, 256)[0].base == 1


def test_a_calibration_at_a_bad_moment_is_caught_by_the_check() -> None:
    bad = Speeds(2, alone={1: 1.0e6, 2: 1.45e6}, packed={1: 1.06e6})  # 2 x 1 measured at 73%
    p = planner({256: bad})
    assert ts(p, 256)[0].base == 2
    finish(p, 256, 2, 1.8, n=1)  # 2-thread jobs take 1.8x their estimate
    assert ts(p, 256)[0].base == 1  # checked: one job the other way
    finish(p, 256, 1, 0.9)  # ... which beats its estimate
    assert ts(p, 256)[0].base == 1
    finish(p, 256, 1, 0.9, n=5)
    assert ts(p, 256)[0].base == 1


def test_a_fixed_cost_per_job_does_not_flip_the_split() -> None:
    p = planner({256: BIG})
    finish(p, 256, 2, 40.0)  # tiny jobs: their time is mostly not the kernel's
    finish(p, 256, 1, 40.0)
    for _ in range(5):
        assert ts(p, 256)[0].base == 2  # as calibrated: both counts are off alike
        finish(p, 256, 2, 40.0)


def test_clear_calls_and_serial_shapes_are_not_checked() -> None:
    p = planner({256: FAR, 8: TINY})
    finish(p, 256, 1, 1.0, n=4)
    finish(p, 8, 1, 1.0, n=4)
    assert ts(p, 256)[0].base == 1 and ts(p, 8)[0].base == 1  # 2 x 1 wins FAR by 82%


def test_nothing_to_plan_when_every_shape_stays_on_one_thread() -> None:
    def make(table: dict[int, Speeds], complete: bool = True) -> Planner:
        p = planner(table)
        p.warm_configs, p.complete = [{"hidden": h} for h in table], complete
        p.warm()
        return p

    assert make({8: TINY}).serial()
    assert not make({8: TINY, 256: BIG}).serial()  # one shape can use two threads
    assert not make({8: TINY}, complete=False).serial()  # other shapes may come later
    assert not planner({8: TINY}).serial()  # nothing calibrated yet


class FakeSlot:
    def __init__(self, name: str) -> None:
        self.name, self.job, self.threads, self.started = name, None, 0, 0.0


class FakeSlots:
    """Just what the pool's planning reads and calls."""

    def __init__(self, n: int) -> None:
        self.slots = [FakeSlot(f"w{i}") for i in range(n)]
        self.started: list[tuple[str, int, int]] = []  # (slot, job, threads)

    def idle(self) -> list[FakeSlot]:
        return [s for s in self.slots if s.job is None]

    def threads_in_use(self) -> int:
        return sum(s.threads for s in self.slots if s.job is not None)

    def submit(self, slot: Any, job: Any, threads: int | None = None) -> None:
        slot.job, slot.threads, slot.started = job[0], threads, time.monotonic()
        self.started.append((slot.name, job[0], threads or 0))

    def busy(self) -> list[int]:
        return [s.job for s in self.slots if s.job is not None]


class FakeDriver:
    def __init__(self, configs: list[Config]) -> None:
        self.configs = list(configs)
        self.traced: list[tuple[str, int, int]] = []  # (worker, job, threads)
        self.next_id = 100

    def request(
        self, worker: str, *, trace_extra: Any = None, defer_trace: bool = False
    ) -> Assignment | None:
        if not self.configs:
            return None
        job_id = self.next_id
        self.next_id += 1
        job = Job(job_id, job_id, 0, 1, 1.0, 3.0, self.configs.pop(0))
        return Assignment(job, worker, None, 0.0)

    def clock(self) -> float:
        return 0.0

    def trace_assign(self, a: Assignment, **extra: Any) -> None:
        self.traced.append((a.worker, a.job.job_id, extra["threads"]))

    def sync(self) -> None:
        pass

    def take_stops(self) -> list[int]:
        return []  # no study here stops on reports


def pool_with_one_job_ending(
    configs: list[Config],
) -> tuple[SlotBackend, FakeSlots, FakeDriver]:
    """Two cores, two slots; w1 runs a 1-thread job (hidden 64) that is about to end."""
    p = planner({64: MID})
    driver = FakeDriver(configs)
    slots = FakeSlots(2)
    pool = SlotBackend(cast(Any, driver), cast(Any, slots), p)
    (running,) = ts(p, (64, 2.0))
    slots.submit(slots.slots[1], (7,), 1)
    slots.slots[1].started = time.monotonic() - 0.95 * running.seconds(1)
    pool.feeder.planned[7] = (running, 1)
    return pool, slots, driver


def test_a_lone_job_waits_for_the_cores_of_one_about_to_end() -> None:
    pool, slots, driver = pool_with_one_job_ending([{"hidden": 64}])
    loop.dispatch(cast(Any, driver), pool)
    assert slots.started == [("w1", 7, 1)] and driver.traced == []  # alone: waits for 2 cores
    slots.slots[1].job = None  # the running job ends
    loop.dispatch(cast(Any, driver), pool)  # the next round starts what waits
    assert slots.started[-1] == ("w0", 100, 2)
    assert driver.traced == [("w0", 100, 2)]  # traced as it starts, where it runs


def test_with_more_jobs_one_starts_now_and_one_takes_the_ending_slot() -> None:
    pool, slots, driver = pool_with_one_job_ending([{"hidden": 64}, {"hidden": 64}])
    loop.dispatch(cast(Any, driver), pool)
    assert slots.started[-1] == ("w0", 100, 1)  # no core idles meanwhile
    assert driver.traced == [("w0", 100, 1)]
    slots.slots[1].job = None
    loop.dispatch(cast(Any, driver), pool)  # the next round starts what waits
    assert slots.started[-1] == ("w1", 101, 1)
    assert driver.traced == [("w0", 100, 1), ("w1", 101, 1)]


def test_a_waiting_job_takes_the_first_slot_to_come_free() -> None:
    pool, slots, driver = pool_with_one_job_ending([{"hidden": 64}, {"hidden": 64}])
    loop.dispatch(cast(Any, driver), pool)  # 101 waits for w1's job to end
    slots.slots[0].job = None  # ... but w0's job (100) ends first: the estimate was short
    loop.dispatch(cast(Any, driver), pool)
    assert slots.started[-1] == ("w0", 101, 1)  # not idling until w1 is free
    assert driver.traced[-1] == ("w0", 101, 1)


def test_fewer_slots_than_cores_judge_a_job_alone() -> None:
    assert best_threads(MID, slots=1) == 2
    assert best_threads(MID, slots=2) == 1
    almost = Speeds(2, alone={1: 1.0, 2: 1.0}, packed={1: 1.01})
    assert best_threads(almost, slots=2) == 1  # within noise: the smaller count
    assert lone_threads(Speeds(2, {1: 1.0, 2: 1.05}, {1: 2.0}), 2) == 1


def test_unknown_shapes_share_cores_equally() -> None:
    p = Planner(2, 2)
    assert p.plan(ts(p, 1, 1), free=2, more=False) == [1, 1]
    assert p.plan(ts(p, 1), free=2, more=False) == [2]
    q = Planner(4, 2)
    assert q.plan(ts(q, 1), free=4, more=True) == [2]
    more_slots = Planner(2, 4)  # more slots than cores: each still runs, with one thread
    assert more_slots.budget == 4 and more_slots.fits(ts(more_slots, 1, 1, 1), 4)
    assert more_slots.plan(ts(more_slots, 1, 1, 1, 1), free=4, more=True) == [1, 1, 1, 1]
    assert more_slots.plan(ts(more_slots, 1), free=4, more=False) == [2]  # at most the cores


def test_shape_configs_enumerates_small_spaces_only() -> None:
    spec = load_spec(EXAMPLES / "iris.toml")
    got = th.shape_configs(spec.space)
    assert got is not None and len(got) == 12
    assert {c["hidden"] for c in got} == {8, 16, 32, 64}
    wide = SearchSpace.from_table({"hidden": {"int": [4, 512], "log": True}})
    assert th.shape_configs(wide) is None


# -- calibration --------------------------------------------------------------------------


def test_calibration_is_cached_per_shape_and_keeps_its_budget() -> None:
    big = Shape(64, (256,), 10, 256, 70_000)
    th._cache.pop((big, 2), None)
    t0 = time.perf_counter()
    sp = th.speeds(big, 2, budget_s=0.25)
    first = time.perf_counter() - t0
    assert sp.parallel and set(sp.alone) == {1, 2} and set(sp.packed) == {1}
    assert all(v > 0 for v in [*sp.alone.values(), *sp.packed.values()])
    # one round of three timed runs always completes; on a quiet machine it is ~0.25 s, and a
    # full epoch of this shape alone costs ~0.1 s per thread count: generous for a shared box
    assert first < 1.5, first
    t0 = time.perf_counter()
    assert th.speeds(big, 2, budget_s=0.25) is sp
    assert time.perf_counter() - t0 < 0.005
    iris = Shape(4, (64,), 3, 150, 105)
    th._cache.pop((iris, 2), None)
    t0 = time.perf_counter()
    small = th.speeds(iris, 2)
    assert not small.parallel and best_threads(small, 2) == 1
    assert time.perf_counter() - t0 < 0.3
    assert th.speeds(iris, 2) is small and th.speeds(big, 2) is sp


# -- per-job limits in the slot processes -----------------------------------------------------


def test_slot_applies_each_jobs_threads(tmp_path: Path) -> None:
    write_study(tmp_path)
    spec = load_spec(tmp_path / "study.toml")
    slots = Slots(spec, 1, 1)
    seen = []
    try:
        for i, t in enumerate([2, 1, 2, None]):
            slots.submit(slots.slots[0], (i, {"x": 0.5, "mode": "ok"}, 0.0, 1.0, None), t)
            assert slots.threads_in_use() == (t or 1)
            done: list[Finished] = []
            deadline = time.monotonic() + 60
            while not done and time.monotonic() < deadline:
                done = [e for e in slots.wait(0.2) if isinstance(e, Finished)]
            assert done and done[0].error is None, done
            seen.append(done[0].metrics["threads"])
    finally:
        slots.shutdown()
    assert seen == [2, 1, 2, 1]


# -- end to end -------------------------------------------------------------------------------


def assigns(trace: Path) -> list[dict[str, Any]]:
    return [e for e in read_trace(trace) if e["event"] == "assign"]


def test_tune_threads_auto_traces_threads_on_every_assign(tmp_path: Path) -> None:
    text = (EXAMPLES / "iris.toml").read_text().replace("max_trials = 200", "max_trials = 20")
    spec = tmp_path / "iris.toml"
    spec.write_text(text)
    proc = ash_cli("tune", str(spec), "--threads", "auto", "--trace", "t.jsonl", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ash: threads auto: mlp 4-64-3, batch 32, 105 rows: " in proc.stderr
    events = assigns(tmp_path / "t.jsonl")
    assert events and all(e["threads"] == 1 for e in events)  # the kernel keeps Iris on one
    assert audit_for(read_trace(tmp_path / "t.jsonl"), load_spec(spec)) == []


def test_python_trainer_sees_the_planned_threads(tmp_path: Path) -> None:
    spec = write_study(tmp_path, max_trials=12)
    text = spec.read_text().replace('"crash", ', "")  # no re-issued jobs: one assign per result
    spec.write_text(text)
    proc = ash_cli(
        "tune", str(spec), "--workers", "2", "--threads", "auto", "--out", "o", "--trace", "t",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    planned = {(e["trial"], e["resource"]): e["threads"] for e in assigns(tmp_path / "t")}
    doc = json.loads((tmp_path / "o/results.json").read_text())
    used = {
        (t["trial"], r["resource"]): r["metrics"]["threads"]
        for t in doc["trials"]
        for r in t["results"]
        if "threads" in r["metrics"]
    }
    assert used and all(used[k] == planned[k] for k in used), (used, planned)
    assert set(planned.values()) <= {1, 2}


def test_fixed_threads_are_traced_and_unchanged(tmp_path: Path) -> None:
    spec = write_study(tmp_path, max_trials=4)
    proc = ash_cli(
        "tune", str(spec), "--workers", "1", "--threads", "2", "--trace", "t", "--quiet",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert {e["threads"] for e in assigns(tmp_path / "t")} == {2}


@pytest.mark.parametrize("threads", ["auto", "1"])
def test_grpc_worker_threads_reach_the_trace(
    tmp_path: Path, cleanup: list[Any], threads: str
) -> None:
    text = (EXAMPLES / "iris.toml").read_text().replace("max_trials = 200", "max_trials = 10")
    spec = tmp_path / "iris.toml"
    spec.write_text(text)
    sched = Scheduler(spec, tmp_path, "--trace", "t.jsonl", "--linger", "0")
    cleanup.append(sched)
    w = worker(sched.target, tmp_path, "w1", "--slots", "2", "--threads", threads)
    cleanup.append(w)
    out, err = w.communicate(timeout=120)
    assert w.returncode == 0, err
    assert sched.wait() == 0
    events = list(read_trace(tmp_path / "t.jsonl"))
    if threads == "auto":
        assert "2 slots, threads auto" in out and "threads auto: mlp 4-" in out, out
        results = [e for e in events if e["event"] == "result"]
        assert results and all(e["threads"] == 1 for e in results)
        assert all("threads" not in e for e in events if e["event"] == "assign")
    else:
        assert "2 slots x 1 threads" in out
        assert all(e["threads"] == 1 for e in events if e["event"] == "assign")
