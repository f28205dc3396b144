"""``ash tune --transport grpc``: the daemons of a distributed study, started on 127.0.0.1.

It runs exactly what a cluster runs (one ``ash-scheduler`` process, N ``ash-worker``
processes) on loopback, shows the scheduler's Status RPC with the same display as embedded runs,
and returns the results document the scheduler wrote.

No daemon outlives it or goes on alone (ash.lifeline): SIGINT and SIGTERM to this process are
passed on to the scheduler (it stops assigning, drains and writes what was done,
``"interrupted": true``) and to the workers (they hand back their jobs); if this process dies
anyhow, even by SIGKILL, each daemon gets SIGTERM from the kernel and does the same. Once the
scheduler has exited (the study finished, or a journal's study was finished already) the
workers left are stopped at once, and once every worker has exited the scheduler is stopped
with a clear error instead of waiting forever for someone to run its jobs.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO

import grpc

from ash.errors import UserError
from ash.lifeline import Forwarder, child_env
from ash.link.wire import scheduler_stub
from ash.proto import ash_pb2 as pb
from ash.spec import StudySpec


def _wait_port(proc: subprocess.Popen[Any], log: BinaryIO, timeout: float = 60.0) -> int:
    """The port the scheduler says it listens on, read from ``log``, its stdout: a file, not a
    pipe, so that a scheduler that outlives this process (draining after it was killed) never
    fails writing to a pipe nobody reads."""
    deadline = time.monotonic() + timeout
    text = b""

    def more() -> bytes:  # pread: the scheduler writes at the offset it shares with ``log``
        return os.pread(log.fileno(), 1 << 16, len(text))

    while time.monotonic() < deadline:
        text += more()
        for line in text.decode(errors="replace").splitlines(keepends=True):
            if "listening on " in line and line.endswith("\n"):
                return int(line.split("listening on ", 1)[1].split()[0].rsplit(":", 1)[1])
        if proc.poll() is not None:
            text += more()
            break
        time.sleep(0.05)
    said = text.decode(errors="replace").strip()
    if proc.poll() is None:
        proc.kill()
        proc.wait()
        why = f"it did not listen within {timeout:g} s"
    else:  # its error went to stderr, which is this process's: above this line
        why = f"exit code {proc.returncode}; its error is printed above"
    raise UserError(f"ash-scheduler did not start ({why})" + (f":\n{said}" if said else ""))


# how long the scheduler may take to end on its own once every worker exited 0 (told the study
# is finished: it lingers up to --linger 10 s for workers that were disconnected)
FINISH_WAIT_S = 15.0
DRAIN_S = 60.0  # ash-scheduler's --drain-timeout (its default, which the transport keeps)
WORKER_STOP_S = 15.0  # a worker told to stop hands back its jobs (--grace 0) and exits


def _finished(target: str) -> bool:
    """Whether the scheduler's study is finished already (a journal's): no worker is started."""
    with contextlib.suppress(grpc.RpcError), grpc.insecure_channel(target) as channel:
        status = scheduler_stub(channel).Status(pb.StatusRequest(), timeout=10.0)
        return bool(status.finished)
    return False


def _worker_cmd(
    target: str,
    name: str,
    threads: int,
    prefetch: str,
    devices: list[str] | None,
    i: int,
    shared: Path,
) -> list[str]:
    """One ``ash-worker`` of the transport: it dies with this process (``follow_parent``), and
    on a signal hands back its jobs at once (``--grace 0``: the embedded transport's Ctrl-C does
    not wait for running jobs either); ``--quiet`` drops its retry notes (errors still show)."""
    return [
        sys.executable,
        "-P",
        "-c",
        "import sys; from ash.lifeline import follow_parent; follow_parent(); "
        "from ash.worker.daemon import main; sys.exit(main(sys.argv[1:]))",
        "--scheduler",
        target,
        "--slots",
        "1",
        "--threads",
        str(threads),
        "--id",
        name,
        "--retry-for",
        "30",
        "--grace",
        "0",
        "--quiet",
        "--prefetch",
        prefetch,
        "--checkpoint-dir",
        str(shared),
        *(["--devices", devices[i]] if devices else []),
    ]


class _Watch:
    """What the wait for the scheduler checks besides it: that some worker is still there to
    run its jobs, and that a scheduler told to stop does stop."""

    def __init__(
        self, sched: subprocess.Popen[bytes], procs: list[subprocess.Popen[bytes]]
    ) -> None:
        self.sched = sched
        self.procs = procs
        self.alone_since: float | None = None
        self.stopping_since: float | None = None

    def stranded(self) -> str | None:
        """Once every worker has exited while the scheduler runs on, the error to raise; the
        scheduler is then told to stop (it writes what was done). Workers that all exited 0
        were told the study is finished: the scheduler gets FINISH_WAIT_S to end on its own."""
        if not self.procs or any(p.poll() is None for p in self.procs):
            return None
        codes = [p.returncode for p in self.procs]
        now = time.monotonic()
        if self.alone_since is None:
            self.alone_since = now
        if all(c == 0 for c in codes) and now - self.alone_since < FINISH_WAIT_S:
            return None
        with contextlib.suppress(OSError):
            self.sched.terminate()
        shown = ", ".join(str(c) for c in codes)
        return (
            f"every ash-worker exited before the study finished (exit codes {shown}; their "
            "errors are printed above)"
        )

    def bound(self, stopping: bool) -> None:
        """A scheduler told to stop drains for at most its --drain-timeout: past that (and a
        margin) it is killed; its journal is crash-safe."""
        if not stopping:
            return
        now = time.monotonic()
        if self.stopping_since is None:
            self.stopping_since = now
        elif now - self.stopping_since > DRAIN_S + 30:
            with contextlib.suppress(OSError):
                self.sched.kill()


def _stop(sched: subprocess.Popen[bytes], procs: list[subprocess.Popen[bytes]]) -> None:
    """Leave no process behind. Those still running are told to stop (SIGTERM, the scheduler
    first: it stops assigning, drains and writes what was done; the workers hand back their
    jobs), and killed if they have not exited in their time."""
    every: list[tuple[subprocess.Popen[Any], float]] = [(sched, DRAIN_S + 30)]
    every += [(p, WORKER_STOP_S) for p in procs]
    for proc, _ in every:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.terminate()
    for proc, limit in every:
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_grpc(
    spec: StudySpec,
    spec_path: str | Path,
    *,
    workers: int | None,
    threads: int | str,
    out: str | Path | None,
    trace: str | Path | None,
    journal: str | Path | None,
    progress: bool,
    prefetch: str = "auto",
    devices: list[str] | None = None,
    tracking: list[str] | None = None,
) -> dict[str, Any]:
    from ash.cores import available_cores, resolve_threads
    from ash.preflight import preflight

    preflight(spec, out=out, trace=trace, journal=journal)  # every problem, in one error
    workers = len(devices) if devices else workers or available_cores()
    threads = resolve_threads(threads, workers)
    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="ash-")
        out = tmp.name
    # one machine: large states go by file through a directory the daemons share, never over
    # gRPC (no --max-checkpoint-mb to meet); a journal's stays beside it for a resume
    scratch = None
    if journal:
        shared = Path(f"{journal}.shared")
    else:
        scratch = tempfile.TemporaryDirectory(prefix="ash-shared-")
        shared = Path(scratch.name)
    try:
        return _daemons(
            spec,
            spec_path,
            out,
            tmp is not None,
            shared,
            workers,
            threads,
            trace,
            journal,
            progress,
            prefetch,
            devices,
            tracking,
        )
    finally:
        if tmp is not None:
            tmp.cleanup()
        if scratch is not None:
            scratch.cleanup()


def _daemons(
    spec: StudySpec,
    spec_path: str | Path,
    out: str | Path,
    out_is_temporary: bool,
    shared: Path,
    workers: int,
    threads: int,
    trace: str | Path | None,
    journal: str | Path | None,
    progress: bool,
    prefetch: str,
    devices: list[str] | None,
    tracking: list[str] | None,
) -> dict[str, Any]:
    """Run the study's scheduler and workers to its end; its results document."""
    from ash.progress import Progress, from_status

    cmd = [
        sys.executable,
        "-P",  # never import from the working directory
        "-c",
        "import sys; from ash.lifeline import follow_parent; follow_parent(); "
        "from ash.cli import scheduler_main; sys.exit(scheduler_main(sys.argv[1:]))",
        str(spec_path),
        "--listen",
        "127.0.0.1:0",
        "--out",
        str(out),
        "--checkpoint-dir",
        str(shared),
        *(tracking or []),  # --mlflow URI / --tensorboard DIR: the scheduler's callbacks
    ]
    if trace:
        cmd += ["--trace", str(trace)]
    if journal:
        cmd += ["--journal", str(journal)]
    procs: list[subprocess.Popen[bytes]] = []
    children: list[subprocess.Popen[Any]] = []  # the scheduler first: it stops assigning first
    stranded: str | None = None
    with tempfile.TemporaryFile() as log, Forwarder(lambda: list(children)) as signals:
        sched = subprocess.Popen(cmd, stdout=log, env=child_env())
        children.append(sched)
        try:
            try:
                port = _wait_port(sched, log)
            except UserError:
                if signals.signalled is not None:
                    raise KeyboardInterrupt from None
                raise
            target = f"127.0.0.1:{port}"
            for i in range(0 if _finished(target) else workers):
                if sched.poll() is not None or signals.signalled is not None:
                    break  # a finished study (the scheduler exited at once), or stopped
                procs.append(
                    subprocess.Popen(
                        _worker_cmd(target, f"w{i}", threads, prefetch, devices, i, shared),
                        stdout=subprocess.DEVNULL,
                        env=child_env(),
                    )
                )
                children.append(procs[-1])
            with grpc.insecure_channel(target) as channel:
                stub = scheduler_stub(channel)
                last = [pb.StudyStatus(study=spec.name, algorithm=spec.algorithm)]

                def snapshot() -> Any:
                    with contextlib.suppress(grpc.RpcError):
                        last[0] = stub.Status(pb.StatusRequest(), timeout=1.0)
                    return from_status(last[0])

                title = f"{spec.name}: {spec.algorithm}, {workers} gRPC workers x {threads} threads"
                with Progress(snapshot, title, enabled=progress) as view:
                    watch = _Watch(sched, procs)
                    while sched.poll() is None:
                        time.sleep(0.25)
                        view.tick()
                        if signals.signalled is None and stranded is None:
                            stranded = watch.stranded()
                        watch.bound(signals.signalled is not None or stranded is not None)
        finally:
            _stop(sched, procs)
    interrupted = signals.signalled is not None
    written = Path(out) / "results.json"
    doc: dict[str, Any] = json.loads(written.read_text()) if written.exists() else {}
    if stranded is not None and not interrupted:
        kept = "" if out_is_temporary else f"; what was done is written to {out}"
        raise UserError(stranded + kept)
    if sched.returncode != 0 and not doc.get("error"):  # a stopped study says why in doc
        if interrupted and not doc:  # stopped before it could write anything
            raise KeyboardInterrupt
        raise UserError(f"ash-scheduler exited with code {sched.returncode}")
    doc["interrupted"] = doc.get("interrupted", False) or interrupted
    return doc
