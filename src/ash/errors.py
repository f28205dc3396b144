"""The one family of user-facing errors, and how every entry point reports them.

Every mistake a user can make (a spec, a file, a flag, a journal that is not theirs, a trainer
that cannot start) raises a subclass of ``UserError`` whose message names the file, key or flag
and what is wrong; ``guard`` prints it as one line and exits ``EXIT_USAGE``, with no traceback.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A mistake in what the user gave (a file, a flag); printed without a traceback."""


def guard(fn: Callable[[], int], prog: str = "ash") -> int:
    """Run a command; a user's mistake prints one line and exits 2, Ctrl-C exits 130."""
    try:
        return fn()
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
