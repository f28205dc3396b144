"""``ash tune --transport grpc``: the daemons of a distributed study, started on 127.0.0.1.

It runs exactly what a cluster runs (one ``ash-scheduler`` process, N ``ash-worker``
processes) on loopback, shows the scheduler's Status RPC with the same display as embedded runs,
and returns the results document the scheduler wrote. Ctrl-C reaches every process of the group:
the scheduler drains and writes what is done, the workers hand back their jobs.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from ash.errors import UserError
from ash.link.wire import scheduler_stub
from ash.proto import ash_pb2 as pb
from ash.spec import StudySpec


def _wait_port(proc: subprocess.Popen[str], timeout: float = 60.0) -> int:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "listening on" in line:
            return int(line.split("listening on ", 1)[1].split()[0].rsplit(":", 1)[1])
    proc.kill()
    raise UserError("ash-scheduler did not start:\n" + "".join(lines))


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
    from ash.progress import Progress, from_status

    preflight(spec, out=out, trace=trace)  # every problem, in one error
    workers = len(devices) if devices else workers or available_cores()
    threads = resolve_threads(threads, workers)
    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="ash-")
        out = tmp.name
    cmd = [
        sys.executable,
        "-P",  # never import from the working directory
        "-c",
        "import sys; from ash.cli import scheduler_main; sys.exit(scheduler_main(sys.argv[1:]))",
        str(spec_path),
        "--listen",
        "127.0.0.1:0",
        "--out",
        str(out),
        *(tracking or []),  # --mlflow URI / --tensorboard DIR: the scheduler's callbacks
    ]
    if trace:
        cmd += ["--trace", str(trace)]
    if journal:
        cmd += ["--journal", str(journal)]
    sched = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        port = _wait_port(sched)
        target = f"127.0.0.1:{port}"
        for i in range(workers):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-P",
                        "-m",
                        "ash.worker.daemon",
                        "--scheduler",
                        target,
                        "--slots",
                        "1",
                        "--threads",
                        str(threads),
                        "--id",
                        f"w{i}",
                        "--retry-for",
                        "30",
                        "--prefetch",
                        prefetch,
                        *(["--devices", devices[i]] if devices else []),
                    ],
                    stdout=subprocess.DEVNULL,
                )
            )
        with grpc.insecure_channel(target) as channel:
            stub = scheduler_stub(channel)
            last = [pb.StudyStatus(study=spec.name, algorithm=spec.algorithm)]

            def snapshot() -> Any:
                with contextlib.suppress(grpc.RpcError):
                    last[0] = stub.Status(pb.StatusRequest(), timeout=1.0)
                return from_status(last[0])

            title = f"{spec.name}: {spec.algorithm}, {workers} gRPC workers x {threads} threads"
            with Progress(snapshot, title, enabled=progress) as view:
                while sched.poll() is None:
                    time.sleep(0.25)
                    view.tick()
        interrupted = False
    except KeyboardInterrupt:
        interrupted = True
        sched.wait(timeout=120)
    finally:
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        if sched.poll() is None:
            sched.kill()
    written = Path(out) / "results.json"
    doc: dict[str, Any] = json.loads(written.read_text()) if written.exists() else {}
    if sched.returncode != 0 and not doc.get("error"):  # a stopped study says why in doc
        raise UserError(f"ash-scheduler exited with code {sched.returncode}")
    doc["interrupted"] = doc.get("interrupted", False) or interrupted
    if tmp is not None:
        tmp.cleanup()
    return doc
