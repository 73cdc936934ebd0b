"""The fan-out fast path of `WebSocket`: non-blocking writes, and the tail a partial one leaves."""

from __future__ import annotations

import socket

import trio

from roomcast.http.ws.connection import WebSocket


def socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    ours, theirs = trio.socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # small, so writes fill it quickly
    return trio.SocketStream(ours), trio.SocketStream(theirs)


async def read_exactly(stream: trio.SocketStream, size: int) -> bytes:
    received = b""
    while len(received) < size:
        received += await stream.receive_some(1 << 16)
    return received


async def test_a_partial_write_is_finished_before_the_next_frame() -> None:
    ours, theirs = socket_pair()
    websocket = WebSocket(ours, max_message_bytes=1 << 16)
    big = bytes(range(256)) * 2048  # 512 KiB: more than the socket takes at once
    assert websocket.try_write_now(big)
    assert websocket.has_tail
    assert not websocket.try_write_now(b"jump the queue")  # the tail goes first
    async with trio.open_nursery() as nursery:
        nursery.start_soon(websocket.send_frame, b"next")
        received = await read_exactly(theirs, len(big) + 4)
    assert received == big + b"next"
    assert not websocket.has_tail


async def test_a_full_socket_refuses_without_writing() -> None:
    ours, _theirs = socket_pair()
    websocket = WebSocket(ours, max_message_bytes=1 << 16)
    while websocket.try_write_now(b"x" * 1024) and not websocket.has_tail:
        pass
    # The socket is full (or holds a tail): nothing more goes out until the writer catches up.
    assert not websocket.try_write_now(b"z")


async def test_nothing_is_written_while_another_write_holds_the_socket() -> None:
    ours, theirs = socket_pair()
    websocket = WebSocket(ours, max_message_bytes=1 << 16)
    async with websocket._lock():
        assert not websocket.try_write_now(b"later")
    assert websocket.try_write_now(b"now")
    assert await theirs.receive_some(16) == b"now"
