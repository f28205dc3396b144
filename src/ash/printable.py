"""Strings from a peer made safe to print on a terminal: control characters become escapes.

A worker id, a device id, a trainer's error message or a metric name a worker reported comes
from a peer (a worker over gRPC; the scheduler, for ``ash status``). Printed raw, an ESC in it
starts a terminal escape sequence (clear the screen, set the window title, move the cursor and
rewrite what was printed); a CR or BS overwrites the line. ``printable`` shows every C0 and C1
control character and DEL as a visible escape (``\\x1b``), so the operator reads what was sent,
and whatever prints a string it did not write itself passes it through here first.
"""

from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # keeps tab and newline


def _escape(m: re.Match[str]) -> str:
    return f"\\x{ord(m.group()):02x}"


def printable(text: object, *, lines: bool = False) -> str:
    """``str(text)`` with C0/C1 control characters and DEL as ``\\xNN``; ``lines`` keeps tabs
    and newlines (a traceback, a message of several lines)."""
    return (_CONTROL_BUT_LINES if lines else _CONTROL).sub(_escape, str(text))
