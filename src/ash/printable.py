"""Strings from a peer made safe to print on a terminal: control characters become escapes.

A worker id, a device id, a trainer's error message or a metric name a worker reported comes
from a peer (a worker over gRPC; the scheduler, for ``ash status``). Printed raw, an ESC in it
starts a terminal escape sequence (clear the screen, set the window title, move the cursor and
rewrite what was printed); a CR or BS overwrites the line; a Unicode bidirectional control
(U+202A..U+202E, U+2066..U+2069, U+200E, U+200F, U+061C) reorders what the terminal shows, so
that the text read is not the text sent ("Trojan source"); an invisible format character
(a zero-width space, a soft hyphen, a tag character) or a line separator makes ``w0\u200b``
print as ``w0``, one worker passing for another. ``printable`` shows every C0 and C1 control
character, DEL, and every character of Unicode's format, line- and paragraph-separator and
surrogate categories (Cf, Zl, Zp, Cs; the bidi controls are Cf) as a visible escape
(``\\x1b``, ``\\u202e``), so the operator reads what was sent; letters of any script are left
alone. Whatever prints a string it did not write itself passes it through here first.
"""

from __future__ import annotations

import re
import unicodedata

_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # marks, embeddings, overrides, isolates
_CONTROL = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_CONTROL_BUT_LINES = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")  # keeps tab, newline
_INVISIBLE = frozenset({"Cf", "Zl", "Zp", "Cs"})  # format, line/paragraph separator, surrogate


def _escaped(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _escape(m: re.Match[str]) -> str:
    return _escaped(m.group())


def printable(text: object, *, lines: bool = False) -> str:
    """``str(text)`` with C0/C1 control characters and DEL as ``\\xNN``, invisible format and
    separator characters (bidi controls included) and lone surrogates as ``\\uNNNN``;
    ``lines`` keeps tabs and newlines (a traceback, a message of several lines)."""
    out = (_CONTROL_BUT_LINES if lines else _CONTROL).sub(_escape, str(text))
    if out.isascii():
        return out
    return "".join(_escaped(c) if unicodedata.category(c) in _INVISIBLE else c for c in out)
