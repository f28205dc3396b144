"""The simulator and ``ash simulate``: traces obey Algorithm 2, outputs follow the contract,
runs are reproducible, and recorded curves replay."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from ash.scheduler.audit import audit_for
from ash.scheduler.benchmarks import BenchmarkError, Recorded, Synthetic, write_curves
from ash.scheduler.results import Results
from ash.scheduler.simulator import simulate
from ash.scheduler.trace import TraceWriter, read_trace
from ash.spec import load_spec
from helpers import EXAMPLES, make_spec
from helpers import run_ash as ash


def test_simulate_example_64_workers_contract(tmp_path: Path) -> None:
    trace, out = tmp_path / "t.jsonl", tmp_path / "out"
    proc = ash(
        "simulate",
        str(EXAMPLES / "iris.toml"),
        "--workers",
        "64",
        "--trace",
        str(trace),
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    events = list(read_trace(trace))
    spec = load_spec(EXAMPLES / "iris.toml")
    assert audit_for(events, spec) == []
    assigns = [e for e in events if e["event"] == "assign"]
    assert {e["worker"] for e in assigns} == {f"w{i}" for i in range(64)}
    assert set(assigns[0]) >= {"event", "t", "trial", "rung", "bracket", "resource", "worker"}
    times = [e["t"] for e in events]
    assert times == sorted(times)
    doc = json.loads((out / "results.json").read_text())
    assert doc["study"] == "iris-mlp"
    assert len(doc["trials"]) == 200
    best = doc["best"]
    assert set(best) == {"trial", "config", "value", "rung", "resource"}
    assert best["resource"] == 27
    finals = [r["value"] for t in doc["trials"] for r in t["results"] if r["resource"] == 27]
    assert best["value"] == min(v for v in finals if v is not None)
    results = [e for e in events if e["event"] == "result"]
    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(results)
    assert {"trial", "rung", "resource", "value", "lr", "activation"} <= set(rows[0])


def test_same_seed_same_trace_other_seed_differs(tmp_path: Path) -> None:
    def run(seed: int, name: str) -> str:
        path = tmp_path / name
        proc = ash(
            "simulate",
            str(EXAMPLES / "iris.toml"),
            "--workers",
            "8",
            "--seed",
            str(seed),
            "--stragglers",
            "0.2",
            "--trace",
            str(path),
            "--quiet",
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == ""
        return path.read_text()

    assert run(1, "a.jsonl") == run(1, "b.jsonl")
    assert run(1, "a2.jsonl") != run(2, "c.jsonl")


@pytest.mark.parametrize("algorithm", ["asha", "asha-stopping", "sha", "hyperband", "random"])
def test_every_algorithm_simulates_to_the_end(algorithm: str) -> None:
    spec = make_spec(algorithm, brackets=2, max_trials=300)
    results = Results("t", "loss", "min", 27)
    buf = io.StringIO()
    stats = simulate(
        spec, Synthetic(spec.space, seed=3), 16, seed=3, trace=TraceWriter(buf), results=results
    )
    events = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert stats.trials == 300
    assert sum(1 for e in events if e["event"] == "result") == stats.results
    assert audit_for(events, spec) == []
    best = results.best()
    assert best is not None and best["resource"] == 27


def test_stragglers_slow_synchronous_sh_more_than_asha() -> None:
    """The paper's point: ASHA keeps workers busy while SH waits for a rung's slowest job."""
    spans = {}
    for algorithm in ("asha", "sha"):
        spec = make_spec(algorithm, max_trials=270)
        stats = simulate(spec, Synthetic(spec.space, seed=0), 27, seed=0, stragglers=0.1)
        spans[algorithm] = stats
    assert spans["asha"].busy_fraction > spans["sha"].busy_fraction


def test_time_limit_is_virtual() -> None:
    spec = make_spec("asha", time_limit_s=50.0)
    stats = simulate(spec, Synthetic(spec.space, cost=1.0), 4, seed=0)
    assert 50.0 <= stats.virtual_seconds < 50.0 + 27 * 1.5 * 2


def test_recorded_curves_replay(tmp_path: Path) -> None:
    path = tmp_path / "curves.json.gz"
    trials = [
        {
            "config": {"x": i / 10, "k": "a"},
            "values": [1.0 - i / 20, 0.9 - i / 20, 0.5 - i / 40],
            "seconds_per_unit": 0.5,
        }
        for i in range(10)
    ]
    trials[3]["values"][1] = None  # a diverged run
    write_curves(path, metric="loss", mode="min", resources=[1, 3, 9], trials=trials)
    spec = make_spec("asha", min_resource=1, max_resource=9, max_trials=40)
    results = Results("t", "loss", "min", 9)
    bench = Recorded(path)
    stats = simulate(spec, bench, 4, results=results)
    assert stats.trials == 40
    best = results.best()
    assert best is not None and best["resource"] == 9
    row = next(t for t in trials if t["config"] == best["config"])
    assert best["value"] == row["values"][2]
    configs = {json.dumps(t.config, sort_keys=True) for t in results.trials.values()}
    assert configs <= {json.dumps(t["config"], sort_keys=True) for t in trials}


def test_bad_benchmarks_exit_2_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "format": "ash-curves",
                "version": 1,
                "metric": "m",
                "mode": "min",
                "resources": [1, 3],
                "trials": [{"config": {}, "values": [1.0], "seconds_per_unit": 1}],
            }
        )
    )
    proc = ash("simulate", str(EXAMPLES / "iris.toml"), "--workers", "2", "--benchmark", str(bad))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{bad}: trials[0].values" in proc.stderr
    proc = ash(
        "simulate",
        str(EXAMPLES / "iris.toml"),
        "--workers",
        "2",
        "--benchmark",
        "synthetic:speed=3",
    )
    assert proc.returncode == 2 and "unknown option" in proc.stderr
    with pytest.raises(BenchmarkError, match="beyond the recording"):
        path = tmp_path / "short.json"
        write_curves(
            path,
            metric="loss",
            mode="min",
            resources=[1],
            trials=[{"config": {"x": 0.5, "k": "a"}, "values": [1.0], "seconds_per_unit": 1.0}],
        )
        simulate(make_spec("asha", max_resource=9), Recorded(path), 1)
    proc = ash("simulate", str(EXAMPLES / "iris.toml"), "--workers", "0")
    assert proc.returncode == 2 and "--workers" in proc.stderr


def test_many_workers() -> None:
    spec = make_spec("asha", max_trials=20_000)
    stats = simulate(spec, Synthetic(spec.space), 10_000, seed=0)
    assert stats.trials == 20_000 and stats.results > 20_000


GRID = """
[study]
metric = "{metric}"
mode = "{mode}"
[asha]
min_resource = 1
max_resource = 9
max_trials = 20
[trainer]
type = "mlp"
[space]
hidden = {{ choice = [8, 16] }}
"""


def _recording(path: Path, metric: str, mode: str, configs: list[dict[str, object]]) -> Path:
    values = [[0.5, 0.6, 0.9], [0.4, 0.5, 0.7]]
    trials = [
        {"config": c, "values": values[i % 2], "seconds_per_unit": 1.0}
        for i, c in enumerate(configs)
    ]
    write_curves(path, metric=metric, mode=mode, resources=[1, 3, 9], trials=trials)
    return path


def test_simulate_refuses_a_recording_that_does_not_fit_the_spec(tmp_path: Path) -> None:
    """A recording of another metric, direction or space is refused naming the file and the
    field (it used to replay silently, ranked by the spec's mode but labelled with the
    recording's: the best reported was the worst)."""
    spec = tmp_path / "grid.toml"
    spec.write_text(GRID.format(metric="val_loss", mode="min"))
    good = [{"hidden": 8}, {"hidden": 16}]
    cases = {
        "acc-max.json": (("acc", "max", good), "metric: the recording is of 'acc'"),
        "loss-max.json": (("val_loss", "max", good), "mode: the recording is 'max'"),
        "zzz.json": (
            ("val_loss", "min", [{"hidden": 8}, {"zzz": 1}]),
            "trials[1].config: 'zzz' is not a parameter of [space]",
        ),
        "outside.json": (
            ("val_loss", "min", [{"hidden": 8}, {"hidden": 32}]),
            "trials[1].config: hidden: value 32 is outside the domain",
        ),
        "missing.json": (("val_loss", "min", [{}]), "trials[0].config: hidden: missing"),
    }
    for name, ((metric, mode, configs), why) in cases.items():
        bench = _recording(tmp_path / name, metric, mode, configs)
        out = tmp_path / f"out-{name}"
        proc = ash(
            "simulate", str(spec), "--workers", "3", "--benchmark", str(bench),
            "--out", str(out), "--quiet",
        )  # fmt: skip
        assert proc.returncode == 2, (name, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert f"{bench}: {why}" in proc.stderr, proc.stderr
        assert not out.exists()
    short = tmp_path / "short.json"
    write_curves(
        short,
        metric="val_loss",
        mode="min",
        resources=[1, 3],
        trials=[{"config": {"hidden": 8}, "values": [1.0, 0.5], "seconds_per_unit": 1.0}],
    )
    proc = ash("simulate", str(spec), "--workers", "3", "--benchmark", str(short), "--quiet")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{short}: resources: the recording ends at 3" in proc.stderr


def test_simulate_ranks_a_max_recording_as_the_spec_says(tmp_path: Path) -> None:
    """A recording that fits a ``mode = "max"`` spec: results carry the spec's metric and mode
    and the best is the highest value."""
    spec = tmp_path / "grid.toml"
    spec.write_text(GRID.format(metric="val_accuracy", mode="max"))
    bench = _recording(
        tmp_path / "acc.json", "val_accuracy", "max", [{"hidden": 8}, {"hidden": 16}]
    )
    out = tmp_path / "out"
    proc = ash(
        "simulate", str(spec), "--workers", "3", "--benchmark", str(bench),
        "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "results.json").read_text())
    assert (doc["metric"], doc["mode"]) == ("val_accuracy", "max")
    assert doc["best"]["config"] == {"hidden": 8} and doc["best"]["value"] == 0.9
    assert "best: trial" in proc.stdout and "val_accuracy=0.9 " in proc.stdout
