"""The Python API: ``tune(...)`` from a notebook or a script.

``tune(...)`` takes a spec (a path or a StudySpec) or a plain function plus a search space, runs
the study on local worker processes (``ash.transports.inproc``) and returns the results
document (the same dict that results.json holds). Everything the user gave is checked before a
worker starts: the spec, the dataset or the trainer's entrypoint. Ctrl-C stops the study
cleanly; what was done is still written and returned, marked ``"interrupted": true``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ash.spec import StudySpec, load_spec, parse_spec
from ash.transports.inproc import run_inproc


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
    progress: bool = True,
    sampler: str | Any = None,
) -> dict[str, Any]:
    """Tune from a notebook or a script.

    ``target`` is a spec file, a StudySpec, or a trainer function
    ``fn(config, start, stop, state) -> (metrics, state)`` (see the README), in which case
    ``space`` (the ``[space]`` table as a dict) and the other keywords make the spec.
    ``sampler`` is a built-in sampler's name ("random", "tpe", "bohb"; for a function target,
    the spec's ``[study] sampler``) or an object with ``sample(rng, space, history)`` and
    ``observe(trial, config, resource, score)`` (``ash.scheduler.core.Sampler``).
    Returns the results document (``["best"]``, ``["trials"]``).
    """
    custom = None if sampler is None or isinstance(sampler, str) else sampler
    if callable(target) and not isinstance(target, str | Path | StudySpec):
        if space is None:
            raise ValueError(
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
        name = getattr(target, "__name__", "study")
        spec = parse_spec(
            {
                "study": {
                    "name": name,
                    "metric": metric,
                    "mode": mode,
                    "seed": seed,
                    "algorithm": algorithm,
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
        return run_inproc(
            spec,
            workers=workers,
            threads=threads,
            out=out,
            trace=trace,
            progress=progress,
            trainer=target,
        )
    spec = target if isinstance(target, StudySpec) else load_spec(target)
    if isinstance(sampler, str):
        spec = _with_sampler(spec, sampler)
    elif custom is not None:
        spec = dataclasses.replace(spec, custom_sampler=custom)
    return run_inproc(
        spec, workers=workers, threads=threads, out=out, trace=trace, progress=progress
    )


def _with_sampler(spec: StudySpec, name: str) -> StudySpec:
    """``spec`` with ``[study] sampler = name``, validated (and in the raw spec, so a journal's
    digest tells studies with different samplers apart)."""
    raw = dict(spec.raw)
    raw["study"] = {**raw.get("study", {}), "sampler": name}
    return parse_spec(raw, source=spec.source, base_dir=spec.base_dir, default_name=spec.name)
