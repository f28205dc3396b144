"""Soak: ash's fault handling, checked with real processes on 127.0.0.1, one case at a time.

docs/distributed.md ("Journal and resume") promises what a journaled ``ash-scheduler`` does
when it is killed, doubled, resumed with another spec, starved of disk or handed a damaged
journal. Those are promises about processes, files and ports, so each case here starts
``ash-scheduler`` (with ``--journal``, ``--trace`` and ``--out``) and ``ash-worker`` processes
on loopback, provokes one fault, and counts what matters:

- ``kills`` (the default): kill -9 the scheduler at random moments (at least ``--kills`` times)
  and half of the workers every other round, during one study: 0 results lost (every result
  traced before a crash is still in the final trace, in order), 0 counted twice, the trace obeys
  Algorithm 2 (ash.scheduler.audit), 0 promotions from a wrong checkpoint.
- ``two-owners``: while one scheduler owns a journal, start second ones on it (the same path, an
  absolute path, through a symlinked directory, a symlink and a hard link to the file) and one
  on the same port with another journal: second owners that got in (must be 0), the refusal.
- ``reordered-spec``: kill -9 mid-study, resume with the ``[space]`` keys reordered: refused
  (exit 2, journal bytes unchanged); how many recorded results that spec would have pinned on
  other configs; then the right spec resumes and finishes with 0 results misattributed.
- ``full-disk``: checkpoint writes fail with ENOSPC from the 5th trial on (``JOURNAL.ckpt/
  t<trial>-r<resource>.tmp`` -> /dev/full): exit 1, ``--out`` says "error", 0 results recorded
  without their checkpoint; mended, the same command finishes every trial, none resumed from a
  wrong checkpoint.
- ``damage``: flip one byte mid-line in a journal, several times: refused naming the line, the
  file's bytes unchanged; restored, it resumes and finishes.
- ``restarts``: kill -9 the scheduler N times while 5-10 s jobs run (max_attempts = 1, 4
  workers): the workers re-attach their jobs; 0 trials failed, ~0 s of training redone, and the
  final trace obeys Algorithm 2.

The trainer (trainer.py) fails any job whose checkpoint does not match its start. Bounded:
every wait has a timeout, and every process started is killed (with its group) on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import grpc

from ash.link.wire import scheduler_stub
from ash.proto import ash_pb2 as pb
from ash.scheduler.audit import audit_for
from ash.scheduler.journal import unseal
from ash.scheduler.trace import read_trace
from ash.spec import load_spec

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SPEC = """
[study]
name = "soak"
metric = "loss"
seed = 1
[asha]
min_resource = 1
max_resource = 27
reduction_factor = 3
max_trials = {trials}
[trainer]
type = "python"
entrypoint = "trainer:fit"
[space]
x = {{ uniform = [0.0, 1.0] }}
"""
# the fault cases: ASHA r=1, R=9, eta=3 (rungs at 1, 3, 9), one bracket
FAULT_SPEC = """
[study]
name = "{name}"
metric = "loss"
seed = {seed}
[asha]
min_resource = 1
max_resource = 9
reduction_factor = 3
max_trials = {trials}
max_attempts = {attempts}
[trainer]
type = "python"
entrypoint = "trainer:fit"
[space]
{space}
"""
X = "x = { uniform = [0.0, 1.0] }"
Y = "y = { uniform = [0.0, 1.0] }"
ETA, TOP = 3, 9
RECORD = ("--journal", "j.jsonl", "--trace", "t.jsonl", "--out", "out")


class CaseError(RuntimeError):
    """A case could not be carried out (a process did not start, a wait timed out)."""


class Proc:
    """A child process in its own process group; a thread collects its output (stdout and
    stderr together), so no pipe fills and every wait can have a timeout."""

    live: ClassVar[list[Proc]] = []

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self.cmd = cmd
        self.cwd = cwd
        self.popen = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        Proc.live.append(self)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        return "\n".join(self.lines)

    def seen(self, needle: str) -> bool:
        return any(needle in line for line in list(self.lines))

    def wait_for(self, needle: str, timeout: float) -> bool:
        """Whether a line containing ``needle`` appears within ``timeout`` s (False at once
        when the process exits without printing it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.seen(needle):
                return True
            if not self.alive():
                self._reader.join(timeout=2)
                return self.seen(needle)
            time.sleep(0.02)
        return False

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if still running after ``timeout`` s."""
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(timeout=2)
        return code

    def kill(self) -> None:
        """SIGKILL this process only (what a crash does to it)."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def reap(self) -> None:
        """SIGKILL the process and whatever is left of its group (a worker's slot processes)."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=30)

    @classmethod
    def reap_all(cls) -> None:
        """Kill what is left, and keep every process's output in its folder's logs/."""
        for i, p in enumerate(cls.live):
            p.reap()
            logs = p.cwd / "logs"
            logs.mkdir(exist_ok=True)
            name = f"{i:02d}-{Path(p.cmd[0]).name}-{p.pid}.log"
            (logs / name).write_text(" ".join(p.cmd) + "\n" + p.text() + "\n")
        cls.live.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scheduler(spec: Path, port: int, work: Path, *args: str) -> Proc:
    cmd = [str(BIN / "ash-scheduler"), str(spec), "--listen", f"127.0.0.1:{port}", *args]
    return Proc(cmd, work)


def start_scheduler(spec: Path, port: int, work: Path, *args: str, timeout: float = 60) -> Proc:
    p = scheduler(spec, port, work, *args)
    if not p.wait_for("listening on", timeout):
        p.reap()
        raise CaseError(f"scheduler did not start: {p.text()[-1500:]}")
    return p


def start_worker(port: int, work: Path, name: str, env: dict[str, str] | None = None) -> Proc:
    cmd = [str(BIN / "ash-worker"), "--scheduler", f"127.0.0.1:{port}", "--id", name]
    cmd += ["--threads", "1", "--retry-for", "120"]
    return Proc(cmd, work, {**os.environ, "PYTHONPATH": str(HERE), **(env or {})})


def finish(procs: list[Proc], timeout: float) -> list[int | None]:
    """Exit codes of ``procs`` waited for within one shared ``timeout``."""
    deadline = time.monotonic() + timeout
    return [p.wait(max(0.0, deadline - time.monotonic())) for p in procs]


def fault_spec(
    work: Path, trials: int, *, name: str = "soak", attempts: int = 2, space: str = X, seed: int = 1
) -> Path:
    path = work / f"{name}.toml"
    text = FAULT_SPEC.format(name=name, trials=trials, attempts=attempts, space=space, seed=seed)
    path.write_text(text)
    return path


def events_of(trace: Path) -> list[dict[str, Any]]:
    return list(read_trace(trace)) if trace.exists() else []


def results_in(trace: Path) -> list[dict[str, Any]]:
    return [e for e in events_of(trace) if e["event"] == "result"]


def in_flight(events: list[dict[str, Any]]) -> set[int]:
    """Jobs assigned in the trace and not yet settled (no result, not lost)."""
    jobs = {e["job"] for e in events if e["event"] == "assign"}
    return jobs - {e["job"] for e in events if e["event"] in ("result", "lost")}


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise CaseError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def journal_records(path: Path) -> list[dict[str, Any]]:
    """The records after the header; a line that fails its checksum raises."""
    out: list[dict[str, Any]] = []
    for n, raw in enumerate(path.read_bytes().split(b"\n")[1:], start=2):
        if raw:
            text = unseal(raw)
            if text is None:
                raise CaseError(f"{path}: line {n} fails its checksum")
            out.append(json.loads(text))
    return out


def journal_intact(path: Path) -> bool:
    """One header, and every complete line passes its checksum."""
    lines = path.read_bytes().split(b"\n")
    whole = lines[:-1]  # the last element is b"" (or a torn tail)
    headers = sum(b'"format":"ash-journal"' in line for line in whole)
    return headers == 1 and all(unseal(line) is not None for line in whole)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checkpoint_audit(journal: Path) -> tuple[int, int]:
    """(checkpoints due, missing or wrong): every successful result the journal records below
    the top rung must have its state in JOURNAL.ckpt/ with the resource it was trained to, for
    the latest two results of each trial (the store keeps those)."""
    records = journal_records(journal)
    keys = [rec["k"] for rec in records if "a" in rec]  # job id -> [trial, rung]
    by_trial: dict[int, set[int]] = {}
    for rec in records:
        if "r" in rec and rec.get("v") is not None:
            trial, rung = keys[int(rec["r"])]
            if ETA**rung < TOP:  # nothing resumes from the top rung: its state is not kept
                by_trial.setdefault(trial, set()).add(ETA**rung)
    store = Path(f"{journal}.ckpt")
    due = bad = 0
    for trial, resources in by_trial.items():
        for resource in sorted(resources)[-2:]:
            due += 1
            try:
                good = json.loads((store / f"t{trial}-r{resource}.ckpt").read_bytes())
                bad += good.get("done") != resource
            except (OSError, ValueError, AttributeError):
                bad += 1
    return due, bad


def misattributed(doc: dict[str, Any]) -> tuple[int, int]:
    """(successful results, those whose echoed config (SOAK_ECHO) differs from their trial's)."""
    n = bad = 0
    for trial in doc["trials"]:
        for r in trial["results"]:
            if r["value"] is None:
                continue
            n += 1
            seen = {k[4:]: v for k, v in r["metrics"].items() if k.startswith("cfg_")}
            bad += any(
                not math.isclose(seen.get(k, math.nan), v, rel_tol=0, abs_tol=1e-12)
                for k, v in trial["config"].items()
            )
    return n, bad


def wrong_resumes(doc: dict[str, Any]) -> int:
    return sum("resumed from" in e["error"] for e in doc.get("errors", []))


def failed_trials(doc: dict[str, Any]) -> int:
    return sum(t["status"] in ("failed", "lost") for t in doc["trials"])


def read_json(path: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc


def refusal(p: Proc) -> str:
    return next((line for line in p.lines if "error" in line), p.text()[-300:])


# -- kills --------------------------------------------------------------------------------


def case_kills(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    spec = work / "soak.toml"
    spec.write_text(SPEC.format(trials=args.trials))
    port = free_port()
    sched_args = (*RECORD, "--lease", "3")
    t0 = time.monotonic()
    sched = start_scheduler(spec, port, work, *sched_args)
    workers = [start_worker(port, work, f"w{i}") for i in range(args.workers)]
    prefixes: list[list[dict[str, Any]]] = []
    kills = worker_kills = 0
    while kills < args.kills and sched.alive():
        time.sleep(rng.uniform(0.5, 2.5))
        if not sched.alive():
            break
        prefixes.append(results_in(work / "t.jsonl"))
        sched.kill()
        kills += 1
        if kills % 2 == 0:
            for i in rng.sample(range(len(workers)), len(workers) // 2):
                workers[i].kill()
                worker_kills += 1
                workers[i] = start_worker(port, work, f"w{i}-{kills}")
        sched = start_scheduler(spec, port, work, *sched_args)
    code = sched.wait(timeout=600)
    finish(workers, 120)
    wall = time.monotonic() - t0
    events = events_of(work / "t.jsonl")
    final = [e for e in events if e["event"] == "result"]
    lost = sum(1 for prefix in prefixes if final[: len(prefix)] != prefix)
    jobs = [e["job"] for e in final]
    doc = read_json(work / "out/results.json")
    counted = sum(len(t["results"]) for t in doc.get("trials", []))
    bad_resume = wrong_resumes(doc)
    report: dict[str, Any] = {
        "scheduler_kills": kills,
        "worker_kills": worker_kills,
        "exit_code": code,
        "trials": len(doc.get("trials", [])),
        "results": len(final),
        "results_lost": lost,
        "results_counted_twice": len(jobs) - len(set(jobs)) + abs(counted - len(final)),
        "jobs_lost_and_reissued": sum(e["event"] == "lost" for e in events),
        "algorithm2_violations": len(audit_for(events, load_spec(spec))),
        "wrong_checkpoint_resumes": bad_resume,
        "wall_seconds": round(wall, 1),
    }
    print(json.dumps(report, indent=1))
    ok = (
        kills >= args.kills
        and code == 0
        and lost == 0
        and report["results_counted_twice"] == 0
        and report["algorithm2_violations"] == 0
        and not bad_resume
        and report["trials"] == args.trials
    )
    print("soak:", "ok" if ok else "FAILED", f"(files in {work})")
    return {"case": "kills", **report, "ok": ok}


# -- two owners ---------------------------------------------------------------------------


def status_answers(port: int, n: int) -> tuple[int, int]:
    """(answered, answered by a study with no trials and no workers: the newcomer) of ``n``
    Status calls, each on a new connection."""
    answered = newcomer = 0
    for _ in range(n):
        with grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        ) as channel:
            try:
                st = scheduler_stub(channel).Status(pb.StatusRequest(), timeout=5)
            except grpc.RpcError:
                continue
        answered += 1
        newcomer += st.trials == 0 and st.workers == 0
    return answered, newcomer


def case_two_owners(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    trials = 9
    spec = fault_spec(work, trials)
    port = free_port()
    env = {"SOAK_JOB_S": "2,3"}
    owner = start_scheduler(spec, port, work, *RECORD, "--lease", "10")
    workers = [start_worker(port, work, f"w{i}", env) for i in range(2)]
    journal = work / "j.jsonl"
    wait_until(lambda: bool(in_flight(events_of(work / "t.jsonl"))), 30, "a job to run")
    (work / "dirlink").symlink_to(work, target_is_directory=True)
    (work / "alias.jsonl").symlink_to("j.jsonl")
    os.link(journal, work / "hard.jsonl")
    probes = {  # what -> (port, arguments)
        "the same command, another port": (0, RECORD),
        "absolute path": (0, ("--journal", str(journal))),
        "through a symlinked directory": (0, ("--journal", str(work / "dirlink/j.jsonl"))),
        "symlink to the journal": (0, ("--journal", "alias.jsonl")),
        "hard link to the journal": (0, ("--journal", "hard.jsonl")),
        "same port, another journal": (port, ("--journal", "other.jsonl")),
    }
    by_probe: dict[str, dict[str, Any]] = {}
    for what, (at, journal_args) in probes.items():
        owner_alive = owner.alive()
        p = scheduler(spec, at, work, *journal_args, "--lease", "60")
        got_in = p.wait_for("listening on", 30)
        row: dict[str, Any] = {"owner_running": owner_alive, "got_in": got_in}
        if got_in:
            if at:
                answered, newcomer = status_answers(port, 20)
                row["status_calls_answered_by_newcomer"] = f"{newcomer}/{answered}"
            p.kill()  # before it can write to the owner's journal
            row["exit_code"] = "killed (it was serving)"
            row["said"] = " / ".join(p.lines[:2])
        else:
            row["exit_code"] = p.wait(30)
            row["refusal"] = refusal(p)
        row["named_holder_pid"] = f"pid {owner.pid} " in p.text()
        by_probe[what] = row
    owner_code = owner.wait(180)
    finish(workers, 60)
    doc = read_json(work / "out/results.json")
    events = events_of(work / "t.jsonl")
    lock = work / "j.jsonl.lock"
    port_probe = "same port, another journal"
    journal_in = sum(r["got_in"] for k, r in by_probe.items() if k != port_probe)
    report = {
        "case": "two-owners",
        "holder_pid": owner.pid,
        "second_owners_tried": len(probes),
        "second_owners_in": sum(r["got_in"] for r in by_probe.values()),
        "second_owners_in_on_the_journal": journal_in,
        "probes": by_probe,
        "owner_exit_code": owner_code,
        "owner_trials": len(doc.get("trials", [])),
        "owner_journal_intact": journal_intact(journal),
        "algorithm2_violations": len(audit_for(events, load_spec(spec))),
        "lock_note": lock.read_text().strip() if lock.exists() else None,
    }
    report["ok"] = (
        report["second_owners_in"] == 0
        and all(r["named_holder_pid"] for k, r in by_probe.items() if k != port_probe)
        and owner_code == 0
        and report["owner_trials"] == trials
        and report["owner_journal_intact"]
        and report["algorithm2_violations"] == 0
    )
    return report


# -- reordered spec -----------------------------------------------------------------------


def case_reordered_spec(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    trials = 12
    right = fault_spec(work, trials, space=f"{X}\n{Y}")
    wrong = work / "reordered.toml"
    wrong.write_text(right.read_text().replace(f"{X}\n{Y}", f"{Y}\n{X}"))
    port = free_port()
    env = {"SOAK_SLEEP": "0.3", "SOAK_ECHO": "1"}
    sched = start_scheduler(right, port, work, *RECORD, "--lease", "10")
    workers = [start_worker(port, work, f"w{i}", env) for i in range(2)]
    wait_until(lambda: len(results_in(work / "t.jsonl")) >= 8, 60, "8 results")
    sched.kill()
    journal = work / "j.jsonl"
    before = digest(journal)
    records = journal_records(journal)
    # what the reordered spec would have done: it samples trial i's config from the same
    # random numbers in another key order
    configs = [rec["c"] for rec in records if "a" in rec and "c" in rec]
    rng = random.Random(1)
    space = load_spec(wrong).space
    differ = {i for i, c in enumerate(configs) if space.sample(rng) != c}
    keys = [rec["k"] for rec in records if "a" in rec]
    recorded = [keys[int(r["r"])][0] for r in records if "r" in r and r.get("v") is not None]
    would = sum(trial in differ for trial in recorded)
    t0 = time.monotonic()
    p = scheduler(wrong, port, work, *RECORD, "--lease", "10")
    resumed_wrong = p.wait_for("listening on", 30)
    if resumed_wrong:
        p.kill()
    code = p.wait(30)
    refused_in = time.monotonic() - t0
    after = digest(journal)
    sched = start_scheduler(right, port, work, *RECORD, "--lease", "10")
    final_code = sched.wait(180)
    finish(workers, 60)
    doc = read_json(work / "out/results.json")
    n, bad = misattributed(doc)
    report: dict[str, Any] = {
        "case": "reordered-spec",
        "results_before_resume": len(recorded),
        "reordered_resume_refused": not resumed_wrong and code == 2,
        "exit_code": code,
        "refusal": refusal(p),
        "refused_in_seconds": round(refused_in, 2),
        "journal_unchanged": before == after,
        "trials_the_reordered_spec_samples_differently": f"{len(differ)}/{len(configs)}",
        "results_it_would_have_misattributed": would,
        "results_misattributed": bad if not resumed_wrong else None,
        "right_spec_exit_code": final_code,
        "trials": len(doc.get("trials", [])),
        "results_checked": n,
        "algorithm2_violations": len(audit_for(events_of(work / "t.jsonl"), load_spec(right))),
    }
    report["ok"] = (
        report["reordered_resume_refused"]
        and "reordered" in report["refusal"]
        and report["journal_unchanged"]
        and bad == 0
        and final_code == 0
        and report["trials"] == trials
        and report["algorithm2_violations"] == 0
    )
    return report


# -- full disk ----------------------------------------------------------------------------


def case_full_disk(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    trials, full_from = 12, 4
    spec = fault_spec(work, trials)
    store = work / "j.jsonl.ckpt"
    store.mkdir()
    for t in range(full_from, trials):
        for r in (1, 3, 9):
            (store / f"t{t}-r{r}.tmp").symlink_to("/dev/full")
    port = free_port()
    sched_args = (*RECORD, "--lease", "10")
    env = {"SOAK_SLEEP": "0.1", "SOAK_LOG": str(work / "trained.jsonl")}
    sched = start_scheduler(spec, port, work, *sched_args)
    workers = [start_worker(port, work, f"w{i}", env) for i in range(2)]
    stop_code = sched.wait(90)
    stopped = sched
    if stop_code is None:
        raise CaseError(f"the scheduler did not stop on a full disk: {sched.text()[-800:]}")
    said = next((line for line in sched.lines if "No space left" in line), "")
    stopped_doc = read_json(work / "out/results.json")
    due, missing = checkpoint_audit(work / "j.jsonl")
    results_at_stop = sum(len(t["results"]) for t in stopped_doc.get("trials", []))
    for tmp in store.glob("*.tmp"):
        tmp.unlink()  # the disk is mended
    t0 = time.monotonic()
    sched = start_scheduler(spec, port, work, *sched_args)
    final_code = sched.wait(180)
    worker_codes = finish(workers, 60)
    doc = read_json(work / "out/results.json")
    due2, missing2 = checkpoint_audit(work / "j.jsonl")
    events = events_of(work / "t.jsonl")
    m = re.search(r"(\d+) in-flight jobs wait", sched.text())
    _, redone, rerun = training_log(work / "trained.jsonl")
    unclaimed = [r for r in journal_records(work / "j.jsonl") if "did not come" in r.get("w", "")]
    report: dict[str, Any] = {
        "case": "full-disk",
        "stop_exit_code": stop_code,
        "stop_message": said,
        "out_error": stopped_doc.get("error"),
        "results_recorded_at_stop": results_at_stop,
        "results_recorded_without_checkpoint": missing,
        "checkpoints_checked_at_stop": due,
        "traceback_in_output": "Traceback" in stopped.text(),
        "jobs_in_flight_at_stop": int(m.group(1)) if m else 0,
        "jobs_reattached": reattached(workers),
        "jobs_unclaimed_for_a_lease_and_rerun": len(unclaimed),
        "jobs_lost_charged_to_their_trial": charged(work / "j.jsonl"),
        "jobs_trained_twice": rerun,
        "seconds_redone": round(redone, 2),
        "resume_exit_code": final_code,
        "resume_seconds": round(time.monotonic() - t0, 1),
        "worker_exit_codes": worker_codes,
        "trials_completed": len(doc.get("trials", [])),
        "max_trials": trials,
        "trials_failed": failed_trials(doc),
        "results_without_checkpoint_at_end": missing2,
        "checkpoints_checked_at_end": due2,
        "wrong_checkpoint_resumes": wrong_resumes(doc),
        "algorithm2_violations": len(audit_for(events, load_spec(spec))),
    }
    report["ok"] = (
        stop_code == 1
        and bool(said)
        and "No space left" in str(report["out_error"])
        and missing == 0
        and missing2 == 0
        and final_code == 0
        and report["trials_completed"] == trials
        and report["trials_failed"] == 0
        and report["wrong_checkpoint_resumes"] == 0
        and report["algorithm2_violations"] == 0
    )
    return report


# -- damage -------------------------------------------------------------------------------


def flip(data: bytes, line: int) -> bytes:
    """``data`` with one bit flipped in the middle of the given (1-based) line."""
    lines = data.split(b"\n")
    text = bytearray(lines[line - 1])
    text[len(text) // 2] ^= 0x01
    lines[line - 1] = bytes(text)
    return b"\n".join(lines)


def case_damage(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    trials, attempts = 12, 5
    spec = fault_spec(work, trials)
    port = free_port()
    sched_args = (*RECORD, "--lease", "10")
    sched = start_scheduler(spec, port, work, *sched_args)
    workers = [start_worker(port, work, f"w{i}", {"SOAK_SLEEP": "0.3"}) for i in range(2)]
    wait_until(lambda: len(results_in(work / "t.jsonl")) >= 8, 60, "8 results")
    sched.kill()
    journal = work / "j.jsonl"
    good = journal.read_bytes()
    n_lines = good.count(b"\n")
    rng = random.Random(args.seed)
    # the header, the last (complete) line, and lines in between
    lines = [1, *sorted(rng.sample(range(2, n_lines), attempts - 2)), n_lines]
    rows: list[dict[str, Any]] = []
    for line in lines:
        damaged = flip(good, line)
        journal.write_bytes(damaged)
        p = scheduler(spec, port, work, *sched_args)
        started = p.wait_for("listening on", 30)
        if started:
            p.kill()
        code = p.wait(30)
        rows.append(
            {
                "line": line,
                "started": started,
                "exit_code": code,
                "named_the_line": f"line {line} " in p.text(),
                "file_unchanged": journal.read_bytes() == damaged,
                "refusal": refusal(p),
            }
        )
    journal.write_bytes(good)  # restored from the copy
    sched = start_scheduler(spec, port, work, *sched_args)
    final_code = sched.wait(180)
    finish(workers, 60)
    doc = read_json(work / "out/results.json")
    report: dict[str, Any] = {
        "case": "damage",
        "journal_lines": n_lines,
        "damaged_starts": len(rows),
        "refused": sum(not r["started"] and r["exit_code"] == 2 for r in rows),
        "named_the_line": sum(r["named_the_line"] for r in rows),
        "named_the_line_after_the_header": sum(r["named_the_line"] for r in rows[1:]),
        "file_unchanged": sum(r["file_unchanged"] for r in rows),
        "started_on_damage": sum(r["started"] for r in rows),
        "attempts": rows,
        "restored_exit_code": final_code,
        "trials": len(doc.get("trials", [])),
        "algorithm2_violations": len(audit_for(events_of(work / "t.jsonl"), load_spec(spec))),
    }
    n = len(rows)
    report["ok"] = (
        report["refused"] == n
        and report["named_the_line_after_the_header"] == n - 1
        and report["file_unchanged"] == n
        and final_code == 0
        and report["trials"] == trials
        and report["algorithm2_violations"] == 0
    )
    return report


# -- restarts during long jobs ------------------------------------------------------------


def training_log(path: Path) -> tuple[float, float, int]:
    """(seconds trained, seconds redone, jobs run more than once) from the trainer's log: a
    (config, start, stop) trained again is work a restart cost."""
    runs: dict[str, list[float]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            key = json.dumps([rec["config"], rec["start"], rec["stop"]], sort_keys=True)
            runs.setdefault(key, []).append(rec["s"])
    total = sum(sum(s) for s in runs.values())
    redone = sum(sum(s[1:]) for s in runs.values())
    return total, redone, sum(len(s) > 1 for s in runs.values())


def charged(journal: Path) -> int:
    """Losses the journal charges to their trial's max_attempts (no ``"c": 0``)."""
    return sum("l" in r and r.get("c", 1) != 0 for r in journal_records(journal))


def reattached(workers: list[Proc]) -> int:
    """Jobs the workers say a restarted scheduler re-attached."""
    found = (re.finditer(r"re-attached (\d+) running jobs", w.text()) for w in workers)
    return sum(int(m.group(1)) for ms in found for m in ms)


def case_restarts(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    trials, n_workers = 12, 4
    spec = fault_spec(work, trials, attempts=1)
    port = free_port()
    sched_args = (*RECORD, "--lease", "15")
    env = {"SOAK_JOB_S": "5,10", "SOAK_LOG": str(work / "trained.jsonl")}
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    sched = start_scheduler(spec, port, work, *sched_args)
    workers = [start_worker(port, work, f"w{i}", env) for i in range(n_workers)]
    kills = 0
    waiting: list[int] = []  # jobs each restarted scheduler held for their workers
    deadline = time.monotonic() + 180
    while kills < args.restarts and sched.alive() and time.monotonic() < deadline:
        time.sleep(rng.uniform(3.0, 6.0))
        if not sched.alive() or not in_flight(events_of(work / "t.jsonl")):
            continue  # only while jobs run
        sched.kill()
        kills += 1
        sched = start_scheduler(spec, port, work, *sched_args)
        m = re.search(r"(\d+) in-flight jobs wait", sched.text())
        waiting.append(int(m.group(1)) if m else 0)
    code = sched.wait(240)
    worker_codes = finish(workers, 60)
    wall = time.monotonic() - t0
    n_reattached = reattached(workers)
    events = events_of(work / "t.jsonl")
    doc = read_json(work / "out/results.json")
    trained, redone, rerun = training_log(work / "trained.jsonl")
    report: dict[str, Any] = {
        "case": "restarts",
        "scheduler_kills": kills,
        "workers": n_workers,
        "max_attempts": 1,
        "jobs_in_flight_at_kills": waiting,
        "jobs_reattached": n_reattached,
        "jobs_lost": sum(e["event"] == "lost" for e in events),
        "jobs_lost_charged_to_their_trial": charged(work / "j.jsonl"),
        "exit_code": code,
        "worker_exit_codes": worker_codes,
        "trials": len(doc.get("trials", [])),
        "trials_failed": failed_trials(doc),
        "errors": [e["error"] for e in doc.get("errors", [])],
        "results": sum(e["event"] == "result" for e in events),
        "seconds_trained": round(trained, 1),
        "seconds_redone": round(redone, 1),
        "jobs_trained_twice": rerun,
        "algorithm2_violations": len(audit_for(events, load_spec(spec))),
        "wall_seconds": round(wall, 1),
    }
    report["ok"] = (
        kills >= args.restarts
        and code == 0
        and report["trials"] == trials
        and report["trials_failed"] == 0
        and not report["errors"]
        and n_reattached >= sum(waiting)
        and report["jobs_lost"] == 0
        and redone < 1.0
        and report["algorithm2_violations"] == 0
    )
    return report


CASES: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {
    "two-owners": case_two_owners,
    "reordered-spec": case_reordered_spec,
    "full-disk": case_full_disk,
    "damage": case_damage,
    "restarts": case_restarts,
    "kills": case_kills,
}


def run_case(name: str, args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"ash-soak-{name}-"))
    t0 = time.monotonic()
    try:
        report = CASES[name](args, work)
    except (CaseError, OSError, ValueError, KeyError) as exc:
        report = {"case": name, "error": f"{type(exc).__name__}: {exc}", "ok": False}
    finally:
        Proc.reap_all()
    report.setdefault("wall_seconds", round(time.monotonic() - t0, 1))
    report["files"] = str(work)
    if name != "kills" or "error" in report:  # kills prints its own report, as it always did
        print(json.dumps(report, indent=1))
        print(f"soak {name}:", "ok" if report["ok"] else "FAILED", f"(files in {work})")
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", choices=[*CASES, "all"], default="kills")
    ap.add_argument("--kills", type=int, default=10, help="kills: scheduler kill -9s")
    ap.add_argument("--workers", type=int, default=4, help="kills: workers")
    ap.add_argument("--trials", type=int, default=2000, help="kills: trials")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--restarts", type=int, default=5, help="restarts: scheduler kill -9s")
    ap.add_argument("--json", help="write the cases' summaries to this file")
    args = ap.parse_args()
    names = list(CASES) if args.case == "all" else [args.case]
    t0 = time.monotonic()
    try:
        reports = [run_case(name, args) for name in names]
    finally:
        Proc.reap_all()
    if args.json:
        doc = {
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "wall_seconds": round(time.monotonic() - t0, 1),
            "cases": {r["case"]: r for r in reports},
        }
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0 if all(r["ok"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
