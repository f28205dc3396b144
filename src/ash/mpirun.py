"""``mpiexec -n N ash tune SPEC --transport mpi``: every rank's entry, and the role it takes.

It checks the flags (the same way on every rank, so a mistake stops them all with exit code 2),
joins MPI, shares out kernel threads per node (``ash.scheduler.mpi_link.layout``) and gives each
rank its role: rank 0 the driver, the core and the journal (``ash.scheduler.mpi_driver``), ranks
1..N-1 the trainers (``ash.worker.mpi_worker``). SIGTERM (Slurm's notice at a time limit) counts
as Ctrl-C: rank 0 writes what is done and the same command resumes it from ``--journal``.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import Any

from ash.errors import UserError
from ash.scheduler.mpi_link import Layout, Link, import_mpi, layout
from ash.scheduler.spec import StudySpec


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_mpi(spec: StudySpec, args: argparse.Namespace) -> dict[str, Any] | int:
    """Rank 0: the results document. Other ranks: their exit code (rank 0 reports the study)."""
    if args.workers is not None:
        raise UserError(
            "--workers does not apply to --transport mpi: the workers are ranks 1..N-1 of "
            "mpiexec -n N"
        )
    link = Link(import_mpi())
    if link.size < 2:
        raise UserError(
            "--transport mpi needs at least 2 MPI ranks (rank 0 schedules, the others train): "
            "run it as mpiexec -n 3 ash tune SPEC --transport mpi"
        )
    lay = layout(link, trains=link.rank > 0, requested=args.threads)
    with _sigterm_as_interrupt():
        if link.rank > 0:
            from ash.worker.mpi_worker import serve

            return serve(link, spec, lay.threads)
        return _rank0(link, spec, lay, args)


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("s" if count != 1 else "")


def _rank0(link: Link, spec: StudySpec, lay: Layout, args: argparse.Namespace) -> dict[str, Any]:
    from ash.api import check_trainer
    from ash.scheduler.driver import open_study
    from ash.scheduler.mpi_driver import finish, handshake, run_rank0

    workers = link.size - 1
    counts = sorted(set(lay.threads_by_rank[1:]))
    per = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    print(
        f"ash: mpi: {link.size} ranks ({_n(workers, 'worker')}) on {_n(lay.nodes, 'node')}, "
        f"{per} thread{'s' if counts[-1] > 1 else ''} per rank",
        file=sys.stderr,
        flush=True,
    )
    try:
        check_trainer(spec)
        opened = open_study(spec, journal=args.journal, trace=args.trace)
    except Exception as exc:  # stop the workers, then report it like any other run would
        handshake(link)
        finish(link, f"error: {exc}")
        raise
    handshake(link)
    if opened.resumed_records:
        print(
            f"ash: mpi: resumed {spec.name} from {args.journal}: {opened.resumed_records} "
            f"records, {opened.lost_on_resume} in-flight jobs lost (re-issued)",
            file=sys.stderr,
            flush=True,
        )
    title = f"{spec.name}: {spec.algorithm}, {workers} MPI ranks x {per} threads"
    return run_rank0(link, opened.driver, title=title, out=args.out, progress=not args.quiet)
