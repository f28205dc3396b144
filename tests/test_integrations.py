"""Tracking callbacks against the real libraries' local stores: MLflow (a sqlite store read back
with MlflowClient) and TensorBoard (event files read back with tensorboard's EventAccumulator),
fed by a real embedded study; a failing or missing integration is reported, never silent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import ash
from ash.integrations import Callback, CallbackError, MLflowCallback, Result, TensorBoardCallback
from helpers import BIN

SPACE = {"x": {"uniform": [0.0, 1.0]}, "width": {"choice": [1, 2]}}


def fit(config: dict[str, Any], start: float, stop: float, state: bytes | None) -> Any:
    if config["x"] > 0.9:
        raise ValueError("x too large")
    loss = (config["x"] - 0.3) ** 2 + 1.0 / stop
    return {"loss": loss, "acc": 1.0 - loss, "note": "text is not plotted"}, None


def study(callbacks: list[Callback], **kw: Any) -> dict[str, Any]:
    return ash.tune(
        fit,
        space=SPACE,
        max_resource=9,
        reduction_factor=3,
        max_trials=12,
        workers=2,
        threads=1,
        progress=False,
        callbacks=callbacks,
        **kw,
    )


def by_trial(doc: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    return {t["trial"]: t for t in doc["trials"]}


def test_mlflow_one_run_per_trial_with_params_metrics_and_status(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    doc = study([MLflowCallback(tracking_uri=uri, experiment_name="exp")])
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("exp")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    trials = by_trial(doc)
    assert len(trials) == 12
    assert sorted(int(r.data.tags["ash.trial"]) for r in runs) == sorted(trials)
    statuses = set()
    for run in runs:
        t = trials[int(run.data.tags["ash.trial"])]
        assert run.info.run_name == f"fit-trial-{t['trial']}"
        assert run.data.params == {k: str(v) for k, v in t["config"].items()}
        assert run.data.tags["ash.status"] == t["status"]
        ok = [r for r in t["results"] if r["value"] is not None]
        history = client.get_metric_history(run.info.run_id, "loss")
        assert [(m.step, m.value) for m in history] == [
            (round(r["resource"]), r["metrics"]["loss"]) for r in ok
        ]
        rungs = client.get_metric_history(run.info.run_id, "ash.rung")
        assert [m.value for m in rungs] == [r["rung"] for r in t["results"]]
        assert "note" not in run.data.metrics
        if t["status"] == "failed":
            assert run.info.status == "FAILED"
            assert "x too large" in run.data.tags["ash.error"]
        else:
            assert run.info.status == "FINISHED"
        statuses.add(t["status"])
        assert (run.data.tags.get("ash.best") == "true") == (t["trial"] == doc["best"]["trial"])
    assert "stopped" in statuses and "completed" in statuses


def test_tensorboard_scalars_and_hparams_per_trial(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = tmp_path / "tb"
    doc = study([TensorBoardCallback(logdir)])
    trials = by_trial(doc)
    assert sorted(p.name for p in logdir.iterdir()) == [f"trial-{t:04d}" for t in sorted(trials)]
    for t in trials.values():
        acc = EventAccumulator(str(logdir / f"trial-{t['trial']:04d}"))
        acc.Reload()
        ok = [r for r in t["results"] if r["value"] is not None]
        if ok:
            assert [(e.step, pytest.approx(e.value)) for e in acc.Scalars("loss")] == [
                (round(r["resource"]), r["metrics"]["loss"]) for r in ok
            ]
        assert [e.value for e in acc.Scalars("ash/rung")] == [r["rung"] for r in t["results"]]
        assert "hparams" in acc.PluginTagToContent("hparams") or acc.PluginTagToContent("hparams")


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_trial_start(self, trial: int, config: Mapping[str, Any]) -> None:
        self.events.append(("trial", trial))

    def on_result(self, result: Result) -> None:
        self.events.append(("result", (result.trial, result.rung)))

    def on_study_end(self, doc: Mapping[str, Any] | None) -> None:
        self.events.append(("end", doc is not None))


class Broken(Callback):
    def on_result(self, result: Result) -> None:
        raise RuntimeError("tracking server down")


def test_own_callback_sees_every_event_in_order_and_a_failing_one_is_dropped(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    rec = Recorder()
    doc = study([Broken(), rec])
    trials = by_trial(doc)
    starts = [e[1] for e in rec.events if e[0] == "trial"]
    results = [e[1] for e in rec.events if e[0] == "result"]
    assert sorted(starts) == sorted(trials)
    assert sorted(results) == sorted(
        (t["trial"], r["rung"]) for t in trials.values() for r in t["results"]
    )
    for trial, rung in results:  # a trial starts before its first result
        assert rec.events.index(("trial", trial)) < rec.events.index(("result", (trial, rung)))
    assert rec.events[-1] == ("end", True)
    err = capfd.readouterr().err
    assert err.count("callback Broken.on_result failed (RuntimeError: tracking server down)") == 1


def test_missing_library_and_bad_store_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(CallbackError, match=r"pip install 'ash-hpo\[tensorboard\]'"):
        study([TensorBoardCallback(tmp_path / "tb")])
    (tmp_path / "file").write_text("")
    monkeypatch.delitem(sys.modules, "tensorboardX")
    with pytest.raises(CallbackError, match=r"logdir .*file/tb"):
        study([TensorBoardCallback(tmp_path / "file" / "tb")])
    with pytest.raises(CallbackError, match="MLflowCallback: tracking_uri"):
        study([MLflowCallback(tracking_uri=f"sqlite:///{tmp_path}/file/x.db")])
    with pytest.raises(CallbackError, match=r"not an ash\.integrations\.Callback"):
        study([object()])  # type: ignore[list-item]
    with pytest.raises(CallbackError, match=r"callbacks: 5 is not a list"):
        study(5)  # type: ignore[arg-type]


def test_one_callback_not_in_a_list_is_taken() -> None:
    rec = Recorder()
    doc = study(rec)  # type: ignore[arg-type]
    assert sorted(e[1] for e in rec.events if e[0] == "trial") == sorted(by_trial(doc))
    rec = Recorder()
    doc = study(c for c in [rec])  # type: ignore[arg-type]
    assert sorted(e[1] for e in rec.events if e[0] == "trial") == sorted(by_trial(doc))


def fit_ctx(config: dict[str, Any], ctx: Any) -> dict[str, float]:
    loss = 0.0
    for epoch in range(int(ctx.start), int(ctx.stop)):
        loss = (config["x"] - 0.3) ** 2 + 1.0 / (epoch + 1)
        ctx.report(epoch + 1, loss=loss, epoch=epoch + 1)
    return {"loss": loss}


class Reports(Callback):
    def __init__(self) -> None:
        self.reports: list[tuple[int, float, float]] = []

    def on_report(self, trial: int, step: float, metrics: Mapping[str, Any]) -> None:
        self.reports.append((trial, step, metrics["loss"]))


def test_reports_reach_callbacks_mlflow_and_tensorboard_once_per_step(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    rec = Reports()
    doc = ash.tune(
        fit_ctx,
        space=SPACE,
        max_resource=9,
        max_trials=9,
        workers=2,
        threads=1,
        progress=False,
        callbacks=[rec, MLflowCallback(uri), TensorBoardCallback(tmp_path / "tb")],
    )
    expected = sorted(
        (t["trial"], p["step"], p["metrics"]["loss"]) for t in doc["trials"] for p in t["reports"]
    )
    assert sorted(rec.reports) == expected
    assert len(expected) == sum(t["results"][-1]["resource"] for t in doc["trials"])
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("fit_ctx")
    assert exp is not None
    for run in client.search_runs([exp.experiment_id], max_results=100):
        t = by_trial(doc)[int(run.data.tags["ash.trial"])]
        history = client.get_metric_history(run.info.run_id, "loss")
        # each epoch once: a rung result at a reported step adds no second point
        assert sorted((m.step, m.value) for m in history) == [
            (p["step"], p["metrics"]["loss"]) for p in t["reports"]
        ]
        acc = EventAccumulator(str(tmp_path / "tb" / f"trial-{t['trial']:04d}"))
        acc.Reload()
        assert [e.step for e in acc.Scalars("loss")] == [p["step"] for p in t["reports"]]


CLI_TRAINER = """
def fit(config, ctx):
    for epoch in range(int(ctx.start), int(ctx.stop)):
        loss = (config["x"] - 0.3) ** 2 + 1.0 / (epoch + 1)
        ctx.report(epoch + 1, loss=loss)
    return {"loss": loss}
"""

CLI_SPEC = """
[study]
name = "cli"
metric = "loss"
mode = "min"
[asha]
min_resource = 1
max_resource = 4
reduction_factor = 2
max_trials = 6
[trainer]
type = "python"
entrypoint = "cli_trainer:fit"
[space]
x = { uniform = [0.0, 1.0] }
"""


def ash_cli(tmp_path: Path, *args: str, ranks: int = 0) -> subprocess.CompletedProcess[str]:
    launcher = [str(BIN / "mpiexec"), "-n", str(ranks)] if ranks else []
    workers = [] if ranks else ["--workers", "2"]
    return subprocess.run(
        [*launcher, str(BIN / "ash"), "tune", "study.toml", *workers, "--quiet", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("transport", ["inproc", "grpc", "mpi"])
def test_cli_flags_log_every_trial(tmp_path: Path, transport: str) -> None:
    from mlflow.tracking import MlflowClient

    if transport == "mpi" and not (BIN / "mpiexec").exists():
        pytest.skip("needs the venv's mpiexec (the test extra's mpich)")

    (tmp_path / "cli_trainer.py").write_text(CLI_TRAINER)
    (tmp_path / "study.toml").write_text(CLI_SPEC)
    uri = f"sqlite:///{tmp_path}/m.db"
    proc = ash_cli(
        tmp_path,
        *("--transport", transport, "--out", "out", "--mlflow", uri, "--tensorboard", "tb"),
        ranks=3 if transport == "mpi" else 0,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out/results.json").read_text())
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("cli")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert sorted(int(r.data.tags["ash.trial"]) for r in runs) == sorted(by_trial(doc))
    for run in runs:
        t = by_trial(doc)[int(run.data.tags["ash.trial"])]
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
        assert sorted(steps) == [p["step"] for p in t["reports"]]
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == [
        f"trial-{t:04d}" for t in sorted(by_trial(doc))
    ]


def test_cli_flags_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "cli_trainer.py").write_text(CLI_TRAINER)
    (tmp_path / "study.toml").write_text(CLI_SPEC)
    (tmp_path / "file").write_text("")
    proc = ash_cli(tmp_path, "--tensorboard", "file/tb")
    assert proc.returncode == 2
    assert "TensorBoardCallback: logdir 'file/tb'" in proc.stderr
    assert "Traceback" not in proc.stderr
    if (BIN / "mpiexec").exists():  # said once by rank 0, every rank exits 2
        proc = ash_cli(tmp_path, "--transport", "mpi", "--tensorboard", "file/tb", ranks=2)
        assert proc.returncode == 2
        assert proc.stderr.count("TensorBoardCallback: logdir 'file/tb'") == 1
        assert "Traceback" not in proc.stderr


SLOW_TRAINER = """
import time

def fit(config, ctx):
    for epoch in range(int(ctx.start), int(ctx.stop)):
        time.sleep(0.05)
        loss = (config["x"] - 0.3) ** 2 + 1.0 / (epoch + 1)
        ctx.report(epoch + 1, loss=loss)
    return {"loss": loss}
"""


def test_a_study_resumed_from_its_journal_goes_on_in_each_trials_mlflow_run(
    tmp_path: Path,
) -> None:
    from mlflow.tracking import MlflowClient

    (tmp_path / "cli_trainer.py").write_text(SLOW_TRAINER)
    (tmp_path / "study.toml").write_text(
        CLI_SPEC.replace("max_resource = 4", "max_resource = 8").replace(
            "max_trials = 6", "max_trials = 16"
        )
    )
    uri = f"sqlite:///{tmp_path}/m.db"
    args = [str(BIN / "ash"), "tune", "study.toml", "--workers", "2", "--quiet"]
    args += ["--journal", "j.jsonl", "--out", "out", "--mlflow", uri]
    proc = subprocess.Popen(args, cwd=tmp_path, start_new_session=True)
    journal = tmp_path / "j.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = journal.read_text() if journal.exists() else ""
        if text.count('"r":') >= 8:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {json.loads(line)["k"][0] for line in text.splitlines() if '"c":' in line}
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "out/results.json").read_text())
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("cli")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    trials = [int(r.data.tags["ash.trial"]) for r in runs]
    assert sorted(trials) == sorted(by_trial(doc))  # one run per trial, none twice
    resumed = [t for t in doc["trials"] if t["trial"] in before and len(t["results"]) > 1]
    assert resumed  # trials begun before the kill and promoted after it
    for run in runs:
        t = by_trial(doc)[int(run.data.tags["ash.trial"])]
        steps = {m.step for m in client.get_metric_history(run.info.run_id, "loss")}
        assert steps <= {p["step"] for p in t["reports"]}
        assert run.info.status == "FINISHED"
        assert run.data.tags["ash.status"] == t["status"]
