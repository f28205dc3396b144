"""The life of ``ash tune --transport grpc``'s daemons, and states over the checkpoint limit.

Real processes throughout: ``ash tune`` started as a user starts it, signalled alone (``kill
-TERM PID``, ``kill -INT PID``, ``kill -KILL PID``: not the terminal's process group), its
scheduler and workers found by their parent pid; ``ash-scheduler`` / ``ash-worker`` daemons on
127.0.0.1 port 0. What must hold: a signal stops the study as documented (``"interrupted":
true``, exit 130), no daemon goes on after ``ash tune`` (so the same journal resumes at once),
a finished journal returns at once without worker noise, a state over ``--max-checkpoint-mb``
fails its job (and fail-fast) instead of every worker, and ``ash tune`` never waits forever for
workers that are gone.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ash.proto import ash_pb2 as pb
from ash.worker.stream import Session, outgoing
from helpers import BIN, EXAMPLES, Scheduler, results, run_ash, worker

TRAINER = """
import os, signal, time

def fit(config, start, stop, state):
    time.sleep(float(os.environ.get("SLEEP", "0")))
    if os.environ.get("KILL_WORKER"):  # the slot's parent is its ash-worker
        os.kill(os.getppid(), signal.SIGKILL)
    big = config["x"] > float(os.environ.get("BIG_ABOVE", "2"))
    size = int(os.environ.get("STATE_BYTES", "16")) if big else 16
    if os.environ.get("CHECK_STATE") and start > 0 and (state is None or len(state) != size):
        raise RuntimeError(f"promoted without its state: {None if state is None else len(state)}")
    return {"loss": (config["x"] - 0.3) ** 2 + 1.0 / stop}, b"s" * size
"""

SPEC = """
[study]
name = "life"
metric = "loss"
seed = 5
[asha]
min_resource = 1
max_resource = 9
max_trials = {max_trials}
[trainer]
type = "python"
entrypoint = "life_trainer:fit"
[space]
x = {{ uniform = [0.0, 1.0] }}
"""


def study(tmp_path: Path, max_trials: int) -> Path:
    (tmp_path / "life_trainer.py").write_text(TRAINER)
    spec = tmp_path / "life.toml"
    spec.write_text(SPEC.format(max_trials=max_trials))
    return spec


def tune(tmp_path: Path, spec: Path, *flags: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "ash"), "tune", str(spec), "--transport", "grpc", "--quiet", *flags],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_results(journal: Path, n: int, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Until the journal holds ``n`` results (the study is under way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if journal.exists():
            lines = journal.read_text().splitlines()
            if sum(1 for line in lines if line.startswith('{"r":')) >= n:
                return
        time.sleep(0.1)
    raise AssertionError(f"no {n} results in {journal}")


def daemons_of(proc: subprocess.Popen[str]) -> list[int]:
    """The scheduler and the workers ``ash tune`` started (once all are up)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        kids = children(proc.pid)
        if len(kids) >= 3:  # the scheduler and two workers
            return kids
        time.sleep(0.1)
    raise AssertionError(f"ash tune started {children(proc.pid)}")


def gone(pids: list[int], timeout: float) -> list[int]:
    """Those of ``pids`` still running after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_tune_alone_stops_its_daemons_and_the_journal_resumes(
    tmp_path: Path, sig: signal.Signals
) -> None:
    spec = study(tmp_path, max_trials=60)
    env = {"SLEEP": "0.2"}
    proc = tune(tmp_path, spec, "--workers", "2", "--journal", "j.jsonl", "--out", "out", env=env)
    try:
        wait_results(tmp_path / "j.jsonl", 3, proc)
        kids = daemons_of(proc)
        proc.send_signal(sig)  # to ash tune alone, as kill(1), timeout(1) or Slurm do
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted; what was done is written" in err and "Traceback" not in err
    doc = results(tmp_path / "out")
    assert doc["interrupted"] is True and 0 < len(doc["trials"]) < 60
    assert gone(kids, 5) == []
    again = run_ash(
        *("tune", str(spec), "--transport", "grpc", "--workers", "2", "--quiet"),
        *("--journal", "j.jsonl", "--out", "out"),
        cwd=tmp_path,
        timeout=240,
    )
    assert again.returncode == 0, again.stderr  # not "in use by pid": nobody holds it
    doc = results(tmp_path / "out")
    assert doc["interrupted"] is False and len(doc["trials"]) == 60


def test_a_killed_tune_leaves_no_daemon_going_on_with_the_study(tmp_path: Path) -> None:
    spec = study(tmp_path, max_trials=80)
    proc = tune(
        tmp_path,
        spec,
        "--workers",
        "2",
        "--journal",
        "j.jsonl",
        "--out",
        "out",
        env={"SLEEP": "0.2"},
    )
    try:
        wait_results(tmp_path / "j.jsonl", 3, proc)
        kids = daemons_of(proc)
        proc.kill()  # SIGKILL: nothing of ash tune runs any more
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    # the kernel tells each daemon (PR_SET_PDEATHSIG): they drain and exit, none finishes alone
    assert gone(kids, 30) == []
    doc = results(tmp_path / "out")
    assert doc["interrupted"] is True and 0 < len(doc["trials"]) < 80


def test_a_finished_journal_returns_at_once_without_worker_noise(tmp_path: Path) -> None:
    spec = study(tmp_path, max_trials=6)
    args = ("tune", str(spec), "--transport", "grpc", "--workers", "2", "--quiet")
    first = run_ash(*args, "--journal", "j.jsonl", "--out", "a", cwd=tmp_path, timeout=240)
    assert first.returncode == 0, first.stderr
    # before: the scheduler exited at once, the workers retried for 30 s and the parent waited
    again = run_ash(*args, "--journal", "j.jsonl", "--out", "b", cwd=tmp_path, timeout=25)
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""
    assert results(tmp_path / "b")["best"] == results(tmp_path / "a")["best"]


def test_tune_whose_workers_all_died_stops_with_an_error(tmp_path: Path) -> None:
    spec = study(tmp_path, max_trials=6)
    proc = tune(tmp_path, spec, "--workers", "2", "--out", "out", env={"KILL_WORKER": "1"})
    try:
        _, err = proc.communicate(timeout=120)  # before: it waited forever
    finally:
        proc.kill()
    assert proc.returncode == 2, err
    assert "every ash-worker exited before the study finished (exit codes -9, -9" in err
    assert results(tmp_path / "out")["interrupted"] is True


def test_a_state_over_the_limit_fails_its_job_and_the_worker_keeps_serving(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    spec = study(tmp_path, max_trials=12)
    env = {"BIG_ABOVE": "0.7", "STATE_BYTES": str(1_500_000)}  # over 1 MB for x > 0.7
    s = Scheduler(spec, tmp_path, "--max-checkpoint-mb", "1", "--out", "out", "--linger", "1")
    cleanup.append(s)
    w = worker(s.target, tmp_path, "w0", "--retry-for", "5", env=env)
    cleanup.append(w)
    assert w.wait(timeout=120) == 0, w.stderr.read() if w.stderr else ""  # it served to the end
    assert s.wait() == 0
    doc = results(tmp_path / "out")
    assert len(doc["trials"]) == 12 and doc["best"] is not None
    big = {t["trial"] for t in doc["trials"] if t["config"]["x"] > 0.7}
    assert big and {e["trial"] for e in doc["errors"]} == big
    assert all(
        e["error"].startswith(
            "state of 1500000 bytes exceeds the scheduler's --max-checkpoint-mb 1: give the "
            "scheduler and the workers a shared --checkpoint-dir"
        )
        for e in doc["errors"]
    )

    # with a shared folder the same states go by reference, whatever --inline-mb says
    shared = tmp_path / "shared"
    shared.mkdir()
    s2 = Scheduler(
        spec,
        tmp_path,
        *("--max-checkpoint-mb", "1", "--checkpoint-dir", str(shared)),
        *("--out", "out2", "--linger", "1"),
    )
    cleanup.append(s2)
    w2 = worker(
        s2.target, tmp_path, "w1", "--checkpoint-dir", str(shared), "--inline-mb", "10", env=env
    )
    cleanup.append(w2)
    assert w2.wait(timeout=120) == 0
    assert s2.wait() == 0
    doc2 = results(tmp_path / "out2")
    assert doc2["errors"] == [] and len(doc2["trials"]) == 12


def test_tune_carries_states_over_64_mb_through_a_shared_directory(tmp_path: Path) -> None:
    """``ash tune --transport grpc`` runs on one machine: its daemons share a checkpoint
    directory, so a state over the scheduler's 64 MB message limit goes by file (it used to fail
    every job), and each promotion gets its state back whole."""
    spec = study(tmp_path, max_trials=4)
    env = {"BIG_ABOVE": "-1", "STATE_BYTES": str(65 << 20), "CHECK_STATE": "1"}
    proc = tune(tmp_path, spec, "--workers", "1", "--out", "out", "--journal", "j", env=env)
    try:
        _, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    doc = json.loads((tmp_path / "out/results.json").read_text())
    assert doc["errors"] == [] and len(doc["trials"]) == 4
    assert any(len(t["results"]) > 1 for t in doc["trials"])  # a promotion got its state
    assert (tmp_path / "j.shared").is_dir()  # beside the journal, for a resume


def test_a_grpc_journal_with_shared_states_resumes_on_another_transport(tmp_path: Path) -> None:
    """States that went through ``JOURNAL.shared/`` (``--transport grpc``) reach the trainers of
    a resume on --transport inproc as bytes, whole; the retention rule deletes them there too, so
    the folder ends holding what ``JOURNAL.ckpt/`` names and nothing else."""
    spec = study(tmp_path, max_trials=12)
    env = {"BIG_ABOVE": "-1", "STATE_BYTES": str(2 << 20), "CHECK_STATE": "1", "SLEEP": "0.2"}
    proc = tune(tmp_path, spec, "--workers", "1", "--journal", "j.jsonl", env=env)
    try:
        wait_results(tmp_path / "j.jsonl", 5, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert list((tmp_path / "j.jsonl.ckpt").glob("*.ref"))  # states by reference
    resumed = subprocess.run(
        [str(BIN / "ash"), "tune", str(spec), "--workers", "1", "--quiet", *EMBEDDED_OUT],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **env, "SLEEP": "0"},
    )
    assert resumed.returncode == 0, resumed.stderr
    doc = results(tmp_path / "out")
    assert doc["errors"] == [] and len(doc["trials"]) == 12
    assert any(len(t["results"]) > 1 for t in doc["trials"])
    named = {json.loads(f.read_text())[0] for f in (tmp_path / "j.jsonl.ckpt").glob("*.ref")}
    left = {f.name for f in (tmp_path / "j.jsonl.shared").iterdir()}
    assert left == named, (left, named)


EMBEDDED_OUT = ("--out", "out", "--journal", "j.jsonl")


def test_embedded_tune_on_sigterm_writes_what_was_done(tmp_path: Path) -> None:
    spec = study(tmp_path, max_trials=200)
    proc = subprocess.Popen(
        [str(BIN / "ash"), "tune", str(spec), "--workers", "2", "--quiet", *EMBEDDED_OUT],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SLEEP": "0.05"},
    )
    try:
        wait_results(tmp_path / "j.jsonl", 3, proc)
        proc.send_signal(signal.SIGTERM)  # before: exit 143, nothing written
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    doc = results(tmp_path / "out")
    assert doc["interrupted"] is True and 0 < len(doc["trials"]) < 200


def _result(job_id: int, size: int) -> pb.WorkerMessage:
    msg = pb.WorkerMessage()
    msg.result.job_id = job_id
    msg.result.ok = True
    msg.result.value = 1.0
    msg.result.checkpoint.data = b"x" * size
    msg.result.checkpoint.size = size
    return msg


def test_outgoing_fails_an_oversized_state_and_bounds_a_batch_by_bytes() -> None:
    session = Session("s", queue.Queue(), batches=True, max_checkpoint_bytes=1 << 20)
    for job_id, size in [(1, 600_000), (2, 600_000), (3, 2_000_000), (4, 100)]:
        session.out.put(_result(job_id, size))
    session.out.put(None)
    sent = list(outgoing(session, lambda: False))
    assert all(m.ByteSize() <= 1 << 20 for m in sent)  # what the scheduler's stream takes
    results_sent = [
        r for m in sent for r in (m.results.results if m.results.results else [m.result])
    ]
    assert [r.job_id for r in results_sent] == [1, 2, 3, 4]
    failed = results_sent[2]
    assert not failed.ok and not failed.HasField("checkpoint")
    assert failed.error.startswith("state of 2000000 bytes exceeds the scheduler's")
    assert all(r.ok for i, r in enumerate(results_sent) if i != 2)


def test_a_quiet_worker_drops_its_retry_notes_but_not_its_giving_up() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [str(BIN / "ash-worker"), "--scheduler", f"127.0.0.1:{port}", "--retry-for", "1"]
    loud = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    quiet = subprocess.run(
        [*cmd, "--quiet"], capture_output=True, text=True, timeout=60, check=False
    )
    assert loud.returncode == quiet.returncode == 3
    assert "retrying in" in loud.stderr
    assert "retrying in" not in quiet.stderr
    assert quiet.stderr.strip().endswith("unreachable for 1 s; giving up")


def test_a_scheduler_that_cannot_start_is_said_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "j.jsonl").write_text("garbage\n")  # not a journal: ash-scheduler refuses it
    got = run_ash(
        "tune",
        str(EXAMPLES / "iris.toml"),
        "--transport",
        "grpc",
        "--journal",
        "j.jsonl",
        "--workers",
        "1",
        "--quiet",
        cwd=tmp_path,
        timeout=120,
    )
    assert got.returncode == 2
    assert "not an ash journal" in got.stderr  # the scheduler's own line
    assert "ash-scheduler did not start (exit code 2; its error is printed above)" in got.stderr
