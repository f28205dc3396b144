"""The trace: one JSON line per scheduler event (assign, result, lost), in processing order.

This is a public contract (DESIGN section 3): tools and tests read it. Times are seconds since the
study started (virtual seconds in the simulator). A trace opened on an existing file is appended
to, which is how a resumed study continues its trace; a new study refuses a file that already
holds events (``refuse_used``), since two runs in one file would be one garbled trace.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ash.errors import UserError
from ash.scheduler.core import Job

# what a replayed event shares with the line a live run wrote for it: an assign's time and
# worker may differ (a transport traces it when its slot starts the job), extras too; a result's
# or a loss's time and value are the journal's own, and tell two runs apart
_IDENTITY = ("event", "trial", "rung", "job")
_RECORDED = (*_IDENTITY, "t", "value")


class TraceError(UserError):
    """A trace file that belongs to another run."""


def _num(x: float) -> float:
    return int(x) if float(x).is_integer() else x


class TraceWriter:
    """Writes trace events to a file (appending) or an open text stream; ``None`` writes nothing.

    Lines are held in memory until ``flush`` (the driver flushes only after the journal is
    durable, so the trace never gets ahead of the journal). ``skip`` drops that many events
    first: a resumed study replays events the trace file already holds."""

    def __init__(self, target: str | Path | IO[str] | None, *, buffering: int = 1 << 16) -> None:
        self.skip = 0
        self.listeners: list[Callable[[dict[str, Any]], None]] = []  # e.g. live watchers
        self.autoflush: int | None = 4096  # None: only an explicit flush writes (journaled runs)
        self._lines: list[str] = []
        self._owned = isinstance(target, str | Path)
        self.path = str(target) if isinstance(target, str | Path) else None
        self.mismatch: int | None = None  # replay: the first line of the file that differs
        self.matched = 0  # replay: bytes of the file that the replay produced again
        self._seen = 0
        self._held: IO[bytes] | None = None  # replay: the file, read alongside
        if isinstance(target, str | Path):
            # closed by close()
            self._f: IO[str] | None = open(target, "a", encoding="utf-8", buffering=buffering)  # noqa: SIM115
        else:
            self._f = target

    def expect(self, count: int) -> None:
        """The next ``count`` events are a replay of what the file already holds: each is
        compared with its line (``mismatch``: the first line that differs in ``_IDENTITY``; a
        live run's times and extras may differ) instead of written."""
        self.skip = count
        self.mismatch, self.matched, self._seen = None, 0, 0
        self._held = open(self.path, "rb") if count and self.path else None  # noqa: SIM115

    def unexpected(self) -> tuple[int, int | None]:
        """After a replay: the file's lines it did not produce again, and the first line that
        differs from what it produced (None: a prefix of it). Stops comparing."""
        left, self.skip = self.skip, 0
        if self._held is not None:
            self._held.close()
            self._held = None
        return left, self.mismatch

    def _compare(self, event: dict[str, Any]) -> None:
        if self._held is None or self.mismatch is not None:
            return
        raw = self._held.readline()
        self._seen += 1
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        keys = _IDENTITY if event.get("event") == "assign" else _RECORDED
        if not isinstance(line, dict) or any(line.get(k) != event.get(k) for k in keys):
            self.mismatch = self._seen
            return
        self.matched += len(raw)

    def _write(self, event: dict[str, Any]) -> None:
        if self.skip:
            self.skip -= 1
            self._compare(event)
            return
        for listener in self.listeners:
            listener(event)
        if self._f is None:
            return
        self._lines.append(json.dumps(event, separators=(", ", ": ")))
        if self.autoflush is not None and len(self._lines) >= self.autoflush:
            self.flush()

    def assign(self, t: float, job: Job, worker: str, **extra: Any) -> None:
        if self._f is None and not self.listeners:
            return
        self._write(
            {
                "event": "assign",
                "t": round(t, 6),
                "trial": job.trial,
                "rung": job.rung,
                "bracket": job.bracket,
                "resource": _num(job.stop),
                "worker": worker,
                "job": job.job_id,
                **extra,
            }
        )

    def result(self, t: float, job: Job, value: float | None, **extra: Any) -> None:
        if self._f is None and not self.listeners:
            return
        if value is not None and not math.isfinite(value):
            value = None
        self._write(
            {
                "event": "result",
                "t": round(t, 6),
                "trial": job.trial,
                "rung": job.rung,
                "bracket": job.bracket,
                "value": value,
                "job": job.job_id,
                **extra,
            }
        )

    def lost(self, t: float, job: Job) -> None:
        if self._f is None and not self.listeners:
            return
        self._write(
            {
                "event": "lost",
                "t": round(t, 6),
                "trial": job.trial,
                "rung": job.rung,
                "bracket": job.bracket,
                "job": job.job_id,
            }
        )

    @property
    def buffered(self) -> bool:
        """Whether events wait in the buffer for ``flush`` (or ``take`` and ``write``)."""
        return bool(self._lines)

    def take(self) -> list[str]:
        """The buffered lines, leaving the buffer empty: a caller that must write them only
        after something else (the journal's fsync) takes them under its lock, then ``write``s."""
        lines, self._lines = self._lines, []
        return lines

    def write(self, lines: list[str]) -> None:
        """Write lines from ``take`` to the file (no-op without one)."""
        if self._f is not None and lines:
            self._f.write("\n".join(lines) + "\n")
            self._f.flush()

    def flush(self) -> None:
        self.write(self.take())

    def close(self) -> None:
        if self._f is not None:
            self.flush()
            if self._owned:
                self._f.close()
            else:
                self._f.flush()
            self._f = None


def refuse_used(path: str | Path | None, flag: str = "--trace") -> None:
    """A new study's trace must be a new or empty file: one that already holds events is another
    run's, which only resuming that run's journal may continue."""
    if path is None:
        return
    p = Path(path)
    if p.is_file() and p.stat().st_size > 0:
        raise TraceError(
            f"{flag} {path}: already holds the trace of an earlier run; a trace is continued "
            "only by resuming that run's --journal: delete the file or choose another"
        )


def _is_event(line: bytes) -> bool:
    try:
        event = json.loads(line)
    except ValueError:
        return False
    return isinstance(event, dict) and "event" in event


def count_events(path: str | Path) -> int:
    """Complete events in a trace file; a torn last line is cut off (the file is truncated to
    its last newline) so that appending continues on a line of its own."""
    p = Path(path)
    if not p.exists():
        return 0
    data = p.read_bytes()
    first, newline, _ = data.partition(b"\n")
    torn_alone = not newline and first.startswith(b'{"event": ')  # a first write cut short
    if data and not torn_alone and not _is_event(first):  # never cut a file that is no trace
        raise TraceError(
            f"--trace {path}: is not an ash trace (its first line is no trace event): "
            "choose another file"
        )
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with open(p, "r+b") as f:
            f.truncate(end)
    return data.count(b"\n", 0, end)


def read_trace(path: str | Path) -> Iterator[dict[str, Any]]:
    """The events of a trace file, skipping a torn (incomplete) last line."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                return
            yield json.loads(line)
