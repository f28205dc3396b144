"""A worker rank (1..N-1) of ``mpiexec -n N ash tune SPEC --transport mpi``.

The rank builds its trainer (``setup``, while rank 0 checks the spec and opens the study; every
rank then agrees that all of them could start, see ``ash.transports.mpi``), says Hello to rank 0 and
waits for its Welcome (or Finished), then trains each Assignment in this process (``make_trainer`` +
``run_job``, under threadpoolctl limits set in this thread, the one that calls the kernel) and
answers with a Result carrying the metrics and the checkpoint; Finished ends the rank (exit 0).
A trainer's exception fails that result, not the rank (SystemExit and a KeyboardInterrupt it
raises itself too; a real Ctrl-C still ends the rank), and so does ``trainer.timeout_s``:
SIGALRM raises TimeoutError in the trainer (in-process, so code that never returns to Python, a
hung C call, cannot be cut short). A rank that dies takes the MPI job down with it; the study
resumes from rank 0's ``--journal``.

Stopping on reports (``[asha] stop_on = "reports"``): rank 0 sends its verdicts on a job's
reports on TAG_VERDICT while the job runs; the trainer's ``ctx.should_stop`` and its milestone
reports (which wait for the verdict) poll for them (``Verdicts``).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ash import __version__
from ash.link import wire
from ash.link.mpi import TAG_DOWN, TAG_UP, TAG_VERDICT, Link
from ash.proto import ash_pb2 as pb
from ash.spec import StudySpec
from ash.worker.context import JobInfo, Workspace, milestones
from ash.worker.trainers import Outcome, TrainerFn, make_trainer, run_job

MAX_CHECKPOINT_BYTES = 1 << 40  # rank 0 is the job's own process: no limit to defend


@contextlib.contextmanager
def _alarm(limit: float | None) -> Iterator[None]:
    """Raise TimeoutError in this thread after ``limit`` seconds (trainer.timeout_s)."""
    if limit is None:
        yield
        return

    def ring(signum: int, frame: Any) -> None:
        raise TimeoutError(f"timed out after {limit:g} s (trainer.timeout_s)")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


VERDICT_WAIT_S = 10.0  # the longest a milestone report waits for rank 0's verdict


class Verdicts:
    """Rank 0's verdicts on this rank's running job (TAG_VERDICT), polled by the trainer's
    ``ctx.should_stop`` and its milestone reports."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.stopped: set[int] = set()
        self.decided: dict[int, int] = {}  # job -> reports decided on

    def drain(self) -> None:
        while (got := self.link.poll(0, TAG_VERDICT)) is not None:
            try:
                msg = pb.SchedulerMessage.FromString(got[1])
            except Exception:  # protobuf's DecodeError: rank 0 is this program; ignore it
                continue
            for v in msg.verdicts.verdicts:
                if v.stop:
                    self.stopped.add(v.job_id)
                self.decided[v.job_id] = max(self.decided.get(v.job_id, 0), v.reports)

    def stop_check(self, job_id: int) -> Callable[[], bool]:
        def stopped() -> bool:
            self.drain()
            return job_id in self.stopped

        return stopped

    def wait(self, job_id: int, count: int) -> None:
        """Until rank 0 decided on ``count`` reports of ``job_id`` or stopped it (at most
        VERDICT_WAIT_S)."""
        deadline = time.monotonic() + VERDICT_WAIT_S
        pause = 0.0005
        while time.monotonic() < deadline:
            self.drain()
            if job_id in self.stopped or self.decided.get(job_id, 0) >= count:
                return
            time.sleep(pause)
            pause = min(2 * pause, 0.01)

    def forget(self) -> None:
        """Between jobs: what was said of earlier jobs is no longer needed."""
        self.drain()
        self.stopped.clear()
        self.decided.clear()


def train(
    trainer: TrainerFn,
    spec: StudySpec,
    a: pb.Assignment,
    workspace: Workspace | None = None,
    stop_check: Callable[[], bool] | None = None,
) -> pb.Result:
    """Run one assignment; whatever goes wrong becomes a failed Result. A ``(config, ctx)``
    trainer's reports go through ``workspace``'s sender (to rank 0, before the result)."""
    t0 = time.perf_counter()
    try:
        config = wire.config_from_pb(a.config, "assignment.config")
        state = wire.checkpoint_from_pb(a, "checkpoint", MAX_CHECKPOINT_BYTES)
    except wire.WireError as exc:
        return pb.Result(job_id=a.job_id, ok=False, error=f"bad assignment: {exc}")
    checkpoint = state if isinstance(state, bytes) else None  # no shared dir: never a reference
    limit = spec.trainer.timeout_s if spec.trainer is not None else None
    try:
        with _alarm(limit):
            info = JobInfo.of(spec, a.job_id, a.trial, a.rung, a.stop)
            out = run_job(
                trainer,
                spec.metric,
                config,
                a.start,
                a.stop,
                checkpoint,
                job=info,
                workspace=workspace,
                stop_check=stop_check,
            )
    except TimeoutError as exc:  # the alarm rang just as the trainer returned
        out = Outcome(None, {}, None, f"trainer raised TimeoutError: {exc}")
    r = pb.Result(
        job_id=a.job_id,
        ok=out.value is not None,
        value=out.value or 0.0,
        error=out.error or "",
        seconds=time.perf_counter() - t0,
    )
    wire.metrics_to_pb(out.metrics, r.metrics)
    wire.checkpoint_to_pb(out.state, r.checkpoint)
    return r


def _next(link: Link) -> pb.SchedulerMessage:
    got = link.wait(0, TAG_DOWN)
    assert got is not None
    msg: pb.SchedulerMessage = pb.SchedulerMessage.FromString(got[1])
    return msg


def setup(spec: StudySpec) -> TrainerFn:
    """This rank's trainer, its dataset loaded (a TrainerError or DataError if it cannot be)."""
    trainer = make_trainer(spec)
    data = getattr(trainer, "data", None)
    if data is not None:
        data()  # load the dataset now: a node that lacks it fails before the study starts
    return trainer


def serve(link: Link, spec: StudySpec, trainer: TrainerFn, threads: int) -> int:
    """Work for rank 0 until it says Finished; returns the rank's exit code."""
    from threadpoolctl import threadpool_limits

    hello = pb.Hello(worker_id=f"rank{link.rank}", slots=1, version=__version__)
    link.send(pb.WorkerMessage(hello=hello), 0, TAG_UP)

    def send_reports(job_id: int, batch: list[Any]) -> None:
        link.send(wire.reports_to_pb({job_id: batch}), 0, TAG_UP)

    root = Path(tempfile.mkdtemp(prefix=f"ash-work-rank{link.rank}-"))
    workspace = Workspace(root, spec.name, None, send_reports, milestones(spec))
    verdicts = Verdicts(link) if workspace.milestones else None  # stopping on reports only
    if verdicts is not None:
        workspace.await_verdict = verdicts.wait
    try:
        if _next(link).WhichOneof("msg") != "welcome":
            return 0  # rank 0 stopped before the first job and reports why
        with threadpool_limits(limits=threads), _Interrupts() as ctrl_c:
            while True:
                msg = _next(link)
                kind = msg.WhichOneof("msg")
                if kind == "finished":
                    return 0
                if kind == "assignment":
                    stop = None
                    if verdicts is not None:
                        verdicts.forget()
                        stop = verdicts.stop_check(msg.assignment.job_id)
                    result = train(trainer, spec, msg.assignment, workspace, stop)
                    if ctrl_c.hit:  # run_job made it a failed result; the rank stops all the same
                        return 130
                    link.send(pb.WorkerMessage(result=result), 0, TAG_UP)
    except KeyboardInterrupt:  # mpiexec forwards Ctrl-C to every rank; rank 0 reports it
        return 130
    finally:
        if verdicts is not None:
            verdicts.forget()  # no message is left unreceived
        shutil.rmtree(root, ignore_errors=True)


class _Interrupts:
    """Remembers a real SIGINT. ``run_job`` turns a KeyboardInterrupt in the trainer into a failed
    result (a trainer may raise one itself), so ``serve`` asks this whether Ctrl-C really came."""

    def __init__(self) -> None:
        self.hit = False
        self.previous: Any = None

    def _ring(self, signum: int, frame: Any) -> None:
        self.hit = True
        raise KeyboardInterrupt

    def __enter__(self) -> _Interrupts:
        with contextlib.suppress(ValueError):  # not the main thread: no handler of ours
            self.previous = signal.signal(signal.SIGINT, self._ring)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
