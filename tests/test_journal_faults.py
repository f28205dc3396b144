"""The journal under faults (issue #13): one owner, damage refused by line, a changed spec
refused with what changed, recorded decisions checked on replay, restarts not charged to
trials, and a checkpoint store that cannot write stopping the study without losing a result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ash.scheduler.driver import CheckpointStoreError, Driver, open_study
from ash.scheduler.journal import JournalError, seal, unseal
from ash.spec import StudySpec, parse_spec
from helpers import make_spec


def spec_with(space: dict[str, object], **asha: object) -> object:
    table = {"min_resource": 1, "max_resource": 9, "reduction_factor": 3, "max_trials": 20}
    table.update(asha)
    return parse_spec(
        {
            "study": {"name": "t", "metric": "loss", "seed": 1},
            "asha": table,
            "space": space,
        },
        source="test.toml",
    )


def run_some(driver: Driver, n: int = 12) -> None:
    """Ask n jobs, complete all but the last two."""
    got = [driver.request("w") for _ in range(n)]
    for a in got[:-2]:
        assert a is not None
        driver.complete(a.job.job_id, a.job.config["x"], {"loss": 1.0}, b"s")
    driver.sync()


def journal_of_some(tmp_path: Path) -> tuple[StudySpec, Path]:
    """A closed journal of a 20-trial study that ran some jobs (``run_some``)."""
    spec = make_spec(max_trials=20)
    journal = tmp_path / "j.jsonl"
    d = open_study(spec, journal=journal).driver
    run_some(d)
    d.close()
    return spec, journal


def crash(driver: Driver) -> None:
    """What a kill -9 leaves: what was synced, and no lock."""
    assert driver.journal is not None
    driver.journal.release()


def test_a_second_owner_is_refused_naming_the_holder(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from ash.scheduler.driver import open_study\n"
            "from helpers import make_spec\n"
            f"d = open_study(make_spec(max_trials=5), journal={str(journal)!r}).driver\n"
            "print('open', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(JournalError, match=f"in use by pid {holder.pid} on "):
            open_study(make_spec(max_trials=5), journal=journal)
    finally:
        holder.kill()
        holder.wait()
    # the lock dies with its process: the study can be taken over
    open_study(make_spec(max_trials=5), journal=journal).driver.close()


def test_a_second_owner_in_the_same_process_is_refused(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    first = open_study(make_spec(max_trials=5), journal=journal).driver
    with pytest.raises(JournalError, match=f"in use by pid {os.getpid()}"):
        open_study(make_spec(max_trials=5), journal=journal)
    first.close()
    open_study(make_spec(max_trials=5), journal=journal).driver.close()


def flip(path: Path, line: int) -> bytes:
    """Flip one byte in the middle of the given (1-based) line; returns the new bytes."""
    lines = path.read_bytes().split(b"\n")
    text = bytearray(lines[line - 1])
    text[len(text) // 2] ^= 0x01
    lines[line - 1] = bytes(text)
    data = b"\n".join(lines)
    path.write_bytes(data)
    return data


def test_damage_in_the_middle_refuses_names_the_line_and_leaves_the_file(tmp_path: Path) -> None:
    spec, journal = journal_of_some(tmp_path)
    damaged = flip(journal, 6)
    with pytest.raises(JournalError, match=r"line 6 is damaged \(checksum mismatch\)"):
        open_study(spec, journal=journal)
    assert journal.read_bytes() == damaged  # nothing cut, nothing repaired


def test_a_record_of_the_wrong_shape_is_named(tmp_path: Path) -> None:
    spec, journal = journal_of_some(tmp_path)
    lines = journal.read_bytes().split(b"\n")
    lines[3] = seal(json.dumps({"r": "three", "v": 1.0, "m": {}, "t": 1.0})).encode()
    journal.write_bytes(b"\n".join(lines))
    with pytest.raises(JournalError, match=r"line 4 is damaged \('r' is str\)"):
        open_study(spec, journal=journal)


def test_a_torn_tail_is_still_cut(tmp_path: Path) -> None:
    spec, journal = journal_of_some(tmp_path)
    good = journal.read_bytes()
    journal.write_bytes(good + b'{"r":3,"v":0.1,"m":{},"e":null,"t":2.0,"#":"00')
    again = open_study(spec, journal=journal)
    assert again.resumed_records == good.count(b"\n") - 1
    again.driver.close()
    assert journal.read_bytes().startswith(good) and b'"#":"00\n' not in journal.read_bytes()


def test_seal_round_trip() -> None:
    line = seal('{"a":"w","t":1.5}')
    assert unseal(line.encode()) == b'{"a":"w","t":1.5}'
    assert unseal(line.replace("1.5", "1.6").encode()) is None
    assert unseal(b'{"a":"w"}') is None


def test_a_changed_spec_is_refused_saying_what_changed(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    open_study(make_spec(max_trials=20), journal=journal).driver.close()
    with pytest.raises(JournalError, match=r"\[asha\]\.reduction_factor: 3 -> 4"):
        open_study(make_spec(max_trials=20, reduction_factor=4), journal=journal)


def test_a_reordered_space_is_refused(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    a = {"x": {"uniform": [0.0, 1.0]}, "y": {"uniform": [0.0, 1.0]}}
    b = {"y": {"uniform": [0.0, 1.0]}, "x": {"uniform": [0.0, 1.0]}}
    d = open_study(spec_with(a), journal=journal).driver  # type: ignore[arg-type]
    run_some(d)
    d.close()
    with pytest.raises(JournalError, match=r"reordered \(x, y -> y, x\)"):
        open_study(spec_with(b), journal=journal)  # type: ignore[arg-type]


@pytest.mark.parametrize("x", [0.123, 7.0])
def test_a_diverging_config_is_kept_and_one_outside_the_space_refused(
    tmp_path: Path, x: float, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever changed (the sampler's code, an enqueue file), a replayed new trial whose config
    differs from the one recorded keeps the recorded one, with a warning naming the parameter;
    a recorded config outside the spec's space stops the resume, naming the line."""
    spec, journal = journal_of_some(tmp_path)
    lines = journal.read_bytes().split(b"\n")
    for i, raw in enumerate(lines[1:], start=1):
        rec = json.loads(unseal(raw) or b"{}")
        if "c" in rec and i > 3:
            rec["c"]["x"] = x
            lines[i] = seal(json.dumps(rec, separators=(",", ":"))).encode()
            line, trial = i + 1, rec["k"][0]
            break
    journal.write_bytes(b"\n".join(lines))
    if x > 1:
        outside = rf"line {line}: trial {trial} was trained with .*not in this spec's \[space\]"
        with pytest.raises(JournalError, match=outside):
            open_study(spec, journal=journal)
        return
    d = open_study(spec, journal=journal).driver
    assert d.core.configs[trial]["x"] == x
    err = capsys.readouterr().err
    assert f"trial {trial} was trained with {{x=0.123}}, which this ash samples as" in err
    d.close()


def test_restarts_are_not_charged_to_trials(tmp_path: Path) -> None:
    """max_attempts = 1: a loss would fail the trial; three restarts with its job in flight
    cost it nothing, and it is re-issued first each time with the same attempt number."""
    spec = make_spec(max_trials=3, max_attempts=1)
    journal = tmp_path / "j.jsonl"
    d = open_study(spec, journal=journal).driver
    a = d.request("w")
    assert a is not None
    d.sync()
    for _ in range(3):
        crash(d)
        opened = open_study(spec, journal=journal)
        assert opened.lost_on_resume == 1
        d = opened.driver
        again = d.request("w")
        assert again is not None
        assert (again.job.trial, again.job.rung, again.job.attempt) == (a.job.trial, 0, 1)
        d.sync()
        a = again
    d.complete(a.job.job_id, 0.5, {"loss": 0.5}, b"s")
    assert d.errors == []
    assert d.results.n_failed == 0
    d.close()


def test_a_trial_that_runs_out_of_attempts_says_why(tmp_path: Path) -> None:
    d = open_study(make_spec(max_trials=3, max_attempts=1)).driver
    a = d.request("w")
    assert a is not None
    d.lose(a.job.job_id, why="worker w3 sent nothing for 30 s")
    assert d.errors and "worker w3 sent nothing for 30 s" in d.errors[0][1]
    assert d.errors[0][0] == a.job.trial


def fill_disk(store: Path, trials: int = 50) -> None:
    """Every temporary checkpoint file of these trials is /dev/full: writes fail ENOSPC."""
    store.mkdir(parents=True, exist_ok=True)
    for t in range(trials):
        for r in (1, 3, 9):
            (store / f"t{t}-r{r}.tmp").symlink_to("/dev/full")


def test_a_full_checkpoint_store_stops_deciding_and_loses_no_result(tmp_path: Path) -> None:
    spec = make_spec(max_trials=20, min_resource=1, max_resource=9)
    journal = tmp_path / "j.jsonl"
    fill_disk(tmp_path / "j.jsonl.ckpt")
    d = open_study(spec, journal=journal).driver
    a = d.request("w")
    assert a is not None
    d.sync()
    with pytest.raises(CheckpointStoreError, match="No space left"):
        d.complete(a.job.job_id, 0.3, {"loss": 0.3}, b"weights")
    assert d.broken is not None and "checkpoint store" in d.broken
    assert d.request("w") is None  # no more decisions
    assert a.job.job_id in d.core.inflight  # the result was not recorded: the job is not done
    with pytest.raises(JournalError):
        d.complete(a.job.job_id, 0.3, {"loss": 0.3}, b"weights")
    d.close()
    assert not any('"r"' in line for line in journal.read_text().splitlines())
    for tmp in (tmp_path / "j.jsonl.ckpt").glob("*.tmp"):
        tmp.unlink()  # the disk is mended
    opened = open_study(spec, journal=journal)
    assert opened.lost_on_resume == 1
    again = opened.driver.request("w")
    assert again is not None and (again.job.trial, again.job.attempt) == (a.job.trial, 1)
    opened.driver.close()


def test_a_version_1_journal_is_still_resumed(tmp_path: Path) -> None:
    from ash.scheduler.journal import spec_digest

    spec = make_spec(max_trials=5)
    journal = tmp_path / "j.jsonl"
    header = {"format": "ash-journal", "version": 1, "study": "t", "spec": spec_digest(spec.raw)}
    records = [header, {"a": "w", "t": 0.1}, {"a": "w", "t": 0.2}]
    records.append({"r": 0, "v": 0.5, "m": {}, "e": None, "t": 0.3})
    journal.write_text("".join(json.dumps(r) + "\n" for r in records))
    opened = open_study(spec, journal=journal)
    assert opened.resumed_records == 3 and opened.lost_on_resume == 1
    opened.driver.request("w")
    opened.driver.close()
    lines = journal.read_text().splitlines()
    assert all('"#"' not in line for line in lines)  # continued in its own version
    assert open_study(spec, journal=journal).resumed_records == len(lines) - 1


def test_a_symlink_or_hard_link_to_a_journal_in_use_is_refused(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    first = open_study(make_spec(max_trials=5), journal=journal, trace=tmp_path / "t.jsonl")
    (tmp_path / "sym.jsonl").symlink_to(journal)
    os.link(journal, tmp_path / "hard.jsonl")
    (tmp_path / "t.jsonl").write_bytes(b'{"event": "assign", "t": 0')  # being written
    for alias in ("sym.jsonl", "hard.jsonl"):
        with pytest.raises(JournalError, match=f"in use by pid {os.getpid()} "):
            open_study(
                make_spec(max_trials=5), journal=tmp_path / alias, trace=tmp_path / "t.jsonl"
            )
    assert (tmp_path / "t.jsonl").read_bytes() == b'{"event": "assign", "t": 0'  # untouched
    first.driver.close()


def test_a_damaged_header_is_named_as_line_1(tmp_path: Path) -> None:
    spec, journal = journal_of_some(tmp_path)
    data = journal.read_bytes()
    journal.write_bytes(data.replace(b'"format":"ash-journal"', b'"format":"ash-journal', 1))
    with pytest.raises(JournalError, match=r"line 1 is damaged"):
        open_study(spec, journal=journal)
