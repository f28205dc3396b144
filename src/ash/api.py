"""The Python API: ``tune(...)`` from a notebook or a script.

``tune(...)`` takes a spec (a path or a StudySpec) or a plain function plus a search space, runs
the study on local worker processes (``ash.transports.inproc``) and returns the results
document (the same dict that results.json holds). Everything the user gave is checked before a
worker starts: the spec, the dataset or the trainer's entrypoint. Ctrl-C stops the study
cleanly; what was done is still written and returned, marked ``"interrupted": true``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ash.spec import StudySpec, load_spec, parse_spec
from ash.transports.inproc import run_inproc

if TYPE_CHECKING:
    from ash.integrations import Callback


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
    callbacks: Sequence[Callback] = (),
    devices: str | list[str] | list[int] | None = None,
) -> dict[str, Any]:
    """Tune from a notebook or a script.

    ``target`` is a spec file, a StudySpec, or a trainer function
    ``fn(config, start, stop, state) -> (metrics, state)`` or ``fn(config, ctx) -> metrics``
    (docs/python.md), in which case ``space`` (the ``[space]`` table as a dict) and the other
    keywords make the spec. ``devices`` (``"0,1"`` or ``[0, 1]``): one worker per accelerator
    (docs/devices.md). ``callbacks``: ash.integrations callbacks (MLflowCallback,
    TensorBoardCallback, your own). Returns the results document (``["best"]``, ``["trials"]``).
    """
    device_ids = None
    if devices is not None:
        from ash.devices import parse_devices

        device_ids = parse_devices(devices, "devices")
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
        from ash.worker.trainers import as_trainer

        as_trainer(target)  # a signature of neither form: TrainerError now, not in a worker
        name = getattr(target, "__name__", "study")
        spec = parse_spec(
            {
                "study": {
                    "name": name,
                    "metric": metric,
                    "mode": mode,
                    "seed": seed,
                    "algorithm": algorithm,
                },
                "asha": asha,
                "trainer": {"type": "python", "entrypoint": f"{target.__module__}:{name}"},
                "space": dict(space),
            },
            source=f"tune({name})",
        )
        return run_inproc(
            spec,
            workers=workers,
            threads=threads,
            out=out,
            trace=trace,
            progress=progress,
            trainer=target,
            callbacks=callbacks,
            devices=device_ids,
        )
    spec = target if isinstance(target, StudySpec) else load_spec(target)
    return run_inproc(
        spec,
        workers=workers,
        threads=threads,
        out=out,
        trace=trace,
        progress=progress,
        callbacks=callbacks,
        devices=device_ids,
    )
