"""File checkpoints as state bytes: how a ``(config, ctx)`` trainer's checkpoint directory travels.

A trainer with a context may write its framework's own files (``torch.save``, orbax, numpy)
into ``ctx.checkpoint_dir()`` and may also return state bytes. Both travel as ONE state (the
bytes ash already stores, sends and journals on every transport: embedded, gRPC, MPI, shared
directory), in this format:

    MAGIC (8 bytes, b"ASHCKD1\\n")
    flags (1 byte: bit 0 = the trainer returned state bytes)
    length of those bytes (8 bytes, big-endian unsigned)
    the bytes
    an uncompressed POSIX tar of the checkpoint directory (empty when none was written)

The next job of the trial (on any worker) gets the bytes back as ``ctx.state`` and the files
unpacked into ``ctx.restore_dir()``. Uncompressed on purpose: framework checkpoints are mostly
float arrays that do not compress, and a tar of plain members cannot expand beyond its own size.

``extract`` opens a state the study kept (``JOURNAL.ckpt/tN-rR.ckpt``: the ``keep_best`` best
trials' trained models) into a folder, for the user to load the best model.

The tar is a peer's data (a worker on another machine produced it), so ``unpack`` accepts only
regular files and directories with relative names inside the destination: an absolute name,
``..``, a symlink, a hard link, a device, a FIFO or a sparse member refuses the whole archive
(``CheckpointFilesError``), and no file is written outside the destination or over another.
``pack`` likewise refuses what it cannot carry faithfully (a symlink or a special file).
"""

from __future__ import annotations

import io
import os
import stat
import struct
import tarfile
from pathlib import Path, PurePosixPath

MAGIC = b"ASHCKD1\n"
_HEAD = struct.Struct(">BQ")
_HAS_BYTES = 1
MAX_MEMBERS = 100_000  # files and folders in one checkpoint directory


class CheckpointFilesError(ValueError):
    """A checkpoint directory cannot be packed, or an archive is refused; says why."""


def is_packed(state: bytes | None) -> bool:
    return state is not None and state[: len(MAGIC)] == MAGIC


def pack(data: bytes | None, directory: Path | None) -> bytes:
    """The state holding ``data`` (the trainer's bytes, or None) and the files of
    ``directory`` (None or empty: no files)."""
    head = MAGIC + _HEAD.pack(_HAS_BYTES if data is not None else 0, len(data or b""))
    tar = _tar(directory) if directory is not None else b""
    return head + (data or b"") + tar


def split(state: bytes) -> tuple[bytes | None, bytes]:
    """(the trainer's bytes or None, the tar) of a packed state."""
    if not is_packed(state):
        raise CheckpointFilesError("not a packed checkpoint (no header)")
    at = len(MAGIC)
    if len(state) < at + _HEAD.size:
        raise CheckpointFilesError("packed checkpoint: header cut short")
    flags, n = _HEAD.unpack_from(state, at)
    at += _HEAD.size
    if flags & ~_HAS_BYTES or at + n > len(state) or (n and not flags & _HAS_BYTES):
        raise CheckpointFilesError("packed checkpoint: bad header")
    data = state[at : at + n] if flags & _HAS_BYTES else None
    return data, state[at + n :]


def extract(state: bytes, dest: Path) -> bytes | None:
    """Open a kept state of a ``(config, ctx)`` trainer (e.g. the bytes of a
    ``JOURNAL.ckpt/tN-rR.ckpt`` file): its checkpoint files are written into ``dest`` (created;
    it must be empty) and the bytes the trainer returned beside them are returned (None when
    it returned none). CheckpointFilesError for a state that is not packed or is refused."""
    data, tar = split(state)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, no permission
        raise CheckpointFilesError(f"{dest}: cannot be created ({exc.strerror or exc})") from None
    if any(dest.iterdir()):
        raise CheckpointFilesError(f"{dest} is not empty")
    unpack(tar, dest)
    return data


def _tar(directory: Path) -> bytes:
    """An uncompressed tar of ``directory``'s contents (b"" when it is empty)."""
    entries: list[tuple[Path, str]] = []
    for root, dirs, files in os.walk(directory, followlinks=False):
        dirs.sort()
        for name in sorted(dirs) + sorted(files):
            path = Path(root) / name
            rel = path.relative_to(directory).as_posix()
            mode = os.lstat(path).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                kind = "a symlink" if stat.S_ISLNK(mode) else "not a regular file"
                raise CheckpointFilesError(
                    f"checkpoint_dir(): {rel} is {kind}; write plain files and folders only"
                )
            entries.append((path, rel))
    if not entries:
        return b""
    if len(entries) > MAX_MEMBERS:
        raise CheckpointFilesError(
            f"checkpoint_dir(): {len(entries)} files and folders (at most {MAX_MEMBERS})"
        )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, rel in entries:
            info = tf.gettarinfo(str(path), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isreg():
                with open(path, "rb") as f:
                    tf.addfile(info, f)
            else:
                tf.addfile(info)
    return buf.getvalue()


def unpack(tar: bytes, dest: Path) -> int:
    """Unpack a packed checkpoint's tar into the empty folder ``dest``; returns the files
    written. Refuses (CheckpointFilesError) an archive with any member that is not a regular
    file or a folder with a relative name inside ``dest``, before writing anything."""
    if not tar:
        return 0
    try:
        with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as tf:
            members = tf.getmembers()
            seen: set[str] = set()
            if len(members) > MAX_MEMBERS:
                raise CheckpointFilesError(f"{len(members)} members (at most {MAX_MEMBERS})")
            for m in members:
                _check_member(m, seen)
            files = 0
            root = dest.resolve()
            for m in members:
                target = root.joinpath(*PurePosixPath(m.name).parts)
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.resolve().is_relative_to(root):  # a folder swapped for a link
                    raise CheckpointFilesError(f"member {m.name!r} leads outside the folder")
                src = tf.extractfile(m)
                assert src is not None
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                with os.fdopen(fd, "wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                files += 1
            return files
    except tarfile.TarError as exc:
        raise CheckpointFilesError(f"not a readable tar ({exc})") from None


def _check_member(m: tarfile.TarInfo, seen: set[str]) -> None:
    name = m.name
    if not (m.isreg() or m.isdir()) or m.issparse():
        raise CheckpointFilesError(f"member {name!r} is not a regular file or a folder")
    p = PurePosixPath(name)
    if not name or p.is_absolute() or "\\" in name or "\0" in name:
        raise CheckpointFilesError(f"member {name!r} has an absolute or odd name")
    parts = p.parts
    if not parts or any(part in ("..", ".") or part == "" for part in parts):
        raise CheckpointFilesError(f"member {name!r} leaves the folder (..)")
    key = p.as_posix()
    if key in seen and not m.isdir():
        raise CheckpointFilesError(f"member {name!r} appears twice")
    seen.add(key)
