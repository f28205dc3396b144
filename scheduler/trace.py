"""The trace: one JSON line per scheduler event (assign, result, lost), in processing order.

This is a public contract (DESIGN section 3): tools and tests read it. Times are seconds since the
study started (virtual seconds in the simulator). A trace opened on an existing file is appended
to, which is how a resumed study continues its trace.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ash.scheduler.core import Job


def _num(x: float) -> float:
    return int(x) if float(x).is_integer() else x


class TraceWriter:
    """Writes trace events to a file (appending) or an open text stream; ``None`` writes nothing."""

    def __init__(self, target: str | Path | IO[str] | None, *, buffering: int = 1 << 16) -> None:
        self._owned = isinstance(target, str | Path)
        if isinstance(target, str | Path):
            # closed by close()
            self._f: IO[str] | None = open(target, "a", encoding="utf-8", buffering=buffering)  # noqa: SIM115
        else:
            self._f = target

    def _write(self, event: dict[str, Any]) -> None:
        if self._f is not None:
            self._f.write(json.dumps(event, separators=(", ", ": ")) + "\n")

    def assign(self, t: float, job: Job, worker: str, **extra: Any) -> None:
        if self._f is None:
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

    def result(self, t: float, job: Job, value: float | None) -> None:
        if self._f is None:
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
            }
        )

    def lost(self, t: float, job: Job) -> None:
        if self._f is None:
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

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            if self._owned:
                self._f.close()
            else:
                self._f.flush()
            self._f = None


def read_trace(path: str | Path) -> Iterator[dict[str, Any]]:
    """The events of a trace file, skipping a torn (incomplete) last line."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                return
            yield json.loads(line)
