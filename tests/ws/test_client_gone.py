"""`WebSocket.wait_gone`: a client's leaving is seen without reading what it sent (real socket pairs)."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from roomcast.http.ws.connection import WebSocket


def socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    ours, theirs = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return trio.SocketStream(ours), trio.SocketStream(theirs)


async def test_a_closed_socket_is_gone_and_marks_the_connection_closed() -> None:
    ours, theirs = socket_pair()
    websocket = WebSocket(ours, max_message_bytes=1 << 16)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(websocket.wait_gone)
        await trio.testing.wait_all_tasks_blocked()
        await theirs.aclose()
    assert websocket.closed is not None and websocket.closed.code == 1006


async def test_a_client_that_sent_more_is_not_taken_for_gone_and_its_bytes_stay_unread(
        autojump_clock: trio.testing.MockClock) -> None:
    ours, theirs = socket_pair()
    websocket = WebSocket(ours, max_message_bytes=1 << 16)
    await theirs.send_all(b"\x81")  # the start of its next frame
    await theirs.aclose()
    with trio.move_on_after(60) as waited:  # it waits for good: the reader sees the close later
        await websocket.wait_gone()
    assert waited.cancelled_caught and websocket.closed is None
    assert await ours.receive_some(16) == b"\x81"


@pytest.mark.parametrize("buffered", [b"\x81", b""])
async def test_a_connection_holding_unparsed_input_waits(
        buffered: bytes, autojump_clock: trio.testing.MockClock) -> None:
    ours, theirs = socket_pair()
    websocket = WebSocket(ours, max_message_bytes=1 << 16)
    websocket._parser.feed(buffered)
    await theirs.aclose()
    with trio.move_on_after(60) as waited:
        await websocket.wait_gone()
    assert waited.cancelled_caught == bool(buffered)
