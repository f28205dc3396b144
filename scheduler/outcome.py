"""The end of every study, whatever ran it (embedded, gRPC, MPI): the results document (the
results with ``interrupted``, the first errors (each with its traceback, when the trainer raised)
and, when the study stopped on one, ``error``: a full disk, or the systematic error of fail fast
with its ``traceback``)
and the files of ``--out``: results.json and trials.csv here, the HTML report by the
``report`` the caller passes (the scheduler does no presentation). An ``--out`` that cannot be
written at the end (a file put in place of its folder, a full disk, a permission taken away)
is ``ResultsNotWritten``: one line naming the folder, the OS's reason and whether a journal
keeps the study, instead of a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ash.errors import UserError
from ash.scheduler.driver import Driver

Report = Callable[[dict[str, Any], Path], object]  # (results document, --out folder)


class ResultsNotWritten(UserError):
    """``--out`` could not be written when the study ended; ``doc`` is the results document
    that was not (all of it, in memory)."""

    def __init__(self, message: str, doc: dict[str, Any]) -> None:
        super().__init__(message)
        self.doc = doc


def outcome(driver: Driver, *, interrupted: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the results document, the fields it adds to the results)."""
    extra: dict[str, Any] = {
        "interrupted": interrupted,
        "errors": [_error(t, msg) for t, msg in driver.errors[:100]],
    }
    if driver.spec.raw:
        extra["spec"] = driver.spec.raw  # what ran: ash.load(...).spec
    if driver.broken is not None:
        extra["error"] = driver.broken  # a full disk: what was done is written; resume later
    elif driver.stopped is not None:  # fail fast: a systematic error
        extra["error"] = driver.stop_reason()
        below = driver.stopped[1].partition("\n")[2]
        if below:
            extra["traceback"] = below
    return {**driver.results.to_json(), **extra}, extra


def _error(trial: int, text: str) -> dict[str, Any]:
    first, _, below = text.partition("\n")
    out: dict[str, Any] = {"trial": trial, "error": first}
    if below:
        out["traceback"] = below
    return out


def write_outcome(
    driver: Driver,
    out: str | Path | None,
    *,
    interrupted: bool,
    report: Report | None = None,
) -> dict[str, Any]:
    """The results document, written into ``out`` (when given) with its report; an OSError
    on the way is a ``ResultsNotWritten``."""
    doc, extra = outcome(driver, interrupted=interrupted)
    if out is not None:
        try:
            folder = driver.results.write(out, extra)
            if report is not None:
                report(doc, folder)
        except OSError as exc:
            raise ResultsNotWritten(_not_written(driver, out, exc), doc) from None
    return doc


def _not_written(driver: Driver, out: str | Path, exc: OSError) -> str:
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        why = "it exists and is not a directory"
    else:
        why = exc.strerror or str(exc)
        if exc.filename is not None:
            why += f": {exc.filename}"
    text = f"--out {out}: the results could not be written ({why})"
    if driver.journal is not None:
        return (
            f"{text}; the journal {driver.journal.path} keeps the study: the same command with "
            "a writable --out writes them (and resumes what is left)"
        )
    return f"{text}; there is no --journal to write them from later"
