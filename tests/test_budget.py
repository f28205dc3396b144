"""A continued study's budget (journal ``x`` records) and warm-start configs, at the driver and
the core: replays stay exact for every algorithm, lowering and other changes are refused."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ash.scheduler.core import Scheduler
from ash.scheduler.driver import Driver, open_study
from ash.scheduler.journal import JournalError, seal, unseal
from ash.spec import SpecError, parse_spec
from helpers import make_spec


def drive(spec_journal: tuple[object, Path], *, keep: int = 3) -> Driver:
    """Run a study to its end with ``keep`` jobs in flight, results = config x (+ noise)."""
    spec, journal = spec_journal
    d = open_study(spec, journal=journal).driver  # type: ignore[arg-type]
    inflight = []
    while not d.finished:
        a = d.request("w")
        if a is not None:
            inflight.append(a)
        if a is None or len(inflight) > keep:
            job = inflight.pop(0).job
            d.complete(job.job_id, float(job.config["x"]) + job.stop / 100, {}, b"s")
    d.close()
    return d


@pytest.mark.parametrize("algorithm", ["asha", "asha-stopping", "sha", "hyperband", "random"])
def test_raised_max_trials_replays_exactly(tmp_path: Path, algorithm: str) -> None:
    journal = tmp_path / "j.jsonl"
    first = drive((make_spec(algorithm, max_trials=5), journal))
    assert first.core.n_trials == 5
    raised = drive((make_spec(algorithm, max_trials=30), journal))
    assert raised.core.n_trials == 30
    again = drive((make_spec(algorithm, max_trials=30), journal))  # replays with the x record
    assert again.results.to_json() == raised.results.to_json()
    records = [json.loads(unseal(x) or b"{}") for x in journal.read_bytes().splitlines()[1:]]
    assert [r["x"] for r in records if "x" in r] == [{"max_trials": 30, "time_limit_s": None}]


def test_lowering_or_adding_a_limit_is_refused(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    drive((make_spec(max_trials=10), journal))
    with pytest.raises(JournalError, match=r"lowering \[asha\]\.max_trials \(10 -> 9\)"):
        open_study(make_spec(max_trials=9), journal=journal)
    with pytest.raises(JournalError, match=r"adding \[asha\]\.time_limit_s = 5"):
        open_study(make_spec(max_trials=10, time_limit_s=5), journal=journal)
    with pytest.raises(JournalError, match=r"reduction_factor: 3 -> 4"):
        open_study(make_spec(max_trials=12, reduction_factor=4), journal=journal)
    # dropping the cap while a time limit bounds the study is a raise
    t = tmp_path / "t.jsonl"
    drive((make_spec(max_trials=4, time_limit_s=1000), t))
    d = open_study(make_spec(time_limit_s=1000), journal=t).driver
    assert d.spec.schedule.max_trials is None and not d.finished
    d.close()


def test_a_budget_record_of_the_wrong_shape_is_damage(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    drive((make_spec(max_trials=4), journal))
    with open(journal, "a") as f:
        f.write(seal(json.dumps({"x": {"max_trials": "many"}, "t": 1.0})) + "\n")
    with pytest.raises(JournalError, match=r"is damaged \('x' holds a budget"):
        open_study(make_spec(max_trials=4), journal=journal)


def test_core_amend_lifts_a_time_halt_but_not_a_target() -> None:
    core = Scheduler(make_spec(time_limit_s=10), random.Random(0))
    assert core.next_job(11.0) is None and core.halted
    core.amend(max_trials=None, time_limit_s=20)
    assert core.next_job(12.0) is not None
    hit = Scheduler(make_spec(max_trials=9, target=0.5), random.Random(0))
    job = hit.next_job(0.0)
    assert job is not None
    hit.report(job.job_id, 0.1, 0.0)
    hit.amend(max_trials=50, time_limit_s=None)
    assert hit.halted and hit.next_job(1.0) is None


def test_enqueued_configs_come_first_and_sampling_goes_on_as_seeded() -> None:
    base = make_spec(max_trials=6)
    raw = {**base.raw, "study": {**base.raw["study"], "enqueue": [{"x": 0.5, "k": "a"}]}}
    spec = parse_spec(raw)
    core = Scheduler(spec, random.Random(0))
    plain = Scheduler(base, random.Random(0))
    jobs = [core.next_job(0.0) for _ in range(3)]
    ref = [plain.next_job(0.0) for _ in range(2)]
    assert jobs[0] is not None and jobs[0].config == {"x": 0.5, "k": "a"}
    assert [j.config for j in jobs[1:] if j] == [j.config for j in ref if j]
    with pytest.raises(SpecError, match=r"study\.enqueue\[0\]\.k: missing"):
        parse_spec({**raw, "study": {**raw["study"], "enqueue": [{"x": 0.5}]}})
    with pytest.raises(SpecError, match=r"study\.enqueue: must be a list"):
        parse_spec({**raw, "study": {**raw["study"], "enqueue": 3}})


def test_the_original_spec_after_a_raise_is_a_lowering(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    drive((make_spec(max_trials=4), journal))
    drive((make_spec(max_trials=8), journal))
    with pytest.raises(JournalError, match=r"lowering \[asha\]\.max_trials \(8 -> 4\)"):
        open_study(make_spec(max_trials=4), journal=journal)
