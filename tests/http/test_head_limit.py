"""A request head over 16 KiB is refused with 431 whatever the reads it arrives in; one under it is served.

Hypercorn's h11 refuses a head only while it is incomplete at that size, so a larger head that
came whole in one read used to be served, and the answer hung on how the client's bytes were cut.
"""

from __future__ import annotations

import json

import pytest
import trio

from roomcast.http.framing import MAX_HEAD_BYTES, head_size
from tests.raw_http import RawConnection


def request_head(path: str, padding: int, method: str = "GET") -> bytes:
    body = "{}" if method == "POST" else ""
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    return f"{method} {path} HTTP/1.1\r\nHost: test\r\n{length}X-Padding: {'a' * padding}\r\n\r\n{body}".encode()


async def answer_to(live_server: str, data: bytes, chunk: int) -> tuple[int, bytes]:
    connection = await RawConnection.open(live_server)
    async with connection.stream:
        try:
            for start in range(0, len(data), chunk):
                await connection.send(data[start:start + chunk])
                await trio.sleep(0.001)  # each piece its own read
        except trio.BrokenResourceError:  # refused and closed before the rest was sent
            pass
        response = await connection.response()
        return response.status, response.body


@pytest.mark.parametrize("chunk", [1 << 20, 8192, 1000])
@pytest.mark.parametrize("method, path", [("GET", "/healthz"), ("GET", "/api/rooms/1/messages"),
                                          ("POST", "/api/rooms/1/messages")])  # the fast sends' route
async def test_a_head_over_the_limit_gets_431_however_it_arrives(live_server: str, method: str, path: str,
                                                                 chunk: int) -> None:
    for padding in (MAX_HEAD_BYTES + 100, 60_000):
        status, body = await answer_to(live_server, request_head(path, padding, method), chunk)
        assert status == 431, (padding, chunk, status)
        if body:  # refused below the app (incomplete at the limit): Hypercorn's own 431 has none
            assert json.loads(body)["error"]["code"] == "too_large"


@pytest.mark.parametrize("chunk", [1 << 20, 1000])
async def test_a_head_under_the_limit_is_served(live_server: str, chunk: int) -> None:
    status, _ = await answer_to(live_server, request_head("/healthz", MAX_HEAD_BYTES - 200), chunk)
    assert status == 200


def test_the_measured_size_is_the_head_before_its_blank_line() -> None:
    data = request_head("/a/b?x=1", 50)
    scope = {"method": "GET", "raw_path": b"/a/b", "query_string": b"x=1"}
    headers = [(b"host", b"test"), (b"x-padding", b"a" * 50)]
    assert head_size(scope, headers) == data.index(b"\r\n\r\n")
