"""``ash tune``: run a study embedded on this machine (or over gRPC or MPI) and print the best
trials."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console

from ash.cli import EXIT_USAGE
from ash.errors import UserError
from ash.spec import load_spec


def _run_local(args: argparse.Namespace) -> dict[str, Any]:
    """The study on this machine: embedded slots, or a scheduler and workers over gRPC."""
    from ash.api import run_embedded
    from ash.paths import check_out_dir, check_trace_file

    spec = load_spec(args.spec)
    check_out_dir(args.out, "--out")
    check_trace_file(args.trace, "--trace")
    if args.transport == "grpc":
        import os

        from ash.api import check_trainer, resolve_threads
        from ash.launch import run_grpc

        check_trainer(spec)
        workers = args.workers or os.cpu_count() or 1
        return run_grpc(
            spec,
            args.spec,
            workers=workers,
            threads=resolve_threads(args.threads, workers),
            out=args.out,
            trace=args.trace,
            journal=args.journal,
            progress=not args.quiet,
        )
    return run_embedded(
        spec,
        workers=args.workers,
        threads=args.threads,
        out=args.out,
        trace=args.trace,
        journal=args.journal,
        progress=not args.quiet,
    )


def run(args: argparse.Namespace) -> int:
    from ash.progress import best_table

    if args.transport == "mpi":
        from ash.mpirun import run_mpi

        # every rank loads the spec in there, once MPI has started, so that a mistake is
        # printed once and every rank stops with the same exit code
        got = run_mpi(args)
        if isinstance(got, int):
            return got  # a worker rank (rank 0 reports the study), or a study that cannot start
        doc = got
    elif getattr(args, "rank0_trains", False):
        raise UserError(f"--rank0-trains applies to --transport mpi only, not {args.transport}")
    else:
        doc = _run_local(args)
    if not args.quiet:
        console = Console()
        console.print(best_table(doc))
        failed = sum(1 for t in doc["trials"] if t["status"] == "failed")
        if failed:
            errors = doc.get("errors") or []
            first = errors[0]["error"] if errors else "see results.json"
            console.print(f"{failed} trials failed; first error: {first}", style="yellow")
        if args.out:
            console.print(f"wrote {args.out}/results.json, trials.csv, report.html")
    if doc.get("error"):
        print(
            f"ash: stopped on an error: {doc['error']}; the same command with the same "
            "--journal resumes the study once it is fixed",
            file=sys.stderr,
        )
        return 1
    if doc["interrupted"]:
        print("ash: interrupted; what was done is written", file=sys.stderr)
        return 130
    if doc["best"] is None:
        print("ash: no trial produced a result", file=sys.stderr)
        return EXIT_USAGE
    return 0
