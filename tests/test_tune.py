"""``ash tune`` and ``ash.tune``: real worker processes, real trainers, the files of --out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import ash
from ash.scheduler.audit import audit_for
from ash.scheduler.trace import read_trace
from ash.spec import load_spec
from helpers import BIN, EXAMPLES, PY_SPEC, run_script, write_study
from helpers import run_ash as ash_cli


def test_tune_python_trainer_resumes_and_survives_failures(tmp_path: Path) -> None:
    spec = write_study(tmp_path)
    proc = ash_cli(
        "tune",
        str(spec),
        "--workers",
        "2",
        "--threads",
        "1",
        "--out",
        "out",
        "--trace",
        "t.jsonl",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out/results.json").read_text())
    assert len(doc["trials"]) == 24
    by_mode: dict[str, set[str]] = {}
    for t in doc["trials"]:
        by_mode.setdefault(t["config"]["mode"], set()).add(t["status"])
    assert by_mode.get("raise", {"failed"}) == {"failed"}
    assert by_mode.get("nan", {"failed"}) == {"failed"}
    assert by_mode.get("crash", {"failed"}) == {"failed"}  # re-leased, then failed after 2 attempts
    errors = " ".join(e["error"] for e in doc["errors"])
    assert "resumed from" not in errors  # every promotion resumed from its checkpoint
    assert doc["best"]["resource"] == 9 and doc["best"]["config"]["mode"].startswith("ok")
    assert all(r["metrics"].get("threads", 1) == 1 for t in doc["trials"] for r in t["results"])
    events = list(read_trace(tmp_path / "t.jsonl"))
    assert audit_for(events, load_spec(spec)) == []
    assert any(e["event"] == "lost" for e in events) == ("crash" in by_mode)
    died = [e for e in doc["errors"] if "worker process died" in e["error"]]
    crashed = {t["trial"] for t in doc["trials"] if t["config"]["mode"] == "crash"}
    assert bool(died) == bool(crashed)
    assert all(e["trial"] in crashed for e in died)  # under the trial whose job it ran, not -1
    for name in ("trials.csv", "report.html"):
        assert (tmp_path / "out" / name).exists()
    assert "best trials" in proc.stdout


def test_threads_reach_the_kernel(tmp_path: Path) -> None:
    spec = write_study(tmp_path, max_trials=4)
    proc = ash_cli(
        "tune", str(spec), "--workers", "1", "--threads", "2", "--out", "o", "--quiet", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "o/results.json").read_text())
    seen = {r["metrics"]["threads"] for t in doc["trials"] for r in t["results"] if r["metrics"]}
    assert seen == {2}


def test_iris_example_end_to_end(tmp_path: Path) -> None:
    text = (EXAMPLES / "iris.toml").read_text().replace("max_trials = 200", "max_trials = 30")
    spec = tmp_path / "iris.toml"
    spec.write_text(text)
    proc = ash_cli("tune", str(spec), "--out", "out", "--trace", "t.jsonl", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out/results.json").read_text())
    best = doc["best"]
    assert best["resource"] == 27
    metrics = next(
        r["metrics"]
        for t in doc["trials"]
        if t["trial"] == best["trial"]
        for r in t["results"]
        if r["resource"] == 27
    )
    assert set(metrics) == {"val_loss", "val_accuracy", "train_loss"}
    assert metrics["val_accuracy"] >= 0.9
    assert audit_for(read_trace(tmp_path / "t.jsonl"), load_spec(spec)) == []


def test_bad_dataset_and_entrypoint_fail_before_start(tmp_path: Path) -> None:
    text = (EXAMPLES / "iris.toml").read_text().replace('"iris"', '"nope.csv"')
    spec = tmp_path / "s.toml"
    spec.write_text(text)
    proc = ash_cli("tune", str(spec), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "nope.csv: no such file" in proc.stderr
    (tmp_path / "bad.csv").write_text("a,b,label\n1,2,x\n3,oops,y\n")
    spec.write_text(text.replace('"nope.csv"', '"bad.csv"'))
    proc = ash_cli("tune", str(spec), cwd=tmp_path)
    assert (
        proc.returncode == 2 and "bad.csv: line 3: column 2: 'oops' is not a number" in proc.stderr
    )
    spec.write_text(PY_SPEC.format(max_trials=3).replace("user_trainer:fit", "missing_mod:fit"))
    proc = ash_cli("tune", str(spec), cwd=tmp_path)
    assert proc.returncode == 2 and "cannot import 'missing_mod'" in proc.stderr


def test_a_killed_ash_tune_leaves_its_slots_to_end_quietly(tmp_path: Path) -> None:
    """SIGKILL of the tuning process: its slots find the pipe closed when their job ends and
    exit without a BrokenPipeError traceback on the user's terminal."""
    spec = write_study(tmp_path, max_trials=200)
    proc = subprocess.Popen(
        [str(BIN / "ash"), "tune", str(spec), "--workers", "2", "--quiet"],
        cwd=tmp_path,
        env={**os.environ, "SLEEP": "0.3"},
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    proc.kill()
    _, err = proc.communicate(timeout=60)  # until the slots, which share stderr, have ended
    assert proc.returncode == -signal.SIGKILL
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


FORK_AFTER_TORCH = """
import os, sys, torch, ash
from ash.worker.slots import fork_unsafe, native_threads
if sys.argv[3] == "ran":
    torch.set_num_threads(2)
    x = torch.randn(400, 400)
    (x @ x).sum()  # torch's OpenMP pool now runs in this process: a fork of it would deadlock
if sys.argv[3] == "ran-forked" and __name__ == "__main__":  # a DataLoader's workers, say: the
    x = torch.randn(300, 300)  # (torch's pool at 1 thread, then at 2: one OpenMP thread runs)
    torch.set_num_threads(1)
    (x @ x).sum()
    torch.set_num_threads(2)
    (x @ x).sum()
    pid = os.fork()  # fork handler of OpenBLAS shut numpy's pool down, torch's pool runs on
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
if __name__ == "__main__":
    print("native threads", native_threads(), "unsafe", fork_unsafe(), flush=True)

    def fit(config, ctx):  # not importable (defined under the guard): carried by value
        a = torch.randn(200, 200)
        for e in range(int(ctx.start), int(ctx.stop)):
            (a @ a).sum()
            ctx.report(e + 1, loss=config["x"] + 1 / (e + 1))
        return {"loss": config["x"] + 1 / ctx.stop}

    workers, threads = int(sys.argv[1]), int(sys.argv[2])
    doc = ash.tune(fit, space={"x": {"uniform": [0, 1]}}, max_resource=9, max_trials=6,
                   workers=workers, threads=threads, quiet=True)
    print("best", doc["best"]["value"], flush=True)
"""


@pytest.mark.parametrize(("workers", "threads"), [(1, 2), (2, 1)])
@pytest.mark.parametrize("torch_in_caller", ["ran", "imported", "ran-forked"])
def test_a_function_study_after_torch_ran_in_the_caller_does_not_deadlock(
    tmp_path: Path, workers: int, threads: int, torch_in_caller: str
) -> None:
    """Slots of a function trainer are forked, unless an OpenMP pool runs in the caller
    (torch's, after one parallel op), whose fork hangs in the child's first parallel region:
    then they are spawned and the function travels by value (cloudpickle). A caller that only
    imported torch has numpy's OpenBLAS pool running, which is fork-safe: it forks, and its
    slots' torch runs parallel ops without a hang. One that ran torch and then forked once (a
    DataLoader's workers), which shut the OpenBLAS pool down, still spawns (review 11, F1)."""
    script = tmp_path / "fk.py"
    script.write_text(FORK_AFTER_TORCH)
    got = run_script(script, str(workers), str(threads), torch_in_caller, cwd=tmp_path, timeout=120)
    assert got.returncode == 0, got.stderr
    native = int(got.stdout.split("native threads ")[1].split()[0])
    assert native >= 1  # the case this test is about did arise: native threads run
    unsafe = got.stdout.split(" unsafe ")[1].split()[0]
    assert unsafe == str(torch_in_caller != "imported")  # spawned only when torch's pool ran
    assert "best " in got.stdout


def test_slots_of_a_killed_function_study_do_not_outlive_it(tmp_path: Path) -> None:
    """Forked slots hold each other's pipe ends, so a parent's death may not close theirs:
    they watch their parent and end when it is gone."""
    script = tmp_path / "orphan.py"
    script.write_text(
        "import time, ash\n"
        "def fit(config, start, stop, state):\n"
        "    time.sleep(0.3)\n"
        "    return {'loss': config['x'] + 1 / stop}, None\n"
        "ash.tune(fit, space={'x': {'uniform': [0, 1]}}, max_resource=9, max_trials=200,\n"
        "         workers=2, quiet=True)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path)
    time.sleep(4)
    children = subprocess.run(
        ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert len(children) >= 2  # the slots
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 20
    alive = children
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = [c for c in children if Path(f"/proc/{c}").exists() and not _zombie(c)]
    assert alive == [], f"slots still running: {alive}"


def _zombie(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return False


def test_ctrl_c_stops_cleanly_and_writes(tmp_path: Path) -> None:
    spec = write_study(tmp_path, max_trials=200)
    proc = subprocess.Popen(
        [str(BIN / "ash"), "tune", str(spec), "--workers", "2", "--out", "out", "--quiet"],
        cwd=tmp_path,
        env={**os.environ, "SLOW": "0.05"},
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    doc = json.loads((tmp_path / "out/results.json").read_text())
    assert doc["interrupted"] is True and 0 < len(doc["trials"]) < 200


def quadratic(
    config: dict[str, Any], start: float, stop: float, state: bytes | None
) -> tuple[dict[str, float], bytes]:
    return {"loss": (config["x"] - 0.7) ** 2 + 0.1 / stop}, b""


def test_python_api_with_a_function(tmp_path: Path) -> None:
    doc = ash.tune(
        quadratic,
        space={"x": {"uniform": [0.0, 1.0]}},
        max_trials=20,
        max_resource=9,
        workers=2,
        progress=False,
        out=tmp_path / "o",
    )
    assert len(doc["trials"]) == 20 and doc["best"]["resource"] == 9
    assert abs(doc["best"]["config"]["x"] - 0.7) < 0.3
    assert (tmp_path / "o/results.json").exists()
    with pytest.raises(ValueError, match="space"):
        ash.tune(quadratic)


@pytest.mark.skipif(sys.platform != "linux", reason="fork context")
def test_api_with_spec_path(tmp_path: Path) -> None:
    spec = write_study(tmp_path, max_trials=6)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        doc = ash.tune(spec, workers=2, progress=False)
    finally:
        os.chdir(cwd)
    assert len(doc["trials"]) == 6


def test_a_script_without_a_main_guard_gets_the_advice_at_once(tmp_path: Path) -> None:
    """A spec's slots are spawned, which runs the main script again in each: unguarded, the
    first slots to start end the study with the advice (it used to restart them 100 times)."""
    spec = write_study(tmp_path, max_trials=6)
    script = tmp_path / "run.py"
    body = f"import ash\nprint('body runs', flush=True)\nash.tune({str(spec)!r}, workers=2)\n"
    script.write_text(body)
    got = run_script(script, cwd=tmp_path)
    assert got.returncode == 1
    assert got.stdout.count("body runs") <= 4  # the script, its first slots, one restart
    assert 'call ash.tune under `if __name__ == "__main__":`' in got.stderr
    assert "SlotError: slot processes exited while starting, 2 times in a row" in got.stderr
    guarded = f"import ash\nif __name__ == '__main__':\n    ash.tune({str(spec)!r}, workers=2)\n"
    script.write_text(guarded)
    ok = run_script(script, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


def test_a_trainer_module_that_kills_its_process_on_import_stops_the_study(
    tmp_path: Path,
) -> None:
    spec = write_study(tmp_path, max_trials=6)
    killer = (
        "import multiprocessing, os\nif multiprocessing.parent_process():\n    os._exit(7)\n"
        "def fit(config, start, stop, state):\n    return {'loss': 1.0}, None\n"
    )
    (tmp_path / "user_trainer.py").write_text(killer)  # in the slots only, past the preflight
    got = ash_cli("tune", str(spec), "--workers", "2", cwd=tmp_path, timeout=120)
    assert got.returncode == 2, got.stderr
    assert "exited while starting, 2 times in a row (last exit code 7)" in got.stderr
    assert "Traceback" not in got.stderr


@pytest.mark.parametrize("name", ["numpy", "jax"])
def test_example_trainables(tmp_path: Path, name: str) -> None:
    if name == "jax":
        pytest.importorskip("jax")
    text = (EXAMPLES / f"{name}.toml").read_text()
    text = text.replace("max_trials = 30", "max_trials = 6").replace(
        "max_trials = 40", "max_trials = 4"
    )
    spec = tmp_path / f"{name}.toml"
    spec.write_text(text)
    proc = ash_cli(
        "tune",
        str(spec),
        "--workers",
        "2",
        "--out",
        "o",
        "--quiet",
        cwd=tmp_path,
        env={"PYTHONPATH": str(EXAMPLES)},
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "o/results.json").read_text())
    assert doc["errors"] == [] and doc["best"] is not None


def test_hung_trainer_times_out_and_fails_its_trial(tmp_path: Path) -> None:
    spec = write_study(tmp_path, max_trials=8)
    text = spec.read_text().replace(
        'entrypoint = "user_trainer:fit"', 'entrypoint = "user_trainer:fit"\ntimeout_s = 1.0'
    )
    spec.write_text(text)
    t0 = time.monotonic()
    proc = ash_cli(
        "tune",
        str(spec),
        "--workers",
        "2",
        "--out",
        "out",
        "--quiet",
        cwd=tmp_path,
        env={"SLOW": "600"},
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 120
    doc = json.loads((tmp_path / "out/results.json").read_text())
    slow = [t for t in doc["trials"] if t["config"]["mode"] == "slow"]
    assert slow and all(t["status"] == "failed" for t in slow)
    assert any("timed out after 1 s" in e["error"] for e in doc["errors"])


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"workers": -1}, "workers: must be an integer >= 1"),
        ({"workers": 0}, "workers: must be an integer >= 1"),
        ({"workers": 1.5}, "workers: must be an integer >= 1"),
        ({"threads": "x"}, "threads: must be 'auto' or an integer >= 1"),
        ({"threads": 0}, "threads: must be 'auto' or an integer >= 1"),
        ({"enqueue": {"x": 0.5}}, "enqueue: must be a list of configs (dicts), got dict: wrap"),
        ({"enqueue": [0.5]}, "enqueue: must be a list of configs (dicts)"),
    ],
)
def test_a_bad_keyword_of_tune_names_itself(keywords: dict[str, Any], message: str) -> None:
    from ash.api import ArgumentError

    with pytest.raises(ArgumentError) as info:
        ash.tune(quadratic, space={"x": {"uniform": [0, 1]}}, max_trials=2, quiet=True, **keywords)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ash.errors.UserError)


def test_a_trainer_from_a_module_no_fresh_interpreter_finds_travels_by_value(
    tmp_path: Path,
) -> None:
    """What a spawned slot gets of a function: its module by reference when a fresh
    interpreter finds it on sys.path, else by value (pytest's importlib mode, a module loaded
    from a path), so the slot never fails on 'No module named ...'."""
    import importlib.util

    from ash.worker.slots import _by_value, _loaded

    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "hidden_mod.py").write_text(
        "SCALE = 3\ndef fit(config, start, stop, state):\n    return {'loss': SCALE * stop}, None\n"
    )
    spec = importlib.util.spec_from_file_location("hidden_pkg.hidden_mod", folder / "hidden_mod.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["hidden_pkg.hidden_mod"] = module
    try:
        spec.loader.exec_module(module)
        carried = _by_value(module.fit)
        blob = carried.blob
        # a traceback of it names its file and line, as the fail-fast message must
        assert _loaded(carried).__code__.co_filename == str(folder / "hidden_mod.py")
        by_ref = _by_value(json.dumps).blob  # an importable one stays a reference
    finally:
        del sys.modules["hidden_pkg.hidden_mod"]
    check = (
        "import cloudpickle, sys; fn = cloudpickle.loads(sys.stdin.buffer.read()); "
        "print(fn({}, 0, 2, None))"
    )
    got = subprocess.run(
        [sys.executable, "-c", check], input=blob, capture_output=True, timeout=60, check=False
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout.decode().strip() == "({'loss': 6}, None)"
    assert len(by_ref) < 100


def test_numpy_in_the_caller_keeps_forked_slots(tmp_path: Path) -> None:
    """numpy's OpenBLAS pool runs from its import but is fork-safe: a function study in an
    unguarded script that imports numpy still forks its slots (spawn would need the guard)."""
    script = tmp_path / "np_study.py"
    script.write_text(
        "import numpy, ash\n"
        "def fit(config, start, stop, state):\n"
        "    return {'loss': float(numpy.float64(config['x'])) + 1 / stop}, None\n"
        "ash.tune(fit, space={'x': {'uniform': [0, 1]}}, max_resource=3, max_trials=4,\n"
        "         workers=2, quiet=True)\n"
        "print('done')\n"
    )
    got = run_script(script, cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "done"


def test_a_killed_pools_work_folder_is_swept_by_the_next(tmp_path: Path) -> None:
    """A pool removes its temporary work folder at shutdown; one killed cannot, so the next
    pool removes the ``ash-work-PID-*`` folders whose process is gone (and no other)."""
    import subprocess
    import sys

    from ash.worker.slots import sweep_stale_roots

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = tmp_path / f"ash-work-{gone.stdout.strip()}-abc"
    (dead / "study" / "trial-1").mkdir(parents=True)
    (dead / "study" / "trial-1" / "model.pt").write_text("w")
    alive = tmp_path / f"ash-work-{os.getppid()}-def"
    alive.mkdir()
    other = tmp_path / "ash-work-notapid-x"
    other.mkdir()
    sweep_stale_roots(tmp_path)
    assert not dead.exists() and alive.exists() and other.exists()


def test_results_are_written_while_the_slots_exit_and_the_slots_are_joined(
    tmp_path: Path,
) -> None:
    """A slot's exit (its trainer's threads, torch's teardown) does not hold the results: the
    slots are told to end, the results are written meanwhile, and ``tune`` returns only once
    every slot has exited. Each trainer here leaves a thread that holds its slot's exit: it
    waits for the slot's main thread to end and for the results to be under way, then touches
    a marker (before this, the slots were joined first: their markers never came)."""
    script = tmp_path / "slow_exit.py"
    script.write_text(
        "import multiprocessing, os, pathlib, threading, time, ash\n"
        "import ash.scheduler.outcome as outcome\n"
        "def fit(config, start, stop, state):\n"
        "    def hold():\n"
        "        threading.main_thread().join()\n"
        "        for _ in range(600):  # until the results are under way\n"
        "            if pathlib.Path('writing').exists():\n"
        "                break\n"
        "            time.sleep(0.05)\n"
        "        pathlib.Path(f'exited-{os.getpid()}').touch()\n"
        "    if not any(t.name == 'hold' for t in threading.enumerate()):\n"
        "        threading.Thread(target=hold, name='hold').start()\n"
        "    return {'loss': config['x'] + 1 / stop}, None\n"
        "seen = []\n"
        "write = outcome.write_outcome\n"
        "def spy(*a, **k):\n"
        "    seen.append(len(list(pathlib.Path('.').glob('exited-*'))))\n"
        "    pathlib.Path('writing').touch()\n"
        "    return write(*a, **k)\n"
        "outcome.write_outcome = spy\n"
        "if __name__ == '__main__':\n"
        "    ash.tune(fit, space={'x': {'uniform': [0, 1]}}, max_resource=3, max_trials=6,\n"
        "             workers=2, quiet=True, out='out')\n"
        "    print(seen, len(list(pathlib.Path('.').glob('exited-*'))),\n"
        "          len(multiprocessing.active_children()))\n"
    )
    got = run_script(script, cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == ["[0]", "2", "0"]  # written before any exit; both joined
    assert (tmp_path / "out" / "results.json").exists()


def test_a_second_ctrl_c_while_the_slots_are_joined_kills_them(tmp_path: Path) -> None:
    """After a Ctrl-C the slots get their grace to end; a second Ctrl-C while they are waited
    for kills them, so a long job still running does not hold the exit (review 11, F2)."""
    script = tmp_path / "twice.py"
    script.write_text(
        "import multiprocessing, os, pathlib, signal, threading, time, ash\n"
        "import ash.worker.slots as slots\n"
        "from ash.integrations import Callback\n"
        "def fit(config, start, stop, state):\n"
        "    pathlib.Path('started').touch()\n"
        "    time.sleep(120)  # a long job that does not end when told\n"
        "    return {'loss': 1.0}, None\n"
        "def first():  # the first Ctrl-C once a job runs\n"
        "    while not pathlib.Path('started').exists():\n"
        "        time.sleep(0.05)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "shutdown = slots.Slots.shutdown\n"
        "def second(self, *a, **k):  # the second while the slots are waited for\n"
        "    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
        "    return shutdown(self, *a, **k)\n"
        "slots.Slots.shutdown = second\n"
        "class Log(Callback):\n"
        "    def on_study_end(self, doc):\n"
        "        print('study_end', doc['interrupted'], flush=True)\n"
        "if __name__ == '__main__':\n"
        "    threading.Thread(target=first, daemon=True).start()\n"
        "    try:\n"
        "        ash.tune(fit, space={'x': {'uniform': [0, 1]}}, max_resource=1, max_trials=2,\n"
        "                 workers=1, quiet=True, callbacks=[Log()])\n"
        "    except KeyboardInterrupt:\n"
        "        print('interrupted, slots alive:', len(multiprocessing.active_children()))\n"
    )
    got = run_script(script, cwd=tmp_path)
    assert "interrupted, slots alive: 0" in got.stdout, (got.stdout, got.stderr)
    assert "study_end True" in got.stdout  # the callbacks heard the end, with the results


DATALOADER = """
import sys, torch, ash
from torch.utils.data import DataLoader, TensorDataset

def fit(config, ctx):  # a DataLoader with worker processes of its own, in a slot
    data = TensorDataset(torch.arange(64, dtype=torch.float32).reshape(32, 2))
    total = sum(float(b.sum()) for (b,) in DataLoader(data, batch_size=8, num_workers=2))
    return {"loss": config["x"] + total / 1e6}

if __name__ == "__main__":
    if sys.argv[1] == "ran":  # torch's pool runs here: the slots are spawned
        torch.set_num_threads(2)
        (torch.randn(300, 300) @ torch.randn(300, 300)).sum()
    doc = ash.tune(fit, space={"x": {"uniform": [0, 1]}}, max_resource=1, max_trials=3,
                   workers=2, threads=1, quiet=True)
    print("failed", sum(t["status"] == "failed" for t in doc["trials"]), doc["errors"][:1])
"""


@pytest.mark.parametrize("torch_in_caller", ["imported", "ran"])
def test_a_trainer_may_start_processes_of_its_own(tmp_path: Path, torch_in_caller: str) -> None:
    """A slot is a daemon process, which multiprocessing forbids children: a trainer with a
    DataLoader's worker processes failed every trial (review 11, F4). Forked or spawned, it
    now trains."""
    script = tmp_path / "dl.py"
    script.write_text(DATALOADER)
    got = run_script(script, torch_in_caller, cwd=tmp_path, timeout=120)
    assert got.returncode == 0, got.stderr
    assert "failed 0 []" in got.stdout, got.stdout


SPAWNER = """
import multiprocessing, os, pathlib, subprocess, time

def _sleep():
    time.sleep(600)

def fit(config, start, stop, state):  # leaves a subprocess and a process of its own running
    sub = subprocess.Popen(["sleep", "600"])
    child = multiprocessing.Process(target=_sleep, daemon=True)
    child.start()
    for pid in (sub.pid, child.pid):
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
        ignored = int(status.split("SigIgn:")[1].split()[0], 16)
        pathlib.Path(f"child-{pid}").write_text(str(ignored & 0b100000010))  # SIGTERM, SIGINT
    if os.environ.get("HANG"):
        try:
            os.close(os.open("hung", os.O_CREAT | os.O_EXCL))  # the first job only
        except FileExistsError:
            pass
        else:
            time.sleep(600)  # past timeout_s: the slot is killed
    return {"loss": config["x"] + 1 / stop}, None
"""


@pytest.mark.parametrize("hang", [False, True])
def test_a_trainers_own_processes_end_with_its_slot(tmp_path: Path, hang: bool) -> None:
    """A trainer's processes (a DataLoader's workers, a subprocess) take Ctrl-C and SIGTERM
    as usual (a slot let them inherit SIG_IGN), and none outlives the study: a slot killed
    (trainer.timeout_s) takes its trainer's processes with it, and at the end what the
    trainers left running is killed (review 12, F2)."""
    (tmp_path / "spawner.py").write_text(SPAWNER)
    spec = write_study(tmp_path, max_trials=4)
    spec.write_text(
        spec.read_text().replace(
            'entrypoint = "user_trainer:fit"', 'entrypoint = "spawner:fit"\ntimeout_s = 3.0'
        )
    )
    proc = ash_cli(
        "tune", str(spec), "--workers", "2", "--threads", "1", "--quiet", cwd=tmp_path,
        env={"HANG": "1"} if hang else {},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "hung").exists() == hang
    children = {int(p.name.split("-")[1]): p.read_text() for p in tmp_path.glob("child-*")}
    assert children and set(children.values()) == {"0"}  # neither signal ignored
    deadline = time.monotonic() + 30  # (killed: gone once init has reaped them)
    alive = list(children)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and not _zombie(str(p))]
        time.sleep(0.2)
    assert alive == [], f"a trainer's processes outlived the study: {alive}"
