"""The end of every study, whatever ran it (embedded, gRPC, MPI): the results document (the
results with ``interrupted``, the first errors and, when the study stopped on one, ``error``)
and the files of ``--out``: results.json and trials.csv here, the HTML report by the
``report`` the caller passes (the scheduler does no presentation)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ash.scheduler.driver import Driver

Report = Callable[[dict[str, Any], Path], object]  # (results document, --out folder)


def outcome(driver: Driver, *, interrupted: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the results document, the fields it adds to the results)."""
    extra: dict[str, Any] = {
        "interrupted": interrupted,
        "errors": [{"trial": t, "error": msg} for t, msg in driver.errors[:100]],
    }
    if driver.broken is not None:
        extra["error"] = driver.broken  # a full disk: what was done is written; resume later
    return {**driver.results.to_json(), **extra}, extra


def write_outcome(
    driver: Driver,
    out: str | Path | None,
    *,
    interrupted: bool,
    report: Report | None = None,
) -> dict[str, Any]:
    """The results document, written into ``out`` (when given) with its report."""
    doc, extra = outcome(driver, interrupted=interrupted)
    if out is not None:
        folder = driver.results.write(out, extra)
        if report is not None:
            report(doc, folder)
    return doc
