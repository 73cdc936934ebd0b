"""A raw WebSocket client that connects, maybe subscribes, then drops its TCP connection (RST).

This is what a deploy, a load-balancer restart or a phone losing its network does
to a server: no close frame, no FIN, just a reset, at any moment of a session.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from urllib.parse import urlsplit

import trio


def masked_text(payload: bytes) -> bytes:
    """One client text frame (clients must mask)."""
    mask = os.urandom(4)
    if len(payload) < 126:
        header = bytes((0x81, 0x80 | len(payload)))
    else:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, len(payload))
    return header + mask + bytes(byte ^ mask[n % 4] for n, byte in enumerate(payload))


def upgrade_request(base_url: str, token: str) -> bytes:
    host = urlsplit(base_url).netloc
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET /ws?token={token} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def abort(stream: trio.SocketStream) -> None:
    """Close with a TCP reset instead of a FIN: SO_LINGER on, zero seconds."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def connect_and_drop(base_url: str, token: str, *, room: int | None = None,
                           wait_for: bytes | None = b'"welcome"') -> None:
    """One cycle: upgrade, read until `wait_for` appears (None: not at all), subscribe to `room`
    if given (without waiting for `subscribed`), then reset the connection."""
    parts = urlsplit(base_url)
    stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
    try:
        await stream.send_all(upgrade_request(base_url, token))
        if wait_for is not None:
            received = b""
            with trio.fail_after(10):
                while wait_for not in received:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    received += chunk
        if room is not None:
            await stream.send_all(masked_text(json.dumps({"type": "subscribe", "room": room}).encode()))
            await trio.sleep(0)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        abort(stream)
