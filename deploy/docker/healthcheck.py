"""The image's HEALTHCHECK (installed as /usr/local/bin/ash-healthcheck): exit 0 when healthy.

A container running ``ash-scheduler`` is healthy when the scheduler answers the standard gRPC
health service (grpc.health.v1, service "") with SERVING; the address comes from the
scheduler's own ``--listen`` (0.0.0.0 / :: / an empty host are asked on loopback). The health
service needs no token. A container running ``ash-worker`` or ``ash tune`` is healthy while that
process lives (a worker serves no port of its own).

Overrides, for setups the command line does not tell: ASH_HEALTH_TARGET=HOST:PORT; with
``--tls-cert``, ASH_HEALTH_CA=PEM (default: the scheduler's own certificate chain) and
ASH_HEALTH_TLS_NAME=NAME (the name the certificate is for, when it is not the target's host).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROLES = ("ash-scheduler", "ash-worker", "ash")


def processes() -> list[list[str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or entry.name == str(os.getpid()):
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
        if argv:
            found.append(argv)
    return found


def role(argv: list[str]) -> tuple[str, list[str]] | None:
    """("ash-scheduler", its arguments) for `[python] .../ash-scheduler ARGS`, etc."""
    for i, arg in enumerate(argv[:2]):
        name = os.path.basename(arg)
        if name in ROLES and (name != "ash" or argv[i + 1 : i + 2] == ["tune"]):
            return name, argv[i + 1 :]
    return None


def option(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1 :]
    return None


def check_scheduler(args: list[str]) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    target = os.environ.get("ASH_HEALTH_TARGET")
    if not target:
        host, _, port = (option(args, "--listen") or "127.0.0.1:50051").rpartition(":")
        if host in ("", "0.0.0.0", "[::]", "::", "*"):
            host = "127.0.0.1"
        target = f"{host}:{port}"
    cert = option(args, "--tls-cert")
    if cert is None:
        channel = grpc.insecure_channel(target)
    else:
        roots = Path(os.environ.get("ASH_HEALTH_CA", cert)).read_bytes()
        name = os.environ.get("ASH_HEALTH_TLS_NAME")
        options = [("grpc.ssl_target_name_override", name)] if name else []
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(roots), options)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=4.0)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        print(f"ash-scheduler at {target}: {status}")
        return 1
    return 0


def main() -> int:
    roles = [r for r in map(role, processes()) if r is not None]
    for name, args in roles:
        if name == "ash-scheduler":
            try:
                return check_scheduler(args)
            except Exception as exc:  # unreachable, wrong TLS, a deadline: unhealthy
                print(f"ash-scheduler: unhealthy: {exc}")
                return 1
    if roles:
        return 0
    print("no ash-scheduler, ash-worker or ash tune process is running")
    return 1


if __name__ == "__main__":
    sys.exit(main())
