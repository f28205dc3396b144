"""``ash tune``: run a study embedded on this machine and print the best trials."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from ash.cli import EXIT_USAGE
from ash.errors import UserError
from ash.scheduler.spec import load_spec


def run(args: argparse.Namespace) -> int:
    from ash.api import run_embedded
    from ash.progress import best_table

    spec = load_spec(args.spec)
    if args.transport != "inproc":
        raise UserError(f"--transport {args.transport}: not available yet (use inproc)")
    doc = run_embedded(
        spec,
        workers=args.workers,
        threads=args.threads,
        out=args.out,
        trace=args.trace,
        journal=args.journal,
        progress=not args.quiet,
    )
    if not args.quiet:
        console = Console()
        console.print(best_table(doc))
        failed = sum(1 for t in doc["trials"] if t["status"] == "failed")
        if failed:
            first = doc["errors"][0]["error"] if doc["errors"] else "see results.json"
            console.print(f"{failed} trials failed; first error: {first}", style="yellow")
        if args.out:
            console.print(f"wrote {args.out}/results.json, trials.csv, report.html")
    if doc["interrupted"]:
        print("ash: interrupted; what was done is written", file=sys.stderr)
        return 130
    if doc["best"] is None:
        print("ash: no trial produced a result", file=sys.stderr)
        return EXIT_USAGE
    return 0
