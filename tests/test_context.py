"""The trial context (``fn(config, ctx)``): reports, file checkpoints and devices, over the real
paths: embedded ``ash tune``, an ``ash-scheduler`` with ``ash-worker`` processes, and MPI."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import queue
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import grpc
import pytest

import ash
from ash.link.wire import scheduler_stub
from ash.proto import ash_pb2 as pb
from ash.scheduler.audit import audit_for
from ash.scheduler.trace import read_trace
from ash.spec import load_spec
from ash.worker import ckptfiles
from ash.worker.context import JobInfo, Reporter, Workspace, takes_context
from ash.worker.trainers import FunctionTrainer, run_job
from helpers import BIN, Scheduler, results, worker
from helpers import run_ash as ash_cli

TRAINER = """
import json, os


def fit(config, ctx):
    restore = ctx.restore_dir()
    if ctx.rung == 0:
        if restore is not None or ctx.state is not None:
            raise AssertionError(f"rung 0 has restore={restore} state={ctx.state!r}")
        w = 0.0
    else:
        data = json.loads((restore / "model" / "weights.json").read_text())
        if data["trial"] != ctx.trial or data["epoch"] != ctx.start:
            raise AssertionError(f"restored {data}, expected trial {ctx.trial} at {ctx.start}")
        if ctx.state != f"b-{ctx.trial}-{ctx.start:g}".encode():
            raise AssertionError(f"state {ctx.state!r}")
        w = data["w"]
        if os.environ.get("STRICT_DIR"):
            seen = (ctx.dir / "rungs").read_text().split()
            if str(ctx.rung - 1) not in seen:
                raise AssertionError(f"ctx.dir lost: {seen}")
    with open(ctx.dir / "rungs", "a") as f:
        f.write(f"{ctx.rung}\\n")
    loss = None
    for epoch in range(int(ctx.start), int(ctx.stop)):
        w += 1.0
        loss = (config["x"] - 0.3) ** 2 + 1.0 / (epoch + 1)
        ctx.report(epoch + 1, loss=loss, w=w)
    d = ctx.checkpoint_dir()
    (d / "model").mkdir()
    weights = {"trial": ctx.trial, "epoch": ctx.stop, "w": w}
    (d / "model" / "weights.json").write_text(json.dumps(weights))
    log = os.environ.get("CTX_LOG")
    if log:
        keys = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "JAX_CUDA_VISIBLE_DEVICES",
                "ASH_DEVICE")
        with open(os.path.join(log, f"{os.getpid()}-{ctx.trial}-{ctx.rung}.json"), "w") as f:
            json.dump({"trial": ctx.trial, "rung": ctx.rung, "device": ctx.device,
                       "pid": os.getpid(), "env": {k: os.environ.get(k) for k in keys}}, f)
    return {"loss": loss}, f"b-{ctx.trial}-{ctx.stop:g}".encode()
"""

SPEC = """
[study]
name = "ctx"
metric = "loss"
seed = 1
[asha]
min_resource = 1
max_resource = 9
reduction_factor = 3
max_trials = {max_trials}
[trainer]
type = "python"
entrypoint = "ctx_trainer:fit"
[space]
x = {{ uniform = [0.0, 1.0] }}
"""


def write(tmp_path: Path, max_trials: int = 12) -> Path:
    (tmp_path / "ctx_trainer.py").write_text(TRAINER)
    spec = tmp_path / "study.toml"
    spec.write_text(SPEC.format(max_trials=max_trials))
    return spec


def finish(sched: Scheduler, workers: list[subprocess.Popen[str]]) -> None:
    """Wait for a scheduler's study to end and its workers to exit 0 (killing what is left)."""
    try:
        assert sched.wait() == 0
        for w in workers:
            assert w.wait(timeout=60) == 0, w.stderr.read() if w.stderr else ""
    finally:
        sched.kill()
        for w in workers:
            if w.poll() is None:
                w.kill()


def check_reports(doc: dict[str, Any]) -> None:
    """Every trial reported each epoch it trained, in order, at the right rung, and each
    result's value is its last report's loss."""
    assert doc["errors"] == [], doc["errors"]
    promoted = 0
    for t in doc["trials"]:
        top = max(r["resource"] for r in t["results"])
        reports = t["reports"]
        assert [r["step"] for r in reports] == list(range(1, int(top) + 1))
        x = t["config"]["x"]
        for r in reports:
            assert r["metrics"]["loss"] == pytest.approx((x - 0.3) ** 2 + 1.0 / r["step"])
            assert r["metrics"]["w"] == r["step"]  # the weights came back from restore_dir
        for res in t["results"]:
            last = [r for r in reports if r["rung"] == res["rung"]][-1]
            assert last["step"] == res["resource"] and last["metrics"]["loss"] == res["value"]
        promoted += len(t["results"]) > 1
    assert promoted >= 2


def test_embedded_tune_reports_restores_files_and_resumes(tmp_path: Path) -> None:
    spec = write(tmp_path)
    env = {"STRICT_DIR": "1"}  # one worker root: ctx.dir outlives every promotion
    args = ["tune", str(spec), "--workers", "2", "--threads", "1", "--journal", "j.jsonl"]
    proc = ash_cli(*args, "--out", "out", "--trace", "t.jsonl", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    doc = results(tmp_path / "out")
    check_reports(doc)
    assert audit_for(list(read_trace(tmp_path / "t.jsonl")), load_spec(spec)) == []
    assert "report" not in {e["event"] for e in read_trace(tmp_path / "t.jsonl")}
    records = [json.loads(line) for line in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert records[0]["version"] == 3
    batches = [r for r in records if "p" in r]
    assert batches and sum(len(r["s"]) for r in batches) == sum(
        len(t["reports"]) for t in doc["trials"]
    )
    # the journal holds the reports: a resumed (finished) study rebuilds the same results
    again = ash_cli(*args, "--out", "out2", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert results(tmp_path / "out2")["trials"] == doc["trials"]


def test_reports_and_file_checkpoints_over_grpc_workers(tmp_path: Path) -> None:
    spec = write(tmp_path, max_trials=15)
    sched = Scheduler(spec, tmp_path, "--out", "out", "--journal", "j.jsonl", "--trace", "t.jsonl")
    workers = [
        worker(sched.target, tmp_path, f"w{i}", "--devices", dev, "--work-dir", f"work{i}")
        for i, dev in enumerate(("a0", "b1"))
    ]
    finish(sched, workers)
    check_reports(results(tmp_path / "out"))
    # which worker ran jobs is the race of two workers for 15 fast trials: one may get none
    ran = {e["worker"] for e in read_trace(tmp_path / "t.jsonl") if e["event"] == "assign"}
    assert ran and ran <= {"w0", "w1"}
    for i in range(2):  # ctx.dir lives under the worker's --work-dir; a job's scratch is gone
        root = tmp_path / f"work{i}" / "ctx"
        assert any(root.glob("trial-*/rungs")) == (f"w{i}" in ran)
        assert not root.exists() or not any((root / ".ash").iterdir())


@pytest.mark.parametrize("transport", ["inproc", "grpc"])
def test_devices_one_slot_each_with_its_environment(tmp_path: Path, transport: str) -> None:
    spec = write(tmp_path, max_trials=12)
    log = tmp_path / "log"
    log.mkdir()
    proc = ash_cli(
        "tune",
        str(spec),
        "--devices",
        "3,GPU-7f",
        "--threads",
        "1",
        "--transport",
        transport,
        "--out",
        "out",
        cwd=tmp_path,
        env={"CTX_LOG": str(log)},
    )
    assert proc.returncode == 0, proc.stderr
    seen = [json.loads(p.read_text()) for p in log.iterdir()]
    assert len(seen) == sum(len(t["results"]) for t in results(tmp_path / "out")["trials"])
    device_of_pid: dict[int, str] = {}
    for s in seen:
        d = s["device"]
        assert d in ("3", "GPU-7f")
        assert s["env"] == {
            "CUDA_VISIBLE_DEVICES": d,
            "HIP_VISIBLE_DEVICES": d,
            "JAX_CUDA_VISIBLE_DEVICES": "0",
            "ASH_DEVICE": d,
        }
        assert device_of_pid.setdefault(s["pid"], d) == d  # a slot keeps its device
    assert len(device_of_pid) == 2  # two slots, one per device


def test_devices_flag_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    spec = write(tmp_path)
    for flags, said in (
        (["--devices", "0,,1"], "device id ''"),
        (["--devices", "0,1", "--workers", "3"], "one worker per device"),
    ):
        proc = ash_cli("tune", str(spec), *flags, cwd=tmp_path)
        assert proc.returncode == 2 and said in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    proc = subprocess.run(
        [str(BIN / "ash-worker"), "--scheduler", "127.0.0.1:1", "--devices", "0,1", "--slots", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "one slot per device" in proc.stderr


def notebook_trainer(config: dict[str, Any], ctx: Any) -> dict[str, float]:
    for step in range(int(ctx.start), int(ctx.stop)):
        ctx.report(step + 1, loss=config["x"] + 1.0 / (step + 1))
    return {"loss": config["x"] + 1.0 / ctx.stop}


def test_api_tune_with_a_context_function(tmp_path: Path) -> None:
    doc = ash.tune(
        notebook_trainer,
        space={"x": {"uniform": [0.0, 1.0]}},
        max_resource=9,
        max_trials=9,
        workers=2,
        threads=1,
        progress=False,
        devices="0,1",
    )
    assert doc["errors"] == []
    for t in doc["trials"]:
        assert len(t["reports"]) == max(r["resource"] for r in t["results"])


@pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or not (BIN / "mpiexec").exists(),
    reason="needs mpi4py and the venv's mpiexec",
)
def test_reports_and_file_checkpoints_over_mpi(tmp_path: Path) -> None:
    spec = write_keep(tmp_path, keep_best=2)
    args = ["--transport", "mpi", "--rank0-trains", "--out", "out", "--journal", "j.jsonl"]
    proc = subprocess.run(
        [str(BIN / "mpiexec"), "-n", "3", str(BIN / "ash"), "tune", str(spec), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = results(tmp_path / "out")
    check_reports(doc)
    check_kept(tmp_path / "j.jsonl.ckpt", doc, keep_best=2)


# -- the pieces ------------------------------------------------------------------------------


def test_signature_decides_the_form() -> None:
    assert takes_context(lambda config, ctx: {})
    assert not takes_context(lambda config, start, stop, state: ({}, None))
    assert not takes_context(lambda config, *rest: ({}, None))
    with pytest.raises(ValueError, match="must take"):
        takes_context(lambda config: {})


def test_reports_are_checked_and_batched() -> None:
    sent: list[tuple[int, int]] = []
    rep = Reporter(7, lambda job, batch: sent.append((job, len(batch))))
    for i in range(1000):
        rep.add(i, {"loss": float(i)})
    rep.flush()
    assert sum(n for _, n in sent) == 1000 and len(sent) <= 8  # batches, not a call per report
    rep.add(1001, {"loss": 1.0})
    assert rep.dropped == 1  # beyond MAX_REPORTS_PER_JOB
    for bad, said in (
        ((float("nan"),), "not finite"),
        (("1",), "not a number"),
        ((1, [1, 2]), "not a number or a string"),
        ((1,), "at least one metric"),
    ):
        step, *value = bad
        metrics = {"m": value[0]} if value else {}
        with pytest.raises(ValueError, match=said):
            rep.add(step, metrics)


def hostile(member: tarfile.TarInfo, data: bytes = b"x") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        if member.isreg():
            member.size = len(data)
            tf.addfile(member, io.BytesIO(data))
        else:
            tf.addfile(member)
    return ckptfiles.pack(None, None) + buf.getvalue()


@pytest.mark.parametrize(
    "member",
    [
        tarfile.TarInfo("../escape"),
        tarfile.TarInfo("/abs/file"),
        tarfile.TarInfo("a/../../escape"),
        "symlink",
        "hardlink",
        "fifo",
    ],
)
def test_a_hostile_checkpoint_archive_is_refused(tmp_path: Path, member: Any) -> None:
    if member == "symlink":
        member = tarfile.TarInfo("link")
        member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif member == "hardlink":
        member = tarfile.TarInfo("hard")
        member.type, member.linkname = tarfile.LNKTYPE, "/etc/passwd"
    elif member == "fifo":
        member = tarfile.TarInfo("fifo")
        member.type = tarfile.FIFOTYPE
    state = hostile(member)
    dest = tmp_path / "restore"
    dest.mkdir()
    with pytest.raises(ckptfiles.CheckpointFilesError):
        ckptfiles.unpack(ckptfiles.split(state)[1], dest)
    assert list(dest.iterdir()) == [] and not (tmp_path / "escape").exists()
    # through a trainer: the job fails with the reason, nothing is written outside
    called: list[int] = []

    def fit(config: dict[str, Any], ctx: Any) -> dict[str, float]:
        called.append(1)
        return {"loss": 1.0}

    out = run_job(
        FunctionTrainer(fit),
        "loss",
        {},
        1.0,
        3.0,
        state,
        job=JobInfo(5, 2, 1, False),
        workspace=Workspace(tmp_path / "work", "s"),
    )
    assert out.value is None and out.error is not None
    assert "cannot restore the checkpoint files" in out.error and not called
    assert not (tmp_path / "escape").exists()
    assert list((tmp_path / "work" / "s" / ".ash").iterdir()) == []


def test_pack_round_trip_and_refusals(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.bin").write_bytes(b"\0" * 1000)
    (src / "b.txt").write_text("hi")
    for data in (None, b"", b"user"):
        state = ckptfiles.pack(data, src)
        got, tar = ckptfiles.split(state)
        assert got == data
        dest = tmp_path / f"dest-{data!r}"
        dest.mkdir()
        assert ckptfiles.unpack(tar, dest) == 2
        assert (dest / "sub" / "a.bin").read_bytes() == b"\0" * 1000
    (src / "link").symlink_to(src / "b.txt")
    with pytest.raises(ckptfiles.CheckpointFilesError, match="symlink"):
        ckptfiles.pack(None, src)
    for bad in (ckptfiles.MAGIC, ckptfiles.MAGIC + b"\x02" + bytes(8), b"plain"):
        with pytest.raises(ckptfiles.CheckpointFilesError):
            ckptfiles.split(bad)


def session(target: str, *after_assignment: pb.WorkerMessage) -> tuple[grpc.StatusCode, int]:
    """A raw worker session: hello, wait for a job, then send ``after_assignment`` (each
    naming job 0 is given the job's id); its status and the job id."""
    out: queue.Queue[pb.WorkerMessage | None] = queue.Queue()
    out.put(pb.WorkerMessage(hello=pb.Hello(worker_id="raw", slots=1, devices=["g0"])))
    job = -1
    with grpc.insecure_channel(target) as ch:
        call = scheduler_stub(ch).Session(iter(out.get, None), timeout=20)
        try:
            for msg in call:
                if msg.WhichOneof("msg") == "assignment" and job < 0:
                    job = msg.assignment.job_id
                    st = scheduler_stub(ch).Status(pb.StatusRequest(), timeout=10)
                    infos = [(w.id, list(w.devices)) for w in st.worker_info]
                    assert infos == [("raw", ["g0"])]  # Status shows the worker's devices
                    for m in after_assignment:
                        m = pb.WorkerMessage.FromString(m.SerializeToString())
                        for entry in m.reports.jobs:
                            entry.job_id = entry.job_id or job
                        if m.WhichOneof("msg") == "result":
                            m.result.job_id = job
                        out.put(m)
                    out.put(None)
        except grpc.RpcError as exc:
            return exc.code(), job
    return grpc.StatusCode.OK, job


def report_msg(step: float = 1.0, n_metrics: int = 1, n_reports: int = 1) -> pb.WorkerMessage:
    msg = pb.WorkerMessage()
    entry = msg.reports.jobs.add(job_id=0)
    for _ in range(n_reports):
        r = entry.reports.add(step=step)
        for i in range(n_metrics):
            r.metrics[f"m{i}"].number = 0.5
    return msg


def test_malformed_reports_are_refused_and_the_server_lives(tmp_path: Path) -> None:
    spec = write(tmp_path, max_trials=40)
    sched = Scheduler(spec, tmp_path, "--lease", "30")
    try:
        empty_value = report_msg()
        empty_value.reports.jobs[0].reports[0].metrics["bad"].Clear()
        no_metrics = report_msg(n_metrics=0)
        stranger = report_msg()
        stranger.reports.jobs[0].job_id = 10**9  # never issued
        for bad in (
            report_msg(step=math.nan),
            report_msg(step=math.inf),
            report_msg(n_metrics=65),  # the cap of a result's metrics
            report_msg(n_reports=257),  # MAX_REPORT_BATCH per entry
            empty_value,
            no_metrics,
            stranger,
            pb.WorkerMessage(reports=pb.ReportBatch()),  # no entries
        ):
            code, job = session(sched.target, bad)
            assert job >= 0 and code == grpc.StatusCode.INVALID_ARGUMENT, (code, bad)
            assert sched.proc.poll() is None
        done = pb.WorkerMessage(result=pb.Result(ok=True, value=0.5))
        code, _ = session(sched.target, report_msg(step=2), report_msg(step=3), done)
        with grpc.insecure_channel(sched.target) as ch:
            st: Any = scheduler_stub(ch).Status(pb.StatusRequest(), timeout=10)
        assert code == grpc.StatusCode.OK and st.reports == 2  # the lost jobs' were dropped
        assert st.latest.step == 3 and dict(st.latest.metrics)["m0"].number == 0.5
    finally:
        sched.kill()


# -- the journal -----------------------------------------------------------------------------


def test_report_records_replay_survive_a_torn_tail_and_refuse_damage(tmp_path: Path) -> None:
    from ash.scheduler.driver import open_study
    from ash.scheduler.journal import JournalError, check_record, seal
    from helpers import make_spec

    spec = make_spec(max_trials=5)
    journal = tmp_path / "j.jsonl"
    d = open_study(spec, journal=journal).driver
    a = d.request("w")
    b = d.request("w")
    assert a is not None and b is not None
    assert d.report(a.job.job_id, [(1, {"loss": 0.9}), (2, {"loss": 0.8})])
    assert d.report(b.job.job_id, [(1, {"loss": 0.7})])
    d.complete(a.job.job_id, 0.8, {"loss": 0.8})
    assert not d.report(a.job.job_id, [(3, {"loss": 0.1})])  # settled: a late report is dropped
    d.lose(b.job.job_id, why="gone")  # its retry reports again: its reports are dropped
    assert d.reports(b.job.trial) == []
    d.close()
    lines = journal.read_text().splitlines()
    assert json.loads(lines[0])["version"] == 3
    assert sum('"p":' in line for line in lines) == 2
    # resumed: the same reports, from the journal
    d2 = open_study(spec, journal=journal).driver
    assert d2.reports(a.job.trial) == [
        {"rung": 0, "step": 1, "metrics": {"loss": 0.9}},
        {"rung": 0, "step": 2, "metrics": {"loss": 0.8}},
    ]
    assert d2.status().reports == 2
    c = d2.request("w")
    assert c is not None
    d2.report(c.job.job_id, [(1, {"loss": 0.5})])
    d2.close()
    # a torn report record at the end is cut off (its job was in flight: it is re-issued)
    torn = journal.read_bytes()[:-7]
    assert torn.rsplit(b"\n", 1)[1].startswith(b'{"p":')
    journal.write_bytes(torn)
    d3 = open_study(spec, journal=journal).driver
    assert d3.status().reports == 2
    d3.close()
    # a damaged one refuses to start, naming the line
    text = journal.read_text().replace('"loss":0.9', '"loss":0.7', 1)
    journal.write_text(text)
    with pytest.raises(JournalError, match=r"line \d+ is damaged \(checksum mismatch\)"):
        open_study(spec, journal=journal)
    # shapes
    assert check_record({"p": 1, "s": [[1, {"m": 1}]], "t": 0.1}) is None
    for bad in ({"p": 1, "t": 0.1}, {"p": 1, "s": [[1]], "t": 0.1}, {"p": 1, "s": [["x", {}]]}):
        assert check_record(bad) is not None
    assert seal("{}") != "{}"


def test_a_version_2_journal_resumes_and_takes_reports(tmp_path: Path) -> None:
    from ash.scheduler.driver import open_study
    from ash.scheduler.journal import seal, unseal
    from helpers import make_spec

    spec = make_spec(max_trials=5)
    journal = tmp_path / "j.jsonl"
    d = open_study(spec, journal=journal).driver
    a = d.request("w")
    assert a is not None
    d.complete(a.job.job_id, 0.5, {"loss": 0.5})
    d.close()
    lines = journal.read_bytes().splitlines()
    header = json.loads(unseal(lines[0]) or b"")
    header["version"] = 2  # what ash wrote before reports
    lines[0] = seal(json.dumps(header, separators=(",", ":"))).encode()
    journal.write_bytes(b"\n".join(lines) + b"\n")
    d2 = open_study(spec, journal=journal).driver
    b = d2.request("w")
    assert b is not None and d2.report(b.job.job_id, [(1, {"loss": 0.4})])
    d2.complete(b.job.job_id, 0.4, {"loss": 0.4})
    d2.close()
    d3 = open_study(spec, journal=journal).driver
    assert d3.reports(b.job.trial) == [{"rung": 0, "step": 1, "metrics": {"loss": 0.4}}]
    d3.close()


def dies(config: dict[str, Any], ctx: Any) -> dict[str, float]:
    (ctx.checkpoint_dir() / "half-written").write_bytes(b"x")
    os._exit(3)


def test_a_slot_that_dies_leaves_no_scratch_and_keeps_its_device(tmp_path: Path) -> None:
    import time

    from ash.worker.slots import Died, Slots
    from helpers import make_spec

    slots = Slots(make_spec(), 1, 1, trainer=dies, work_root=tmp_path, devices=["7"])
    try:
        slots.submit(slots.slots[0], (4, {"x": 0.5, "k": "a"}, 0.0, 1.0, None, 2, 0))
        events: list[Any] = []
        deadline = time.monotonic() + 60
        while not events and time.monotonic() < deadline:
            events = slots.wait(0.5)
        assert [type(e) for e in events] == [Died] and events[0].job_id == 4
        assert (tmp_path / "t" / "trial-2").is_dir()  # ctx.dir stays
        assert list((tmp_path / "t" / ".ash").iterdir()) == []
        assert slots.slots[0].device == "7"  # the restarted slot has its device
    finally:
        slots.shutdown()
    assert tmp_path.exists()  # a given work root is the caller's


def test_reports_before_a_failure_are_sent_and_late_ones_ignored(tmp_path: Path) -> None:
    sent: list[tuple[int, list[Any]]] = []
    kept: list[Any] = []

    def fails(config: dict[str, Any], ctx: Any) -> Any:
        for i in range(3):
            ctx.report(i, loss=1.0)
        kept.append(ctx)
        if config["how"] == "raise":
            raise RuntimeError("boom")
        return [1, 2]  # neither metrics nor (metrics, state)

    ws = Workspace(tmp_path, "s", send=lambda job, batch: sent.append((job, batch)))
    for how, said in (("raise", "RuntimeError: boom"), ("bad", "must return metrics")):
        sent.clear()
        out = run_job(FunctionTrainer(fails), "loss", {"how": how}, 0, 1, None, workspace=ws)
        assert out.error is not None and said in out.error
        assert sum(len(b) for _, b in sent) == 3
        kept[-1].report(9, loss=0.0)  # a stray thread, after the job
        assert sum(len(b) for _, b in sent) == 3


MANY = """
def fit(config, ctx):
    for i in range(1000):  # a report per step of a tight loop
        ctx.report(int(ctx.start) * 1000 + i, loss=config["x"] + 1.0 / (i + 1))
    return {"loss": config["x"] + 1.0 / ctx.stop}
"""


def test_a_thousand_reports_per_job_cost_a_few_messages(tmp_path: Path) -> None:
    (tmp_path / "many.py").write_text(MANY)
    spec = tmp_path / "study.toml"
    spec.write_text(SPEC.format(max_trials=6).replace("ctx_trainer:fit", "many:fit"))
    sched = Scheduler(spec, tmp_path, "--out", "out", "--journal", "j.jsonl")
    w = worker(sched.target, tmp_path, "w0", "--slots", "2")
    try:
        assert sched.wait() == 0
        assert w.wait(timeout=60) == 0
    finally:
        sched.kill()
        if w.poll() is None:
            w.kill()
    records = [json.loads(line) for line in (tmp_path / "j.jsonl").read_text().splitlines()]
    jobs = sum(1 for r in records if "r" in r)
    batches = [r for r in records if "p" in r]
    assert sum(len(r["s"]) for r in batches) == 1000 * jobs  # every report kept
    assert len(batches) <= 8 * jobs  # batched: a journal record (and message) per batch
    doc = results(tmp_path / "out")
    assert sum(len(t["reports"]) for t in doc["trials"]) == 1000 * jobs


# -- non-finite reports ------------------------------------------------------------------------

DIVERGES = """
import math


def fit(config, ctx):
    for epoch in range(int(ctx.start), int(ctx.stop)):
        bad = {"a": math.inf, "b": -math.inf, "c": math.nan}.get(config["k"])
        loss = bad if bad is not None and epoch >= 1 else config["x"] + 1.0 / (epoch + 1)
        ctx.report(epoch + 0.5, note=None)  # nothing: no report
        ctx.report(epoch + 1, loss=loss, grad=bad if bad is not None else 1.0, ok=epoch, no=None)
    return {"loss": config["x"] + 1.0 / ctx.stop}
"""


def write_diverging(tmp_path: Path, max_trials: int = 12) -> Path:
    """A study whose trainer reports inf, -inf or NaN (by its config's ``k``) from epoch 2,
    and None (no value) too."""
    (tmp_path / "diverges.py").write_text(DIVERGES)
    spec = tmp_path / "study.toml"
    text = SPEC.format(max_trials=max_trials).replace("ctx_trainer:fit", "diverges:fit")
    spec.write_text(text + 'k = { choice = ["a", "b", "c", "d"] }\n')
    return spec


def nulls(doc: dict[str, Any]) -> int:
    """How many kept reports hold a null loss; every such report also has its null grad, and
    a null is where the trainer reported a non-finite number."""
    n = 0
    assert doc["errors"] == [], doc["errors"]
    for t in doc["trials"]:
        steps = [r["step"] for r in t["reports"]]
        assert steps == list(range(1, len(steps) + 1))  # the reports of nothing left out
        for r in t["reports"]:
            m = r["metrics"]
            assert set(m) == {"loss", "grad", "ok"}  # None is no value: not kept
            if t["config"]["k"] != "d" and r["step"] >= 2:
                assert m["loss"] is None and m["grad"] is None and m["ok"] == r["step"] - 1
                n += 1
            else:
                assert m["loss"] == pytest.approx(t["config"]["x"] + 1.0 / r["step"])
    return n


@pytest.mark.parametrize("transport", ["inproc", "grpc"])
def test_non_finite_reports_are_null_with_a_journal_and_resume_the_same(
    tmp_path: Path, transport: str
) -> None:
    """A diverging trainer (inf, -inf, NaN in ctx.report) with --journal: the study goes on,
    its reports are null as without a journal, every job settles (none lost: over gRPC the
    session used to end INTERNAL), and the journal, strict JSON, replays to the same results.
    A report of only None values is no report on every transport (over gRPC it went out
    without metrics and the scheduler ended the worker's session as malformed)."""
    spec = write_diverging(tmp_path)
    run = ["tune", str(spec), "--workers", "1", "--threads", "1", "--transport", transport]
    plain = ash_cli(*run, "--out", "plain", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    got = ash_cli(*run, "--journal", "j.jsonl", "--out", "out", "--trace", "t.jsonl", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert "Traceback" not in got.stderr
    doc = results(tmp_path / "out")
    assert nulls(doc) >= 6  # some trials were promoted past their first epoch
    assert {e["event"] for e in read_trace(tmp_path / "t.jsonl")} == {"assign", "result"}
    if transport == "inproc":  # one slot: the same decisions as without the journal
        assert doc["trials"] == results(tmp_path / "plain")["trials"]
    text = (tmp_path / "j.jsonl").read_text()
    records = [json.loads(line, parse_constant=pytest.fail) for line in text.splitlines()]
    marked = [n for r in records if "p" in r for n in r.get("n", [])]
    assert {n[2] for n in marked} == {"inf", "-inf", "nan"}
    assert {n[1] for n in marked} == {"loss", "grad"}
    again = ash_cli(*run, "--journal", "j.jsonl", "--out", "again", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert results(tmp_path / "again")["trials"] == doc["trials"]


def test_a_peer_s_non_finite_report_keeps_its_session(tmp_path: Path) -> None:
    """A ReportBatch holding inf, -inf and NaN metrics is data, not a protocol error: the
    session goes on (it ended INTERNAL on a journaled scheduler), the result after it is
    taken, and the reports are kept (the non-finite numbers null)."""
    spec = write(tmp_path, max_trials=40)
    sched = Scheduler(spec, tmp_path, "--lease", "30", "--journal", "j.jsonl", "--out", "out")
    try:
        diverged = report_msg(step=1)
        for name, v in (("m0", math.inf), ("m1", -math.inf), ("loss", math.nan)):
            diverged.reports.jobs[0].reports[0].metrics[name].number = v
        done = pb.WorkerMessage(result=pb.Result(ok=True, value=0.5))
        code, job = session(sched.target, diverged, report_msg(step=2), done)
        assert code == grpc.StatusCode.OK and job >= 0
        with grpc.insecure_channel(sched.target) as ch:
            st: Any = scheduler_stub(ch).Status(pb.StatusRequest(), timeout=10)
        assert st.reports == 2 and st.results == 1 and st.failed == 0
        assert sched.proc.poll() is None
    finally:
        sched.kill()
    records = [json.loads(line) for line in (tmp_path / "j.jsonl").read_text().splitlines()]
    (first, second) = [r for r in records if "p" in r]
    assert first["s"] == [[1, {"m0": None, "m1": None, "loss": None}]]
    assert sorted(map(tuple, first["n"])) == [
        (0, "loss", "nan"),
        (0, "m0", "inf"),
        (0, "m1", "-inf"),
    ]
    assert "n" not in second


# -- keep_best: a (config, ctx) trainer's top-rung checkpoint is kept as any state ------------


def write_keep(tmp_path: Path, keep_best: int, max_trials: int = 40) -> Path:
    spec = write(tmp_path, max_trials=max_trials)
    spec.write_text(spec.read_text() + f"[checkpoints]\nkeep_best = {keep_best}\n")
    return spec


def check_kept(ckpt: Path, doc: dict[str, Any], keep_best: int) -> None:
    """``ckpt`` (a journal's ``.ckpt/``) holds the ``keep_best`` best trials' top-rung states
    (results.json's order: highest resource, then value, then trial id) and nothing else; each
    opens to what that trial's last job wrote into ``checkpoint_dir()`` and returned."""
    assert doc["errors"] == [], doc["errors"]
    last = {t["trial"]: t["results"][-1] for t in doc["trials"]}
    ranked = sorted(last, key=lambda t: (-last[t]["resource"], last[t]["value"], t))
    assert sum(r["resource"] == 9 for r in last.values()) > keep_best  # some are discarded
    best = ranked[:keep_best]
    assert sorted(p.name for p in ckpt.glob("*.ckpt")) == sorted(f"t{t}-r9.ckpt" for t in best)
    assert [p.name for p in ckpt.iterdir() if p.name != "dropped"] == [
        p.name for p in ckpt.glob("*.ckpt")
    ]
    for t in best:
        out = ckpt.parent / f"opened-{t}"
        data = ckptfiles.extract((ckpt / f"t{t}-r9.ckpt").read_bytes(), out)
        assert data == f"b-{t}-9".encode()
        assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
            "model",
            "model/weights.json",
        ]
        weights = json.loads((out / "model" / "weights.json").read_text())
        assert weights == {"trial": t, "epoch": 9, "w": 9.0}  # trained 1 + 2 + 6 epochs


def test_keep_best_keeps_the_best_context_trials_files_embedded(tmp_path: Path) -> None:
    spec = write_keep(tmp_path, keep_best=2)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    args = ["tune", str(spec), "--workers", "2", "--threads", "1", "--journal", "j.jsonl"]
    proc = ash_cli(*args, "--out", "out", cwd=tmp_path, env={"TMPDIR": str(tmp)})
    assert proc.returncode == 0, proc.stderr
    doc = results(tmp_path / "out")
    check_reports(doc)
    check_kept(tmp_path / "j.jsonl.ckpt", doc, keep_best=2)
    assert list(tmp.iterdir()) == []  # the work root (trial folders, job scratch) is gone


def test_keep_best_keeps_the_best_context_trials_files_over_grpc(tmp_path: Path) -> None:
    spec = write_keep(tmp_path, keep_best=2)
    sched = Scheduler(spec, tmp_path, "--out", "out", "--journal", "j.jsonl")
    workers = [worker(sched.target, tmp_path, f"w{i}", "--work-dir", f"work{i}") for i in range(2)]
    finish(sched, workers)
    doc = results(tmp_path / "out")
    check_reports(doc)
    check_kept(tmp_path / "j.jsonl.ckpt", doc, keep_best=2)
    for i in range(2):  # every job's scratch (its checkpoint and restore folders) is removed
        scratch = tmp_path / f"work{i}" / "ctx" / ".ash"
        assert not scratch.exists() or list(scratch.iterdir()) == []


def test_a_top_rung_job_is_packed_only_when_the_study_may_keep_it(tmp_path: Path) -> None:
    """keep_best > 0: a job to max_resource returns its files and bytes packed (the scheduler's
    retention keeps the best); keep_best = 0, or a job stopped on its reports: nothing."""
    import dataclasses

    from helpers import make_spec  # max_resource 27

    def fit(config: dict[str, Any], ctx: Any) -> Any:
        (ctx.checkpoint_dir() / "w.txt").write_text(f"{ctx.trial}@{ctx.stop:g}")
        return {"loss": 1.0}, b"bytes"

    ws = Workspace(tmp_path / "work", "s")
    cases = [  # keep_best, stop, stopped on its reports, packed
        (1, 27.0, False, True),
        (3, 27.0, False, True),
        (0, 9.0, False, True),
        (0, 27.0, False, False),
        (2, 27.0, True, False),
    ]
    for keep, stop, stopped, packed in cases:
        spec = dataclasses.replace(make_spec(), keep_best=keep)
        info = JobInfo.of(spec, 1, 4, 2, stop)
        assert info.discard == (not packed and not stopped)
        out = run_job(
            FunctionTrainer(fit),
            "loss",
            {},
            9.0,
            stop,
            None,
            job=info,
            workspace=ws,
            stop_check=lambda s=stopped: s,
        )
        assert out.value == 1.0 and out.error is None
        if not packed:
            assert out.state is None
            continue
        assert out.state is not None
        dest = tmp_path / f"open-{keep}-{stop:g}"
        assert ckptfiles.extract(out.state, dest) == b"bytes"
        assert (dest / "w.txt").read_text() == f"4@{stop:g}"
        assert list((tmp_path / "work" / "s" / ".ash").iterdir()) == []
    with pytest.raises(ckptfiles.CheckpointFilesError, match="not empty"):
        ckptfiles.extract(ckptfiles.pack(b"x", None), dest)
    with pytest.raises(ckptfiles.CheckpointFilesError, match="not a packed"):
        ckptfiles.extract(b"plain bytes", tmp_path / "other")


STOPPING = """
def fit(config, ctx):
    loss = None
    for epoch in range(int(ctx.start), int(ctx.stop)):
        loss = (config["x"] - 0.3) ** 2 + 1.0 / (epoch + 1)
        ctx.report(epoch + 1, loss=loss)
    (ctx.checkpoint_dir() / "model.txt").write_text(f"{ctx.trial} {config['x']!r} {ctx.stop:g}")
    return {"loss": loss}
"""


def test_keep_best_on_reports_keeps_the_best_trials_that_trained_to_the_top(
    tmp_path: Path,
) -> None:
    """stop_on = "reports": a trial runs as one job; those stopped on their reports keep
    nothing, the keep_best best of those that trained to max_resource keep their files."""
    spec = write_keep(tmp_path, keep_best=2, max_trials=60)
    (tmp_path / "stopping.py").write_text(STOPPING)
    text = spec.read_text().replace("ctx_trainer:fit", "stopping:fit")
    text = text.replace('metric = "loss"', 'metric = "loss"\nalgorithm = "asha-stopping"')
    spec.write_text(text.replace("max_trials = 60", 'max_trials = 60\nstop_on = "reports"'))
    args = ["tune", str(spec), "--workers", "2", "--threads", "1", "--journal", "j.jsonl"]
    proc = ash_cli(*args, "--out", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = results(tmp_path / "out")
    assert doc["errors"] == [], doc["errors"]
    last = {t["trial"]: (t["results"][-1], t["config"]["x"]) for t in doc["trials"]}
    top = sorted((r["value"], t) for t, (r, _) in last.items() if r["resource"] == 9)
    assert len(top) > 2 and len(top) < len(last)  # some trained to the top, most were stopped
    best = [t for _, t in top[:2]]
    ckpt = tmp_path / "j.jsonl.ckpt"
    assert sorted(p.name for p in ckpt.glob("*.ckpt")) == sorted(f"t{t}-r9.ckpt" for t in best)
    for t in best:
        out = tmp_path / f"opened-{t}"
        assert ckptfiles.extract((ckpt / f"t{t}-r9.ckpt").read_bytes(), out) is None
        assert (out / "model.txt").read_text() == f"{t} {last[t][1]!r} 9"


# -- a (config, ctx) trainer's exception keeps its traceback, as the classic form's -----------

# where ash's own frames live (an editable install has worker/ apart from src/ash/)
ASH_DIRS = tuple(
    str(Path(m.__file__).resolve().parent) + os.sep for m in (ash, ckptfiles) if m.__file__
)

RAISES = """
def normalise(x):
    return x / 0


def fit(config, ctx):
    ctx.report(1, loss=0.5)
    return {"loss": normalise(config["x"])}
"""


def write_raises(tmp_path: Path) -> tuple[Path, Path]:
    spec = write(tmp_path, max_trials=40)
    bad = tmp_path / "raises.py"
    bad.write_text(RAISES)
    spec.write_text(spec.read_text().replace("ctx_trainer:fit", "raises:fit"))
    return spec, bad


def check_traceback(doc: dict[str, Any], stderr: str, bad: Path) -> None:
    """The fail-fast message prints the user's frames once; every failed result (in
    ``errors`` and in its trial's ``results``) keeps them, and no frame of ash's own."""
    assert "trainer raised ZeroDivisionError: float division by zero" in stderr
    assert f'File "{bad}", line 8, in fit' in stderr
    assert f'File "{bad}", line 3, in normalise' in stderr
    assert stderr.count("Traceback (most recent call last)") == 1
    assert doc["errors"]
    for e in doc["errors"]:
        assert e["error"] == "trainer raised ZeroDivisionError: float division by zero"
        tb = e["traceback"]
        assert tb.startswith("Traceback (most recent call last):\n")
        assert f'File "{bad}", line 8, in fit' in tb and "line 3, in normalise" in tb
        assert tb.endswith("ZeroDivisionError: float division by zero")
        assert not any(d in tb for d in ASH_DIRS)  # no frame of ash's own
    failed = [r for t in doc["trials"] for r in t["results"]]
    assert failed and all("line 3, in normalise" in r["traceback"] for r in failed)


def test_a_context_trainer_s_exception_keeps_its_traceback_embedded(tmp_path: Path) -> None:
    spec, bad = write_raises(tmp_path)
    proc = ash_cli(
        "tune", str(spec), "--workers", "2", "--threads", "1", "--out", "o", cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stderr
    assert "stopped early: the first 3 results all failed with" in proc.stderr
    check_traceback(results(tmp_path / "o"), proc.stderr, bad)


def test_a_context_trainer_s_exception_keeps_its_traceback_over_grpc(tmp_path: Path) -> None:
    spec, bad = write_raises(tmp_path)
    sched = Scheduler(spec, tmp_path, "--out", "o")
    workers = [worker(sched.target, tmp_path, f"w{i}") for i in range(2)]
    try:
        assert sched.wait() == 1
        err = sched.proc.stderr.read() if sched.proc.stderr else ""
    finally:
        sched.kill()
        for w in workers:
            w.kill()
            w.wait()
    assert "stopped early: the first 5 results all failed with" in err
    check_traceback(results(tmp_path / "o"), err, bad)


def test_run_job_gives_both_forms_the_same_traceback(tmp_path: Path) -> None:
    """run_job (every transport's, MPI's too): a raising trainer and a bad ``ctx.report`` fail
    with the user's frames, as the classic form does."""

    def classic(config: dict[str, Any], start: float, stop: float, state: Any) -> Any:
        return {"loss": 1 / config["zero"]}, None

    def contextual(config: dict[str, Any], ctx: Any) -> Any:
        return {"loss": 1 / config["zero"]}

    def bad_report(config: dict[str, Any], ctx: Any) -> Any:
        ctx.report(math.inf, loss=1.0)
        return {"loss": 1.0}

    ws = Workspace(tmp_path, "s")
    got = {
        fn.__name__: run_job(FunctionTrainer(fn), "loss", {"zero": 0}, 0, 1, None, workspace=ws)
        for fn in (classic, contextual, bad_report)
    }
    for name, out in got.items():
        assert out.error is not None and out.value is None
        head, title, *frames, tail = out.error.splitlines()
        assert title == "Traceback (most recent call last):"
        assert f", in {name}" in frames[0] and __file__ in frames[0]
        assert not any(d in f for d in ASH_DIRS for f in frames)  # no frame of ash's own
        if name == "bad_report":
            assert head.startswith("trainer raised ValueError: ctx.report: ")
            assert "ctx.report(math.inf" in frames[1]
        else:
            assert head == "trainer raised ZeroDivisionError: division by zero"
            assert tail == "ZeroDivisionError: division by zero"
    assert list((tmp_path / "s" / ".ash").iterdir()) == []


KEEP_LENIENT = """
import os


def fit(config, ctx):
    loss = 9.0
    for epoch in range(int(ctx.start), int(ctx.stop)):
        loss = (config["x"] - 0.3) ** 2 + 1.0 / (epoch + 1)
        ctx.report(epoch + 1, loss=loss)
        d = ctx.checkpoint_dir()
        (d / "model.bin").write_bytes(b"w" * int(os.environ.get("BIG", "100")))
        if os.environ.get("LINK"):  # as Lightning's save_last="link"
            last = d / "last.ckpt"
            if last.is_symlink():
                last.unlink()
            last.symlink_to("model.bin")
    return {"loss": loss}
"""

LENIENT_SPEC = """
[study]
name = "lenient"
metric = "loss"
seed = 3
algorithm = "asha-stopping"
[asha]
min_resource = 1
max_resource = 9
reduction_factor = 3
max_trials = 9
stop_on = "reports"
[trainer]
type = "python"
entrypoint = "lenient:fit"
[space]
x = { uniform = [0.0, 1.0] }
"""


@pytest.mark.parametrize("where", ["embedded", "grpc"])
def test_a_top_rung_state_that_cannot_be_kept_never_fails_its_trial(
    tmp_path: Path, where: str
) -> None:
    """keep_best (1 by default) keeps top-rung states: one that cannot be packed (a symlink)
    or is over the scheduler's --max-checkpoint-mb is dropped with a warning, and the trial,
    the study's best, completes."""
    (tmp_path / "lenient.py").write_text(KEEP_LENIENT)
    spec = tmp_path / "s.toml"
    spec.write_text(LENIENT_SPEC)
    if where == "embedded":
        got = ash_cli(
            "tune",
            str(spec),
            "--workers",
            "2",
            "--out",
            "out",
            "--quiet",
            cwd=tmp_path,
            env={"LINK": "1"},
        )
        assert got.returncode == 0, got.stderr
        assert "top-rung checkpoint files are not kept" in got.stderr
    else:
        sched = Scheduler(spec, tmp_path, "--out", "out", "--max-checkpoint-mb", "1")
        w = worker(sched.target, tmp_path, "w0", "--slots", "2", env={"BIG": str(2 << 20)})
        finish(sched, [w])
        assert "exceeds the scheduler's --max-checkpoint-mb 1 and is not kept" in (
            w.stderr.read() if w.stderr else ""
        )
    doc = results(tmp_path / "out")
    top = [t for t in doc["trials"] if t["results"][-1]["resource"] == 9]
    assert top and all(t["status"] == "completed" for t in top), doc["errors"]
    assert doc["best"]["resource"] == 9
