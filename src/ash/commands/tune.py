"""``ash tune``: run a study embedded on this machine (or over gRPC or MPI) and print the best
trials."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from ash import transports
from ash.errors import EXIT_USAGE, UserError


def run(args: argparse.Namespace) -> int:
    from ash.progress import best_table

    if getattr(args, "rank0_trains", False) and args.transport != "mpi":
        raise UserError(f"--rank0-trains applies to --transport mpi only, not {args.transport}")
    got = transports.run(args)
    if isinstance(got, int):
        return got  # an MPI worker rank (rank 0 reports the study), or a study that cannot start
    doc = got
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
