"""The MPI link of ``ash tune --transport mpi``, shared by rank 0 and the worker ranks.

It owns what both ends need from MPI: importing mpi4py lazily (with an error naming the ``mpi``
extra), the two message tags, moving ash.proto messages as raw bytes, waiting for them, and each
rank's thread budget. Messages are the gRPC wire's own (``pb.WorkerMessage`` up to rank 0,
``pb.SchedulerMessage`` down), serialized and sent as ``MPI.BYTE`` buffers whose size the
receiver probes first: nothing a peer sends is ever unpickled. Waits poll (``Iprobe``, then
sleeps that double up to 1 ms, and up to 10 ms once nothing came for 0.1 s) because a blocking
receive busy-spins a core in MPICH and Open MPI, and an idle rank must not take it from the
ranks that train.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ash.cores import cpus as affinity
from ash.errors import UserError

TAG_UP = 11  # worker rank -> rank 0: pb.WorkerMessage
TAG_DOWN = 12  # rank 0 -> worker rank: pb.SchedulerMessage
TAG_VERDICT = 13  # rank 0 -> worker rank, during a job: pb.SchedulerMessage(verdicts)
MIN_PAUSE = 1e-6  # the first sleeps are the kernel's shortest (~50 us), then they double
MAX_PAUSE = 1e-3
QUIET = 0.1  # after this long without a message (jobs that take a while), sleep longer:
QUIET_PAUSE = 10e-3  # an idle rank then wakes 100 times a second, not 1,000

INSTALL_HINT = (
    "pip install 'ash-hpo[mpi]' (mpi4py and MPICH's mpiexec), or mpi4py built against your "
    "site's MPI: env MPICC=mpicc pip install --no-binary mpi4py mpi4py"
)


class Message(Protocol):
    def SerializeToString(self) -> bytes: ...


def import_mpi() -> Any:
    """mpi4py's MPI module (initialising MPI), or a UserError that says how to get it."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise UserError(f"--transport mpi needs mpi4py ({exc}): {INSTALL_HINT}") from None
    except RuntimeError as exc:  # mpi4py is there but cannot load an MPI library
        raise UserError(
            f"--transport mpi: mpi4py cannot load MPI ({exc}): {INSTALL_HINT}"
        ) from None
    return MPI


class Link:
    """This rank's end of the job's MPI_COMM_WORLD."""

    def __init__(self, mpi: Any) -> None:
        self.mpi = mpi
        self.comm = mpi.COMM_WORLD
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()
        self.any_source: int = mpi.ANY_SOURCE
        self._quiet_since: float | None = None  # when waits last started finding nothing

    def send(self, msg: Message, dest: int, tag: int) -> None:
        self.comm.Send([msg.SerializeToString(), self.mpi.BYTE], dest=dest, tag=tag)

    def poll(self, source: int, tag: int) -> tuple[int, bytes] | None:
        """A waiting message as (source rank, bytes), or None if there is none."""
        status = self.mpi.Status()
        if not self.comm.Iprobe(source=source, tag=tag, status=status):
            return None
        src: int = status.Get_source()
        buf = bytearray(status.Get_count(self.mpi.BYTE))
        self.comm.Recv([buf, self.mpi.BYTE], source=src, tag=tag)
        return src, bytes(buf)

    def wait(
        self,
        source: int,
        tag: int,
        timeout: float | None = None,
        sleep: Callable[[float], bool] | None = None,
    ) -> tuple[int, bytes] | None:
        """The next message from ``source``; None once ``timeout`` seconds passed without one.

        ``sleep(seconds)`` replaces the pauses between polls: it may wait on something else
        (rank 0's own trainer process) and returns True to end the wait early (None)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.0
        while True:
            got = self.poll(source, tag)
            if got is not None:
                self._quiet_since = None
                return got
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return None
            if self._quiet_since is None:
                self._quiet_since = now
            if sleep is not None:
                if sleep(pause):
                    self._quiet_since = None
                    return None
            elif pause:
                time.sleep(pause)
            cap = MAX_PAUSE if now - self._quiet_since < QUIET else QUIET_PAUSE
            pause = min(cap, 2 * pause if pause else MIN_PAUSE)

    def abort(self, code: int) -> None:
        """End every rank of the job now (MPI_Abort); does not return."""
        self.comm.Abort(code)


@dataclass(frozen=True)
class Layout:
    threads: int  # this rank's kernel threads
    nodes: int
    threads_by_rank: list[int]  # every rank's budget (0 for a rank that does not train)


def layout(link: Link, *, trains: bool, requested: int | str) -> Layout:
    """Every rank's thread budget; collective (every rank calls it).

    ``auto``: the cores this node's ranks may run on (the union of their CPU affinities, which
    is every CPU unless Slurm or the launcher restricts it) shared out among the node's
    training ranks (found with ``Split_type(COMM_TYPE_SHARED)``), but never more than this
    rank's own affinity, so ranks that Open MPI binds to a core get one thread each."""
    import numpy as np

    mpi = link.mpi
    node = link.comm.Split_type(mpi.COMM_TYPE_SHARED)
    try:
        cpus = affinity()
        width = np.array([max(cpus) + 1], dtype=np.int64)
        node.Allreduce(mpi.IN_PLACE, width, op=mpi.MAX)
        mask = np.zeros(int(width[0]), dtype=np.uint8)
        mask[cpus] = 1
        node.Allreduce(mpi.IN_PLACE, mask, op=mpi.BOR)
        trainers = np.array([1 if trains else 0], dtype=np.int64)
        node.Allreduce(mpi.IN_PLACE, trainers, op=mpi.SUM)
        nodes = np.array([1 if node.Get_rank() == 0 else 0], dtype=np.int64)
    finally:
        node.Free()
    link.comm.Allreduce(mpi.IN_PLACE, nodes, op=mpi.SUM)
    if not trains:
        threads = 0
    elif requested == "auto":
        threads = max(1, min(len(cpus), int(mask.sum()) // max(1, int(trainers[0]))))
    else:
        threads = int(requested)
    everyone = np.zeros(link.size, dtype=np.int64)
    link.comm.Allgather(np.array([threads], dtype=np.int64), everyone)
    return Layout(threads, int(nodes[0]), [int(x) for x in everyone])
