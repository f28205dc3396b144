"""The Python API and the embedded engine behind ``ash tune``.

``tune(...)`` takes a spec (a path or a StudySpec) or a plain function plus a search space, runs
the study on local worker processes (see ash.worker.pool) and returns the results document (the
same dict that results.json holds). Everything the user gave is checked before a worker starts:
the spec, the dataset or the trainer's entrypoint. Ctrl-C stops the study cleanly; what was done
is still written and returned, marked ``"interrupted": true``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ash.scheduler.driver import open_study
from ash.scheduler.journal import JournalError
from ash.spec import StudySpec, load_spec, parse_spec


def resolve_threads(threads: int | str, workers: int) -> int:
    from ash.worker.slots import auto_threads

    if threads == "auto":
        return auto_threads(workers)
    if isinstance(threads, int) and threads >= 1:
        return threads
    raise ValueError(f"threads must be 'auto' or an integer >= 1, got {threads!r}")


def check_trainer(spec: StudySpec) -> None:
    """Fail now, naming the file, if the trainer cannot run (dataset, entrypoint)."""
    from ash.worker.trainers import make_trainer

    trainer = make_trainer(spec)
    data = getattr(trainer, "data", None)
    if data is not None:
        data()


def run_embedded(
    spec: StudySpec,
    *,
    workers: int | None = None,
    threads: int | str = "auto",
    out: str | Path | None = None,
    trace: str | Path | None = None,
    journal: str | Path | None = None,
    progress: bool = True,
    trainer: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Run ``spec`` on local worker processes; return the results document. With ``journal``
    the study is crash-safe and, started again on the same journal, resumes where it stood."""
    from ash.paths import check_out_dir, check_trace_file
    from ash.progress import Progress, from_driver
    from ash.report import write_report
    from ash.worker.pool import LocalPool

    check_out_dir(out, "--out")
    check_trace_file(trace, "--trace")
    n = workers or os.cpu_count() or 1
    k = resolve_threads(threads, n)
    if trainer is None:
        check_trainer(spec)
    planner = None
    title = f"{spec.name}: {spec.algorithm}, {n} workers x {k} threads"
    if threads == "auto":  # threads are planned per job within the cores (ash.worker.threads)
        from ash.worker.planner import planner_for

        def log(line: str) -> None:
            print(f"ash: {line}", file=sys.stderr, flush=True)

        planner = planner_for(
            spec, n, custom_trainer=trainer is not None, log=log if progress else None
        )
        title = f"{spec.name}: {spec.algorithm}, {n} workers, threads auto ({planner.cores} cores)"
    opened = open_study(spec, journal=journal, trace=trace)
    driver = opened.driver
    if opened.resumed_records:
        print(
            f"ash: resumed {spec.name} from {journal}: {opened.resumed_records} records, "
            f"{opened.lost_on_resume} in-flight jobs lost (re-issued)",
            file=sys.stderr,
            flush=True,
        )
    pool = LocalPool(spec, driver, n, k, trainer=trainer, planner=planner)
    interrupted = False
    try:
        with Progress(lambda: from_driver(driver), title, enabled=progress) as view:
            pool.run(tick=view.tick)
    except KeyboardInterrupt:
        interrupted = True
    except JournalError:
        if driver.broken is None:
            raise
        print(f"ash: error: {driver.broken}; stopped", file=sys.stderr, flush=True)
    finally:
        driver.close()
    extra: dict[str, Any] = {
        "interrupted": interrupted,
        "errors": [{"trial": t, "error": msg} for t, msg in driver.errors[:100]],
    }
    if driver.broken is not None:
        extra["error"] = driver.broken  # a full disk: what was done is written; resume later
    doc = {**driver.results.to_json(), **extra}
    if out is not None:
        write_report(doc, driver.results.write(out, extra))
    return doc


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
) -> dict[str, Any]:
    """Tune from a notebook or a script.

    ``target`` is a spec file, a StudySpec, or a trainer function
    ``fn(config, start, stop, state) -> (metrics, state)`` (see the README), in which case
    ``space`` (the ``[space]`` table as a dict) and the other keywords make the spec.
    Returns the results document (``["best"]``, ``["trials"]``).
    """
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
                },
                "asha": asha,
                "trainer": {"type": "python", "entrypoint": f"{target.__module__}:{name}"},
                "space": dict(space),
            },
            source=f"tune({name})",
        )
        return run_embedded(
            spec,
            workers=workers,
            threads=threads,
            out=out,
            trace=trace,
            progress=progress,
            trainer=target,
        )
    spec = target if isinstance(target, StudySpec) else load_spec(target)
    return run_embedded(
        spec, workers=workers, threads=threads, out=out, trace=trace, progress=progress
    )
