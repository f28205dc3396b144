"""``mpiexec -n N ash tune SPEC --transport mpi``: every rank's entry, and the role it takes.

It joins MPI, then has every rank check what it was given (the flags and the spec; rank 0 also
the trainer) and agree on the outcome (``agree``): a mistake stops every rank with the same exit
code (2 for the user's), printed once by the lowest rank that made it (rank 0 when all did),
never once per rank, and no rank is left blocked in MPI. Then it shares out kernel threads per
node (``ash.link.mpi.layout``), and every rank starts what it needs, again agreed on: rank 0
opens the study, and each rank that trains starts its trainer's slot process (spawned: a
trainer that kills its process costs its job, not the rank) and waits until it has its trainer
and dataset. Then each rank takes its role: rank 0 the driver, the core and the journal
(``ash.scheduler.mpi_driver``), plus its slot beside them with ``--rank0-trains``; ranks 1..N-1
feed their slots (``ash.worker.mpi_worker``). SIGTERM (Slurm's notice at a time limit) counts
as Ctrl-C: rank 0 writes what is done and the same command resumes it from ``--journal``.

Mistakes found before MPI starts (argparse, a missing mpi4py) are made alike by every rank, which
all exit 2; ranks other than 0 keep quiet about them (``launched_rank`` reads the rank the
launcher put in the environment).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ash.errors import EXIT_INTERRUPTED, EXIT_USAGE, UserError

if TYPE_CHECKING:
    from ash.integrations import Callbacks
    from ash.link.mpi import Layout, Link
    from ash.scheduler.driver import Opened
    from ash.spec import StudySpec
    from ash.worker.slots import Slots

T = TypeVar("T")
# where launchers put a process's rank: MPICH/Intel MPI (Hydra), PMIx (Open MPI 5, srun
# --mpi=pmix), Open MPI, MVAPICH, and srun itself
RANK_VARIABLES = (
    "PMI_RANK",
    "PMIX_RANK",
    "OMPI_COMM_WORLD_RANK",
    "MV2_COMM_WORLD_RANK",
    "SLURM_PROCID",
)


def launched_rank() -> int:
    """This process's rank as its launcher set it in the environment (read without starting
    MPI); 0 when it was not launched as one of several."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def wants_mpi(argv: Sequence[str]) -> bool:
    """Whether these command-line arguments ask for ``--transport mpi`` (before argparse reads
    them, as it would: ``--transport mpi``, ``--transport=mpi``, or an unambiguous prefix)."""
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if len(name) < len("--tran") or not "--transport".startswith(name):
            continue
        if not eq:
            value = argv[i + 1] if i + 1 < len(argv) else ""
        if value == "mpi":
            return True
    return False


@contextlib.contextmanager
def only_rank0_speaks(argv: Sequence[str] | None = None) -> Iterator[None]:
    """On ranks other than 0 of ``--transport mpi``, silence stdout and stderr here: for what
    every rank says alike before MPI starts (argparse's usage errors and help). Other commands
    keep their say, e.g. independent studies started by one ``srun`` each print their own."""
    args = sys.argv[1:] if argv is None else argv
    if launched_rank() == 0 or not wants_mpi(args):
        yield
        return
    with (
        open(os.devnull, "w") as null,
        contextlib.redirect_stdout(null),
        contextlib.redirect_stderr(null),
    ):
        yield


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Stop(Exception):
    """A rank could not start; every rank returns ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def agree(link: Link, step: Callable[[], T], undo: Callable[[T], None] | None = None) -> T:
    """Run ``step`` on every rank (collective) and return its value if it succeeded on every
    rank; else raise ``_Stop`` with the same exit code on every rank. The lowest rank that
    failed prints its error, once: one line for a user's mistake (exit code 2), the traceback
    for anything else (1). ``undo`` releases this rank's value when another rank failed."""
    import numpy as np

    code, error, value, ok = 0, "", None, False
    try:
        value, ok = step(), True
    except UserError as exc:
        code, error = EXIT_USAGE, f"error: {exc}"
    except KeyboardInterrupt:  # still meet the others in the collective: none is left in it
        code, error = EXIT_INTERRUPTED, "interrupted"
    except Exception:
        code, error = 1, traceback.format_exc().rstrip()
    codes = np.zeros(link.size, dtype=np.int64)
    late = False
    try:
        link.comm.Allgather(np.array([code], dtype=np.int64), codes)
    except KeyboardInterrupt:  # a Ctrl-C that came while in the collective: it completed
        late = True
    failed = [rank for rank in range(link.size) if codes[rank]]
    if not failed:
        if late:  # every rank's step succeeded: the next collective meets this interrupt
            raise KeyboardInterrupt
        return value  # type: ignore[return-value]  # step() returned it
    if ok and undo is not None:
        undo(value)  # type: ignore[arg-type]
    first = failed[0]
    interrupted = codes[first] == EXIT_INTERRUPTED
    if link.rank == (0 if interrupted else first):  # a Ctrl-C reached every rank: rank 0 says it
        who = "ash" if first == 0 or interrupted else f"ash: rank {first}"
        print(f"{who}: {error or 'interrupted'}", file=sys.stderr, flush=True)
    raise _Stop(int(codes[first]))


def run_mpi(args: argparse.Namespace) -> dict[str, Any] | int:
    """Rank 0: the results document. Other ranks, or every rank when the study could not
    start: the exit code (rank 0 reports the study, or the first rank that failed its error)."""
    from ash.link.mpi import Link, import_mpi, layout

    try:
        mpi = import_mpi()
    except UserError:
        if launched_rank() > 0:
            return EXIT_USAGE  # every rank lacks it alike; rank 0 says so
        raise
    link = Link(mpi)
    rank0_trains = bool(getattr(args, "rank0_trains", False))

    hooks: list[Callbacks] = []  # rank 0's tracking callbacks (--mlflow, --tensorboard)

    def start() -> Started:
        """Rank 0: the study opened (and its trainer slot with --rank0-trains); the others:
        their trainer slot, its trainer and dataset loaded."""
        from ash.worker.mpi_worker import ready, start_slot

        if link.rank > 0:
            return Started(None, ready(start_slot(spec, lay.threads, f"rank{link.rank}-slot")))
        # rank 0's slot imports its trainer while the study is opened
        slots = start_slot(spec, lay.threads, "rank0-slot") if rank0_trains else None
        try:
            opened = _open(spec, args)
        except BaseException:
            if slots is not None:
                slots.shutdown(grace=0.0)
            raise
        try:  # a store that cannot be opened stops every rank, said once (exit 2)
            hooks.extend(_callbacks(spec, args, opened))
            if slots is not None:
                ready(slots)
        except BaseException:
            opened.driver.close()
            raise
        return Started(opened, slots)

    try:
        spec = agree(link, lambda: _check(link, args, rank0_trains))
        lay = layout(link, trains=link.rank > 0 or rank0_trains, requested=args.threads)
        started = agree(link, start, Started.close)
    except _Stop as stop:
        return stop.code
    with _sigterm_as_interrupt():
        if link.rank > 0:
            from ash.worker.mpi_worker import serve

            assert started.slots is not None
            return serve(link, started.slots)
        assert started.opened is not None
        doc = None
        try:
            doc = _rank0(link, spec, lay, started, args)
        finally:
            for h in hooks:
                h.close(doc)
        return doc


@dataclass
class Started:
    """What a rank started once every rank could: rank 0's study, a training rank's slot."""

    opened: Opened | None
    slots: Slots | None

    def close(self) -> None:
        if self.slots is not None:
            self.slots.shutdown(grace=0.0)
        if self.opened is not None:
            self.opened.driver.close()


def _check(link: Link, args: argparse.Namespace, rank0_trains: bool) -> StudySpec:
    """Every rank: the flags and the spec; rank 0 also what ``preflight`` checks (the trainer
    too, even when it does not train, as every other transport does). The trainers of the ranks
    that train are set up in their slots next (``start_slot``), once the threads are known."""
    from ash.preflight import preflight
    from ash.spec import load_spec

    if args.workers is not None:
        raise UserError(
            "--workers does not apply to --transport mpi: the workers are the ranks of "
            "mpiexec -n N (1..N-1, and 0 with --rank0-trains)"
        )
    if link.size < 2 and not rank0_trains:
        raise UserError(
            "--transport mpi needs at least 2 MPI ranks (rank 0 schedules, the others train): "
            "run it as mpiexec -n 3 ash tune SPEC --transport mpi, or add --rank0-trains"
        )
    spec = load_spec(args.spec)
    if link.rank == 0:
        preflight(
            spec, out=args.out, trace=args.trace, journal=args.journal
        )  # every problem, in one error
    return spec


def _open(spec: StudySpec, args: argparse.Namespace) -> Opened:
    from ash.scheduler.driver import open_study

    return open_study(spec, journal=args.journal, trace=args.trace)


def _callbacks(spec: StudySpec, args: argparse.Namespace, opened: Opened) -> list[Callbacks]:
    mlflow, tensorboard = getattr(args, "mlflow", None), getattr(args, "tensorboard", None)
    if not (mlflow or tensorboard):
        return []
    from ash.integrations import Callbacks, from_flags

    hooks = Callbacks(from_flags(mlflow, tensorboard), spec)
    hooks.attach(opened.driver)
    return [hooks]


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("s" if count != 1 else "")


def _rank0(
    link: Link,
    spec: StudySpec,
    lay: Layout,
    started: Started,
    args: argparse.Namespace,
) -> dict[str, Any]:
    from ash.progress import Progress, from_driver
    from ash.report import write_report
    from ash.scheduler.mpi_driver import handshake, run_rank0

    assert started.opened is not None
    opened = started.opened
    driver = opened.driver
    rank0_trains = started.slots is not None
    local = None
    if started.slots is not None:
        from ash.transports.local import SlotBackend

        local = SlotBackend(
            driver,
            started.slots,
            died="rank 0's trainer process died (exit code {code}) in job {job}",
        )
    try:
        workers = link.size - 1 + (1 if rank0_trains else 0)
        counts = sorted({t for t in lay.threads_by_rank if t > 0})
        per = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        who = _n(workers, "worker") + (": rank 0 trains too" if rank0_trains else "")
        print(
            f"ash: mpi: {_n(link.size, 'rank')} ({who}) on {_n(lay.nodes, 'node')}, "
            f"{per} thread{'s' if counts[-1] > 1 else ''} per rank",
            file=sys.stderr,
            flush=True,
        )
        handshake(link)
        if opened.resumed_records:
            print(
                f"ash: mpi: resumed {spec.name} from {args.journal}: {opened.resumed_records} "
                f"records, {opened.lost_on_resume} in-flight jobs lost (re-issued)",
                file=sys.stderr,
                flush=True,
            )
        title = f"{spec.name}: {spec.algorithm}, {workers} MPI workers x {per} threads"
        with Progress(lambda: from_driver(driver), title, enabled=not args.quiet) as view:
            return run_rank0(
                link, driver, out=args.out, tick=view.tick, report=write_report, local=local
            )
    finally:
        if local is not None:
            local.close()
