"""Callbacks: what a study tells tracking tools (MLflow, TensorBoard, your own).

The hook is on the scheduler side: the Driver calls its observers under its lock for every new
trial and every recorded result, whatever transport brought the result. ``Callbacks`` only
queues them there; a thread of its own calls the user's callbacks in event order, so a slow
tracking store never holds the study (or the Driver's lock) up. Intermediate reports of a trial
context reach the callbacks as ``on_report`` when the Driver records them. Every trial is
started (``on_trial_start``) before anything else of it is told, also a trial that began before
a resume from a journal and is promoted after it (its MLflow run is found again by its tags).

Faults: ``setup`` runs in the caller's thread before the first job, so a tracking store that
cannot be opened stops the study before anything trains (CallbackError, exit 2). A callback
that raises later is reported once on stderr, with its class and the error, and dropped: the
study and its results do not depend on tracking. ``close`` drains the queue and ends every
callback (``on_study_end``) with the results document.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ash.errors import UserError

if TYPE_CHECKING:
    from ash.scheduler.core import Job
    from ash.scheduler.driver import Driver
    from ash.spec import StudySpec


class CallbackError(UserError):
    """A callback cannot start (its library is missing, its store cannot be opened)."""


@dataclass(frozen=True)
class Study:
    """What a callback learns of the study at ``setup``."""

    name: str
    metric: str
    mode: str
    algorithm: str
    space: Mapping[str, Any]
    max_resource: float


@dataclass(frozen=True)
class Result:
    """A recorded rung result (``value`` None: failed, with ``error``)."""

    trial: int
    rung: int
    resource: float
    value: float | None
    metrics: Mapping[str, Any]
    error: str | None
    config: Mapping[str, Any] = field(default_factory=dict)


class Callback:
    """Override what you need; every method is called from one thread, in event order."""

    def setup(self, study: Study) -> None:
        """Before the first job (raise to refuse the study)."""

    def on_trial_start(self, trial: int, config: Mapping[str, Any]) -> None:
        """A new trial's first job was handed out."""

    def on_report(self, trial: int, step: float, metrics: Mapping[str, Any]) -> None:
        """A trial reported intermediate metrics (``ctx.report(step, **metrics)``)."""

    def on_result(self, result: Result) -> None:
        """A job's result at a rung was recorded."""

    def on_study_end(self, doc: Mapping[str, Any] | None) -> None:
        """The study ended (``doc``: the results document; None if it broke off)."""


def study_of(spec: StudySpec) -> Study:
    return Study(
        spec.name,
        spec.metric,
        spec.mode,
        spec.algorithm,
        dict(spec.raw.get("space", {})),
        spec.schedule.max_resource,
    )


class Callbacks:
    """The user's callbacks, fed from a Driver's observers through a queue and one thread."""

    def __init__(self, callbacks: Sequence[Callback] | Callback, spec: StudySpec) -> None:
        if isinstance(callbacks, Callback):  # one, not in a list: taken as it is meant
            callbacks = [callbacks]
        elif isinstance(callbacks, str | bytes) or not isinstance(callbacks, Iterable):
            raise CallbackError(
                f"callbacks: {callbacks!r} is not a list of ash.integrations.Callback objects"
            )
        callbacks = list(callbacks)  # once: a generator is read a single time
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise CallbackError(
                    f"callbacks: {cb!r} is not an ash.integrations.Callback "
                    "(subclass it and override on_result, on_report, ...)"
                )
        self.callbacks = list(callbacks)
        self.spec = spec
        self._q: queue.SimpleQueue[tuple[str, tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._told: set[int] = set()  # trials whose on_trial_start was queued

    def attach(self, driver: Driver) -> None:
        """Set every callback up (CallbackError if one cannot start), then observe ``driver``."""
        study = study_of(self.spec)
        for cb in self.callbacks:
            try:
                cb.setup(study)
            except CallbackError:
                raise
            except Exception as exc:
                raise CallbackError(
                    f"callbacks: {type(cb).__name__} cannot start: {type(exc).__name__}: {exc}"
                ) from None
        driver.observers.append(self._observe)
        self._thread = threading.Thread(target=self._run, name="ash-callbacks", daemon=True)
        self._thread.start()

    def _observe(self, kind: str, job: Job, fields: Mapping[str, Any]) -> None:
        # under the Driver's lock: copy what is needed and queue it, nothing more
        if job.trial not in self._told:  # a new trial, or one started before a resume
            self._told.add(job.trial)
            self._q.put(("trial", (job.trial, dict(job.config))))
        elif kind == "report":
            for step, metrics in fields["reports"]:
                self._q.put(("report", (job.trial, step, dict(metrics))))
        elif kind == "result":
            result = Result(
                job.trial,
                job.rung,
                job.stop,
                fields["value"],
                dict(fields["metrics"]),
                fields["error"],
                dict(job.config),
            )
            self._q.put(("result", (result,)))

    def _run(self) -> None:
        while (item := self._q.get()) is not None:
            kind, args = item
            for cb in list(self.callbacks):
                try:
                    if kind == "trial":
                        cb.on_trial_start(*args)
                    elif kind == "report":
                        cb.on_report(*args)
                    else:
                        cb.on_result(*args)
                except Exception:
                    self._drop(cb, f"on_{kind}")

    def _drop(self, cb: Callback, where: str) -> None:
        last = traceback.format_exc().strip().splitlines()[-1]
        print(
            f"ash: callback {type(cb).__name__}.{where} failed ({last}); "
            "it gets no more events, the study goes on",
            file=sys.stderr,
            flush=True,
        )
        self.callbacks.remove(cb)

    def close(self, doc: Mapping[str, Any] | None) -> None:
        """Deliver every queued event, then end each callback with the results document."""
        if self._thread is None:
            return  # never attached (or closed already)
        self._q.put(None)
        self._thread.join()
        self._thread = None
        for cb in list(self.callbacks):
            try:
                cb.on_study_end(doc)
            except Exception:
                self._drop(cb, "on_study_end")


def numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics a tracking tool can plot: finite numbers (booleans and strings left out)."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = float(v)
    return out


def missing(callback: str, module: str, extra: str) -> CallbackError:
    return CallbackError(
        f"callbacks: {callback} needs the {module!r} package: pip install 'ash-hpo[{extra}]'"
    )
