"""Fail fast, queryable results and continued studies (issue 15, items 5 and 6): real CLI runs,
real slot processes, a real gRPC scheduler and workers on 127.0.0.1."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

import ash
from ash.api import StudyStopped
from ash.errors import UserError
from ash.scheduler.journal import JournalError
from ash.spec import SpecError, parse_spec
from helpers import Scheduler, worker
from helpers import run_ash as cli

SPEC = """
[study]
name = "cont"
metric = "loss"
seed = 1
{study_extra}
[asha]
min_resource = 1
max_resource = 9
reduction_factor = 3
max_trials = {max_trials}
[trainer]
type = "python"
entrypoint = "{module}:fit"
[space]
x = {{ uniform = [0.0, 1.0] }}
k = {{ choice = ["a", "b"] }}
"""

GOOD = """
import json

def fit(config, start, stop, state):
    return {"loss": (config["x"] - 0.3) ** 2 + 1.0 / stop}, json.dumps(stop).encode()
"""

BAD = """
def fit(config, start, stop, state):
    scale = config["x"]
    return normalise(scale)


def normalise(scale):
    raise ZeroDivisionError("the learning-rate schedule divides by zero")
"""


def study(tmp: Path, *, max_trials: int = 10, module: str = "good", extra: str = "") -> Path:
    (tmp / "good.py").write_text(GOOD)
    (tmp / "bad.py").write_text(BAD)
    spec = tmp / "study.toml"
    spec.write_text(SPEC.format(max_trials=max_trials, module=module, study_extra=extra))
    return spec


def good(config: dict[str, Any], start: float, stop: float, state: bytes | None) -> Any:
    return {"loss": (float(config["x"]) - 0.3) ** 2 + 1.0 / stop}, b"s"


def always_raises(config: dict[str, Any], start: float, stop: float, state: bytes | None) -> Any:
    raise RuntimeError(f"no such column {'w' + 'eight'!r}")


# -- fail fast ------------------------------------------------------------------------------


def test_fail_fast_cli_stops_after_a_handful_with_the_traceback(tmp_path: Path) -> None:
    spec = study(tmp_path, max_trials=60, module="bad")
    got = cli("tune", str(spec), "--workers", "2", "--threads", "1", "--out", "o", cwd=tmp_path)
    assert got.returncode == 1, got.stderr
    assert "stopped early: the first 3 results all failed with: trainer raised " in got.stderr
    assert "ZeroDivisionError: the learning-rate schedule divides by zero" in got.stderr
    bad = tmp_path / "bad.py"
    assert f'File "{bad}", line 4, in fit' in got.stderr
    assert f'File "{bad}", line 8, in normalise' in got.stderr
    assert got.stderr.count("Traceback (most recent call last)") == 1  # printed once
    doc = ash.load(tmp_path / "o").doc
    assert len(doc["trials"]) <= 5  # 60 allowed: stopped after a handful
    assert doc["error"].startswith("stopped early")
    assert "line 8, in normalise" in doc["traceback"]
    for t in doc["trials"]:  # every failed result keeps its traceback
        for r in t["results"]:
            assert r["value"] is None and "line 8, in normalise" in r["traceback"]
    assert all("traceback" in e for e in doc["errors"])


def test_fail_fast_api_raises_with_the_results(tmp_path: Path) -> None:
    said = {}
    for journal in (None, tmp_path / "j.jsonl"):
        with pytest.raises(StudyStopped) as info:
            ash.tune(
                always_raises,
                space={"x": {"uniform": [0.0, 1.0]}},
                max_trials=40,
                max_resource=9,
                workers=2,
                quiet=True,
                journal=journal,
            )
        said[journal] = str(info.value)
        assert "no such column 'weight'" in said[journal]
        assert f'{Path(__file__).name}", line ' in said[journal]
        assert len(info.value.results["trials"]) <= 5
        assert "--journal" not in said[journal]  # a Python caller is told of journal=, not a flag
    assert "with journal=PATH a study resumes" in said[None]
    assert (
        f"the same call with journal='{tmp_path / 'j.jsonl'}' resumes" in said[tmp_path / "j.jsonl"]
    )


def test_a_metric_of_the_wrong_type_is_named_as_such(tmp_path: Path) -> None:
    def text_loss(config: dict[str, Any], start: float, stop: float, state: Any) -> Any:
        return {"loss": "abc"}, None

    with pytest.raises(StudyStopped) as info:
        ash.tune(text_loss, space={"x": {"uniform": [0, 1]}}, max_trials=5, workers=1, quiet=True)
    assert "metric 'loss' is 'abc' (str), not a number" in str(info.value)


def test_fail_fast_can_be_turned_off(tmp_path: Path) -> None:
    doc = ash.tune(
        always_raises,
        space={"x": {"uniform": [0.0, 1.0]}},
        max_trials=8,
        max_resource=3,
        workers=2,
        quiet=True,
        fail_fast=False,
    )
    assert len(doc["trials"]) == 8 and "error" not in doc and doc["best"] is None


def test_mixed_failures_do_not_stop_a_study(tmp_path: Path) -> None:
    def flaky(config: dict[str, Any], start: float, stop: float, state: bytes | None) -> Any:
        if config["k"] == "a":
            raise ValueError("a is not supported")
        return {"loss": float(config["x"])}, None

    doc = ash.tune(
        flaky,
        space={"x": {"uniform": [0.0, 1.0]}, "k": {"choice": ["a", "b"]}},
        max_trials=12,
        max_resource=3,
        workers=2,
        quiet=True,
        enqueue=[{"x": 0.5, "k": "a"}, {"x": 0.5, "k": "a"}, {"x": 0.5, "k": "b"}],
    )
    assert len(doc["trials"]) == 12 and doc["best"] is not None and "error" not in doc


def test_mlp_metric_is_a_spec_error_and_start_problems_come_together(tmp_path: Path) -> None:
    table: dict[str, Any] = {
        "study": {"metric": "accuracy"},
        "asha": {"min_resource": 1, "max_resource": 9, "max_trials": 4},
        "trainer": {"type": "mlp"},
        "space": {"lr": {"log_uniform": [1e-3, 1.0]}},
    }
    with pytest.raises(SpecError, match=r"study\.metric: the mlp trainer reports val_loss"):
        parse_spec(table)
    (tmp_path / "sig.py").write_text("def fit(config):\n    return {}, None\n")
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.format(max_trials=4, module="sig", study_extra=""))
    (tmp_path / "file").write_text("")
    got = cli("tune", str(spec), "--out", "file", "--trace", "no/such/t.jsonl", cwd=tmp_path)
    assert got.returncode == 2
    assert "3 problems" in got.stderr
    assert "--out file: exists and is not a directory" in got.stderr
    assert "--trace no/such/t.jsonl" in got.stderr
    assert "must take (config, ctx) or (config, start, stop, state), not (config)" in got.stderr


# -- continued studies ------------------------------------------------------------------------


def test_raised_max_trials_continues_through_the_cli_and_lowering_is_refused(
    tmp_path: Path,
) -> None:
    spec = study(tmp_path, max_trials=8)
    args = ("tune", str(spec), "--workers", "2", "--threads", "1", "--journal", "j.jsonl")
    assert cli(*args, "--out", "o1", cwd=tmp_path).returncode == 0
    first = ash.load(tmp_path / "o1")
    spec.write_text(SPEC.format(max_trials=20, module="good", study_extra=""))
    got = cli(*args, "--out", "o2", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    second = ash.load(tmp_path / "o2")
    assert len(second.trials) == 20
    assert [t.config for t in second.trials[:8]] == [t.config for t in first.trials]
    assert '"x":{"max_trials":20' in (tmp_path / "j.jsonl").read_text()
    # the same raised spec resumes as it is; a lower one is refused, naming the key
    assert cli(*args, "--out", "o3", cwd=tmp_path).returncode == 0
    assert len(ash.load(tmp_path / "o3").trials) == 20
    spec.write_text(SPEC.format(max_trials=12, module="good", study_extra=""))
    got = cli(*args, cwd=tmp_path)
    assert got.returncode == 2
    assert "lowering [asha].max_trials (20 -> 12) is refused" in got.stderr
    # another key is still refused as before
    spec.write_text(SPEC.format(max_trials=30, module="good", study_extra='mode = "max"'))
    got = cli(*args, cwd=tmp_path)
    assert got.returncode == 2 and "was written for another spec" in got.stderr


def test_tune_resumes_from_python_with_a_raised_budget(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    kw: dict[str, Any] = {
        "space": {"x": {"uniform": [0.0, 1.0]}},
        "max_resource": 9,
        "workers": 2,
        "threads": 1,
        "quiet": True,
        "journal": journal,
    }
    a = ash.tune(good, max_trials=6, **kw)
    b = ash.tune(good, max_trials=6, **kw)  # finished: resumes to the same results
    assert b["trials"] == a["trials"]
    c = ash.tune(good, max_trials=15, **kw)
    assert len(c["trials"]) == 15
    for before, after in zip(a["trials"], c["trials"][:6], strict=True):
        # The first six keep their configs and results; the larger rungs may promote them
        # further (which of them depends on the order results arrive from two workers).
        n = len(before["results"])
        assert after["config"] == before["config"] and after["results"][:n] == before["results"]
    with pytest.raises(JournalError, match="lowering"):
        ash.tune(good, max_trials=10, **kw)
    live = ash.load(journal)  # read-only replay: same trials as the run
    assert [t.config for t in live.trials] == [t["config"] for t in c["trials"]]
    assert live.spec is not None and live.spec["asha"]["max_trials"] == 15


def test_time_limit_raise_continues_a_study_halted_by_it(tmp_path: Path) -> None:
    def slow(config: dict[str, Any], start: float, stop: float, state: bytes | None) -> Any:
        import time

        time.sleep(0.05)
        return {"loss": float(config["x"])}, None

    kw: dict[str, Any] = {
        "space": {"x": {"uniform": [0.0, 1.0]}},
        "max_resource": 3,
        "max_trials": None,
        "workers": 1,
        "threads": 1,
        "quiet": True,
        "journal": tmp_path / "j.jsonl",
    }
    a = ash.tune(slow, time_limit_s=0.5, **kw)
    b = ash.tune(slow, time_limit_s=1.5, **kw)
    assert len(b["trials"]) > len(a["trials"]) >= 1


# -- warm start ----------------------------------------------------------------------------


def test_enqueued_configs_are_the_first_trials_and_replay(tmp_path: Path) -> None:
    warm = [{"x": 0.3, "k": "b"}, {"x": 1, "k": "a"}]
    spec = study(tmp_path, max_trials=8, extra=f"enqueue = {_toml(warm)}")
    args = ("tune", str(spec), "--workers", "2", "--threads", "1", "--journal", "j.jsonl")
    got = cli(*args, "--out", "o", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    trials = ash.load(tmp_path / "o").trials
    assert [t.config for t in trials[:2]] == [{"x": 0.3, "k": "b"}, {"x": 1.0, "k": "a"}]
    assert ash.load(tmp_path / "j.jsonl").best == ash.load(tmp_path / "o").best
    # a file of configs, and a bad one named by its parameter
    (tmp_path / "warm.json").write_text('[{"x": 0.25, "k": "a"}]')
    spec.write_text(SPEC.format(max_trials=4, module="good", study_extra='enqueue = "warm.json"'))
    got = cli("tune", str(spec), "--workers", "1", "--threads", "1", "--out", "o2", cwd=tmp_path)
    assert got.returncode == 0 and ash.load(tmp_path / "o2").trials[0].config["x"] == 0.25
    bad = study(tmp_path, extra='enqueue = [{x = 2.0, k = "c", lr = 1}]')
    got = cli("tune", str(bad), cwd=tmp_path)
    assert got.returncode == 2
    assert "study.enqueue[0].x: 2.0 is outside the domain" in got.stderr
    assert "study.enqueue[0].k: 'c' is outside" in got.stderr
    assert "study.enqueue[0].lr: not a parameter of [space]" in got.stderr


def test_a_changed_enqueue_file_is_refused_on_resume(tmp_path: Path) -> None:
    """The spec names its enqueue file, so its digest does not see the file change: the replay
    does, and refuses a queued trial whose recorded config the file no longer gives (a trial
    the sampler draws otherwise is kept instead: an ash upgrade)."""
    (tmp_path / "warm.json").write_text('[{"x": 0.25, "k": "a"}]')
    spec = study(tmp_path, max_trials=4, extra='enqueue = "warm.json"')
    args = ("tune", str(spec), "--workers", "1", "--threads", "1", "--journal", "j.jsonl")
    assert cli(*args, cwd=tmp_path).returncode == 0
    (tmp_path / "warm.json").write_text('[{"x": 0.75, "k": "a"}]')
    got = cli(*args, cwd=tmp_path)
    assert got.returncode == 2 and "Traceback" not in got.stderr, got.stderr
    assert "trial 0 was trained with {'x': 0.25, 'k': 'a'} from study.enqueue" in got.stderr
    assert "was its file changed?" in got.stderr


def test_a_journal_away_from_its_enqueue_file_still_loads(tmp_path: Path) -> None:
    """ash.load and the dashboard replay a journal on its own: an enqueue file named relative to
    the spec (not beside the journal, or moved since) is not needed, its configs are recorded."""
    (tmp_path / "warm.json").write_text('[{"x": 0.25, "k": "a"}]')
    spec = study(tmp_path, max_trials=4, extra='enqueue = "warm.json"')
    (tmp_path / "runs").mkdir()
    args = ("tune", str(spec), "--workers", "1", "--threads", "1", "--journal", "runs/j.jsonl")
    assert cli(*args, "--out", "o", cwd=tmp_path).returncode == 0
    (tmp_path / "warm.json").unlink()
    loaded = ash.load(tmp_path / "runs" / "j.jsonl")
    assert loaded.trials[0].config == {"x": 0.25, "k": "a"}
    assert [t.config for t in loaded.trials] == [t.config for t in ash.load(tmp_path / "o").trials]


def test_enqueue_from_python_on_a_spec(tmp_path: Path) -> None:
    spec = study(tmp_path, max_trials=5)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        doc = ash.tune(spec, workers=2, threads=1, quiet=True, enqueue=[{"x": 0.3, "k": "a"}])
        with pytest.raises(UserError, match=r"enqueue\[0\]\.k: missing"):
            ash.tune(spec, quiet=True, enqueue=[{"x": 0.3}])
    finally:
        os.chdir(cwd)
    assert doc["trials"][0]["config"] == {"x": 0.3, "k": "a"}


def _toml(configs: list[dict[str, Any]]) -> str:
    def value(v: Any) -> str:
        return f'"{v}"' if isinstance(v, str) else repr(v)

    return (
        "["
        + ", ".join(
            "{" + ", ".join(f"{k} = {value(v)}" for k, v in c.items()) + "}" for c in configs
        )
        + "]"
    )


# -- ash.load ------------------------------------------------------------------------------


def test_load_a_running_scheduler_and_a_live_journal(tmp_path: Path) -> None:
    spec = study(tmp_path, max_trials=12)
    (tmp_path / "token").write_text("s3cret-token-for-tests\n")
    s = Scheduler(
        spec, tmp_path, "--journal", "j.jsonl", "--token-file", "token", "--stay", "--out", "o"
    )
    workers = []
    try:
        with pytest.raises(UserError, match="UNAUTHENTICATED"):
            ash.load(s.target)
        workers = [worker(s.target, tmp_path, f"w{i}", "--token-file", "token") for i in range(2)]
        import time

        deadline = time.monotonic() + 120
        live = ash.load(s.target, token="s3cret-token-for-tests")
        while not live.doc.get("finished") and time.monotonic() < deadline:
            time.sleep(0.3)
            live = ash.load(s.target, token="s3cret-token-for-tests")
        assert live.doc["finished"] and len(live.trials) == 12
        assert live.spec is not None and live.spec["study"]["name"] == "cont"
        # the journal of the running scheduler (it still holds the lock) loads read-only
        replayed = ash.load(tmp_path / "j.jsonl")
        assert replayed.best == live.best
        assert [t.config for t in replayed.trials] == [t.config for t in live.trials]
    finally:
        s.proc.terminate()
        s.wait()
        for w in workers:
            w.kill()
            w.wait()
    frame = ash.load(tmp_path / "o").to_pandas()
    assert len(frame) == 12 and {"config/x", "config/k", "value", "rung"} <= set(frame.columns)
    best = ash.load(tmp_path / "o").best
    assert (
        best is not None and frame.loc[frame["trial"] == best.trial, "value"].item() == best.value
    )


def test_load_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(UserError, match=r"not a results\.json"):
        ash.load(tmp_path / "x.json")
    with pytest.raises(UserError, match="no such file"):
        ash.load(tmp_path / "missing.json")
    with pytest.raises(UserError, match=r"127\.0\.0\.1:1: UNAVAILABLE"):
        ash.load("127.0.0.1:1", timeout=2)


def test_torn_tail_of_a_live_journal_is_left_out(tmp_path: Path) -> None:
    kw: dict[str, Any] = {"space": {"x": {"uniform": [0.0, 1.0]}}, "max_resource": 3}
    ash.tune(good, max_trials=4, workers=1, threads=1, quiet=True, journal=tmp_path / "j", **kw)
    with open(tmp_path / "j", "ab") as f:
        f.write(b'{"a":"w0","k":[4,0')  # a write in progress
    assert len(ash.load(tmp_path / "j").trials) == 4


def test_fail_fast_over_grpc_travels_with_the_traceback(tmp_path: Path) -> None:
    spec = study(tmp_path, max_trials=60, module="bad")
    s = Scheduler(spec, tmp_path, "--out", "o")
    workers = [worker(s.target, tmp_path, f"w{i}") for i in range(2)]
    try:
        assert s.wait(timeout=120) == 1
        err = s.proc.stderr.read() if s.proc.stderr else ""
    finally:
        s.kill()
        for w in workers:
            w.kill()
            w.wait()
    assert "stopped early: the first 5 results all failed with: trainer raised " in err
    assert f'File "{tmp_path / "bad.py"}", line 8, in normalise' in err
    doc = ash.load(tmp_path / "o").doc
    assert 5 <= sum(len(t["results"]) for t in doc["trials"]) < 12
    assert all("line 8, in normalise" in e["traceback"] for e in doc["errors"])


def test_enqueue_into_a_journaled_study_appends_the_next_trials(tmp_path: Path) -> None:
    kw: dict[str, Any] = {
        "space": {"x": {"uniform": [0.0, 1.0]}},
        "max_resource": 3,
        "workers": 2,
        "threads": 1,
        "quiet": True,
        "journal": tmp_path / "j.jsonl",
    }
    a = ash.tune(good, max_trials=4, **kw)
    warm = [{"x": 0.3}, {"x": 0.31}]
    b = ash.tune(good, max_trials=8, enqueue=warm, **kw)
    assert [t["config"] for t in b["trials"][4:6]] == warm and b["trials"][:4] == a["trials"]
    c = ash.tune(good, max_trials=8, enqueue=warm, **kw)  # the same: a plain resume
    assert c["trials"] == b["trials"]
    with pytest.raises(JournalError, match="changing configs already enqueued is refused"):
        ash.tune(good, max_trials=8, enqueue=[{"x": 0.9}], **kw)
    journal = (tmp_path / "j.jsonl").read_text()
    assert journal.count('"enqueue"') == 1


def test_tune_prints_the_cli_summary_unless_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    kw: dict[str, Any] = {
        "space": {"x": {"uniform": [0.0, 1.0]}},
        "max_trials": 4,
        "max_resource": 3,
        "workers": 1,
        "threads": 1,
        "progress": False,
    }
    ash.tune(good, out=tmp_path / "o", **kw)
    printed = capsys.readouterr().out
    assert "best trials (loss, min)" in printed and "trials.csv, report.html" in printed
    ash.tune(good, quiet=True, **kw)
    ash.tune(good, verbose=False, **kw)
    assert capsys.readouterr().out == ""
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if the extra were not installed
    with pytest.raises(UserError, match=r"pip install 'ash-hpo\[pandas\]'"):
        ash.load(tmp_path / "o").to_pandas()
