"""The trial context: what a ``(config, ctx)`` trainer knows and can do during one job.

A Python trainer may take ``(config, ctx)`` instead of ``(config, start, stop, state)``
(``takes_context`` tells them apart by signature). ``ctx`` says which job this is (``trial``,
``rung``, ``start``, ``stop``, ``state``: the bytes form of the checkpoint), gives a working
folder per trial that outlives promotions on this worker (``dir``: ``WORK_ROOT/STUDY/trial-N``),
the slot's accelerator (``device``, None without ``--devices``), intermediate reports
(``report(step, **metrics)``) and checkpoints as files (``checkpoint_dir()`` to write the next
one, ``restore_dir()`` holding the previous job's, or None).

Reports are checked here (ash.link.metrics: the caps of a result's metrics, and a finite step),
so a bad one fails the trainer at the call that made it, with its traceback. A metric of None
(no value) is left out, and a report of only such metrics is no report; a non-finite number is
data (kept as null). A report goes out
at once when the last batch left at least ``FLUSH_S`` seconds ago (a slow epoch shows live);
otherwise it waits in a buffer that leaves with a later report (at ``MAX_REPORT_BATCH`` reports,
or ``FLUSH_S`` after the last batch) or at the end of the job, before its result. So a trainer
that reports a thousand times per job costs a handful of messages; a job keeps its first
``MAX_REPORTS_PER_JOB`` reports.

Stopping on reports (``[asha] stop_on = "reports"``): a report whose step reaches a rung
milestone (``Workspace.milestones``) goes out at once, since the scheduler decides on it, and
waits for that decision (``Workspace.await_verdict``, where the transport gives one). When
the scheduler stops the trial, ``ctx.should_stop`` turns True and the next ``ctx.report`` raises
``ash.TrialStopped`` (after keeping that report); ``run_job`` turns it (or a trainer that
returns once ``should_stop``) into the trial's result: its last report.

File checkpoints travel packed into the state bytes (ash.worker.ckptfiles); ``Workspace.begin``
unpacks the previous one into the restore folder, ``Workspace.finish`` packs the new one, and both
folders are removed after the job (``dir`` is kept). A job's state is packed whenever the study
may store it: every job below ``max_resource``, and a job to ``max_resource`` when the spec keeps
top-rung states (``[checkpoints] keep_best > 0``: the scheduler's retention keeps the
``keep_best`` best trials' and discards the rest), as the classic form's returned state. It is
not packed when nothing would store it (``JobInfo.discard``): a job to ``max_resource`` with
``keep_best = 0``, or one the scheduler stopped on its reports (it never resumes).
"""

from __future__ import annotations

import inspect
import re
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ash.errors import TrialStopped
from ash.link.metrics import (
    MAX_REPORT_BATCH,
    MAX_REPORTS_PER_JOB,
    Metrics,
    check_metrics,
    check_step,
)
from ash.worker import ckptfiles

if TYPE_CHECKING:
    from ash.spec import StudySpec

FLUSH_S = 0.5  # reports wait at most this long in a job's buffer
ReportSink = Callable[[int, list[tuple[float, Metrics]]], None]  # (job id, [(step, metrics)])


def takes_context(fn: Callable[..., Any]) -> bool:
    """Whether a trainer function takes ``(config, ctx)`` (True) or ``(config, start, stop,
    state)`` (False); ValueError when it takes neither."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False  # a builtin or C callable: the classic form
    try:
        sig.bind(None, None, None, None)
        return False
    except TypeError:
        pass
    try:
        sig.bind(None, None)
        return True
    except TypeError:
        raise ValueError(
            f"{getattr(fn, '__name__', fn)!r} must take (config, ctx) or "
            f"(config, start, stop, state), not {sig}"
        ) from None


class Reporter:
    """One job's intermediate reports: checked, buffered, sent in batches."""

    def __init__(
        self,
        job_id: int,
        send: ReportSink | None,
        milestones: Sequence[float] = (),
        await_verdict: Callable[[int, int], None] | None = None,
    ) -> None:
        self.job_id = job_id
        self.await_verdict = await_verdict
        self.send = send
        self.milestones = sorted(milestones)  # a report reaching one goes out at once
        self._next = 0
        self.last: tuple[float, Metrics] | None = None  # the last report (kept or not)
        self.buffer: list[tuple[float, Metrics]] = []
        self.count = 0  # kept so far (sent or buffered)
        self.dropped = 0  # beyond MAX_REPORTS_PER_JOB
        self._last = -FLUSH_S  # the first report goes at once (a slow epoch shows live)
        self._lock = threading.Lock()  # a trainer may report from its own threads
        self.closed = False  # the job returned: later reports (a stray thread's) are ignored

    def add(self, step: Any, metrics: Mapping[str, Any]) -> None:
        s, problem = check_step(step)
        if problem is not None or s is None:
            raise ValueError(f"ctx.report: {problem}")
        if not metrics:
            raise ValueError("ctx.report(step, **metrics): give at least one metric")
        clean, problem = check_metrics(metrics)
        if problem is not None:
            raise ValueError(f"ctx.report: {problem}")
        # None is no value: not kept, on every transport (the wire carries none); a report of
        # nothing else is no report (sent, it was refused as one without metrics)
        clean = {k: v for k, v in clean.items() if v is not None}
        if not clean:
            return
        with self._lock:
            if self.closed:
                return
            self.last = (s, clean)
            if self.count >= MAX_REPORTS_PER_JOB:
                self.dropped += 1
                return
            self.count += 1
            self.buffer.append((s, clean))
            milestone = False
            while self._next < len(self.milestones) and s >= self.milestones[self._next] * (
                1 - 1e-9
            ):
                self._next += 1
                milestone = True
            if (
                milestone
                or len(self.buffer) >= MAX_REPORT_BATCH
                or time.monotonic() - self._last >= FLUSH_S
            ):
                self._flush()
            sent = self.count
        if milestone and self.await_verdict is not None and self.send is not None:
            self.await_verdict(self.job_id, sent)  # the scheduler decides on it now

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def close(self) -> None:
        """Send what is buffered; later reports are ignored (the job's result follows)."""
        with self._lock:
            try:
                self._flush()
            finally:
                self.closed = True

    def _flush(self) -> None:
        self._last = time.monotonic()
        if not self.buffer:
            return
        batch, self.buffer = self.buffer, []
        if self.send is not None:
            self.send(self.job_id, batch)


class TrialContext:
    """What a ``(config, ctx)`` trainer is told and may call; see the module docstring."""

    def __init__(
        self,
        *,
        trial: int,
        rung: int,
        start: float,
        stop: float,
        state: bytes | None,
        dir: Path,
        device: str | None,
        reporter: Reporter,
        scratch: Path,
        restore: Path | None,
        study: str = "",
        job_id: int = 0,
        stop_check: Callable[[], bool] | None = None,
    ) -> None:
        self.trial = trial
        self.rung = rung
        self.start = start
        self.stop = stop
        self.state = state
        self.dir = dir
        self.device = device
        self.study = study
        self.job_id = job_id
        self._reporter = reporter
        self._scratch = scratch
        self._restore = restore
        self._checkpoint: Path | None = None
        self._stop_check = stop_check

    def report(self, step: float, **metrics: Any) -> None:
        """An intermediate result at ``step`` (e.g. the epoch): numbers or short strings,
        within the caps of a result's metrics. Shown live, kept in results.json. With
        ``[asha] stop_on = "reports"`` the scheduler ranks it at the rung its step reaches;
        once the trial is stopped this raises ``ash.TrialStopped`` (the report is kept)."""
        self._reporter.add(step, metrics)
        if self.should_stop:
            raise TrialStopped(self.trial, float(step))

    @property
    def should_stop(self) -> bool:
        """Whether the scheduler stopped this trial (``[asha] stop_on = "reports"``): return
        now, or let the next ``report`` raise ``ash.TrialStopped``. Always False otherwise."""
        return self._stop_check is not None and self._stop_check()

    def checkpoint_dir(self) -> Path:
        """A fresh empty folder for this job's checkpoint files (the same one if called
        again); what it holds when the trainer returns resumes the trial's next job."""
        if self._checkpoint is None:
            path = self._scratch / "checkpoint"
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
            self._checkpoint = path
        return self._checkpoint

    def restore_dir(self) -> Path | None:
        """The folder holding the files the trial's previous job wrote into its
        ``checkpoint_dir()``, or None (rung 0, or it wrote none)."""
        return self._restore

    def __repr__(self) -> str:
        return (
            f"TrialContext(trial={self.trial}, rung={self.rung}, start={self.start:g}, "
            f"stop={self.stop:g}, device={self.device!r}, dir={str(self.dir)!r})"
        )


@dataclass(frozen=True)
class JobInfo:
    """What a slot knows about the job it runs, beyond the classic trainer arguments."""

    job_id: int
    trial: int
    rung: int
    discard: bool  # its state is never stored (``JobInfo.of``), so it is not packed
    top: bool = False  # trains to max_resource: its state is only kept for keep_best

    @classmethod
    def of(cls, spec: StudySpec, job_id: int, trial: int, rung: int, stop: float) -> JobInfo:
        """The job of ``spec`` training ``trial`` to ``stop``. Its state is discarded (not
        packed) only when it trains to ``max_resource`` and the spec keeps no top-rung state
        (``keep_best = 0``); otherwise the scheduler's retention decides what stays."""
        top = stop >= spec.schedule.max_resource
        return cls(job_id, trial, rung, top and spec.keep_best <= 0, top)


@dataclass
class Workspace:
    """Where a worker's context trainers keep files: ``root/STUDY/trial-N`` per trial and
    ``root/STUDY/.ash/job-J`` for a job's restore and checkpoint folders."""

    root: Path
    study: str
    device: str | None = None
    send: ReportSink | None = None
    milestones: tuple[float, ...] = ()  # rung resources a report is sent at once on reaching
    # (job id, reports sent) -> returns once the scheduler decided on them (stopping on reports)
    await_verdict: Callable[[int, int], None] | None = None

    def begin(
        self,
        config_state: bytes | None,
        info: JobInfo,
        start: float,
        stop: float,
        stop_check: Callable[[], bool] | None = None,
    ) -> TrialContext:
        """The context of a job: the state unpacked (raises CheckpointFilesError for a
        refused archive)."""
        trial_dir = self.root / _safe(self.study) / f"trial-{info.trial}"
        trial_dir.mkdir(parents=True, exist_ok=True)
        scratch = scratch_dir(self.root, self.study, info.job_id)
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        data: bytes | None = config_state
        restore: Path | None = None
        if ckptfiles.is_packed(config_state):
            assert config_state is not None
            try:
                data, tar = ckptfiles.split(config_state)
                if tar:
                    restore = scratch / "restore"
                    restore.mkdir()
                    ckptfiles.unpack(tar, restore)
            except BaseException:
                shutil.rmtree(scratch, ignore_errors=True)  # a refused archive leaves nothing
                raise
        return TrialContext(
            trial=info.trial,
            rung=info.rung,
            start=start,
            stop=stop,
            state=data,
            dir=trial_dir,
            device=self.device,
            reporter=Reporter(info.job_id, self.send, self.milestones, self.await_verdict),
            scratch=scratch,
            restore=restore,
            study=self.study,
            job_id=info.job_id,
            stop_check=stop_check,
        )

    @staticmethod
    def finish(ctx: TrialContext, data: bytes | None, discard: bool) -> bytes | None:
        """The job's state (packed: its bytes and checkpoint files), None when there is
        nothing to carry or it is discarded (never stored: not packed); its reports are
        flushed first."""
        ctx._reporter.close()
        if discard:
            return None
        folder = ctx._checkpoint
        has_files = folder is not None and any(folder.iterdir())
        if data is None and not has_files:
            return None
        return ckptfiles.pack(data, folder if has_files else None)

    @staticmethod
    def clean(ctx: TrialContext) -> None:
        shutil.rmtree(ctx._scratch, ignore_errors=True)


def milestones(spec: Any) -> tuple[float, ...]:
    """The rung resources below the top of every bracket of ``spec`` when it stops on reports
    (a report reaching one is sent at once), else none."""
    sch = spec.schedule
    if spec.algorithm != "asha-stopping" or sch.stop_on != "reports":
        return ()
    from ash.scheduler.core.ladder import rung_resources

    r, big_r, eta = sch.min_resource, sch.max_resource, sch.reduction_factor
    found: set[float] = set()
    for b in range(sch.brackets):
        found.update(rung_resources(r, big_r, eta, sch.early_stopping_rate + b)[:-1])
    return tuple(sorted(found))


def scratch_dir(root: Path, study: str, job_id: int) -> Path:
    """The folder of job ``job_id``'s restore and checkpoint folders (removed after the job;
    a slot that dies or times out leaves it to its parent to remove)."""
    return root / _safe(study) / ".ash" / f"job-{job_id}"


def _safe(name: str) -> str:
    """A study name as one folder name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "study"
