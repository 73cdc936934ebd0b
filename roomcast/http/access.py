"""Request ids and the access log: one id per HTTP request, in every line it causes and in its answer.

An incoming `X-Request-Id` that looks like an id (1–128 letters, digits, `.`, `_`, `:`, `-`)
is kept, so a proxy's or a caller's id follows the request through; anything else is replaced
by a new one. The answer carries it back as `X-Request-Id`.
"""

from __future__ import annotations

import logging
import re
import secrets
import time

from quart import request

from ..logs import bind, log_event
from .context import RoomcastApp
from .framing import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("roomcast.access")

HEADER = "X-Request-Id"
_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_ROUTE_KEY = "roomcast.route"  # set in the ASGI scope by the app once it has matched the URL


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's request id if it is sane, else a new one."""
    for name, value in headers:
        if name.lower() == b"x-request-id" and _SANE_ID.fullmatch(value.strip()):
            return value.strip().decode("ascii")
    return secrets.token_hex(8)


class AccessLog:
    """ASGI middleware: binds the request id for the request's logs, echoes it, logs one access line."""

    def __init__(self, app: ASGIApp, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(list(scope.get("headers", [])))
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(name, value) for name, value in message.get("headers", [])
                           if name.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode("ascii"))]}
            await send(message)

        with bind(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                if self.enabled:
                    client = scope.get("client")
                    log_request(scope.get("method", ""), scope.get(_ROUTE_KEY), scope.get("path", ""), status,
                                started, client[0] if client else None)


def log_request(method: str, route: str | None, path: str, status: int, started: float, client: str | None) -> None:
    """The access line of one request (`started`: its time.perf_counter()), for the app and the fast sends."""
    log_event(log, "http.request", method=method, route=route or "-", path=path, status=status or 500,
              duration_ms=round((time.perf_counter() - started) * 1000, 2), client=client or "-")


def install_route_recorder(app: RoomcastApp) -> None:
    """Note the matched URL rule (`/api/rooms/<id>`, not the path) for the access line."""

    @app.before_request
    async def _record_route() -> None:
        if request.url_rule is not None:
            scope: Scope = request.scope  # type: ignore[assignment]  # an ASGI scope takes extension keys
            scope[_ROUTE_KEY] = request.url_rule.rule
