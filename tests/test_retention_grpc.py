"""Checkpoint retention end to end: a real journaled gRPC scheduler and ``ash-worker`` process,
the scheduler killed (-9) mid-study and restarted on the same journal. The checkpoint folder
holds only what the rule allows at every look, no promotion runs without its checkpoint, and
at the end only ``keep_best`` trials' files are left."""

from __future__ import annotations

import json
import re
import signal
import socket
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import grpc
import pytest
from test_grpc import RawSession

from ash.proto import ash_pb2 as pb
from ash.scheduler.audit import audit_for
from ash.scheduler.checkpoints import MemoryStore
from ash.scheduler.driver import DROP_BATCH, Driver
from ash.scheduler.journal import _read
from ash.scheduler.trace import read_trace
from ash.spec import load_spec
from helpers import Scheduler, results, worker

if sys.platform != "linux":  # pragma: no cover
    pytest.skip("process tests need Linux", allow_module_level=True)

TRAINER = """
import json, time

def fit(config, start, stop, state):
    done = 0.0 if state is None else json.loads(state)["done"]
    if start == 0 and stop > 1:
        raise RuntimeError(f"promotion to {stop} retrained from scratch: its checkpoint was gone")
    if done != start:
        raise RuntimeError(f"resumed from {done}, expected {start}")
    time.sleep(0.03)
    if config["x"] > 0.95:
        raise ValueError("a failing trial")
    loss = (config["x"] - 0.3) ** 2 + 1.0 / stop
    return {"loss": loss}, json.dumps({"done": stop, "pad": "x" * 1000}).encode()
"""

SPEC = """
[study]
name = "keep"
metric = "loss"
seed = 4
[asha]
min_resource = 1
max_resource = 9
reduction_factor = 3
max_trials = {max_trials}
[checkpoints]
keep_best = 2
[trainer]
type = "python"
entrypoint = "ret_trainer:fit"
[space]
x = {{ uniform = [0.0, 1.0] }}
"""

FILE = re.compile(r"t(\d+)-r(\d+)\.ckpt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def files(store: Path) -> list[tuple[int, int]]:
    out = []
    for p in store.iterdir():
        m = FILE.fullmatch(p.name)
        if m is not None:
            out.append((int(m.group(1)), int(m.group(2))))
    return out


def check_store(store: Path, max_trials: int, slack: int) -> None:
    """At most one file per trial (once deletions caught up) and no more than the rule's
    bound: floor(M_0/eta) candidates on each of rungs 0 and 1, keep_best at the top, plus the
    start states of promotions in flight and deletions not made yet (``slack``)."""
    got = files(store)
    trials = [t for t, _ in got]
    assert len(got) <= 2 * (max_trials // 3) + 2 + slack, sorted(got)
    assert len(trials) - len(set(trials)) <= slack, sorted(got)


def _finished(s: Scheduler, w: Any, out: Path, max_trials: int) -> tuple[dict[str, Any], str]:
    """The scheduler and its worker ended well with every trial, no promotion went without
    its state; the results and their errors, joined."""
    assert s.wait(timeout=120) == 0, s.proc.stderr.read() if s.proc.stderr else ""
    assert w.wait(timeout=60) == 0
    doc = results(out)
    assert len(doc["trials"]) == max_trials
    errors = " ".join(e["error"] for e in doc["errors"])
    assert "resumed from" not in errors and "retrained" not in errors, errors
    return doc, errors


def _top(doc: dict[str, Any], resource: float) -> list[tuple[float, int]]:
    """(value, trial) of the successful results at ``resource``, best (lowest) first."""
    return sorted(
        (r["value"], t["trial"])
        for t in doc["trials"]
        for r in t["results"]
        if r["resource"] == resource and r["value"] is not None
    )


def test_journaled_grpc_study_killed_and_resumed_keeps_only_allowed_checkpoints(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    max_trials = 60
    (tmp_path / "ret_trainer.py").write_text(TRAINER)
    spec = tmp_path / "study.toml"
    spec.write_text(SPEC.format(max_trials=max_trials))
    store = tmp_path / "j.jsonl.ckpt"
    port = free_port()
    args = ("--journal", "j.jsonl", "--trace", "t.jsonl", "--out", "out", "--lease", "10")
    s = Scheduler(spec, tmp_path, *args, port=port)
    cleanup.append(s)
    w = worker(s.target, tmp_path, "w", "--retry-for", "60")
    cleanup.append(w)
    trace = tmp_path / "t.jsonl"
    deadline = time.monotonic() + 60
    peak = 0
    while not trace.exists() or trace.read_text().count('"result"') < 40:
        assert time.monotonic() < deadline, "the study made no progress"
        if store.exists():
            peak = max(peak, len(files(store)))
        time.sleep(0.05)
    s.kill()  # -9 mid-study: deletions queued after the last fsync never happened
    w.send_signal(signal.SIGKILL)  # and its worker: the restarted scheduler starts idle
    w.wait()
    check_store(store, max_trials, slack=8 + DROP_BATCH)  # a batch of deletions may wait
    (store / "t999-r1.ckpt").write_bytes(b"a stray state no journal record names")
    _, records, _, _ = _read(tmp_path / "j.jsonl")
    s = Scheduler(spec, tmp_path, *args, port=port)
    cleanup.append(s)
    # the resume cleaned what the crash left: exactly the checkpoints the rule keeps for the
    # journal's inputs are left (replayed here on a fresh driver), the stray file is gone
    replay = Driver(load_spec(spec), checkpoints=MemoryStore())
    replay.resume(records, 0)
    assert 0 < replay.results.n_results < max_trials
    expected = sorted((t, int(r)) for t, r in replay.retention.needed().items())
    assert sorted(files(store)) == expected
    check_store(store, max_trials, slack=0)
    w = worker(s.target, tmp_path, "w2", "--retry-for", "60")
    cleanup.append(w)
    doc, errors = _finished(s, w, tmp_path / "out", max_trials)
    assert "a failing trial" in errors  # failures were there to be ranked and dropped
    assert audit_for(read_trace(trace), load_spec(spec)) == []
    # keep_best = 2: the two best trials at the top rung keep their trained state, nothing else
    top = _top(doc, 9)
    assert sorted(files(store)) == sorted((trial, 9) for _, trial in top[:2])
    assert peak <= 2 * (max_trials // 3) + 2 + 8 + DROP_BATCH


def refs(store: Path) -> set[str]:
    """The shared files the store's .ref files name."""
    return {json.loads(p.read_text())[0] for p in store.glob("*.ref")}


@pytest.mark.parametrize("journal", [True, False])
def test_shared_folder_holds_only_the_states_the_rule_keeps(
    tmp_path: Path, cleanup: list[Any], journal: bool
) -> None:
    """--checkpoint-dir with every state by reference: the files of top-rung states outside
    keep_best and of a duplicate result are deleted when their result arrives, so at the end
    the shared folder holds the keep_best trials' states and nothing else (docs/checkpoints.md),
    with or without a journal."""
    max_trials = 45
    (tmp_path / "ret_trainer.py").write_text(TRAINER)
    spec = tmp_path / "study.toml"
    spec.write_text(SPEC.format(max_trials=max_trials).replace("keep_best = 2", "keep_best = 1"))
    shared = tmp_path / "shared"
    shared.mkdir()
    args = ["--out", "out", "--checkpoint-dir", str(shared), "--linger", "1"]
    if journal:
        args += ["--journal", "j.jsonl"]
    s = Scheduler(spec, tmp_path, *args)
    cleanup.append(s)
    with grpc.insecure_channel(s.target) as ch:  # a duplicate and a late result, by hand
        raw = RawSession(ch)
        raw.send(hello=pb.Hello(worker_id="raw", slots=1))
        raw.recv()
        job = raw.recv().assignment
        for name in ("first.ckpt", "again.ckpt"):
            (shared / name).write_bytes(b"state")
        for name in ("first.ckpt", "again.ckpt"):
            ck = pb.Checkpoint(ref=name, crc32=zlib.crc32(b"state"), size=5)
            raw.send(result=pb.Result(job_id=job.job_id, ok=True, value=9.0, checkpoint=ck))
        raw.recv()  # its next job: both results were taken (the second ignored)
        deadline = time.monotonic() + 10
        while (shared / "again.ckpt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not (shared / "again.ckpt").exists()  # the duplicate's file: nobody reads it
        assert (shared / "first.ckpt").exists()  # the recorded one: the trial's state
        raw.close()
    w = worker(
        s.target, tmp_path, "w", "--slots", "2", "--checkpoint-dir", str(shared), "--inline-mb", "0"
    )
    cleanup.append(w)
    doc, _ = _finished(s, w, tmp_path / "out", max_trials)
    top = _top(doc, 9)
    assert len(top) > 2  # top-rung states that are not kept were written
    kept = {t for _, t in top[:1]}
    left = sorted(p.name for p in shared.iterdir())
    assert {int(n[1:].split("-")[0]) for n in left} == kept, left
    assert all(re.fullmatch(r"t\d+-r9-j\d+\.ckpt", n) for n in left), left
    if journal:
        assert refs(tmp_path / "j.jsonl.ckpt") == set(left)
