"""Shared-token authentication for the scheduler service, checked on every call.

A server interceptor compares the ``authorization: Bearer <token>`` metadata of each call with
the token from ``--token-file`` (constant-time). A caller without it gets UNAUTHENTICATED before
any handler runs. Only the standard health service is exempt, because orchestrators' gRPC probes
(Kubernetes, Docker HEALTHCHECK) cannot carry credentials; it reveals nothing but "serving".
Also the token file (``read_secret``, the same rules on both ends) and ``is_loopback``, which
decides when a token or a listener off loopback deserves a warning.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from ash.errors import UserError

HEALTH_PREFIX = "/grpc.health.v1.Health/"


def bearer(token: str | None) -> list[tuple[str, str]]:
    """Call metadata that carries ``token`` (empty without one)."""
    return [("authorization", f"Bearer {token}")] if token else []


class TokenAuth(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def _ok(self, details: grpc.HandlerCallDetails) -> bool:
        if details.method.startswith(HEALTH_PREFIX):
            return True
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                got = value.encode() if isinstance(value, str) else bytes(value)
                return hmac.compare_digest(got, self._expected)
        return False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or self._ok(details):
            return handler
        return _denied(handler)


def _denied(handler: Any) -> grpc.RpcMethodHandler:
    why = "missing or wrong token (authorization: Bearer <token>)"

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, why)

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, why)
        yield  # pragma: no cover (an async generator that never yields)

    kw = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming, **kw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(unary, **kw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(streaming, **kw)
    return grpc.unary_unary_rpc_method_handler(unary, **kw)


def read_secret(path: str | None, what: str) -> str | None:
    """The token in file ``path`` (surrounding whitespace stripped): one line of printable ASCII,
    as gRPC metadata requires; else a UserError naming ``what`` and the file."""
    if path is None:
        return None
    try:
        text = Path(path).read_bytes().decode("ascii").strip()
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{what} {path}: a token must be ASCII (byte {exc.start} is not); "
            "e.g. openssl rand -hex 32"
        ) from None
    if not text:
        raise UserError(f"{what} {path}: is empty")
    if "\n" in text or "\r" in text:
        raise UserError(f"{what} {path}: holds more than one line; a token is one line")
    bad = next((c for c in text if not " " <= c <= "~"), None)
    if bad is not None:
        raise UserError(
            f"{what} {path}: holds the control character {bad!r}, which gRPC metadata cannot "
            "carry; e.g. openssl rand -hex 32"
        )
    return text


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
