"""The front door's ReplayStream: what Hypercorn reads and writes through for the requests it serves."""

from __future__ import annotations

import socket

import pytest
import trio

from roomcast.http.front_door import ReplayStream


def socket_stream_pair() -> tuple[trio.SocketStream, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setblocking(False)
    return trio.SocketStream(trio.socket.from_stdlib_socket(ours)), theirs


async def test_bytes_read_before_are_given_back_first() -> None:
    stream, peer = socket_stream_pair()
    replay = ReplayStream(stream, b"GET / HTTP/1.1\r\n")
    peer.send(b"Host: x\r\n\r\n")
    assert await replay.receive_some(1024) == b"GET / HTTP/1.1\r\n"
    assert await replay.receive_some(1024) == b"Host: x\r\n\r\n"
    await replay.aclose()
    peer.close()


async def test_an_eof_during_a_write_is_left_to_the_close_that_follows() -> None:
    """Hypercorn sends EOF without its send lock: during a write it neither fails busy nor waits
    (a client that reads nothing must not hold the connection); its aclose ends the write."""
    stream, peer = socket_stream_pair()
    replay = ReplayStream(stream, b"")
    outcome: list[BaseException | None] = []

    async def write() -> None:
        try:
            await replay.send_all(b"x" * (1 << 20))  # more than the socket buffers: it waits for the peer
            outcome.append(None)
        except trio.ClosedResourceError as exc:
            outcome.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write)
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(5):
            await replay.send_eof()
            await replay.aclose()
    assert isinstance(outcome[0], trio.ClosedResourceError)
    peer.close()


async def test_a_write_during_an_eof_waits_and_fails_as_closed_never_busy() -> None:
    for _ in range(20):  # trio runs tasks started together in either order: both orders come up
        stream, peer = socket_stream_pair()
        replay = ReplayStream(stream, b"")
        failures: list[BaseException] = []

        async def write(stream: ReplayStream = replay, failures: list[BaseException] = failures) -> None:
            try:
                await stream.send_all(b"answer")
            except (trio.ClosedResourceError, trio.BrokenResourceError) as exc:  # after the EOF: Hypercorn
                failures.append(exc)  # catches these (and never BusyResourceError)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(replay.send_eof)
            nursery.start_soon(write)
        await replay.aclose()
        peer.close()


CLOSING = b"POST /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello"
NEXT = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_nothing_after_a_request_that_asks_to_close_is_handed_over() -> None:
    """The rest of the read is held back; the next read waits for the close, not for the socket."""
    stream, peer = socket_stream_pair()
    replay = ReplayStream(stream, NEXT + CLOSING + NEXT)
    peer.send(NEXT)  # never read
    assert await replay.receive_some(1024) == NEXT + CLOSING
    async with trio.open_nursery() as nursery:
        nursery.start_soon(replay.aclose)
        with trio.fail_after(5), pytest.raises(trio.ClosedResourceError):
            await replay.receive_some(1024)
    peer.close()


async def test_a_request_cut_across_reads_is_framed_whole() -> None:
    stream, peer = socket_stream_pair()
    data = NEXT + CLOSING
    replay = ReplayStream(stream, data[:1])
    handed = await replay.receive_some(1024)
    for byte in range(1, len(data)):
        peer.send(data[byte:byte + 1] + (NEXT if byte == len(data) - 1 else b""))
        handed += await replay.receive_some(1024)
    assert handed == data
    await replay.aclose()
    peer.close()


@pytest.mark.parametrize("unframed", [b"Transfer-Encoding: chunked\r\n", b"Content-Length: 1, 1\r\n",
                                      b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"])
async def test_after_a_request_it_cannot_frame_every_byte_goes_through(unframed: bytes) -> None:
    stream, peer = socket_stream_pair()
    data = b"POST /a HTTP/1.1\r\nHost: x\r\n" + unframed + b"\r\n" + CLOSING + NEXT
    replay = ReplayStream(stream, data)
    assert await replay.receive_some(1024) == data  # as before: Hypercorn answers what it makes of it
    await replay.aclose()
    peer.close()
