"""Heartbeats: the server pings every session, and drops a client that stops answering."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.ws.test_transport import raw_upgrade

HEARTBEAT_S = 0.5  # a client silent for two is dropped: the clients here must not miss that on a loaded machine


@pytest.fixture
def ws_settings() -> dict[str, Any]:
    return {"heartbeat_s": HEARTBEAT_S}


async def test_a_silent_client_is_pinged_then_dropped(live_server: str, users: Any) -> None:
    alice = await users.create("member")
    _, stream = await raw_upgrade(live_server, alice.token)
    received = b""
    async with stream:
        with trio.fail_after(30):  # a bound, not a measurement: two heartbeats are well inside it
            while True:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break  # dropped
                received += chunk
    assert b"\x89\x00" in received  # at least one ping (FIN + opcode 9, empty payload)


def masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask)."""
    mask = b"\x01\x02\x03\x04"
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + bytes(
        byte ^ mask[n % 4] for n, byte in enumerate(payload))


def split_frame(buffer: bytes) -> tuple[int, bytes] | None:
    """(opcode, what follows) of the first whole server frame in `buffer`, or None yet."""
    if len(buffer) < 2:
        return None
    size, start = buffer[1] & 0x7F, 2
    assert size != 127  # nothing that big in this exchange
    if size == 126:
        if len(buffer) < 4:
            return None
        size, start = int.from_bytes(buffer[2:4], "big"), 4
    if len(buffer) < start + size:
        return None
    return buffer[0] & 0x0F, buffer[start + size:]


async def test_a_client_that_answers_pings_stays(live_server: str, users: Any) -> None:
    alice = await users.create("member")
    head, stream = await raw_upgrade(live_server, alice.token)
    buffer = head.partition(b"\r\n\r\n")[2]
    pings = 0
    async with stream:
        with trio.fail_after(30):
            while pings < 4:  # four heartbeats: twice the silence that gets a client dropped
                while (frame := split_frame(buffer)) is None:
                    chunk = await stream.receive_some(4096)
                    assert chunk, "the server dropped a client that answered every ping"
                    buffer += chunk
                opcode, buffer = frame
                if opcode == 0x9:
                    pings += 1
                    await stream.send_all(masked(0xA, b""))
            await stream.send_all(masked(0x1, b'{"type":"ping","ref":"alive"}'))
            while b'"alive"' not in buffer:
                buffer += await stream.receive_some(4096)
