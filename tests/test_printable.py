"""Peer strings never drive the operator's terminal: a worker id, device id, metric name or error
with an ESC in it is shown as ``\\x1b`` by ``ash status``, the progress display, the end of
``ash tune`` and the scheduler's own log lines (``ash.printable``)."""

from __future__ import annotations

import asyncio
import io
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from rich.console import Console

from ash.link.wire import add_scheduler_servicer, value_to_pb
from ash.printable import printable
from ash.progress import best_table, from_status, render
from ash.proto import ash_pb2 as pb
from ash.proto import ash_pb2_grpc as pb_grpc
from helpers import BIN, Scheduler, worker
from helpers import run_ash as ash

EVIL = "evil\x1b[2J\x1b]0;pwned\x07\x9b31m\x7f\r"
SHOWN = "evil\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\x7f\\x0d"


def test_printable_escapes_c0_c1_and_del_only() -> None:
    assert printable(EVIL) == SHOWN
    assert printable("naïve 漢字 ok-1:2/3_4.5") == "naïve 漢字 ok-1:2/3_4.5"
    assert printable("a\tb\nc") == "a\\x09b\\x0ac"
    assert printable("a\tb\nc\x1b", lines=True) == "a\tb\nc\\x1b"
    assert printable(3.5) == "3.5"


# every Unicode bidi control: the marks, the embeddings and overrides, the isolates
BIDI = "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def test_printable_escapes_bidi_controls() -> None:
    """A right-to-left override or isolate in a peer string would reorder what the terminal
    shows ("Trojan source": the text read is not the text sent); each is a visible escape."""
    shown = printable(BIDI)
    assert shown == "".join(f"\\u{ord(c):04x}" for c in BIDI)
    assert not set(shown) & set(BIDI)
    assert printable("w0\u202e1gnp.exe\n", lines=True) == "w0\\u202e1gnp.exe\n"
    rtl = "\u05e9\u05dc\u05d5\u05dd \u0627"  # right-to-left letters themselves stay as they are
    assert printable(rtl) == rtl


def test_printable_escapes_invisible_format_and_separator_characters() -> None:
    """A zero-width space makes "w0\u200b" print as "w0" (one worker passing for another); a
    soft hyphen, a byte-order mark, a tag character or a line separator hides or breaks text
    the same way, and a lone surrogate cannot be printed at all (review 12, F7). Letters of
    any script and combining accents stay as they are."""
    hidden = "w0\u200b\u200c\u200d\u2060\ufeff\u00ad\u2028\u2029\U000e0041\u0600\udc80"
    assert printable(hidden) == (
        "w0\\u200b\\u200c\\u200d\\u2060\\ufeff\\xad\\u2028\\u2029\\U000e0041\\u0600\\udc80"
    )
    assert printable(hidden, lines=True) == printable(hidden)
    text = "cafe\u0301 \u4e2d\u6587 \u05e9\u05dc\u05d5\u05dd \u0627\u0644 \u03b1\u03b2 \U0001f600"
    assert printable(text) == text


def _status(study: str = "s") -> pb.StudyStatus:
    st = pb.StudyStatus(
        study=study, algorithm="asha", metric="loss", mode="min", trials=3, max_trials=9,
        results=2, workers=1, reports=1,
    )  # fmt: skip
    st.rungs.add(bracket=0, rung=0, resource=1.0, results=2)
    st.worker_info.add(id=EVIL, slots=1, devices=[EVIL, "gpu:0"])
    st.best.trial, st.best.value, st.best.resource = 1, 0.5, 1.0
    value_to_pb(EVIL, st.best.config["opt"])
    st.latest.trial, st.latest.step = 1, 2.0
    value_to_pb(EVIL, st.latest.metrics[EVIL])
    return st


def _plain(renderable: Any) -> str:
    """What rich writes for ``renderable`` with no colours (so any ESC is the peer's)."""
    buf = io.StringIO()
    Console(file=buf, force_terminal=False, color_system=None, width=400).print(renderable)
    return buf.getvalue()


def test_progress_display_shows_peer_strings_escaped() -> None:
    text = _plain(render(from_status(_status()), f"study {EVIL}"))
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text and "\r" not in text
    assert f"devices  {SHOWN}: {SHOWN},gpu:0" in text
    assert f"{SHOWN}={SHOWN}" in text  # a reported metric's name and text value
    assert f"study {SHOWN}" in text
    doc = {
        "metric": "loss", "mode": "min",
        "trials": [{
            "trial": 0, "status": EVIL, "config": {"opt": EVIL},
            "results": [{"resource": 1, "value": 0.5, "rung": 0}],
        }],
    }  # fmt: skip
    text = _plain(best_table(doc))
    assert "\x1b" not in text and "\x07" not in text
    assert "opt=evil\\x1b[2J" in text


class EvilScheduler:
    """A real gRPC server on 127.0.0.1 whose Status answers with ESCs in every peer string (or
    refuses, with ESCs in the details): what ``ash status`` meets at a hostile address."""

    def __init__(self, refuse: bool) -> None:
        self.refuse = refuse
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        outer = self

        class Servicer(pb_grpc.SchedulerServicer):  # type: ignore[misc]
            async def Status(self, request: Any, context: Any) -> pb.StudyStatus:
                if outer.refuse:
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"no {EVIL}")
                return _status(f"study {EVIL}")

        self._server = grpc.aio.server()
        add_scheduler_servicer(Servicer(), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await self._server.stop(None)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture
def evil() -> Iterator[EvilScheduler]:
    s = EvilScheduler(refuse=False)
    yield s
    s.close()


def test_ash_status_escapes_what_the_scheduler_sends(evil: EvilScheduler) -> None:
    proc = ash("status", "--scheduler", f"127.0.0.1:{evil.port}", "--once", env={"COLUMNS": "400"})
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout, repr(proc.stdout)
    assert f"{SHOWN}: {SHOWN},gpu:0" in proc.stdout
    refusing = EvilScheduler(refuse=True)
    try:
        proc = ash("status", "--scheduler", f"127.0.0.1:{refusing.port}", "--once")
    finally:
        refusing.close()
    assert proc.returncode == 2
    assert "PERMISSION_DENIED" in proc.stderr and "\x1b" not in proc.stderr
    assert f"no {SHOWN}" in proc.stderr


SPEC = """
[study]
name = "esc"
metric = "loss"
seed = 0
[asha]
min_resource = 1
max_resource = 3
reduction_factor = 3
max_trials = 8
[trainer]
type = "python"
entrypoint = "esc_trainer:fit"
[space]
x = { uniform = [0.0, 1.0] }
"""

TRAINER = f"""
def fit(config, start, stop, state):
    raise ValueError({EVIL!r})
"""


def _study(tmp_path: Path) -> Path:
    (tmp_path / "esc_trainer.py").write_text(TRAINER)
    spec = tmp_path / "esc.toml"
    spec.write_text(SPEC)
    return spec


def test_ash_tune_prints_a_trainers_error_escaped(tmp_path: Path) -> None:
    spec = _study(tmp_path)
    proc = ash("tune", str(spec), "--workers", "2", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "stopped early" in proc.stderr and f"ValueError: {SHOWN}" in proc.stderr
    assert "\x1b" not in proc.stderr + proc.stdout and "\x07" not in proc.stderr


def test_ash_tune_prints_a_trainers_bidi_controls_escaped(tmp_path: Path) -> None:
    spec = _study(tmp_path)
    (tmp_path / "esc_trainer.py").write_text(
        f"def fit(config, start, stop, state):\n    raise ValueError({'bad' + BIDI!r})\n"
    )
    proc = ash("tune", str(spec), "--workers", "2", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "ValueError: bad\\u200e\\u200f\\u061c\\u202a" in proc.stderr, proc.stderr
    assert not set(proc.stderr + proc.stdout) & set(BIDI)


def test_the_scheduler_logs_a_workers_error_escaped(tmp_path: Path) -> None:
    spec = _study(tmp_path)
    s = Scheduler(spec, tmp_path)
    w = worker(s.target, tmp_path, "w0")
    try:
        assert s.wait(120) == 1
        w.wait(60)
    finally:
        s.kill()
        if w.poll() is None:
            w.kill()
            w.wait()
    assert s.proc.stderr is not None
    err = s.proc.stderr.read()
    assert "stopped early" in err and f"ValueError: {SHOWN}" in err, err
    assert "\x1b" not in err and "\x07" not in err


def test_cli_guard_escapes_a_message(tmp_path: Path) -> None:
    bad = tmp_path / f"spec{EVIL}.toml"
    proc = subprocess.run(
        [str(BIN / "ash"), "simulate", str(bad), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "\x1b" not in proc.stderr
    assert printable(bad) in proc.stderr
