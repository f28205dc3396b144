"""``ash.load`` beyond the rung results, and the files it reads (review 8, items 8-10): a
trial's ``ctx.report`` reports in ``.curves``, ``TrialRecord.reports`` and
``to_pandas(reports=True)`` from a results.json, a journal and a running scheduler; a damaged
results.json refused naming the file and the field while every shape ash writes still loads;
trials.csv's header unambiguous when parameters are named like its other columns. Real studies:
``ash.tune``, the ``ash`` CLI, a real gRPC scheduler and workers on 127.0.0.1."""

from __future__ import annotations

import copy
import csv
import json
import math
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import ash
from ash.api import StudyStopped
from ash.errors import UserError
from ash.study import LoadError, Study
from helpers import Scheduler, worker
from helpers import run_ash as cli

R = 9  # max_resource: milestones at 1, 3 and 9 epochs


def loss(x: float, epoch: float) -> float:
    return (x - 0.3) ** 2 + 1.0 / epoch


def reporting(config: dict[str, Any], ctx: Any) -> dict[str, float]:
    x = float(config["x"])
    for epoch in range(int(ctx.start) + 1, int(ctx.stop) + 1):
        ctx.report(epoch, loss=loss(x, epoch), acc=1.0 - x / epoch)
    return {"loss": loss(x, ctx.stop), "acc": 1.0 - x / ctx.stop}


def always_raises(config: dict[str, Any], start: float, stop: float, state: Any) -> Any:
    raise RuntimeError("the data loader is empty")


TRAINER = """
import os, time

def fit(config, ctx):
    x = float(config["x"])
    for epoch in range(int(ctx.start) + 1, int(ctx.stop) + 1):
        time.sleep(float(os.environ.get("SLEEP", "0")))
        ctx.report(epoch, loss=(x - 0.3) ** 2 + 1.0 / epoch, acc=1.0 - x / epoch)
    return {"loss": (x - 0.3) ** 2 + 1.0 / ctx.stop, "acc": 1.0 - x / ctx.stop}
"""

SPEC = """
[study]
name = "rep"
metric = "loss"
seed = 3
algorithm = "asha-stopping"
[asha]
min_resource = 1
max_resource = 9
reduction_factor = 3
max_trials = {trials}
stop_on = "reports"
[trainer]
type = "python"
entrypoint = "rep_trainer:fit"
[space]
x = {{ uniform = [0.0, 1.0] }}
"""


def write_spec(tmp: Path, trials: int) -> Path:
    (tmp / "rep_trainer.py").write_text(TRAINER)
    spec = tmp / "study.toml"
    spec.write_text(SPEC.format(trials=trials))
    return spec


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished stopping study whose trainer reports every epoch: out/ and its journal."""
    tmp = tmp_path_factory.mktemp("reported")
    ash.tune(
        reporting,
        space={"x": {"uniform": [0.0, 1.0]}},
        algorithm="asha-stopping",
        stop_on="reports",
        max_resource=R,
        max_trials=9,
        workers=2,
        threads=1,
        seed=5,
        quiet=True,
        out=tmp / "out",
        journal=tmp / "j.jsonl",
    )
    return tmp


def check_curves(study: Study) -> None:
    """Every trial's curve runs through each epoch it trained (one report each), with the
    reported metric, and ends at its result; its reports are those results.json holds."""
    assert study.trials
    for t in study.trials:
        (res,) = t.results  # one job per trial (stopping): trained from epoch 1 to its stop
        x = float(t.config["x"])
        last = int(res["resource"])
        assert [r["step"] for r in t.reports] == list(range(1, last + 1))
        assert all(r["metrics"]["loss"] == loss(x, r["step"]) for r in t.reports)
        assert all(set(r["metrics"]) == {"loss", "acc"} for r in t.reports)
        curve = study.curves[t.trial]
        assert [p[0] for p in curve] == list(range(1, last + 1))
        assert curve == [(e, pytest.approx(loss(x, e))) for e in range(1, last + 1)]
        assert curve[-1] == (res["resource"], res["value"])
    assert any(len(c) == R for c in study.curves.values())  # some went all the way


def test_curves_and_reports_from_results_json_and_a_journal(reported: Path) -> None:
    saved = ash.load(reported / "out")
    check_curves(saved)
    doc = json.loads((reported / "out" / "results.json").read_text())
    assert [t.reports for t in saved.trials] == [t["reports"] for t in doc["trials"]]
    replayed = ash.load(reported / "j.jsonl")
    check_curves(replayed)
    assert replayed.curves == saved.curves
    assert [t.reports for t in replayed.trials] == [t.reports for t in saved.trials]

    frame = saved.to_pandas(reports=True)
    assert len(frame) == sum(len(t.reports) for t in saved.trials)
    assert {"trial", "bracket", "status", "rung", "step", "value"} <= set(frame.columns)
    assert {"config/x", "metrics/loss", "metrics/acc"} <= set(frame.columns)
    assert (frame["value"] == frame["metrics/loss"]).all()
    best = saved.best
    assert best is not None
    rows = frame[frame["trial"] == best.trial].sort_values("step")
    assert rows["step"].tolist() == [p[0] for p in saved.curves[best.trial]]
    assert (rows["config/x"] == best.config["x"]).all()
    assert len(saved.to_pandas()) == len(saved.trials)  # one row per trial, as before


def test_curves_through_the_reports_of_a_running_scheduler(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, trials=8)
    s = Scheduler(spec, tmp_path, "--stay", "--out", "o")
    workers = [worker(s.target, tmp_path, f"w{i}") for i in range(2)]
    try:
        deadline = time.monotonic() + 120
        live = ash.load(s.target)
        while not live.finished and time.monotonic() < deadline:
            time.sleep(0.3)
            live = ash.load(s.target)
        assert live.finished and len(live.trials) == 8
        check_curves(live)
    finally:
        s.proc.send_signal(signal.SIGTERM)
        s.wait()
        for w in workers:
            w.kill()
            w.wait()
    saved = ash.load(tmp_path / "o")
    assert saved.curves == live.curves
    assert [t.reports for t in saved.trials] == [t.reports for t in live.trials]


def test_a_curve_keeps_the_result_at_its_rung_and_a_retrained_trial_s_last_reports() -> None:
    """At a rung's resource the result stands (a trainer may report another quantity under
    the metric's name than it returns); a step reported again replaces the curve from there;
    reports without the metric, or with a non-finite one (kept as null), are left out."""
    doc = {
        "study": "s",
        "metric": "loss",
        "mode": "min",
        "best": None,
        "trials": [
            {
                "trial": 0,
                "bracket": 0,
                "config": {"x": 0.5},
                "status": "stopped",
                "results": [{"rung": 0, "resource": 3, "value": 0.25, "metrics": {}}],
                "reports": [
                    {"rung": 0, "step": 1, "metrics": {"loss": 0.9}},
                    {"rung": 0, "step": 2, "metrics": {"loss": 0.8}},
                    {"rung": 0, "step": 1, "metrics": {"loss": 0.7}},  # trained from 0 again
                    {"rung": 0, "step": 2, "metrics": {"acc": 0.1}},
                    {"rung": 0, "step": 2, "metrics": {"loss": None}},
                    {"rung": 0, "step": 3, "metrics": {"loss": 0.3}},
                ],
            },
            {
                "trial": 1,
                "bracket": 0,
                "config": {"x": 0.1},
                "status": "failed",
                "results": [{"rung": 0, "resource": 3, "value": None, "metrics": {}}],
            },
        ],
    }
    study = Study(doc)
    assert study.curves == {0: [(1, 0.7), (3, 0.25)], 1: [(3, None)]}
    assert study.trials[1].reports == []


# -- damaged documents --------------------------------------------------------------------

Damage = Callable[[Any], Any]


def _set(path: str, value: Any) -> Damage:
    def damage(doc: Any) -> Any:
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value
        return doc

    return damage


def _drop(path: str) -> Damage:
    def damage(doc: Any) -> Any:
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        del node[last]
        return doc

    return damage


def _twice(doc: Any) -> Any:
    doc["trials"][2]["trial"] = doc["trials"][0]["trial"]
    return doc


DAMAGED: dict[str, tuple[Damage, str]] = {
    "best without config": (_set("best", {"trial": 1}), "best.config: missing"),
    "results null": (
        _set("trials.0.results", None),
        "trials[0].results: expected a list, got null",
    ),
    "trial missing": (_drop("trials.0.trial"), "trials[0].trial: missing"),
    "trials an object": (_set("trials", {}), "trials: expected a list, got an object"),
    "trials missing": (_drop("trials"), "trials: missing"),
    "value a string": (
        _set("trials.1.results.0.value", "0.5"),
        "trials[1].results[0].value: expected a number or null, got a string",
    ),
    "resource null": (
        _set("trials.1.results.0.resource", None),
        "trials[1].results[0].resource: expected a number, got null",
    ),
    "result a number": (
        _set("trials.1.results.0", 3),
        "trials[1].results[0]: expected an object, got a number",
    ),
    "report without step": (
        _drop("trials.0.reports.0.step"),
        "trials[0].reports[0].step: missing",
    ),
    "config a list": (
        _set("trials.0.config", []),
        "trials[0].config: expected an object, got a list",
    ),
    "status missing": (_drop("trials.3.status"), "trials[3].status: missing"),
    "a trial twice": (_twice, "trials[2].trial: trial 0 appears twice"),
    "best value null": (_set("best.value", None), "best.value: expected a number, got null"),
    "mode": (_set("mode", "avg"), "mode: expected 'min' or 'max', got 'avg'"),
    "errors a string": (_set("errors", "boom"), "errors: expected a list, got a string"),
    "a list": (lambda doc: [doc], "the document: expected an object, got a list"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_a_damaged_results_json_is_refused_naming_the_field(
    reported: Path, tmp_path: Path, case: str
) -> None:
    damage, field = DAMAGED[case]
    doc = json.loads((reported / "out" / "results.json").read_text())
    assert doc["trials"][0]["trial"] == 0 and doc["trials"][0]["reports"]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(damage(copy.deepcopy(doc))))
    with pytest.raises(LoadError) as got:
        ash.load(tmp_path)
    assert str(got.value) == f"{tmp_path / 'results.json'}: not a results.json ({field})"
    assert isinstance(got.value, UserError)
    with pytest.raises(LoadError, match=r"results\.json: not a results\.json"):
        ash.load(path)


def test_every_shape_ash_writes_loads(tmp_path: Path) -> None:
    """A failed study, an interrupted one (jobs in flight when it stopped) and one that
    stopped before any result all load, and every view of them answers."""
    kw: dict[str, Any] = {"space": {"x": {"uniform": [0.0, 1.0]}}, "max_resource": 3}
    with pytest.raises(StudyStopped):
        ash.tune(always_raises, max_trials=6, workers=1, threads=1, quiet=True,
                 out=tmp_path / "failed", **kw)  # fmt: skip
    failed = ash.load(tmp_path / "failed")
    assert failed.best is None and failed.trials and failed.errors
    assert all(t.status == "failed" and t.value is None and t.errors for t in failed.trials)
    assert all(p[1] is None for c in failed.curves.values() for p in c)
    assert "the data loader is empty" in failed.doc["error"]

    spec = write_spec(tmp_path, trials=40)
    s = Scheduler(spec, tmp_path, "--out", "none", "--drain-timeout", "0")
    s.proc.send_signal(signal.SIGTERM)
    assert s.wait() == 0
    empty = ash.load(tmp_path / "none")
    assert empty.trials == [] and empty.best is None and empty.curves == {}
    assert empty.doc["interrupted"] is True
    assert len(empty.to_pandas()) == 0 and len(empty.to_pandas(reports=True)) == 0

    s = Scheduler(spec, tmp_path, "--out", "cut", "--drain-timeout", "0")
    w = worker(s.target, tmp_path, "w", "--retry-for", "30", env={"SLEEP": "0.2"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            live = ash.load(s.target)
            if any(t.results for t in live.trials) and live.running:
                break
            time.sleep(0.2)
        s.proc.send_signal(signal.SIGTERM)
        assert s.wait() == 0
    finally:
        s.kill()
        w.kill()
        w.wait()
    cut = ash.load(tmp_path / "cut")
    assert cut.doc["interrupted"] is True and 0 < len(cut.trials) < 40
    assert cut.best is not None and any(t.reports for t in cut.trials)
    assert any(t.status == "running" and not t.results for t in cut.trials)
    for t in cut.trials:
        values = [v for _, v in cut.curves[t.trial] if v is not None]
        assert all(math.isfinite(v) for v in values)
    assert len(cut.to_pandas(reports=True)) == sum(len(t.reports) for t in cut.trials)


# -- trials.csv -----------------------------------------------------------------------------

CSV_SPEC = """
[study]
name = "cols"
metric = "loss"
seed = 2
[asha]
min_resource = 1
max_resource = 9
reduction_factor = 3
max_trials = 12
[trainer]
type = "python"
entrypoint = "cols:fit"
[space]
x = {{ uniform = [0.0, 1.0] }}
value = {{ uniform = [5.0, 6.0] }}
status = {{ choice = ["a", "b"] }}
"metric:loss" = {{ uniform = [10.0, 11.0] }}
"param:x" = {{ choice = ["p", "q"] }}
"""

CSV_TRAINER = """
def fit(config, start, stop, state):
    return {"loss": config["x"] + 1.0 / stop}, None
"""


def test_trials_csv_prefixes_the_parameters_named_like_its_columns(tmp_path: Path) -> None:
    (tmp_path / "cols.py").write_text(CSV_TRAINER)
    (tmp_path / "cols.toml").write_text(CSV_SPEC.format())
    got = cli("tune", "cols.toml", "--workers", "2", "--quiet", "--out", "o", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    with open(tmp_path / "o" / "trials.csv", newline="") as f:
        header = next(csv.reader(f))
        f.seek(0)
        rows = list(csv.DictReader(f))
    assert header == [
        "trial", "bracket", "rung", "resource", "value", "status",
        "x", "param:value", "param:status", "param:metric:loss", "param:param:x",
        "metric:loss",
    ]  # fmt: skip
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    trials = {t["trial"]: t for t in doc["trials"]}
    assert len(rows) == sum(len(t["results"]) for t in doc["trials"])
    for row in rows:
        t = trials[int(row["trial"])]
        (res,) = [r for r in t["results"] if r["rung"] == int(row["rung"])]
        assert float(row["value"]) == res["value"] == float(row["metric:loss"])
        assert row["status"] == t["status"] in ("completed", "stopped")
        cfg = t["config"]
        assert float(row["x"]) == cfg["x"] and float(row["param:value"]) == cfg["value"]
        assert row["param:status"] == cfg["status"] and row["param:param:x"] == cfg["param:x"]
        assert float(row["param:metric:loss"]) == cfg["metric:loss"]
