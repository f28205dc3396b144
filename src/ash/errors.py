"""The one family of user-facing errors, and how every entry point reports them.

Every mistake a user can make (a spec, a file, a flag, a journal that is not theirs, a trainer
that cannot start) raises a subclass of ``UserError`` whose message names the file, key or flag
and what is wrong; ``guard`` prints it as one line and exits ``EXIT_USAGE``, with no traceback.
Anything else is a bug and keeps its traceback. A message may quote a peer (a scheduler's or
a worker's words): ``guard`` prints it through ``ash.printable``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A mistake in what the user gave (a file, a flag); printed without a traceback."""


class TrialStopped(Exception):
    """Raised by ``ctx.report`` once the scheduler stopped the running trial on its reports
    (``[asha] stop_on = "reports"``). A trainer need not catch it: the worker turns it into the
    trial's result, its last report (a trainer may catch it to clean up, and re-raise or
    return its metrics). ``step``: the step of the report that raised it."""

    def __init__(self, trial: int, step: float) -> None:
        super().__init__(f"trial {trial} was stopped by the scheduler (reported step {step:g})")
        self.trial = trial
        self.step = step


def guard(fn: Callable[[], int], prog: str = "ash", *, speaks: bool = True) -> int:
    """Run a command; a user's mistake prints one line and exits 2, Ctrl-C exits 130.
    ``speaks=False`` (an MPI rank other than 0, which every Ctrl-C reaches alike): Ctrl-C
    exits 130 without a word, so that rank 0's is said once."""
    try:
        return fn()
    except UserError as exc:
        from ash.printable import printable

        print(f"{prog}: error: {printable(exc, lines=True)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if speaks:
            print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
