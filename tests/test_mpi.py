"""``ash tune --transport mpi`` under a real ``mpiexec`` (the venv's own, from the mpich wheel):
Algorithm 2 on the trace, every worker rank busy, the same study as gRPC, a dead rank ending the
job and the journal resuming it, and the user's mistakes."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ash.scheduler.audit import audit_for
from ash.scheduler.spec import load_spec
from ash.scheduler.trace import read_trace
from helpers import BIN, write_study

MPIEXEC = BIN / "mpiexec"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or not MPIEXEC.exists(),
    reason=f"needs mpi4py and {MPIEXEC} (pip install mpi4py mpich, or the test extra)",
)

CRASHY = """
import json, os
from pathlib import Path

def fit(config, start, stop, state):
    done = 0.0 if state is None else json.loads(state)["done"]
    if done != start:
        raise RuntimeError(f"resumed from {done}, expected {start}")
    marker = Path(os.environ["CRASH_MARKER"])
    if stop == 3 and not marker.exists():  # the first promotion kills its rank, once
        marker.touch()
        os._exit(7)
    return {"loss": (config["x"] - 0.3) ** 2 + 1.0 / stop}, json.dumps({"done": stop}).encode()
"""


def study(tmp_path: Path, max_trials: int = 30) -> Path:
    """write_study's python study without its 'crash' mode: under MPI a dead rank ends the job."""
    spec = write_study(tmp_path, max_trials)
    spec.write_text(spec.read_text().replace('"crash", ', ""))
    return spec


def run(
    *args: str, cwd: Path, ranks: int | None = 3, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``ash ARGS`` (under ``mpiexec -n RANKS`` unless ranks is None)."""
    launcher = [] if ranks is None else [str(MPIEXEC), "-n", str(ranks)]
    return subprocess.run(
        [*launcher, str(BIN / "ash"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "SLEEP": "0", "SLOW": "0", **(env or {})},
    )


def results(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((out / "results.json").read_text())
    return doc


@pytest.fixture(scope="module")
def mpi3(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One 30-trial study under mpiexec -n 3, shared by the tests that read it."""
    tmp = tmp_path_factory.mktemp("mpi3")
    spec = study(tmp)
    proc = run(
        "tune", str(spec), "--transport", "mpi", "--out", "out", "--trace", "t.jsonl", cwd=tmp
    )
    return spec, proc


def test_every_rank_works_and_the_trace_obeys_algorithm_2(
    mpi3: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    spec, proc = mpi3
    assert proc.returncode == 0, proc.stderr
    banner = re.search(
        r"ash: mpi: 3 ranks \(2 workers\) on 1 node, (\d+) threads? per rank", proc.stderr
    )
    assert banner, proc.stderr
    events = list(read_trace(spec.parent / "t.jsonl"))
    assert audit_for(events, load_spec(spec)) == []
    assert {e["worker"] for e in events if e["event"] == "assign"} == {"rank1", "rank2"}
    doc = results(spec.parent / "out")
    assert len(doc["trials"]) == 30 and doc["best"]["resource"] == 9
    errors = " ".join(e["error"] for e in doc["errors"])
    assert "bad trial" in errors  # a trainer's exception failed its result, not its rank
    assert "resumed from" not in errors  # every promotion carried its checkpoint
    threads = {r["metrics"]["threads"] for t in doc["trials"] for r in t["results"] if r["metrics"]}
    assert threads == {int(banner.group(1))}  # the budget was set in the thread that trains


def test_grpc_and_mpi_studies_have_the_same_shape(
    mpi3: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    spec, proc = mpi3
    assert proc.returncode == 0, proc.stderr
    cwd = spec.parent
    args = ["tune", str(spec), "--transport", "grpc", "--workers", "2", "--out", "grpc", "--quiet"]
    grpc = run(*args, cwd=cwd, ranks=None)
    assert grpc.returncode == 0, grpc.stderr
    a, b = results(cwd / "out"), results(cwd / "grpc")
    assert a.keys() == b.keys() and a["best"].keys() == b["best"].keys()
    assert len(a["trials"]) == len(b["trials"]) == 30
    assert [t.keys() for t in a["trials"]] == [t.keys() for t in b["trials"]]
    keys = {tuple(r) for d in (a, b) for t in d["trials"] for r in t["results"]}
    assert len(keys) == 1


def test_one_worker_rank_runs_the_very_study_of_one_grpc_worker(tmp_path: Path) -> None:
    """The core is deterministic: with one sequential worker both transports feed it the same
    inputs in the same order, so the documents must be identical."""
    spec = study(tmp_path, max_trials=20)
    common = ["tune", str(spec), "--threads", "1", "--quiet"]
    mpi = run(*common, "--transport", "mpi", "--out", "mpi", cwd=tmp_path, ranks=2)
    assert mpi.returncode == 0, mpi.stderr
    assert "2 ranks (1 worker) on 1 node, 1 thread per rank" in mpi.stderr
    grpc = run(
        *common, "--transport", "grpc", "--workers", "1", "--out", "grpc", cwd=tmp_path, ranks=None
    )
    assert grpc.returncode == 0, grpc.stderr
    assert results(tmp_path / "mpi") == results(tmp_path / "grpc")


def test_a_dead_rank_ends_the_job_and_the_same_command_resumes_it(tmp_path: Path) -> None:
    (tmp_path / "crashy.py").write_text(CRASHY)
    spec = tmp_path / "study.toml"
    spec.write_text(
        study(tmp_path)
        .read_text()
        .replace("user_trainer:fit", "crashy:fit")
        .replace('mode = { choice = ["ok", "ok2", "raise", "nan", "slow"] }', "")
    )
    cmd = ["tune", str(spec), "--transport", "mpi", "--journal", "j.jsonl", "--trace", "t.jsonl"]
    cmd += ["--out", "out", "--quiet"]
    env = {"CRASH_MARKER": str(tmp_path / "marker")}
    first = run(*cmd, cwd=tmp_path, env=env)
    assert first.returncode != 0, first.stderr
    assert (tmp_path / "marker").exists() and not (tmp_path / "out").exists()
    again = run(*cmd, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert "ash: mpi: resumed py from j.jsonl" in again.stderr
    doc = results(tmp_path / "out")
    assert len(doc["trials"]) == 30 and doc["errors"] == [] and not doc["interrupted"]
    events = list(read_trace(tmp_path / "t.jsonl"))
    assert audit_for(events, load_spec(spec)) == []
    assert any(e["event"] == "lost" for e in events)  # the dead rank's job, re-issued


def test_user_mistakes_exit_2_with_one_line(tmp_path: Path) -> None:
    spec = study(tmp_path, max_trials=5)
    alone = run("tune", str(spec), "--transport", "mpi", cwd=tmp_path, ranks=None)
    assert alone.returncode == 2 and "needs at least 2 MPI ranks" in alone.stderr
    workers = run("tune", str(spec), "--transport", "mpi", "--workers", "2", cwd=tmp_path)
    assert workers.returncode == 2 and "--workers does not apply" in workers.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(spec.read_text().replace("user_trainer:fit", "nowhere:fit"))
    entry = run("tune", str(bad), "--transport", "mpi", cwd=tmp_path)  # every rank must stop
    assert entry.returncode == 2 and "cannot import 'nowhere'" in entry.stderr
    assert "Traceback" not in entry.stderr
    no_mpi = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['mpi4py'] = None; from ash.cli import main; "
            f"sys.exit(main(['tune', {str(spec)!r}, '--transport', 'mpi']))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert no_mpi.returncode == 2 and "ash-hpo[mpi]" in no_mpi.stderr
    assert "Traceback" not in no_mpi.stderr


def test_trainer_timeout_fails_the_job_not_the_rank(tmp_path: Path) -> None:
    spec = study(tmp_path, max_trials=8)  # seed 3: trials 0, 1, 2 and 7 draw mode = "slow"
    text = spec.read_text().replace('"user_trainer:fit"', '"user_trainer:fit"\ntimeout_s = 0.5')
    spec.write_text(text)
    proc = run(
        "tune", str(spec), "--transport", "mpi", "--out", "out", cwd=tmp_path, env={"SLOW": "60"}
    )
    assert proc.returncode == 0, proc.stderr
    doc = results(tmp_path / "out")
    slow = {t["trial"] for t in doc["trials"] if t["config"]["mode"] == "slow"}
    timed_out = {e["trial"] for e in doc["errors"] if "timed out after 0.5 s" in e["error"]}
    assert slow and timed_out == slow and len(doc["trials"]) == 8
