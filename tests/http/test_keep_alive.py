"""Keep-alive over raw sockets: answers given before the request body, and ambiguous framing.

A client that retries on the same connection (a fresh token after 401 `token_expired`)
must get its answer; a body the server will not wait for ends in `Connection: close`.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from roomcast.http import framing
from roomcast.node import Node
from tests.raw_http import RawConnection, head

BODY = b'{"kind": "group", "name": "x", "user_id": 1, "username": "u", "password": "p"}'


async def member_header(users: Any) -> str:
    member = await users.create("member")
    return f"Authorization: Bearer {member.token}\r\n"


@pytest.mark.parametrize("method, path, status, auth", [
    ("POST", "/api/rooms", 401, False),
    ("POST", "/api/users", 403, True),
    ("POST", "/api/no/such/thing", 404, False),
    ("PUT", "/api/me", 405, False),
])
async def test_an_answer_before_the_body_keeps_the_connection(live_server: str, users: Any, method: str,
                                                             path: str, status: int, auth: bool) -> None:
    connection = await RawConnection.open(live_server)
    async with connection.stream:
        extra = await member_header(users) if auth else ""
        await connection.send(head(method, path, length=len(BODY), extra=extra))
        early = await connection.response()  # answered with the body still unsent
        assert early.status == status and b'"error"' in early.body
        assert "close" not in early.headers.get("connection", "")
        await trio.sleep(0.05)  # the body arrives later, as from a slow client
        await connection.send(BODY)
        await connection.send(head("GET", "/healthz"))
        assert (await connection.response()).status == 200
        # ...and the connection stays usable after that.
        await connection.send(head("GET", "/healthz"))
        assert (await connection.response()).status == 200


async def test_the_retry_after_401_on_the_same_connection_succeeds(live_server: str, users: Any) -> None:
    """The client's story: 401 (say token_expired), a fresh token, the same request again."""
    alice = await users.create("member")
    body = b'{"kind": "group", "name": "retried"}'
    connection = await RawConnection.open(live_server)
    async with connection.stream:
        await connection.send(head("POST", "/api/rooms", length=len(body), extra="Authorization: Bearer nope\r\n"))
        assert (await connection.response()).status == 401
        await trio.sleep(0.05)
        await connection.send(body)
        await connection.send(head("POST", "/api/rooms", length=len(body),
                                   extra=f"Authorization: Bearer {alice.token}\r\n") + body)
        created = await connection.response()
        assert created.status == 201 and b'"retried"' in created.body


async def test_too_large_closes_the_connection(live_server: str, node: Node) -> None:
    """413 for a declared length over the limit: the body is not read, so the connection ends."""
    connection = await RawConnection.open(live_server)
    async with connection.stream:
        await connection.send(head("POST", "/api/auth/login", length=node.settings.max_request_bytes + 1))
        refused = await connection.response()
        assert refused.status == 413 and refused.headers["connection"] == "close"
        assert await connection.closed_by_server()


async def test_too_large_chunked_body_closes_the_connection(live_server: str, node: Node) -> None:
    connection = await RawConnection.open(live_server)
    async with connection.stream:
        await connection.send(b"POST /api/auth/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * (node.settings.max_request_bytes + 1)
        await connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        refused = await connection.response()
        assert refused.status == 413 and refused.headers["connection"] == "close"
        assert await connection.closed_by_server()


async def test_a_body_that_never_comes_does_not_hold_the_connection_forever(
        live_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The early answer waits a bounded time for the promised body, then the connection closes."""
    monkeypatch.setattr(framing, "BODY_DRAIN_TIMEOUT_S", 0.1)
    connection = await RawConnection.open(live_server)
    async with connection.stream:
        await connection.send(head("POST", "/api/rooms", length=len(BODY)))
        assert (await connection.response()).status == 401
        assert await connection.closed_by_server()


# --------------------------------------------------------------------------- RFC 9112 §6.1

AMBIGUOUS = (b"POST /api/auth/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
             b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")


async def test_content_length_with_transfer_encoding_is_refused_and_closed(live_server: str) -> None:
    connection = await RawConnection.open(live_server)
    async with connection.stream:
        await connection.send(AMBIGUOUS)
        refused = await connection.response()
        assert refused.status == 400 and refused.headers["connection"] == "close"
        assert b'"validation_error"' in refused.body
        assert await connection.closed_by_server()


async def test_ambiguous_framing_later_on_a_kept_alive_connection_is_refused_too(live_server: str) -> None:
    connection = await RawConnection.open(live_server)
    async with connection.stream:
        await connection.send(head("GET", "/healthz"))
        assert (await connection.response()).status == 200
        await connection.send(AMBIGUOUS)
        refused = await connection.response()
        assert refused.status == 400 and refused.headers["connection"] == "close"
        assert await connection.closed_by_server()


async def test_an_upgrade_with_ambiguous_framing_is_refused(live_server: str, users: Any) -> None:
    alice = await users.create("member")
    connection = await RawConnection.open(live_server)
    async with connection.stream:
        await connection.send(
            f"GET /ws?token={alice.token} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        refused = await connection.response()
        assert refused.status == 400 and refused.headers["connection"] == "close"
        assert await connection.closed_by_server()
