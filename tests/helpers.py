"""Shared test helpers: paths, and specs built from plain dicts."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from ash.spec import StudySpec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent


def dashboard_url(proc: subprocess.Popen[str]) -> str:
    """The address a dashboard process (``ash dashboard``, ``ash-scheduler --dashboard-port``)
    prints, read from its stdout."""
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"dashboard:? (?:on )?(http://\S+/)", line)
        if m:
            return m.group(1)
    raise AssertionError("no dashboard address: " + (proc.stderr.read() if proc.stderr else ""))


def serve_dashboard(*args: str) -> tuple[subprocess.Popen[str], str]:
    """``ash dashboard ARGS`` started, and its address."""
    proc = subprocess.Popen(
        [str(BIN / "ash"), "dashboard", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        return proc, dashboard_url(proc)
    except BaseException:
        proc.kill()
        raise


def run_script(
    script: Path, *args: str, cwd: Path, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """A user's Python script run as ``python SCRIPT ARGS``: output captured, exit code not
    checked."""
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_ash(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The venv's ``ash`` CLI as a user runs it: output captured, exit code not checked."""
    return subprocess.run(
        [str(BIN / "ash"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def make_spec(algorithm: str = "asha", mode: str = "min", seed: int = 0, **asha: Any) -> StudySpec:
    table: dict[str, Any] = {"min_resource": 1, "max_resource": 27, "reduction_factor": 3}
    table.update(asha)
    if "max_trials" not in table and "time_limit_s" not in table:
        table["max_trials"] = 50
    return parse_spec(
        {
            "study": {
                "name": "t",
                "metric": "loss",
                "mode": mode,
                "seed": seed,
                "algorithm": algorithm,
            },
            "asha": table,
            "space": {"x": {"uniform": [0.0, 1.0]}, "k": {"choice": ["a", "b"]}},
        },
        source="test.toml",
    )


PY_SPEC = """
[study]
name = "py"
metric = "loss"
seed = 3
algorithm = "asha"
[asha]
min_resource = 1
max_resource = 9
reduction_factor = 3
max_trials = {max_trials}
max_attempts = 2
[trainer]
type = "python"
entrypoint = "user_trainer:fit"
[space]
x = {{ uniform = [0.0, 1.0] }}
mode = {{ choice = ["ok", "ok2", "raise", "nan", "crash", "slow"] }}
"""

TRAINER = """
import json, math, os, time
from ash.native import omp_max_threads

def fit(config, start, stop, state):
    done = 0.0 if state is None else json.loads(state)["done"]
    if done != start:
        raise RuntimeError(f"resumed from {done}, expected {start}")
    time.sleep(float(os.environ.get("SLEEP", "0")))
    mode = config["mode"]
    if mode == "raise":
        raise ValueError("bad trial")
    if mode == "crash":
        os._exit(9)
    if mode == "slow":
        time.sleep(float(os.environ.get("SLOW", "0")))
    loss = math.nan if mode == "nan" else (config["x"] - 0.3) ** 2 + 1.0 / stop
    return {"loss": loss, "threads": omp_max_threads()}, json.dumps({"done": stop}).encode()
"""


def write_study(tmp_path: Path, max_trials: int = 24) -> Path:
    """A python-trainer study in tmp_path (user_trainer.py + study.toml); the trainer's config
    'mode' makes trials succeed, raise, return NaN, crash their process or sleep $SLOW s;
    every job sleeps $SLEEP s."""
    (tmp_path / "user_trainer.py").write_text(TRAINER)
    spec = tmp_path / "study.toml"
    spec.write_text(PY_SPEC.format(max_trials=max_trials))
    return spec


class Scheduler:
    def __init__(self, spec: Path, cwd: Path, *args: str, port: int = 0) -> None:
        self.proc = subprocess.Popen(
            [str(BIN / "ash-scheduler"), str(spec), "--listen", f"127.0.0.1:{port}", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = ""
        for line in self.proc.stdout:
            if "listening on" in line:
                break
        assert "listening on" in line, self.proc.stderr.read() if self.proc.stderr else ""
        self.port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        self.target = f"127.0.0.1:{self.port}"

    def wait(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def worker(
    target: str, cwd: Path, name: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "ash-worker"), "--scheduler", target, "--id", name, "--threads", "1", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def results(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((out / "results.json").read_text())
    return doc


class FaultyProxy:
    """A loopback TCP proxy that can drop every connection or stall them without closing.

    Modes: "forward" (a plain proxy), "drop" (close every connection and refuse new ones), and
    "stall" (keep connections open but move no bytes). Threads end when it is closed."""

    def __init__(self, upstream_port: int) -> None:
        import socket
        import threading

        self.upstream = ("127.0.0.1", upstream_port)
        self.mode = "forward"
        self.lock = threading.Lock()
        self.conns: list[Any] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.target = f"127.0.0.1:{self.port}"
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def set(self, mode: str) -> None:
        with self.lock:
            self.mode = mode
            if mode == "drop":
                for c in self.conns:
                    c.close()
                self.conns.clear()

    def _accept(self) -> None:
        import socket
        import threading

        while not self.closed:
            try:
                client, _ = self.server.accept()
            except (TimeoutError, OSError):
                continue
            if self.mode == "drop":
                client.close()
                continue
            try:
                up = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, up]
            for a, b in ((client, up), (up, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: Any, dst: Any) -> None:
        import select
        import time

        try:
            while not self.closed:
                if self.mode == "stall":
                    time.sleep(0.05)
                    continue
                ready, _, _ = select.select([src], [], [], 0.1)
                if not ready:
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self.closed = True
        self.set("drop")
        self.server.close()
