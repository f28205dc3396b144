"""What a checkpoint is on the wire between scheduler and workers: bytes, or, in
shared-directory mode, a reference (``CheckpointRef``: a file name in the directory both share,
its size and CRC32). ``shared_file`` is the one place that turns a peer's name into a path, and
it refuses anything but a plain file name inside the shared directory."""

from __future__ import annotations

import re
import zlib
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


class CorruptCheckpoint(ValueError):
    """A referenced state whose bytes do not match its reference's size and checksum."""


def read_ref(root: Path, ref: CheckpointRef) -> bytes:
    """The bytes a reference names in the shared directory ``root``, checked against its size
    and checksum (CorruptCheckpoint; OSError when the file cannot be read)."""
    data = shared_file(root, ref.name).read_bytes()
    if len(data) != ref.size or zlib.crc32(data) != ref.crc32:
        raise CorruptCheckpoint(f"checkpoint {ref.name!r} is corrupt")
    return data
