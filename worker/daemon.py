"""``ash-worker``: a worker daemon that runs jobs from an ``ash-scheduler`` over gRPC.

One session is one bidirectional stream (proto/ash.proto). The daemon says hello with its slot
count, builds its trainer from the spec the scheduler sends in Welcome, runs up to N jobs at once
in slot processes (ash.worker.slots) with K kernel threads each, heartbeats while it trains, and
reports each result with its checkpoint (one over the scheduler's ``--max-checkpoint-mb``, which
its Welcome gives, goes to the shared ``--checkpoint-dir`` if there is one, else fails its job:
ash.worker.stream). Threads: one reads the stream, one drives the slots
(submit, collect), one heartbeats; the main thread only waits, so signals act at once.

With ``--threads auto`` the worker plans each job's kernel threads within its cores
(ash.worker.planner: calibrated per model shape when the study's spec arrives, the split printed
here); its Hello says threads 0 and each Result says what the job ran with, which the scheduler
puts on the trace's result event. With ``--threads K`` the Hello says K and the scheduler puts
it on the assign events.

While the scheduler is unreachable it reconnects with exponential backoff and jitter for at most
``--retry-for`` seconds (then exits 3). A reconnect is a fresh hello that lists the jobs of the
old sessions the worker still runs or holds a result of (``Hello.running``); jobs keep running
meanwhile. A scheduler that restarted from its journal re-attaches those it still waits for
(``Welcome.attached``): their results are sent in the new session, so a restart costs no work.
The others were re-issued by the scheduler already: their results are dropped. A result sent
is kept until the scheduler says it is recorded (``Recorded``, to a worker whose Hello asks
with the capability "recorded"), so a result that died with a scheduler before reaching its
journal is offered again, not trained again. It exits 0 when
told the study is finished. SIGTERM or SIGINT: jobs not started are handed back (Release),
running ones finish within ``--grace`` seconds (else they are handed back too), then it exits 0.
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import signal
import socket
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import grpc

from ash import __version__
from ash.argtypes import non_negative, non_negative_int
from ash.cores import auto_threads, available_cores
from ash.devices import parse_devices
from ash.errors import UserError
from ash.link import wire
from ash.link.auth import bearer, is_loopback, read_secret
from ash.link.checkpoints import CheckpointRef
from ash.link.wire import scheduler_stub
from ash.printable import printable
from ash.proto import ash_pb2 as pb
from ash.spec import StudySpec, parse_spec
from ash.tls import read_ca
from ash.worker.feeder import Feeder, Work
from ash.worker.pacing import Pacing
from ash.worker.planner import Planner, planner_for
from ash.worker.slots import Died, Finished, Slots
from ash.worker.stream import Broken, Session, outgoing
from ash.worker.trust import TrustPolicy, policy_from_args, trainer_types

RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.ABORTED,
}
EXIT_UNREACHABLE = 3


class WorkerDaemon:
    def __init__(
        self,
        target: str,
        *,
        slots: int,
        threads: int,
        worker_id: str,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        retry_for: float = 120.0,
        grace: float = 30.0,
        prefetch: int | None = 0,
        checkpoint_dir: Path | None = None,
        inline_bytes: int = 1 << 20,
        plan_threads: bool = False,
        policy: TrustPolicy | None = None,
        devices: list[str] | None = None,
        work_dir: Path | None = None,
        quiet: bool = False,
    ) -> None:
        self.target = target
        self.devices = devices  # one slot per accelerator (--devices), or None
        self.work_dir = work_dir  # where (config, ctx) trainers keep files (None: a temp dir)
        self.policy = policy or TrustPolicy()  # what this worker agrees to run
        self.plan_threads = plan_threads  # --threads auto: a Planner per study decides per job
        self.n_slots = slots
        self.prefetch = prefetch  # None: auto (ash.worker.pacing)
        self.pacing = Pacing(slots) if prefetch is None else None
        self.checkpoint_dir = checkpoint_dir
        self.inline_bytes = inline_bytes
        self.shared = False  # the scheduler takes states by reference (and we have the dir)
        self.max_checkpoint_bytes = 0  # the largest inline state the scheduler takes (Welcome)
        self.quiet = quiet  # no notes (joined, retrying); errors still printed
        self.jobs: dict[int, tuple[int, float]] = {}  # job id -> (trial, stop), for file names
        self.threads = threads
        self.worker_id = worker_id
        self.token = token or ""
        self.credentials = credentials
        self.retry_for = retry_for
        self.grace = grace
        self.stopping = threading.Event()
        self.feeder: Feeder | None = None  # the study's slots (ash.worker.feeder)
        self.spec_toml: str | None = None
        self.spec: StudySpec | None = None
        self.pending: queue.Queue[pb.Assignment] = queue.Queue()
        self.session: Session | None = None
        # jobs of ended sessions not yet reported -> their result message once done (None while
        # running), offered to the next session's scheduler in Hello.running
        self.held: dict[int, pb.WorkerMessage | None] = {}
        self.lock = threading.Lock()
        self.fatal: str | None = None  # set when nothing can work (a trainer that cannot start)
        self._driver_thread: threading.Thread | None = None
        # The reader thread wakes the slot driver when an assignment arrives, so a job starts
        # at once instead of at the driver's next poll.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)

    # -- the reconnect loop ---------------------------------------------------------------

    def run(self) -> int:
        last_contact = time.monotonic()
        backoff = 0.2
        try:
            while True:
                finished, broken = self._session()
                if finished:
                    return 0
                if broken is not None and broken.code not in RETRYABLE:
                    why = f"scheduler {self.target}: {broken.code.name}: {broken.details}"
                    raise UserError(why)
                if broken is not None and "handshake failed" in broken.details.lower():
                    raise UserError(tls_failure(self.target, broken.details))
                if self.fatal is not None:
                    raise UserError(self.fatal)
                if self.stopping.is_set():
                    return 0
                if broken is None:
                    last_contact = time.monotonic()
                    backoff = 0.2
                elif self.session is not None and self.session.sid:
                    last_contact = time.monotonic()
                if time.monotonic() - last_contact > self.retry_for:
                    print(
                        f"ash-worker: scheduler {self.target} unreachable for "
                        f"{self.retry_for:.0f} s; giving up",
                        file=sys.stderr,
                        flush=True,
                    )
                    return EXIT_UNREACHABLE
                delay = backoff * random.uniform(0.5, 1.5)
                hint = ""
                if broken is not None and "socket closed" in broken.details.lower():
                    hint = (
                        " (it closed the connection at once: if it uses TLS, give --tls-ca)"
                        if self.credentials is None
                        else " (it closed the connection at once)"
                    )
                self._note(f"scheduler unreachable{hint}, retrying in {delay:.1f} s", sys.stderr)
                if self.stopping.wait(delay):
                    return 0
                backoff = min(backoff * 2, 5.0)
        finally:
            self._stop_slots()

    def _note(self, text: str, stream: Any = None) -> None:
        """A note on what the worker does (not an error): dropped with --quiet."""
        if not self.quiet:
            print(f"ash-worker: {text}", file=stream or sys.stdout, flush=True)

    def _stop_slots(self) -> None:
        """Stop the driving thread first (it owns the slots), then the slot processes."""
        feeder, self.feeder = self.feeder, None
        if self._driver_thread is not None:
            self._driver_thread.join(timeout=10)
            self._driver_thread = None
        if feeder is not None:
            feeder.slots.shutdown()

    def _channel(self) -> grpc.Channel:
        from ash.link.wire import channel_options

        options = channel_options(1 << 30)
        if self.credentials is not None:
            return grpc.secure_channel(self.target, self.credentials, options=options)
        return grpc.insecure_channel(self.target, options=options)

    def _session(self) -> tuple[bool, Broken | None]:
        """One session: whether the study finished, and how its stream broke if it did."""
        session = Session("", queue.Queue())
        with self.lock:
            if self.session is not None:  # its unreported jobs wait for the next Welcome
                self.held.update(dict.fromkeys(self.session.jobs - self.held.keys()))
                self.held.update(self.session.sent)  # and results it sent, not yet recorded
                self.session.jobs.clear()
                self.session.sent = {}
            running = sorted(self.held)
        session.out.put(
            pb.WorkerMessage(
                hello=pb.Hello(
                    worker_id=self.worker_id,
                    slots=self.n_slots + self._ahead(),
                    token=self.token,
                    capabilities=["mlp", "python", "batch", "recorded", "verdicts"],
                    version=__version__,
                    threads=0 if self.plan_threads else self.threads,
                    running=running,
                    devices=self.devices or [],
                )
            )
        )
        with self._channel() as channel:
            call = scheduler_stub(channel).Session(
                self._requests(session), metadata=bearer(self.token)
            )
            with self.lock:
                self.session = session
            reader = threading.Thread(target=self._read, args=(session, call), daemon=True)
            reader.start()
            beat = threading.Thread(target=self._heartbeat, args=(session,), daemon=True)
            try:
                while not session.ended.is_set():
                    if self.stopping.is_set():
                        self._drain(session)
                        break
                    if session.sid and beat.ident is None:
                        beat.start()
                    session.ended.wait(0.1)
            finally:
                session.out.put(None)
                call.cancel()
                reader.join(timeout=5)
        broken = session.error if isinstance(session.error, Broken) else None
        return session.finished.is_set(), broken

    # -- threads --------------------------------------------------------------------------

    def _read(self, session: Session, call: Any) -> None:
        try:
            for msg in call:
                kind = msg.WhichOneof("msg")
                if kind == "welcome":
                    self._welcome(session, msg.welcome)
                elif kind == "assignment":
                    with self.lock:
                        session.jobs.add(msg.assignment.job_id)
                    self.pending.put(msg.assignment)
                    self._wake_w.send(b"!")
                elif kind == "assignments":
                    batch = msg.assignments.assignments
                    with self.lock:
                        session.jobs.update(a.job_id for a in batch)
                        for job_id in msg.assignments.recorded:
                            session.sent.pop(job_id, None)
                    for a in batch:
                        self.pending.put(a)
                    self._wake_w.send(b"!")
                elif kind == "recorded":
                    with self.lock:
                        for job_id in msg.recorded.job_ids:
                            session.sent.pop(job_id, None)
                elif kind == "verdicts":
                    self._verdicts(session, msg.verdicts)
                elif kind == "finished":
                    session.finished.set()
                    break
        except grpc.RpcError as exc:  # the call itself: only its status is kept (see Broken)
            if not session.finished.is_set() and exc.code() != grpc.StatusCode.CANCELLED:
                session.error = Broken(exc.code(), exc.details() or "")
            exc.__traceback__ = None  # it leads back to the call, through this frame
        except Exception as exc:  # a bad message from the scheduler ends the session
            session.error = exc.with_traceback(None)  # (this frame holds the call)
            print(f"ash-worker: session ended: {printable(exc)}", file=sys.stderr, flush=True)
        finally:
            session.ended.set()

    def _verdicts(self, session: Session, msg: pb.Verdicts) -> None:
        """The scheduler decided on running jobs' reports: stop those it stopped, let the
        others' waiting milestone reports go on (jobs not running here are ignored)."""
        feeder = self.feeder
        if feeder is None:
            return
        for v in msg.verdicts:
            with self.lock:
                if v.job_id not in session.jobs:
                    continue
            if v.stop:
                feeder.slots.stop(v.job_id)
            feeder.slots.decided(v.job_id, min(v.reports, 1 << 62))

    def _welcome(self, session: Session, w: pb.Welcome) -> None:
        if w.spec_toml != self.spec_toml:
            spec = parse_spec(
                tomllib.loads(w.spec_toml), source=f"{self.target}:{w.study}", base_dir=Path.cwd()
            )
            refused = self.policy.refusal(spec)
            if refused is not None:  # the operator's limits: exit 2 (run raises self.fatal)
                self.fatal = f"refusing study {w.study!r} from {self.target}: {refused}"
                session.ended.set()
                return
            self._stop_slots()
            self.spec, self.spec_toml = spec, w.spec_toml
            split = f"{self.n_slots} slots x {self.threads} threads"
            planner = None
            if self.plan_threads:
                planner = self._planner(spec)
                split = f"{self.n_slots} slots, threads auto ({planner.cores} cores)"
            slots = Slots(
                spec,
                self.n_slots,
                self.threads,
                prefix=f"{self.worker_id}/",
                devices=self.devices,
                work_root=self.work_dir,
                on_report=self._on_report,
                verdicts=w.verdicts,
            )
            if self.devices:
                split += f", devices {','.join(self.devices)}"
            self.feeder = Feeder(slots, planner)
            self._driver_thread = threading.Thread(
                target=self._drive, args=(self.feeder,), daemon=True
            )
            self._driver_thread.start()
            self._note(f"joined {printable(w.study)}: {split}")
        self.heartbeat_s = max(0.05, w.heartbeat_s)
        self.shared = w.shared_checkpoints and self.checkpoint_dir is not None
        self.max_checkpoint_bytes = session.max_checkpoint_bytes = w.max_checkpoint_bytes
        session.batches = w.batches
        session.capacity = w.capacity
        session.recorded = w.recorded
        session.reports = w.reports
        self._adopt(session, set(w.attached))
        session.sid = w.session

    def _adopt(self, session: Session, attached: set[int]) -> None:
        """Make the held jobs the scheduler re-attached this session's (sending the results
        that are ready); forget the others and drop their queued assignments."""
        with self.lock:
            held, self.held = self.held, {}
            for job_id, msg in held.items():
                if job_id not in attached:
                    continue
                if msg is None:
                    session.jobs.add(job_id)
                else:
                    if session.recorded and msg.WhichOneof("msg") == "result":
                        session.sent[job_id] = msg
                    session.out.put(msg)
            keep = []
            while True:
                try:
                    a = self.pending.get_nowait()
                except queue.Empty:
                    break
                if a.job_id in attached or a.job_id in session.jobs:
                    keep.append(a)
            for a in keep:
                self.pending.put(a)
        if attached:
            self._note(f"re-attached {len(attached)} running jobs")

    def _planner(self, spec: StudySpec) -> Planner:
        def log(line: str) -> None:
            print(f"ash-worker: {line}", flush=True)

        try:
            planner = planner_for(spec, self.n_slots, log=log)
        except Exception as exc:  # e.g. no dataset here: the slots will say so; share equally
            log(f"threads auto: cannot calibrate ({exc}); cores shared equally")
            return Planner(available_cores(), self.n_slots, log=log)
        planner.warm()  # before the slots start, so that nothing else runs
        return planner

    def _feed(self, feeder: Feeder) -> None:
        """Start pending jobs on the slots, as many as the feeder has room for (with a
        planner: while cores are free, each with the threads it gets)."""
        round: list[Work] = []
        while feeder.next_slot(round) is not None:
            got = self._accept()
            if got is None:
                break
            a, work = got
            self.jobs[a.job_id] = (a.trial, a.stop)
            round.append(work)
        feeder.start(round, more=not self.pending.empty())

    def _accept(self) -> tuple[pb.Assignment, Work] | None:
        """The next pending job this worker can run (a refused one is reported failed and the
        next one taken, so its slot does not idle until the next wake-up); None: none left."""
        while True:
            try:
                a = self.pending.get_nowait()
            except queue.Empty:
                return None
            try:
                checkpoint = self._load(a)
                config = wire.config_from_pb(a.config, "assignment.config")
                if self.spec is not None:
                    self.spec.space.check(config)  # NaN, unknown or out-of-range parameters
            except (wire.WireError, OSError, ValueError) as exc:
                self._report(Finished(a.job_id, None, {}, None, f"refused: {exc}", 0.0))
                continue
            return a, Work(a.job_id, config, a.start, a.stop, checkpoint, a.trial, a.rung)

    def _drive(self, feeder: Feeder) -> None:
        """Feed idle slots from the pending queue; send results of the current session."""
        while self.feeder is feeder:
            self._feed(feeder)
            try:
                events = feeder.wait(0.5, wake=self._wake_r)
            except Exception as exc:  # a trainer that cannot be set up: nothing will work
                self.fatal = str(exc)
                self.stopping.set()
                return
            for ev in events:
                self._report(ev)
                if self.pacing is not None and isinstance(ev, Finished) and ev.error is None:
                    self._pace(ev.seconds)

    def _ahead(self) -> int:
        """Jobs to queue beyond the slots now."""
        return self.pacing.ahead if self.pacing is not None else (self.prefetch or 0)

    def _pace(self, seconds: float) -> None:
        """``--prefetch auto``: tell the scheduler when the jobs' length changes the depth."""
        assert self.pacing is not None
        capacity = self.pacing.observe(seconds)
        session = self.session
        if capacity is not None and session is not None and session.capacity:
            session.out.put(pb.WorkerMessage(capacity=pb.Capacity(slots=capacity)))

    def _load(self, a: pb.Assignment) -> bytes | None:
        state = wire.checkpoint_from_pb(a, "checkpoint", 1 << 40, self.checkpoint_dir)
        if isinstance(state, CheckpointRef):
            assert self.checkpoint_dir is not None
            return wire.read_shared(self.checkpoint_dir, state)
        return state

    def _on_report(self, job_id: int, batch: list[Any]) -> None:
        """A running job's intermediate reports, to a scheduler that takes them (those of a
        job whose session broke are dropped: they are live data, the result is what counts)."""
        with self.lock:
            session = self.session
            if session is None or not session.reports or job_id not in session.jobs:
                return
            session.out.put(wire.reports_to_pb({job_id: batch}))

    def _report(self, ev: Any) -> None:
        threads = ev.threads if isinstance(ev, Finished) and ev.threads else self.threads
        with self.lock:
            session = self.session
            mine = session is not None and ev.job_id in session.jobs
            if not mine and ev.job_id not in self.held:
                self.jobs.pop(ev.job_id, None)
                return  # a job the scheduler has re-issued
        msg = self._message(ev, threads)
        with self.lock:
            now = self.session
            if now is not None and ev.job_id in now.jobs:  # (or re-attached meanwhile)
                now.jobs.discard(ev.job_id)
                if now.recorded and isinstance(ev, Finished):
                    now.sent[ev.job_id] = msg  # kept until the scheduler says it is recorded
                now.out.put(msg)
            elif ev.job_id in self.held:  # disconnected: the next scheduler may want it
                self.held[ev.job_id] = msg

    def _message(self, ev: Any, threads: int) -> pb.WorkerMessage:
        if isinstance(ev, Died):
            return pb.WorkerMessage(
                release=pb.Release(
                    job_id=ev.job_id, reason=f"slot process died (exit code {ev.exitcode})"
                )
            )
        r = pb.Result(
            job_id=ev.job_id,
            ok=ev.value is not None,
            value=ev.value or 0.0,
            error=ev.error or "",
            seconds=ev.seconds,
            threads=threads,
        )
        wire.metrics_to_pb(ev.metrics, r.metrics)
        state = ev.state
        trial, stop = self.jobs.pop(ev.job_id, (0, 0.0))
        inline = self.inline_bytes
        if self.max_checkpoint_bytes:  # and never more than the scheduler takes inline
            inline = min(inline, self.max_checkpoint_bytes)
        if self.shared and state is not None and len(state) > inline:
            assert self.checkpoint_dir is not None
            name = f"t{trial}-r{stop:g}-j{ev.job_id}.ckpt"
            state = wire.write_shared(self.checkpoint_dir, name, state)
        limit = self.max_checkpoint_bytes
        top = self.spec is not None and stop >= self.spec.schedule.max_resource
        if top and isinstance(state, bytes) and limit and len(state) > limit:
            # a top-rung state is only kept for keep_best: too large, it is dropped, and the
            # result stands (below the top it is a promotion's: stream.outgoing fails it)
            print(
                f"ash-worker: warning: trial {trial}: its top-rung state of {len(state)} bytes "
                f"exceeds the scheduler's --max-checkpoint-mb {limit / (1 << 20):g} and is not "
                "kept (give the scheduler and the workers a shared --checkpoint-dir to keep it)",
                file=sys.stderr,
                flush=True,
            )
            state = None
        wire.checkpoint_to_pb(state, r.checkpoint)  # over the limit: failed in stream.outgoing
        return pb.WorkerMessage(result=r)

    def _requests(self, session: Session) -> Any:
        """The session's outgoing messages (``ash.worker.stream.outgoing``)."""
        return outgoing(session, self.pending.empty)

    def _heartbeat(self, session: Session) -> None:
        while not session.ended.wait(getattr(self, "heartbeat_s", 5.0)):
            with self.lock:
                jobs = sorted(session.jobs)
            session.out.put(pb.WorkerMessage(heartbeat=pb.Heartbeat(job_ids=jobs)))

    def _drain(self, session: Session) -> None:
        """Shutting down: hand back jobs not started; let running ones finish within grace."""
        while True:
            try:
                a = self.pending.get_nowait()
            except queue.Empty:
                break
            with self.lock:
                session.jobs.discard(a.job_id)
            session.out.put(
                pb.WorkerMessage(
                    release=pb.Release(job_id=a.job_id, reason="worker stopping", draining=True)
                )
            )
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline and not session.ended.is_set():
            with self.lock:
                if not session.jobs:
                    break
            time.sleep(0.05)
        with self.lock:
            left = sorted(session.jobs)
            session.jobs.clear()
        for job_id in left:
            session.out.put(
                pb.WorkerMessage(
                    release=pb.Release(job_id=job_id, reason="worker stopping", draining=True)
                )
            )
        time.sleep(0.2)  # let the stream carry the last messages


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ash-worker", description="Run jobs from an ash-scheduler.")
    p.add_argument("--scheduler", required=True, help="HOST:PORT of the ash-scheduler")
    p.add_argument("--slots", default="1", help="jobs at once (a number, or auto = cores)")
    p.add_argument("--threads", default="auto", help="kernel threads per job: auto or a number")
    p.add_argument("--id", help="worker id (default: hostname-pid)")
    p.add_argument("--token-file", help="file holding the scheduler's shared token")
    p.add_argument("--tls-ca", help="CA certificate (PEM) to verify the scheduler's TLS")
    p.add_argument(
        "--retry-for",
        type=non_negative,
        default=120.0,
        help="seconds to keep retrying an unreachable scheduler",
    )
    p.add_argument(
        "--grace",
        type=non_negative,
        default=30.0,
        help="on SIGTERM: seconds running jobs get to finish",
    )
    p.add_argument(
        "--prefetch",
        type=_prefetch,
        default=None,
        metavar="auto|N",
        help="jobs to queue beyond the slots: auto (default) queues them only while jobs are "
        "too short to wait for each assignment (ash.worker.pacing); a number fixes it (hides "
        "latency for tiny jobs; ASHA then decides those jobs earlier, on fewer results)",
    )
    p.add_argument(
        "--devices",
        metavar="ID,ID,...",
        help="one slot per accelerator id (e.g. 0,1,2,3; a GPU or MIG UUID works too): each "
        "slot's process sees only its device (CUDA_VISIBLE_DEVICES, HIP_VISIBLE_DEVICES, "
        "JAX's flags) and a (config, ctx) trainer is told ctx.device; docs/devices.md",
    )
    p.add_argument(
        "--work-dir",
        help="where (config, ctx) trainers keep their per-trial folders (ctx.dir; default: a "
        "temporary folder removed at exit)",
    )
    p.add_argument(
        "--checkpoint-dir",
        help="directory shared with the scheduler for large states (sent by reference)",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no notes on joining, re-attaching and retrying (errors are still printed)",
    )
    p.add_argument(
        "--inline-mb",
        type=non_negative,
        default=1.0,
        help="states larger than this go through --checkpoint-dir",
    )
    trust = p.add_argument_group(
        "what this worker runs", "a scheduler chooses the code and data; these limit it"
    )
    trust.add_argument(
        "--allow-trainer",
        type=trainer_types,
        action="append",
        metavar="mlp|python",
        help="trainer types to run (repeat or comma list; default: mlp,python)",
    )
    trust.add_argument(
        "--allow-entrypoint",
        action="append",
        metavar="PATTERN",
        help="python trainers only from entrypoints matching one of these fnmatch patterns on "
        "pkg.mod:fn (repeatable; default: any)",
    )
    trust.add_argument(
        "--data-root",
        metavar="DIR",
        help="mlp datasets only from files inside DIR (bundled ones always; default: any path)",
    )
    return p


def tls_failure(target: str, details: str) -> str:
    """A failed TLS handshake, said with what to check: it does not get better by retrying."""
    said = details[details.lower().find("handshake failed") :].removesuffix(": OK")
    return (
        f"scheduler {target}: TLS {said[:240]}; is --tls-ca the CA that signed the "
        "scheduler's certificate, and the address one the certificate names?"
    )


def plaintext_token_warning(target: str, token: bool, tls: bool) -> str | None:
    """The warning for sending a token unencrypted to a scheduler off this machine, if due."""
    if not token or tls:
        return None
    host = target.split("///")[-1].rpartition(":")[0] or target
    if target.startswith("unix:") or is_loopback(host.strip("[]")):
        return None
    return (
        f"ash-worker: WARNING: sending the token to {target} in plaintext (no --tls-ca): "
        "anyone on the network path can read it and join the study"
    )


def _prefetch(text: str) -> int | None:
    return None if text == "auto" else non_negative_int(text)


def _count(text: str, flag: str, auto: int) -> int:
    if text == "auto":
        return auto
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"{flag} {text!r}: expected auto or a whole number >= 1")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    from ash.errors import guard

    args = build_parser().parse_args(argv)

    def run() -> int:
        devices = parse_devices(args.devices, "--devices") if args.devices else None
        if devices is not None and args.slots not in ("1", str(len(devices))):
            raise UserError(
                f"--slots {args.slots} with --devices {args.devices}: one slot per device "
                f"({len(devices)}); drop --slots"
            )
        slots = len(devices) if devices else _count(args.slots, "--slots", available_cores())
        work_dir = Path(args.work_dir).resolve() if args.work_dir else None
        if work_dir is not None:
            try:
                work_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"--work-dir {args.work_dir}: {exc.strerror or exc}") from None
            if not os.access(work_dir, os.W_OK):
                raise UserError(f"--work-dir {args.work_dir}: not writable")
        threads = _count(args.threads, "--threads", auto_threads(slots))  # auto: the slots' default
        creds = None
        if args.tls_ca:
            creds = grpc.ssl_channel_credentials(read_ca(args.tls_ca, "--tls-ca"))
        token = read_secret(args.token_file, "--token-file")
        warning = plaintext_token_warning(args.scheduler, token is not None, creds is not None)
        if warning is not None:
            print(warning, file=sys.stderr, flush=True)
        daemon = WorkerDaemon(
            args.scheduler,
            slots=slots,
            threads=threads,
            worker_id=args.id or f"{socket.gethostname()}-{os.getpid()}",
            token=token,
            credentials=creds,
            retry_for=args.retry_for,
            grace=args.grace,
            prefetch=args.prefetch,
            checkpoint_dir=Path(args.checkpoint_dir).resolve() if args.checkpoint_dir else None,
            inline_bytes=int(args.inline_mb * (1 << 20)),
            plan_threads=args.threads == "auto",
            policy=policy_from_args(args),
            devices=devices,
            work_dir=work_dir,
            quiet=args.quiet,
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: daemon.stopping.set())
        return daemon.run()

    return guard(run, prog="ash-worker")


if __name__ == "__main__":
    sys.exit(main())
