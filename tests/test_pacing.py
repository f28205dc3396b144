"""``--prefetch auto``: the depth follows the jobs' length, and a real worker raises its
capacity for tiny jobs (and only then)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ash.worker.pacing import MAX_AHEAD, Pacing
from helpers import Scheduler, results, worker, write_study


def test_depth_follows_the_jobs() -> None:
    p = Pacing(slots=1)
    assert [p.observe(0.0001) for _ in range(3)] == [None, None, 1 + MAX_AHEAD]
    assert p.observe(0.0001) is None  # unchanged: nothing sent
    for _ in range(40):
        got = p.observe(1.0)
        if got is not None:
            break
    assert got == 1 and p.ahead == 0  # long jobs: nothing queued ahead
    slow = Pacing(slots=2)
    assert [slow.observe(0.2) for _ in range(5)] == [None] * 5  # never turned on
    mid = Pacing(slots=2)
    assert [mid.observe(0.005) for _ in range(3)][-1] == 2 + 8  # 20 ms of 5 ms jobs per slot


def test_a_worker_prefetches_tiny_jobs_by_default(tmp_path: Path, cleanup: list[Any]) -> None:
    spec = write_study(tmp_path, max_trials=60)
    spec.write_text(spec.read_text().replace(', "raise", "nan", "crash", "slow"', ""))
    s = Scheduler(spec, tmp_path, "--out", "out", "--trace", "t.jsonl", "--linger", "1")
    cleanup.append(s)
    w = worker(s.target, tmp_path, "w")
    cleanup.append(w)
    assert s.wait() == 0
    assert w.wait(timeout=60) == 0
    events = [e for e in (tmp_path / "t.jsonl").read_text().splitlines() if '"assign"' in e]
    assert len(results(tmp_path / "out")["trials"]) == 60
    # with prefetch on, assignments run ahead of results: more than one job in flight at once
    import json

    inflight = peak = 0
    for line in (tmp_path / "t.jsonl").read_text().splitlines():
        e = json.loads(line)
        inflight += {"assign": 1, "result": -1}.get(e["event"], 0)
        peak = max(peak, inflight)
    assert peak > 1 and len(events) >= 60
