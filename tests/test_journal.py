"""The journal: replay equals live, torn tails are tolerated, another study's journal is
refused, and a journal that cannot be written stops all decisions."""

from __future__ import annotations

import errno
import json
import random
from pathlib import Path

import pytest

from ash.scheduler.driver import Driver, open_study
from ash.scheduler.journal import Journal, JournalError, spec_digest
from helpers import make_spec


def drive(driver: Driver, steps: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """Random asks, results and losses; returns the jobs handed out."""
    rng = random.Random(seed)
    inflight: list[int] = []
    jobs = []
    for _ in range(steps):
        r = rng.random()
        if r < 0.45 or not inflight:
            a = driver.request(f"w{rng.randrange(3)}")
            if a is not None:
                inflight.append(a.job.job_id)
                jobs.append((a.job.job_id, a.job.trial, a.job.rung))
        elif r < 0.9:
            job = inflight.pop(rng.randrange(len(inflight)))
            driver.complete(job, rng.random(), {"loss": 1.0}, f"state{job}".encode())
        else:
            driver.lose(inflight.pop(rng.randrange(len(inflight))))
        driver.sync()
    return jobs


def test_resume_rebuilds_the_core_exactly(tmp_path: Path) -> None:
    spec = make_spec("asha", max_trials=60, max_attempts=2)
    journal, trace = tmp_path / "j.jsonl", tmp_path / "t.jsonl"
    live = open_study(spec, journal=journal, trace=trace).driver
    drive(live, 400)
    inflight = set(live.core.inflight)
    snapshot = [[len(r) for r in b.rungs] for b in live.core.brackets]
    live.close()  # a crash after the last sync loses nothing journaled
    opened = open_study(spec, journal=journal, trace=trace)
    back = opened.driver
    assert opened.lost_on_resume == len(inflight)
    assert back.core.n_trials == live.core.n_trials
    assert back.core.next_id == live.core.next_id
    assert [[len(r) for r in b.rungs] for b in back.core.brackets] == snapshot
    # the in-flight jobs were lost and come back first, to the same trials and rungs
    again = [back.request("w0") for _ in range(len(inflight))]
    assert all(a is not None for a in again)
    back.close()
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    assert sum(e["event"] == "lost" for e in events) >= len(inflight)
    from ash.scheduler.audit import audit_for

    assert audit_for(events, spec) == []


def test_a_journal_of_another_sampler_version_resumes_with_its_own_configs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ash whose sampler draws otherwise (an upgrade) resumes the journal instead of refusing
    it: the recorded configurations are kept, the decisions are Algorithm 2's on the recorded
    results, and the new trials come from this sampler; one warning says so."""
    from ash.scheduler.audit import audit_for
    from ash.scheduler.core.samplers.base import RandomSampler

    spec = make_spec("asha", max_trials=100)
    journal, trace = tmp_path / "j.jsonl", tmp_path / "t.jsonl"
    old = open_study(spec, journal=journal, trace=trace).driver
    drive(old, 120)
    recorded = list(old.core.configs)
    rungs = [[len(r) for r in b.rungs] for b in old.core.brackets]
    old.close()
    again = open_study(spec, journal=journal).driver  # the same ash: no warning
    assert again.core.configs == recorded
    again.close()
    assert "warning" not in capsys.readouterr().err

    draw = RandomSampler.sample

    def upgraded(self: RandomSampler, rng: random.Random, space: object, history: object) -> object:
        rng.random()  # another version: the same space, drawn otherwise
        return draw(self, rng, space, history)  # type: ignore[arg-type]

    monkeypatch.setattr(RandomSampler, "sample", upgraded)
    back = open_study(spec, journal=journal, trace=trace).driver
    err = capsys.readouterr().err
    assert err.count("warning") == 1, err
    assert f"{journal}: trial 0 was trained with" in err and "new trials are drawn" in err
    assert back.core.configs == recorded
    assert [[len(r) for r in b.rungs] for b in back.core.brackets] == rungs
    doc = back.results.to_json()
    assert [t["config"] for t in doc["trials"]] == recorded
    drive(back, 200, seed=1)  # the study goes on, and new trials come from this sampler
    assert len(recorded) < back.core.n_trials < 100
    back.close()
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    assert audit_for(events, spec) == []


def test_a_trace_is_checked_against_its_journal_on_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A journal cut short (its damage message's advice) cuts its trace back to the events it
    still holds; another run's trace is refused at its first differing line, however long; a
    trace whose only line is torn is cut to nothing and written again."""
    from ash.scheduler.audit import audit_for
    from ash.scheduler.trace import TraceError

    spec = make_spec("asha", max_trials=60)
    journal, trace = tmp_path / "j.jsonl", tmp_path / "t.jsonl"
    d = open_study(spec, journal=journal, trace=trace).driver
    drive(d, 150)
    d.close()
    full = trace.read_text().splitlines(keepends=True)
    lines = journal.read_bytes().split(b"\n")
    journal.write_bytes(b"\n".join(lines[:40]) + b"\n")  # header and 39 records
    back = open_study(spec, journal=journal, trace=trace).driver
    kept = trace.read_text().splitlines(keepends=True)
    n = len(kept)
    while json.loads(kept[n - 1])["event"] == "lost":  # the resume's own: jobs in flight
        n -= 1
    assert 0 < n < len(full) and kept[:n] == full[:n]
    assert "were cut" in capsys.readouterr().err
    drive(back, 100, seed=2)
    back.close()
    assert audit_for([json.loads(x) for x in trace.read_text().splitlines()], spec) == []

    other = tmp_path / "other.jsonl"
    o = open_study(make_spec("asha", max_trials=60, seed=5), trace=other).driver
    drive(o, 12)  # some results: another run's differ in time and value
    o.close()
    before = other.read_text()
    assert 0 < before.count("\n") < n
    with pytest.raises(TraceError, match=r"line \d+ is not the event .* another run"):
        open_study(spec, journal=journal, trace=other)
    assert other.read_text() == before
    torn = tmp_path / "torn.jsonl"
    torn.write_text('{"event": "assign", "t": 0.0')
    open_study(spec, journal=journal, trace=torn).driver.close()
    assert torn.read_text().startswith('{"event": ') and torn.read_text().endswith("\n")


def test_promoted_trial_gets_its_checkpoint_after_resume(tmp_path: Path) -> None:
    spec = make_spec("asha", min_resource=1, max_resource=4, reduction_factor=2, max_trials=10)
    journal = tmp_path / "j.jsonl"
    d = open_study(spec, journal=journal).driver
    a, b = d.request("w"), d.request("w")
    assert a is not None and b is not None
    d.complete(a.job.job_id, 0.1, {}, b"weights-of-trial-0")
    d.complete(b.job.job_id, 0.9, {}, b"weights-of-trial-1")
    d.sync()
    assert d.journal is not None
    d.journal.release()  # killed: no close (and a dead process's lock is gone)
    back = open_study(spec, journal=journal).driver
    up = back.request("w")
    assert up is not None and (up.job.trial, up.job.rung) == (0, 1)
    assert up.checkpoint == b"weights-of-trial-0"


def test_torn_tail_is_ignored_and_cut(tmp_path: Path) -> None:
    spec = make_spec("asha", max_trials=20)
    journal = tmp_path / "j.jsonl"
    d = open_study(spec, journal=journal).driver
    drive(d, 50)
    d.close()
    good = journal.read_bytes()
    journal.write_bytes(good + b'{"r": 3, "v": 0.')  # a crash mid-write
    again = open_study(spec, journal=journal)
    assert again.resumed_records == good.count(b"\n") - 1
    again.driver.close()
    assert journal.read_bytes().startswith(good)
    assert b'{"r": 3, "v": 0.' not in journal.read_bytes()


def test_another_studys_journal_is_refused(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    open_study(make_spec("asha", max_trials=20), journal=journal).driver.close()
    with pytest.raises(JournalError, match="another spec"):  # (raising max_trials is allowed)
        open_study(make_spec("asha", max_trials=19), journal=journal)
    (tmp_path / "x.jsonl").write_text("hello\n")
    with pytest.raises(JournalError, match="not an ash journal"):
        Journal(tmp_path / "x.jsonl", study="t", digest=spec_digest({}))


class FullDisk:
    """A file whose writes fail as on a full disk (what cannot be provoked safely here)."""

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        pass


def test_unwritable_journal_stops_all_decisions(tmp_path: Path) -> None:
    spec = make_spec("asha", max_trials=20)
    d = open_study(spec, journal=tmp_path / "j.jsonl").driver
    assert d.request("w") is not None
    d.sync()
    assert d.journal is not None
    d.journal._f = FullDisk()  # type: ignore[assignment]
    a = d.request("w")
    assert a is not None
    with pytest.raises(JournalError, match="No space left"):
        d.sync()  # the transport sends nothing: this assignment never leaves the process
    assert d.request("w") is None  # and nothing more is decided
    with pytest.raises(JournalError, match="no more decisions"):
        d.sync()


def test_unwritable_journal_path_is_a_clear_error(tmp_path: Path) -> None:
    spec = make_spec("asha", max_trials=20)
    with pytest.raises(JournalError, match="cannot be opened"):
        open_study(spec, journal=tmp_path / "missing-dir" / "j.jsonl")


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", ".hidden", "", "x" * 300, ".."])
def test_shared_checkpoint_names_cannot_escape(tmp_path: Path, name: str) -> None:
    from ash.link.checkpoints import CheckpointPathError, shared_file

    with pytest.raises(CheckpointPathError):
        shared_file(tmp_path, name)
    assert shared_file(tmp_path, "t1-r3-j7.ckpt") == tmp_path.resolve() / "t1-r3-j7.ckpt"
