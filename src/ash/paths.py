"""Checks, at start-up, that the files a run writes at its end can be written.

A study may run for hours; an ``--out`` or ``--trace`` that cannot be written must fail before
it starts, with the flag and the reason, not with a traceback after the work is done. The checks
leave nothing behind but the ``--out`` directory (which the run creates anyway): writability is
probed with a temporary file that is removed at once, and a trace file that does not exist yet
is not created.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ash.errors import UserError


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _probe(folder: Path, flag: str, path: str | Path) -> None:
    """Create and remove a temporary file in ``folder``; a UserError if that fails."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".ash-write-check-")
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write in {folder} ({_why(exc)})") from None
    os.close(fd)
    os.unlink(name)


def check_out_dir(path: str | Path | None, flag: str = "--out") -> None:
    """``path`` is, or can be created as, a directory this process can write in (it is
    created now)."""
    if path is None:
        return
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {path}: exists and is not a directory")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot create the directory ({_why(exc)})") from None
    _probe(folder, flag, path)


def check_trace_file(path: str | Path | None, flag: str = "--trace") -> None:
    """``path`` is a file this process can append to, or can be created as one (it is not
    created now)."""
    if path is None:
        return
    file = Path(path)
    if file.is_dir():
        raise UserError(f"{flag} {path}: is a directory, not a file")
    if file.exists():
        try:
            with open(file, "a", encoding="utf-8"):
                pass  # opening to append writes nothing
        except OSError as exc:
            raise UserError(f"{flag} {path}: cannot be written ({_why(exc)})") from None
        return
    folder = file.parent
    if not folder.is_dir():
        what = "is not a directory" if folder.exists() else "does not exist"
        raise UserError(f"{flag} {path}: its folder {folder} {what}")
    _probe(folder, flag, path)


OUT_FILES = ("results.json", "trials.csv", "report.html", "curves.png", "rungs.png")


def check_trace_target(
    trace: str | Path | None,
    *,
    journal: str | Path | None = None,
    out: str | Path | None = None,
    spec: str | Path | None = None,
    flag: str = "--trace",
) -> None:
    """``trace`` is none of the study's other files: the journal (or its lock), the spec, or a
    file ``--out`` writes (each would be garbled by trace lines, or clobber them)."""
    if trace is None:
        return
    target = Path(trace).resolve()
    others: list[tuple[str, Path]] = []
    if journal is not None:
        others += [("--journal", Path(journal)), ("--journal's lock", Path(f"{journal}.lock"))]
    if spec is not None:
        others.append(("the spec", Path(spec)))
    if out is not None:
        others += [(f"--out's {name}", Path(out) / name) for name in OUT_FILES]
    for what, path in others:
        if path.resolve() == target:
            raise UserError(f"{flag} {trace}: is {what} ({path}); choose another file")
