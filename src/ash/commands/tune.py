"""``ash tune``: run a study embedded on this machine (or over gRPC or MPI) and print the best
trials."""

from __future__ import annotations

import argparse

from ash import transports
from ash.errors import UserError


def run(args: argparse.Namespace) -> int:
    from ash.summary import ending, print_summary

    if getattr(args, "rank0_trains", False) and args.transport != "mpi":
        raise UserError(f"--rank0-trains applies to --transport mpi only, not {args.transport}")
    got = transports.run(args)
    if isinstance(got, int):
        return got  # an MPI worker rank (rank 0 reports the study), or a study that cannot start
    if not args.quiet:
        print_summary(got, args.out)
    # the gRPC transport's scheduler has printed a fail-fast traceback already
    return ending(got, traceback=args.transport != "grpc")
