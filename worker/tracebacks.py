"""A failed trial's traceback, bounded: what a result's ``error`` carries on every transport.

A trainer that raises fails its result with ``trainer raised Type: message`` on the first line
and, below it, the traceback of the user's code (ash's own frames, the call into the trainer,
left out), so ``ash tune`` can print the file and line of a systematic mistake and results.json
keeps where every failure happened. The text travels as the result's error string (a pipe, a
gRPC ``Result.error``, an MPI message) and so obeys ``MAX_ERROR_CHARS``: the first line is
clipped to a quarter of it and the innermost frames are kept, the outer ones dropped with a
note, so the whole never exceeds it.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import ash
from ash.link.metrics import MAX_ERROR_CHARS

# ash's own folders (an editable install has worker/ apart from src/ash/)
_ASH_DIRS = tuple(
    str(p) + os.sep for p in (Path(__file__).resolve().parent, Path(ash.__file__).resolve().parent)
)


def with_traceback(head: str, exc: BaseException, limit: int = MAX_ERROR_CHARS) -> str:
    """``head`` (one line) followed by ``exc``'s traceback within ``limit`` characters."""
    head = _clip(head.splitlines()[0] if head else type(exc).__name__, limit // 4)
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_ASH_DIRS)
    ]
    if not frames:
        return head
    lines = traceback.format_list(frames)
    tail = traceback.format_exception_only(type(exc), exc)[-1].rstrip("\n")
    tail = _clip(tail, limit // 4)
    title = "Traceback (most recent call last):"
    room = limit - len(head) - len(title) - len(tail) - 60
    kept: list[str] = []
    for line in reversed(lines):  # innermost first: where it failed matters most
        if len(line) > room:
            break
        kept.append(line)
        room -= len(line)
    dropped = len(lines) - len(kept)
    note = [f"  ... {dropped} outer frames left out\n"] if dropped else []
    body = "".join(note + kept[::-1]).rstrip("\n")
    return f"{head}\n{title}\n{body}\n{tail}"


def _clip(text: str, n: int) -> str:
    """``text`` cut to ``n`` characters, with a note of how much was cut (as ``clip_error``)."""
    return text if len(text) <= n else f"{text[:n]}... ({len(text) - n} more characters)"
