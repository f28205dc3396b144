"""Rank 0 of ``mpiexec -n N ash tune SPEC --transport mpi``: a Driver fed over MPI.

The worker ranks are a backend of the one study loop (``ash.scheduler.loop``), like the embedded
slots: it waits for Results from the worker ranks (each runs one job at a time), hands them to
the driver, then offers work to idle ranks; assignments leave only after ``driver.sync()``, so
every job a worker sees is in the journal. Rank 0 starts
by collecting every rank's Hello and answering Welcome, and ends by sending Finished to each, so
all ranks exit 0. (A study that cannot start, a bad spec, journal or trainer, is settled before
this: ``ash.transports.mpi`` has every rank agree on it.)

With ``--rank0-trains`` rank 0 is a worker too: one slot process beside the driver (a
``LocalBackend`` that ``ash.transports.mpi`` gives, the embedded pool's slots: its own thread
budget, ``trainer.timeout_s`` enforced by killing it), fed like a worker rank and traced as
``rank0``. The waits
between MPI polls are then waits on that slot's pipe, so its results are taken at once. A
trainer that kills the slot process costs that job (traced ``lost``, re-issued), not the MPI job.

Each worker rank trains in a slot process of its own (``ash.worker.mpi_worker``): a trainer that
kills that process costs its job, which the rank hands back (a Release) and the loop charges an
attempt (``Lost``, as the embedded pool's dead slots), and the rank goes on. MPI gives no way to
survive the death of a rank itself (a node, a preemption: mpiexec ends the whole job), so there
are no leases here: a study outlives that through its journal, and the same command started
again resumes it (the jobs in flight are re-issued uncharged: a rank's death is not a trial's).
If rank 0 itself fails while jobs are in flight it calls MPI_Abort rather than leave worker ranks
blocked; with none in flight it sends Finished first and the error is reported normally.
"""

from __future__ import annotations

import math
import sys
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ash.link import wire
from ash.link.metrics import clip_error
from ash.link.mpi import TAG_DOWN, TAG_UP, TAG_VERDICT, Link
from ash.proto import ash_pb2 as pb
from ash.scheduler import loop
from ash.scheduler.driver import Assignment, Driver
from ash.scheduler.loop import Backend, Done, Lost, Reported
from ash.scheduler.outcome import Report, write_outcome

LOCAL = 0  # rank 0's own slot (--rank0-trains), in the same books as the worker ranks
MAX_CHECKPOINT_BYTES = 1 << 40  # the workers are the job's own processes


def _warn(text: str) -> None:
    print(f"ash: mpi: {text}", file=sys.stderr, flush=True)


def handshake(link: Link) -> None:
    """Wait for every worker rank's Hello (sent once its trainer is set up)."""
    waiting = set(range(1, link.size))
    while waiting:
        got = link.wait(link.any_source, TAG_UP)
        assert got is not None
        src, data = got
        msg = pb.WorkerMessage.FromString(data)
        if msg.WhichOneof("msg") != "hello" or src not in waiting:
            _warn(f"rank {src}: unexpected message before the start; ignored")
            continue
        waiting.discard(src)


def welcome(link: Link, driver: Driver) -> None:
    """Tell every worker rank to set up its trainer: jobs follow."""
    spec = driver.spec
    msg = pb.SchedulerMessage(welcome=pb.Welcome(study=spec.name, metric=spec.metric))
    for rank in range(1, link.size):
        link.send(msg, rank, TAG_DOWN)


def finish(link: Link, reason: str) -> None:
    """Tell every worker rank to exit (each must be idle, waiting for a message)."""
    msg = pb.SchedulerMessage(finished=pb.Finished(reason=reason))
    for rank in range(1, link.size):
        link.send(msg, rank, TAG_DOWN)


class LocalBackend(Backend, Protocol):
    """Rank 0's own trainer (``--rank0-trains``): a backend of one slot that can be stopped."""

    def close(self, grace: float = 2.0) -> None: ...


class MpiBackend:
    """The worker ranks (and ``local``, rank 0's own slot) as a study-loop backend; the ranks
    must have said Hello. Each rank runs one job at a time and answers with its Result, or a
    Release when its trainer process died (a ``Lost`` that costs the job an attempt)."""

    plans: bool = False
    assign_extra: Mapping[str, Any] | None = None

    def __init__(
        self, link: Link, local: LocalBackend | None = None, verdicts: bool = False
    ) -> None:
        self.link = link
        self.local = local
        self.verdicts = verdicts  # stopping on reports: the ranks wait for TAG_VERDICT
        # rank 0 last: when there are fewer jobs than workers, the ranks that only train get them
        self.idle: deque[int] = deque(
            [*range(1, link.size), *([LOCAL] if local is not None else [])]
        )
        self.jobs: dict[int, int] = {}  # rank -> job id
        self.counts: dict[int, int] = {}  # running job -> reports received (stop on reports)
        self.undecided: set[int] = set()  # jobs with reports the driver has not decided on
        self.local_events: list[Done | Lost | Reported] = []

    def next_worker(self, round: Sequence[Assignment]) -> str | None:
        i = len(round)
        return f"rank{self.idle[i]}" if i < len(self.idle) else None

    def start(self, round: Sequence[Assignment], more: bool) -> None:
        for a in round:
            rank = self.idle.popleft()
            self.jobs[rank] = a.job.job_id
            if rank == LOCAL:
                assert self.local is not None and self.local.next_worker([]) is not None
                self.local.start([a], more)
            else:
                self.link.send(wire.assignment_to_pb(a), rank, TAG_DOWN)

    def busy(self) -> bool:
        return bool(self.jobs)

    def decided(self, stops: Sequence[int]) -> None:
        """Verdicts on the reports the driver decided on (stopping on reports): to each worker
        rank running such a job, on TAG_VERDICT (it polls for them while it trains); rank 0's
        own slot is told through its backend."""
        rank_of = {job: rank for rank, job in self.jobs.items()}
        stopped = set(stops)
        if self.local is not None:
            self.local.decided([j for j in stops if rank_of.get(j) == LOCAL])
        for job_id in sorted(self.undecided | stopped):
            rank = rank_of.get(job_id)
            if rank is None or rank == LOCAL:
                continue
            n = self.counts.get(job_id, 0)
            v = pb.Verdict(job_id=job_id, stop=job_id in stopped, reports=n)
            msg = pb.SchedulerMessage(verdicts=pb.Verdicts(verdicts=[v]))
            self.link.send(msg, rank, TAG_VERDICT)
        self.undecided.clear()

    def wait(self, timeout: float) -> list[Done | Lost | Reported]:
        """Every result waiting (the first within ``timeout``), then decide once."""
        sleep = self._sleep if self.local is not None else None
        got = self.link.wait(self.link.any_source, TAG_UP, timeout=timeout, sleep=sleep)
        out: list[Done | Lost | Reported] = []
        while got is not None:
            done = self._handle(*got)
            if isinstance(done, list):
                out += done
            elif done is not None:
                out.append(done)
            got = self.link.poll(self.link.any_source, TAG_UP)
        return out + self._settle_local()

    def _sleep(self, pause: float) -> bool:
        """Wait up to ``pause`` seconds on rank 0's slot; True once it has news."""
        assert self.local is not None
        self.local_events += self.local.wait(pause)
        return bool(self.local_events)

    def _settle_local(self) -> list[Done | Lost | Reported]:
        events, self.local_events = self.local_events, []
        out: list[Done | Lost | Reported] = []
        for ev in events:
            if isinstance(ev, Reported):
                if self.jobs.get(LOCAL) == ev.job_id:
                    out.append(ev)
                continue
            if self.jobs.get(LOCAL) != ev.job_id:
                _warn(f"rank 0: result for job {ev.job_id}, which it was not given; ignored")
                continue
            del self.jobs[LOCAL]
            self.idle.append(LOCAL)
            out.append(ev)  # a death: the slot is restarted; the job is re-issued
        return out

    def _handle(self, src: int, data: bytes) -> Done | Lost | list[Reported] | None:
        try:
            msg = pb.WorkerMessage.FromString(data)
        except Exception:  # protobuf's DecodeError; a bug, not a user's mistake
            _warn(f"rank {src}: undecodable message of {len(data)} bytes; ignored")
            return None
        if msg.WhichOneof("msg") == "reports":
            try:
                batches = wire.reports_from_pb(msg.reports)
            except wire.WireError as exc:
                _warn(f"rank {src}: bad reports ({exc}); ignored")
                return None
            mine = self.jobs.get(src)
            got = [Reported(job, items) for job, items in batches if job == mine]
            for ev in got if self.verdicts else ():  # a rank that never receives them: none
                self.counts[ev.job_id] = self.counts.get(ev.job_id, 0) + len(ev.reports)
                self.undecided.add(ev.job_id)
            return got
        kind = msg.WhichOneof("msg")
        if kind not in ("result", "release"):
            _warn(f"rank {src}: unexpected {kind} message; ignored")
            return None
        job_id = msg.result.job_id if kind == "result" else msg.release.job_id
        if self.jobs.get(src) != job_id:
            _warn(f"rank {src}: {kind} for job {job_id}, which it was not given; ignored")
            return None
        del self.jobs[src]
        self.idle.append(src)
        self.counts.pop(job_id, None)
        self.undecided.discard(job_id)
        if kind == "release":  # its trainer process died: the job costs an attempt
            why = clip_error(msg.release.reason) or f"rank {src}'s trainer process died"
            return Lost(job_id, f"{why} in job {job_id}", crash=True)
        r = msg.result
        try:
            metrics, bad = wire.metrics_from_pb(r.metrics)
            error = clip_error(bad or r.error) or None
            state = wire.checkpoint_from_pb(r, "checkpoint", MAX_CHECKPOINT_BYTES)
            ok = r.ok and bad is None and math.isfinite(r.value)
            value: float | None = r.value if ok else None
        except wire.WireError as exc:
            metrics, state, value, error = {}, None, None, f"bad result from rank {src}: {exc}"
        return Done(r.job_id, value, metrics, state, error)


def run_rank0(
    link: Link,
    driver: Driver,
    *,
    out: str | Path | None,
    tick: Callable[[], None] | None = None,
    report: Report | None = None,
    local: LocalBackend | None = None,
) -> dict[str, Any]:
    """Run the study from rank 0 (the workers said Hello), training on ``local`` too if given;
    return the results document. ``tick`` redraws a progress display; ``local`` is closed
    here."""
    welcome(link, driver)
    backend = MpiBackend(link, local, verdicts=driver.stops_on_reports)
    interrupted = False
    try:
        loop.run(driver, backend, tick=tick)
        finish(link, "study finished")
    except KeyboardInterrupt:
        interrupted = True  # mpiexec sends Ctrl-C to every rank: the workers are stopping too
    except BaseException as exc:
        if local is not None:
            local.close(grace=0.0)
        if set(backend.jobs) - {LOCAL}:
            try:
                driver.close()
                if driver.broken is not None and out is not None:
                    write_outcome(
                        driver, out, interrupted=True, report=report
                    )  # keep what was done
            except Exception as unwritten:  # (the same full disk, say): said, then still abort
                _warn(f"error: {unwritten}")
            finally:  # other ranks wait in their jobs: only an abort ends them
                if not isinstance(exc, RuntimeError | ValueError | OSError):
                    traceback.print_exc()
                _warn(
                    f"error: {exc}; aborting the MPI job "
                    "(the same command with the same --journal resumes the study)"
                )
                link.abort(1)
        finish(link, f"error: {exc}")
        raise
    finally:
        if local is not None:
            local.close()
        driver.close()
    return write_outcome(driver, out, interrupted=interrupted, report=report)
