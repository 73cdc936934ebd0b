"""HTTP/1.1 request framing around the app: keep-alive survives answers given before the body.

Quart answers a 401, 404, 405 or 413 without awaiting the request body. Hypercorn then
finishes the response while the body is still on its way, and two things go wrong on
that connection: its h11 state waits for the rest of the request, and Quart-Trio, told
the stream is closed from inside that very response call, cancels the task that was
recycling (or closing) the connection halfway. The next request on it got no answer.

This middleware, once for every route:
- holds the end of an early response until a body of bounded declared length has arrived
  (Quart's receiver reads it, and drops what it does not need), so the connection is reused;
- marks `Connection: close` on an early response to a body it will not wait for (chunked,
  or longer than the request limit), so the client knows to open a new connection;
- shields the call that ends each response, so the connection is always recycled or closed;
- refuses a request with both `Content-Length` and `Transfer-Encoding` with 400 and closes
  the connection (RFC 9112 §6.1: the two may frame the body differently for a proxy and us);
- refuses a request head over 16 KiB with 431 and closes the connection. Hypercorn's h11
  refuses one only while it is incomplete at that size, so a larger head that happened to
  arrive whole in one read used to pass: the answer hung on how the bytes were cut.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import trio

from ..errors import envelope

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# How long an early response waits for the rest of a body it means to drain.
BODY_DRAIN_TIMEOUT_S = 10.0
# Ending a response is quick (a write Hypercorn shields anyway, then bookkeeping); the cap only
# keeps a shielded call from outliving a shutdown by much if that ever changes.
_FINISH_TIMEOUT_S = 5.0

AMBIGUOUS_FRAMING_MESSAGE = "a request may not carry both Content-Length and Transfer-Encoding"
# The largest request head (request line and fields) taken, as Hypercorn's h11_max_incomplete_size.
MAX_HEAD_BYTES = 16 << 10
HEAD_TOO_LARGE_MESSAGE = f"the request head (request line and header fields) is over {MAX_HEAD_BYTES >> 10} KiB"


def error_body(code: str, message: str) -> bytes:
    """PROTOCOL §1's error envelope, for answers given below the app."""
    return json.dumps(envelope(code, message)).encode()


def ambiguous_framing(header_names: Iterable[str]) -> bool:
    """True if a request head has both Content-Length and Transfer-Encoding."""
    return {"content-length", "transfer-encoding"} <= {name.lower() for name in header_names}


def head_size(scope: Scope, headers: Iterable[tuple[bytes, bytes]]) -> int:
    """The bytes of the HTTP/1.1 head that made `scope` before the CRLF CRLF that ends it (as the
    front door and the fast sends measure a head): its request line and fields."""
    query = scope.get("query_string") or b""
    target = len(scope.get("raw_path") or b"") + (1 + len(query) if query else 0)
    line = len(scope["method"]) + 1 + target + len(" HTTP/1.1\r\n")
    return line + sum(len(name) + len(value) + 4 for name, value in headers) - 2


class RequestFraming:
    """ASGI middleware (HTTP/1.x only): see the module docstring."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("http_version", "")).startswith("1"):
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        if ambiguous_framing(name.decode("latin-1") for name, _ in headers):
            await _refuse(receive, send, 400, "validation_error", AMBIGUOUS_FRAMING_MESSAGE)
            return
        if head_size(scope, headers) > MAX_HEAD_BYTES:
            await _refuse(receive, send, 431, "too_large", HEAD_TOO_LARGE_MESSAGE)
            return
        await _Exchange(self.app, headers, self.max_body_bytes).run(scope, receive, send)


class _Exchange:
    """One request and its response."""

    def __init__(self, app: ASGIApp, headers: list[tuple[bytes, bytes]], max_body_bytes: int) -> None:
        self.app = app
        lengths = [value for name, value in headers if name.lower() == b"content-length"]
        chunked = any(name.lower() == b"transfer-encoding" for name, _ in headers)
        try:
            declared = int(lengths[0]) if lengths else 0
        except ValueError:  # h11 refuses such a head before the app sees it; be safe anyway
            declared = max_body_bytes + 1
        self.body_done = trio.Event()
        if not chunked and declared == 0:
            self.body_done.set()
        # A body we will wait for on an early answer: known, bounded length.
        self.drainable = not chunked and declared <= max_body_bytes

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def watched_receive() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" or (
                    message["type"] == "http.request" and not message.get("more_body", False)):
                self.body_done.set()
            return message

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not self.body_done.is_set() and not self.drainable:
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            if message["type"] != "http.response.body" or message.get("more_body", False):
                await send(message)
                return
            if self.drainable and not self.body_done.is_set():
                # The client already has the whole response (it is Content-Length framed);
                # only its end is held, until the body is in and the connection can be reused.
                with trio.move_on_after(BODY_DRAIN_TIMEOUT_S):
                    await self.body_done.wait()
            await _finish(send, message)

        await self.app(scope, watched_receive, guarded_send)


async def _finish(send: Send, message: Message) -> None:
    """Send a response's last message, which is when Hypercorn recycles or closes the connection.

    Hypercorn tells the app the stream closed from inside this call; Quart-Trio cancels the
    calling task on hearing it. Unshielded, that cancellation cut the recycling short.
    """
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + _FINISH_TIMEOUT_S
        await send(message)


async def _refuse(receive: Receive, send: Send, status: int, code: str, message: str) -> None:
    """Answer with PROTOCOL's error envelope and close the connection, whatever body follows."""
    body = error_body(code, message)

    async def discard_body() -> None:
        # Hypercorn queues body messages for the app: someone must take them.
        while (await receive())["type"] != "http.disconnect":
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(discard_body)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"x-content-type-options", b"nosniff"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await _finish(send, {"type": "http.response.body", "body": b"", "more_body": False})
        nursery.cancel_scope.cancel()
