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
stores keep the reference (DirectoryStore as a small ``.ref`` file), never the bytes.
``shared_file`` is the one place that turns a peer's name into a path, and it refuses anything
but a plain file name inside the shared directory.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeAlias

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")


@dataclass(frozen=True)
class CheckpointRef:
    name: str
    crc32: int
    size: int


State: TypeAlias = bytes | CheckpointRef


class CheckpointPathError(ValueError):
    """A checkpoint name that is not a plain file name inside the shared directory."""


def shared_file(root: Path, name: str) -> Path:
    """The path of ``name`` in ``root``; refuses anything that could leave the directory."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise CheckpointPathError(f"checkpoint name {name!r} is not a plain file name")
    base = root.resolve()
    path = (base / name).resolve()
    if path.parent != base:
        raise CheckpointPathError(f"checkpoint name {name!r} leaves the checkpoint directory")
    return path


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
    def __init__(self, root: str | Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._kept: dict[int, list[Path]] = {}

    def _path(self, trial: int, resource: float) -> Path:
        return self.root / f"t{int(trial)}-r{_resource_tag(resource)}.ckpt"

    def put(self, trial: int, resource: float, state: State | None) -> None:
        if state is None:
            return
        path = self._path(trial, resource)
        if isinstance(state, CheckpointRef):
            path = path.with_suffix(".ref")
            state = json.dumps([state.name, state.crc32, state.size]).encode()
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

    def get(self, trial: int, resource: float) -> State | None:
        path = self._path(trial, resource)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        try:
            name, crc, size = json.loads(path.with_suffix(".ref").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return CheckpointRef(str(name), int(crc), int(size))
