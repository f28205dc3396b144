"""Checkpoint stores: the state a trial resumes from when it is promoted.

A trial's job returns a state (opaque bytes); its next job (a promotion, or a re-issue) resumes
from it, so the store is asked for the state of trial T trained to resource r. Two stores:

- ``MemoryStore``: the latest state per trial, in memory (embedded runs, the simulator).
- ``DirectoryStore``: files in a directory (a journaled scheduler, or a shared directory for
  large states). Each write is atomic (temporary file, fsync, rename); the latest two states per
  trial are kept, so a state whose result never reached the journal before a crash cannot have
  replaced the one a re-issued job needs. File names are built from integers only
  (``t<trial>-r<resource>.ckpt``), so nothing a peer sends can name a path outside the directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


class CheckpointStore(Protocol):
    def put(self, trial: int, resource: float, state: bytes | None) -> None: ...

    def get(self, trial: int, resource: float) -> bytes | None: ...


class MemoryStore:
    def __init__(self) -> None:
        self._states: dict[int, tuple[float, bytes]] = {}

    def put(self, trial: int, resource: float, state: bytes | None) -> None:
        if state is None:
            self._states.pop(trial, None)
        else:
            self._states[trial] = (resource, state)

    def get(self, trial: int, resource: float) -> bytes | None:
        got = self._states.get(trial)
        if got is None or abs(got[0] - resource) > 1e-9:
            return None
        return got[1]


def _resource_tag(resource: float) -> str:
    r = float(resource)
    return str(int(r)) if r.is_integer() else repr(r).replace(".", "p")


class DirectoryStore:
    def __init__(self, root: str | Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._kept: dict[int, list[Path]] = {}

    def _path(self, trial: int, resource: float) -> Path:
        return self.root / f"t{int(trial)}-r{_resource_tag(resource)}.ckpt"

    def put(self, trial: int, resource: float, state: bytes | None) -> None:
        if state is None:
            return
        path = self._path(trial, resource)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(state)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        kept = self._kept.setdefault(trial, [])
        if path not in kept:
            kept.append(path)
        while len(kept) > 2:
            kept.pop(0).unlink(missing_ok=True)

    def get(self, trial: int, resource: float) -> bytes | None:
        try:
            return self._path(trial, resource).read_bytes()
        except FileNotFoundError:
            return None
