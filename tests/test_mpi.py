"""``ash tune --transport mpi`` under a real ``mpiexec`` (the venv's own, from the mpich wheel):
Algorithm 2 on the trace, every worker rank busy, the same study as gRPC, a dead rank ending the
job and the journal resuming it, rank 0 training when asked, and the user's mistakes (said once,
not once per rank)."""

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
from ash.scheduler.trace import read_trace
from ash.spec import load_spec
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
    rank = os.environ.get("PMI_RANK", "0")  # Hydra's; rank 0's trainer process inherits it
    if stop == 3 and os.environ.get("CRASH_RANK", rank) == rank and not marker.exists():
        marker.touch()  # the first promotion (on CRASH_RANK, if set) kills its process, once
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
        *common,
        *("--transport", "grpc", "--workers", "1", "--prefetch", "0", "--out", "grpc"),
        cwd=tmp_path,
        ranks=None,
    )
    assert grpc.returncode == 0, grpc.stderr
    assert results(tmp_path / "mpi") == results(tmp_path / "grpc")


def test_a_dead_rank_ends_the_job_and_the_same_command_resumes_it(tmp_path: Path) -> None:
    crash_then_resume(tmp_path, [], 3, {})


def crash_then_resume(
    tmp_path: Path, flags: list[str], ranks: int, env: dict[str, str]
) -> list[dict[str, Any]]:
    """Run the crashy study with a journal until a rank dies, then the same command again:
    it must resume and finish with every trial, a trace that obeys Algorithm 2 and the dead
    rank's job traced as lost. The trace's events."""
    spec = crashy_study(tmp_path)
    cmd = ["tune", str(spec), "--transport", "mpi", *flags, "--journal", "j.jsonl"]
    cmd += ["--trace", "t.jsonl", "--out", "out", "--quiet"]
    env = {"CRASH_MARKER": str(tmp_path / "marker"), **env}
    first = run(*cmd, cwd=tmp_path, ranks=ranks, env=env)
    assert first.returncode != 0, first.stderr
    assert (tmp_path / "marker").exists()
    assert not (tmp_path / "out" / "results.json").exists()  # (--out is made at the start)
    again = run(*cmd, cwd=tmp_path, ranks=ranks, env=env)
    assert again.returncode == 0, again.stderr
    assert "ash: mpi: resumed py from j.jsonl" in again.stderr
    doc = results(tmp_path / "out")
    assert len(doc["trials"]) == 30 and doc["errors"] == [] and not doc["interrupted"]
    events = list(read_trace(tmp_path / "t.jsonl"))
    assert audit_for(events, load_spec(spec)) == []
    assert any(e["event"] == "lost" for e in events)  # the dead rank's job, re-issued
    return events


def crashy_study(tmp_path: Path) -> Path:
    (tmp_path / "crashy.py").write_text(CRASHY)
    spec = tmp_path / "study.toml"
    spec.write_text(
        study(tmp_path)
        .read_text()
        .replace("user_trainer:fit", "crashy:fit")
        .replace('mode = { choice = ["ok", "ok2", "raise", "nan", "slow"] }', "")
    )
    return spec


def test_rank0_trains_when_asked(tmp_path: Path) -> None:
    spec = study(tmp_path)
    args = ["tune", str(spec), "--transport", "mpi", "--rank0-trains", "--out", "out"]
    proc = run(*args, "--trace", "t.jsonl", cwd=tmp_path, ranks=2, env={"SLEEP": "0.02"})
    assert proc.returncode == 0, proc.stderr
    banner = re.search(
        r"ash: mpi: 2 ranks \(2 workers: rank 0 trains too\) on 1 node, (\d+) threads? per rank",
        proc.stderr,
    )
    assert banner, proc.stderr
    if (os.cpu_count() or 1) <= 2:
        assert banner.group(1) == "1"  # both ranks train: the cores are shared by two
    events = list(read_trace(tmp_path / "t.jsonl"))
    assert audit_for(events, load_spec(spec)) == []
    assert {e["worker"] for e in events if e["event"] == "assign"} == {"rank0", "rank1"}
    doc = results(tmp_path / "out")
    assert len(doc["trials"]) == 30 and doc["best"]["resource"] == 9
    errors = " ".join(e["error"] for e in doc["errors"])
    assert "bad trial" in errors and "resumed from" not in errors
    threads = {r["metrics"]["threads"] for t in doc["trials"] for r in t["results"] if r["metrics"]}
    assert threads == {int(banner.group(1))}  # rank 0's jobs too ran within its budget


def test_rank0_trains_and_a_dead_rank_resumes_from_the_journal(tmp_path: Path) -> None:
    events = crash_then_resume(tmp_path, ["--rank0-trains"], 2, {"CRASH_RANK": "1"})
    assert {e["worker"] for e in events if e["event"] == "assign"} == {"rank0", "rank1"}


def test_rank0_trainer_process_dying_costs_its_job_not_the_mpi_job(tmp_path: Path) -> None:
    """Rank 0 trains in a process of its own: when that dies the job is lost and re-issued (a
    worker rank's death would end the MPI job). One rank alone may train with --rank0-trains."""
    spec = crashy_study(tmp_path)
    cmd = ["tune", str(spec), "--transport", "mpi", "--rank0-trains", "--trace", "t.jsonl"]
    env = {"CRASH_MARKER": str(tmp_path / "marker"), "CRASH_RANK": "0"}
    proc = run(*cmd, "--out", "out", "--quiet", cwd=tmp_path, ranks=1, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "1 rank (1 worker: rank 0 trains too)" in proc.stderr
    assert (tmp_path / "marker").exists()
    doc = results(tmp_path / "out")
    assert len(doc["trials"]) == 30 and not doc["interrupted"]
    [died] = [e["error"] for e in doc["errors"]]
    assert re.fullmatch(r"rank 0's trainer process died \(exit code 7\) in job \d+", died)
    events = list(read_trace(tmp_path / "t.jsonl"))
    assert audit_for(events, load_spec(spec)) == []
    assert {e["worker"] for e in events if e["event"] == "assign"} == {"rank0"}
    assert sum(e["event"] == "lost" for e in events) == 1  # the job, re-issued


def said(stderr: str, text: str) -> int:
    return stderr.count(text)


def test_user_mistakes_are_said_once_and_every_rank_exits_2(tmp_path: Path) -> None:
    spec = study(tmp_path, max_trials=5)

    def once(proc: subprocess.CompletedProcess[str], text: str) -> None:
        assert proc.returncode == 2, proc.stderr
        assert said(proc.stderr, text) == 1, proc.stderr
        assert said(proc.stderr, "error") == 1, proc.stderr  # one error, one line about it
        for noise in ("Traceback", "BAD TERMINATION", "Abort", "ash: mpi:"):
            assert noise not in proc.stderr

    alone = run("tune", str(spec), "--transport", "mpi", cwd=tmp_path, ranks=None)
    once(alone, "needs at least 2 MPI ranks")
    once(
        run("tune", str(spec), "--transport", "mpi", "--workers", "2", cwd=tmp_path),
        "--workers does not apply",
    )
    bad = tmp_path / "bad.toml"
    bad.write_text(spec.read_text().replace('metric = "loss"', "metric = 3"))
    once(run("tune", str(bad), "--transport", "mpi", cwd=tmp_path), "study.metric")
    once(run("tune", "nowhere.toml", "--transport", "mpi", cwd=tmp_path), "nowhere.toml")
    flag = run("tune", str(spec), "--transport", "mpi", "--threads", "0", cwd=tmp_path)
    once(flag, "argument --threads: must be >= 1")
    assert said(flag.stderr, "usage:") == 1
    entry = tmp_path / "entry.toml"
    entry.write_text(spec.read_text().replace("user_trainer:fit", "nowhere:fit"))
    once(run("tune", str(entry), "--transport", "mpi", cwd=tmp_path), "cannot import 'nowhere'")
    (tmp_path / "j.jsonl").write_text("not a journal\n")  # only rank 0 opens it
    journal = run("tune", str(spec), "--transport", "mpi", "--journal", "j.jsonl", cwd=tmp_path)
    once(journal, "not an ash journal")
    # a mistake only one rank makes (here a module that rank 1 cannot import): that rank says
    # it, and no rank is left waiting for the others
    (tmp_path / "rank1_only.py").write_text(
        "import os\n"
        "if os.environ.get('PMI_RANK') == '1':\n"
        "    raise ImportError('not on this node')\n"
        "from user_trainer import fit  # noqa: F401\n"
    )
    node = tmp_path / "node.toml"
    node.write_text(spec.read_text().replace("user_trainer:fit", "rank1_only:fit"))
    one = run("tune", str(node), "--transport", "mpi", cwd=tmp_path)
    once(one, "ash: rank 1: error: trainer.entrypoint 'rank1_only:fit': cannot import")
    once(
        run("tune", str(spec), "--rank0-trains", cwd=tmp_path, ranks=None),
        "--rank0-trains applies to --transport mpi only",
    )
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


@pytest.mark.parametrize("rank0", [False, True], ids=["worker-ranks", "rank0-alone"])
def test_trainer_timeout_fails_the_job_not_the_rank(tmp_path: Path, rank0: bool) -> None:
    """On worker ranks (SIGALRM in-process) and in rank 0's trainer process (killed)."""
    spec = study(tmp_path, max_trials=8)  # seed 3: trials 0, 1, 2 and 7 draw mode = "slow"
    text = spec.read_text().replace('"user_trainer:fit"', '"user_trainer:fit"\ntimeout_s = 0.5')
    spec.write_text(text)
    flags = ["--rank0-trains"] if rank0 else []
    proc = run(
        *["tune", str(spec), "--transport", "mpi", *flags, "--out", "out"],
        cwd=tmp_path,
        ranks=1 if rank0 else 3,
        env={"SLOW": "60"},
    )
    assert proc.returncode == 0, proc.stderr
    doc = results(tmp_path / "out")
    slow = {t["trial"] for t in doc["trials"] if t["config"]["mode"] == "slow"}
    timed_out = {e["trial"] for e in doc["errors"] if "timed out after 0.5 s" in e["error"]}
    assert slow and timed_out == slow and len(doc["trials"]) == 8


def test_only_mpi_runs_keep_ranks_above_0_quiet_before_mpi_starts() -> None:
    from ash.transports.mpi import wants_mpi

    assert wants_mpi(["tune", "s.toml", "--transport", "mpi"])
    assert wants_mpi(["tune", "s.toml", "--transport=mpi", "--threads", "0"])
    assert wants_mpi(["tune", "s.toml", "--tran", "mpi"])  # argparse takes unique prefixes
    assert not wants_mpi(["tune", "s.toml", "--tra", "mpi"])  # --trace or --transport
    assert not wants_mpi(["tune", "s.toml", "--transport", "grpc"])
    assert not wants_mpi(["tune", "s.toml", "--transport"])


def test_a_journal_in_use_is_refused_by_mpi_rank_0_and_embedded_tune(tmp_path: Path) -> None:
    """One study, one owner: while an ash-scheduler holds the journal, neither an MPI job's
    rank 0 nor an embedded ash tune may take it; each says who holds it, once, and exits 2."""
    from helpers import Scheduler

    spec = study(tmp_path, max_trials=5)
    holder = Scheduler(spec, tmp_path, "--journal", "j.jsonl")
    try:
        mpi = run("tune", str(spec), "--transport", "mpi", "--journal", "j.jsonl", cwd=tmp_path)
        assert mpi.returncode == 2, mpi.stderr
        assert said(mpi.stderr, f"j.jsonl: in use by pid {holder.proc.pid}") == 1, mpi.stderr
        assert "Traceback" not in mpi.stderr
        embedded = run("tune", str(spec), "--journal", "j.jsonl", cwd=tmp_path, ranks=None)
        assert embedded.returncode == 2, embedded.stderr
        assert f"in use by pid {holder.proc.pid}" in embedded.stderr
        assert "Traceback" not in embedded.stderr
    finally:
        holder.kill()
