"""Signals between a foreground ``ash`` command and the processes it starts.

A batch system stops a job with SIGTERM (Slurm's scancel and time limit, ``docker stop``,
systemd, ``timeout``), a user with Ctrl-C, a supervisor with ``kill -INT PID``: all three must
stop a study the same way, and never leave processes behind that go on with it. This module
owns the three pieces of that:

- ``sigterm_as_interrupt``: SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so the embedded
  transport writes what was done (``"interrupted": true``) instead of dying with exit 143;
  ``interrupts_held``: while it writes that, a second Ctrl-C or SIGTERM waits instead of
  breaking off the writing;
- ``Forwarder``: ``ash tune --transport grpc`` passes SIGINT and SIGTERM on to its scheduler
  and workers (which drain as documented for the daemons) instead of dying alone;
- ``follow_parent``: a daemon started by ``ash tune`` gets SIGTERM when that process dies,
  even by SIGKILL (Linux: ``prctl(PR_SET_PDEATHSIG)``; elsewhere a thread watching the
  parent's pid), so it drains and exits instead of finishing the study as an orphan that holds
  the journal.

Handlers are installed only from the main thread, and a SIGTERM handler only over the default
one: a program calling ``ash.tune`` with its own SIGTERM handler keeps it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

PARENT_ENV = "ASH_PARENT_PID"  # set for a daemon that must die with the ash that started it
PR_SET_PDEATHSIG = 1


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class _SigtermRaises:
    """The SIGTERM handler of ``sigterm_as_interrupt``: the first raises KeyboardInterrupt."""

    def __init__(self) -> None:
        self.fired = False

    def __call__(self, signum: int, frame: Any) -> None:
        if not self.fired:  # once: a second SIGTERM must not break off the writing of the results
            self.fired = True
            raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    if not _main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    previous = signal.signal(signal.SIGTERM, _SigtermRaises())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def sigterm_as_interrupt(fn: F) -> F:
    """Decorate ``fn`` so that while it runs SIGTERM raises KeyboardInterrupt as Ctrl-C does
    (once; later ones are ignored while it writes what was done)."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with _sigterm_raises():
            return fn(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


#: Interrupts that give up the writing ``interrupts_held`` protects.
ABANDON = 3


@contextlib.contextmanager
def interrupts_held() -> Iterator[list[int]]:
    """While active (in the main thread), Ctrl-C (SIGINT) and a SIGTERM that
    ``sigterm_as_interrupt`` turns into KeyboardInterrupt raise nothing: each is noted in the
    list yielded, for the caller to act on once done (a study's results are written whole,
    whatever the keys pressed meanwhile). The first one held says so; the ``ABANDON``-th
    raises KeyboardInterrupt all the same (a write that hangs on a dead network file system
    can still be given up). A program's own handlers are left as they are."""
    noted: list[int] = []
    if not _main_thread():
        yield noted
        return
    held: dict[int, Any] = {}

    def note(signum: int, frame: Any) -> None:
        noted.append(signum)
        previous = held.get(signum)
        if isinstance(previous, _SigtermRaises):
            previous.fired = True  # the SIGTERM that stops the study was this one
        if len(noted) == 1:  # os.write: a print here could re-enter one in progress
            more = ABANDON - 1
            os.write(2, f"ash: writing the results; {more} more interrupts abandon them\n".encode())
        elif len(noted) >= ABANDON:
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(sig)
        if current is signal.default_int_handler or isinstance(current, _SigtermRaises):
            held[sig] = signal.signal(sig, note)
    try:
        yield noted
    finally:
        for number, previous in held.items():
            signal.signal(number, previous)


class Forwarder:
    """While active, SIGINT and SIGTERM to this process are passed on to ``children()`` (the
    same signal) instead of stopping it; ``signalled`` is the first one received (or None).
    The caller keeps waiting for its children, which stop as they do on that signal."""

    def __init__(self, children: Callable[[], list[subprocess.Popen[Any]]]) -> None:
        self.children = children
        self.signalled: int | None = None
        self._previous: dict[int, Any] = {}

    def forward(self, signum: int) -> None:
        for proc in self.children():
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.send_signal(signum)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signalled is None:
            self.signalled = signum
        self.forward(signum)

    def __enter__(self) -> Forwarder:
        if _main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()


def child_env() -> dict[str, str]:
    """The environment of a daemon that must stop when this process dies (``follow_parent``)."""
    return {**os.environ, PARENT_ENV: str(os.getpid())}


def follow_parent() -> None:
    """In a daemon started by ``ash tune``: get SIGTERM once the process named by
    ``$ASH_PARENT_PID`` is gone (also when it died before this ran). Nothing without it."""
    text = os.environ.pop(PARENT_ENV, "")
    if not text.isdigit():
        return
    parent = int(text)
    armed = False
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
    if os.getppid() != parent:  # died before the death signal was armed
        os.kill(os.getpid(), signal.SIGTERM)
        return
    if armed:
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="ash-follow-parent", daemon=True).start()
