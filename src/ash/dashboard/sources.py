"""Where the dashboard's studies come from, each read into a ``StudyModel``.

Finished studies are read once (again when the file changes, checked when a page asks, never
polled): a ``results.json`` (with the times of a trace beside it, ``trace.jsonl``, when there is
one), a folder holding one, a trace file, or a journal (replayed read-only through the driver,
which is how the scheduler itself resumes it: times, configs, metrics and errors all come back).
A folder of such studies is a list of them. A running study comes over the scheduler's Watch
stream with ``detail`` (a snapshot, then every event as it happens): from a remote
``ash-scheduler`` over gRPC, reconnecting when the stream breaks, or in-process from the
service of ``ash-scheduler --dashboard-port``.

A file is untrusted input: one the view model cannot read (a results.json of the wrong shape, a
trace event with a field of the wrong type) is a ``SourceError`` naming it, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from ash.dashboard.model import StudyModel
from ash.errors import UserError

RESULTS = "results.json"
BAD_STREAM_MAX_S = 30.0
TRACES = ("trace.jsonl", "trace.json")


class SourceError(UserError):
    """A study file or folder the dashboard cannot read."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("trials"), list):
        raise SourceError(f"{path}: not an ash results.json (no 'trials' list)")
    return doc


def read_events(path: Path) -> list[dict[str, Any]]:
    """The events of a trace file (a torn last line skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    events = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            if n == len(lines):
                break  # a torn last line
            raise SourceError(f"{path}: line {n}: not JSON") from None
        if not isinstance(ev, dict) or "event" not in ev:
            raise SourceError(f"{path}: line {n}: not a trace event")
        events.append(ev)
    return events


@contextlib.contextmanager
def _reading(path: Path, what: str) -> Iterator[None]:
    """Turn the view model's failure on a malformed document into a SourceError naming it."""
    try:
        yield
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        raise SourceError(f"{path}: not {what} ({type(exc).__name__}: {exc})") from None


def _is_journal(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return b"ash-journal" in head.split(b"\n", 1)[0]


def replay_journal(path: Path, model: StudyModel) -> None:
    """Feed ``model`` with the events of the study in journal ``path`` (read-only: no lock,
    nothing written), replayed through a Driver of the spec the journal holds."""
    from ash.scheduler.driver import replay_read_only
    from ash.scheduler.journal import JournalError
    from ash.scheduler.watchfeed import enrich

    events: list[dict[str, Any]] = []

    def listen(driver: Any) -> Callable[[dict[str, Any]], None]:
        # each event with its config, metrics and error as they were then, as a watcher has it
        return lambda ev: events.append(enrich(ev, driver))

    try:
        driver, _, _ = replay_read_only(path, listen)
    except JournalError as exc:
        raise SourceError(str(exc)) from None
    spec = driver.spec
    model.study, model.metric, model.mode = spec.name, spec.metric, spec.mode
    model.algorithm = spec.algorithm
    sch = spec.schedule
    model.eta, model.max_resource = float(sch.reduction_factor), float(sch.max_resource)
    model.max_trials = sch.max_trials
    for ev in events:
        model.apply(ev)
    model.finished = driver.finished
    model.source = f"journal {path}"


def load_path(path: Path, trace: Path | None = None) -> StudyModel:
    """One finished study from a results.json, a folder holding one, a trace or a journal."""
    model = StudyModel()
    if path.is_dir():
        if (path / RESULTS).is_file():
            path = path / RESULTS
        else:
            raise SourceError(f"{path}: holds no {RESULTS}")
    if trace is None and path.name == RESULTS:
        trace = next((path.parent / n for n in TRACES if (path.parent / n).is_file()), None)
    if path.suffix == ".json" and not _is_journal(path):
        doc = _read_json(path)
        if trace is not None:
            with _reading(path, "an ash results.json"):
                model.load_results(doc, values=False)
            events = read_events(trace)
            with _reading(trace, "an ash trace"):
                for ev in events:
                    model.apply(ev)
            with _reading(path, "an ash results.json"):
                status = {t.get("trial"): t.get("status") for t in doc["trials"]}
                for tv in model.trials.values():
                    tv.status = str(status.get(tv.trial) or tv.status)
            model.source = f"{path} + {trace.name}"
        else:
            with _reading(path, "an ash results.json"):
                model.load_results(doc)
            model.source = str(path)
        model.finished = True
        return model
    if _is_journal(path):
        replay_journal(path, model)
        return model
    events = read_events(path)
    with _reading(path, "an ash trace"):
        for ev in events:
            model.apply(ev)
    model.finished = True
    model.study = model.study or path.stem
    model.source = str(path)
    return model


def find_studies(folder: Path, depth: int = 3) -> list[Path]:
    """The studies under ``folder``: folders holding a results.json, and journals."""
    found: list[Path] = []

    def walk(d: Path, level: int) -> None:
        try:
            entries = sorted(d.iterdir())
        except OSError:
            return
        if (d / RESULTS).is_file():
            found.append(d)
            return
        for e in entries:
            if e.is_dir() and level < depth and not e.name.startswith("."):
                walk(e, level + 1)
            elif e.is_file() and e.suffix in (".journal", ".jsonl") and _is_journal(e):
                found.append(e)

    walk(folder, 0)
    return found


Batch = list[dict[str, Any]]


async def watch_batches(
    address: str, token: str | None, ca: bytes | None = None
) -> AsyncIterator[Batch]:
    """The detailed Watch stream of the scheduler at ``address``, the events that came together
    in one list (raises grpc.aio.AioRpcError when it breaks)."""
    from ash.link.auth import bearer
    from ash.link.wire import scheduler_stub, viewer_channel
    from ash.proto import ash_pb2 as pb

    async with viewer_channel(address, ca, aio=True) as channel:
        stub = scheduler_stub(channel)
        call = stub.Watch(pb.WatchRequest(detail=True, batch=True), metadata=bearer(token))
        async for msg in call:
            # an older scheduler ignores ``batch``: one event per message, in ``json``
            lines = msg.events or [msg.json]
            try:
                batch = [json.loads(line) for line in lines]
            except ValueError:
                why = f"{address}: the scheduler sent an event that is not JSON"
                raise StreamError(why) from None
            for ev in batch:
                if not isinstance(ev, dict) or not isinstance(ev.get("event"), str):
                    shown = json.dumps(ev)[:200]
                    raise StreamError(f"{address}: the scheduler sent a non-event: {shown}")
            yield batch


class StreamError(Exception):
    """A Watch stream that carried something other than events."""


async def follow(
    model: StudyModel,
    batches: Callable[[], AsyncIterator[Batch]],
    *,
    retry_s: float = 1.0,
    on_error: Callable[[str], None] | None = None,
) -> None:
    """Feed ``model`` from ``batches()`` until the study is finished (a ``finished`` event, or a
    snapshot that says so); a stream that breaks or ends before is opened again after
    ``retry_s`` (a fresh model state from its snapshot). A refused token ends it. A stream
    that carries what the view cannot read is opened again after twice as long each time (up
    to ``BAD_STREAM_MAX_S``): each time costs the scheduler a whole snapshot."""
    import grpc

    bad = 0  # streams in a row that carried something unreadable
    while True:
        delay = retry_s
        try:
            first = True
            async for batch in batches():
                for ev in batch:
                    if first and ev.get("event") == "snapshot":
                        model.reset()
                    first = False
                    try:
                        model.apply(ev)
                    except Exception as exc:  # a peer's event the view cannot read
                        shown = json.dumps(ev)[:200]
                        why = f"an event the dashboard cannot read ({type(exc).__name__}: {exc})"
                        raise StreamError(f"the scheduler sent {why}: {shown}") from None
            if model.finished:  # the snapshot said so, or the stream's last event
                return
            # ended without "finished": this watcher was too slow and dropped; start again
        except grpc.aio.AioRpcError as exc:
            why = f"{exc.code().name}: {exc.details()}"
            if on_error is not None:
                on_error(why)
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                model.error = f"the scheduler refused us ({why}): give its --token-file"
                model.touch()
                return
            model.error = f"scheduler unreachable ({why}); retrying"
            model.touch()
        except StreamError as exc:
            if on_error is not None:
                on_error(str(exc))
            bad += 1
            delay = min(retry_s * 2 ** (bad - 1), BAD_STREAM_MAX_S)
            model.error = f"{exc}; retrying in {delay:g} s"
            model.touch()
        else:
            bad = 0
        await asyncio.sleep(delay)
