"""``ash status``: a live view of a running study from any machine, over the Status RPC."""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import asdict

import grpc
from rich.console import Console

from ash.errors import UserError
from ash.link.auth import bearer
from ash.link.wire import scheduler_stub
from ash.proto import ash_pb2 as pb


def run(args: argparse.Namespace) -> int:
    from ash.link.auth import read_secret
    from ash.progress import Progress, Snapshot, from_status, render
    from ash.tls import read_ca

    token = read_secret(args.token_file, "--token-file")
    if args.tls_ca:
        creds = grpc.ssl_channel_credentials(read_ca(args.tls_ca, "--tls-ca"))
        channel = grpc.secure_channel(args.scheduler, creds)
    else:
        channel = grpc.insecure_channel(args.scheduler)
    with channel:
        stub = scheduler_stub(channel)

        def fetch() -> pb.StudyStatus:
            try:
                st: pb.StudyStatus = stub.Status(
                    pb.StatusRequest(), timeout=5, metadata=bearer(token)
                )
                return st
            except grpc.RpcError as exc:
                raise UserError(
                    f"--scheduler {args.scheduler}: {exc.code().name}: {exc.details()}"
                ) from None

        if args.once or args.json:
            snap = from_status(fetch())
            if args.json:
                print(json.dumps(asdict(snap)))
            else:
                Console().print(render(snap, snap.study))
            return 0
        first = from_status(fetch())
        latest = [first]

        def snapshot() -> Snapshot:
            with contextlib.suppress(UserError):  # keep the last view while the scheduler is away
                latest[0] = from_status(fetch())
            return latest[0]

        with Progress(snapshot, f"{first.study} @ {args.scheduler}") as view:
            while not latest[0].finished:
                time.sleep(0.5)
                view.tick()
        Console().print(render(latest[0], latest[0].study))
    return 0
