"""A worker rank (1..N-1) of ``mpiexec -n N ash tune SPEC --transport mpi``.

The rank trains nothing itself: its trainer runs in one slot process (``ash.worker.slots``, as
in the embedded ``ash tune``), started with the spawn method (``start_slot``: a fork after
MPI_Init is unsafe, and the slot never imports mpi4py), so that a trainer that kills its process
(``os._exit``, a segfault, the OOM killer) costs one job, not the rank, which would take the
whole MPI job down with it. ``ready`` waits until the slot has its trainer and dataset: it
runs while every rank agrees that the study can start (``ash.transports.mpi``), so a trainer
that cannot be set up on some node stops every rank, said once.

``serve`` says Hello to rank 0 and waits for its Welcome (or Finished), then hands each
Assignment to the slot and answers with a Result (metrics and checkpoint; a trainer's exception,
or ``trainer.timeout_s``, for which the slot's process is killed and restarted, fails it), or
with a Release when the slot's process died: rank 0 then charges the job an attempt, as the
embedded pool does, and the rank goes on with a fresh slot. Finished ends the rank (exit 0).
While a job runs the rank waits on the slot's pipe (between MPI polls for verdicts when the
study stops on reports), so a result leaves as soon as it is there.
A slot that cannot be restarted (its trainer's set-up now fails, or it keeps dying before it is
ready) aborts the MPI job with that error; the same command resumes from rank 0's ``--journal``.

Stopping on reports (``[asha] stop_on = "reports"``): a ``(config, ctx)`` trainer's reports go
up to rank 0 as they come; rank 0 sends its verdicts on TAG_VERDICT, which the rank polls while
the job runs and passes on to the slot (``Slots.stop`` and ``Slots.decided``: the trainer's
``ctx.should_stop`` and its milestone reports, which wait for the verdict, read them there).
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

from ash import __version__
from ash.link import wire
from ash.link.mpi import MAX_PAUSE, TAG_DOWN, TAG_UP, TAG_VERDICT, Link
from ash.proto import ash_pb2 as pb
from ash.spec import StudySpec
from ash.worker.slots import Died, Finished, SlotError, Slots

MAX_CHECKPOINT_BYTES = 1 << 40  # rank 0 is the job's own process: no limit to defend
READY_POLL_S = 0.5
BUSY_WAIT_S = 0.25  # how often a blocked wait on a running job checks trainer.timeout_s


def start_slot(spec: StudySpec, threads: int, name: str) -> Slots:
    """One slot for this rank's trainer, starting (``ready`` waits until it has its trainer).
    Spawned, never forked (no trainer object is given: the slot builds it from the spec)."""
    slots = Slots(spec, 1, threads, prefix=name, verdicts=True)
    assert not slots.forked
    return slots


def ready(slots: Slots) -> Slots:
    """``slots`` once they have their trainer and dataset loaded; a SlotError (a user's error)
    saying why not if they cannot (they are then shut down)."""
    try:
        while not all(s.ready for s in slots.slots):
            slots.wait(READY_POLL_S)  # no job runs: only ready, a set-up error or a death
    except BaseException:
        slots.shutdown(grace=0.0)
        raise
    return slots


def result_of(ev: Finished) -> pb.WorkerMessage:
    r = pb.Result(
        job_id=ev.job_id,
        ok=ev.value is not None,
        value=ev.value or 0.0,
        error=ev.error or "",
        seconds=ev.seconds,
        threads=ev.threads,
    )
    wire.metrics_to_pb(ev.metrics, r.metrics)
    wire.checkpoint_to_pb(ev.state, r.checkpoint)
    return pb.WorkerMessage(result=r)


class Rank:
    """This rank's end of the study: the link to rank 0 and the slot that trains."""

    def __init__(self, link: Link, slots: Slots) -> None:
        self.link = link
        self.slots = slots
        # rank 0 sends verdicts while jobs run only when the study stops on reports; otherwise
        # the rank blocks on the slot's pipe while it trains (no polling beside the trainer)
        self.verdicts = slots.spec.schedule.stop_on == "reports"
        self.events: list[Finished | Died] = []
        self.news = False  # reports went up: poll for the verdict at once
        slots.on_report = self._reported

    def _reported(self, job_id: int, batch: list[Any]) -> None:
        self.link.send(wire.reports_to_pb({job_id: batch}), 0, TAG_UP)
        self.news = True

    def _sleep(self, pause: float) -> bool:
        """Wait up to ``pause`` seconds on the slot (between MPI polls); True on news."""
        self.events += self.slots.wait(pause)
        news, self.news = self.news or bool(self.events), False
        return news

    def _idle(self, pause: float) -> bool:
        """A pause between polls for rank 0's next message: the idle slot is minded only in
        the longer ones (a selector costs more CPU than a sleep, taken from rank 0 and the
        trainers while jobs are short)."""
        if pause < MAX_PAUSE:
            time.sleep(pause)
            return False
        return self._sleep(pause)

    def next(self) -> pb.SchedulerMessage:
        """Rank 0's next message (TAG_DOWN), minding the idle slot meanwhile (a death of it is
        restarted; a set-up that now fails raises SlotError)."""
        while True:
            got = self.link.wait(0, TAG_DOWN, sleep=self._idle)
            self.events.clear()  # no job runs: nothing to report
            if got is not None:
                msg: pb.SchedulerMessage = pb.SchedulerMessage.FromString(got[1])
                return msg

    def run(self, a: pb.Assignment) -> pb.WorkerMessage:
        """Train ``a`` in the slot: its Result, or a Release if the slot's process died."""
        try:
            config = wire.config_from_pb(a.config, "assignment.config")
            state = wire.checkpoint_from_pb(a, "checkpoint", MAX_CHECKPOINT_BYTES)
        except wire.WireError as exc:
            r = pb.Result(job_id=a.job_id, ok=False, error=f"bad assignment: {exc}")
            return pb.WorkerMessage(result=r)
        checkpoint = state if isinstance(state, bytes) else None  # never a reference here
        job = (a.job_id, config, a.start, a.stop, checkpoint, a.trial, a.rung)
        self.slots.submit(self.slots.slots[0], job)
        while True:
            for ev in self.events:
                if ev.job_id != a.job_id:
                    continue
                self.events.clear()
                if isinstance(ev, Died):
                    why = f"rank {self.link.rank}'s trainer process died (exit code {ev.exitcode})"
                    return pb.WorkerMessage(release=pb.Release(job_id=a.job_id, reason=why))
                return result_of(ev)
            self.events.clear()
            if not self.verdicts:
                self.events += self.slots.wait(BUSY_WAIT_S)
                continue
            got = self.link.wait(0, TAG_VERDICT, sleep=self._sleep)
            if got is not None:
                self._verdicts(got[1])

    def _verdicts(self, data: bytes) -> None:
        try:
            msg = pb.SchedulerMessage.FromString(data)
        except Exception:  # protobuf's DecodeError: rank 0 is this program; ignore it
            return
        for v in msg.verdicts.verdicts:  # for another job than the running one: ignored
            if v.stop:
                self.slots.stop(v.job_id)
            self.slots.decided(v.job_id, v.reports)

    def drain(self) -> None:
        """Receive the verdicts left for jobs that ended (no message is left unreceived)."""
        while self.link.poll(0, TAG_VERDICT) is not None:
            pass


def serve(link: Link, slots: Slots) -> int:
    """Work for rank 0 until it says Finished; returns the rank's exit code. ``slots`` (from
    ``start_slot``) is shut down here."""
    hello = pb.Hello(worker_id=f"rank{link.rank}", slots=1, version=__version__)
    link.send(pb.WorkerMessage(hello=hello), 0, TAG_UP)
    rank = Rank(link, slots)
    grace = 2.0
    try:
        if rank.next().WhichOneof("msg") != "welcome":
            return 0  # rank 0 stopped before the first job and reports why
        while True:
            msg = rank.next()
            kind = msg.WhichOneof("msg")
            if kind == "finished":
                return 0
            if kind == "assignment":
                link.send(rank.run(msg.assignment), 0, TAG_UP)
    except KeyboardInterrupt:  # mpiexec forwards Ctrl-C to every rank; rank 0 reports it
        grace = 0.0  # the slot ignores SIGINT: a job it runs is cut short here
        return 130
    except SlotError as exc:  # the slot cannot be restarted: this rank cannot go on
        grace = 0.0
        print(
            f"ash: rank {link.rank}: error: {exc}; aborting the MPI job "
            "(the same command with the same --journal resumes the study)",
            file=sys.stderr,
            flush=True,
        )
        slots.shutdown(grace)
        link.abort(1)
        return 1  # (Abort does not return)
    finally:
        with contextlib.suppress(Exception):
            rank.drain()
        slots.shutdown(grace)
