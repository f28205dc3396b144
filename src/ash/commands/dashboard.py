"""``ash dashboard``: serve the live web dashboard of a running study, a finished one, or a
folder of them; and the dashboard ``ash-scheduler --dashboard-port`` serves beside its study.

A PATH that is one study and cannot be read is refused (exit 2). Under a folder, one study that
cannot be read (a damaged results.json or journal) does not keep the others from being served:
it is listed with its one-line error (and warned about on stderr), and read again when its
file changes, like every file study."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ash.errors import UserError
from ash.printable import printable

if TYPE_CHECKING:
    from ash.dashboard.model import StudyModel
    from ash.dashboard.server import Dashboard


def _require() -> None:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise UserError(
            "the dashboard needs the dashboard extra: pip install 'ash-hpo[dashboard]'"
        ) from None


def parse_hostport(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(f"{flag} {text!r}: expected HOST:PORT (PORT 0 picks a free one)")
    return host.strip("[]"), int(port)


def unreadable(path: Path, why: str) -> StudyModel:
    """The view of a study under a folder that cannot be read: its name, where, and why."""
    from ash.dashboard.model import StudyModel

    model = StudyModel()
    model.study = path.stem if path.is_file() else path.name
    model.source = str(path)
    model.error = why
    model.finished = True
    return model


def _file_study(
    dash: Dashboard, path: Path, trace: Path | None, *, in_folder: bool = False
) -> str | None:
    """Serve the study at ``path``, read again when its file changes. Under a folder
    (``in_folder``) a study that cannot be read is served as its error, which is returned;
    else it is refused (the UserError). None: it was read."""
    from ash.dashboard.sources import load_path

    def stamp() -> tuple[float, ...]:
        files = [path / "results.json" if path.is_dir() else path]
        if trace is not None:
            files.append(trace)
        return tuple(f.stat().st_mtime if f.exists() else 0.0 for f in files)

    def read() -> tuple[StudyModel, str | None]:
        try:
            return load_path(path, trace), None
        except UserError as exc:
            if not in_folder:
                raise
            return unreadable(path, str(exc)), str(exc)

    model, why = read()
    study = dash.add(model, stamp=stamp())

    def reload() -> StudyModel:
        now = stamp()
        if now == study.stamp:
            return study.model
        study.stamp = now
        return read()[0]

    study.reload = reload
    return why


def build(args: argparse.Namespace, token: str | None) -> tuple[Dashboard, list[str]]:
    """The dashboard of ``args``, and the errors of the studies under a folder that cannot be
    read (listed with them)."""
    from ash.dashboard.model import StudyModel
    from ash.dashboard.server import Dashboard
    from ash.dashboard.sources import find_studies, follow, watch_batches

    dash = Dashboard(token)
    if args.scheduler:
        from ash.tls import read_ca

        parse_hostport(args.scheduler, "--scheduler")
        ca = read_ca(args.tls_ca, "--tls-ca") if args.tls_ca else None
        model = StudyModel()
        model.source = f"scheduler {args.scheduler}"
        dash.add(model)
        address = args.scheduler
        dash.follow(follow(model, lambda: watch_batches(address, token, ca)))
        return dash, []
    path = Path(args.path)
    trace = Path(args.trace) if args.trace else None
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if path.is_dir() and not (path / "results.json").is_file():
        found = find_studies(path)
        if not found:
            raise UserError(f"{path}: holds no study (no results.json or journal under it)")
        errors = [_file_study(dash, p, None, in_folder=True) for p in found]
        return dash, [e for e in errors if e is not None]
    _file_study(dash, path, trace)
    return dash, []


def run(args: argparse.Namespace) -> int:
    from ash.link.auth import read_secret

    _require()
    from ash.dashboard.server import check_listen

    if (args.path is None) == (args.scheduler is None):
        raise UserError("give a PATH (results.json, journal, folder) or --scheduler HOST:PORT")
    token = read_secret(args.token_file, "--token-file")
    host, port = parse_hostport(args.listen, "--listen")
    check_listen(host, token)
    return asyncio.run(_serve(args, token, host, port))


async def _serve(args: argparse.Namespace, token: str | None, host: str, port: int) -> int:
    dash, unread = build(args, token)
    for why in unread:
        print(f"ash dashboard: warning: {printable(why)} (listed with this error)", file=sys.stderr)
    bound = await dash.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    n = len(dash.studies)
    shown = f"[{host}]" if ":" in host else host
    print(
        f"ash dashboard: http://{shown}:{bound}/ ({n} {'study' if n == 1 else 'studies'}"
        + (f", {len(unread)} unreadable" if unread else "")
        + ")",
        flush=True,
    )
    await stop.wait()
    await dash.close()
    return 0


class ServiceDashboard:
    """The dashboard ``ash-scheduler --dashboard-port`` serves beside its study, fed by the
    service's own detailed Watch stream."""

    def check(self, host: str, token: str | None) -> None:
        _require()
        from ash.dashboard.server import check_listen

        check_listen(host, token, "--dashboard-port (beside --listen)")

    async def start(
        self, service: Any, host: str, port: int, token: str | None
    ) -> Callable[[], Awaitable[None]]:
        self.check(host, token)
        from ash.dashboard.model import StudyModel
        from ash.dashboard.server import Dashboard
        from ash.dashboard.sources import follow

        dash = Dashboard(token)
        model = StudyModel()
        model.source = "this scheduler"
        dash.add(model)
        dash.follow(follow(model, lambda: service.watch_batches(detail=True)))
        bound = await dash.start(host, port)
        shown = f"[{host}]" if ":" in host else host
        print(f"ash-scheduler: dashboard on http://{shown}:{bound}/", flush=True)
        return dash.close
