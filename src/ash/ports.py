"""Whether a TCP address can be listened on, checked before a server starts.

gRPC reports a port it cannot bind as a RuntimeError without the reason, and only after the
study is open; asyncio's servers raise OSError. ``check_bindable`` binds a throwaway socket to
each local address of ``host`` the way those servers do (SO_REUSEADDR, no SO_REUSEPORT) and turns
"address in use" and the like into a UserError naming the flag.
"""

from __future__ import annotations

import errno
import socket

from ash.errors import UserError


def check_bindable(host: str, port: int, flag: str, hint: str = "") -> None:
    """A UserError ``{flag}: address in use{hint}`` (or why else it cannot be bound) if no
    server could listen on ``host:port`` now. Port 0 (any free one) always can."""
    if port == 0:
        return
    name = host.strip("[]") or None
    where = f"{flag} {host}:{port}"
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"{where}: unknown host ({exc.strerror})") from None
    errors: list[OSError] = []
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise UserError(f"{where}: address in use{hint}") from None
                errors.append(exc)
    if errors and len(errors) == len(infos):  # one family may be missing (no IPv6): fine
        raise UserError(f"{where}: cannot listen there ({errors[0].strerror or errors[0]})")
