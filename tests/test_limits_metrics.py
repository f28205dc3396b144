"""Issue #13: a trainer's metrics are bounded, and a trainer's sys.exit() costs one job.

Unit tests of the validator (ash.link.metrics), of run_job (the worker side) and of
wire.metrics_from_pb (the scheduler side), then one ``ash tune`` end to end whose trainer returns
a huge list, raises SystemExit or KeyboardInterrupt for some trials: the study finishes, those
results fail with a message and results.json stays small. Also a module that calls sys.exit() on
import is a TrainerError naming the entrypoint, and ``ash tune`` exits 2 with it. (Under MPI, a
trainer's own KeyboardInterrupt and a real Ctrl-C: tests/test_mpi.py.)
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ash.link import wire
from ash.link.metrics import (
    MAX_METRICS,
    MAX_TEXT_CHARS,
    MAX_TOTAL_BYTES,
    check_metrics,
    clip_error,
)
from ash.proto import ash_pb2 as pb
from ash.worker.trainers import PythonTrainer, TrainerError, run_job
from helpers import BIN, PY_SPEC


def test_good_metrics_pass_and_numpy_scalars_unwrap() -> None:
    got, problem = check_metrics(
        {"loss": np.float32(0.5), "n": np.int64(3), "ok": np.bool_(True), "tag": "a", "x": None}
    )
    assert problem is None
    assert got == {"loss": 0.5, "n": 3, "ok": True, "tag": "a", "x": None}
    assert [type(v) for v in got.values()] == [float, int, bool, str, type(None)]
    got, problem = check_metrics({"loss": math.inf})  # data: ranked worst, written as null
    assert problem is None and got["loss"] == math.inf


@pytest.mark.parametrize(
    ("metrics", "words"),
    [
        ({"hist": [0.1] * 10}, ["'hist'", "list"]),
        ({"arr": np.zeros(3)}, ["'arr'", "ndarray"]),
        ({"log": "x" * (MAX_TEXT_CHARS + 1)}, ["'log'", f"{MAX_TEXT_CHARS + 1} characters"]),
        ({"big": 2**70}, ["'big'", "64-bit"]),
        ({f"m{i}": i for i in range(MAX_METRICS + 1)}, [f"{MAX_METRICS + 1} metrics"]),
        ({"n" * 65: 1.0}, ["metric name", "65 characters"]),
        ({"": 1.0}, ["metric name", "0 characters"]),
        ({3: 1.0}, ["metric name 3", "int"]),
        ({f"t{i}": "\u00e9" * 256 for i in range(40)}, [f"{MAX_TOTAL_BYTES} bytes", "'t31'"]),
    ],
)
def test_bad_metrics_name_the_metric_and_the_problem(metrics: Any, words: list[str]) -> None:
    got, problem = check_metrics(metrics)
    assert got == {} and problem is not None
    for w in words:
        assert w in problem, problem


def test_run_job_fails_the_result_for_bad_metrics() -> None:
    def fit(config: Any, start: float, stop: float, state: Any) -> Any:
        return {"loss": 0.1, "history": list(range(1_000_000))}, b"s"

    out = run_job(fit, "loss", {}, 0, 1, None)
    assert out.value is None and out.metrics == {} and out.state is None
    assert out.error == (
        "trainer returned bad metrics: metric 'history': a list is not a number or a string"
    )


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (SystemExit(3), "SystemExit (exit code 3)"),
        (KeyboardInterrupt(), "KeyboardInterrupt"),
        (ValueError("x" * 100_000), "more characters"),
    ],
)
def test_run_job_turns_any_exception_into_a_failed_result(exc: BaseException, words: str) -> None:
    def fit(config: Any, start: float, stop: float, state: Any) -> Any:
        raise exc

    out = run_job(fit, "loss", {}, 0, 1, None)
    assert out.value is None and out.error is not None and words in out.error
    assert len(out.error) < 2100


def test_clip_error_keeps_short_text() -> None:
    assert clip_error("short") == "short"


def test_wire_metrics_from_pb() -> None:
    r = pb.Result()
    wire.metrics_to_pb({"loss": 0.5, "tag": "a", "bad": math.nan}, r.metrics)
    got, problem = wire.metrics_from_pb(r.metrics)
    assert problem is None and got["loss"] == 0.5 and got["tag"] == "a" and math.isnan(got["bad"])
    r = pb.Result()
    r.metrics["log"].text = "z" * 100_000  # a peer need not have run our validator
    got, problem = wire.metrics_from_pb(r.metrics)
    assert got == {} and problem is not None and "'log'" in problem and "100000" in problem
    r = pb.Result()
    for i in range(1000):
        r.metrics[f"m{i}"].number = i
    got, problem = wire.metrics_from_pb(r.metrics)
    assert got == {} and problem == f"bad metrics: 1000 metrics (at most {MAX_METRICS})"
    r = pb.Result()
    r.metrics["empty"].SetInParent()
    with pytest.raises(wire.WireError, match=r"result\.metrics\.empty: empty value"):
        wire.metrics_from_pb(r.metrics)


def test_sys_exit_at_import_is_a_trainer_error(tmp_path: Path) -> None:
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(4)\n")
    with pytest.raises(TrainerError, match=r"'exits_on_import:fit'.*SystemExit"):
        PythonTrainer("exits_on_import:fit", tmp_path)
    (tmp_path / "spec.toml").write_text(
        PY_SPEC.format(max_trials=2).replace("user_trainer:fit", "exits_on_import:fit")
    )
    proc = subprocess.run(
        [str(BIN / "ash"), "tune", "spec.toml", "--workers", "1", "--threads", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "exits_on_import:fit" in proc.stderr and "SystemExit" in proc.stderr
    assert "Traceback" not in proc.stderr


TRAINER = """
import sys

def fit(config, start, stop, state):
    mode = config["mode"]
    if mode == "exit":
        sys.exit(7)
    if mode == "interrupt":
        raise KeyboardInterrupt
    if mode == "list":
        return {"loss": 1.0, "history": [0.5] * 2_000_000}, b"s"
    return {"loss": config["x"] + 1.0 / stop}, b"s"
"""

SPEC = """
[study]
name = "limits"
metric = "loss"
seed = 1
[asha]
min_resource = 1
max_resource = 9
reduction_factor = 3
max_trials = 12
max_attempts = 1
[trainer]
type = "python"
entrypoint = "bounded:fit"
[space]
x = { uniform = [0.0, 1.0] }
mode = { choice = ["ok", "exit", "interrupt", "list"] }
"""


def test_tune_survives_bad_metrics_and_sys_exit(tmp_path: Path) -> None:
    (tmp_path / "bounded.py").write_text(TRAINER)
    (tmp_path / "spec.toml").write_text(SPEC)
    proc = subprocess.run(
        [
            str(BIN / "ash"),
            "tune",
            "spec.toml",
            "--workers",
            "2",
            "--threads",
            "1",
            "--quiet",
            "--out",
            "out",
            "--journal",
            "j.jsonl",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out/results.json").read_text())
    assert len(doc["trials"]) == 12
    modes = {t["config"]["mode"] for t in doc["trials"]}
    assert {"exit", "interrupt", "list"} & modes, modes  # seed 1 draws some bad trials
    for t in doc["trials"]:
        if t["config"]["mode"] != "ok":
            assert t["status"] == "failed"
            assert all(r["value"] is None and r["metrics"] == {} for r in t["results"])
    errors = " ".join(e["error"] for e in doc["errors"])
    expected = {
        "exit": "trainer raised SystemExit (exit code 7)",
        "interrupt": "trainer raised KeyboardInterrupt",
        "list": "metric 'history': a list is not a number or a string",
    }
    for mode, text in expected.items():
        assert (mode in modes) == (text in errors), errors
    assert doc["best"]["config"]["mode"] == "ok"
    for name in ("out/results.json", "out/trials.csv", "j.jsonl"):
        assert (tmp_path / name).stat().st_size < 200_000, name
    assert "died" not in errors  # no slot process was lost
