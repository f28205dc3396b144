"""The end of a run as the user reads it: the same for ``ash tune`` and ``ash.tune()``.

``print_summary`` prints the best trials, how many failed and the first error, and which files
were written; ``ending`` prints why a study ended other than normally (to stderr: a full disk, a
fail-fast stop with its traceback, Ctrl-C, no result at all) and returns the exit code
``ash tune`` ends with. A fail-fast stop's traceback is printed once: by whoever prints it first
(the gRPC transport's own scheduler already has, so ``ash tune --transport grpc`` does not).
Errors come from workers: they are printed through ``ash.printable``, as text, never markup.
"""

from __future__ import annotations

import sys
from typing import Any

from ash.errors import EXIT_INTERRUPTED, EXIT_USAGE
from ash.printable import printable


def print_summary(doc: dict[str, Any], out: object = None) -> None:
    """The best trials, the failures and the files of ``out`` on stdout."""
    from rich.console import Console
    from rich.text import Text

    from ash.progress import best_table

    console = Console()
    console.print(best_table(doc))
    failed = sum(1 for t in doc["trials"] if t["status"] == "failed")
    if failed:
        errors = doc.get("errors") or []
        first = errors[0]["error"] if errors else "see results.json"
        console.print(Text(f"{failed} trials failed; first error: {printable(first)}", "yellow"))
    if out:
        console.print(Text(f"wrote {out}/results.json, trials.csv, report.html"))


RESUME_CLI = "the same command with the same --journal resumes the study once it is fixed"


def stop_message(
    doc: dict[str, Any], *, traceback: bool = True, resume: str = RESUME_CLI
) -> str | None:
    """Why the study stopped on an error (with the traceback of a fail-fast stop), or None;
    ``resume`` says how to go on (the CLI's words by default)."""
    if not doc.get("error"):
        return None
    why = str(doc["error"])
    text = f"{why if why.startswith('stopped') else f'stopped on an error: {why}'}; {resume}"
    if traceback and doc.get("traceback"):
        text += "\n" + str(doc["traceback"])
    return text


def ending(doc: dict[str, Any], *, traceback: bool = True) -> int:
    """Print why the study ended abnormally on stderr; the exit code of ``ash tune``."""
    message = stop_message(doc, traceback=traceback)
    if message is not None:
        print(f"ash: {printable(message, lines=True)}", file=sys.stderr)
        return 1
    if doc["interrupted"]:
        print("ash: interrupted; what was done is written", file=sys.stderr)
        return EXIT_INTERRUPTED
    if doc["best"] is None:
        print("ash: no trial produced a result", file=sys.stderr)
        return EXIT_USAGE
    return 0
