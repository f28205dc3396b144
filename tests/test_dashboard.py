"""The dashboard without a browser: the view model (rung ladder, thresholds, deltas, caps), the
importance estimate on a case with a known answer, the study sources (results.json, trace,
journal, folder), the server's token rule, and report.html carrying the same views."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import random
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ash.dashboard import model as model_mod
from ash.dashboard.importance import importance
from ash.dashboard.model import StudyModel
from ash.dashboard.sources import find_studies, load_path
from ash.scheduler.driver import open_study
from helpers import make_spec, run_ash, serve_dashboard

pytest.importorskip("aiohttp")


def test_importance_finds_the_parameter_that_matters() -> None:
    rng = np.random.default_rng(0)
    configs = [
        {
            "lr": float(10 ** rng.uniform(-4, 0)),
            "noise": float(rng.uniform()),
            "act": str(rng.choice(["relu", "tanh", "gelu"])),
        }
        for _ in range(400)
    ]
    values = [(np.log10(c["lr"]) + 2) ** 2 + 0.05 * rng.normal() for c in configs]
    imp = importance(configs, values, ["lr", "noise", "act"])
    assert imp["lr"] > 0.8, imp
    assert imp["noise"] < 0.05 and imp["act"] < 0.05, imp
    # a categorical that alone decides the metric
    values = [(1.0 if c["act"] == "gelu" else 0.0) + 0.05 * rng.normal() for c in configs]
    imp = importance(configs, values, ["lr", "noise", "act"])
    assert imp["act"] > 0.9 and imp["lr"] < 0.05 and imp["noise"] < 0.05, imp
    assert importance(configs[:5], values[:5], ["lr"]) == {}  # too little to say


def _events(n_trials: int, eta: int = 3) -> list[dict[str, Any]]:
    """A hand-made study: n trials at rung 0 (value = trial id / 10), the top third promoted."""
    evs: list[dict[str, Any]] = []
    job = 0
    t = 0.0
    for trial in range(n_trials):
        job += 1
        t += 1
        cfg = {"x": trial / 10, "k": "a" if trial % 2 else "b"}
        evs.append(
            {
                "event": "assign",
                "t": t,
                "trial": trial,
                "rung": 0,
                "bracket": 0,
                "resource": 1,
                "worker": f"w{trial % 2}",
                "job": job,
                "threads": 2,
                "config": cfg,
            }
        )
        evs.append(
            {
                "event": "result",
                "t": t + 0.5,
                "trial": trial,
                "rung": 0,
                "bracket": 0,
                "value": trial / 10,
                "job": job,
            }
        )
    for trial in range(n_trials // eta):
        job += 1
        t += 1
        evs.append(
            {
                "event": "assign",
                "t": t,
                "trial": trial,
                "rung": 1,
                "bracket": 0,
                "resource": 3,
                "worker": "w0",
                "job": job,
            }
        )
    return evs


def test_rung_ladder_threshold_promotions_and_deltas() -> None:
    m = StudyModel("s", "loss", "min")
    for ev in _events(9):
        m.apply(ev)
    rungs = {(r["bracket"], r["rung"]): r for r in m.rungs()}
    r0 = rungs[(0, 0)]
    assert (r0["results"], r0["promoted"], r0["resource"]) == (9, 3, 1)
    assert r0["threshold"] == pytest.approx(0.2)  # the 3rd best of 9 (floor(9/3) = 3)
    assert r0["best"] == 0.0
    assert m.eta == 3 and m.status()["running"] == 3
    full = m.view()
    assert full["kind"] == "full" and len(full["trials"]) == 9
    assert [w["id"] for w in full["workers"]] == ["w0", "w1"]
    assert {(s[0], s[5]) for s in full["segments"]} == {("w0", "ok"), ("w1", "ok")}
    first = m.delta()
    assert first is not None and m.delta() is None  # nothing new: no message at all
    m.apply(
        {
            "event": "result",
            "t": 20.0,
            "trial": 0,
            "rung": 1,
            "bracket": 0,
            "value": 0.05,
            "job": 10,
        }
    )
    d = m.delta()
    assert d is not None
    assert [t["id"] for t in d["trials"]] == [0]  # only what changed
    assert d["segments"] == [["w0", 10.0, 20.0, 0, 1, "ok"]]
    assert d["series"][-1][:3] == [20.0, 0.05, 0]  # the best moved to the higher resource
    assert d["points"] == [[20.0, 0.05, 1]]


def test_max_mode_threshold_and_failures() -> None:
    m = StudyModel("s", "acc", "max")
    for i, v in enumerate([0.1, 0.9, 0.5, None, 0.7, 0.3]):
        m.apply(
            {
                "event": "assign",
                "t": i,
                "trial": i,
                "rung": 0,
                "resource": 1,
                "job": i + 1,
                "worker": "w",
            }
        )
        m.apply(
            {
                "event": "result",
                "t": i,
                "trial": i,
                "rung": 0,
                "value": v,
                "job": i + 1,
                "error": "Traceback ...\nValueError: boom" if v is None else None,
            }
        )
    m.eta = 3
    (r0,) = m.rungs()
    assert r0["results"] == 6 and r0["failed"] == 1
    assert r0["threshold"] == 0.7  # floor(6/3) = 2: the 2nd best of a max study
    assert m.errors[0]["trial"] == 3 and "ValueError: boom" in m.errors[0]["error"]


def test_curves_are_capped_highest_rungs_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_mod, "CURVE_CAP", 5)
    m = StudyModel("s", "loss", "min")
    for ev in _events(12):
        m.apply(ev)
    # 12 trials, 5 shown; the 4 that went to rung 1 are all among them
    assert len(m.shown) == 5
    assert {0, 1, 2, 3} <= m.shown
    view = m.view()
    assert len(view["trials"]) == 5 and view["status"]["trials"] == 12


def test_rung_scores_order_statistic_matches_a_sorted_list() -> None:
    rng = random.Random(7)
    rs = model_mod.RungScores()
    seen: list[float] = []
    for i in range(2000):
        x = round(rng.gauss(0, 1), 3)  # ties too
        rs.add(x)
        seen.append(x)
        if i % 7 == 0:  # asked now and then, k moving both ways, as failures and eta move it
            srt = sorted(seen)
            k = rng.choice([len(seen) // 3, len(seen) // 2, 1, len(seen), len(seen) + 1, 0])
            assert rs.kth(k) == (srt[k - 1] if 0 < k <= len(srt) else None)
            assert rs.best == srt[0] and len(rs) == len(srt)


def test_importance_is_estimated_again_only_when_its_input_grew() -> None:
    m = StudyModel("s", "loss", "min")
    assert not m.importance_due()  # no results yet
    for ev in _events(40):
        m.apply(ev)
    assert m.importance_due()  # none yet
    got = m.importance_input()
    assert got is not None and got[2] == 1 and len(got[1]) == 40
    assert not m.importance_due()  # just made
    feed = _events(60)[80:120]  # trials 40..59 at rung 0 (values 4.0 .. 5.9)
    for ev in feed[:6]:
        m.apply(ev)  # 3 more results: 43 < 40 * 1.1 + 1
    assert not m.importance_due()
    for ev in feed[6:]:
        m.apply(ev)  # 60 results: a tenth more and then some
    assert m.importance_due()
    m.importance_input()
    m.finish()
    assert not m.importance_due()  # the study ended with nothing it has not seen
    m.apply({**feed[-1], "trial": 99, "job": 999, "value": 0.5})  # a late result
    assert m.importance_due()


def _study_on_journal(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    spec = make_spec("asha", max_trials=30, max_attempts=2)
    journal = tmp_path / "study.journal"
    driver = open_study(spec, journal=journal, trace=tmp_path / "trace.jsonl").driver
    rng = random.Random(1)
    inflight: list[int] = []
    for _ in range(300):
        if rng.random() < 0.5 or not inflight:
            a = driver.request(f"w{rng.randrange(3)}")
            if a is not None:
                inflight.append(a.job.job_id)
        else:
            job = inflight.pop(rng.randrange(len(inflight)))
            fail = rng.random() < 0.1
            v = None if fail else rng.random()
            driver.complete(
                job,
                v,
                {} if fail else {"loss": v},
                b"s",
                "Traceback (most recent call last):\nRuntimeError: x" if fail else None,
            )
        driver.sync()
    doc = driver.results.to_json()
    driver.close()
    return journal, doc


def test_journal_replays_read_only_to_the_same_study(tmp_path: Path) -> None:
    journal, doc = _study_on_journal(tmp_path)
    before = journal.read_bytes()
    m = load_path(journal)
    assert journal.read_bytes() == before  # read-only
    n_results = sum(len(t["results"]) for t in doc["trials"])
    assert m.n_results == n_results and len(m.trials) == len(doc["trials"])
    assert m.clock == "seconds" and m.segments and m.errors
    assert "RuntimeError: x" in m.errors[0]["error"]
    for t in doc["trials"]:
        assert m.trials[t["trial"]].config == t["config"]
    assert m.best is not None and doc["best"] is not None
    assert m.best["trial"] == doc["best"]["trial"]


def test_a_replayed_journal_gives_every_failure_its_own_error(tmp_path: Path) -> None:
    """Each failed result carries the error it had when it happened, however many came after
    (the lookup used to run after the whole replay, over the last 100 errors only)."""
    spec = make_spec("asha", max_trials=150)
    journal = tmp_path / "study.journal"
    driver = open_study(spec, journal=journal).driver
    for _ in range(150):
        a = driver.request("w")
        assert a is not None and a.job.rung == 0
        driver.complete(a.job.job_id, None, {}, None, f"RuntimeError: trial {a.job.trial}")
    driver.sync()
    driver.close()
    m = load_path(journal)
    assert len(m.errors) == 150
    assert [e["error"] for e in m.errors] == [f"RuntimeError: trial {e['trial']}" for e in m.errors]


def test_a_burst_of_failures_in_one_watch_batch_keeps_each_error(tmp_path: Path) -> None:
    """A detailed watcher's events are enriched as they happen: 150 failures inside one batch
    window each carry their own error (looked up at send time, only the last 100 errors were
    searched, so the first 50 came without one)."""
    import asyncio

    from ash.scheduler.service import SchedulerService, ServiceConfig

    driver = open_study(make_spec("asha", max_trials=150)).driver
    service = SchedulerService(driver, ServiceConfig(spec_toml=""))

    async def main() -> list[dict[str, Any]]:
        stream = service.watch_batches(detail=True, window=0.2)
        snapshot = await anext(stream)
        assert snapshot[0]["event"] == "snapshot"
        nxt = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)  # the watcher waits for its first event
        for _ in range(150):  # all inside one window
            a = driver.request("w")
            assert a is not None
            driver.complete(a.job.job_id, None, {}, None, f"RuntimeError: trial {a.job.trial}")
        batch: list[dict[str, Any]] = await asyncio.wait_for(nxt, 10)
        await stream.aclose()
        return batch

    batch = asyncio.run(main())
    failed = [e for e in batch if e["event"] == "result"]
    assert len(failed) == 150
    assert [e.get("error") for e in failed] == [f"RuntimeError: trial {e['trial']}" for e in failed]
    assert all("config" in e for e in batch if e["event"] == "assign")
    service.close()


def test_results_json_with_and_without_its_trace(tmp_path: Path) -> None:
    from ash.scheduler.driver import replay_read_only

    journal, doc = _study_on_journal(tmp_path)
    doc["spec"] = replay_read_only(journal)[1]  # as write_outcome adds it to results.json
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(doc))
    alone = load_path(out)
    assert alone.clock == "order" and not alone.segments
    # the view's algorithm and ladder come from the study's own spec
    assert (alone.algorithm, alone.max_trials, alone.eta) == ("asha", 30, 3.0)
    assert alone.n_results == sum(len(t["results"]) for t in doc["trials"])
    (out / "trace.jsonl").write_text((tmp_path / "trace.jsonl").read_text())
    timed = load_path(out / "results.json")
    assert timed.clock == "seconds" and timed.segments and timed.n_results == alone.n_results
    assert {p for t in timed.trials.values() for p in t.config} == {"x", "k"}
    assert set(find_studies(tmp_path)) == {out, journal}  # a results folder and a journal


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_server_serves_views_and_refuses_a_wrong_token(tmp_path: Path) -> None:
    _, doc = _study_on_journal(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(doc))
    tok = tmp_path / "tok"
    tok.write_text("s3cret\n")
    proc, url = serve_dashboard(str(out), "--listen", "127.0.0.1:0", "--token-file", str(tok))
    try:
        assert _get(url + "api/studies")[0] == 401
        code, text = _get(url + "api/studies", "wrong")
        assert code == 401 and "wrong token" in text
        assert _get(url + "?token=wrong")[0] == 401
        code, text = _get(url + "api/studies", "s3cret")
        assert code == 200
        (study,) = json.loads(text)
        code, text = _get(url + f"api/study/{study['id']}", "s3cret")
        view = json.loads(text)
        assert view["kind"] == "full" and view["status"]["results"] == sum(
            len(t["results"]) for t in doc["trials"]
        )
        # every trial on demand, not only those the page draws; behind the token too
        assert _get(url + f"api/study/{study['id']}/trials.csv")[0] == 401
        code, text = _get(url + f"api/study/{study['id']}/trials.csv", "s3cret")
        rows = list(csv.DictReader(io.StringIO(text)))
        assert code == 200 and len(rows) == len(doc["trials"])
        by_id = {int(r["trial"]): r for r in rows}
        for t in doc["trials"]:
            row = by_id[t["trial"]]
            ok = [r for r in t["results"] if r["value"] is not None]
            assert row["status"] == t["status"]
            assert row["loss"] == (str(max(ok, key=lambda r: r["resource"])["value"]) if ok else "")
            assert all(row[k] == str(v) for k, v in t["config"].items())
        code, js = _get(url + "static/plotly.min.js", "s3cret")
        assert code == 200 and "plotly.js v" in js[:300]
        assert _get(url + "static/..%2Fserver.py", "s3cret")[0] == 404
        assert _get(url + "api/study/nope", "s3cret")[0] == 404
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


def _raw_get(url: str, headers: bytes) -> int:
    """The status of a GET sent byte for byte (headers a client library would refuse)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(b"GET /api/studies HTTP/1.1\r\n" + headers + b"Connection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def test_a_rebound_host_and_undecodable_tokens_are_refused(tmp_path: Path) -> None:
    """Without a token only a loopback Host is answered (a page on a DNS name rebound to
    127.0.0.1 would be same-origin with the dashboard); with one, a token that is not UTF-8
    is a wrong token (401), not a server error."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text(
        json.dumps({"study": "s", "metric": "m", "mode": "min", "trials": []})
    )
    proc, url = serve_dashboard(str(out), "--listen", "127.0.0.1:0")
    port = url.rstrip("/").rsplit(":", 1)[1].encode()
    try:
        assert _raw_get(url, b"Host: rebind.attacker.example:" + port + b"\r\n") == 403
        assert _raw_get(url, b"Host: 10.0.0.1:" + port + b"\r\n") == 403
        for host in (b"localhost", b"127.0.0.1", b"127.0.0.1:" + port, b"[::1]:" + port):
            assert _raw_get(url, b"Host: " + host + b"\r\n") == 200, host
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    tok = tmp_path / "tok"
    tok.write_text("s3cret\n")
    proc, url = serve_dashboard(str(out), "--listen", "127.0.0.1:0", "--token-file", str(tok))
    try:
        host = b"Host: rebind.attacker.example\r\n"  # with a token the token decides
        assert _raw_get(url, host + b"Authorization: Bearer s3cret\r\n") == 200
        assert _raw_get(url, host + b"Authorization: Bearer \xff\r\n") == 401
        assert _raw_get(url, host + b"Cookie: ash_token=\xff\r\n") == 401
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
        err = proc.stderr.read() if proc.stderr else ""
    assert "Traceback" not in err, err


def test_off_loopback_needs_a_token(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text(
        json.dumps({"study": "s", "metric": "m", "mode": "min", "trials": []})
    )
    proc = run_ash("dashboard", str(out), "--listen", "0.0.0.0:0", timeout=60)
    assert proc.returncode == 2 and "needs a token" in proc.stderr
    proc = run_ash("dashboard", str(tmp_path / "missing"), timeout=60)
    assert proc.returncode == 2 and "no such file" in proc.stderr
    (out / "results.json").write_text("{not json")
    proc = run_ash("dashboard", str(out), timeout=60)
    assert proc.returncode == 2 and "results.json: not JSON" in proc.stderr


def test_report_html_embeds_the_same_views(tmp_path: Path) -> None:
    from ash.report import write_report

    _, doc = _study_on_journal(tmp_path)
    path = write_report(doc, tmp_path)
    text = path.read_text()
    assert "plotly.js v" in text and "applyMessage" in text  # the page's own code, inlined
    assert "<script src=" not in text and "http://" not in text.split("<script")[0]
    data = re.search(r'<script type="application/json" id="ash-data">(.*?)</script>', text, re.S)
    assert data is not None
    view = json.loads(data.group(1))
    assert view["kind"] == "full" and view["status"]["results"] == sum(
        len(t["results"]) for t in doc["trials"]
    )


def test_detailed_watch_stream_has_a_snapshot_configs_and_errors(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    import grpc

    from ash.link.wire import scheduler_stub
    from ash.proto import ash_pb2 as pb
    from helpers import Scheduler, worker, write_study

    spec = write_study(tmp_path, max_trials=12)
    s = Scheduler(spec, tmp_path, "--linger", "0")
    cleanup.append(s)
    with grpc.insecure_channel(s.target) as channel:
        stub = scheduler_stub(channel)
        plain = stub.Watch(pb.WatchRequest(), timeout=60)
        detailed = stub.Watch(pb.WatchRequest(detail=True), timeout=60)
        batched = stub.Watch(pb.WatchRequest(detail=True, batch=True), timeout=60)
        events = iter(detailed)
        snap = json.loads(next(events).json)
        assert snap["event"] == "snapshot" and snap["results"]["trials"] == []
        assert snap["schedule"]["reduction_factor"] == 3 and snap["finished"] is False
        cleanup.append(worker(s.target, tmp_path, "w1"))
        rest = [json.loads(e.json) for e in events]  # until the study is over
        trace = [json.loads(e.json) for e in plain]
        got = list(batched)
    messages = [list(m.events) for m in got]
    assert all(messages) and not any(m.json for m in got)  # batches only, never empty
    together = [json.loads(line) for m in messages for line in m]
    assert together[0]["event"] == "snapshot" and len(messages[0]) == 1
    assert [e["event"] for e in together[1:]] == [e["event"] for e in rest]  # the same, in order
    assert len(messages) < len(together) - 1  # bursts came in one message each
    assert rest[-1]["event"] == "finished"  # the study's end, said (a dropped watcher's is not)
    rest = rest[:-1]
    assert [e["event"] for e in rest] == [e["event"] for e in trace]  # the same events
    assigns = [e for e in rest if e["event"] == "assign"]
    assert all(set(e["config"]) == {"x", "mode"} for e in assigns)
    assert all("config" not in e for e in trace)  # the plain stream is the trace, unchanged
    ok = [e for e in rest if e["event"] == "result" and e["value"] is not None]
    assert ok and all("loss" in e["metrics"] for e in ok)
    failed = [e for e in rest if e["event"] == "result" and e["value"] is None]
    assert failed and all(e.get("error") for e in failed)
    assert s.wait() == 0


def test_a_folder_of_studies_is_a_list(tmp_path: Path) -> None:
    journal, doc = _study_on_journal(tmp_path)
    for name in ("a", "b"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "results.json").write_text(json.dumps(doc))
    journal.rename(tmp_path / "runs" / "study.journal")
    proc, url = serve_dashboard(str(tmp_path / "runs"), "--listen", "127.0.0.1:0")
    try:
        code, text = _get(url + "api/studies")
        studies = json.loads(text)
        assert code == 200 and len(studies) == 3
        assert sorted(s["id"] for s in studies) == ["t", "t-2", "t-3"]  # same study name, thrice
        sources = sorted(s["source"] for s in studies)
        assert sources[0].startswith("/") and any(s.startswith("journal ") for s in sources)
        for s in studies:
            view = json.loads(_get(url + f"api/study/{s['id']}")[1])
            assert view["status"]["trials"] == len(doc["trials"])
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


def test_a_damaged_study_under_a_folder_is_listed_with_its_error(tmp_path: Path) -> None:
    """One damaged study under a folder no longer keeps the others from being served: it is
    listed with its one-line error, read again once fixed; given as PATH it is still refused."""
    journal, doc = _study_on_journal(tmp_path)
    runs = tmp_path / "runs"
    for name in ("good", "bad", "deep/broken", "shape"):
        (runs / name).mkdir(parents=True)
    (runs / "good" / "results.json").write_text(json.dumps(doc))
    (runs / "shape" / "results.json").write_text('{"trials": [1]}')  # JSON of the wrong shape
    (runs / "bad" / "results.json").write_text('{"trials": "x"}')
    (runs / "deep" / "broken" / "results.json").write_text("{not json")
    raw = bytearray(journal.read_bytes())  # a journal with one flipped byte (in its last record)
    raw[-10] ^= 0x01
    (runs / "flipped.journal").write_bytes(bytes(raw))
    proc, url = serve_dashboard(str(runs), "--listen", "127.0.0.1:0")
    try:
        code, text = _get(url + "api/studies")
        assert code == 200
        studies = {s["source"]: s for s in json.loads(text)}
        good = studies.pop(str(runs / "good" / "results.json"))
        assert good["status"]["error"] is None and good["status"]["trials"] == len(doc["trials"])
        bad = studies[str(runs / "bad")]
        assert bad["study"] == "bad" and bad["status"]["trials"] == 0
        assert bad["status"]["error"] == (
            f"{runs / 'bad' / 'results.json'}: not an ash results.json (no 'trials' list)"
        )
        broken = studies[str(runs / "deep" / "broken")]
        assert "results.json: not JSON" in broken["status"]["error"]
        shape = studies[str(runs / "shape")]["status"]["error"]
        assert shape.startswith(f"{runs / 'shape' / 'results.json'}: not an ash results.json (")
        assert "\n" not in bad["status"]["error"] + broken["status"]["error"] + shape
        code, text = _get(url + f"api/study/{bad['id']}")
        assert code == 200 and json.loads(text)["status"]["error"] == bad["status"]["error"]
        code, text = _get(url + f"api/study/{good['id']}")
        assert code == 200 and json.loads(text)["status"]["results"] == sum(
            len(t["results"]) for t in doc["trials"]
        )
        flipped = studies[str(runs / "flipped.journal")]
        assert flipped["study"] == "flipped" and flipped["status"]["error"].startswith(
            f"{runs / 'flipped.journal'}: line "
        )
        assert "is damaged (checksum mismatch)" in flipped["status"]["error"]
        # the damaged study fixed on disk is listed as it now is
        (runs / "bad" / "results.json").write_text(json.dumps(doc))
        studies = {s["source"]: s for s in json.loads(_get(url + "api/studies")[1])}
        fixed = studies[str(runs / "bad" / "results.json")]
        assert fixed["status"]["error"] is None and fixed["status"]["trials"] == len(doc["trials"])
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
        assert proc.stderr is not None
        err = proc.stderr.read()
    assert f"warning: {runs / 'bad' / 'results.json'}: not an ash results.json" in err
    assert "Traceback" not in err
    # the PATH given, when it is one bad study, is still refused (docs/dashboard.md)
    (runs / "deep" / "broken" / "results.json").write_text('{"trials": "x"}')
    for given in (
        runs / "deep" / "broken",
        runs / "deep" / "broken" / "results.json",
        runs / "shape",
    ):
        proc2 = run_ash("dashboard", str(given), "--listen", "127.0.0.1:0", timeout=60)
        assert proc2.returncode == 2 and "not an ash results.json" in proc2.stderr
        assert "Traceback" not in proc2.stderr


def test_remote_dashboard_follows_a_scheduler_across_a_restart(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    import signal
    import socket
    import time

    from helpers import Scheduler, results, worker, write_study

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = write_study(tmp_path, max_trials=30)
    args = ("--out", "out", "--journal", "j.jsonl", "--linger", "0")
    s = Scheduler(spec, tmp_path, *args, port=port)
    cleanup.append(s)
    proc, url = serve_dashboard("--scheduler", s.target, "--listen", "127.0.0.1:0")
    cleanup.append(proc)

    def view() -> dict[str, Any]:
        got: dict[str, Any] = json.loads(_get(url + "api/study/study")[1])
        return got

    w = worker(s.target, tmp_path, "w1", "--retry-for", "60", env={"SLEEP": "0.05"})
    cleanup.append(w)
    deadline = time.monotonic() + 60
    while view()["status"]["results"] < 10 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert view()["status"]["results"] >= 10
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait()
    deadline = time.monotonic() + 30
    while "unreachable" not in str(view()["status"]["error"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "unreachable" in str(view()["status"]["error"])  # the page says so
    s = Scheduler(spec, tmp_path, *args, port=port)  # resumes from its journal
    cleanup.append(s)
    assert s.wait() == 0
    doc = results(tmp_path / "out")
    n = sum(len(t["results"]) for t in doc["trials"])
    deadline = time.monotonic() + 30
    while not view()["status"]["finished"] and time.monotonic() < deadline:
        time.sleep(0.1)
    final = view()
    assert final["status"]["finished"] and final["status"]["error"] is None
    assert final["status"]["results"] == n  # the snapshot after the restart holds everything
    assert final["status"]["trials"] == len(doc["trials"])
    # the results from before the restart came back with their own times, not all at the
    # snapshot's (the history plot of a dashboard that joins late); results.json has none
    first = sorted(p[0] for p in final["points"])[:10]
    assert len(set(first)) == 10
    assert all("t" not in r for t in doc["trials"] for r in t["results"])
    proc.terminate()
    assert proc.wait(timeout=20) == 0


def test_a_watcher_reads_an_older_scheduler_and_refuses_a_bad_event() -> None:
    """``ash dashboard --scheduler`` asks for batches; a scheduler that predates them sends one
    event per message (``json``), which reads the same; a large study's snapshot (over gRPC's
    default 4 MB) gets through; an event that is not JSON is an error of that stream (the
    dashboard says so and opens it again), not a crash."""
    import asyncio

    import grpc

    from ash.dashboard.sources import StreamError, follow, watch_batches
    from ash.link.wire import server_options
    from ash.proto import ash_pb2 as pb
    from ash.proto import ash_pb2_grpc as pb_grpc

    lines = [
        json.dumps({"event": "assign", "trial": 0, "rung": 0, "job": 1, "t": 0.1}),
        json.dumps({"event": "result", "trial": 0, "rung": 0, "job": 1, "value": 0.5, "t": 0.2}),
    ]

    big = {"event": "snapshot", "pad": "x" * (6 << 20)}  # over gRPC's default 4 MB

    class Old(pb_grpc.SchedulerServicer):
        last = json.dumps({"event": "finished"})

        async def Watch(self, request: Any, context: Any) -> Any:
            assert request.batch and request.detail
            yield pb.StudyEvent(json=json.dumps(big))  # a large study's snapshot
            for line in lines:
                yield pb.StudyEvent(json=line)
            yield pb.StudyEvent(json=Old.last)

    async def run() -> tuple[list[list[dict[str, Any]]], list[StudyModel], list[str]]:
        server = grpc.aio.server(options=server_options(1 << 20))  # as ash-scheduler's
        pb_grpc.add_SchedulerServicer_to_server(Old(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            address = f"127.0.0.1:{port}"
            got = [b async for b in watch_batches(address, None)]
            for last, why in (("{not json", "not JSON"), ("[1, 2]", r"a non-event: \[1, 2\]")):
                Old.last = last
                with pytest.raises(StreamError, match=why):
                    async for _ in watch_batches(address, None):
                        pass
            models: list[StudyModel] = []
            said: list[str] = []
            for last in ("{not json", json.dumps({"event": "result", "t": 1.0})):  # no trial
                Old.last = last
                model = StudyModel()
                task = asyncio.ensure_future(
                    follow(
                        model,
                        lambda: watch_batches(address, None),
                        retry_s=0.05,
                        on_error=said.append,
                    )
                )
                deadline = asyncio.get_running_loop().time() + 20
                while len(said) < 2 * len(models) + 2 and not task.done():  # twice: it retries
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.01)
                assert not task.done()  # the feed goes on: it says why and opens it again
                task.cancel()
                models.append(model)
            return got, models, said
        finally:
            await server.stop(None)

    got, models, said = asyncio.run(run())
    assert [[e["event"] for e in b] for b in got] == [
        ["snapshot"],
        ["assign"],
        ["result"],
        ["finished"],
    ]
    assert got[0][0] == big
    assert "not JSON" in said[0] and "not JSON" in (models[0].error or "")
    assert "cannot read (KeyError: 'trial')" in said[-1] and '"event": "result"' in said[-1]
    assert "cannot read" in (models[1].error or "")
    assert (models[1].error or "").endswith("retrying in 0.1 s")  # the second wait: twice as long
    assert all(m.n_results == 1 for m in models)  # what came before the bad event was kept


def test_report_images_leave_the_callers_matplotlib_alone(tmp_path: Path) -> None:
    """curves.png and rungs.png are drawn without pyplot: a notebook's backend (here "pdf")
    and its pyplot state are what they were before ``ash.tune`` wrote its report."""
    pytest.importorskip("matplotlib")
    import sys

    _, doc = _study_on_journal(tmp_path)
    (tmp_path / "doc.json").write_text(json.dumps(doc))
    code = (
        "import json, sys, matplotlib\n"
        "from pathlib import Path\n"
        "matplotlib.use('pdf')\n"
        "from ash.report import write_report\n"
        f"out = Path({str(tmp_path)!r})\n"
        "write_report(json.loads((out / 'doc.json').read_text()), out)\n"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert proc.stdout.split() == ["pdf", "False"]
    for name in ("curves.png", "rungs.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_density_counts_every_result_once_on_a_robust_value_axis() -> None:
    from ash.dashboard.density import COLUMNS, ROWS, Density

    rng = random.Random(5)
    d = Density()
    assert d.grid() is None
    values = [10 ** rng.uniform(-3, 0) for _ in range(5000)] + [1e9] * 10  # 10 diverged
    for i, v in enumerate(values):
        d.add(float(i), v)
    d.add(1.0, math.nan)  # not a value: not counted
    g = d.grid(t_end=9000.0)
    assert g is not None and g["n"] == len(values) == len(d)
    assert len(g["z"]) == ROWS and all(len(row) == COLUMNS for row in g["z"])
    drawn = sum(map(sum, g["z"]))
    assert drawn + g["outside"] == g["n"] and 0 < g["outside"] <= 0.02 * g["n"] + 1
    assert g["log"] and g["y"][-1] < 1e9  # three decades: log rows; the diverged ones outside
    assert g["x"][0] == 0.0 and g["x"][-1] == 9000.0  # the time axis runs to the study's clock
    same = Density()
    for i in range(3000):
        same.add(float(i), 0.5)
    g = same.grid()
    assert g is not None and not g["log"] and g["outside"] == 0
    assert g["y"][0] < 0.5 < g["y"][-1] and sum(map(sum, g["z"])) == 3000
    for values in (
        [1234.5671 + 1e-12 * i for i in range(3000)],  # a spread the edges cannot print
        [-5.0 + 0.001 * i for i in range(3000)],  # negative: linear rows
        [(-1) ** i * 1e308 for i in range(3000)],  # the float range's ends
    ):
        d = Density()
        for i, v in enumerate(values):
            d.add(float(i), v)
        g = d.grid()
        if g is None:  # no grid rather than one that cannot be drawn or sent as JSON
            assert abs(values[0]) > 1e300
            continue
        json.dumps(g, allow_nan=False)
        assert len(set(g["y"])) == ROWS + 1 and not g["log"]  # strictly rising edges
        assert sum(map(sum, g["z"])) + g["outside"] == 3000


def test_model_sends_the_density_only_past_the_points_and_at_most_every_few_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    m = StudyModel("s", "loss", "min")

    def results(start: int, n: int) -> None:
        for i in range(start, start + n):
            m.apply({"event": "assign", "trial": i, "rung": 0, "job": i, "t": float(i)})
            m.apply(
                {
                    "event": "result",
                    "trial": i,
                    "rung": 0,
                    "job": i,
                    "value": 1.0 / (i + 1),
                    "t": float(i),
                }
            )

    results(0, model_mod.POINTS_CAP)
    assert m.view()["density"] is None  # every result is a point: no grid
    results(model_mod.POINTS_CAP, 10)
    assert m.view()["density"]["n"] == model_mod.POINTS_CAP + 10
    m.delta()
    monkeypatch.setattr(model_mod, "DENSITY_S", 3600.0)
    results(5000, 5)
    assert "density" not in (m.delta() or {})  # sent a moment ago
    monkeypatch.setattr(model_mod, "DENSITY_S", 0.0)
    results(6000, 5)
    got = m.delta()
    assert got is not None and got["density"]["n"] == model_mod.POINTS_CAP + 20
    assert not m.changed() and m.delta() is None  # nothing new since
    monkeypatch.setattr(model_mod, "DENSITY_S", 3600.0)
    results(7000, 5)
    m.delta()  # the results went out as points; their grid is due later
    monkeypatch.setattr(model_mod, "DENSITY_S", 0.0)
    assert m.changed()  # a grid still owed is a change, though no result came since
    assert m.delta()["density"]["n"] == model_mod.POINTS_CAP + 25


# -- intermediate reports (ctx.report) on the curves ------------------------------------------


def _loss(x: float, step: float) -> float:
    return (x - 0.3) ** 2 + 1.0 / step


def _study_with_reports(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A journaled study whose jobs report each step (and a NaN now and then): one job lost
    after reporting, retried; one trial's reports are only of another metric."""
    spec = make_spec("asha", max_trials=12, max_resource=9)
    journal = tmp_path / "study.journal"
    driver = open_study(spec, journal=journal).driver
    lost = False
    while (a := driver.request("w")) is not None:
        job = a.job
        x = float(job.config["x"])
        steps = range(int(job.start) + 1, int(job.stop) + 1)
        if job.trial == 5:
            assert driver.report(job.job_id, [(s, {"acc": 0.5}) for s in steps])
        else:
            reports = [(s, {"loss": math.nan if s == 2 else _loss(x, s)}) for s in steps]
            assert driver.report(job.job_id, reports)
        if job.rung == 1 and not lost:
            lost = True
            assert driver.report(job.job_id, [(job.stop + 1, {"loss": 9.0})])  # beyond: dropped
            driver.lose(job.job_id, why="gone")
            continue
        driver.complete(job.job_id, _loss(x, job.stop), {"loss": _loss(x, job.stop)})
        driver.sync()
    assert lost
    doc = driver.results.to_json()
    driver.close()
    return journal, doc


def _curves(doc: dict[str, Any]) -> dict[int, list[tuple[float, float]]]:
    """Each trial's finite ``loss`` reports in results.json, as the model keeps them."""
    return {
        t["trial"]: [
            (float(r["step"]), r["metrics"]["loss"])
            for r in t.get("reports", [])
            if isinstance(r["metrics"].get("loss"), float)
        ]
        for t in doc["trials"]
    }


def _check_curves(view: dict[str, Any], doc: dict[str, Any]) -> None:
    want = _curves(doc)
    got = {t["id"]: [tuple(p) for p in t["r"]] for t in view["trials"]}
    assert got == want
    assert sum(len(c) for c in want.values()) >= 20 and want[5] == []
    assert all(2.0 not in [p[0] for p in c] for c in want.values())  # the NaNs left out


def test_curves_pass_through_the_reports_of_results_json_and_a_journal(tmp_path: Path) -> None:
    """results.json keeps the reports per trial, the journal as ``p`` records: both feed the
    curves (they were read from the results only, which never hold them), as does report.html;
    a lost job's reports are replaced by its retry's."""
    from ash.report import write_report

    journal, doc = _study_with_reports(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(doc))
    _check_curves(load_path(out).view(), doc)
    _check_curves(load_path(journal).view(), doc)
    page = write_report(doc, tmp_path).read_text()
    data = re.search(r'<script type="application/json" id="ash-data">(.*?)</script>', page, re.S)
    assert data is not None
    _check_curves(json.loads(data.group(1)), doc)


def test_reports_are_kept_bounded_for_the_shown_trials_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A shown trial keeps at most REPORTS_CAP reports, thinned evenly over its whole run; a
    trial whose curve is not shown keeps none; a step reported again replaces the curve from
    there (a retried job)."""
    monkeypatch.setattr(model_mod, "CURVE_CAP", 3)
    m = StudyModel("s", "loss", "min")

    def report(trial: int, steps: range, rung: int = 0) -> None:
        m.apply(
            {
                "event": "report",
                "t": 1.0,
                "trial": trial,
                "rung": rung,
                "bracket": 0,
                "job": trial,
                "reports": [{"step": s, "metrics": {"loss": 1.0 / s}} for s in steps],
            }
        )

    report(0, range(1, 10_001))
    kept = m.trials[0].reports
    assert model_mod.REPORTS_CAP // 2 <= len(kept) <= model_mod.REPORTS_CAP
    steps = [x for x, _ in kept]
    assert steps[0] == 1 and steps[-1] > 9_000  # over the whole run
    gaps = {b - a for a, b in itertools.pairwise(steps)}
    assert len(gaps) == 1  # evenly spread
    report(1, range(1, 6))
    report(1, range(3, 5))  # a retry from step 3
    assert [x for x, _ in m.trials[1].reports] == [1, 2, 3, 4]
    report(2, range(1, 4))
    report(3, range(1, 4))  # a 4th trial: no room on the chart, and no higher
    assert m.trials[3].reports == [] and 3 not in m.shown
    for trial in (0, 1, 2):
        assert len(m.trials[trial].reports) > 0
    m.apply({"event": "assign", "t": 2, "trial": 3, "rung": 1, "job": 9, "worker": "w"})
    assert 3 in m.shown  # went higher: it takes a place, and a rung-0 trial leaves
    dropped = [t for t in (0, 1, 2) if t not in m.shown]
    assert len(dropped) == 1 and m.trials[dropped[0]].reports == []
    report(3, range(4, 7), rung=1)
    assert [x for x, _ in m.trials[3].reports] == [4, 5, 6]
    view = m.view()
    assert {t["id"]: len(t["r"]) for t in view["trials"]}[3] == 3


REPORTING_TRAINER = """
import time


def fit(config, ctx):
    for epoch in range(int(ctx.start), int(ctx.stop)):
        time.sleep(0.02)
        ctx.report(epoch + 1, loss=(config["x"] - 0.3) ** 2 + 1.0 / (epoch + 1))
    return {"loss": (config["x"] - 0.3) ** 2 + 1.0 / ctx.stop}
"""

REPORTING_SPEC = """
[study]
name = "live"
metric = "loss"
seed = 2
[asha]
min_resource = 1
max_resource = 9
reduction_factor = 3
max_trials = 12
[trainer]
type = "python"
entrypoint = "reporting:fit"
[space]
x = { uniform = [0.0, 1.0] }
"""


def test_a_live_dashboard_draws_the_report_events(tmp_path: Path, cleanup: list[Any]) -> None:
    """``ash dashboard --scheduler`` joined before any job ran (an empty snapshot): every
    report it draws came in a live ``report`` event of the detailed Watch stream."""
    import time

    from helpers import Scheduler, results, worker

    (tmp_path / "reporting.py").write_text(REPORTING_TRAINER)
    spec = tmp_path / "study.toml"
    spec.write_text(REPORTING_SPEC)
    s = Scheduler(spec, tmp_path, "--out", "out", "--linger", "0")
    cleanup.append(s)
    proc, url = serve_dashboard("--scheduler", s.target, "--listen", "127.0.0.1:0")
    cleanup.append(proc)

    def view() -> dict[str, Any]:
        code, text = _get(url + "api/study/study")  # named before its snapshot came
        got: dict[str, Any] = json.loads(text) if code == 200 else {}
        return got

    deadline = time.monotonic() + 30
    while not view() and time.monotonic() < deadline:  # until the snapshot came
        time.sleep(0.1)
    assert view()["status"]["trials"] == 0  # joined before anything ran
    cleanup.append(worker(s.target, tmp_path, "w1"))
    assert s.wait() == 0
    doc = results(tmp_path / "out")
    deadline = time.monotonic() + 30
    while not view()["status"]["finished"] and time.monotonic() < deadline:
        time.sleep(0.1)
    final = view()
    assert final["status"]["finished"]
    want = _curves(doc)
    assert sum(len(c) for c in want.values()) >= 12 + 3
    got = {t["id"]: [tuple(p) for p in t["r"]] for t in final["trials"]}
    assert got == {t: [pytest.approx(p) for p in c] for t, c in want.items()}
    proc.terminate()
    assert proc.wait(timeout=20) == 0


def test_the_pages_csv_keeps_a_parameter_named_like_a_fixed_column_apart() -> None:
    doc = {
        "study": "s",
        "metric": "loss",
        "mode": "min",
        "trials": [
            {
                "trial": 0,
                "bracket": 0,
                "status": "completed",
                "config": {"status": "b", "loss": 7.0, "x": 0.5},
                "results": [{"rung": 0, "resource": 1, "value": 0.25, "metrics": {"loss": 0.25}}],
            }
        ],
    }
    model = StudyModel()
    model.load_results(doc)
    (row,) = list(csv.DictReader(io.StringIO(model.trials_csv())))
    assert row["status"] == "completed" and row["loss"] == "0.25"
    assert row["param:status"] == "b" and row["param:loss"] == "7.0" and row["x"] == "0.5"
