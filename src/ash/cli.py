"""Command-line entry points: ``ash`` (subcommands), ``ash-scheduler`` and ``ash-worker``.

This module only parses arguments and maps user errors to exit code 2 with a one-line message
(no traceback); each command's work lives in the module it names, imported lazily so that
``ash --help`` stays fast and optional dependencies stay optional.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ash import __version__
from ash.argtypes import non_negative_int, number, positive_int
from ash.errors import guard

_fraction = number(lambda x: 0 <= x <= 1, "between 0 and 1")
_alpha = number(lambda x: x > 1, "> 1 (finite mean)")


def _prefetch(text: str) -> str:
    return "auto" if text == "auto" else str(non_negative_int(text))


def _threads(text: str) -> int | str:
    return "auto" if text == "auto" else positive_int(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ash", description="ASHA hyperparameter tuning (asynchronous successive halving)."
    )
    p.add_argument("--version", action="version", version=f"ash {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tune = sub.add_parser(
        "tune",
        help="run a study on this machine (scheduler and workers embedded)",
        description="Run a study with N local worker processes, live progress and a report.",
    )
    tune.add_argument("spec", help="study spec (TOML)")
    tune.add_argument("--workers", type=positive_int, help="worker processes (default: cores)")
    tune.add_argument(
        "--threads",
        type=_threads,
        default="auto",
        help="kernel threads per worker: auto (cores / workers) or a number",
    )
    tune.add_argument("--out", help="write results.json, trials.csv and the report here")
    tune.add_argument("--trace", help="append the trace (JSON lines) here")
    tune.add_argument("--journal", help="journal file for crash-safe resume")
    tune.add_argument(
        "--transport",
        choices=("inproc", "grpc", "mpi"),
        default="inproc",
        help="how the scheduler reaches its workers (default: inproc)",
    )
    tune.add_argument(
        "--rank0-trains",
        action="store_true",
        help="with --transport mpi: rank 0 also trains (one trainer process beside the "
        "scheduler, counted in the node's threads); by default it only schedules",
    )
    tune.add_argument(
        "--prefetch",
        default="auto",
        type=_prefetch,
        metavar="auto|N",
        help="with --transport grpc: jobs each ash-worker queues beyond its slot (as "
        "ash-worker --prefetch; default auto)",
    )
    tune.add_argument(
        "--devices",
        metavar="ID,ID,...",
        help="one worker per accelerator id (e.g. 0,1,2,3): each sees only its device "
        "(CUDA_VISIBLE_DEVICES and the ROCm/JAX equivalents); docs/devices.md",
    )
    tune.add_argument(
        "--mlflow",
        metavar="TRACKING_URI",
        help="log each trial as an MLflow run (e.g. sqlite:///mlflow.db; the mlflow extra); "
        "docs/integrations.md",
    )
    tune.add_argument(
        "--tensorboard",
        metavar="LOGDIR",
        help="write each trial's metrics as TensorBoard event files under LOGDIR/trial-N "
        "(the tensorboard extra); docs/integrations.md",
    )
    tune.add_argument("--quiet", action="store_true", help="no progress and no summary")
    tune.set_defaults(run=_run_tune)

    status = sub.add_parser(
        "status",
        help="live view of a running study (any machine)",
        description="Show a running ash-scheduler's study: trials, rungs, best so far.",
    )
    status.add_argument("--scheduler", required=True, help="HOST:PORT of the ash-scheduler")
    status.add_argument("--token-file", help="file holding the scheduler's shared token")
    status.add_argument("--tls-ca", help="CA certificate (PEM) to verify the scheduler's TLS")
    status.add_argument("--once", action="store_true", help="print once and exit")
    status.add_argument("--json", action="store_true", help="print once as JSON and exit")
    status.set_defaults(run=_run_status)

    record = sub.add_parser(
        "record",
        help="record learning curves of random configs (for ash simulate)",
        description="Train N random configurations to max_resource, recording the metric after "
        "every unit of resource and the seconds per unit, as a curves file for ash simulate.",
    )
    record.add_argument("spec", help="study spec (TOML) whose trainer and space to record")
    record.add_argument("--trials", type=positive_int, required=True, help="configurations")
    record.add_argument("--out", required=True, help="curves file to write (.json or .json.gz)")
    record.add_argument("--workers", type=positive_int, help="processes (default: cores)")
    record.add_argument("--threads", type=_threads, default="auto", help="threads per process")
    record.add_argument("--seed", type=int, help="seed for the configurations (default: spec)")
    record.add_argument(
        "--grid",
        action="store_true",
        help="record every configuration of a finite space (at most --trials) instead",
    )
    record.add_argument("--quiet", action="store_true", help="no progress")
    record.set_defaults(run=_run_record)

    dash = sub.add_parser(
        "dashboard",
        help="live web dashboard of a study (running, finished, or a folder of them)",
        description="Serve a web dashboard: a running study over its scheduler's Watch stream, "
        "a finished one from results.json, a trace or a journal, or every study in a folder.",
    )
    dash.add_argument("path", nargs="?", help="results.json, a journal, a trace, or a folder")
    dash.add_argument("--scheduler", help="HOST:PORT of a running ash-scheduler")
    dash.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT to serve on")
    dash.add_argument("--token-file", help="the scheduler's token; the page then asks for it too")
    dash.add_argument("--tls-ca", help="CA certificate (PEM) to verify the scheduler's TLS")
    dash.add_argument("--trace", help="with a results.json: the trace, for times and the timeline")
    dash.set_defaults(run=_run_dashboard)

    sim = sub.add_parser(
        "simulate",
        help="simulate a study on a virtual clock with N workers",
        description="Run the scheduler core against simulated workers on a virtual clock.",
    )
    sim.add_argument("spec", help="study spec (TOML)")
    sim.add_argument("--workers", type=positive_int, required=True, help="simulated workers")
    sim.add_argument(
        "--benchmark",
        default="synthetic",
        help="synthetic[:cost=C,noise=S] (default) or a recorded curves file (.json[.gz])",
    )
    sim.add_argument("--seed", type=int, default=0, help="seed for job durations and noise")
    sim.add_argument(
        "--stragglers", type=_fraction, default=0.0, help="probability a job is a straggler"
    )
    sim.add_argument(
        "--straggler-alpha", type=_alpha, default=1.5, help="Pareto shape of straggler slowdowns"
    )
    sim.add_argument("--trace", help="write the trace (JSON lines) here")
    sim.add_argument("--out", help="write results.json and trials.csv into this folder")
    sim.add_argument("--quiet", action="store_true", help="print nothing but errors")
    sim.set_defaults(run=_run_simulate)
    return p


def _run_tune(args: argparse.Namespace) -> int:
    from ash.commands.tune import run

    return run(args)


def _run_status(args: argparse.Namespace) -> int:
    from ash.commands.status import run

    return run(args)


def _run_record(args: argparse.Namespace) -> int:
    from ash.commands.record import run

    return run(args)


def _run_dashboard(args: argparse.Namespace) -> int:
    from ash.commands.dashboard import run

    return run(args)


def _run_simulate(args: argparse.Namespace) -> int:
    from ash.commands.simulate import run

    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    from ash.transports.mpi import launched_rank, only_rank0_speaks, wants_mpi

    with only_rank0_speaks(argv):  # mpiexec: every rank makes the same usage error; say it once
        args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    rank = launched_rank() if wants_mpi(sys.argv[1:] if argv is None else argv) else 0
    return guard(lambda: run(args), speaks=rank == 0)  # a Ctrl-C reaches every rank


def scheduler_main(argv: Sequence[str] | None = None) -> int:
    from ash.commands.dashboard import ServiceDashboard
    from ash.report import write_report
    from ash.scheduler.server import main as serve

    return serve(
        list(argv) if argv is not None else None, report=write_report, dashboard=ServiceDashboard()
    )


def worker_main(argv: Sequence[str] | None = None) -> int:
    from ash.worker.daemon import main as work

    return work(list(argv) if argv is not None else None)


if __name__ == "__main__":
    sys.exit(main())
