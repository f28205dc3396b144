"""``ash record``: curves recorded unit by unit replay in ``ash simulate``; mistakes exit 2."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from ash.scheduler.benchmarks import Recorded
from helpers import run_ash as ash

IRIS = """
[study]
name = "iris-rec"
metric = "val_loss"
mode = "min"
seed = 1

[asha]
min_resource = 1
max_resource = 3
reduction_factor = 3
max_trials = 12

[trainer]
type = "mlp"
dataset = "{dataset}"

[space]
lr = {{ log_uniform = [1e-3, 0.5] }}
hidden = {{ choice = [8, 16] }}
"""

PY = """
[study]
name = "py-rec"
metric = "loss"
seed = 0

[asha]
min_resource = 1
max_resource = {max_resource}
reduction_factor = 2
max_trials = 4

[trainer]
type = "python"
entrypoint = "rec_trainer:fit"

[space]
x = {{ choice = [1.0, 2.0, 3.0, 4.0] }}
"""

TRAINER = """
import math
import os

def fit(config, start, stop, state):
    done = 0 if state is None else int(state.decode())
    assert done == start, (done, start)
    x = config["x"]
    if x == 4.0 and stop == 3:
        os._exit(7)  # kills its worker process
    loss = math.nan if (x == 3.0 and stop >= 2) else x / stop
    return {"loss": loss, "extra": 10 * stop}, str(int(stop)).encode()
"""


def test_record_iris_then_simulate(tmp_path: Path) -> None:
    spec = tmp_path / "iris.toml"
    spec.write_text(IRIS.format(dataset="iris"))
    curves = tmp_path / "curves.json.gz"
    proc = ash("record", str(spec), "--trials", "4", "--out", str(curves), "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert "recorded 4 configs" in proc.stdout
    doc = json.loads(gzip.decompress(curves.read_bytes()))
    assert doc["format"] == "ash-curves" and doc["version"] == 1
    assert (doc["metric"], doc["mode"], doc["resources"]) == ("val_loss", "min", [1, 2, 3])
    assert len(doc["trials"]) == 4
    for row in doc["trials"]:
        assert set(row["config"]) == {"lr", "hidden"}
        assert len(row["values"]) == 3 and all(v is None or v > 0 for v in row["values"])
        assert row["seconds_per_unit"] > 0
        assert len(row["metrics"]["val_accuracy"]) == 3
    Recorded(curves)  # the simulator's reader accepts it
    # the same seed samples the same configurations
    again = tmp_path / "again.json"
    proc = ash("record", str(spec), "--trials", "4", "--out", str(again), "--quiet")
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""
    configs = [r["config"] for r in json.loads(again.read_text())["trials"]]
    assert configs == [r["config"] for r in doc["trials"]]

    out = tmp_path / "sim"
    proc = ash(
        "simulate", str(spec), "--workers", "3", "--benchmark", str(curves), "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    best = json.loads((out / "results.json").read_text())["best"]
    finals = [r["values"][-1] for r in doc["trials"] if r["values"][-1] is not None]
    assert best["resource"] == 3 and best["value"] in finals


def test_record_resumes_unit_by_unit_and_nulls_failures(tmp_path: Path) -> None:
    (tmp_path / "rec_trainer.py").write_text(TRAINER)
    (tmp_path / "py.toml").write_text(PY.format(max_resource=3))
    proc = ash("record", "py.toml", "--trials", "8", "--out", "c.json", "--seed", "5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "c.json").read_text())["trials"]
    assert len(rows) == 8
    assert {r["config"]["x"] for r in rows} == {1.0, 2.0, 3.0, 4.0}
    for row in rows:
        x = row["config"]["x"]
        if x == 3.0:  # fails at unit 2: null from there on, and says why
            assert row["values"] == [3.0, None, None]
            assert "not finite" in row["error"]
        elif x == 4.0:  # its process died at unit 3: null from there on, the recording goes on
            assert row["values"] == [4.0, 2.0, None]
            assert "unit 3: worker process died (exit code 7)" in row["error"]
        else:
            # the trainer checked that each unit resumed; values keep 7 significant digits
            assert row["values"] == pytest.approx([x / 1, x / 2, x / 3], rel=1e-6)
            assert row["metrics"]["extra"] == [10, 20, 30]
            assert "error" not in row


def test_record_user_mistakes_exit_2(tmp_path: Path) -> None:
    spec = tmp_path / "iris.toml"
    spec.write_text(IRIS.format(dataset="iris"))
    proc = ash("record", str(spec), "--trials", "2", "--out", str(tmp_path / "c.txt"))
    assert proc.returncode == 2 and ".json or .json.gz" in proc.stderr
    proc = ash("record", str(spec), "--trials", "2", "--out", str(tmp_path / "no/c.json"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = ash("record", str(spec), "--trials", "0", "--out", str(tmp_path / "c.json"))
    assert proc.returncode == 2
    missing = tmp_path / "missing.toml"
    missing.write_text(IRIS.format(dataset="nowhere.csv"))
    proc = ash("record", str(missing), "--trials", "2", "--out", str(tmp_path / "c.json"))
    assert proc.returncode == 2 and "nowhere.csv" in proc.stderr
    (tmp_path / "rec_trainer.py").write_text(TRAINER)
    (tmp_path / "py.toml").write_text(PY.format(max_resource=2.5))
    proc = ash("record", "py.toml", "--trials", "2", "--out", "c.json", cwd=tmp_path)
    assert proc.returncode == 2 and "whole number" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "c.json").exists()


GRID = """
[study]
name = "grid-rec"
metric = "loss"
seed = 0

[asha]
min_resource = 1
max_resource = 2
reduction_factor = 2
max_trials = 4

[trainer]
type = "python"
entrypoint = "grid_trainer:fit"

[space]
x = {{ ordered = [1.0, 2.0] }}
opt = {{ choice = ["sgd", "adam"] }}
momentum = {{ choice = [0.0, 0.9], when = {{ opt = "sgd" }} }}
k = 3
{extra}
"""

GRID_TRAINER = """
def fit(config, start, stop, state):
    return {"loss": config["x"] / stop + config.get("momentum", 0.5)}, b""
"""


def test_record_grid_records_every_configuration_once(tmp_path: Path) -> None:
    (tmp_path / "grid_trainer.py").write_text(GRID_TRAINER)
    (tmp_path / "g.toml").write_text(GRID.format(extra=""))
    proc = ash(
        "record",
        "g.toml",
        "--grid",
        "--trials",
        "10",
        "--out",
        "g.json",
        "--workers",
        "1",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "g.json").read_text())
    configs = [t["config"] for t in doc["trials"]]
    # 2 x (2 sgd momenta + adam without one) = 6, each once; the inactive parameter absent
    assert len(configs) == 6
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == 6
    assert {"x": 1.0, "opt": "adam", "k": 3} in configs
    assert {"x": 2.0, "opt": "sgd", "momentum": 0.9, "k": 3} in configs
    assert all(t["values"][-1] is not None for t in doc["trials"])
    # fewer --trials than the grid holds, and a continuous parameter: refused, naming them
    proc = ash("record", "g.toml", "--grid", "--trials", "5", "--out", "h.json", cwd=tmp_path)
    assert proc.returncode == 2 and "6 configurations" in proc.stderr
    (tmp_path / "c.toml").write_text(GRID.format(extra="lr = { uniform = [0.0, 1.0] }"))
    proc = ash("record", "c.toml", "--grid", "--trials", "9", "--out", "h.json", cwd=tmp_path)
    assert proc.returncode == 2 and "space.lr" in proc.stderr and "continuous" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "h.json").exists()
