"""The journal: an append-only JSON-lines log of every input the core saw, for crash-safe resume.

Optuna's JournalStorage idea, sized to ASHA: the core is deterministic, so its inputs are its
state. Record kinds, written in the order the driver applied them:

    {"a": "w3", "k": [7, 0], "c": {...}, "t": 12.5}   an ask that produced a job: its trial and
                                                       rung, and for a new trial its config
    {"r": 31, "v": 0.41, "m": {...}, "e": null, "t": 13.0}  a job's result (v null = failed;
                                                       "n": 1 below the top rung when its job
                                                       returned no state: a promotion from it
                                                       gets none by design, not by a loss)
    {"l": 31, "t": 14.0}                               a job whose worker vanished ("c": 0 when
                                                       the loss is not charged to the trial, "w":
                                                       why)
    {"p": 31, "s": [[1, {"loss": 0.5}], ...], "t": 12.9}  a running job's intermediate reports
                                                       (ctx.report), one record per batch
                                                       (version 3); a non-finite number is
                                                       null in "s" and listed in "n": [[0,
                                                       "loss", "-inf"]] (report, metric, value)
    {"x": {"max_trials": 80, "time_limit_s": null}, "t": 15.0}   the budget, raised from here on
                                                       ("enqueue": [...]: configs appended to
                                                       the warm-start queue from here on)

A continued study may raise its budget: a spec that differs from the journal's (its header's
spec with the ``x`` records so far applied) only by a larger ``[asha] max_trials`` or
``time_limit_s`` (or by dropping one of them while the other still bounds the study), or by
inline ``[study] enqueue`` configs appended after the same ones (warm-start suggestions for an
existing study: the next new trials), is accepted, and the driver journals an ``x`` record
before its first new decision, so a replay applies it at the same point. The budget only
changes when the core stops handing out new trials, and an appended config only which config
the next new trial gets, never which trial or config a recorded ask produced (the bracket a sync
algorithm opens is sized at the budget of its moment, which the replay has too). Anything else,
a lowered budget included, is refused as before, naming what changed.

The first line is a header naming the study and a hash of its spec (and, from version 2, the
spec itself and the order of its ``[space]`` keys), so a journal is never replayed against
another study or a changed one, and the refusal can say what changed. Resume replays the
records through the very same driver methods (Optuna's "replay through the same code path"),
which rebuilds the core exactly; the decisions recorded in ``k`` and ``c`` are checked on the
way, so a change that alters decisions without changing the hash (a reordered ``[space]``, a new
ash) is refused instead of attributing results to configs that were never trained.

Damage: each line of a version-2 journal ends in a CRC32 of the line (``"#":"1a2b3c4d"``).
Only a torn last line (no newline: a crash mid-write) is dropped and cut off before appending;
any other damage (a bad checksum, a line that does not parse, a record of the wrong shape)
refuses to start, names the line, and leaves the file untouched (SQLite's and etcd's rule: never
repair data silently). Version-1 journals (no checksums) and version-2 journals (no reports)
are still read and continued; a new journal is version 3 (an older ash refuses it by its
version, instead of calling a report record damage).

One owner: a journal is locked (``flock`` on the file itself; ``JOURNAL.lock`` notes the
owner's pid and host) for the life of the process that opened it, like etcd's and Consul's data
directories; a second process, a stale pod, an overlapping Slurm requeue, or a symlink or hard
link to the same file, is refused with the holder's pid. The lock covers the checkpoint folder
beside the journal too.

Durability is group commit: ``append`` buffers, ``sync`` writes everything buffered and fsyncs
once; a transport calls ``sync`` before anything a decision caused leaves the process, so nothing
a worker saw is missing from the journal after a crash. Concurrent ``sync`` callers share one
fsync. A write or fsync error makes the journal ``broken``: the driver then decides nothing more.
The file is unbuffered (the records are buffered here, and written whole by ``sync``), so
closing a broken journal writes nothing and cannot fail again on a full disk.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import socket
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ash.errors import UserError

FORMAT = "ash-journal"
VERSION = 3
READS = (1, 2, 3)
_SUM = ',"#":"'  # a version-2 line ends in ,"#":"xxxxxxxx"}
_SUM_LEN = len(_SUM) + 8 + 2


class JournalError(UserError, RuntimeError):
    """The journal cannot be used (another study's, damaged, locked, unwritable); names the
    file."""


def spec_digest(raw: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16]


def config_digest(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def seal(text: str) -> str:
    """A JSON object's text with its CRC32 appended as the last member ``"#"``."""
    return f'{text[:-1]}{_SUM}{zlib.crc32(text.encode()):08x}"}}'


def unseal(line: bytes) -> bytes | None:
    """The text ``seal`` was given, or None when the checksum is missing or wrong."""
    if len(line) < _SUM_LEN or line[-_SUM_LEN:-10] != _SUM.encode() or line[-2:] != b'"}':
        return None
    text = line[:-_SUM_LEN] + b"}"
    try:
        crc = int(line[-10:-2], 16)
    except ValueError:
        return None
    return text if zlib.crc32(text) == crc else None


class Journal:
    def __init__(
        self,
        path: str | Path,
        *,
        study: str,
        digest: str,
        fsync: bool = True,
        spec: dict[str, Any] | None = None,
        order: list[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._pending: list[str] = []
        self._buf_lock = threading.Lock()  # guards _pending and appended (held briefly)
        self.io_lock = threading.Lock()  # one writer+fsync at a time
        self.appended = 0  # records appended (this process)
        self.durable = 0  # records known written and synced
        self.broken: str | None = None
        self.records: list[dict[str, Any]] = []
        self.header: dict[str, Any] = {}
        self.raise_budget: dict[str, Any] | None = None  # the budget to journal (x) on resume
        self._lock_fd = _lock(self.path)
        try:
            self._open(study, digest, spec, order)
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _open(
        self, study: str, digest: str, spec: dict[str, Any] | None, order: list[str] | None
    ) -> None:
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists:
            self.header, self.records, good, size = _read(self.path)
            self.raise_budget = _check_header(
                self.path, self.header, study, digest, spec, order, self.records
            )
            if good < size:
                with open(self.path, "r+b") as f:
                    f.truncate(good)  # cut a torn last line before appending
        self.sealed = self.header.get("version", VERSION) >= 2
        try:  # unbuffered: nothing is left in a buffer for close to write (on a full disk)
            self._f = open(self.path, "ab", buffering=0)  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot be opened for writing ({exc})") from None
        if not exists:
            self.header = {"format": FORMAT, "version": VERSION, "study": study, "spec": digest}
            if spec is not None:
                self.header["raw"] = spec
            if order is not None:
                self.header["order"] = order
            self.append(self.header)
            self.sync()

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), allow_nan=False)
        if self.sealed:
            line = seal(line)
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
                data = memoryview(("\n".join(lines) + "\n").encode())
                while data:  # a raw file may take part of it: write the rest
                    n = self._f.write(data)
                    if not n:
                        raise OSError(errno.EIO, "the file took no bytes")
                    data = data[n:]
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
            self.release()

    def release(self) -> None:
        """Close the file and give up the lock without writing (what a crash does). The file
        is unbuffered, so closing it writes nothing; an error a file system reports only on
        close (NFS) changes nothing either: what ``sync`` could not make durable it said."""
        try:
            with contextlib.suppress(OSError):
                self._f.close()
        finally:
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1


def read_only(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, records) of a journal, read without its lock (``ash.load``): its owner may be
    running and appending; a torn last line is left out, other damage refused as on open."""
    header, records, _, _ = _read(Path(path))
    return header, records


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _lock(path: Path) -> int:
    """Take the journal's lock for this process, or raise naming the holder. The lock is on the
    journal file itself (``flock``, so on its inode: a symlink or a hard link to a journal in use
    is refused too); ``JOURNAL.lock`` beside its real path only notes the holder's pid and host
    for this message."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise JournalError(f"{path}: cannot be opened ({exc.strerror or exc})") from None
    note = lock_path(path.resolve())
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = _flock_holder(os.fstat(fd))
        os.close(fd)
        try:
            holder = note.read_text(errors="replace").split()
        except OSError:
            holder = []
        if pid is not None:  # this host's kernel knows (a hard link has no note of its own)
            holder = [str(pid), socket.gethostname()]
        who = f"pid {holder[0]} on {holder[1]}" if len(holder) >= 2 else "another process"
        raise JournalError(
            f"{path}: in use by {who} (lock {note}); one study has one owner: stop that "
            "process first, or use another journal"
        ) from None
    with contextlib.suppress(OSError):  # without the note, only a refusal's message is poorer
        note.write_text(f"{os.getpid()} {socket.gethostname()}\n")
    return fd


def _flock_holder(st: os.stat_result) -> int | None:
    """The pid holding a flock on the file of ``st`` on this host (Linux ``/proc/locks``)."""
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == want and parts[4].isdigit():
            return int(parts[4])
    return None


BUDGET = ("max_trials", "time_limit_s")  # the [asha] keys a continued study may raise


def budget(raw: dict[str, Any]) -> dict[str, Any]:
    """The ``[asha]`` budget of a parsed spec: {"max_trials": ..., "time_limit_s": ...}."""
    table = raw.get("asha", {})
    return {key: table.get(key) if isinstance(table, dict) else None for key in BUDGET}


def amended(raw: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The spec a journal's study runs now: its header's, with each ``x`` record applied (its
    budget, and the configs it enqueued after those of ``[study] enqueue``)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for rec in records:
        if "x" in rec:
            table = out.setdefault("asha", {})
            for key in BUDGET:
                table.pop(key, None)
                if rec["x"].get(key) is not None:
                    table[key] = rec["x"][key]
            if rec["x"].get("enqueue"):
                study = out.setdefault("study", {})
                study["enqueue"] = [*enqueued(out), *rec["x"]["enqueue"]]
    return out


def enqueued(raw: dict[str, Any]) -> list[Any]:
    """A spec's inline ``[study] enqueue`` list ([] when none; a file's path is not a list)."""
    study = raw.get("study")
    queue = study.get("enqueue") if isinstance(study, dict) else None
    return list(queue) if isinstance(queue, list) else []


def _check_header(
    path: Path,
    header: dict[str, Any],
    study: str,
    digest: str,
    spec: dict[str, Any] | None,
    order: list[str] | None,
    records: list[dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """Refuse another study's or a changed spec's journal; the new budget when the spec only
    raises it (journaled by the driver), else None."""
    if header.get("study") != study:
        raise JournalError(
            f"{path}: belongs to study {header.get('study')!r}, not {study!r}; "
            "use a new journal file"
        )
    raise_to: dict[str, Any] | None = None
    raw = header.get("raw")
    now = amended(raw, records or []) if isinstance(raw, dict) else None
    amends = any("x" in r for r in records or [])
    current = spec_digest(now) if now is not None and amends else header.get("spec")
    if current != digest:  # (after a raise, the header's own spec would be a lowering)
        changed = ""
        if now is not None and spec is not None:
            changes = spec_changes(now, spec)
            lowered = _budget_raise(now, spec)
            if isinstance(lowered, dict):
                raise_to = lowered
            else:
                changed = ": " + "; ".join(changes) + (f" ({lowered})" if lowered else "")
        if raise_to is None:
            raise JournalError(
                f"{path}: was written for another spec (spec hash {header.get('spec')} != "
                f"{digest}){changed}; a changed spec would make other decisions: restore it, "
                "or use a new journal file (raising [asha] max_trials or time_limit_s is "
                "allowed)"
            )
    was = header.get("order")
    if isinstance(was, list) and order is not None and was != order:
        raise JournalError(
            f"{path}: the [space] keys were reordered ({', '.join(map(str, was))} -> "
            f"{', '.join(order)}); configs are sampled in the file's order, so the journal's "
            "trials would get other configs: restore the order, or use a new journal file"
        )
    return raise_to


def _budget_raise(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | str | None:
    """What a continued study changes (its new budget, and in ``"enqueue"`` the number of
    configs appended to ``[study] enqueue``) when ``new`` differs from ``old`` only by a raised
    budget or more inline enqueued configs after the same ones; otherwise why not (a lowered
    budget, changed enqueued configs), or None (other keys changed)."""
    a, b = budget(old), budget(new)
    was_q, now_q = enqueued(old), enqueued(new)

    def rest(raw: dict[str, Any]) -> dict[str, Any]:
        out = amended(raw, [{"x": b}])
        study = out.get("study")
        if isinstance(study, dict) and isinstance(study.get("enqueue"), list):
            out["study"] = {k: v for k, v in study.items() if k != "enqueue"}
        return out

    if rest(old) != rest(new):
        return None  # more than the budget and the enqueued configs changed
    if now_q[: len(was_q)] != was_q:
        return "changing configs already enqueued is refused: only appending to them is"
    for key in BUDGET:
        was, now = a[key], b[key]
        if was is not None and now is not None and now < was:
            return f"lowering [asha].{key} ({was} -> {now}) is refused: only raising it is"
        if was is None and now is not None:
            return f"adding [asha].{key} = {now} lowers the budget, which is refused"
    return {**b, "enqueue": len(now_q) - len(was_q)}


def spec_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two parsed specs, as ``[table].key: old -> new`` lines."""
    a, b = _flat(old), _flat(new)
    out = []
    for key in sorted(a.keys() | b.keys()):
        if key not in b:
            out.append(f"{key} removed (was {a[key]})")
        elif key not in a:
            out.append(f"{key} added ({b[key]})")
        elif a[key] != b[key]:
            out.append(f"{key}: {a[key]} -> {b[key]}")
    return out or ["the spec differs"]


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, dict) and not prefix:
            out.update(_flat(v, f"[{k}]."))
        elif isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v)
    return out


NON_FINITE = ("inf", "-inf", "nan")  # a report record's "n": the values written as null
_SHAPES: dict[str, dict[str, tuple[type, ...]]] = {
    "a": {"a": (str,), "t": (int, float), "k": (list,), "c": (dict,)},
    "r": {"r": (int,), "t": (int, float), "v": (int, float, type(None)), "m": (dict,), "n": (int,)},
    "l": {"l": (int,), "t": (int, float), "c": (int,), "w": (str,)},
    "p": {"p": (int,), "t": (int, float), "s": (list,), "n": (list,)},
    "x": {"x": (dict,), "t": (int, float)},
}


def check_record(rec: Any) -> str | None:
    """What is wrong with a record's shape, or None."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    kinds = [k for k in _SHAPES if k in rec]
    if len(kinds) != 1:
        return "not an ask (a), result (r), loss (l), report (p) or budget (x) record"
    for key, types in _SHAPES[kinds[0]].items():
        if key in rec and (not isinstance(rec[key], types) or isinstance(rec[key], bool)):
            return f"{key!r} is {type(rec[key]).__name__}"
    if "e" in rec and not isinstance(rec["e"], str | None):
        return f"'e' is {type(rec['e']).__name__}"
    x = rec.get("x")
    if isinstance(x, dict) and any(
        not isinstance(x.get(key), int | float | None) or isinstance(x.get(key), bool)
        for key in BUDGET
    ):
        return "'x' holds a budget that is not a number"
    if isinstance(x, dict) and not all(isinstance(c, dict) for c in x.get("enqueue") or []):
        return "'x' enqueues a config that is not an object"
    k = rec.get("k")
    if k is not None and not (len(k) == 2 and all(type(x) is int for x in k)):
        return "'k' is not [trial, rung]"
    if "p" in rec:
        if "s" not in rec:
            return "a report record without 's'"
        for item in rec["s"]:
            ok = isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict)
            if not ok or type(item[0]) not in (int, float):
                return "'s' is not a list of [step, metrics]"
        for item in rec.get("n", ()):  # where the non-finite numbers were (written null)
            ok = isinstance(item, list) and len(item) == 3 and type(item[0]) is int
            ok = ok and isinstance(item[1], str) and item[2] in NON_FINITE
            if not ok or not 0 <= item[0] < len(rec["s"]):
                return "'n' is not a list of [report index, metric, 'inf' | '-inf' | 'nan']"
            if item[1] not in rec["s"][item[0]][1] or rec["s"][item[0]][1][item[1]] is not None:
                return f"'n' names {item[1]!r} of report {item[0]}, which is not null there"
    return None


def _read(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], int, int]:
    """(header, records, byte length of the intact part, file size). Raises JournalError
    naming the line for any damage but a torn last line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JournalError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    records: list[dict[str, Any]] = []
    header: dict[str, Any] | None = None
    good = 0
    sealed = False
    for n, (line, end) in enumerate(_lines(data), start=1):
        text: bytes | None = line
        if sealed:
            text = unseal(line)
            if text is None:
                _damaged(path, n, data, end, "checksum mismatch")
        try:
            rec = json.loads(text)  # type: ignore[arg-type]
        except ValueError:
            if header is None and FORMAT.encode() not in line:
                raise JournalError(f"{path}: not an ash journal (no header)") from None
            _damaged(path, n, data, end, "not JSON")
        if header is None:
            if not isinstance(rec, dict) or rec.get("format") != FORMAT:
                raise JournalError(f"{path}: not an ash journal (first line is not its header)")
            if rec.get("version") not in READS:
                raise JournalError(f"{path}: journal version {rec.get('version')} not supported")
            sealed = rec["version"] >= 2
            if sealed and unseal(line) is None:
                _damaged(path, n, data, end, "checksum mismatch")
            rec.pop("#", None)
            header = rec
        else:
            problem = check_record(rec)
            if problem is not None:
                _damaged(path, n, data, end, problem)
            records.append(rec)
        good = end
    if header is None:
        raise JournalError(f"{path}: not an ash journal (no header)")
    return header, records, good, len(data)


def _damaged(path: Path, n: int, data: bytes, end: int, why: str) -> None:
    rest = data[end:]
    tail = " (and more lines follow it)" if rest.strip(b"\0 \n") else ""
    raise JournalError(
        f"{path}: line {n} is damaged ({why}){tail}; the journal was left untouched. Restore it "
        "from a copy, or truncate it before that line to resume from what precedes it"
    )


def _lines(data: bytes) -> Iterator[tuple[bytes, int]]:
    start = 0
    while True:
        nl = data.find(b"\n", start)
        if nl < 0:
            return  # no newline: a torn last line
        yield data[start:nl], nl + 1
        start = nl + 1
