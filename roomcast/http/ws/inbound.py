"""Client-to-server WebSocket frames, parsed (RFC 6455 §5): whole messages and control frames.

Clients mask every frame, may fragment messages and may put control frames between
the fragments. A parser holds only what a frame or message in progress needs: an idle
connection's costs a few slots and no buffer (the frames it has read are gone).
Whatever breaks the RFC raises `ProtocolError` with the close code to fail the
connection with: 1002 for a malformed frame, 1007 for text that is not UTF-8,
1009 for a message over the size limit (known from the frame header, so its payload is
never buffered).
"""

from __future__ import annotations

import codecs
from typing import NamedTuple

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA_OPCODES = (CONTINUATION, TEXT, BINARY)
_CONTROL_OPCODES = (CLOSE, PING, PONG)
PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
MESSAGE_TOO_BIG = 1009
# Close codes an endpoint may send below 3000 (RFC 6455 §7.4.1, and 1012/1013 of the IANA registry);
# 3000-4999 are for libraries and applications.
_SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013})
NO_STATUS = 1005  # a close frame without a code (§7.1.5)


class ProtocolError(Exception):
    """The client broke RFC 6455 (or the size limit): fail the connection with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Message(NamedTuple):
    """A whole data message; a binary one is decoded as UTF-8 too ("\\ufffd" if it is not)."""

    text: str


class Ping(NamedTuple):
    payload: bytes


class Pong(NamedTuple):
    payload: bytes


class Close(NamedTuple):
    code: int
    reason: str


Event = Message | Ping | Pong | Close


def unmask(mask: bytes, payload: bytes) -> bytes:
    """XOR `payload` with the repeated 4-byte `mask` (§5.3), as one big-integer XOR."""
    size = len(payload)
    if not size:
        return b""
    key = (mask * ((size >> 2) + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


class FrameParser:
    """Feed it the bytes a client sends; take events with `next()` until it returns None."""

    # Slotted, and every field of a message in progress None or 0 when there is none.
    __slots__ = ("_buffer", "_closed", "_decoder", "_opcode", "_parts", "_pos", "_size", "max_message_bytes")

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self._buffer = b""  # unparsed bytes from `_pos` on; b"" (shared) once all are parsed
        self._pos = 0
        self._opcode = 0  # TEXT or BINARY while a fragmented message is in progress
        self._parts: list[bytes] | None = None  # a fragmented message's payloads so far
        self._decoder: codecs.IncrementalDecoder | None = None  # a fragmented text message's
        self._size = 0  # payload bytes of the message in progress
        self._closed = False  # a close frame came: nothing after it is read (§5.5.1)

    @property
    def holds_input(self) -> bool:
        """Bytes fed and not yet parsed into events, or a message begun: the client said more."""
        return self._pos < len(self._buffer) or self._parts is not None

    def feed(self, data: bytes) -> None:
        if self._closed or not data:
            return
        if self._pos < len(self._buffer):
            self._buffer = self._buffer[self._pos:] + data
        else:
            self._buffer = data
        self._pos = 0

    def next(self) -> Event | None:
        """The next message or control frame, or None until more bytes are fed; raises ProtocolError."""
        while not self._closed:
            buffer, pos = self._buffer, self._pos
            available = len(buffer) - pos
            if available < 2:
                return None
            first, second = buffer[pos], buffer[pos + 1]
            fin, opcode, length = first & 0x80, first & 0x0F, second & 0x7F
            if opcode not in _DATA_OPCODES and opcode not in _CONTROL_OPCODES:
                raise ProtocolError(PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
            control = opcode in _CONTROL_OPCODES
            if control and (not fin or length > 125):
                raise ProtocolError(PROTOCOL_ERROR, "a control frame must be final and at most 125 bytes")
            header = 2
            if length == 126:
                header = 4
                if available < header:
                    return None
                length = int.from_bytes(buffer[pos + 2:pos + 4], "big")
                if length < 126:
                    raise ProtocolError(PROTOCOL_ERROR, "payload length not in its shortest form")
            elif length == 127:
                header = 10
                if available < header:
                    return None
                length = int.from_bytes(buffer[pos + 2:pos + 10], "big")
                if length < 1 << 16 or length >> 63:
                    raise ProtocolError(PROTOCOL_ERROR, "payload length not in its shortest form or over 2**63")
            if first & 0x70:
                raise ProtocolError(PROTOCOL_ERROR, "reserved bit set without an extension")
            if not second & 0x80:
                raise ProtocolError(PROTOCOL_ERROR, "client frame not masked")
            if not control:
                if (opcode == CONTINUATION) != bool(self._opcode):
                    raise ProtocolError(PROTOCOL_ERROR, "continuation without a message, or a new message "
                                                        "inside a fragmented one")
                if self._size + length > self.max_message_bytes:
                    raise ProtocolError(MESSAGE_TOO_BIG, "message too big")
            end = pos + header + 4 + length
            if len(buffer) < end:
                return None
            payload = unmask(buffer[pos + header:pos + header + 4], buffer[pos + header + 4:end])
            if end == len(buffer):
                self._buffer, self._pos = b"", 0
            else:
                self._pos = end
            event = self._control(opcode, payload) if control else self._data(opcode, bool(fin), payload)
            if event is not None:
                return event
        return None

    def _control(self, opcode: int, payload: bytes) -> Event:
        if opcode == PING:
            return Ping(payload)
        if opcode == PONG:
            return Pong(payload)
        self._closed = True
        self._buffer, self._pos, self._parts, self._decoder = b"", 0, None, None
        if not payload:
            return Close(NO_STATUS, "")
        if len(payload) == 1:
            raise ProtocolError(PROTOCOL_ERROR, "close frame with a 1-byte payload")
        code = int.from_bytes(payload[:2], "big")
        if not (code in _SENDABLE_CLOSE_CODES or 3000 <= code <= 4999):
            raise ProtocolError(PROTOCOL_ERROR, f"close code {code} may not be sent")
        try:
            reason = payload[2:].decode()
        except UnicodeDecodeError:
            raise ProtocolError(INVALID_DATA, "close reason not UTF-8") from None
        return Close(code, reason)

    def _data(self, opcode: int, fin: bool, payload: bytes) -> Message | None:
        if fin and not self._opcode:  # the usual case: a whole message in one frame
            return Message(_decode(payload) if opcode == TEXT else _decode_binary(payload))
        if not self._opcode:  # the first fragment
            self._opcode, self._size, self._parts = opcode, 0, []
            if opcode == TEXT:
                self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._size += len(payload)
        assert self._parts is not None
        self._parts.append(payload)
        if self._decoder is not None:  # text fails at the first bad fragment (a character may span two)
            try:
                self._decoder.decode(payload, fin)
            except UnicodeDecodeError as exc:
                raise ProtocolError(INVALID_DATA, f"text not UTF-8: {exc.reason}") from None
        if not fin:
            return None
        whole = b"".join(self._parts)
        text = whole.decode() if self._decoder is not None else _decode_binary(whole)
        self._opcode, self._size, self._parts, self._decoder = 0, 0, None, None
        return Message(text)


def _decode(payload: bytes) -> str:
    try:
        return payload.decode()
    except UnicodeDecodeError as exc:
        raise ProtocolError(INVALID_DATA, f"text not UTF-8: {exc.reason}") from None


def _decode_binary(payload: bytes) -> str:
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return "\ufffd"  # reported as bad JSON by the session
