"""Checkpoint stores: the state a trial resumes from when it is promoted.

A trial's job returns a state (opaque bytes); its next job (a promotion, or a re-issue) resumes
from it, so the store is asked for the state of trial T trained to resource r. Two stores:

- ``MemoryStore``: the latest state per trial, in memory (the simulator, tests).
- ``DirectoryStore``: files in a directory: under a journal ``JOURNAL.ckpt/``, otherwise a
  temporary directory the study owns and removes at its end (``temporary=True``), so states
  never pile up in the scheduler's memory. Each write is atomic (temporary file, fsync,
  rename); a write never removes another state, so a state whose result never reached the
  journal before a crash cannot have replaced the one a re-issued job needs. File names are
  built from integers only (``t<trial>-r<resource>.ckpt``), so nothing a peer sends can name a
  path outside the directory.

What is deleted, and when, is not the stores' call: ``ash.scheduler.core.retention`` decides
which checkpoints can go and the driver calls ``drop`` once the results that made them safe are
durable, and ``retain`` after a resume (a crash between a durable result and its deletion
leaves a file behind; ``retain`` removes it). A trial dropped as never needed again is
remembered (``was_dropped``; DirectoryStore appends its id to the file ``dropped``), so that if
a raised ``max_trials`` does promote it, the driver retrains it from scratch.

A state is bytes, or a ``CheckpointRef``: in shared-directory mode a worker writes a large state
into a directory it shares with the scheduler and sends only its name, size and checksum; the
stores keep the reference (DirectoryStore as a small ``.ref`` file), never the bytes (see
``ash.link.checkpoints``, which also confines a peer's names to the shared directory). A
referenced state the study does not keep is ``discard``ed: its file goes at once, unless a
``.ref`` names it (a resend of a recorded result). ``get`` returns None for a reference whose
file is gone or not of its size, as for a lost ``.ckpt``: the driver tells a state that is lost
from one a trainer never returned (it journals the latter) and retrains the former from scratch.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

from ash.link.checkpoints import (
    CheckpointPathError,
    CheckpointRef,
    CorruptCheckpoint,
    State,
    read_ref,
    shared_file,
)

_FILE = re.compile(r"t(\d+)-r([0-9p.e+-]+)\.(?:ckpt|ref)")  # DirectoryStore's own files
_DROPPED = "dropped"  # trial ids dropped as never needed again, one a line


class CheckpointStore(Protocol):
    def put(self, trial: int, resource: float, state: State | None) -> None: ...

    def get(self, trial: int, resource: float) -> State | None: ...

    def drop(self, drops: Iterable[tuple[int, float, bool]]) -> list[str]:
        """Delete the states (trial, resource, dead); return what could not be deleted."""
        ...

    def retain(self, keep: Mapping[int, float]) -> list[str]:
        """Delete every state but ``keep``'s (trial -> resource); return what could not be."""
        ...

    def discard(self, state: State | None) -> list[str]:
        """A state the study does not keep (a top-rung state not among ``keep_best``, a stopped
        job's, a duplicate or late result's): delete the shared file a ``CheckpointRef`` names,
        unless a stored reference names it too; return what could not be deleted."""
        ...

    def was_dropped(self, trial: int) -> bool: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


class MemoryStore:
    def __init__(self) -> None:
        self._states: dict[int, tuple[float, State]] = {}
        self._dropped: set[int] = set()

    def drop(self, drops: Iterable[tuple[int, float, bool]]) -> list[str]:
        for trial, resource, dead in drops:
            got = self._states.get(trial)
            if got is not None and abs(got[0] - resource) <= 1e-9:
                del self._states[trial]
            if dead:
                self._dropped.add(trial)
        return []

    def retain(self, keep: Mapping[int, float]) -> list[str]:
        for trial, (resource, _) in list(self._states.items()):
            r = keep.get(trial)
            if r is None or abs(r - resource) > 1e-9:
                del self._states[trial]
        return []

    def discard(self, state: State | None) -> list[str]:
        return []  # no shared directory: nothing of this state is stored anywhere

    def was_dropped(self, trial: int) -> bool:
        return trial in self._dropped

    def count(self) -> int:
        return len(self._states)

    def close(self) -> None:
        pass

    def put(self, trial: int, resource: float, state: State | None) -> None:
        if state is None:
            self._states.pop(trial, None)
        else:
            self._states[trial] = (resource, state)

    def get(self, trial: int, resource: float) -> State | None:
        got = self._states.get(trial)
        if got is None or abs(got[0] - resource) > 1e-9:
            return None
        return got[1]


def _resource_tag(resource: float) -> str:
    r = float(resource)
    return str(int(r)) if r.is_integer() else repr(r).replace(".", "p")


class DirectoryStore:
    """States as files in ``root``, which this store alone writes. The names present are indexed
    in memory (scanned once at start, then kept up to date by ``put`` and ``drop``), so asking
    for a state that was never stored (a trainer that returns none, the usual case for a
    promotion of a stateless trainer) costs no system call. ``temporary``: the directory is the
    store's own, removed by ``close``."""

    def __init__(
        self,
        root: str | Path,
        *,
        fsync: bool = True,
        temporary: bool = False,
        shared: Path | None = None,
        resolve: bool = False,
    ) -> None:
        self.root = Path(root)
        self.shared = shared  # shared-directory mode: a dropped .ref's file goes too
        self.resolve = resolve  # hand out a reference's bytes (workers without the directory)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.temporary = temporary
        self._names: set[str] = set()
        for entry in os.scandir(self.root):
            if _FILE.fullmatch(entry.name) is not None and entry.is_file():
                self._names.add(entry.name)
        self._dropped: set[int] = set()
        with contextlib.suppress(FileNotFoundError):
            for line in (self.root / _DROPPED).read_text().split():
                if line.isdigit():
                    self._dropped.add(int(line))
        self._refs: dict[str, str] = {}  # shared file name -> the .ref naming it (shared mode)
        if shared is not None:
            for name in self._names:
                if name.endswith(".ref"):
                    ref = self._read_ref(name)
                    if ref is not None:
                        self._refs[ref.name] = name

    def _stem(self, trial: int, resource: float) -> str:
        return f"t{int(trial)}-r{_resource_tag(resource)}"

    def put(self, trial: int, resource: float, state: State | None) -> None:
        if state is None:
            return
        name = self._stem(trial, resource) + ".ckpt"
        ref = None
        if isinstance(state, CheckpointRef):
            ref, name = state, self._stem(trial, resource) + ".ref"
            data = json.dumps([ref.name, ref.crc32, ref.size]).encode()
        else:
            data = state
        path = self.root / name
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        self._names.add(name)
        if ref is not None:
            self._refs[ref.name] = name

    def get(self, trial: int, resource: float) -> State | None:
        """The state, or None when there is none: never stored, or lost (a file gone, a
        reference whose shared file is gone or not of its size: a promotion from it would
        fail on the worker)."""
        stem = self._stem(trial, resource)
        if stem + ".ckpt" in self._names:
            try:
                return (self.root / (stem + ".ckpt")).read_bytes()
            except FileNotFoundError:
                pass
        if stem + ".ref" not in self._names:
            return None
        ref = self._read_ref(stem + ".ref")
        if ref is not None and self.shared is not None:
            try:
                if self.resolve:
                    return read_ref(self.shared, ref)
                if shared_file(self.shared, ref.name).stat().st_size != ref.size:
                    return None
            except (OSError, CheckpointPathError, CorruptCheckpoint):
                return None
        return None if self.resolve else ref

    def _read_ref(self, name: str) -> CheckpointRef | None:
        try:
            got, crc, size = json.loads((self.root / name).read_text())
            return CheckpointRef(str(got), int(crc), int(size))
        except (OSError, ValueError, TypeError):
            return None

    def discard(self, state: State | None) -> list[str]:
        if not isinstance(state, CheckpointRef) or self.shared is None:
            return []
        if state.name in self._refs:
            return []  # a duplicate of a result whose state is kept: the file is that state
        try:
            shared_file(self.shared, state.name).unlink(missing_ok=True)
        except CheckpointPathError:
            return []  # no file we could name: nothing of ours to delete
        except OSError as exc:
            return [f"{state.name} ({exc.strerror or exc})"]
        return []

    def drop(self, drops: Iterable[tuple[int, float, bool]]) -> list[str]:
        """Delete states; a trial dropped as ``dead`` is first noted in ``dropped`` (durably,
        with fsync), so that the note is never missing for a deleted file."""
        drops = list(drops)
        dead = [t for t, _, d in drops if d and t not in self._dropped]
        failed: list[str] = []
        if dead:
            try:
                with open(self.root / _DROPPED, "a") as f:
                    f.write("".join(f"{t}\n" for t in dead))
                    if self.fsync:
                        f.flush()
                        os.fsync(f.fileno())
                self._dropped.update(dead)
            except OSError as exc:  # without the note, deleting could lose a needed state
                why = exc.strerror or exc
                return [f"{len(drops)} checkpoints (the note {_DROPPED} cannot be written: {why})"]
        for trial, resource, _ in drops:
            stem = self._stem(trial, resource)
            for name in (stem + ".ckpt", stem + ".ref"):
                if name in self._names:
                    failed += self._unlink(name)
        return failed

    def retain(self, keep: Mapping[int, float]) -> list[str]:
        wanted = {self._stem(t, r) for t, r in keep.items()}
        failed: list[str] = []
        for name in sorted(self._names):
            if name.rsplit(".", 1)[0] not in wanted:
                failed += self._unlink(name)
        for entry in os.scandir(self.root):  # a write cut short by a crash
            if entry.name.endswith(".tmp") and _FILE.fullmatch(entry.name[:-4] + ".ckpt"):
                failed += self._unlink(entry.name)
        return failed

    def _unlink(self, name: str) -> list[str]:
        try:
            if self.shared is not None and name.endswith(".ref"):
                self._unlink_shared(name)
            (self.root / name).unlink(missing_ok=True)
        except OSError as exc:
            return [f"{name} ({exc.strerror or exc})"]
        self._names.discard(name)
        return []

    def _unlink_shared(self, ref: str) -> None:
        """Delete the worker-written file a ``.ref`` names in the shared directory."""
        assert self.shared is not None
        got = self._read_ref(ref)
        if got is None:
            return  # no file we could name: nothing of ours to delete
        try:
            path = shared_file(self.shared, got.name)
        except CheckpointPathError:
            return
        path.unlink(missing_ok=True)
        if self._refs.get(got.name) == ref:
            del self._refs[got.name]

    def was_dropped(self, trial: int) -> bool:
        return trial in self._dropped

    def count(self) -> int:
        return len(self._names)

    def close(self) -> None:
        if self.temporary:
            shutil.rmtree(self.root, ignore_errors=True)
            self._names.clear()
