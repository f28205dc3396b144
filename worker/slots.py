"""Slots: local worker processes that each run one job at a time with a trainer.

Shared by the embedded pool (``ash tune``) and the worker daemon (``ash-worker``). Processes, not
threads, so that a Python trainer uses every core as well as the native one, and so that a
trainer that kills its process (a segfault, an abort) costs one job, not the worker: the slot
reports the job as ``died`` and is restarted. Each child sets its thread budget with
threadpoolctl in the thread that calls the trainer (OpenMP limits are per calling thread) and
ignores SIGINT and SIGTERM, so that the parent alone decides how to stop. A job may carry its own
thread count (``--threads auto``: ash.worker.planner plans it per job); the child then sets that
limit around that job only, so a slot's threads can change from job to job.

Devices (``--devices 0,1``): one slot per device id; a slot's process gets its device in its
environment before the trainer is built (``device_env``: CUDA_VISIBLE_DEVICES and
HIP_VISIBLE_DEVICES name it, JAX's JAX_CUDA_VISIBLE_DEVICES and JAX_ROCM_VISIBLE_DEVICES say
"0", the one device the process then sees, and ASH_DEVICE names it for anything else), and a
``(config, ctx)`` trainer is told it as ``ctx.device``. A restarted slot keeps its device.
Processes are what makes this work: a variable set in one thread would be every thread's.

Context trainers (ash.worker.context) keep their files under one work root shared by the slots
(``work_root``, default a temporary folder removed at ``shutdown``), so a trial's ``ctx.dir``
outlives its promotions on this worker; their reports reach ``on_report`` (job id, batch) in the
parent, always before the job's result.

Stopping on reports (``[asha] stop_on = "reports"``): each slot shares three integers with its
child (``flags``: the job told to stop, and the job and report count the scheduler has decided
on), so no message has to reach a child busy in its trainer. ``stop`` sets the first (the job's
``ctx.should_stop``); ``decided`` the others. With ``verdicts``, a report that reaches a rung
milestone waits (up to ``VERDICT_WAIT_S``) until the scheduler decided on it, as ``tune.report``
and ``trial.should_prune`` do: a stopped trial trains no epoch beyond its rung.

Messages between parent and children are our own (a pipe between processes of one program), so
they may be pickled; nothing from the network travels this way without being validated first.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from ash.errors import UserError
from ash.spec import StudySpec
from ash.worker.context import JobInfo, ReportSink, Workspace, milestones, scratch_dir
from ash.worker.trainers import TrainerFn, as_trainer, check_reports, make_trainer, run_job

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}  # the parent alone decides how to stop
VERDICT_WAIT_S = 10.0  # the longest a milestone report waits for the scheduler's decision
STOPPED, DECIDED_JOB, DECIDED_COUNT = 0, 1, 2  # the slot's shared flags

# job id, config, start, stop, checkpoint, trial, rung
JobMsg = tuple[int, dict[str, Any], float, float, "bytes | None", int, int]


def device_env(device: str) -> dict[str, str]:
    """The environment a slot's process gets for accelerator ``device`` (its id as the worker
    sees it: a CUDA or HIP ordinal, or a GPU or MIG UUID)."""
    return {
        "CUDA_VISIBLE_DEVICES": device,
        "HIP_VISIBLE_DEVICES": device,
        "JAX_CUDA_VISIBLE_DEVICES": "0",  # JAX counts among the devices the process sees
        "JAX_ROCM_VISIBLE_DEVICES": "0",
        "ASH_DEVICE": device,
    }


def _child(*args: Any) -> None:
    """A slot's process: serve jobs until told to stop or the parent is gone (a parent killed
    outright closes the pipe: the slot ends quietly, no traceback on the user's terminal)."""
    try:
        _serve(*args)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        return


def _serve(
    conn: Connection,
    spec: StudySpec,
    trainer: Any,
    threads: int,
    device: str | None = None,
    work_root: str | None = None,
    flags: Any = None,
    verdicts: bool = False,
) -> None:
    _watch_parent(os.getppid())
    # Before libgomp loads (spawn): a pool sized for every core would leave idle OpenMP threads
    # spinning beside a one-thread job; threadpool_limits can still raise it per job.
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if device is not None:  # before the trainer (and its framework) is imported
        os.environ.update(device_env(device))
    signal.signal(signal.SIGINT, _let_pass)
    signal.signal(signal.SIGTERM, _let_pass)
    os.register_at_fork(after_in_child=_default_signals_in_child)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked since the start (_start)
    # A daemon for its parent's sake only (multiprocessing ends it at the parent's exit); its
    # trainer may start processes of its own: a DataLoader's workers, a joblib pool.
    mp.current_process().daemon = False
    from threadpoolctl import threadpool_limits

    def send_reports(job_id: int, batch: list[Any]) -> None:
        conn.send(("reports", job_id, batch))

    root = Path(work_root) if work_root else Path(tempfile.gettempdir()) / f"ash-work-{os.getpid()}"
    workspace = Workspace(root, spec.name, device, send_reports, milestones(spec))
    if verdicts and flags is not None and workspace.milestones:
        workspace.await_verdict = lambda job, count: _await_verdict(flags, job, count)
    try:
        if isinstance(trainer, _ByValue):
            trainer = _loaded(trainer)
        fn = as_trainer(trainer) if trainer is not None else make_trainer(spec)
        check_reports(spec, fn, "the trainer")
        load = getattr(fn, "data", None)
        if load is not None:  # the dataset now, not in the first job's time (and its timeout)
            load()
    except BaseException as exc:  # reported to the parent, which stops (SIGINT is ignored here)
        why = str(exc) if isinstance(exc, Exception) else f"trainer set-up raised {exc!r}"
        conn.send(("setup-error", why))
        return
    conn.send(("ready",))  # a death from now on is a job's, not the start-up's
    with threadpool_limits(limits=threads):
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg is None:
                return
            job_id, config, start, stop, checkpoint, trial, rung, job_threads = msg
            conn.send(("start", job_id))  # the job's timeout counts from here, not from spawn
            t0, c0 = time.perf_counter(), time.thread_time()
            info = JobInfo.of(spec, job_id, trial, rung, stop)

            def stopped(job_id: int = job_id) -> bool:
                return flags is not None and flags[STOPPED] == job_id

            own = job_threads != threads  # this job's own budget, in the calling thread
            limit = threadpool_limits(limits=job_threads) if own else contextlib.nullcontext()
            with limit:
                out = run_job(
                    fn,
                    spec.metric,
                    config,
                    start,
                    stop,
                    checkpoint,
                    job=info,
                    workspace=workspace,
                    stop_check=stopped,
                )
            conn.send(
                (
                    "result",
                    job_id,
                    out.value,
                    out.metrics,
                    out.state,
                    out.error,
                    time.perf_counter() - t0,
                    time.thread_time() - c0,
                )
            )


def _await_verdict(flags: Any, job_id: int, count: int) -> None:
    """Wait until the scheduler decided on the first ``count`` reports of ``job_id`` (or
    stopped it), at most VERDICT_WAIT_S: a lost verdict delays a trainer, never hangs it."""
    deadline = time.monotonic() + VERDICT_WAIT_S
    pause = 0.0005
    while time.monotonic() < deadline:
        if flags[STOPPED] == job_id:
            return
        if flags[DECIDED_JOB] == job_id and flags[DECIDED_COUNT] >= count:
            return
        time.sleep(pause)
        pause = min(pause * 2, 0.01)


class SlotError(UserError, RuntimeError):
    """Slots cannot go on (a trainer that cannot be set up, slots that keep dying)."""


@dataclass
class Finished:
    job_id: int
    value: float | None
    metrics: dict[str, Any]
    state: bytes | None
    error: str | None
    seconds: float  # wall time of the trainer call
    threads: int = 0  # kernel threads the job ran with
    cpu_seconds: float = 0.0  # CPU time of the thread that called the trainer


@dataclass
class Died:
    job_id: int
    exitcode: int | None


STARTUP_DEATHS = 2  # slots dying in a row before they load their trainer: a study-wide error
PARENT_CHECK_S = 1.0  # a slot checks this often that its parent is alive


def _started(pid: int | str) -> tuple[int, str]:
    """(parent pid, start time) of ``pid`` from /proc (OSError when it is gone)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), fields[19]


def _descendants(*pids: int) -> list[tuple[int, str]]:
    """The processes below ``pids`` (a trainer's own: a DataLoader's workers, a subprocess), as
    (pid, start time) read from /proc in one pass, so that a pid taken again later is not
    mistaken for one of them; none where /proc is not there."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            parent, started = _started(entry)
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append((int(entry), started))
    out: list[tuple[int, str]] = []
    todo = list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child[0])
    return out


def _kill_all(processes: list[tuple[int, str]]) -> None:
    """SIGKILL each of ``processes`` still running as the same process (its start time)."""
    for pid, started in processes:
        try:
            if _started(pid)[1] == started:
                os.kill(pid, signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            pass  # gone already


def _kill_slot(process: Any) -> None:
    """Kill a slot's process and every process its trainer started (they would run on as
    orphans: a killed slot cannot end them)."""
    below = _descendants(process.pid) if process.pid else []
    process.kill()
    _kill_all(below)
    process.join(timeout=5)


def _default_signals_in_child() -> None:
    """In a process a trainer forks: Ctrl-C and SIGTERM act as usual again (a slot only
    lets them pass)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _let_pass(signum: int, frame: Any) -> None:
    """A slot's Ctrl-C and SIGTERM: nothing (its parent stops it). A handler, not SIG_IGN,
    which a trainer's processes would inherit, exec or not, and never be stopped."""


def _watch_parent(parent: int) -> None:
    """End this slot's process once its parent is gone (killed outright: no shutdown message,
    and a forked sibling may hold the pipe open), idle or mid-job. A thread, not
    PR_SET_PDEATHSIG, which fires when the parent's *thread* that started the slot ends."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        _kill_all(_descendants(os.getpid()))  # its trainer's processes go with it
        os._exit(0)

    threading.Thread(target=watch, name="ash-parent-watch", daemon=True).start()


def native_threads() -> int:
    """Threads of this process that Python did not start and that bear the process's own name:
    a native pool such as OpenMP's once it ran. Python's own threads are left out by their ids
    (from 3.14 they bear names of their own), and so are named library threads (gRPC's,
    ZeroMQ's in a notebook kernel). 0 where /proc is not there."""
    try:
        tasks = os.listdir("/proc/self/task")
        own = Path(f"/proc/self/task/{os.getpid()}/comm").read_text()
    except OSError:
        return 0
    python = {t.native_id for t in threading.enumerate()}
    count = 0
    for tid in tasks:
        if int(tid) in python:
            continue
        with contextlib.suppress(OSError):
            count += Path(f"/proc/self/task/{tid}/comm").read_text() == own
    return count


OPENMP = ("libgomp", "libiomp", "libomp")  # the runtimes whose pools a fork inherits stuck


def fork_unsafe() -> bool:
    """Whether a fork of this process may hang in the child: an OpenMP runtime is loaded
    (torch's libgomp, MKL's libiomp, LLVM's libomp) and native threads run beyond those of the
    OpenBLAS pools. An OpenBLAS pool (numpy's, started at its import, as importing torch does)
    is fork-safe: it re-initialises at a fork. So a caller that imported torch forks its slots;
    one in which torch ran a parallel op (its OpenMP pool now runs) spawns them."""
    openblas = _openblas_workers()  # first: it may start threads
    native = native_threads()
    if not native:
        return False
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return True
    return any(name in maps for name in OPENMP) and native > openblas


def _openblas_workers() -> int:
    """Threads the loaded OpenBLAS pools of the pthreads kind run: num_threads - 1 each (the
    caller's thread is the first). Each pool is first set to its own size, which starts the
    threads that an earlier fork of this process shut down (OpenBLAS's fork handler does) or
    that a lazy pool has not started yet: the count is then what runs. A pool whose limit was
    lowered keeps its threads and counts its new limit, which errs towards spawning."""
    from threadpoolctl import ThreadpoolController

    count = 0
    for lib in ThreadpoolController().select(internal_api="openblas").lib_controllers:
        if getattr(lib, "threading_layer", None) != "pthreads":
            continue
        n = int(lib.num_threads)
        lib.set_num_threads(n)
        count += max(0, n - 1)
    return count


@dataclass(frozen=True)
class _ByValue:
    """A trainer function pickled with cloudpickle (by value when it is not importable, as a
    notebook's is), for a spawned slot; ``filename`` its source file, which cloudpickle
    leaves out of the code it carries by value (a traceback would say ``<dynamic-code>``)."""

    blob: bytes
    filename: str | None = None


def _loaded(carried: _ByValue) -> Any:
    """The trainer of ``carried``, its functions' code given back their file for tracebacks."""
    import cloudpickle

    trainer = cloudpickle.loads(carried.blob)
    if carried.filename is not None:
        _refile(trainer, carried.filename, set())
    return trainer


def _refile(fn: Any, filename: str, seen: set[int]) -> None:
    """Give ``fn`` and the functions of its globals carried by value their source file."""
    if not isinstance(fn, types.FunctionType) or id(fn) in seen:
        return
    seen.add(id(fn))
    if fn.__code__.co_filename == DYNAMIC:
        fn.__code__ = _with_file(fn.__code__, filename)
    for value in list(fn.__globals__.values()):
        if isinstance(value, types.FunctionType) and value.__code__.co_filename == DYNAMIC:
            _refile(value, filename, seen)


def _with_file(code: types.CodeType, filename: str) -> types.CodeType:
    consts = tuple(
        _with_file(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts
    )
    return code.replace(co_filename=filename, co_consts=consts)


DYNAMIC = "<dynamic-code>"  # cloudpickle's file name for code it carries by value


def _by_value(trainer: Any) -> _ByValue:
    """The trainer pickled for a fresh interpreter: by reference when its module can be
    imported there (found on ``sys.path``, which a spawned slot shares), else by value with
    its module's globals (a notebook's ``__main__``, a module loaded from a path)."""
    import cloudpickle

    code = getattr(trainer, "__code__", None)
    filename = code.co_filename if isinstance(code, types.CodeType) else None
    name = getattr(trainer, "__module__", None) or ""
    module = sys.modules.get(name)
    if module is None or name == "__main__" or _findable(name):
        return _ByValue(cloudpickle.dumps(trainer), filename)  # __main__ goes by value
    cloudpickle.register_pickle_by_value(module)
    try:
        return _ByValue(cloudpickle.dumps(trainer), filename)
    finally:
        cloudpickle.unregister_pickle_by_value(module)


def _findable(name: str) -> bool:
    """Whether a fresh interpreter with this ``sys.path`` finds module ``name``'s top package
    (``importlib.util.find_spec`` would trust ``sys.modules``, where a module loaded from a path
    by name is too)."""
    from importlib.machinery import PathFinder

    top = name.partition(".")[0]
    return top in sys.builtin_module_names or PathFinder.find_spec(top, sys.path) is not None


@dataclass
class _Slot:
    name: str
    process: Any
    conn: Connection
    job: int | None = None
    started: float = 0.0
    threads: int = 0  # of the running job
    device: str | None = None  # the accelerator this slot's process sees (--devices)
    flags: Any = None  # shared with the child: job stopped, job and report count decided
    ready: bool = False  # the child has its trainer (a death before that is a start-up's)


def sweep_stale_roots(tmp: Path) -> None:
    """Remove the temporary work folders (``ash-work-PID-*``) whose process is gone: a pool
    removes its own at shutdown, but a killed one (kill -9, an aborted MPI job) cannot."""
    for entry in tmp.glob("ash-work-*-*"):
        pid = entry.name.split("-")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass  # alive, another user's


class Slots:
    def __init__(
        self,
        spec: StudySpec,
        n: int,
        threads: int,
        *,
        trainer: TrainerFn | None = None,
        max_restarts: int = 100,
        prefix: str = "w",
        devices: Sequence[str] | None = None,
        work_root: Path | None = None,
        on_report: ReportSink | None = None,
        verdicts: bool = False,
    ) -> None:
        """``n`` slots (with ``devices``: one per device, ``n`` must match); ``on_report``
        gets context trainers' reports (dropped without it)."""
        if devices is not None and len(devices) != n:
            raise SlotError(f"{n} slots for {len(devices)} devices: give one slot per device")
        self.spec = spec
        self.n = n
        self.threads = threads
        self.trainer = trainer
        self.devices = list(devices) if devices is not None else None
        self.on_report = on_report
        self.verdicts = verdicts  # the scheduler decides on milestone reports: they wait for it
        self._own_root = work_root is None
        if work_root is None:
            sweep_stale_roots(Path(tempfile.gettempdir()))
        self.work_root = work_root or Path(tempfile.mkdtemp(prefix=f"ash-work-{os.getpid()}-"))
        # fork keeps a notebook's function usable without pickling (and what it imported), but
        # a fork of a process whose native threads run (torch's OpenMP pool after one parallel
        # op, spinning or holding a lock) deadlocks in the child, whatever its thread count
        # (measured: half the runs). With such a pool about: spawn, the function carried by
        # cloudpickle; a slot then imports the trainer's modules itself, once
        self.forked = trainer is not None and not fork_unsafe()
        self.ctx: Any = mp.get_context("fork" if self.forked else "spawn")
        self._carried: Any = trainer if self.forked or trainer is None else _by_value(trainer)
        self.max_restarts = max_restarts
        self.restarts = 0
        self._ending: float | None = None  # the deadline wind_down set
        self._below: list[tuple[int, str]] = []  # the trainers' processes when it did
        self.startup_deaths = 0  # slots that died before ready, since one last became ready
        self.slots_started = False
        self.slots = [
            self._start(f"{prefix}{i}", None if devices is None else devices[i]) for i in range(n)
        ]

    def _start(self, name: str, device: str | None = None) -> _Slot:
        if self.forked and self.slots_started and fork_unsafe():  # a pool started since
            self.forked, self.ctx = False, mp.get_context("spawn")
            self._carried = _by_value(self.trainer)
        self.slots_started = True
        parent, child = self.ctx.Pipe()
        flags = self.ctx.Array("q", [-1, -1, 0], lock=False)
        root = str(self.work_root)
        p = self.ctx.Process(
            target=_child,
            args=(
                child,
                self.spec,
                self._carried,
                self.threads,
                device,
                root,
                flags,
                self.verdicts,
            ),
            name=name,
            daemon=True,
        )
        # a Ctrl-C that reaches the process group while the child imports (before it ignores
        # SIGINT) would print its traceback: the child starts with them blocked (a spawned
        # process keeps the mask through exec), and unblocks them once they are ignored
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            p.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        child.close()
        return _Slot(name, p, parent, device=device, flags=flags)

    def stop(self, job_id: int) -> bool:
        """Tell the trainer of running job ``job_id`` to stop (``ctx.should_stop``); False
        when no slot runs it (it ended meanwhile)."""
        for s in self.slots:
            if s.job == job_id:
                s.flags[STOPPED] = job_id
                return True
        return False

    def decided(self, job_id: int, count: int) -> None:
        """The scheduler decided on the first ``count`` reports of running job ``job_id``
        (a report waiting for that verdict goes on)."""
        for s in self.slots:
            if s.job == job_id:
                s.flags[DECIDED_COUNT] = count
                s.flags[DECIDED_JOB] = job_id

    def idle(self) -> list[_Slot]:
        return [s for s in self.slots if s.job is None]

    def busy(self) -> list[int]:
        return [s.job for s in self.slots if s.job is not None]

    def threads_in_use(self) -> int:
        """Kernel threads of the running jobs."""
        return sum(s.threads for s in self.slots if s.job is not None)

    def submit(
        self, slot: _Slot, job: JobMsg | tuple[Any, ...], threads: int | None = None
    ) -> None:
        """Run ``job`` on ``slot`` with ``threads`` kernel threads (default: the slots' own).
        A job without its trial and rung (five fields) is no study's trial (-1, rung 0)."""
        if len(job) == 5:
            job = (*job, -1, 0)
        slot.job = job[0]
        slot.threads = threads or self.threads
        slot.started = 0.0  # set when the child says it started (a fresh one imports first)
        with contextlib.suppress(OSError, ValueError):  # a dead slot: wait() reports it Died
            slot.conn.send((*job, slot.threads))

    def wait(self, timeout: float, wake: Any = None) -> list[Finished | Died]:
        """Results and deaths that arrive within ``timeout`` seconds; a readable ``wake``
        socket (drained here) ends the wait early, e.g. when new work arrived."""
        waitables: list[Any] = [s.conn for s in self.slots]
        waitables += [s.process.sentinel for s in self.slots]
        if wake is not None:
            waitables.append(wake)
        ready = wait(waitables, timeout=timeout)
        if wake is not None and wake in ready:
            with contextlib.suppress(BlockingIOError):
                while wake.recv(4096):
                    pass
        events: list[Finished | Died] = self._timeouts()
        for slot in list(self.slots):
            if slot.conn in ready:
                ev = self._receive(slot)
            elif slot.process.sentinel in ready and not slot.process.is_alive():
                ev = self._died(slot)
            else:
                continue
            if ev is not None:
                events.append(ev)
        return events

    def _timeouts(self) -> list[Finished | Died]:
        """Jobs past the trainer's timeout_s fail; their processes are killed and replaced."""
        limit = self.spec.trainer.timeout_s if self.spec.trainer is not None else None
        if limit is None:
            return []
        now = time.monotonic()
        out: list[Finished | Died] = []
        for slot in list(self.slots):
            if slot.job is not None and slot.started and now - slot.started > limit:
                job, slot.job = slot.job, None
                _kill_slot(slot.process)
                slot.conn.close()
                self.slots[self.slots.index(slot)] = self._start(slot.name, slot.device)
                self._forget(job)
                why = f"timed out after {limit:g} s (trainer.timeout_s); its process was killed"
                out.append(Finished(job, None, {}, None, why, now - slot.started))
        return out

    def _receive(self, slot: _Slot) -> Finished | Died | None:
        while True:
            try:
                msg = slot.conn.recv()
            except (EOFError, OSError):
                return self._died(slot)
            if msg[0] == "ready":
                slot.ready, self.startup_deaths = True, 0
            elif msg[0] != "reports":
                break
            elif self.on_report is not None and msg[1] == slot.job:
                self.on_report(msg[1], msg[2])
            try:
                if not slot.conn.poll():
                    return None  # more reports, the result, or a death: the next wait
            except (EOFError, OSError):
                return self._died(slot)
        if msg[0] == "setup-error":
            raise SlotError(msg[1])
        if msg[0] == "start":
            slot.started = time.monotonic()
            return None
        _, job_id, value, metrics, state, error, seconds, cpu = msg
        slot.job = None
        return Finished(job_id, value, metrics, state, error, seconds, slot.threads, cpu)

    def _died(self, slot: _Slot) -> Died | None:
        slot.process.join(timeout=1)
        code = slot.process.exitcode
        job, slot.job = slot.job, None
        if job is not None:
            self._forget(job)
        self.restarts += 1
        if self.restarts > self.max_restarts:
            raise SlotError(f"slots died {self.restarts} times; last exit code {code}")
        if not slot.ready:
            self.startup_deaths += 1
            if self.startup_deaths >= STARTUP_DEATHS:
                raise SlotError(self._startup_failure(code))
        i = self.slots.index(slot)
        slot.conn.close()
        self.slots[i] = self._start(slot.name, slot.device)
        return None if job is None else Died(job, code)

    def _startup_failure(self, code: int | None) -> str:
        """Why the slots keep dying before they have their trainer, with the usual cause."""
        why = (
            f"slot processes exited while starting, {self.startup_deaths} times in a row "
            f"(last exit code {code}), before their trainer was loaded; the error is printed above"
        )
        main = sys.modules.get("__main__")
        cli = getattr(getattr(main, "main", None), "__module__", None) == "ash.cli"  # ash's own
        if self.ctx.get_start_method() == "spawn" and getattr(main, "__file__", None) and not cli:
            why += (
                f". Each slot process runs {main.__file__} again (Python's spawn start "  # type: ignore[union-attr]
                'method): call ash.tune under `if __name__ == "__main__":`'
            )
        return why

    def _forget(self, job: int) -> None:
        """Remove the scratch folder of a job whose process was killed or died."""
        shutil.rmtree(scratch_dir(self.work_root, self.spec.name, job), ignore_errors=True)

    def wind_down(self, grace: float = 2.0) -> None:
        """Ask the slots to end without waiting for them: a slot's process exit (its trainer's
        teardown, torch's finalisers) then overlaps the caller's own closing work, and
        ``shutdown`` waits until ``grace`` seconds from now."""
        if self._ending is not None:
            return
        # what the trainers started, found while the slots are still their parents
        self._below = _descendants(*(s.process.pid for s in self.slots if s.process.pid))
        for s in self.slots:
            with contextlib.suppress(OSError, ValueError):
                s.conn.send(None)
        self._ending = time.monotonic() + grace

    def shutdown(self, grace: float = 2.0) -> None:
        """Ask the slots to end (unless ``wind_down`` did); one still busy after ``grace``
        seconds is killed (a slot ignores SIGTERM: terminate would leave it running, and
        multiprocessing's exit handler would then wait for its job to end, holding the
        worker's exit). Interrupted while waiting (a second Ctrl-C), it kills every slot
        still running before the interrupt goes on: none is left to finish a long job."""
        self.wind_down(grace)
        deadline = self._ending
        assert deadline is not None
        try:
            for s in self.slots:
                s.process.join(timeout=max(0.0, deadline - time.monotonic()))
        finally:
            for s in self.slots:
                if s.process.is_alive():
                    _kill_slot(s.process)
                s.conn.close()
            _kill_all(self._below)  # what the trainers started and left running
            self.slots = []
            if self._own_root:
                shutil.rmtree(self.work_root, ignore_errors=True)
