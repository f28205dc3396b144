"""Many lightweight worker sessions on one ``ash-scheduler``: assignment latency under load.

An asyncio load generator (grpc.aio, ash's generated stubs). Each session is one bidirectional
stream, as ``ash-worker`` makes it: ``Hello(worker_id, slots=1)``, then ``Welcome``, then an
``Assignment`` whenever the scheduler has a job for it. A session "trains" for a think time
(``--job-seconds`` mean, uniform in [0.5, 1.5] x the mean; 0 = answer at once), replies with
``Result(job_id, ok=True, value=noop.loss(x, stop))`` and heartbeats every ``heartbeat_s`` from
the Welcome, as the real worker does. The latency of an assignment is the time from sending the
result (or the hello) to receiving the next assignment, measured on the client.

This script owns its scheduler: it writes a spec from ``spec.toml.in`` (``--max-trials``), starts
``ash-scheduler`` on 127.0.0.1 port 0 with a journal (fsync unless ``--no-fsync``), starts
``--procs`` client processes (``--sessions`` split between them, one TCP connection per session
unless ``--per-channel``), runs for ``--duration`` seconds (the first ``--warmup`` seconds, when
every hello arrives at once, are reported apart), asks the scheduler's ``Status`` RPC how many
workers it sees, then stops the clients and the scheduler (SIGTERM, then SIGKILL of the process
groups). Anything odd (RPC errors and their status codes, scheduler stderr, a non-zero exit) is
reported, not hidden.

    /work/venv/bin/python bench/overhead/sessions.py                      # 1,000 sessions, 45 s
    /work/venv/bin/python bench/overhead/sessions.py --job-seconds 0      # closed loop: capacity
    /work/venv/bin/python bench/overhead/sessions.py --sessions 100 --duration 10 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))
    return s[k]


def write_spec(folder: Path, name: str, max_trials: int) -> Path:
    text = (HERE / "spec.toml.in").read_text(encoding="utf-8")
    spec = folder / "spec.toml"
    spec.write_text(text.format(name=name, max_trials=max_trials), encoding="utf-8")
    return spec


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    """Signal the process group ``proc`` leads (started with start_new_session=True)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


class Scheduler:
    """An ``ash-scheduler`` child in its own process group; ``port`` once it listens."""

    def __init__(
        self,
        spec: Path,
        folder: Path,
        *,
        fsync: bool,
        extra: list[str],
        gc_mode: str = "default",
        out: bool = False,
    ) -> None:
        self.gc_log = folder / "scheduler-gc.jsonl"
        if gc_mode == "default":
            launcher = [str(BIN / "ash-scheduler")]
        else:  # the same ash-scheduler main, with a GC probe around it (this file's --wrap)
            launcher = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--wrap-scheduler",
                gc_mode,
                "--gc-log",
                str(self.gc_log),
                "--",
            ]
        cmd = [
            *launcher,
            str(spec),
            "--listen",
            "127.0.0.1:0",
            "--journal",
            str(folder / "journal.jsonl"),
            "--drain-timeout",
            "5",
            *extra,
        ]
        if not fsync:
            cmd.append("--no-fsync")
        if out:  # results.json, trials.csv and report.html (plots when matplotlib is there)
            cmd += ["--out", str(folder / "out")]
        self.cmd = cmd
        self.t_launch = time.monotonic()
        self.stderr_path = folder / "scheduler.stderr"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            cmd,
            cwd=folder,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            start_new_session=True,
        )
        self.lines: list[tuple[float, str]] = []
        self._listening = threading.Event()
        self.port = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))
            if "listening on" in line and not self.port:
                self.port = int(line.split("listening on ", 1)[1].split()[0].rsplit(":", 1)[1])
                self._listening.set()
        self._listening.set()

    def wait_listening(self, timeout: float = 60.0) -> int:
        if not self._listening.wait(timeout) or not self.port:
            raise RuntimeError(
                f"ash-scheduler did not start (exit {self.proc.poll()}): {self.stderr_tail()}"
            )
        return self.port

    def cpu_seconds(self) -> float | None:
        """user + system CPU seconds of the scheduler process so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (drain, write --out, exit 0), then SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                kill_group(self.proc)
                self.proc.wait(10)
        return self.proc.returncode

    def close(self) -> None:
        kill_group(self.proc)  # also anything the scheduler left in its group
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._reader.join(timeout=5)
        self._stderr.close()

    def stderr_tail(self, n: int = 4000) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        try:
            return self.stderr_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


# -- the client (one process, many sessions) --------------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.hello: list[float] = []  # hello -> first assignment
        self.lat: list[tuple[float, float]] = []  # (arrival time, result -> next assignment)
        self.results: list[float] = []  # times results were sent
        self.errors: Counter[str] = Counter()
        self.eof = 0
        self.finished = 0
        self.welcomed = 0


async def one_session(
    i: int,
    channel: Any,
    stats: Stats,
    job_s: float,
    rng: random.Random,
    slots: int = 1,
) -> None:
    from noop import loss

    from ash.proto import ash_pb2 as pb
    from ash.proto import ash_pb2_grpc as pb_grpc

    stub = pb_grpc.SchedulerStub(channel)  # type: ignore[no-untyped-call, unused-ignore]
    call = stub.Session()
    lock = asyncio.Lock()
    beat: asyncio.Task[None] | None = None

    async def heartbeat(period: float) -> None:
        msg = pb.WorkerMessage(heartbeat=pb.Heartbeat())
        while True:
            await asyncio.sleep(period * rng.uniform(0.9, 1.1))
            async with lock:
                await call.write(msg)

    try:
        t_sent = time.monotonic()
        hello = True
        await call.write(
            pb.WorkerMessage(hello=pb.Hello(worker_id=f"load-{i}", slots=slots, token=""))
        )
        while True:
            msg = await call.read()
            now = time.monotonic()
            if msg is grpc_eof():
                stats.eof += 1
                return
            kind = msg.WhichOneof("msg")
            if kind == "welcome":
                stats.welcomed += 1
                beat = asyncio.create_task(heartbeat(max(0.05, msg.welcome.heartbeat_s)))
                continue
            if kind == "finished":
                stats.finished += 1
                return
            if kind != "assignment":
                stats.errors[f"unexpected message {kind!r}"] += 1
                continue
            if hello:
                stats.hello.append(now - t_sent)
                hello = False
            elif slots == 1:  # with more slots, "the next assignment" is not one thing
                stats.lat.append((now, now - t_sent))
            a = msg.assignment
            if job_s > 0:
                await asyncio.sleep(job_s * rng.uniform(0.5, 1.5))
            value = loss(a.config["x"].number, a.stop)
            result = pb.Result(job_id=a.job_id, ok=True, value=value, seconds=0.0)
            result.metrics["loss"].number = value
            async with lock:
                t_sent = time.monotonic()
                await call.write(pb.WorkerMessage(result=result))
            stats.results.append(t_sent)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # an RPC error: keep its status code and details as evidence
        code = getattr(exc, "code", None)
        details = getattr(exc, "details", None)
        if callable(code) and callable(details):
            stats.errors[f"{code()}: {details()}"] += 1
        else:
            stats.errors[f"{type(exc).__name__}: {exc}"] += 1
    finally:
        if beat is not None:
            beat.cancel()
        call.cancel()


def grpc_eof() -> Any:
    import grpc

    return grpc.aio.EOF


async def client_main(args: argparse.Namespace) -> dict[str, Any]:
    import grpc

    sys.path.insert(0, str(HERE))
    from ash.link.wire import server_options

    target = f"127.0.0.1:{args.port}"
    options = server_options(1 << 20)
    per = max(1, args.per_channel)
    channels = [
        grpc.aio.insecure_channel(target, options=options) for _ in range(0, args.count, per)
    ]
    stats = Stats()
    rng = random.Random(args.first)
    t0 = time.monotonic()
    tasks = [
        asyncio.create_task(
            one_session(
                args.first + k, channels[k // per], stats, args.job_seconds, rng, args.slots
            )
        )
        for k in range(args.count)
    ]
    lags: list[tuple[float, float]] = []
    monitor = asyncio.create_task(loop_lag(lags))
    done_all = asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(done_all), timeout=args.duration)
    t_end = time.monotonic()
    ended_early = sum(t.done() for t in tasks)
    monitor.cancel()
    for t in tasks:
        t.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(done_all, timeout=10)
    for ch in channels:
        await ch.close()
    steady_from = t0 + args.warmup
    return {
        "t0": t0,
        "t_end": t_end,
        "sessions": args.count,
        "channels": len(channels),
        "welcomed": stats.welcomed,
        "hello": stats.hello,
        "steady_lat": [lat for at, lat in stats.lat if at >= steady_from],
        "series": series(stats.lat, t0),
        "loop_lag": [lag for at, lag in lags if at >= steady_from],
        "all_lat_n": len(stats.lat),
        "results_total": len(stats.results),
        "results_steady": sum(1 for t in stats.results if steady_from <= t <= t_end),
        "steady_s": max(1e-9, t_end - steady_from),
        "errors": dict(stats.errors),
        "eof": stats.eof,
        "finished": stats.finished,
        "ended_early": ended_early,
    }


async def loop_lag(out: list[tuple[float, float]], period: float = 0.01) -> None:
    """How late this client's event loop wakes up: its own share of the measured latency."""
    while True:
        t = time.monotonic()
        await asyncio.sleep(period)
        now = time.monotonic()
        out.append((now, now - t - period))


def series(lat: list[tuple[float, float]], t0: float) -> list[tuple[int, int, float, float]]:
    """Per second since the clients started: (second, count, p99 ms, max ms)."""
    by: dict[int, list[float]] = {}
    for at, x in lat:
        by.setdefault(int(at - t0), []).append(x)
    return [
        (sec, len(xs), 1e3 * percentile(xs, 0.99), 1e3 * max(xs)) for sec, xs in sorted(by.items())
    ]


def status(port: int) -> dict[str, Any]:
    """The scheduler's Status RPC (workers it sees, results so far)."""
    import grpc

    from ash.proto import ash_pb2 as pb
    from ash.proto import ash_pb2_grpc as pb_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = pb_grpc.SchedulerStub(ch)  # type: ignore[no-untyped-call, unused-ignore]
        st = stub.Status(pb.StatusRequest(token=""), timeout=10)
    return {
        "workers": st.workers,
        "results": st.results,
        "trials": st.trials,
        "running": st.running,
        "elapsed_s": st.elapsed_s,
        "finished": st.finished,
    }


def client_cmd(
    port: int,
    first: int,
    count: int,
    *,
    duration: float,
    warmup: float,
    job_seconds: float,
    per_channel: int,
    slots: int,
    result: Path,
) -> list[str]:
    """The command line of one client process (``count`` sessions, ids from ``first``)."""
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--client",
        "--port",
        str(port),
        "--first",
        str(first),
        "--count",
        str(count),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--job-seconds",
        str(job_seconds),
        "--per-channel",
        str(per_channel),
        "--slots",
        str(slots),
        "--result",
        str(result),
    ]


# -- the parent -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="ash-sessions-"))
    spec = write_spec(folder, "sessions", args.max_trials)
    sched = Scheduler(spec, folder, fsync=not args.no_fsync, extra=[], gc_mode=args.scheduler_gc)
    clients: list[subprocess.Popen[str]] = []
    out: dict[str, Any] = {
        "sessions": args.sessions,
        "procs": args.procs,
        "job_seconds": args.job_seconds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "fsync": not args.no_fsync,
        "max_trials": args.max_trials,
    }
    try:
        port = sched.wait_listening()
        counts = [
            args.sessions // args.procs + (i < args.sessions % args.procs)
            for i in range(args.procs)
        ]
        first = 0
        cpu0 = sched.cpu_seconds() or 0.0
        t_start = time.monotonic()
        for p, n in enumerate(counts):
            cmd = client_cmd(
                port,
                first,
                n,
                duration=args.duration,
                warmup=args.warmup,
                job_seconds=args.job_seconds,
                per_channel=args.per_channel,
                slots=1,
                result=folder / f"client{p}.json",
            )
            first += n
            clients.append(
                subprocess.Popen(cmd, env=child_env(), text=True, start_new_session=True)
            )
        mid: dict[str, Any] = {}
        late: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            time.sleep(max(0.0, args.warmup + (args.duration - args.warmup) / 2 - 0.5))
            mid = status(port)
        with contextlib.suppress(Exception):
            time.sleep(max(0.0, t_start + args.duration - 1.5 - time.monotonic()))
            late = status(port)
        cpu1 = sched.cpu_seconds()
        t_cpu = time.monotonic()
        for c in clients:
            try:
                c.wait(args.duration + 60)
            except subprocess.TimeoutExpired:
                kill_group(c)
                c.wait(10)
        out["client_exit_codes"] = [c.returncode for c in clients]
        out["scheduler_alive_at_end"] = sched.proc.poll() is None
        out["status_mid"] = mid
        out["status_late"] = late
        if cpu1 is not None:
            out["scheduler_cpu_share"] = (cpu1 - cpu0) / max(1e-9, t_cpu - t_start)
        out["scheduler_exit"] = sched.stop()
        if sched.gc_log.exists():
            out["scheduler_gc"] = gc_summary(sched.gc_log, t_start, args.warmup)
        parts = []
        for p in range(len(clients)):
            path = folder / f"client{p}.json"
            if path.exists():
                parts.append(json.loads(path.read_text()))
        out.update(merge(parts))
    finally:
        for c in clients:
            kill_group(c)
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.wait(10)
        sched.close()
        out["scheduler_stdout"] = [line for _, line in sched.lines][-20:]
        out["scheduler_stderr"] = sched.stderr_tail()
        if not args.keep:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        else:
            out["folder"] = str(folder)
    return out


def gc_summary(path: Path, t_start: float, warmup: float) -> dict[str, Any]:
    """The scheduler's GC pauses during the run: count and worst per generation, and the
    pauses over 20 ms (seconds since the clients started, ms)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["t"] >= t_start]
    syncs = [r for r in rows if "sync_ms" in r]
    rows = [r for r in rows if "gen" in r]
    out: dict[str, Any] = {}
    for g in (0, 1, 2):
        ms = [r["ms"] for r in rows if r["gen"] == g]
        out[f"gen{g}"] = {"n": len(ms), "max_ms": max(ms, default=0.0), "sum_ms": sum(ms)}
    out["slow_syncs"] = [(round(r["t"] - t_start, 2), round(r["sync_ms"], 1)) for r in syncs]
    out["long"] = [
        (round(r["t"] - t_start, 2), r["gen"], round(r["ms"], 1)) for r in rows if r["ms"] > 20
    ]
    return out


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    hello = [x for p in parts for x in p["hello"]]
    steady = [x for p in parts for x in p["steady_lat"]]
    lag = [x for p in parts for x in p["loop_lag"]]
    errors: Counter[str] = Counter()
    for p in parts:
        errors.update(p["errors"])
    steady_s = min((p["steady_s"] for p in parts), default=float("nan"))
    results_steady = sum(p["results_steady"] for p in parts)
    return {
        "welcomed": sum(p["welcomed"] for p in parts),
        "channels": sum(p["channels"] for p in parts),
        "hello_n": len(hello),
        "hello_p50_ms": 1e3 * percentile(hello, 0.50),
        "hello_p99_ms": 1e3 * percentile(hello, 0.99),
        "hello_max_ms": 1e3 * max(hello, default=float("nan")),
        "n": len(steady),
        "p50_ms": 1e3 * percentile(steady, 0.50),
        "p90_ms": 1e3 * percentile(steady, 0.90),
        "p99_ms": 1e3 * percentile(steady, 0.99),
        "max_ms": 1e3 * max(steady, default=float("nan")),
        "client_loop_lag_p99_ms": 1e3 * percentile(lag, 0.99),
        "client_loop_lag_max_ms": 1e3 * max(lag, default=float("nan")),
        "series": [p["series"] for p in parts],
        "results_total": sum(p["results_total"] for p in parts),
        "results_per_s": results_steady / steady_s if parts else float("nan"),
        "errors": dict(errors),
        "eof": sum(p["eof"] for p in parts),
        "finished": sum(p["finished"] for p in parts),
        "ended_early": sum(p["ended_early"] for p in parts),
    }


def table(r: dict[str, Any]) -> str:
    head = (
        "| sessions | think time s | fsync | results/s | assignment latency p50 / p99 / max ms "
        "| hello -> first assignment p50 / p99 / max ms | workers seen | scheduler CPU "
        "| errors |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    seen = r.get("status_late", {}).get("workers", r.get("status_mid", {}).get("workers", "?"))
    errs = "; ".join(f"{k} x{v}" for k, v in r.get("errors", {}).items()) or "none"
    cpu = r.get("scheduler_cpu_share")
    return head + (
        f"| {r['sessions']:,} | {r['job_seconds']:g} | {'yes' if r['fsync'] else 'no'} "
        f"| {r.get('results_per_s', float('nan')):,.0f} "
        f"| {r.get('p50_ms', float('nan')):.1f} / {r.get('p99_ms', float('nan')):.1f} / "
        f"{r.get('max_ms', float('nan')):.1f} "
        f"| {r.get('hello_p50_ms', float('nan')):.0f} / {r.get('hello_p99_ms', float('nan')):.0f}"
        f" / {r.get('hello_max_ms', float('nan')):.0f} "
        f"| {seen} | {'-' if cpu is None else f'{100 * cpu:.0f}%'} | {errs} |\n"
    )


def wrap_scheduler(mode: str, log: str, argv: list[str]) -> int:
    """Run ``ash-scheduler``'s own main with a GC probe: ``log`` records every collection's pause
    (monotonic time, generation, ms) to ``log``; ``off`` also disables the cyclic GC (and the
    scheduler's own freezing and periodic collections, ash.scheduler.server.tune_gc). A
    diagnostic only: ash's code is not changed."""
    import gc

    f = open(log, "w", buffering=1)  # noqa: SIM115 (lives as long as the process)
    started: list[float] = [0.0]

    def probe(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.monotonic()
        else:
            now = time.monotonic()
            f.write(
                json.dumps(
                    {
                        "t": now,
                        "gen": info["generation"],
                        "ms": 1e3 * (now - started[0]),
                        "collected": info["collected"],
                    }
                )
                + "\n"
            )

    gc.callbacks.append(probe)
    if mode == "off":
        gc.disable()
    from ash.scheduler import driver

    original = driver.Driver.sync

    def timed_sync(self: driver.Driver) -> None:  # the journal's write + fsync, timed
        t = time.monotonic()
        try:
            original(self)
        finally:
            ms = 1e3 * (time.monotonic() - t)
            if ms > 5.0:
                f.write(json.dumps({"t": t, "sync_ms": ms}) + "\n")

    driver.Driver.sync = timed_sync  # type: ignore[method-assign, unused-ignore]
    from ash.scheduler import server

    if mode == "off":  # also without the scheduler's own freezing and periodic collections

        async def idle() -> None:
            await asyncio.Event().wait()

        server.tune_gc = lambda: None  # type: ignore[assignment, unused-ignore]
        server.freeze_periodically = idle  # type: ignore[assignment, unused-ignore]
    scheduler_main = server.main

    code: int = scheduler_main(argv)
    return code


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=1000, help="concurrent worker sessions")
    p.add_argument("--procs", type=int, default=1, help="client processes (1 or 2)")
    p.add_argument("--duration", type=float, default=45.0, help="seconds of load")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds reported apart (hellos)")
    p.add_argument(
        "--job-seconds", type=float, default=1.0, help="mean think time per job (0: closed loop)"
    )
    p.add_argument("--max-trials", type=int, default=100_000, help="the study's max_trials")
    p.add_argument("--per-channel", type=int, default=1, help="sessions per TCP connection")
    p.add_argument("--no-fsync", action="store_true", help="scheduler journal without fsync")
    p.add_argument("--keep", action="store_true", help="keep the scheduler's folder")
    p.add_argument(
        "--scheduler-gc",
        choices=("default", "log", "off"),
        default="default",
        help="diagnostic: log the scheduler's GC pauses (log) or disable its cyclic GC (off)",
    )
    p.add_argument("--wrap-scheduler", choices=("log", "off"), help=argparse.SUPPRESS)
    p.add_argument("--gc-log", help=argparse.SUPPRESS)
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.add_argument("--json", help="write the result here")
    # the client role (run by the parent)
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--slots", type=int, default=1, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--wrap-scheduler"]:
        sep = argv.index("--")
        return wrap_scheduler(argv[1], argv[argv.index("--gc-log") + 1], argv[sep + 1 :])
    args = build_parser().parse_args(argv)
    if args.client:
        res = asyncio.run(client_main(args))
        Path(args.result).write_text(json.dumps(res))
        return 0
    if not 1 <= args.procs <= 2:
        raise SystemExit("--procs: 1 or 2")
    r = run(args)
    print(table(r))
    if r.get("errors") or r.get("scheduler_exit") not in (0, None):
        print(f"scheduler exit {r.get('scheduler_exit')}; stderr: {r['scheduler_stderr']!r}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
