"""The journal: an append-only JSON-lines log of every input the core saw, for crash-safe resume.

Optuna's JournalStorage idea, sized to ASHA: the core is deterministic, so its inputs are its
state. Three record kinds, written in the order the driver applied them:

    {"a": "w3", "t": 12.5}                                  an ask that produced a job
    {"r": 31, "v": 0.41, "m": {...}, "e": null, "t": 13.0}  a job's result (v null = failed)
    {"l": 31, "t": 14.0}                                    a job whose worker vanished

plus a header line naming the study and a hash of its spec, so a journal is never replayed
against another study. Resume replays the records through the very same driver methods (Optuna's
"replay through the same code path"), which rebuilds the core exactly.

Durability is group commit: ``append`` buffers, ``sync`` writes everything buffered and fsyncs
once; a transport calls ``sync`` before anything a decision caused leaves the process, so nothing
a worker saw is missing from the journal after a crash. Concurrent ``sync`` callers share one
fsync. A torn last line (a crash mid-write) is ignored on read and cut off before appending.
A write or fsync error makes the journal ``broken``: the driver then decides nothing more.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FORMAT = "ash-journal"
VERSION = 1


class JournalError(RuntimeError):
    """The journal cannot be used (another study's, unreadable, unwritable); names the file."""


def spec_digest(raw: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16]


class Journal:
    def __init__(self, path: str | Path, *, study: str, digest: str, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._pending: list[str] = []
        self._buf_lock = threading.Lock()  # guards _pending and appended (held briefly)
        self.io_lock = threading.Lock()  # one writer+fsync at a time
        self.appended = 0  # records appended (this process)
        self.durable = 0  # records known written and synced
        self.broken: str | None = None
        self.records: list[dict[str, Any]] = []
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists:
            header, self.records, good = _read(self.path)
            if header.get("study") != study or header.get("spec") != digest:
                raise JournalError(
                    f"{self.path}: belongs to study {header.get('study')!r} with another spec "
                    f"(spec hash {header.get('spec')} != {digest}); use a new journal file"
                )
            with open(self.path, "r+b") as f:
                f.truncate(good)  # cut a torn last line before appending
        try:
            self._f = open(self.path, "ab")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot be opened for writing ({exc})") from None
        if not exists:
            header = {"format": FORMAT, "version": VERSION, "study": study, "spec": digest}
            self.append(header)
            self.sync()

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), allow_nan=False)
        with self._buf_lock:
            self._pending.append(line)
            self.appended += 1

    def sync(self) -> None:
        """Write and fsync everything appended so far; raises JournalError if that fails."""
        target = self.appended
        with self.io_lock:
            if self.durable >= target and not self.broken:
                return  # what this caller appended is on disk: others' records can wait
            # (a caller's own records are synced together with everything appended so far)
            self._write(*self.take())

    def take(self) -> tuple[list[str], int]:
        """The records appended and not yet taken, and the count they bring ``appended`` to.
        For a caller that snapshots the journal together with other buffers (the driver: its
        trace) and then calls ``write`` with them, under ``io_lock``, in the order taken."""
        with self._buf_lock:
            lines, self._pending = self._pending, []
            return lines, self.appended

    def write(self, lines: list[str], count: int) -> None:
        """Write and fsync records from ``take``; hold ``io_lock`` from ``take`` to here."""
        self._write(lines, count)

    def _write(self, lines: list[str], count: int) -> None:
        if self.broken:
            raise JournalError(self.broken)
        if lines:
            try:
                self._f.write(("\n".join(lines) + "\n").encode())
                self._f.flush()
                if self.fsync:
                    os.fsync(self._f.fileno())
            except OSError as exc:
                self.broken = (
                    f"{self.path}: write failed ({exc.strerror or exc}); no more decisions"
                )
                raise JournalError(self.broken) from None
        self.durable = max(self.durable, count)

    def close(self) -> None:
        try:
            self.sync()
        finally:
            self._f.close()


def _read(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """(header, records, byte length of the intact part)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JournalError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    records: list[dict[str, Any]] = []
    header: dict[str, Any] | None = None
    good = 0
    for line, end in _lines(data):
        try:
            rec = json.loads(line)
        except ValueError:
            break  # a torn record: everything after it is not trusted
        if header is None:
            if not isinstance(rec, dict) or rec.get("format") != FORMAT:
                raise JournalError(f"{path}: not an ash journal (first line is not its header)")
            if rec.get("version") != VERSION:
                raise JournalError(f"{path}: journal version {rec.get('version')} not supported")
            header = rec
        else:
            records.append(rec)
        good = end
    if header is None:
        raise JournalError(f"{path}: not an ash journal (no header)")
    return header, records, good


def _lines(data: bytes) -> Iterator[tuple[bytes, int]]:
    start = 0
    while True:
        nl = data.find(b"\n", start)
        if nl < 0:
            return  # no newline: a torn last line
        yield data[start:nl], nl + 1
        start = nl + 1
