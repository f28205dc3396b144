"""Rank 0 of ``mpiexec -n N ash tune SPEC --transport mpi``: a Driver fed over MPI.

One loop, like the embedded pool (worker/pool.py): wait for Results from the worker ranks (each
runs one job at a time), hand them to the driver, then offer work to idle ranks; assignments
leave only after ``driver.sync()``, so every job a worker sees is in the journal. Rank 0 starts
by collecting every rank's Hello and answering Welcome, and ends by sending Finished to each, so
all ranks exit 0. (A study that cannot start, a bad spec, journal or trainer, is settled before
this: ``ash.mpirun`` has every rank agree on it.)

With ``--rank0-trains`` rank 0 is a worker too: one slot process beside the driver
(``ash.worker.slots``, as in the embedded pool: its own thread budget, ``trainer.timeout_s``
enforced by killing it), fed the same way as a worker rank and traced as ``rank0``. The waits
between MPI polls are then waits on that slot's pipe, so its results are taken at once. A
trainer that kills the slot process costs that job (traced ``lost``, re-issued), not the job.

MPI gives no way to survive a rank's death (mpiexec ends the whole job), so there are no leases
here: a study outlives a crash through its journal, and the same command started again resumes
it. If rank 0 itself fails while jobs are in flight it calls MPI_Abort rather than leave worker
ranks blocked; with none in flight it sends Finished first and the error is reported normally.
"""

from __future__ import annotations

import math
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ash.link import wire
from ash.link.metrics import clip_error
from ash.link.mpi import TAG_DOWN, TAG_UP, Link
from ash.proto import ash_pb2 as pb
from ash.scheduler.driver import Assignment, Driver

if TYPE_CHECKING:
    from ash.worker.slots import Died, Finished, Slots

LOCAL = 0  # rank 0's own slot (--rank0-trains), in the same books as the worker ranks
MAX_CHECKPOINT_BYTES = 1 << 40  # the workers are the job's own processes


class MpiStuckError(RuntimeError):
    """Nothing in flight and nothing to hand out: the study cannot go on."""


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


class MpiScheduler:
    """Feeds the worker ranks (and ``local``, rank 0's slot) from a Driver; the ranks must have
    said Hello."""

    def __init__(self, link: Link, driver: Driver, local: Slots | None = None) -> None:
        self.link = link
        self.driver = driver
        self.local = local
        # rank 0 last: when there are fewer jobs than workers, the ranks that only train get them
        self.idle: deque[int] = deque(
            [*range(1, link.size), *([LOCAL] if local is not None else [])]
        )
        self.busy: dict[int, int] = {}  # rank -> job id
        self.local_events: list[Finished | Died] = []

    def run(self, tick: Callable[[], None] | None = None, tick_every: float = 0.25) -> None:
        """Serve the worker ranks until the driver's study is finished."""
        last = time.monotonic()
        self._dispatch()
        while not self.driver.finished:
            if not self.busy:
                raise MpiStuckError("no job in flight and none to hand out: the study is stuck")
            sleep = self._sleep if self.local is not None else None
            got = self.link.wait(self.link.any_source, TAG_UP, timeout=tick_every, sleep=sleep)
            while got is not None:  # take every waiting result, then decide once
                self._handle(*got)
                got = self.link.poll(self.link.any_source, TAG_UP)
            self._settle_local()
            self._dispatch()
            now = time.monotonic()
            if tick is not None and now - last >= tick_every:
                tick()
                last = now

    def _dispatch(self) -> None:
        out: list[tuple[int, Assignment]] = []
        while self.idle:
            rank = self.idle[0]
            a = self.driver.request(f"rank{rank}")
            if a is None:
                break
            self.idle.popleft()
            self.busy[rank] = a.job.job_id
            out.append((rank, a))
        self.driver.sync()  # journal first: no worker sees a decision the journal lacks
        for rank, a in out:
            if rank == LOCAL:
                self._submit_local(a)
            else:
                self.link.send(wire.assignment_to_pb(a), rank, TAG_DOWN)

    def _submit_local(self, a: Assignment) -> None:
        assert self.local is not None
        j = a.job
        state = a.checkpoint if isinstance(a.checkpoint, bytes) else None  # never a reference
        self.local.submit(self.local.idle()[0], (j.job_id, j.config, j.start, j.stop, state))

    def _sleep(self, pause: float) -> bool:
        """Wait up to ``pause`` seconds on rank 0's slot; True once it has news."""
        assert self.local is not None
        self.local_events += self.local.wait(pause)
        return bool(self.local_events)

    def _settle_local(self) -> None:
        from ash.worker.slots import Died

        events, self.local_events = self.local_events, []
        for ev in events:
            if self.busy.get(LOCAL) != ev.job_id:
                _warn(f"rank 0: result for job {ev.job_id}, which it was not given; ignored")
                continue
            del self.busy[LOCAL]
            self.idle.append(LOCAL)
            if isinstance(ev, Died):  # the slot is restarted; the job is re-issued
                why = f"rank 0's trainer process died (exit code {ev.exitcode}) in job {ev.job_id}"
                self.driver.errors.append((-1, why))
                self.driver.lose(ev.job_id, why=why)
            else:
                self.driver.complete(ev.job_id, ev.value, ev.metrics, ev.state, ev.error)

    def _handle(self, src: int, data: bytes) -> None:
        try:
            msg = pb.WorkerMessage.FromString(data)
        except Exception:  # protobuf's DecodeError; a bug, not a user's mistake
            _warn(f"rank {src}: undecodable message of {len(data)} bytes; ignored")
            return
        if msg.WhichOneof("msg") != "result":
            _warn(f"rank {src}: unexpected {msg.WhichOneof('msg')} message; ignored")
            return
        r = msg.result
        if self.busy.get(src) != r.job_id:
            _warn(f"rank {src}: result for job {r.job_id}, which it was not given; ignored")
            return
        del self.busy[src]
        self.idle.append(src)
        try:
            metrics, bad = wire.metrics_from_pb(r.metrics)
            error = clip_error(bad or r.error) or None
            state = wire.checkpoint_from_pb(r, "checkpoint", MAX_CHECKPOINT_BYTES)
            ok = r.ok and bad is None and math.isfinite(r.value)
            value: float | None = r.value if ok else None
        except wire.WireError as exc:
            metrics, state, value, error = {}, None, None, f"bad result from rank {src}: {exc}"
        self.driver.complete(r.job_id, value, metrics, state, error)


def stop_local(local: Slots, grace: float = 2.0) -> None:
    """Stop rank 0's slot: it finishes its job within ``grace`` seconds or is killed (it ignores
    SIGINT and SIGTERM, and multiprocessing would wait for it at exit)."""
    processes = [s.process for s in local.slots]
    local.shutdown(grace)
    for p in processes:
        if p.is_alive():
            p.kill()
            p.join(timeout=5)


def run_rank0(
    link: Link,
    driver: Driver,
    *,
    title: str,
    out: str | Path | None,
    progress: bool,
    local: Slots | None = None,
) -> dict[str, Any]:
    """Run the study from rank 0 (the workers said Hello), training on ``local`` too if given;
    return the results document. ``local`` is shut down here."""
    from ash.progress import Progress, from_driver

    welcome(link, driver)
    sched = MpiScheduler(link, driver, local)
    interrupted = False
    try:
        with Progress(lambda: from_driver(driver), title, enabled=progress) as view:
            sched.run(tick=view.tick)
        finish(link, "study finished")
    except KeyboardInterrupt:
        interrupted = True  # mpiexec sends Ctrl-C to every rank: the workers are stopping too
    except BaseException as exc:
        if local is not None:
            stop_local(local, grace=0.0)
        if set(sched.busy) - {LOCAL}:
            driver.close()
            if driver.broken is not None and out is not None:
                _write(driver, out, interrupted=True)  # a full disk: keep what was done
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
            stop_local(local)
        driver.close()
    return _write(driver, out, interrupted=interrupted)


def _write(driver: Driver, out: str | Path | None, *, interrupted: bool) -> dict[str, Any]:
    from ash.report import write_report

    extra: dict[str, Any] = {
        "interrupted": interrupted,
        "errors": [{"trial": t, "error": msg} for t, msg in driver.errors[:100]],
    }
    if driver.broken is not None:
        extra["error"] = driver.broken
    doc = {**driver.results.to_json(), **extra}
    if out is not None:
        write_report(doc, driver.results.write(out, extra))
    return doc
