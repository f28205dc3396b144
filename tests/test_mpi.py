"""``ash tune --transport mpi`` under a real ``mpiexec`` (the venv's own, from the mpich wheel):
Algorithm 2 on the trace, every worker rank busy, the same study as gRPC, a trainer that kills
its process costing its job (charged, up to max_attempts) and not the MPI job, a kill -9 of
mpiexec and a Ctrl-C resumed from the journal, rank 0 training when asked, and the user's
mistakes (said once, not once per rank)."""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
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

KILLER = """
import json, os, sys, time
from pathlib import Path

def fit(config, start, stop, state):
    done = 0.0 if state is None else json.loads(state)["done"]
    if done != start:
        raise RuntimeError(f"resumed from {done}, expected {start}")
    time.sleep(float(os.environ.get("SLEEP", "0")))
    victim = Path(os.environ["VICTIM"])
    rank = os.environ.get("PMI_RANK", "0")  # Hydra's; a rank's trainer process inherits it
    if stop == 3 and os.environ.get("KILL_RANK", rank) == rank and not victim.exists():
        try:  # the first promotion (on KILL_RANK, if set) picks the victim, once
            fd = os.open(victim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.write(fd, repr(config["x"]).encode())
            os.close(fd)
    if victim.exists() and victim.read_text() == repr(config["x"]):
        os._exit(7)  # that trial's trainer kills its process, every time, on any rank
    if config["x"] > 0.9:
        raise KeyboardInterrupt  # the trainer's own: its result fails, no rank stops
    loss = (config["x"] - 0.3) ** 2 + 1.0 / stop
    return {"loss": loss, "mpi": "mpi4py" in sys.modules}, json.dumps({"done": stop}).encode()
"""


def study(tmp_path: Path, max_trials: int = 30) -> Path:
    """write_study's python study without its 'crash' mode (the killer study below kills its
    process its own way)."""
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


def killer_study(tmp_path: Path) -> Path:
    """The python study with the KILLER trainer: one trial kills its trainer's process at every
    attempt, the trials with x > 0.9 raise KeyboardInterrupt, the others succeed."""
    (tmp_path / "killer.py").write_text(KILLER)
    spec = tmp_path / "study.toml"
    spec.write_text(
        study(tmp_path)
        .read_text()
        .replace("user_trainer:fit", "killer:fit")
        .replace('mode = { choice = ["ok", "ok2", "raise", "nan", "slow"] }', "")
    )
    return spec


def check_killed_trial(
    tmp_path: Path, spec: Path, rank: str, resumed: bool = False
) -> list[dict[str, Any]]:
    """The killer study finished: every trial is there, the one whose trainer kept killing its
    process failed after max_attempts (2) with the deaths in its errors (``resumed``: the last
    of them; the jobs in flight at the stop were lost too, uncharged), the interrupting ones
    failed their results only, the trace obeys Algorithm 2. The trace's events."""
    doc = results(tmp_path / "out")
    assert len(doc["trials"]) == 30 and not doc["interrupted"]
    victim = float((tmp_path / "victim").read_text())
    [dead] = [t for t in doc["trials"] if t["config"]["x"] == victim]
    assert dead["status"] == "failed"
    errors = [e["error"] for e in doc["errors"] if e["trial"] == dead["trial"]]
    died = rf"rank {rank}'s trainer process died \(exit code 7\) in job \d+"
    assert re.fullmatch(
        rf"job \d+ \(rung 1\) lost 2 times, the max_attempts of this study; last: {died}",
        errors[-1],
    ), errors
    if not resumed:
        assert len(errors) == 3, errors  # each death, then the verdict
        assert all(re.fullmatch(died, e) for e in errors[:2]), errors
    others = [e["error"] for e in doc["errors"] if e["trial"] != dead["trial"]]
    assert others and set(others) == {"trainer raised KeyboardInterrupt"}, others
    assert "resumed from" not in " ".join(others)  # every promotion carried its checkpoint
    assert doc["best"]["resource"] == 9
    mpi = {r["metrics"]["mpi"] for t in doc["trials"] for r in t["results"] if r["metrics"]}
    assert mpi == {False}  # the trainer's process never started MPI
    events = list(read_trace(tmp_path / "t.jsonl"))
    assert audit_for(events, load_spec(spec)) == []
    lost = [e["trial"] for e in events if e["event"] == "lost"]
    if not resumed:
        assert lost == [dead["trial"]] * 2, lost
    else:
        assert lost.count(dead["trial"]) >= 2, lost
    return events


def test_a_trainer_that_kills_its_process_costs_its_job_not_the_mpi_job(tmp_path: Path) -> None:
    """Each worker rank trains in a process of its own: the trial whose trainer kills it at
    every attempt is charged each time and fails after max_attempts; the study finishes in one
    run (before, mpiexec ended the job, and a resume re-issued the job uncharged, forever)."""
    spec = killer_study(tmp_path)
    cmd = ["tune", str(spec), "--transport", "mpi", "--trace", "t.jsonl", "--out", "out"]
    proc = run(*cmd, "--quiet", cwd=tmp_path, env={"VICTIM": str(tmp_path / "victim")})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "BAD TERMINATION" not in proc.stderr
    check_killed_trial(tmp_path, spec, r"[12]")


def kill9_then_resume(
    tmp_path: Path, flags: list[str], ranks: int, env: dict[str, str]
) -> list[dict[str, Any]]:
    """Start the killer study with a journal, kill -9 mpiexec once some results are in, then
    run the same command again: it must resume (the jobs in flight lost uncharged) and finish
    as if run once. The trace's events."""
    spec = killer_study(tmp_path)
    cmd = ["tune", str(spec), "--transport", "mpi", *flags, "--journal", "j.jsonl"]
    cmd += ["--trace", "t.jsonl", "--out", "out", "--quiet"]
    env = {**os.environ, "VICTIM": str(tmp_path / "victim"), "SLEEP": "0.05", **env}
    first = subprocess.Popen(
        [str(MPIEXEC), "-n", str(ranks), str(BIN / "ash"), *cmd],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    trace = tmp_path / "t.jsonl"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and first.poll() is None:
            if trace.exists() and trace.read_text().count('"event": "result"') >= 12:
                break
            time.sleep(0.05)
        assert first.poll() is None, "the study ended before it could be killed"
    finally:
        first.kill()
        first.wait()
    assert not (tmp_path / "out" / "results.json").exists()
    unlocked(tmp_path / "j.jsonl")  # the killed job's ranks are gone (Hydra's proxies end them)
    again = run(*cmd, cwd=tmp_path, ranks=ranks, env=env)
    assert again.returncode == 0, again.stderr
    assert "ash: mpi: resumed py from j.jsonl" in again.stderr, again.stderr
    journal = (tmp_path / "j.jsonl").read_text()
    assert '"c":0' in journal  # the jobs in flight at the kill: lost, uncharged
    return check_killed_trial(tmp_path, spec, r"[012]", resumed=True)


def unlocked(journal: Path, timeout: float = 20.0) -> None:
    """Wait until no process holds ``journal``'s lock (a killed rank 0 may take a moment)."""
    fd = os.open(journal, os.O_RDWR)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError:
                assert time.monotonic() < deadline, "the killed rank 0 still holds the journal"
                time.sleep(0.05)
    finally:
        os.close(fd)


def test_a_kill_9_of_mpiexec_resumes_from_the_journal(tmp_path: Path) -> None:
    events = kill9_then_resume(tmp_path, [], 3, {})
    assert {e["worker"] for e in events if e["event"] == "assign"} == {"rank1", "rank2"}


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


def test_rank0_trains_and_a_kill_9_resumes_from_the_journal(tmp_path: Path) -> None:
    events = kill9_then_resume(tmp_path, ["--rank0-trains"], 2, {})
    assert {e["worker"] for e in events if e["event"] == "assign"} == {"rank0", "rank1"}


def test_rank0_trainer_process_dying_costs_its_job_not_the_mpi_job(tmp_path: Path) -> None:
    """Rank 0 trains in a process of its own, as the worker ranks do; one rank alone may train
    with --rank0-trains."""
    spec = killer_study(tmp_path)
    cmd = ["tune", str(spec), "--transport", "mpi", "--rank0-trains", "--trace", "t.jsonl"]
    env = {"VICTIM": str(tmp_path / "victim")}
    proc = run(*cmd, "--out", "out", "--quiet", cwd=tmp_path, ranks=1, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "1 rank (1 worker: rank 0 trains too)" in proc.stderr
    events = check_killed_trial(tmp_path, spec, "0")
    assert {e["worker"] for e in events if e["event"] == "assign"} == {"rank0"}


def test_ctrl_c_stops_every_rank_and_the_journal_resumes(tmp_path: Path) -> None:
    """SIGINT to mpiexec (a user's Ctrl-C; SIGTERM is Slurm's) reaches every rank, not the
    trainers' processes, which ignore it: rank 0 writes what was done and every rank stops."""
    spec = killer_study(tmp_path)
    cmd = ["tune", str(spec), "--transport", "mpi", "--journal", "j.jsonl", "--out", "out"]
    env = {**os.environ, "VICTIM": str(tmp_path / "victim"), "SLEEP": "0.05"}
    proc = subprocess.Popen(
        [str(MPIEXEC), "-n", "3", str(BIN / "ash"), *cmd, "--quiet", "--trace", "t.jsonl"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    trace = tmp_path / "t.jsonl"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if trace.exists() and trace.read_text().count('"event": "result"') >= 6:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    doc = results(tmp_path / "out")
    assert doc["interrupted"] and 0 < len(doc["trials"]) < 30
    again = run(*cmd, "--quiet", "--trace", "t.jsonl", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    check_killed_trial(tmp_path, spec, r"[12]", resumed=True)


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
    """On worker ranks and on rank 0 alike: the job's trainer process is killed."""
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


AGREE = """
import os, signal, sys, threading, time
from ash.link.mpi import Link, import_mpi
from ash.transports.mpi import _Stop, agree

link = Link(import_mpi())

def step():
    if link.rank == 1:
        time.sleep(3)  # rank 0 waits in the collective meanwhile
        raise KeyboardInterrupt  # rank 1's Ctrl-C lands in its step
    # rank 0's lands while it waits in the collective, whose C call holds it until it ends
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    return "ready"

try:
    agree(link, step)
    print(f"rank {link.rank}: went on", flush=True)
except _Stop as stop:
    print(f"rank {link.rank}: stop {stop.code}", flush=True)
"""


def test_a_ctrl_c_that_reaches_the_ranks_at_different_moments_is_said_once(
    tmp_path: Path,
) -> None:
    """mpiexec hands a Ctrl-C to every rank, which may each be anywhere: in its step or waiting
    in the collective (where it is held until the collective ends). Every rank stops with 130
    and "interrupted" is said once, by rank 0, not by rank 1 and then again by rank 0."""
    script = tmp_path / "agree.py"
    script.write_text(AGREE)
    got = subprocess.run(
        [str(MPIEXEC), "-n", "2", sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    said = sorted(re.findall(r"rank \d: [a-z ]+\d*", got.stdout))  # (the lines may interleave)
    assert said == ["rank 0: stop 130", "rank 1: stop 130"], got
    assert got.stderr.count("interrupted") == 1 and "Traceback" not in got.stderr, got.stderr


SPOILER = """
import os, pathlib, shutil, time

def fit(config, start, stop, state):  # spoils --out (a file in its place), then takes a while
    out = pathlib.Path(os.environ["OUT"])
    try:
        if out.is_dir():
            shutil.rmtree(out)
            out.write_text("a file in place of the folder")
    except OSError:
        pass  # another rank did it
    time.sleep(1)
    return {"loss": (config["x"] - 0.3) ** 2 + 1 / stop}, None
"""


def test_a_full_journal_disk_that_also_refuses_out_aborts_the_job(tmp_path: Path) -> None:
    """The journal's disk fills while other ranks run jobs, and --out cannot be written
    either (the same full disk): both are said and the job is aborted, not left waiting
    (review 12, F1)."""
    (tmp_path / "spoiler.py").write_text(SPOILER)
    (tmp_path / "study.toml").write_text(
        study(tmp_path).read_text().replace("user_trainer:fit", "spoiler:fit")
    )
    tests = Path(__file__).resolve().parent
    fill = "import fulldisk; fulldisk.run(900, 'ash')"
    args = ["tune", "study.toml", "--transport", "mpi", "--out", "out", "--journal", "j.jsonl"]
    got = subprocess.run(
        [str(MPIEXEC), "-n", "3", sys.executable, "-c", fill, *args, "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OUT": str(tmp_path / "out"), "PYTHONPATH": f"{tests}:{tmp_path}"},
        check=False,
    )
    assert got.returncode == 1, got.stderr
    assert "--out out: the results could not be written" in got.stderr, got.stderr
    assert "j.jsonl: write failed (No space left on device)" in got.stderr, got.stderr
    assert "aborting the MPI job" in got.stderr
