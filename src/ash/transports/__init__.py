"""ash.transports: how a study reaches its workers, one small module each (DeepHyper's
evaluators), imported only when chosen so that grpc's and mpi4py's costs are paid by their users:

- ``inproc``: the study loop over local slot processes (``ash tune``, ``ash.tune()``);
- ``grpc``: an ``ash-scheduler`` and N ``ash-worker`` daemons started on 127.0.0.1;
- ``mpi``: every rank of ``mpiexec -n N ash tune SPEC --transport mpi``;
- ``local``: local slots as a backend of the study loop (``inproc``, and MPI rank 0's own).

``run`` picks one from the ``ash tune`` flags; the caller does not assemble it.
"""

from __future__ import annotations

import argparse
from typing import Any

TRANSPORTS = ("inproc", "grpc", "mpi")


def run(args: argparse.Namespace) -> dict[str, Any] | int:
    """Run ``ash tune``'s study over ``args.transport``: the results document, or, for MPI
    ranks other than 0 and studies that could not start there, an exit code."""
    devices = None
    if getattr(args, "devices", None) is not None:  # "" too: refused, not ignored
        from ash.devices import parse_devices
        from ash.errors import UserError

        if args.transport == "mpi":
            from ash.transports.mpi import launched_rank

            if launched_rank() != 0:  # every rank refuses alike: rank 0 says it once
                return 2
            raise UserError(
                "--devices applies to --transport inproc and grpc; under MPI give each rank its "
                "device with the launcher (e.g. CUDA_VISIBLE_DEVICES per rank): docs/devices.md"
            )
        devices = parse_devices(args.devices, "--devices")
        if args.workers is not None and args.workers != len(devices):
            raise UserError(
                f"--workers {args.workers} with --devices {args.devices}: one worker per "
                f"device ({len(devices)}); drop --workers"
            )
    tracking = [
        part
        for flag in ("--mlflow", "--tensorboard")
        if (value := getattr(args, flag[2:], None))
        for part in (flag, value)
    ]
    if args.transport == "mpi":
        from ash.transports.mpi import run_mpi

        # every rank loads the spec in there, once MPI has started, so that a mistake is
        # printed once and every rank stops with the same exit code
        return run_mpi(args)
    from ash.spec import load_spec

    spec = load_spec(args.spec)
    if args.transport == "grpc":
        from ash.transports.grpc import run_grpc

        return run_grpc(
            spec,
            args.spec,
            workers=args.workers,
            threads=args.threads,
            out=args.out,
            trace=args.trace,
            journal=args.journal,
            progress=not args.quiet,
            prefetch=getattr(args, "prefetch", "auto"),
            devices=devices,
            tracking=tracking,
        )
    from ash.integrations import from_flags
    from ash.transports.inproc import run_inproc

    return run_inproc(
        spec,
        workers=args.workers,
        threads=args.threads,
        out=args.out,
        trace=args.trace,
        journal=args.journal,
        progress=not args.quiet,
        devices=devices,
        callbacks=from_flags(getattr(args, "mlflow", None), getattr(args, "tensorboard", None)),
    )
