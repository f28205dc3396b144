"""ASHA's stopping variant on intermediate reports (``[asha] stop_on = "reports"``): the core
ranks ``ctx.report`` values at rung milestones exactly as the stopping rule ranks results, the
running trainer is stopped (``ctx.should_stop``, ``ash.TrialStopped``) in the embedded pool and
over gRPC, a stopped trial's result is its last report, and a killed study resumes to the same
decisions."""

from __future__ import annotations

import importlib.util
import math
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ash.errors import TrialStopped
from ash.scheduler.audit import audit_for
from ash.scheduler.core import Scheduler
from ash.scheduler.driver import open_study, replay_read_only
from ash.scheduler.trace import read_trace
from ash.spec import SpecError, load_spec, parse_spec
from helpers import BIN, make_spec, results, worker
from helpers import Scheduler as SchedulerProcess

R = 27  # max_resource: rungs at 1, 3, 9 and 27 epochs

TRAINER = """
import os, time
import ash


def fit(config, ctx):
    log = os.environ["EPOCH_LOG"]
    metrics = {}
    for epoch in range(int(ctx.start), int(ctx.stop)):
        time.sleep(float(os.environ.get("EPOCH_S", "0.01")))
        with open(os.path.join(log, f"trial-{ctx.trial}"), "a") as f:
            f.write(f"{epoch + 1}\\n")
        metrics = {"loss": (config["x"] - 0.3) ** 2 + 1.0 / (epoch + 1), "epoch": epoch + 1}
        if os.environ.get("CATCH"):  # a trainer that cleans up, then returns its metrics
            try:
                ctx.report(epoch + 1, **metrics)
            except ash.TrialStopped:
                assert ctx.should_stop
                return {**metrics, "caught": 1}
        else:
            ctx.report(epoch + 1, **metrics)
    assert not ctx.should_stop
    return metrics
"""

SPEC = """
[study]
name = "stop"
metric = "loss"
seed = {seed}
algorithm = "asha-stopping"
[asha]
min_resource = 1
max_resource = 27
reduction_factor = 3
max_trials = {trials}
stop_on = "{stop_on}"
[trainer]
type = "python"
entrypoint = "stop_trainer:fit"
[space]
x = {{ uniform = [0.0, 1.0] }}
"""


def write(tmp_path: Path, trials: int = 18, stop_on: str = "reports", seed: int = 1) -> Path:
    (tmp_path / "stop_trainer.py").write_text(TRAINER)
    (tmp_path / "epochs").mkdir(exist_ok=True)
    spec = tmp_path / "study.toml"
    spec.write_text(SPEC.format(trials=trials, stop_on=stop_on, seed=seed))
    return spec


def env(tmp_path: Path, **more: str) -> dict[str, str]:
    return {**os.environ, "EPOCH_LOG": str(tmp_path / "epochs"), **more}


def trained(tmp_path: Path) -> dict[int, list[int]]:
    """trial -> the epochs its trainer actually ran (in order)."""
    out = {}
    for f in (tmp_path / "epochs").glob("trial-*"):
        out[int(f.name.split("-")[1])] = [int(x) for x in f.read_text().split()]
    return out


def check_stopped(doc: dict[str, Any], epochs: dict[int, list[int]], caught: bool = False) -> int:
    """Every trial ran one job from epoch 1; a stopped one stopped exactly at the rung
    milestone it was stopped at, and its result is its last report. Returns the epochs run."""
    assert doc["errors"] == [], doc["errors"]
    stopped = 0
    for t in doc["trials"]:
        (res,) = t["results"]
        ran = epochs[t["trial"]]
        assert ran == list(range(1, len(ran) + 1))  # one job, never restarted
        last = t["reports"][-1]
        assert last["step"] == len(ran) == res["resource"]
        assert res["value"] == last["metrics"]["loss"]
        if res["resource"] < R:
            stopped += 1
            assert t["status"] == "stopped"
            assert res["resource"] in (1, 3, 9)  # the verdict came before the next epoch
            assert res["metrics"].get("caught") == (1 if caught else None)
        else:
            assert t["status"] == "completed"
    assert stopped >= len(doc["trials"]) // 3
    return sum(len(v) for v in epochs.values())


def tune(tmp_path: Path, *args: str, **more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ash"), "tune", "study.toml", "--workers", "2", "--threads", "1", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env(tmp_path, **more),
    )


# -- the spec -------------------------------------------------------------------------------


def test_stop_on_is_checked() -> None:
    def problems(algorithm: str, stop_on: Any, trainer: str = "python") -> str:
        raw = {
            "study": {"metric": "loss", "algorithm": algorithm},
            "asha": {"min_resource": 1, "max_resource": 9, "max_trials": 3, "stop_on": stop_on},
            "trainer": {"type": trainer, "entrypoint": "m:f"}
            if trainer == "python"
            else {"type": "mlp"},
            "space": {"x": {"uniform": [0, 1]}},
        }
        if trainer == "mlp":
            raw["study"]["metric"] = "val_loss"
        with pytest.raises(SpecError) as err:
            parse_spec(raw, source="s.toml")
        return str(err.value)

    assert "s.toml: asha.stop_on: must be 'results' or 'reports'" in problems("asha", "often")
    assert "is for algorithm = 'asha-stopping'" in problems("asha", "reports")
    assert "the mlp trainer reports only its results" in problems("asha-stopping", "reports", "mlp")
    ok = make_spec("asha-stopping", stop_on="reports")
    assert ok.schedule.stop_on == "reports"


# -- the core -------------------------------------------------------------------------------


def curve(config: dict[str, Any], resource: float) -> float:
    """A deterministic learning curve that crosses (so rankings change between rungs)."""
    x = float(config["x"])
    return (x - 0.4) ** 2 + (0.5 - x) / resource + (0.1 if config["k"] == "a" else 0.0)


def run_core(stop_on: str, brackets: int, trials: int) -> tuple[list[tuple[float, float]], Any]:
    """One worker runs a study to the end: per trial, its final (resource, value)."""
    core = Scheduler(
        make_spec("asha-stopping", stop_on=stop_on, brackets=brackets, max_trials=trials),
        random.Random(5),
    )
    final: dict[int, tuple[float, float]] = {}
    now = 0.0
    while (job := core.next_job(now)) is not None:
        now += 1
        if stop_on == "results":
            value = curve(job.config, job.stop)
            core.report(job.job_id, value, now)
            final[job.trial] = (job.stop, value)
            continue
        assert job.start == 0 and job.stop == R and job.rung == core.brackets[job.bracket].top
        step, value = 0.0, math.nan
        for step in range(1, R + 1):
            value = curve(job.config, step)
            if core.milestone(job.job_id, step, value, now):
                break
        done = core.report(job.job_id, value, now)
        assert done is not None
        final[job.trial] = (done.stop, value)
    assert core.finished
    return [final[t] for t in sorted(final)], core.rung_counts()


@pytest.mark.parametrize("brackets", [1, 2])
def test_reports_are_ranked_as_the_stopping_rule_ranks_results(brackets: int) -> None:
    """With one worker the two forms see the same values in the same order: every trial stops
    at the same rung, and every rung holds as many results."""
    by_results, counts_r = run_core("results", brackets, 60)
    by_reports, counts_p = run_core("reports", brackets, 60)
    assert by_reports == by_results
    assert counts_p == counts_r
    assert sum(1 for r, _ in by_reports if r < R) >= 30  # most trials were stopped early


def test_a_lost_job_is_retried_without_ranking_its_rungs_twice() -> None:
    spec = make_spec("asha-stopping", stop_on="reports", max_trials=3)
    core = Scheduler(spec, random.Random(0))
    job = core.next_job(0)
    assert job is not None
    assert not core.milestone(job.job_id, 1, 0.5, 0)  # the first result of rung 0 continues
    assert core.lose(job.job_id, 1) == (job, True)
    again = core.next_job(2)
    assert again is not None and (again.trial, again.start, again.stop) == (job.trial, 0, R)
    assert not core.milestone(again.job_id, 1, 0.5, 3)  # rung 0 already has this trial
    assert core.rung_counts()[0][0] == (1, 1)
    assert not core.milestone(again.job_id, 3, 0.4, 3)
    assert core.rung_counts()[0][1] == (3, 1)
    # a second trial, worse at rung 0: stopped; its loss settles it where it stopped
    other = core.next_job(4)
    assert other is not None and other.trial == 1
    assert core.milestone(other.job_id, 1.5, 0.9, 4)  # reached rung 0 at step 1.5
    assert other.job_id in core.stopped
    assert not core.milestone(other.job_id, 3, 0.1, 4)  # decided already: ignored
    settled = core.lose(other.job_id, 5)
    assert settled == (other._replace(rung=0, stop=1.5), False)
    assert core.rung_counts()[0][:2] == [(1, 2), (3, 1)]


@pytest.mark.parametrize(
    ("mode", "bad"), [("min", -math.inf), ("max", math.inf), ("min", math.nan)]
)
def test_a_non_finite_report_is_a_failed_milestone_and_never_reaches_the_target(
    mode: str, bad: float
) -> None:
    """A diverging report (-inf for min, +inf for max) is not the best value ever seen: it
    ranks worst at its rung, as a non-finite result does, and never halts the study."""
    spec = make_spec("asha-stopping", mode, stop_on="reports", max_trials=4, target=0.0)
    core = Scheduler(spec, random.Random(0))
    good = core.next_job(0)
    assert good is not None
    fine = 0.5 if mode == "min" else -0.5  # short of the target
    assert not core.milestone(good.job_id, 1, fine, 0)  # the first at rung 0 goes on
    bad_job = core.next_job(1)
    assert bad_job is not None and bad_job.trial == 1
    assert core.milestone(bad_job.job_id, 1, bad, 1)  # ranked worst: stopped at rung 0
    assert not core.halted and not core.target_hit
    assert core.report(bad_job.job_id, bad, 2) == bad_job._replace(rung=0, stop=1)
    assert not core.halted and not core.target_hit
    third = core.next_job(3)  # the study goes on
    assert third is not None and third.trial == 2
    assert core.rung_counts()[0][0] == (1, 2)  # both ranked at rung 0, neither above it
    # a finite report at the target still halts it
    assert not core.milestone(third.job_id, 1, 0.0, 4)
    assert core.halted and core.target_hit


# -- the embedded pool ------------------------------------------------------------------------


def test_embedded_study_stops_running_trainers(tmp_path: Path) -> None:
    write(tmp_path)
    proc = tune(tmp_path, "--out", "out", "--trace", "t.jsonl")
    assert proc.returncode == 0, proc.stderr
    doc = results(tmp_path / "out")
    ran = check_stopped(doc, trained(tmp_path))
    assert ran < 0.6 * len(doc["trials"]) * R, ran  # versus every trial running to R
    events = list(read_trace(tmp_path / "t.jsonl"))
    assert audit_for(events, load_spec(tmp_path / "study.toml")) == []
    assert {e["rung"] for e in events if e["event"] == "assign"} == {3}  # one job to R each


def test_embedded_stopped_trainer_may_catch_trial_stopped(tmp_path: Path) -> None:
    write(tmp_path, trials=9)
    proc = tune(tmp_path, "--out", "out", CATCH="1")
    assert proc.returncode == 0, proc.stderr
    check_stopped(results(tmp_path / "out"), trained(tmp_path), caught=True)


def test_results_variant_runs_a_job_per_rung(tmp_path: Path) -> None:
    """stop_on = "results" (the default) keeps the old form: a job per rung, no verdicts."""
    write(tmp_path, trials=9, stop_on="results")
    (tmp_path / "stop_trainer.py").write_text(TRAINER.replace("range(int(ctx.start)", "range(0"))
    proc = tune(tmp_path, "--out", "out")
    assert proc.returncode == 0, proc.stderr
    doc = results(tmp_path / "out")
    assert any(len(t["results"]) > 1 for t in doc["trials"])  # continued as new jobs


# -- gRPC: a real scheduler and a real ash-worker ---------------------------------------------


@pytest.mark.parametrize("catch", [False, True])
def test_grpc_worker_trainers_are_stopped(tmp_path: Path, catch: bool) -> None:
    write(tmp_path, trials=15)
    sched = SchedulerProcess(tmp_path / "study.toml", tmp_path, "--out", "out", "--journal", "j")
    extra = {"EPOCH_LOG": str(tmp_path / "epochs"), **({"CATCH": "1"} if catch else {})}
    w = worker(sched.target, tmp_path, "w0", "--slots", "2", env=extra)
    try:
        assert sched.wait() == 0
        assert w.wait(timeout=60) == 0, w.stderr.read() if w.stderr else ""
    finally:
        sched.kill()
        if w.poll() is None:
            w.kill()
    doc = results(tmp_path / "out")
    ran = check_stopped(doc, trained(tmp_path), caught=catch)
    assert ran < 0.6 * len(doc["trials"]) * R, ran


# -- resume ---------------------------------------------------------------------------------


def test_a_killed_study_resumes_to_the_same_decisions(tmp_path: Path) -> None:
    """SIGKILL an embedded study mid-way, run the same command again: it finishes, each
    decision the journal held stands, and the journal replays to the results written."""
    write(tmp_path, trials=24)
    args = [str(BIN / "ash"), "tune", "study.toml", "--workers", "2", "--threads", "1"]
    args += ["--journal", "j.jsonl", "--out", "out", "--trace", "t.jsonl"]
    first = subprocess.Popen(
        args, cwd=tmp_path, env=env(tmp_path, EPOCH_S="0.05"), start_new_session=True
    )
    journal = tmp_path / "j.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until some trials were stopped and some are running
        if journal.exists() and journal.read_text().count('"p"') >= 12:
            break
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before, _, records = replay_read_only(journal)
    decided = {
        t: [(r["rung"], r["resource"], r["value"]) for r in rec.results]
        for t, rec in before.results.trials.items()
        if rec.results
    }
    assert decided and any(res[-1][1] < R for res in decided.values())
    stopped_inflight = set(before.core.stopped)  # stopped, their results lost with the kill
    again = subprocess.run(
        args, cwd=tmp_path, env=env(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    doc = results(tmp_path / "out")
    assert doc["errors"] == [], doc["errors"]
    by_trial = {t["trial"]: t for t in doc["trials"]}
    for t, res in decided.items():
        assert [(r["rung"], r["resource"], r["value"]) for r in by_trial[t]["results"]] == res
    for t in doc["trials"]:
        last = t["reports"][-1]
        (res,) = t["results"]
        assert res["value"] == last["metrics"]["loss"]
    for job_id in stopped_inflight:  # settled at their stop, by their last report
        trial = before.core.inflight[job_id].trial
        assert by_trial[trial]["results"][0]["resource"] < R
    events = list(read_trace(tmp_path / "t.jsonl"))
    assert audit_for(events, load_spec(tmp_path / "study.toml")) == []
    after, _, _ = replay_read_only(journal)
    assert after.core.finished and not after.core.stopped
    assert [
        {"trial": t, "results": [(r["rung"], r["value"]) for r in rec.results]}
        for t, rec in sorted(after.results.trials.items())
    ] == [
        {"trial": t["trial"], "results": [(r["rung"], r["value"]) for r in t["results"]]}
        for t in doc["trials"]
    ]
    assert len(records) > 0


def test_driver_replay_rederives_the_stops(tmp_path: Path) -> None:
    spec = make_spec("asha-stopping", stop_on="reports", max_trials=6)
    o = open_study(spec, journal=tmp_path / "j.jsonl", fsync=False)
    d = o.driver
    jobs = [d.request(f"w{i}") for i in range(3)]
    assert all(a is not None for a in jobs)
    ids = [a.job.job_id for a in jobs if a is not None]
    d.report(ids[0], [(1, {"loss": 0.5})])  # continues (the first at rung 0)
    d.report(ids[1], [(1, {"loss": 0.9, "other": 1})])  # worse: stopped
    d.report(ids[2], [(1, {"other": 1})])  # no metric: no milestone
    assert d.take_stops() == [ids[1]]
    d.report(ids[1], [(2, {"loss": 0.8})])  # kept, the decision stands
    d.complete(ids[0], 0.1, {"loss": 0.1})
    d.sync()
    counts = d.core.rung_counts()
    d.journal.release()  # type: ignore[union-attr]
    d.journal = None  # "killed": nothing more is written
    again = open_study(spec, journal=tmp_path / "j.jsonl", fsync=False).driver
    try:
        assert again.core.rung_counts() == counts
        assert again.take_stops() == []  # a replay tells no trainer anything
        trials = again.results.trials
        (res,) = trials[jobs[1].job.trial].results  # type: ignore[union-attr]
        assert (res["rung"], res["resource"], res["value"]) == (0, 1, 0.8)  # its last report
        assert not trials[jobs[2].job.trial].results  # type: ignore[union-attr]
        assert ids[2] not in again.core.inflight  # lost in the restart, to be re-issued
    finally:
        again.close()


def test_a_non_finite_report_replays_to_the_same_failed_milestone(tmp_path: Path) -> None:
    """A -inf report is journaled as null with its value under ``n``: a replay ranks it as the
    failed milestone it was (a null alone would be no milestone: the trial would go on), a
    missing metric or a None one stays no milestone, and a damaged ``n`` is refused."""
    from ash.scheduler.journal import JournalError, check_record, seal, unseal

    spec = make_spec("asha-stopping", stop_on="reports", max_trials=6)
    journal = tmp_path / "j.jsonl"
    d = open_study(spec, journal=journal, fsync=False).driver
    jobs = [d.request(f"w{i}") for i in range(3)]
    ids = [a.job.job_id for a in jobs if a is not None]
    trials = [a.job.trial for a in jobs if a is not None]
    assert len(ids) == 3
    d.report(ids[0], [(1, {"loss": 0.5})])  # continues (the first at rung 0)
    d.report(ids[1], [(1, {"loss": -math.inf, "grad": math.nan})])  # failed: stopped
    d.report(ids[2], [(1, {"loss": None})])  # no value: no milestone
    assert d.take_stops() == [ids[1]]
    assert d.reports(trials[1])[0]["metrics"] == {"loss": None, "grad": None}
    d.report(ids[1], [(3, {"loss": 0.1})])  # kept, the decision stands
    d.complete(ids[1], 0.1, {"loss": 0.1})
    d.complete(ids[2], 0.7, {"loss": 0.7})
    d.sync()
    counts, doc = d.core.rung_counts(), d.results.to_json()
    d.close()
    text = journal.read_text()
    assert "Infinity" not in text and "NaN" not in text  # strict JSON
    again, _, records = replay_read_only(journal)
    assert again.core.rung_counts() == counts
    assert again.results.to_json() == doc
    (res,) = again.results.trials[trials[1]].results
    assert (res["rung"], res["resource"]) == (0, 1)  # settled where it was stopped
    (marked,) = [r for r in records if r.get("n")]
    assert sorted(marked["n"]) == [[0, "grad", "nan"], [0, "loss", "-inf"]]
    ok = {"p": 1, "s": [[1, {"loss": None}]], "t": 0.1}
    assert check_record({**ok, "n": [[0, "loss", "inf"]]}) is None
    for n in (
        [[1, "loss", "inf"]],
        [[0, "grad", "inf"]],
        [[0, "loss", "big"]],
        [[0, ["x"], "inf"]],
    ):
        assert check_record({**ok, "n": n}) is not None
    assert check_record({"p": 1, "s": [[1, {"loss": 2}]], "n": [[0, "loss", "inf"]]}) is not None
    # a record with a sound checksum and a wrong ``n`` is refused, naming its line
    line = next(x for x in text.splitlines() if '"n":' in x)
    inner = (unseal(line.encode()) or b"").decode()
    assert inner.count('"-inf"') == 1
    journal.write_text(text.replace(line, seal(inner.replace('"-inf"', '"huge"'))))
    with pytest.raises(JournalError, match=r"line \d+.*'n' is not a list"):
        replay_read_only(journal)


@pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or not (BIN / "mpiexec").exists(),
    reason="needs mpi4py and the venv's mpiexec",
)
@pytest.mark.parametrize("rank0", [False, True])
def test_mpi_ranks_trainers_are_stopped(tmp_path: Path, rank0: bool) -> None:
    write(tmp_path, trials=15)
    command = [str(BIN / "mpiexec"), "-n", "3", str(BIN / "ash"), "tune", "study.toml"]
    command += ["--transport", "mpi", "--out", "out", "--trace", "t.jsonl"]
    proc = subprocess.run(
        [*command, *(["--rank0-trains"] if rank0 else [])],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    doc = results(tmp_path / "out")
    ran = check_stopped(doc, trained(tmp_path))
    assert ran < 0.6 * len(doc["trials"]) * R, ran
    events = list(read_trace(tmp_path / "t.jsonl"))
    assert audit_for(events, load_spec(tmp_path / "study.toml")) == []
    workers = {e["worker"] for e in events if e["event"] == "assign"}
    assert ("rank0" in workers) == rank0 and {"rank1", "rank2"} <= workers


def test_trial_stopped_names_the_trial_and_step() -> None:
    exc = TrialStopped(4, 9.0)
    assert (exc.trial, exc.step) == (4, 9.0) and "trial 4" in str(exc)


def test_the_simulator_refuses_stop_on_reports() -> None:
    from ash.scheduler.benchmarks import Synthetic
    from ash.scheduler.simulator import simulate

    spec = make_spec("asha-stopping", stop_on="reports", max_trials=5)
    bench = Synthetic(spec.space, seed=0, metric="loss", mode="min", max_resource=R)
    with pytest.raises(SpecError, match=r"asha\.stop_on: 'reports' is not simulated"):
        simulate(spec, bench, 2)


def epochs_fn(config: dict[str, Any], ctx: Any) -> dict[str, float]:
    """A notebook's (config, ctx) trainer for ash.tune."""
    metrics: dict[str, float] = {}
    for epoch in range(int(ctx.start), int(ctx.stop)):
        metrics = {"loss": (config["x"] - 0.3) ** 2 + 1.0 / (epoch + 1)}
        ctx.report(epoch + 1, **metrics)
    return metrics


@pytest.mark.parametrize("stop_on", [None, "results"])
def test_api_tune_stops_a_context_function_on_its_reports(stop_on: str | None) -> None:
    """ash.tune(fn, algorithm="asha-stopping") with a (config, ctx) function stops on its
    reports by default (one job per trial); stop_on="results" asks for a job per rung."""
    import ash

    doc = ash.tune(
        epochs_fn,
        space={"x": {"uniform": [0.0, 1.0]}},
        metric="loss",
        algorithm="asha-stopping",
        max_resource=R,
        max_trials=12,
        workers=2,
        threads=1,
        quiet=True,
        stop_on=stop_on,
    )
    assert doc["errors"] == []
    jobs = [len(t["results"]) for t in doc["trials"]]
    if stop_on is None:
        assert set(jobs) == {1}
        for t in doc["trials"]:
            assert len(t["reports"]) == t["results"][0]["resource"]
        assert sum(len(t["reports"]) for t in doc["trials"]) < 0.7 * 12 * R  # vs all to R
    else:
        assert max(jobs) > 1


def classic_fn(config: dict[str, Any], start: float, stop: float, state: Any) -> Any:
    return {"loss": config["x"]}, None


def test_a_trainer_that_cannot_report_is_refused(tmp_path: Path) -> None:
    """stop_on = "reports" with a (config, start, stop, state) trainer would train every trial to
    max_resource unranked: refused at start, naming the trainer, in the API and the CLI."""
    import ash
    from ash.preflight import PreflightError

    with pytest.raises(PreflightError, match=r"tune\(classic_fn\) takes \(config, start, stop"):
        ash.tune(
            classic_fn,
            space={"x": {"uniform": [0.0, 1.0]}},
            metric="loss",
            algorithm="asha-stopping",
            stop_on="reports",
            max_resource=R,
            max_trials=3,
            quiet=True,
        )
    write(tmp_path, trials=3)
    (tmp_path / "stop_trainer.py").write_text(
        "def fit(config, start, stop, state):\n    return {'loss': config['x']}, None\n"
    )
    proc = tune(tmp_path, "--journal", "j.jsonl")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "asha.stop_on = 'reports' needs a (config, ctx) trainer" in proc.stderr
    assert "trainer.entrypoint 'stop_trainer:fit' takes (config, start, stop, state)" in proc.stderr
    assert not (tmp_path / "j.jsonl").exists()
