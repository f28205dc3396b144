"""``ash-scheduler``: serve one study over gRPC until it is finished, then write ``--out``.

It owns the process around the service: loading the spec, opening (or resuming) the journal,
the server with health checking and reflection, TLS and token options, the optional Prometheus
endpoint, and signals. SIGTERM or SIGINT: stop assigning, wait for in-flight jobs to drain (up to
``--drain-timeout``), flush the journal, write what is done, exit 0; started again on the same
journal the study resumes. When the study finishes: tell the workers, write ``--out``, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ash.argtypes import non_negative, number, positive
from ash.argtypes import port as port_number
from ash.errors import UserError
from ash.link.auth import TokenAuth, is_loopback, read_secret
from ash.link.wire import add_scheduler_servicer, server_options
from ash.paths import check_out_dir, check_trace_file, check_trace_target
from ash.ports import check_bindable
from ash.printable import printable
from ash.proto import ash_pb2 as pb
from ash.scheduler.driver import open_study
from ash.scheduler.outcome import Report, write_outcome
from ash.scheduler.service import SchedulerService, ServiceConfig
from ash.spec import load_spec
from ash.tls import read_server_pair

Closer = Callable[[], Awaitable[None]]


class Dashboard(Protocol):
    """The web dashboard ``--dashboard-port`` serves beside the study (injected by the CLI: the
    scheduler does no presentation itself)."""

    def check(self, host: str, token: str | None) -> None:
        """Refuse what would stop it from starting, before the study is opened."""

    async def start(
        self, service: SchedulerService, host: str, port: int, token: str | None
    ) -> Closer:
        """Serve it on ``host:port``; returns what closes it."""


MAX_CHECKPOINT_MB = 2046  # a checkpoint and 1 MiB of message around it: gRPC's 2 GiB limit
checkpoint_mb = number(
    lambda x: 0 < x <= MAX_CHECKPOINT_MB, f"a number > 0 and <= {MAX_CHECKPOINT_MB}"
)
SERVICE = pb.DESCRIPTOR.services_by_name["Scheduler"].full_name


GC_THRESHOLDS = (20_000, 50, 100)
FREEZE_EVERY_S = 5.0
SWEEP_EVERY = 60  # freezes: the frozen heap is collected too every 5 minutes


def tune_gc() -> None:
    """Keep the cyclic GC's pauses short in a scheduler whose heap only grows.

    The study's state (rungs, results, trials) is long-lived and grows with every result; left
    to itself, each full collection walks all of it (over 200 ms at 1,000 sessions), and every
    assignment waits behind it. So what exists after start-up (the spec, a resumed study) is
    frozen out of the collector, and then, every few seconds, whatever survived since: a full
    collection then walks only the young part of the heap. Gen 0 runs every 20,000 allocations
    instead of 700. A reference cycle that becomes garbage after it was frozen (a finished
    session's, mostly) waits for the next ``sweep``, every ``SWEEP_EVERY`` freezes: one full
    collection every few minutes bounds what a scheduler that runs for weeks can hold."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def sweep() -> None:
    """Collect the whole heap, frozen objects included, then freeze what survives."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


async def freeze_periodically(
    period: float = FREEZE_EVERY_S, sweep_every: int = SWEEP_EVERY
) -> None:
    """Forever: collect what is not frozen (garbage cycles included), then freeze the rest;
    every ``sweep_every`` times, ``sweep`` instead."""
    n = 0
    while True:
        await asyncio.sleep(period)
        n += 1
        if n % sweep_every == 0:
            sweep()
        else:
            gc.collect()
            gc.freeze()


def shared_dir(path: str | None) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--checkpoint-dir {path}: cannot be created ({exc.strerror})") from None
    return p.resolve()


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(f"--listen {text!r}: expected HOST:PORT (PORT 0 picks a free one)")
    return host, int(port)


def check_startup(args: argparse.Namespace, host: str, port: int) -> None:
    """Everything the run needs later that can be checked now, before the study is opened:
    TLS files, the ports, the output paths, the shared checkpoint directory."""
    if args.tls_cert is not None:
        read_server_pair(args.tls_cert, args.tls_key)
    check_bindable(host, port, "--listen", " (another ash-scheduler?)")
    if args.metrics_port is not None:
        check_bindable(metrics_host(host), args.metrics_port, "--metrics-port")
    if args.dashboard_port:
        check_bindable(host, args.dashboard_port, "--dashboard-port")
    check_out_dir(args.out, "--out")
    check_trace_file(args.trace, "--trace")
    check_trace_target(args.trace, journal=args.journal, out=args.out, spec=args.spec)
    shared_dir(args.checkpoint_dir)


def metrics_host(host: str) -> str:
    """Where ``--metrics-port`` listens: beside a loopback ``--listen``, else everywhere."""
    return host if is_loopback(host) else "0.0.0.0"


def warn_exposure(host: str, token: bool, tls: bool) -> None:
    """Warn on stderr when a scheduler reachable off this machine lets anyone in."""
    if is_loopback(host) or token:
        return
    if tls:
        why = "TLS but no token: traffic is private, but anyone who can reach this port"
    else:
        why = "neither TLS nor a token: anyone who can reach this port"
    print(
        f"ash-scheduler: WARNING: listening on {host} with {why} can join the study and read "
        "its configs (--token-file)",
        file=sys.stderr,
        flush=True,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ash-scheduler", description="Serve a study over gRPC.")
    p.add_argument("spec", help="study spec (TOML)")
    p.add_argument("--listen", default="127.0.0.1:50051", help="HOST:PORT (port 0: any free)")
    p.add_argument("--journal", help="journal file: crash-safe, resumes when started again")
    p.add_argument("--out", help="write results.json, trials.csv and the report here")
    p.add_argument("--trace", help="append the trace (JSON lines) here")
    p.add_argument("--token-file", help="shared token workers and clients must present")
    p.add_argument("--tls-cert", help="TLS certificate chain (PEM)")
    p.add_argument("--tls-key", help="TLS private key (PEM)")
    p.add_argument(
        "--lease", type=positive, default=30.0, help="seconds a silent worker keeps jobs"
    )
    p.add_argument(
        "--heartbeat",
        type=positive,
        help="seconds between heartbeats (< --lease; default 5, or a third of a shorter lease)",
    )
    p.add_argument(
        "--max-checkpoint-mb",
        type=checkpoint_mb,
        default=64.0,
        help="checkpoint size limit (larger states: --checkpoint-dir)",
    )
    p.add_argument(
        "--checkpoint-dir",
        help="a directory shared with the workers: large states go there by reference",
    )
    p.add_argument(
        "--drain-timeout", type=non_negative, default=60.0, help="SIGTERM: seconds to drain"
    )
    p.add_argument(
        "--linger",
        type=non_negative,
        default=10.0,
        help="after the study ends, seconds to wait for disconnected workers to come back and "
        "hear that it is finished",
    )
    p.add_argument("--metrics-port", type=port_number, help="serve Prometheus metrics on this port")
    p.add_argument(
        "--dashboard-port",
        type=port_number,
        help="serve the web dashboard on this port, beside --listen's host (off loopback it "
        "needs --token-file)",
    )
    p.add_argument("--no-fsync", action="store_true", help="journal without fsync (faster)")
    p.add_argument(
        "--mlflow",
        metavar="TRACKING_URI",
        help="log each trial as an MLflow run (e.g. sqlite:///mlflow.db; the mlflow extra); "
        "docs/integrations.md",
    )
    p.add_argument(
        "--tensorboard",
        metavar="LOGDIR",
        help="write each trial's metrics as TensorBoard event files under LOGDIR/trial-N "
        "(the tensorboard extra); docs/integrations.md",
    )
    p.add_argument(
        "--stay",
        action="store_true",
        help="when the study is finished, keep serving status and health until SIGTERM "
        "(for orchestrators that restart processes that exit)",
    )
    return p


async def serve(
    args: argparse.Namespace, report: Report | None = None, dashboard: Dashboard | None = None
) -> int:
    spec = load_spec(args.spec)
    host, port = parse_listen(args.listen)
    token = read_secret(args.token_file, "--token-file")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UserError("--tls-cert and --tls-key go together")
    check_startup(args, host, port)
    if args.dashboard_port is not None and dashboard is not None:
        dashboard.check(host, token)
    warn_exposure(host, token is not None, args.tls_cert is not None)
    max_ckpt = int(args.max_checkpoint_mb * (1 << 20))
    checkpoint_dir = shared_dir(args.checkpoint_dir)
    opened = open_study(
        spec,
        journal=args.journal,
        trace=args.trace,
        fsync=not args.no_fsync,
        keep_inflight=True,
        shared_checkpoints=checkpoint_dir,
    )
    driver = opened.driver
    hooks = None
    if getattr(args, "mlflow", None) or getattr(args, "tensorboard", None):
        from ash.integrations import Callbacks, from_flags

        hooks = Callbacks(from_flags(args.mlflow, args.tensorboard), spec)
        try:
            hooks.attach(driver)  # a store that cannot be opened: exit 2 before serving
        except BaseException:
            driver.close()
            raise
    if opened.resumed_records:
        print(
            f"ash-scheduler: resumed {spec.name} from {args.journal}: "
            f"{opened.resumed_records} records, {len(opened.orphans)} in-flight jobs wait "
            f"{args.lease:g} s for their workers to come back",
            flush=True,
        )
    config = ServiceConfig(
        spec_toml=Path(args.spec).read_text(encoding="utf-8"),
        lease_s=args.lease,
        heartbeat_s=args.heartbeat,
        max_checkpoint_bytes=max_ckpt,
        checkpoint_dir=checkpoint_dir,
    )
    service = SchedulerService(driver, config, opened.orphans)
    tune_gc()
    interceptors = [TokenAuth(token)] if token is not None else []
    server = grpc.aio.server(options=server_options(max_ckpt), interceptors=interceptors)
    add_scheduler_servicer(service, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    address = f"{host}:{port}"
    if args.tls_cert:
        cert = Path(args.tls_cert).read_bytes()
        key = Path(args.tls_key).read_bytes()
        bound = server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
    else:
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise UserError(f"--listen {args.listen}: cannot bind")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    for name in ("", SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    print(f"ash-scheduler: listening on {host}:{bound} ({spec.name})", flush=True)
    metrics_server = None
    if args.metrics_port is not None:
        from ash.scheduler.metrics import start_metrics

        metrics_server = await start_metrics(
            service, host if is_loopback(host) else "0.0.0.0", args.metrics_port
        )
    close_dashboard = None
    if args.dashboard_port is not None and dashboard is not None:
        close_dashboard = await dashboard.start(service, host, args.dashboard_port, token)
    leases = asyncio.create_task(service.expire_leases())
    gc_task = asyncio.create_task(freeze_periodically())
    service._check_finished()
    done = asyncio.create_task(service.done.wait())
    stopping = asyncio.create_task(stop.wait())
    failed = asyncio.create_task(service.failed.wait())
    await asyncio.wait([done, stopping, failed], return_when=asyncio.FIRST_COMPLETED)
    if service.failed.is_set():
        # nothing more can be recorded: the workers keep their results and retry, and the
        # scheduler started again (on a mended disk, the same journal) takes them back
        service.end_sessions(
            grpc.StatusCode.UNAVAILABLE, f"scheduler stopped: {service.journal_error}"
        )
        await asyncio.sleep(0.2)
        await health_servicer.enter_graceful_shutdown()
    elif not service.done.is_set():
        service.draining = True
        deadline = time.monotonic() + args.drain_timeout
        while driver.running() and time.monotonic() < deadline and not service.done.is_set():
            await asyncio.sleep(0.05)
        await health_servicer.enter_graceful_shutdown()
        print(f"ash-scheduler: stopped; {driver.running()} jobs still in flight", flush=True)
    else:
        deadline = time.monotonic() + args.linger
        while service.absent and time.monotonic() < deadline and not stop.is_set():
            await asyncio.sleep(0.1)  # a reconnecting worker's hello is answered Finished
        await asyncio.sleep(0.2)  # let the sessions deliver Finished
    leases.cancel()
    gc_task.cancel()
    service.close()
    driver.close()
    try:
        doc = write_outcome(
            driver,
            args.out,
            interrupted=not service.done.is_set(),
            report=report if args.out else None,
        )
    except BaseException:  # the results could not be written: end the callbacks all the same
        if hooks is not None:
            hooks.close(None)
        raise
    if hooks is not None:
        hooks.close(doc)
    if service.journal_error is not None:
        for task in (done, stopping, failed):
            task.cancel()
        await server.stop(grace=1.0)
        if metrics_server is not None:
            metrics_server.close()
        print(
            f"ash-scheduler: stopped on an error: {service.journal_error}; what was done is "
            "written; fix it and start again on the same journal to resume",
            file=sys.stderr,
            flush=True,
        )
        return 1
    if driver.stopped is not None:  # fail fast: a systematic error, printed once
        for task in (done, stopping, failed):
            task.cancel()
        await server.stop(grace=1.0)
        if metrics_server is not None:
            metrics_server.close()
        # the error is a worker's words (its trainer's message and traceback): printable only
        print(f"ash-scheduler: {printable(driver.stop_reason())}", file=sys.stderr, flush=True)
        below = driver.stopped[1].partition("\n")[2]
        if below:
            print(printable(below, lines=True), file=sys.stderr, flush=True)
        return 1
    if service.done.is_set():
        print(f"ash-scheduler: study finished; best {driver.results.best()}", flush=True)
        if args.stay and not stop.is_set():
            print("ash-scheduler: --stay: serving status and health until SIGTERM", flush=True)
            await stop.wait()
    for task in (done, stopping, failed):
        task.cancel()
    await server.stop(grace=1.0)
    if metrics_server is not None:
        metrics_server.close()
    if close_dashboard is not None:
        await close_dashboard()
    return 0


def main(
    argv: list[str] | None = None, report: Report | None = None, dashboard: Dashboard | None = None
) -> int:
    """``ash-scheduler``; ``report`` writes the HTML report into ``--out`` (the CLI passes
    ash.report's: the scheduler does no presentation itself)."""
    from ash.errors import guard

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.heartbeat is None:
        args.heartbeat = min(5.0, args.lease / 3)
    if args.heartbeat >= args.lease:
        parser.error(
            f"--heartbeat {args.heartbeat:g} must be less than --lease {args.lease:g} "
            "(a worker that heartbeats on time must never lose its jobs)"
        )
    return guard(lambda: asyncio.run(serve(args, report, dashboard)), prog="ash-scheduler")
