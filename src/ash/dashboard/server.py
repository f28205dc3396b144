"""The dashboard's web server (aiohttp): the page, its JSON views, and Server-Sent Events.

Routes: ``/`` the page (``static/index.html``; the study list when there are several), ``/static/``
its files, ``/api/studies`` the list, ``/api/study/ID`` one study's whole view,
``/api/study/ID/trials.csv`` every trial (the page draws a subset of a large study), and
``/api/study/ID/events`` an event stream whose first message is that view and the rest deltas
(``model.StudyModel.delta``), at most one per ``TICK_S`` per study (coalesced: a burst of
results is one message). The server is read-only: it has no route that changes a study.

With a token every request must carry it (``Authorization: Bearer``, the ``ash_token`` cookie,
or ``?token=`` once, which sets the cookie); a wrong or missing one is answered 401. Without a
token the server listens on loopback only (``check_listen``) and answers only requests whose
``Host`` is a loopback name (403 otherwise): a page on a DNS name rebound to 127.0.0.1 would
otherwise be same-origin with it and read every study. Importance is estimated in a
thread while a page watches, when its input grew by a tenth (``StudyModel.importance_due``), at
most every ``IMPORTANCE_S`` and ``IMPORTANCE_SPACING`` times as long as the last estimate took.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from ash.dashboard.importance import importance
from ash.dashboard.model import StudyModel
from ash.errors import UserError
from ash.link.auth import is_loopback

TICK_S = 0.2
IMPORTANCE_S = 5.0  # at least this long between two importance estimates of a study,
IMPORTANCE_SPACING = 50  # and 50 times as long as the last one took (2% of a core at most)
KEEPALIVE_S = 15.0
STATIC = resources.files("ash.dashboard") / "static"
CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".md": "text/plain",
    ".png": "image/png",
}


def _raw(text: str) -> bytes:
    """A header's or cookie's text as the bytes that came (aiohttp keeps undecodable bytes as
    surrogates, which a plain encode refuses)."""
    return text.encode("utf-8", "surrogateescape")


def _loopback_host(host: str) -> bool:
    """Whether a request's ``Host`` names this machine's loopback (``localhost``, a loopback
    address, with or without a port): what a page on a rebound DNS name never sends."""
    name = host.strip()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    name = name.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_listen(host: str, token: str | None, flag: str = "--listen") -> None:
    """A dashboard off loopback must ask for a token."""
    if not is_loopback(host) and token is None:
        raise UserError(
            f"{flag} {host}: off loopback the dashboard needs a token (--token-file), "
            "or listen on 127.0.0.1 and tunnel to it (ssh -L)"
        )


@dataclass
class Study:
    """One study the server shows: its model, and the pages that watch it."""

    key: str
    model: StudyModel
    reload: Callable[[], StudyModel] | None = None  # a file study: read again if it changed
    stamp: Any = None
    subscribers: set[asyncio.Queue[str | None]] = field(default_factory=set)
    computing: bool = False
    importance_cost: float = 0.0  # seconds of CPU the last estimate took
    epoch_sent: int = 0
    last_importance: float = -1e9

    def summary(self) -> dict[str, Any]:
        m = self.model
        return {
            "id": self.key,
            **m.head(),
            "status": m.status(),
        }


class Dashboard:
    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.studies: dict[str, Study] = {}
        self.tasks: list[asyncio.Task[Any]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    # -- studies --------------------------------------------------------------------------

    def add(
        self, model: StudyModel, reload: Callable[[], StudyModel] | None = None, stamp: Any = None
    ) -> Study:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", model.study or "study").strip("-") or "study"
        key, n = base, 1
        while key in self.studies:
            n += 1
            key = f"{base}-{n}"
        study = Study(key, model, reload, stamp)
        self.studies[key] = study
        return study

    def follow(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` (a feed of a live study) for the life of the server."""
        self.tasks.append(asyncio.ensure_future(coro))

    # -- the app --------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/", self._index)
        app.router.add_get("/favicon.ico", self._favicon)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/studies", self._list)
        app.router.add_get("/api/study/{key}", self._view)
        app.router.add_get("/api/study/{key}/events", self._events)
        app.router.add_get("/api/study/{key}/trials.csv", self._csv)
        return app

    async def start(self, host: str, port: int) -> int:
        self.runner = web.AppRunner(self.app(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise UserError(f"dashboard {host}:{port}: cannot listen ({exc.strerror})") from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        self.tasks.append(asyncio.ensure_future(self._tick()))
        return self.port

    async def close(self) -> None:
        for study in self.studies.values():
            self._flush(study)  # the last of it (the study's end) reaches the pages
            for q in study.subscribers:
                q.put_nowait(None)
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.runner is not None:
            await self.runner.cleanup()

    @web.middleware
    async def _auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self.token is None:
            host = request.headers.get("Host")  # none (HTTP/1.0): only a loopback peer here
            if host is not None and not _loopback_host(host):  # a rebound name: another page
                raise web.HTTPForbidden(
                    text=f"ash dashboard: Host {host!r} is not this machine's loopback "
                    "(without a token the dashboard answers localhost, 127.0.0.1 and [::1] only)\n"
                )
            return await handler(request)
        expected = self.token.encode()
        given = request.query.get("token")
        header = request.headers.get("Authorization", "")
        candidates = [
            given,
            header[7:] if header.startswith("Bearer ") else None,
            request.cookies.get("ash_token"),
        ]
        if not any(c is not None and hmac.compare_digest(_raw(c), expected) for c in candidates):
            raise web.HTTPUnauthorized(
                text="ash dashboard: missing or wrong token (open the page as /?token=TOKEN)\n",
            )
        response = await handler(request)
        if given is not None:
            response.set_cookie("ash_token", given, httponly=True, samesite="Strict")
        return response

    async def _favicon(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=(STATIC / "index.html").read_bytes(),
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-store"},
        )

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if "/" in name or name.startswith(".") or Path(name).suffix not in CONTENT_TYPES:
            raise web.HTTPNotFound()
        path = STATIC / name
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.Response(
            body=path.read_bytes(),
            content_type=CONTENT_TYPES[Path(name).suffix],
            headers={"Cache-Control": "max-age=3600" if name.endswith(".min.js") else "no-cache"},
        )

    def _study(self, request: web.Request) -> Study:
        study = self.studies.get(request.match_info["key"])
        if study is None:
            raise web.HTTPNotFound(text="no such study\n")
        _refresh(study)
        return study

    async def _list(self, request: web.Request) -> web.StreamResponse:
        for study in self.studies.values():
            _refresh(study)  # a file study that changed (a damaged one fixed) is listed as it is
        return web.json_response([s.summary() for s in self.studies.values()])

    async def _view(self, request: web.Request) -> web.StreamResponse:
        study = self._study(request)
        self._flush(study)
        return web.json_response(study.model.view(), dumps=_dumps)

    async def _csv(self, request: web.Request) -> web.StreamResponse:
        study = self._study(request)
        return web.Response(
            text=study.model.trials_csv(),
            content_type="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="{study.key}-trials.csv"',
                "Cache-Control": "no-store",
            },
        )

    async def _events(self, request: web.Request) -> web.StreamResponse:
        study = self._study(request)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        self._flush(study)  # the pages already there get what changed; this one starts here
        q: asyncio.Queue[str | None] = asyncio.Queue()
        study.subscribers.add(q)
        try:
            await response.write(_sse(_dumps(study.model.view())))
            while True:
                try:
                    msg = await asyncio.wait_for(q.get(), KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if msg is None:
                    break
                await response.write(_sse(msg))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            study.subscribers.discard(q)
        return response

    # -- pushing --------------------------------------------------------------------------

    def _flush(self, study: Study) -> None:
        """Send what changed to the pages watching ``study``."""
        m = study.model
        if not study.subscribers:
            m.mark_clean()
            study.epoch_sent = m.epoch
            return
        d = m.delta()
        if d is None:
            return
        fresh = m.epoch != study.epoch_sent  # the study started again (a reconnect)
        study.epoch_sent = m.epoch
        out = m.view() if fresh else d
        out["sent"] = round(time.time() * 1000)  # the page measures its update latency
        msg = _dumps(out)
        for q in list(study.subscribers):
            if q.qsize() > 50:  # a page that does not keep up starts again from a whole view
                study.subscribers.discard(q)
                q.put_nowait(None)
            else:
                q.put_nowait(msg)

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TICK_S)
            self.tasks = [t for t in self.tasks if not t.done()]
            for study in list(self.studies.values()):
                m = study.model
                if (
                    study.subscribers  # nobody looks: no estimate (a page asks for a whole view)
                    and not study.computing
                    and loop.time() - study.last_importance
                    >= max(IMPORTANCE_S, IMPORTANCE_SPACING * study.importance_cost)
                    and m.importance_due()
                ):
                    study.computing = True
                    study.last_importance = loop.time()
                    self.tasks.append(asyncio.ensure_future(self._importance(study, m)))
                if m.changed():
                    self._flush(study)

    async def _importance(self, study: Study, m: StudyModel) -> None:
        try:
            got = m.importance_input()
            if got is None:
                return
            configs, values, res = got
            params = list(m.params)
            t0 = time.process_time()
            imp = await asyncio.to_thread(importance, configs, values, params)
            study.importance_cost = time.process_time() - t0
            if imp:
                m.set_importance({"resource": res, "n": len(values), "values": imp})
        finally:
            study.computing = False


def _refresh(study: Study) -> None:
    """Read a file study again if its file changed (one that cannot be read keeps its view)."""
    if study.reload is not None:
        with contextlib.suppress(UserError):
            fresh = study.reload()
            if fresh is not study.model:
                study.model = fresh


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str)


def _sse(data: str) -> bytes:
    return b"data: " + data.encode() + b"\n\n"
