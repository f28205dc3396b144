"""What a checkpoint is on the wire between scheduler and workers: bytes, or, in
shared-directory mode, a reference (``CheckpointRef``: a file name in the directory both share,
its size and CRC32). ``shared_file`` is the one place that turns a peer's name into a path, and
it refuses anything but a plain file name inside the shared directory."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

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
