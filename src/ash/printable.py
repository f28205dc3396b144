"""Strings from a peer made safe to print on a terminal: control characters become escapes.

A worker id, a device id, a trainer's error message or a metric name a worker reported comes
from a peer (a worker over gRPC; the scheduler, for ``ash status``). Printed raw, an ESC in it
starts a terminal escape sequence (clear the screen, set the window title, move the cursor and
rewrite what was printed); a CR or BS overwrites the line; a Unicode bidirectional control
(U+202A..U+202E, U+2066..U+2069, U+200E, U+200F, U+061C) reorders what the terminal shows, so
that the text read is not the text sent ("Trojan source"). ``printable`` shows every C0 and C1
control character, DEL and bidi control as a visible escape (``\\x1b``, ``\\u202e``), so the
operator reads what was sent, and whatever prints a string it did not write itself passes it
through here first.
"""

from __future__ import annotations

import re

_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # marks, embeddings, overrides, isolates
_CONTROL = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_CONTROL_BUT_LINES = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")  # keeps tab, newline


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, lines: bool = False) -> str:
    """``str(text)`` with C0/C1 control characters and DEL as ``\\xNN``, bidi controls as
    ``\\uNNNN``; ``lines`` keeps tabs and newlines (a traceback, a message of several
    lines)."""
    return (_CONTROL_BUT_LINES if lines else _CONTROL).sub(_escape, str(text))
