"""Trainers: what a worker runs for a job, behind one contract.

``trainer(config, start, stop, state) -> (metrics, state)``: train from resource ``start`` to
``stop``, resuming from ``state`` (the bytes this trial's previous job returned, None at rung 0),
and return the metrics at ``stop`` and the new state. A Python function may instead take
``(config, ctx)`` (ash.worker.context: the trial, intermediate reports, file checkpoints, the
slot's device) and return its metrics, or ``(metrics, state_bytes)``. Two kinds:

- ``MlpTrainer``: the native kernel; resource = epochs; reports val_loss, val_accuracy and
  train_loss. The dataset is loaded and split once per process. A diverging run reports
  val_loss = inf (a failed result), it does not raise.
- ``PythonTrainer``: a user function named ``pkg.mod:fn``, imported from the working directory
  or PYTHONPATH (``FunctionTrainer``: a function given directly, ``ash.tune(fn)``).

``run_job`` is the one place that calls a trainer: it turns an exception (SystemExit too), a
malformed return, metrics beyond the limits of ash.link.metrics or a missing or
non-finite metric into a failed outcome with a message, so a bad trial never takes a worker down.
An exception's message carries the traceback of the user's frames, in both forms (``_raised``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ash.errors import TrialStopped, UserError
from ash.link.metrics import check_metrics, clip_error
from ash.scheduler.core.space import Config
from ash.spec import StudySpec, TrainerSpec
from ash.worker.context import JobInfo, TrialContext, Workspace, takes_context
from ash.worker.mlp_params import PARAMS
from ash.worker.tracebacks import with_traceback

TrainerFn = Callable[
    [Config, float, float, "bytes | None"], tuple[Mapping[str, Any], "bytes | None"]
]


class TrainerError(UserError, ValueError):
    """A trainer cannot be set up (bad entrypoint, unreadable dataset); names what is wrong."""


@dataclass
class Outcome:
    value: float | None  # the study metric; None when the job failed
    metrics: dict[str, Any]
    state: bytes | None
    error: str | None = None


class MlpTrainer:
    """The native MLP behind the trainer contract."""

    def __init__(self, spec: TrainerSpec, seed: int, base_dir: Path) -> None:
        self.spec = spec
        self.seed = seed
        self.base_dir = base_dir

    def data(self) -> Any:
        from ash.worker.datasets import cached_split

        return cached_split(
            self.spec.dataset, str(self.base_dir), self.spec.validation_fraction, self.seed
        )

    def __call__(
        self, config: Config, start: float, stop: float, state: bytes | None
    ) -> tuple[dict[str, Any], bytes | None]:
        from ash.native import mlp

        p = {name: config.get(name, default) for name, (default, _, _) in PARAMS.items()}
        d = self.data()
        if state is None:
            hidden = [int(p["hidden"])] * int(p["layers"])
            key = json.dumps(config, sort_keys=True).encode()
            seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
            state = mlp.init_state(
                d.X_train.shape[1],
                hidden,
                d.n_classes,
                str(p["activation"]),
                str(p["optimizer"]),
                (seed + self.seed) % 2**64,
            )
        done = mlp.info(state).epochs_done
        if abs(done - start) > 1e-9:
            raise TrainerError(f"checkpoint holds {done} epochs but the job starts at {start}")
        res = mlp.train(
            state,
            d.X_train,
            d.y_train,
            round(stop - start),
            lr=float(p["lr"]),
            momentum=float(p["momentum"]),
            weight_decay=float(p["weight_decay"]),
            dropout=float(p["dropout"]),
            batch_size=int(p["batch_size"]),
        )
        if res.diverged:
            metrics = {"val_loss": math.inf, "val_accuracy": 0.0, "train_loss": math.inf}
            return metrics, res.state
        ev = mlp.evaluate(res.state, d.X_val, d.y_val)
        metrics = {"val_loss": ev.loss, "val_accuracy": ev.accuracy, "train_loss": res.train_loss}
        return metrics, res.state


class FunctionTrainer:
    """A user function with the trainer contract: ``(config, start, stop, state)``, or
    ``(config, ctx)`` (``contextual``; ``run_job`` gives it its context)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        try:
            self.contextual = takes_context(fn)
        except ValueError as exc:
            raise TrainerError(f"trainer {exc}") from None
        self.fn = fn

    def __call__(
        self, config: Config, start: float, stop: float, state: bytes | None
    ) -> tuple[Mapping[str, Any], bytes | None]:
        out: tuple[Mapping[str, Any], bytes | None] = self.fn(config, start, stop, state)
        return out

    def with_context(self, config: Config, ctx: TrialContext) -> Any:
        return self.fn(config, ctx)


class PythonTrainer(FunctionTrainer):
    """A user function ``pkg.mod:fn`` with the trainer contract."""

    def __init__(self, entrypoint: str, base_dir: Path) -> None:
        module_name, _, attr = entrypoint.partition(":")
        for path in (str(Path.cwd()), str(base_dir)):
            if path not in sys.path:
                sys.path.insert(0, path)
        try:
            module = importlib.import_module(module_name)
        except KeyboardInterrupt:  # Ctrl-C while importing stays Ctrl-C
            raise
        except BaseException as exc:  # the user's module may raise anything, even sys.exit()
            raise TrainerError(
                f"trainer.entrypoint {entrypoint!r}: cannot import {module_name!r} "
                f"({_describe(exc)})"
            ) from None
        fn = getattr(module, attr, None)
        if not callable(fn):
            raise TrainerError(
                f"trainer.entrypoint {entrypoint!r}: {module_name} has no function {attr!r}"
            )
        try:
            super().__init__(fn)
        except TrainerError as exc:
            raise TrainerError(f"trainer.entrypoint {entrypoint!r}: {exc}") from None


def make_trainer(spec: StudySpec) -> TrainerFn:
    """The trainer a spec names; raises TrainerError for what cannot be set up."""
    t = spec.trainer
    if t is None:
        raise TrainerError(
            f"{spec.source}: trainer: missing [trainer] table (type = 'mlp' or 'python')"
        )
    if t.type == "python":
        assert t.entrypoint is not None
        return PythonTrainer(t.entrypoint, spec.base_dir)
    trainer = MlpTrainer(t, spec.seed, spec.base_dir)
    return trainer


def check_reports(spec: StudySpec, fn: object, name: str) -> None:
    """``stop_on = "reports"`` ranks trials on their ``ctx.report`` calls: a classic trainer never
    reports, so each of its trials would train to ``max_resource`` unranked. TrainerError."""
    if spec.schedule.stop_on == "reports" and not getattr(fn, "contextual", True):
        raise TrainerError(
            f"asha.stop_on = 'reports' needs a (config, ctx) trainer that calls ctx.report; "
            f"{name} takes (config, start, stop, state) and never reports, so every trial would "
            "train to max_resource unranked: use stop_on = 'results'"
        )


def as_trainer(fn: Callable[..., Any]) -> TrainerFn:
    """A trainer for a function given directly (``ash.tune(fn)``); TrainerError if its
    signature is neither form."""
    if isinstance(fn, FunctionTrainer | MlpTrainer):
        return fn
    return FunctionTrainer(fn)


def run_job(
    trainer: TrainerFn,
    metric: str,
    config: Config,
    start: float,
    stop: float,
    state: bytes | None,
    *,
    job: JobInfo | None = None,
    workspace: Workspace | None = None,
    stop_check: Callable[[], bool] | None = None,
) -> Outcome:
    """Call the trainer once; never raises for what the trainer does.

    Any exception fails the result, SystemExit and KeyboardInterrupt included (a trainer that
    calls ``sys.exit()`` costs its job, not the slot process): a caller that must still stop on
    a real Ctrl-C checks for the signal itself (slot processes ignore it: their parent stops
    them). The metrics must
    pass ``check_metrics`` (ash.link.metrics), and the error message is clipped. A ``(config,
    ctx)`` trainer gets its context from ``workspace`` (``job`` says which job this is);
    ``stop_check`` says whether the scheduler stopped the job (``ctx.should_stop``): a trainer
    stopped that way (``ash.TrialStopped``) has its last report as its result."""
    if isinstance(trainer, FunctionTrainer) and trainer.contextual:
        return _run_with_context(
            trainer, metric, config, start, stop, state, job, workspace, stop_check
        )
    try:
        out = trainer(config, start, stop, state)
    except BaseException as exc:  # a trial's failure is data, not a crash
        return _raised(exc)
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], Mapping)):
        return _failed("trainer must return (metrics: dict, state: bytes | None)")
    return _outcome(metric, *out)


def _run_with_context(
    trainer: FunctionTrainer,
    metric: str,
    config: Config,
    start: float,
    stop: float,
    state: bytes | None,
    job: JobInfo | None,
    workspace: Workspace | None,
    stop_check: Callable[[], bool] | None = None,
) -> Outcome:
    from ash.worker.ckptfiles import CheckpointFilesError

    if job is None:
        job = JobInfo(0, 0, 0, False)
    if workspace is None:
        workspace = Workspace(Path(tempfile.gettempdir()) / f"ash-work-{os.getpid()}", "study")
    try:
        ctx = workspace.begin(state, job, start, stop, stop_check)
    except (CheckpointFilesError, OSError) as exc:
        return _failed(f"cannot restore the checkpoint files: {exc}")
    try:
        try:
            out = trainer.with_context(config, ctx)
        except TrialStopped:
            return _stopped(metric, ctx)
        except BaseException as exc:  # a trial's failure is data, not a crash
            if ctx.should_stop:  # e.g. a framework wrapped TrialStopped in its own error
                return _stopped(metric, ctx)
            with contextlib.suppress(BaseException):
                ctx._reporter.close()  # what it reported before failing is kept
            return _raised(exc)
        if isinstance(out, Mapping):
            metrics, data = out, None
        elif isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], Mapping):
            metrics, data = out
        else:
            return _failed(
                "a (config, ctx) trainer must return metrics (a dict) or (metrics, state_bytes)"
            )
        if data is not None and not isinstance(data, bytes | bytearray | memoryview):
            return _failed(f"trainer returned a state of type {type(data).__name__}, not bytes")
        # never stored: a job to max_resource without keep_best, or one stopped on its reports
        # (it never resumes, and retention discards it); a kept top-rung state is packed
        discard = job.discard or ctx.should_stop
        try:
            packed = workspace.finish(ctx, None if data is None else bytes(data), discard)
        except (CheckpointFilesError, OSError) as exc:
            if not job.top:  # a promotion resumes from it: without it the job is lost
                return _failed(f"cannot pack the checkpoint files: {exc}")
            print(  # a top-rung state is only kept for keep_best: the result stands
                f"ash: warning: trial {job.trial}: its top-rung checkpoint files are not kept "
                f"for keep_best ({exc})",
                file=sys.stderr,
                flush=True,
            )
            packed = None
        return _outcome(metric, metrics, packed)
    finally:
        with contextlib.suppress(BaseException):
            ctx._reporter.close()  # the reports go before the result, whatever happened
        workspace.clean(ctx)


def _stopped(metric: str, ctx: TrialContext) -> Outcome:
    """The result of a trial the scheduler stopped on its reports: its last report."""
    with contextlib.suppress(BaseException):
        ctx._reporter.close()
    last = ctx._reporter.last
    if last is None:
        return _failed("trainer raised TrialStopped before any ctx.report")
    return _outcome(metric, last[1], None)


def _outcome(metric: str, metrics: Mapping[str, Any], new_state: Any) -> Outcome:
    if new_state is not None and not isinstance(new_state, bytes | bytearray | memoryview):
        return _failed(f"trainer returned a state of type {type(new_state).__name__}, not bytes")
    clean, problem = check_metrics(metrics)
    if problem is not None:
        return _failed(f"trainer returned bad metrics: {problem}")
    state_bytes = None if new_state is None else bytes(new_state)
    value = clean.get(metric)
    if metric not in clean:
        return Outcome(None, clean, state_bytes, f"trainer did not report the metric {metric!r}")
    if not isinstance(value, int | float) or isinstance(value, bool):
        shown = repr(value)[:80]
        why = f"metric {metric!r} is {shown} ({type(value).__name__}), not a number"
        return Outcome(None, clean, state_bytes, why)
    if not math.isfinite(value):
        return Outcome(None, clean, state_bytes, f"{metric} is {value} (not finite)")
    return Outcome(float(value), clean, state_bytes)


def _failed(error: str) -> Outcome:
    return Outcome(None, {}, None, clip_error(error))


def _raised(exc: BaseException) -> Outcome:
    """The failure of a trainer that raised ``exc`` (either form): ``trainer raised Type:
    message`` and the traceback of the user's frames (ash.worker.tracebacks)."""
    return _failed(with_traceback(f"trainer raised {_describe(exc)}", exc))


def _describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, on one line (as traceback prints its last line)."""
    text = traceback.format_exception_only(type(exc), exc)[-1].strip()
    if isinstance(exc, SystemExit):
        text = f"SystemExit (exit code {exc.code!r})"
    return clip_error(text)


def check_trainer(spec: StudySpec) -> None:
    """Fail now, naming the file, if the trainer cannot run (dataset, entrypoint)."""
    trainer = make_trainer(spec)
    data = getattr(trainer, "data", None)
    if data is not None:
        data()
