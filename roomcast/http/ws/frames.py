"""Server-to-client WebSocket frames, built once as bytes (RFC 6455 §5.2).

Server frames are never masked, so the same bytes can go to every subscriber.
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81
_FIN_CLOSE = 0x88
_FIN_PING = 0x89
_FIN_PONG = 0x8A


def _header(first_byte: int, length: int) -> bytes:
    if length < 126:
        return bytes((first_byte, length))
    if length < 1 << 16:
        return struct.pack("!BBH", first_byte, 126, length)
    return struct.pack("!BBQ", first_byte, 127, length)


def text_frame(payload: bytes) -> bytes:
    """One final text frame carrying `payload` (UTF-8 JSON lines)."""
    return _header(_FIN_TEXT, len(payload)) + payload


_last_payload: bytes = b""
_last_frame: bytes = text_frame(b"")


def shared_text_frame(payload: bytes) -> bytes:
    """`text_frame(payload)`, built once for a run of calls with the same payload object.

    A room actor hands one event's bytes to every subscriber in turn; remembering the
    last frame turns a thousand header-plus-copy builds into one.
    """
    global _last_payload, _last_frame
    if payload is not _last_payload:
        _last_payload, _last_frame = payload, text_frame(payload)
    return _last_frame


_last_batch: list[bytes] = []
_last_batch_frame: bytes = b""


def shared_batch_frame(payloads: list[bytes]) -> bytes:
    """`batch_frame(payloads)`, built once for a run of calls with the same list object."""
    global _last_batch, _last_batch_frame
    if payloads is not _last_batch:
        _last_batch, _last_batch_frame = payloads, batch_frame(payloads)
    return _last_batch_frame


def batch_frame(payloads: list[bytes]) -> bytes:
    """One text frame holding several events, newline-separated (PROTOCOL §5)."""
    if not payloads:
        return b""
    if len(payloads) == 1:
        return text_frame(payloads[0])
    size = sum(map(len, payloads)) + len(payloads) - 1
    return b"".join((_header(_FIN_TEXT, size), b"\n".join(payloads)))


def close_frame(code: int, reason: str = "") -> bytes:
    # A control frame carries at most 125 bytes; the cut must not split a character.
    payload = struct.pack("!H", code) + reason.encode()[:120].decode(errors="ignore").encode()
    return _header(_FIN_CLOSE, len(payload)) + payload


def ping_frame(payload: bytes = b"") -> bytes:
    return _header(_FIN_PING, len(payload)) + payload


PING = ping_frame()


def pong_frame(payload: bytes = b"") -> bytes:
    return _header(_FIN_PONG, len(payload)) + payload
