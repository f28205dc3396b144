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
``ash.link.checkpoints``, which also confines a peer's names to the shared directory).
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

from ash.link.checkpoints import CheckpointPathError, CheckpointRef, State, shared_file

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
    ) -> None:
        self.root = Path(root)
        self.shared = shared  # shared-directory mode: a dropped .ref's file goes too
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

    def _stem(self, trial: int, resource: float) -> str:
        return f"t{int(trial)}-r{_resource_tag(resource)}"

    def put(self, trial: int, resource: float, state: State | None) -> None:
        if state is None:
            return
        name = self._stem(trial, resource) + ".ckpt"
        if isinstance(state, CheckpointRef):
            name = self._stem(trial, resource) + ".ref"
            state = json.dumps([state.name, state.crc32, state.size]).encode()
        path = self.root / name
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(state)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        self._names.add(name)

    def get(self, trial: int, resource: float) -> State | None:
        stem = self._stem(trial, resource)
        if stem + ".ckpt" in self._names:
            try:
                return (self.root / (stem + ".ckpt")).read_bytes()
            except FileNotFoundError:
                pass
        if stem + ".ref" not in self._names:
            return None
        try:
            name, crc, size = json.loads((self.root / (stem + ".ref")).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return CheckpointRef(str(name), int(crc), int(size))

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
                return [f"{_DROPPED} ({exc.strerror or exc})"]
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
        try:
            name = json.loads((self.root / ref).read_text())[0]
            path = shared_file(self.shared, str(name))
        except (FileNotFoundError, ValueError, IndexError, TypeError, CheckpointPathError):
            return  # no file we could name: nothing of ours to delete
        path.unlink(missing_ok=True)

    def was_dropped(self, trial: int) -> bool:
        return trial in self._dropped

    def count(self) -> int:
        return len(self._names)

    def close(self) -> None:
        if self.temporary:
            shutil.rmtree(self.root, ignore_errors=True)
            self._names.clear()
