"""The Python API: ``tune(...)`` and ``load(...)`` from a notebook or a script.

``tune(...)`` takes a spec (a path or a StudySpec) or a plain function plus a search space, runs
the study on local worker processes (``ash.transports.inproc``), prints the same end summary
``ash tune`` prints (unless ``quiet``) and returns the results document (the same dict that
results.json holds). Everything the user gave is checked before a worker starts, every problem
in one error: the spec, the dataset or the trainer's entrypoint and its signature, ``enqueue``d
configs against the space. ``journal=`` makes the study crash-safe and resumes it, as
``ash tune --journal`` does (with a raised ``max_trials``/``time_limit_s`` it continues).
Ctrl-C stops the study cleanly; what was done is still written and returned, marked
``"interrupted": true``. A study that fails fast (its first results all failed with one error)
raises ``StudyStopped`` with that error and its traceback; ``.results`` holds the document.
``load(...)`` (ash.study) reads a finished, running or journaled study back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ash.errors import UserError
from ash.spec import StudySpec, load_spec, parse_spec
from ash.transports.inproc import run_inproc

if TYPE_CHECKING:
    from ash.integrations import Callback


class StudyStopped(UserError, RuntimeError):
    """The study stopped on an error (fail fast, a full disk); ``results`` is what was done."""

    def __init__(self, message: str, results: dict[str, Any]) -> None:
        super().__init__(message)
        self.results = results


class ArgumentError(UserError, ValueError):
    """A keyword of ``ash.tune`` that cannot be used; the message names it."""


def _check_arguments(workers: object, threads: object, enqueue: object) -> None:
    """``workers``, ``threads`` and ``enqueue`` as the CLI and the spec would take them."""
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise ArgumentError(
            f"workers: must be an integer >= 1 (or None: one per core), got {workers!r}"
        )
    if threads != "auto" and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ArgumentError(f"threads: must be 'auto' or an integer >= 1, got {threads!r}")
    if enqueue is not None and (
        isinstance(enqueue, str | bytes | Mapping)
        or not isinstance(enqueue, Sequence)
        or not all(isinstance(c, Mapping) for c in enqueue)
    ):
        raise ArgumentError(
            f"enqueue: must be a list of configs (dicts), got {type(enqueue).__name__}"
            + ("" if not isinstance(enqueue, Mapping) else ": wrap one config in a list")
        )


def tune(
    target: str | Path | StudySpec | Callable[..., Any],
    *,
    space: Mapping[str, Any] | None = None,
    metric: str = "loss",
    mode: str = "min",
    algorithm: str = "asha",
    min_resource: float = 1,
    max_resource: float = 27,
    reduction_factor: float = 3,
    max_trials: int | None = 50,
    time_limit_s: float | None = None,
    seed: int = 0,
    workers: int | None = None,
    threads: int | str = "auto",
    out: str | Path | None = None,
    trace: str | Path | None = None,
    journal: str | Path | None = None,
    enqueue: Sequence[Mapping[str, Any]] | None = None,
    fail_fast: bool = True,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    devices: str | list[str] | list[int] | None = None,
    quiet: bool = False,
    verbose: bool = True,
    sampler: str | Any = None,
    stop_on: str | None = None,
) -> dict[str, Any]:
    """Tune from a notebook or a script.

    ``target`` is a spec file, a StudySpec, or a trainer function
    ``fn(config, start, stop, state) -> (metrics, state)`` or ``fn(config, ctx) -> metrics``
    (docs/python.md), in which case ``space`` (the ``[space]`` table as a dict) and the other
    keywords make the spec. ``devices`` (``"0,1"`` or ``[0, 1]``): one worker per accelerator
    (docs/devices.md). ``callbacks``: ash.integrations callbacks (MLflowCallback,
    TensorBoardCallback, your own).
    ``journal``: a file that makes the study crash-safe and resumes it when it holds one.
    ``enqueue``: configs to try first (warm start), checked against the space.
    ``fail_fast=False`` (a function; a spec says ``[study] fail_fast``): never stop early.
    ``quiet=True`` (or ``verbose=False``) prints nothing: no progress, no summary.
    ``sampler`` is a built-in sampler's name ("random", "tpe", "bohb"; for a function target,
    the spec's ``[study] sampler``) or an object with ``sample(rng, space, history)`` and
    ``observe(trial, config, resource, score)`` (``ash.scheduler.core.Sampler``).
    ``stop_on`` (``algorithm="asha-stopping"``, a function target): ``"reports"`` stops a
    trial on its ``ctx.report`` values at the rung milestones (one job per trial; the default
    for a ``(config, ctx)`` function), ``"results"`` decides on job results at rung boundaries.
    Returns the results document (``["best"]``, ``["trials"]``).
    """
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # a spawned slot runs its parent's main script again, before it is a slot: here only
        # when that script calls ash.tune outside a main guard (multiprocessing's own check)
        raise UserError(
            "ash.tune was called while a worker process was starting: Python's spawn start "
            "method runs the main script again in each worker, so a script must call "
            'ash.tune under `if __name__ == "__main__":`'
        )
    _check_arguments(workers, threads, enqueue)
    silent = quiet or not verbose
    device_ids = None
    if devices is not None:
        from ash.devices import parse_devices

        device_ids = parse_devices(devices, "devices")
    custom = None if sampler is None or isinstance(sampler, str) else sampler
    if callable(target) and not isinstance(target, str | Path | StudySpec):
        if space is None:
            raise ArgumentError(
                "tune(fn, ...) needs space={...}, e.g. {'lr': {'log_uniform': [1e-4, 1]}}"
            )
        asha: dict[str, Any] = {
            "min_resource": min_resource,
            "max_resource": max_resource,
            "reduction_factor": reduction_factor,
        }
        if max_trials is not None:
            asha["max_trials"] = max_trials
        if time_limit_s is not None:
            asha["time_limit_s"] = time_limit_s
        from ash.worker.trainers import FunctionTrainer, as_trainer

        made = as_trainer(target)  # a signature of neither form: TrainerError now, not in a worker
        if stop_on is None and algorithm == "asha-stopping":
            contextual = isinstance(made, FunctionTrainer) and made.contextual
            stop_on = "reports" if contextual else None
        if stop_on is not None:
            asha["stop_on"] = stop_on
        name = getattr(target, "__name__", "study")
        study: dict[str, Any] = {
            "name": name,
            "metric": metric,
            "mode": mode,
            "seed": seed,
            "algorithm": algorithm,
        }
        if enqueue:
            study["enqueue"] = [dict(c) for c in enqueue]
        if not fail_fast:
            study["fail_fast"] = False
        spec = parse_spec(
            {
                "study": {
                    **study,
                    **({"sampler": sampler} if isinstance(sampler, str) else {}),
                },
                "asha": asha,
                "trainer": {"type": "python", "entrypoint": f"{target.__module__}:{name}"},
                "space": dict(space),
            },
            source=f"tune({name})",
        )
        if custom is not None:
            spec = dataclasses.replace(spec, custom_sampler=custom)
        fn: Callable[..., Any] | None = target
    else:
        spec = target if isinstance(target, StudySpec) else load_spec(target)
        if enqueue:
            raw = {**spec.raw, "study": {**spec.raw.get("study", {}), "enqueue": list(enqueue)}}
            spec = parse_spec(raw, source=spec.source, base_dir=spec.base_dir)
        if isinstance(sampler, str):
            spec = _with_sampler(spec, sampler)
        elif custom is not None:
            spec = dataclasses.replace(spec, custom_sampler=custom)
        fn = None
    doc = run_inproc(
        spec,
        workers=workers,
        threads=threads,
        out=out,
        trace=trace,
        journal=journal,
        progress=progress and not silent,
        trainer=fn,
        callbacks=callbacks,
        devices=device_ids,
    )
    from ash.summary import print_summary, stop_message

    if not silent:
        print_summary(doc, out)
    resume = (
        f"the same call with journal={str(journal)!r} resumes the study once it is fixed"
        if journal is not None
        else "fix it and call again (with journal=PATH a study resumes where it stopped)"
    )
    message = stop_message(doc, resume=resume)
    if message is not None:
        raise StudyStopped(message, doc)
    return doc


def _with_sampler(spec: StudySpec, name: str) -> StudySpec:
    """``spec`` with ``[study] sampler = name``, validated (and in the raw spec, so a journal's
    digest tells studies with different samplers apart)."""
    raw = dict(spec.raw)
    raw["study"] = {**raw.get("study", {}), "sampler": name}
    return parse_spec(raw, source=spec.source, base_dir=spec.base_dir, default_name=spec.name)
