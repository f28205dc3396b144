"""A disk that fills up under the journal, for tests that cannot mount a tiny tmpfs (no root).

``install(limit)`` makes the journal module's ``open`` of a ``*.jsonl`` file return a file whose
bytes past ``limit`` do not fit: a write that crosses it writes what fits and the next one fails
with ENOSPC, as the kernel does on a full file system. The file is built as ``open`` builds it
(a raw file, in a BufferedWriter unless ``buffering=0``), so buffered data that cannot be written
fails again when it is flushed or closed, exactly like a real full disk.

Run a CLI under it: ``python -c "import fulldisk; fulldisk.run(LIMIT, 'ash')" tune ...``.
"""

from __future__ import annotations

import errno
import io
import os
import sys
from typing import Any


class FillingFile(io.FileIO):
    """A file on a disk with ``limit`` bytes for it."""

    limit = 0

    def write(self, b: Any) -> int:
        room = self.limit - os.fstat(self.fileno()).st_size
        if room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        data = memoryview(b).cast("B")
        return super().write(data[:room])


def install(limit: int) -> None:
    from ash.scheduler import journal

    def fake_open(path: Any, mode: str = "r", buffering: int = -1, **kw: Any) -> Any:
        if not str(path).endswith(".jsonl") or "b" not in mode:
            return open(path, mode, buffering, **kw)
        raw = FillingFile(path, mode.replace("b", ""))
        raw.limit = limit
        return raw if buffering == 0 else io.BufferedWriter(raw)

    journal.open = fake_open  # type: ignore[attr-defined]


def run(limit: int, prog: str) -> None:
    """Run ``ash`` or ``ash-scheduler`` (``sys.argv[1:]``) with the journal's disk ``limit``."""
    install(limit)
    from ash import cli

    main = cli.main if prog == "ash" else cli.scheduler_main
    sys.exit(main(sys.argv[1:]))
