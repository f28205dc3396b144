"""Checkpoint stores: the state a trial resumes from when it is promoted.

A trial's job returns a state (opaque bytes); its next job (a promotion, or a re-issue) resumes
from it, so the store is asked for the state of trial T trained to resource r. Two stores:

- ``MemoryStore``: the latest state per trial, in memory (embedded runs, the simulator).
- ``DirectoryStore``: files in a directory (a journaled scheduler). Each write is atomic
  (temporary file, fsync, rename); the latest two states per trial are kept, so a state whose
  result never reached the journal before a crash cannot have replaced the one a re-issued job
  needs. File names are built from integers only (``t<trial>-r<resource>.ckpt``), so nothing a
  peer sends can name a path outside the directory.

A state is bytes, or a ``CheckpointRef``: in shared-directory mode a worker writes a large state
into a directory it shares with the scheduler and sends only its name, size and checksum; the
stores keep the reference (DirectoryStore as a small ``.ref`` file), never the bytes (see
``ash.link.checkpoints``, which also confines a peer's names to the shared directory).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Protocol

from ash.link.checkpoints import CheckpointRef, State

_FILE = re.compile(r"t(\d+)-r[0-9p.e+-]+\.(?:ckpt|ref)")  # DirectoryStore's own files


class CheckpointStore(Protocol):
    def put(self, trial: int, resource: float, state: State | None) -> None: ...

    def get(self, trial: int, resource: float) -> State | None: ...


class MemoryStore:
    def __init__(self) -> None:
        self._states: dict[int, tuple[float, State]] = {}

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
    in memory (scanned once at start, then kept up to date by ``put``), so asking for a state
    that was never stored (a trainer that returns none, the usual case for a promotion of a
    stateless trainer) costs no system call."""

    def __init__(self, root: str | Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._kept: dict[int, list[Path]] = {}
        self._names: set[str] = set()
        found: list[tuple[int, int, Path]] = []
        for entry in os.scandir(self.root):
            m = _FILE.fullmatch(entry.name)
            if m is not None and entry.is_file():
                self._names.add(entry.name)
                found.append((entry.stat().st_mtime_ns, int(m.group(1)), Path(entry.path)))
        for _, trial, path in sorted(found):  # oldest first, as put() keeps them
            self._kept.setdefault(trial, []).append(path)

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
        kept = self._kept.setdefault(trial, [])
        if path not in kept:
            kept.append(path)
        while len(kept) > 2:
            old = kept.pop(0)
            self._names.discard(old.name)
            old.unlink(missing_ok=True)

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
