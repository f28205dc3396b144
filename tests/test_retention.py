"""Checkpoint retention (scheduler/core/retention.py through the Driver and its stores): no
promotion ever finds its checkpoint gone, disk stays within the rule's bound, keep_best at the
end, a raised max_trials retrains a dropped trial from scratch, a failing delete only warns."""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ash.scheduler.checkpoints import DirectoryStore, MemoryStore
from ash.scheduler.core.brackets import StoppingBracket, SyncBracket
from ash.scheduler.driver import Assignment, Driver
from ash.spec import StudySpec, parse_spec
from helpers import make_spec


def spec_with(keep_best: int, algorithm: str, **asha: Any) -> StudySpec:
    base = make_spec(algorithm, **asha)
    raw = dict(base.raw)
    raw["checkpoints"] = {"keep_best": keep_best}
    return parse_spec(raw, source="test.toml")


def bound(driver: Driver) -> int:
    """What the rule allows on disk now, computed from the core's state, not from Retention:
    per rung below the top, the most keys that can still be promoted from it (ASHA:
    floor(M_0/eta) with M_0 the bracket's share of max_trials; sync SH: max(1,
    floor(size_k/eta)); stopping: the trials told to continue), plus one start checkpoint per
    promotion in flight or queued, plus keep_best top-rung states."""
    core = driver.core
    total = driver.spec.keep_best
    total += sum(1 for j in list(core.inflight.values()) + list(core.retry) if j.rung > 0)
    n_b = len(core.brackets)
    for b in core.brackets:
        if isinstance(b, StoppingBracket):
            total += len(b.continuing)
        elif isinstance(b, SyncBracket):
            total += sum(max(1, int(s // b.eta)) for s in b.size[: b.top] if s > 0)
        else:
            assert core.schedule.max_trials is not None
            share = (core.schedule.max_trials - b.index + n_b - 1) // n_b
            total += b.top * int(share // b.eta)
    return total


def run_random(driver: Driver, rng: random.Random, *, fail: float = 0.1, lose: float = 0.05) -> int:
    """Drive ``driver`` to its end with random values, completion order, failures, losses and
    sync points; check every promotion's checkpoint and the bound. Returns the promotions."""
    inflight: dict[int, Assignment] = {}
    promotions = 0
    steps = 0
    while not driver.finished:
        steps += 1
        assert steps < 20000
        if rng.random() < 0.5 or not inflight:
            a = driver.request(f"w{rng.randrange(4)}")
            if a is not None:
                if a.job.rung:  # a promotion: never handed out to retrain (start 0)
                    promotions += 1
                    assert a.checkpoint == f"{a.job.trial}@{a.job.start}".encode(), (
                        f"trial {a.job.trial} promoted from {a.job.start}: checkpoint gone"
                    )
                inflight[a.job.job_id] = a
                continue
            if not inflight:
                continue
        job_id = rng.choice(sorted(inflight))
        a = inflight.pop(job_id)
        if rng.random() < lose:
            driver.lose(job_id, why="test")
        else:
            roll = rng.random()
            value = None if roll < fail else rng.choice([0.1, 0.2, 0.5, rng.random()])
            state = f"{a.job.trial}@{a.job.stop}".encode()
            driver.complete(job_id, value, {"loss": value}, state)
        if rng.random() < 0.3:
            driver.sync()
            assert driver.checkpoints.count() <= bound(driver)
    driver.sync()
    assert driver.checkpoints.count() <= bound(driver)
    driver.close()
    assert driver.checkpoints.count() <= driver.spec.keep_best
    return promotions


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    algorithm=st.sampled_from(["asha", "asha", "asha-stopping", "sha", "hyperband", "random"]),
    eta=st.sampled_from([2, 3, 4]),
    s=st.sampled_from([0, 1]),
    brackets=st.sampled_from([1, 2]),
    mode=st.sampled_from(["min", "max"]),
    max_trials=st.integers(1, 60),
    keep_best=st.integers(0, 3),
    seed=st.integers(0, 10**6),
)
def test_no_promotion_finds_its_checkpoint_gone(
    algorithm: str,
    eta: int,
    s: int,
    brackets: int,
    mode: str,
    max_trials: int,
    keep_best: int,
    seed: int,
) -> None:
    spec = spec_with(
        keep_best,
        algorithm,
        mode=mode,
        seed=seed % 7,
        min_resource=1,
        max_resource=16,
        reduction_factor=eta,
        early_stopping_rate=s,
        brackets=brackets,
        max_trials=max_trials,
        max_attempts=2,
    )
    driver = Driver(spec, checkpoints=MemoryStore())
    run_random(driver, random.Random(seed))


def test_asha_drops_most_checkpoints_as_it_goes() -> None:
    """Not only bounded at the end: a 600-trial ASHA study never holds more than its rule."""
    spec = spec_with(1, "asha", max_trials=600, min_resource=1, max_resource=27)
    driver = Driver(spec, checkpoints=MemoryStore())
    peak = 0
    rng = random.Random(1)
    while not driver.finished:
        a = driver.request("w")
        assert a is not None  # one worker, in order
        if a.job.rung:
            assert a.checkpoint is not None
        driver.complete(a.job.job_id, rng.random(), {}, b"x")
        driver.sync()
        peak = max(peak, driver.checkpoints.count())
    # rung 0 keeps at most floor(600/3) = 200 candidates, rung 1 and 2 fewer; never all 600
    assert peak <= bound(driver) + 200
    assert peak < 450
    driver.close()
    assert driver.checkpoints.count() == 1


def test_time_limit_keeps_only_the_latest_per_trial() -> None:
    """Without max_trials ASHA's rungs are unbounded: each trial keeps one checkpoint."""
    spec = spec_with(2, "asha", time_limit_s=1e7, min_resource=1, max_resource=9)
    t = [0.0]
    driver = Driver(spec, checkpoints=MemoryStore(), clock=lambda: t[0])
    rng = random.Random(0)
    for _ in range(200):
        a = driver.request("w")
        assert a is not None
        if a.job.rung:
            assert a.checkpoint is not None
        driver.complete(a.job.job_id, rng.random(), {}, b"x")
        driver.sync()
        assert driver.checkpoints.count() <= driver.core.n_trials
    t[0] = 2e7  # the time limit: the study ends
    assert driver.request("w") is None and driver.finished
    driver.close()
    assert driver.checkpoints.count() == 2


def test_keep_best_keeps_the_best_trials_files(tmp_path: Path) -> None:
    spec = spec_with(3, "asha", max_trials=40, min_resource=1, max_resource=9)
    store = DirectoryStore(tmp_path / "ckpt", fsync=False)
    driver = Driver(spec, checkpoints=store)
    values: dict[int, float] = {}
    rng = random.Random(5)
    while not driver.finished:
        a = driver.request("w")
        assert a is not None
        v = rng.random()
        if a.job.stop == 9:
            values[a.job.trial] = v
        driver.complete(a.job.job_id, v, {}, f"{a.job.trial}".encode())
        driver.sync()
    driver.close()
    best = sorted(values, key=lambda trial: (values[trial], trial))[:3]
    names = sorted(p.name for p in (tmp_path / "ckpt").glob("*.ckpt"))
    assert names == sorted(f"t{trial}-r9.ckpt" for trial in best)
    assert (tmp_path / "ckpt" / f"t{best[0]}-r9.ckpt").read_bytes() == f"{best[0]}".encode()


def test_raised_max_trials_retrains_a_dropped_trial_from_scratch(tmp_path: Path) -> None:
    """A checkpoint dropped under max_trials = 12 may be wanted once 60 trials are allowed:
    the replayed study hands that promotion out with start = 0 (a retrain), never a job that
    resumes from a state that is gone."""
    root = tmp_path / "ckpt"
    small = spec_with(0, "asha", max_trials=12, min_resource=1, max_resource=9)
    records: list[dict[str, Any]] = []
    driver = Driver(small, checkpoints=DirectoryStore(root, fsync=False))
    driver._journal = records.append  # type: ignore[method-assign]  # capture the inputs
    rng = random.Random(3)
    while not driver.finished:
        a = driver.request("w")
        assert a is not None
        driver.complete(a.job.job_id, rng.random(), {}, f"{a.job.trial}@{a.job.stop}".encode())
        driver.sync()
    driver.close()
    assert (root / "dropped").exists()
    big = spec_with(0, "asha", max_trials=60, min_resource=1, max_resource=9)
    store = DirectoryStore(root, fsync=False)
    driver = Driver(big, checkpoints=store)
    driver.resume(records, 0)
    retrained = 0
    while not driver.finished:
        a = driver.request("w")
        assert a is not None
        if a.job.start:
            assert a.checkpoint == f"{a.job.trial}@{a.job.start}".encode()
        elif a.job.rung > 0:
            assert store.was_dropped(a.job.trial) and a.checkpoint is None
            retrained += 1
        driver.complete(a.job.job_id, rng.random(), {}, f"{a.job.trial}@{a.job.stop}".encode())
        driver.sync()
    driver.close()
    assert retrained > 0


def test_a_failing_delete_warns_and_the_study_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "ckpt"
    spec = spec_with(1, "asha", max_trials=30, min_resource=1, max_resource=9)
    driver = Driver(spec, checkpoints=DirectoryStore(root, fsync=False))
    real_unlink = Path.unlink

    def refuse(self: Path, missing_ok: bool = False) -> None:
        if self.parent == root:
            raise PermissionError(13, "Permission denied")
        real_unlink(self, missing_ok=missing_ok)

    rng = random.Random(2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Path, "unlink", refuse)
        while not driver.finished:
            a = driver.request("w")
            assert a is not None
            if a.job.rung:
                assert a.checkpoint is not None
            driver.complete(a.job.job_id, rng.random(), {}, b"s")
            driver.sync()
        driver.close()
    assert driver.broken is None and driver.results.n_results > 30
    err = capsys.readouterr().err
    assert err.count("ash: warning: checkpoint store") == 1 and "Permission denied" in err
    assert any("cannot delete" in why for _, why in driver.errors)
    assert len(list(root.glob("*.ckpt"))) > 1  # what could not be deleted stays


def test_dropped_note_unwritable_deletes_nothing(tmp_path: Path) -> None:
    """Without the note of a dead trial (a full disk), its file is not deleted."""
    root = tmp_path / "ckpt"
    store = DirectoryStore(root, fsync=False)
    store.put(1, 3, b"a")
    os.mkdir(root / "dropped")  # appending to it fails
    failed = store.drop([(1, 3, True)])
    assert failed and "dropped" in failed[0]
    assert store.get(1, 3) == b"a"


def test_embedded_mode_keeps_states_in_a_temporary_directory() -> None:
    from ash.scheduler.driver import open_study

    spec = spec_with(1, "asha", max_trials=10, min_resource=1, max_resource=9)
    driver = open_study(spec).driver
    store = driver.checkpoints
    assert isinstance(store, DirectoryStore) and store.temporary and store.root.is_dir()
    a = driver.request("w")
    assert a is not None
    driver.complete(a.job.job_id, 0.5, {}, b"x" * 100)
    assert store.count() == 1 and math.isfinite(0.5)
    driver.close()
    assert not store.root.exists()


@pytest.mark.parametrize("eta", [2, 3])
@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("seed", range(5))
def test_asha_promotes_more_than_floor_n_over_eta(eta: int, workers: int, seed: int) -> None:
    """Results that keep improving: ASHA promotes nearly every trial (each newcomer is the
    best), far more than floor(n/eta) per rung, so rung k+1 outgrows floor(M_k/eta). A bound
    taken from that naive ladder would delete checkpoints that are promoted later."""
    spec = spec_with(
        1, "asha", max_trials=40, min_resource=1, max_resource=16, reduction_factor=eta
    )
    driver = Driver(spec, checkpoints=MemoryStore())
    inflight: list[Assignment] = []
    count = 0
    promotions = 0
    rng = random.Random(seed)
    while not driver.finished:
        while len(inflight) < workers and (a := driver.request("w")) is not None:
            if a.job.rung:
                promotions += 1
                assert a.checkpoint == f"{a.job.trial}@{a.job.start}".encode()
            inflight.append(a)
        a = inflight.pop(0)
        count += 1
        # rung 0 keeps improving (so it promotes nearly all); above it, any order
        value = 100.0 - count if a.job.rung == 0 else rng.random()
        driver.complete(a.job.job_id, value, {}, f"{a.job.trial}@{a.job.stop}".encode())
        driver.sync()
        assert driver.checkpoints.count() <= bound(driver)
    rung1 = driver.core.brackets[0].rungs[1].n
    assert rung1 > 40 // eta  # the naive ladder's M_1
    assert promotions > 40
    driver.close()


def test_keep_best_spec_errors_name_the_key() -> None:
    from ash.spec import SpecError

    raw = dict(make_spec("asha").raw)
    for table, message in (
        ({"keep_best": -1}, "checkpoints.keep_best: must be >= 0, got -1"),
        ({"keep_best": "all"}, "checkpoints.keep_best: must be"),
        ({"keep": 2}, "checkpoints.keep: unknown key"),
    ):
        with pytest.raises(SpecError, match=message):
            parse_spec({**raw, "checkpoints": table}, source="s.toml")
    assert make_spec("asha").keep_best == 1


def _fit(config: dict[str, Any], start: float, stop: float, state: bytes | None) -> Any:
    if (state is None) != (start == 0) or (state is not None and float(state) != start):
        raise RuntimeError(f"resumed from {state!r}, expected {start}")
    return {"loss": (config["x"] - 0.3) ** 2 + 1 / stop}, str(stop).encode()


def test_embedded_journaled_study_leaves_only_keep_best(tmp_path: Path) -> None:
    """``ash tune --journal`` end to end (slot processes): no promotion resumed wrongly, and
    the journal's folder holds the keep_best states and the note of dropped trials."""
    from ash.transports.inproc import run_inproc

    spec = spec_with(2, "asha", max_trials=40, min_resource=1, max_resource=9)
    journal = tmp_path / "j.jsonl"
    doc = run_inproc(spec, workers=2, threads=1, journal=journal, progress=False, trainer=_fit)
    assert len(doc["trials"]) == 40 and doc["errors"] == [], doc["errors"]
    left = sorted(p.name for p in Path(f"{journal}.ckpt").iterdir())
    assert len([n for n in left if n.endswith(".ckpt")]) == 2
    assert all(n.endswith("-r9.ckpt") for n in left if n.endswith(".ckpt"))
    assert set(left) - {n for n in left if n.endswith(".ckpt")} <= {"dropped"}


def test_shared_directory_files_go_with_their_refs(tmp_path: Path) -> None:
    """--checkpoint-dir: the rule deletes a dropped .ref's worker-written file too, and a
    resume's cleanup as well; a ref naming something outside the shared folder deletes
    nothing there."""
    from ash.link.checkpoints import CheckpointRef

    shared = tmp_path / "shared"
    shared.mkdir()
    outside = tmp_path / "precious"
    outside.write_bytes(b"keep me")
    for name in ("a.ckpt", "b.ckpt", "c.ckpt"):
        (shared / name).write_bytes(b"state")
    store = DirectoryStore(tmp_path / "ck", fsync=False, shared=shared)
    store.put(1, 1, CheckpointRef("a.ckpt", 0, 5))
    store.put(2, 1, CheckpointRef("b.ckpt", 0, 5))
    store.put(3, 1, CheckpointRef("c.ckpt", 0, 5))
    store.put(4, 1, CheckpointRef("../precious", 0, 5))
    assert store.drop([(1, 1, True)]) == []
    assert not (shared / "a.ckpt").exists() and (shared / "b.ckpt").exists()
    assert store.retain({2: 1}) == []
    assert (shared / "b.ckpt").exists() and not (shared / "c.ckpt").exists()
    assert outside.read_bytes() == b"keep me" and store.count() == 1
