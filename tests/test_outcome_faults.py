"""The end of an embedded study (``ash tune``, ``ash.tune``): writing its results.

An ``--out`` that cannot be written when the study ends (a file put in place of its folder, a
full disk, a permission) is one line naming the folder and the OS's reason, the callbacks are
ended all the same, and the journal writes the results on the next run. A second Ctrl-C (or a
SIGTERM) while the results are written waits for them: the study is written whole. Real
processes, real signals: each script holds ``write_outcome`` at its start until the test has
sent its signal (markers, no sleeps).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import run_ash

SPEC = """
[study]
name = "end"
metric = "loss"
seed = 1
algorithm = "asha"
[asha]
min_resource = 1
max_resource = 3
reduction_factor = 3
max_trials = 6
[trainer]
type = "python"
entrypoint = "{module}:fit"
[space]
x = {{ uniform = [0.0, 1.0] }}
"""

# the trainer spoils --out (CLOBBER=file: a file in place of the folder; CLOBBER=blocked: a
# folder where results.json's temporary file goes) while the study runs
CLOBBER = """
import os, pathlib, shutil

def fit(config, start, stop, state):
    out = pathlib.Path(os.environ["OUT"])
    how = os.environ.get("CLOBBER")
    try:
        if how == "file" and out.is_dir():
            shutil.rmtree(out)
            out.write_text("a file in place of the folder")
        elif how == "blocked":
            (out / "results.json.tmp").mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # the other slot did it
    return {"loss": (config["x"] - 0.3) ** 2 + 1 / stop}, None
"""


@pytest.mark.parametrize("how", ["file", "blocked"])
def test_an_out_that_cannot_be_written_is_one_line_and_the_journal_writes_it_later(
    tmp_path: Path, how: str
) -> None:
    (tmp_path / "clobber.py").write_text(CLOBBER)
    (tmp_path / "study.toml").write_text(SPEC.format(module="clobber"))
    out = tmp_path / "out"
    args = ["tune", "study.toml", "--workers", "2", "--threads", "1", "--quiet"]
    args += ["--out", "out", "--journal", "j.jsonl"]
    got = run_ash(*args, cwd=tmp_path, env={"OUT": str(out), "CLOBBER": how})
    assert got.returncode == 2, got.stderr
    assert "Traceback" not in got.stderr
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1, got.stderr
    why = "it exists and is not a directory" if how == "file" else "Is a directory"
    assert lines[0].startswith("ash: error: --out out: the results could not be written ("), lines
    assert why in lines[0] and "the journal j.jsonl keeps the study" in lines[0], lines
    if how == "file":
        out.unlink()
    else:
        (out / "results.json.tmp").rmdir()
    again = run_ash(*args, cwd=tmp_path, env={"OUT": str(out)})
    assert again.returncode == 0, again.stderr
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["trials"]) == 6 and doc["interrupted"] is False
    assert {t["status"] for t in doc["trials"]} <= {"completed", "stopped"}, doc["trials"]


def test_an_out_that_cannot_be_written_still_ends_the_callbacks(tmp_path: Path) -> None:
    """``ash.tune``: ResultsNotWritten (a UserError), with the document it could not write;
    every callback hears the study end (an MLflow run is not left open)."""
    script = tmp_path / "api.py"
    script.write_text(
        CLOBBER + "import ash\n"
        "from ash.integrations import Callback\n"
        "from ash.errors import UserError\n"
        "class Log(Callback):\n"
        "    def on_study_end(self, doc):\n"
        "        print('study_end', doc, flush=True)\n"
        "if __name__ == '__main__':\n"
        "    try:\n"
        "        ash.tune(fit, space={'x': {'uniform': [0, 1]}}, max_resource=1, max_trials=4,\n"
        "                 workers=2, threads=1, quiet=True, out='out', callbacks=[Log()])\n"
        "    except UserError as exc:\n"
        "        print('error', exc, flush=True)\n"
        "        print('trials', len(exc.doc['trials']), flush=True)\n"
    )
    got = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "OUT": str(tmp_path / "out"), "CLOBBER": "file"},
        check=False,
    )
    assert got.returncode == 0, got.stderr
    assert "Traceback" not in got.stderr
    lines = got.stdout.splitlines()
    assert lines[0] == "study_end None", got.stdout
    assert lines[1] == (
        "error --out out: the results could not be written (it exists and is not a directory);"
        " there is no --journal to write them from later"
    )
    assert lines[2] == "trials 4"


# the trainer marks that it runs (and runs until the slot is stopped with "long"); the
# results are held at the start of write_outcome until the test creates "go"
HELD = """
import os, pathlib, sys, time
import ash, ash.cli
import ash.scheduler.outcome as outcome
from ash.integrations import Callback

class Log(Callback):
    def on_study_end(self, doc):
        print("study_end", None if doc is None else doc["interrupted"], flush=True)

def fit(config, start, stop, state):
    pathlib.Path(f"running-{os.getpid()}").touch()
    while os.environ.get("LONG"):
        time.sleep(1)  # until the slot is stopped
    return {"loss": config["x"]}, None

write = outcome.write_outcome

def held(*a, **k):
    pathlib.Path("writing").touch()
    while not pathlib.Path("go").exists():
        time.sleep(0.01)
    return write(*a, **k)

outcome.write_outcome = held

if __name__ == "__main__":
    if sys.argv[1] == "cli":
        sys.exit(ash.cli.main(["tune", "study.toml", "--workers", "2", "--threads", "1",
                               "--out", "out", "--quiet"]))
    try:
        doc = ash.tune(fit, space={"x": {"uniform": [0, 1]}}, max_resource=3, max_trials=6,
                       workers=2, threads=1, quiet=True, out="out", callbacks=[Log()])
        print("returned", doc["interrupted"], flush=True)
    except KeyboardInterrupt:
        print("raised KeyboardInterrupt", flush=True)
"""


def _wait_for(marker: str, cwd: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120  # against a hang only
    while not list(cwd.glob(marker)):
        assert proc.poll() is None, f"exited {proc.returncode} before {marker}"
        assert time.monotonic() < deadline, f"no {marker}"
        time.sleep(0.02)


def _signal(proc: subprocess.Popen[str], sig: int) -> None:
    """Send ``sig`` and wait until the process took it (no longer pending), so that its
    handler runs before anything the test does next."""
    proc.send_signal(sig)
    deadline = time.monotonic() + 60
    while True:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        pending = [int(line.split()[1], 16) for line in status.splitlines() if "Pnd:" in line]
        if not any(mask >> (sig - 1) & 1 for mask in pending):
            return
        assert time.monotonic() < deadline, "the signal stays pending"
        time.sleep(0.01)


@pytest.mark.parametrize(
    ("via", "first", "second"),
    [
        ("api", signal.SIGINT, signal.SIGINT),  # Ctrl-C, and Ctrl-C again while it writes
        ("cli", signal.SIGINT, signal.SIGINT),
        ("api", signal.SIGTERM, signal.SIGINT),
        ("api", None, signal.SIGINT),  # the study finished: Ctrl-C while it writes
        ("cli", None, signal.SIGTERM),
    ],
    ids=["api-int-int", "cli-int-int", "api-term-int", "api-finished-int", "cli-finished-term"],
)
def test_a_signal_while_the_results_are_written_waits_for_them(
    tmp_path: Path, via: str, first: int | None, second: int
) -> None:
    (tmp_path / "held.py").write_text(HELD)
    (tmp_path / "study.toml").write_text(SPEC.format(module="held"))
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    env = {**os.environ, **({"LONG": "1"} if first is not None else {})}
    with open(stdout, "w") as o, open(stderr, "w") as e:
        proc = subprocess.Popen(
            [sys.executable, "held.py", via], cwd=tmp_path, env=env, stdout=o, stderr=e, text=True
        )
    try:
        if first is not None:
            _wait_for("running-*", tmp_path, proc)
            _signal(proc, first)  # stops the study
        _wait_for("writing", tmp_path, proc)
        _signal(proc, second)  # while its results are written
        (tmp_path / "go").touch()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out, err = stdout.read_text(), stderr.read_text()
    assert "Traceback" not in err, err
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["interrupted"] is (first is not None)  # the first signal stopped the study
    if first is None:
        assert len(doc["trials"]) == 6  # the study had finished
    if via == "cli":
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1].startswith("ash: interrupted"), err
    elif first is not None:
        assert proc.returncode == 0, err
        assert out.splitlines() == ["study_end True", "returned True"], out
    else:  # the Ctrl-C is raised once the results are written and the callbacks ended
        assert proc.returncode == 0, err
        assert out.splitlines() == ["study_end False", "raised KeyboardInterrupt"], out


def test_the_scheduler_service_ends_its_callbacks_when_out_cannot_be_written(
    tmp_path: Path,
) -> None:
    """ash-scheduler: an --out spoilt during the study is one line (exit 2), and every MLflow
    run it opened is ended, none left RUNNING."""
    from mlflow.tracking import MlflowClient

    from helpers import Scheduler, worker

    (tmp_path / "clobber.py").write_text(CLOBBER)
    (tmp_path / "study.toml").write_text(SPEC.format(module="clobber"))
    uri = f"sqlite:///{tmp_path}/m.db"
    s = Scheduler(tmp_path / "study.toml", tmp_path, "--out", "out", "--mlflow", uri)
    env = {"OUT": str(tmp_path / "out"), "CLOBBER": "file"}
    w = worker(s.target, tmp_path, "w0", env=env)
    try:
        code = s.wait(timeout=120)
        err = s.proc.stderr.read() if s.proc.stderr else ""
    finally:
        s.kill()
        w.kill()
        w.wait()
    assert code == 2, err
    assert "Traceback" not in err and "--out out: the results could not be written" in err, err
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("end")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 6 and "RUNNING" not in {r.info.status for r in runs}, runs


def test_a_write_that_hangs_is_abandoned_at_the_third_interrupt(tmp_path: Path) -> None:
    """While the results are written a Ctrl-C is held, and the first one held says how to
    give up; the third gives up the writing (a dead network file system must not make the
    process unstoppable but by SIGKILL): KeyboardInterrupt, the callbacks ended, no results
    (review 12, F5)."""
    (tmp_path / "held.py").write_text(HELD)
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with open(stdout, "w") as o, open(stderr, "w") as e:
        proc = subprocess.Popen(
            [sys.executable, "held.py", "api"],
            cwd=tmp_path,
            env={**os.environ, "LONG": "1"},
            stdout=o,
            stderr=e,
            text=True,
        )
    try:
        _wait_for("running-*", tmp_path, proc)
        _signal(proc, signal.SIGINT)  # stops the study
        _wait_for("writing", tmp_path, proc)  # which then never gets its "go"
        for _ in range(3):
            _signal(proc, signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out, err = stdout.read_text(), stderr.read_text()
    assert "ash: writing the results; 2 more interrupts abandon them" in err, err
    assert out.splitlines() == ["study_end None", "raised KeyboardInterrupt"], (out, err)
    assert not (tmp_path / "out" / "results.json").exists()
