"""The embedded transport (``ash tune``, ``ash.tune()``): the study loop over local slots.

Everything runs on this machine: the driver (and its journal) in this process, the trainers in
N slot processes fed by ``ash.worker.feeder`` through ``SlotBackend``. Threads: with a fixed split
every job gets K threads; with ``--threads auto`` a Planner shares the cores out per job (its
calibration runs before the slots start, so that nothing else runs meanwhile; a study whose
shapes all stay on one thread skips per-job planning). Ctrl-C stops the study cleanly: what was
done is written and returned, marked ``"interrupted": true`` (a second Ctrl-C or SIGTERM while
it is written waits for the writing); a journal or checkpoint store that fails stops it with
``"error"`` (what was done is written; the same journal resumes it). An ``--out`` that cannot
be written at the end is one line (``ResultsNotWritten``); the callbacks are ended whatever
happens.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ash.cores import available_cores, resolve_threads
from ash.lifeline import interrupts_held, sigterm_as_interrupt
from ash.scheduler import loop
from ash.scheduler.driver import open_study
from ash.scheduler.journal import JournalError
from ash.spec import StudySpec

if TYPE_CHECKING:
    from ash.integrations import Callback


@sigterm_as_interrupt  # a batch system's SIGTERM stops the study as Ctrl-C does
def run_inproc(
    spec: StudySpec,
    *,
    workers: int | None = None,
    threads: int | str = "auto",
    out: str | Path | None = None,
    trace: str | Path | None = None,
    journal: str | Path | None = None,
    progress: bool = True,
    trainer: Callable[..., Any] | None = None,
    callbacks: Sequence[Callback] = (),
    devices: list[str] | None = None,
) -> dict[str, Any]:
    """Run ``spec`` on local worker processes; return the results document. With ``journal``
    the study is crash-safe and, started again on the same journal, resumes where it stood.
    With ``devices``: one worker per accelerator id (ash.worker.slots sets its environment).
    ``callbacks`` (ash.integrations) hear of every trial, report and result of this run."""
    from ash.preflight import preflight
    from ash.progress import Progress, from_driver
    from ash.report import write_report
    from ash.scheduler.outcome import write_outcome
    from ash.transports.local import SlotBackend
    from ash.worker.slots import Slots

    preflight(
        spec, out=out, trace=trace, trainer=trainer, journal=journal
    )  # every problem, in one error
    n = len(devices) if devices else workers or available_cores()
    k = resolve_threads(threads, n)
    planner = None
    title = f"{spec.name}: {spec.algorithm}, {n} workers x {k} threads"
    shown = f", devices {','.join(devices)}" if devices else ""
    if threads == "auto":  # threads are planned per job within the cores
        from ash.worker.planner import planner_for

        def log(line: str) -> None:
            print(f"ash: {line}", file=sys.stderr, flush=True)

        planner = planner_for(
            spec, n, custom_trainer=trainer is not None, log=log if progress else None
        )
        title = f"{spec.name}: {spec.algorithm}, {n} workers, threads auto ({planner.cores} cores)"
    title += shown
    hooks = None
    if callbacks:
        from ash.integrations import Callbacks

        hooks = Callbacks(callbacks, spec)  # checked before the journal is taken
    opened = open_study(spec, journal=journal, trace=trace, slots=n)
    driver = opened.driver
    if opened.resumed_records:
        print(
            f"ash: resumed {spec.name} from {journal}: {opened.resumed_records} records, "
            f"{opened.lost_on_resume} in-flight jobs lost (re-issued)",
            file=sys.stderr,
            flush=True,
        )
    interrupted = False
    backend = None
    doc: dict[str, Any] | None = None
    try:
        try:
            if hooks is not None:
                hooks.attach(driver)  # after a resume's replay: only this run's events are told
            if planner is not None:
                planner.warm()  # before the slots start: nothing else runs yet
                if planner.serial():  # every shape on one thread: nothing to plan per job
                    planner, k = None, 1
            slots = Slots(spec, n, k, trainer=trainer, devices=devices, verdicts=True)
            backend = SlotBackend(driver, slots, planner)
            with Progress(lambda: from_driver(driver), title, enabled=progress) as view:
                loop.run(driver, backend, tick=view.tick)
        except KeyboardInterrupt:
            interrupted = True
        except JournalError:
            if driver.broken is None:
                raise
            print(f"ash: error: {driver.broken}; stopped", file=sys.stderr, flush=True)
        except BaseException:
            with interrupts_held():
                if backend is not None:
                    backend.wind_down()
                driver.close()
            raise
        with interrupts_held() as held:  # a Ctrl-C now waits until the results are written
            if backend is not None:
                backend.wind_down()  # the slot processes exit while the results are written
            driver.close()
            doc = write_outcome(driver, out, interrupted=interrupted, report=write_report)
    except BaseException:  # broke off, or the results could not be written (ResultsNotWritten)
        if hooks is not None:  # end the callbacks all the same
            hooks.close(None)
        raise
    finally:
        try:
            if backend is not None:
                backend.close()  # a second Ctrl-C here kills the slots and goes on
        finally:
            if hooks is not None and doc is not None:  # the results were written
                hooks.close(doc)
    if held and not interrupted:  # a Ctrl-C while the results of a finished study were written
        raise KeyboardInterrupt
    return doc
