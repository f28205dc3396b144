"""A worker rank (1..N-1) of ``mpiexec -n N ash tune SPEC --transport mpi``.

The rank builds its trainer, says Hello to rank 0 and then waits for ``pb.SchedulerMessage``s:
each Assignment is trained in this process (``make_trainer`` + ``run_job``, under threadpoolctl
limits set in this thread, the one that calls the kernel) and answered with a Result carrying
the metrics and the checkpoint; Finished ends the rank with exit code 0. A trainer's exception
fails that result, not the rank; a rank that dies takes the MPI job down with it (the study
resumes from rank 0's ``--journal``).
"""

from __future__ import annotations

import sys
import time

from ash import __version__
from ash.proto import ash_pb2 as pb
from ash.scheduler import wire
from ash.scheduler.mpi_link import TAG_DOWN, TAG_UP, Link
from ash.scheduler.spec import StudySpec
from ash.worker.trainers import TrainerError, TrainerFn, make_trainer, run_job

MAX_CHECKPOINT_BYTES = 1 << 40  # rank 0 is the job's own process: no limit to defend


def train(trainer: TrainerFn, metric: str, a: pb.Assignment) -> pb.Result:
    """Run one assignment; whatever goes wrong becomes a failed Result."""
    t0 = time.perf_counter()
    try:
        config = wire.config_from_pb(a.config, "assignment.config")
        checkpoint = wire.checkpoint_from_pb(a, "checkpoint", MAX_CHECKPOINT_BYTES)
    except wire.WireError as exc:
        return pb.Result(job_id=a.job_id, ok=False, error=f"bad assignment: {exc}")
    out = run_job(trainer, metric, config, a.start, a.stop, checkpoint)
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


def serve(link: Link, spec: StudySpec, threads: int) -> int:
    """Work for rank 0 until it says Finished; returns the rank's exit code."""
    from threadpoolctl import threadpool_limits

    from ash.worker.datasets import DataError

    try:
        trainer = make_trainer(spec)
        data = getattr(trainer, "data", None)
        if data is not None:
            data()  # load the dataset now, as rank 0 did to check it
    except (TrainerError, DataError) as exc:  # rank 0 checked the same spec: this node differs
        print(f"ash: rank {link.rank}: error: {exc}", file=sys.stderr, flush=True)
        link.abort(2)
        return 2
    hello = pb.Hello(worker_id=f"rank{link.rank}", slots=1, version=__version__)
    link.send(pb.WorkerMessage(hello=hello), 0, TAG_UP)
    try:
        with threadpool_limits(limits=threads):
            while True:
                got = link.wait(0, TAG_DOWN)
                assert got is not None
                msg = pb.SchedulerMessage.FromString(got[1])
                kind = msg.WhichOneof("msg")
                if kind == "finished":
                    return 0
                if kind == "assignment":
                    result = train(trainer, spec.metric, msg.assignment)
                    link.send(pb.WorkerMessage(result=result), 0, TAG_UP)
    except KeyboardInterrupt:  # mpiexec forwards Ctrl-C to every rank; rank 0 reports it
        return 130
