"""The checkpoint store and the journal under operators' faults: a state that should be there
and is not (a file lost, a journal cut short as docs/distributed.md advises) is retrained from
scratch with a warning, never handed out as ``start > 0`` with no state; states the study does
not keep leave the shared folder; a full disk under the journal ends the study as a full
checkpoint store does (the error on stderr, ``--out`` written with it, exit 1), never with a
traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ash.link.checkpoints import CheckpointRef
from ash.scheduler.checkpoints import DirectoryStore
from ash.scheduler.driver import Driver, open_study
from ash.scheduler.journal import seal, unseal
from ash.spec import StudySpec, parse_spec
from helpers import BIN, Scheduler, make_spec, results, worker

if sys.platform != "linux":  # pragma: no cover
    pytest.skip("process tests need Linux", allow_module_level=True)

TESTS = Path(__file__).resolve().parent


def spec9(max_trials: int = 30, keep_best: int = 1, **study: Any) -> StudySpec:
    return parse_spec(
        {
            "study": {"name": "t", "metric": "loss", "seed": 2, **study},
            "asha": {
                "min_resource": 1,
                "max_resource": 9,
                "reduction_factor": 3,
                "max_trials": max_trials,
            },
            "checkpoints": {"keep_best": keep_best},
            "space": {"x": {"uniform": [0.0, 1.0]}},
        },
        source="test.toml",
    )


def state(trial: int, resource: float) -> bytes:
    return f"{trial}@{resource:g}".encode()


def drive(driver: Driver, steps: int, stateless: bool = False) -> list[Any]:
    """Run ``steps`` jobs one at a time as a trainer that keeps the contract would: a promotion
    must get the state its trial's previous job returned, else start 0. Returns the jobs."""
    seen = []
    for _ in range(steps):
        a = driver.request("w")
        if a is None:
            break
        job = a.job
        if job.start == 0:
            assert a.checkpoint is None
        elif stateless:
            assert a.checkpoint is None  # a stateless trainer's promotion: by design
        else:
            assert a.checkpoint == state(job.trial, job.start), (job, a.checkpoint)
        seen.append(job)
        value = (job.config["x"] - 0.3) ** 2 + 1.0 / job.stop
        driver.complete(
            job.job_id, value, {"loss": value}, None if stateless else state(job.trial, job.stop)
        )
        driver.sync()
    return seen


def pending_promotion(driver: Driver, stateless: bool = False) -> Any:
    """Run jobs until a promotion is handed out; leave it in flight (journaled) and return it."""
    while True:
        a = driver.request("w")
        assert a is not None
        if a.job.rung > 0:
            driver.sync()
            return a.job
        value = (a.job.config["x"] - 0.3) ** 2 + 1.0 / a.job.stop
        s = None if stateless else state(a.job.trial, a.job.stop)
        driver.complete(a.job.job_id, value, {"loss": value}, s)


def crash(driver: Driver) -> None:
    assert driver.journal is not None
    driver.journal.release()


# -- finding 2: a state that should exist and does not ---------------------------------------


def test_a_lost_checkpoint_file_is_retrained_from_scratch_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = spec9()
    journal = tmp_path / "j.jsonl"
    d = open_study(spec, journal=journal).driver
    drive(d, 12)
    up = pending_promotion(d)  # in flight at the crash: re-issued, from a state now lost
    crash(d)
    lost = sorted((tmp_path / "j.jsonl.ckpt").glob("t*-r1.ckpt"))
    assert (tmp_path / f"j.jsonl.ckpt/t{up.trial}-r{up.start:g}.ckpt") in lost
    for p in lost:
        p.unlink()
    d = open_study(spec, journal=journal).driver
    jobs = drive(d, 1000)
    d.close()
    scratch = [j for j in jobs if j.rung > 0 and j.start == 0]
    assert (up.trial, up.rung, 0) in {(j.trial, j.rung, j.start) for j in scratch}
    assert {(j.trial, j.stop) for j in scratch} <= {
        (int(p.name[1:].split("-")[0]), 3) for p in lost
    }
    warned = [why for t, why in d.errors if "retrained from scratch" in why]
    assert len(warned) == len(scratch) and all("is missing" in w for w in warned)
    err = capsys.readouterr().err
    assert err.count("ash: warning: checkpoint store") == 1 and "missing" in err
    # the retrains are ordinary jobs to the journal: a replay makes the same decisions
    again = open_study(spec, journal=journal).driver
    assert again.core.finished and again.results.to_json() == d.results.to_json()
    again.close()


@pytest.mark.parametrize("cut", [1, 5, 23, 27])
def test_a_journal_cut_short_never_hands_out_start_without_state(tmp_path: Path, cut: int) -> None:
    """docs/distributed.md: a damaged journal is truncated before the damage; the states its
    cut records made obsolete are already deleted. Every promotion still gets its state or
    starts from 0 (these cuts each lose one that the replayed study promotes again)."""
    spec = spec9(max_trials=40)
    journal = tmp_path / "j.jsonl"
    d = open_study(spec, journal=journal).driver
    drive(d, 30)
    d.close()
    lines = journal.read_bytes().split(b"\n")
    journal.write_bytes(b"\n".join(lines[: len(lines) - 1 - cut]) + b"\n")
    d = open_study(spec, journal=journal).driver
    drive(d, 1000)  # asserts the contract for every job
    assert d.finished
    d.close()
    assert [why for _, why in d.errors if "retrained from scratch" in why]


def test_a_stateless_trainer_is_not_retrained_even_after_a_resume(tmp_path: Path) -> None:
    """No state is by the trainer's choice (journaled as "n"), not a loss: its promotions go out
    with start > 0 and no state, before and after a resume, with no warning and no file."""
    spec = spec9()
    journal = tmp_path / "j.jsonl"
    d = open_study(spec, journal=journal).driver
    first = drive(d, 12, stateless=True)
    up = pending_promotion(d, stateless=True)  # re-issued after the resume
    crash(d)
    d = open_study(spec, journal=journal).driver
    again = drive(d, 1000, stateless=True)
    d.close()
    jobs = first + again
    assert (up.trial, up.rung, up.start) in {(j.trial, j.rung, j.start) for j in again}
    assert not [j for j in jobs if j.rung > 0 and j.start == 0]
    assert d.errors == []
    assert not list((tmp_path / "j.jsonl.ckpt").glob("t*"))


def test_an_old_journal_without_the_no_state_mark_is_treated_conservatively(
    tmp_path: Path,
) -> None:
    """A journal an older ash wrote does not say whether a result came with a state: when
    none is in the store, its promotion is retrained from scratch (correct either way)."""
    spec = spec9()
    journal = tmp_path / "j.jsonl"
    d = open_study(spec, journal=journal).driver
    drive(d, 12, stateless=True)
    up = pending_promotion(d, stateless=True)
    crash(d)
    lines = journal.read_bytes().split(b"\n")
    for i, raw in enumerate(lines[1:], start=1):
        rec = json.loads(unseal(raw) or b"{}")
        if rec.pop("n", None) is not None:
            lines[i] = seal(json.dumps(rec, separators=(",", ":"))).encode()
    journal.write_bytes(b"\n".join(lines))
    d = open_study(spec, journal=journal).driver
    jobs = drive(d, 1000)
    d.close()
    assert (up.trial, up.rung, 0) in {(j.trial, j.rung, j.start) for j in jobs}  # retrained
    assert d.finished


def test_a_shared_file_lost_under_its_ref_is_retrained_from_scratch(tmp_path: Path) -> None:
    """--checkpoint-dir (gRPC): the store holds a .ref, the worker-written file is gone (or
    cut short): the promotion is not sent a reference the worker cannot read."""
    shared = tmp_path / "shared"
    shared.mkdir()
    store = DirectoryStore(tmp_path / "ck", fsync=False, shared=shared)
    d = Driver(spec9(max_trials=3), checkpoints=store)
    got = [d.request("w") for _ in range(3)]
    for a, v in zip(got, (0.1, 0.5, 0.9), strict=True):
        assert a is not None
        name = f"t{a.job.trial}-r1-j{a.job.job_id}.ckpt"
        (shared / name).write_bytes(b"weights")
        d.complete(a.job.job_id, v, {"loss": v}, CheckpointRef(name, 0, 7))
    d.sync()
    best = got[0]
    assert best is not None
    (shared / f"t{best.job.trial}-r1-j{best.job.job_id}.ckpt").write_bytes(b"cut")
    up = d.request("w")
    assert up is not None and up.job.trial == best.job.trial and up.job.rung == 1
    assert up.job.start == 0 and up.checkpoint is None
    assert any("retrained from scratch" in why for _, why in d.errors)
    d.close()


def test_embedded_tune_with_lost_checkpoint_files_keeps_the_trainer_contract(
    tmp_path: Path,
) -> None:
    """``ash tune --journal`` killed mid-study, rung-0 states removed from FILE.ckpt/, resumed:
    no trainer gets start > 0 without its state; the results say which were retrained."""
    (tmp_path / "chk.py").write_text(
        "import time\n"
        "def fit(config, start, stop, state):\n"
        "    if start == 0:\n"
        "        assert state is None\n"
        "    else:\n"
        "        assert state is not None and float(state.decode().split(':')[1]) == start, (\n"
        "            f'bad state {state!r} start={start}')\n"
        "    time.sleep(0.05 * (stop - start))\n"
        "    return ({'loss': (config['x'] - 0.3) ** 2 + 1.0 / stop},\n"
        "            f\"{config['x']!r}:{stop}\".encode())\n"
    )
    (tmp_path / "chk.toml").write_text(
        '[study]\nmetric = "loss"\n[asha]\nmin_resource = 1\nmax_resource = 9\n'
        'reduction_factor = 3\nmax_trials = 30\n[trainer]\ntype = "python"\n'
        'entrypoint = "chk:fit"\n[space]\nx = { uniform = [0, 1] }\n'
    )
    cmd = [str(BIN / "ash"), "tune", "chk.toml", "--workers", "2", "--threads", "1", "--quiet"]
    cmd += ["--journal", "j.jsonl"]
    first = subprocess.Popen(cmd, cwd=tmp_path, stderr=subprocess.DEVNULL)
    journal = tmp_path / "j.jsonl"
    deadline = time.monotonic() + 90
    try:
        while not journal.exists() or journal.read_bytes().count(b'{"r":') < 10:
            assert first.poll() is None and time.monotonic() < deadline, "no progress"
            time.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    lost = list((tmp_path / "j.jsonl.ckpt").glob("t*-r1.ckpt"))
    for p in lost:
        p.unlink()
    again = subprocess.run(
        [*cmd, "--out", "out"], cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert again.returncode == 0, again.stderr
    doc = results(tmp_path / "out")
    assert len(doc["trials"]) == 30
    errors = [e["error"] for e in doc["errors"]]
    assert not [e for e in errors if "bad state" in e or "AssertionError" in e], errors
    assert lost and errors, "no promotion from a lost state: the test tested nothing"
    assert all("retrained from scratch" in e for e in errors), errors
    assert "Traceback" not in again.stderr


def test_a_stopped_jobs_shared_file_is_discarded(tmp_path: Path) -> None:
    """stop_on = "reports": a job stopped on its reports keeps no state; the file its worker
    wrote into the shared folder is deleted when its result is recorded."""
    shared = tmp_path / "shared"
    shared.mkdir()
    store = DirectoryStore(tmp_path / "ck", fsync=False, shared=shared)
    d = Driver(make_spec("asha-stopping", stop_on="reports", max_trials=4), checkpoints=store)
    a, b = d.request("w"), d.request("w")
    assert a is not None and b is not None
    d.report(a.job.job_id, [(1, {"loss": 0.5})])
    d.report(b.job.job_id, [(1, {"loss": 0.9})])  # worse: stopped
    assert d.take_stops() == [b.job.job_id]
    (shared / "b.ckpt").write_bytes(b"stopped")
    d.complete(b.job.job_id, 0.9, {"loss": 0.9}, CheckpointRef("b.ckpt", 0, 7))
    assert not (shared / "b.ckpt").exists()
    d.close()


def test_a_duplicate_result_deletes_its_file_unless_it_is_the_kept_state(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    store = DirectoryStore(tmp_path / "ck", fsync=False, shared=shared)
    d = Driver(spec9(max_trials=5), checkpoints=store)
    a = d.request("w")
    assert a is not None
    for name in ("kept.ckpt", "late.ckpt"):
        (shared / name).write_bytes(b"weights")
    assert d.complete(a.job.job_id, 0.2, {"loss": 0.2}, CheckpointRef("kept.ckpt", 0, 7))
    # the same result sent again (a worker's resend after a reconnect): the file is the state
    assert not d.complete(a.job.job_id, 0.2, {"loss": 0.2}, CheckpointRef("kept.ckpt", 0, 7))
    assert (shared / "kept.ckpt").exists()
    # a late result of the same job, another file: nobody will ever read it
    assert not d.complete(a.job.job_id, 0.3, {"loss": 0.3}, CheckpointRef("late.ckpt", 0, 7))
    assert not (shared / "late.ckpt").exists()
    # a reopened store knows which files its .ref name
    again = DirectoryStore(tmp_path / "ck", fsync=False, shared=shared)
    assert again.discard(CheckpointRef("kept.ckpt", 0, 7)) == []
    assert (shared / "kept.ckpt").exists()
    d.close()


# -- finding 10: a full disk under the journal -----------------------------------------------


def test_an_unwritable_dropped_note_says_so(tmp_path: Path) -> None:
    """The note of dropped trials cannot be written (a full disk): the warning says that,
    not that a file named "dropped" could not be deleted."""
    root = tmp_path / "ckpt"
    store = DirectoryStore(root, fsync=False)
    store.put(1, 3, b"a")
    (root / "dropped").symlink_to("/dev/full")
    (failed,) = store.drop([(1, 3, True)])
    assert "the note dropped cannot be written: No space left on device" in failed
    assert store.get(1, 3) == b"a"


GSPEC = """
[study]
metric = "loss"
[asha]
min_resource = 1
max_resource = 9
max_trials = 30
[trainer]
type = "python"
entrypoint = "g:fit"
[space]
x = { uniform = [0, 1] }
"""

GFIT = """
import time
def fit(config, start, stop, state):
    time.sleep(0.02)
    return {"loss": (config["x"] - 0.3) ** 2 + 1 / stop}, None
"""


def under_full_disk(limit: int, prog: str) -> list[str]:
    """A command running ``prog`` whose journal's disk fills at ``limit`` bytes."""
    return [sys.executable, "-c", f"import fulldisk; fulldisk.run({limit}, {prog!r})"]


def full_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(TESTS)}


def test_embedded_tune_on_a_full_journal_disk_writes_out_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(GFIT)
    (tmp_path / "g.toml").write_text(GSPEC)
    args = ["tune", "g.toml", "--workers", "2", "--threads", "1", "--quiet"]
    args += ["--journal", "j.jsonl", "--out", "out"]
    first = subprocess.run(
        under_full_disk(3000, "ash") + args,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env(),
    )
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr, first.stderr
    assert "j.jsonl: write failed (No space left on device)" in first.stderr
    doc = results(tmp_path / "out")
    assert "No space left" in doc["error"]
    assert 0 < len(doc["trials"]) < 30
    again = subprocess.run(  # the disk mended: the same command resumes and finishes
        [str(BIN / "ash"), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert "ash: resumed" in again.stderr
    doc = results(tmp_path / "out")
    assert len(doc["trials"]) == 30 and "error" not in doc


def test_scheduler_on_a_full_journal_disk_writes_out_and_exits_1(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    (tmp_path / "g.py").write_text(GFIT)
    (tmp_path / "g.toml").write_text(GSPEC)
    proc = subprocess.Popen(
        [
            *under_full_disk(3000, "ash-scheduler"),
            "g.toml",
            "--listen",
            "127.0.0.1:0",
            "--journal",
            "j.jsonl",
            "--out",
            "out",
            "--linger",
            "1",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    assert "listening on" in line, proc.stderr.read()
    target = line.split("listening on ")[1].split()[0]
    w = worker(target, tmp_path, "w", "--slots", "2", "--retry-for", "3")
    cleanup.append(w)
    try:
        assert proc.wait(timeout=90) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert "Traceback" not in err, err
    assert "j.jsonl: write failed (No space left on device)" in err
    doc = results(tmp_path / "out")
    assert "No space left" in doc["error"] and doc["interrupted"] is True
    w.wait(timeout=60)
    s = Scheduler(tmp_path / "g.toml", tmp_path, "--journal", "j.jsonl", "--out", "out")
    cleanup.append(s)  # the disk mended: the same journal finishes the study
    w = worker(s.target, tmp_path, "w2", "--slots", "2", "--retry-for", "30")
    cleanup.append(w)
    assert s.wait(timeout=120) == 0, s.proc.stderr.read() if s.proc.stderr else ""
    doc = results(tmp_path / "out")
    assert len(doc["trials"]) == 30 and "error" not in doc
