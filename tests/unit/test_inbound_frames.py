"""The client-frame parser: frames as another implementation (wsproto's client) writes them, cut anywhere."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from roomcast.http.ws.inbound import Close, FrameParser, Message, ProtocolError, unmask
from roomcast.http.ws.inbound import Ping as PingEvent
from roomcast.http.ws.inbound import Pong as PongEvent

LIMIT = 1 << 16


def client() -> Connection:
    return Connection(ConnectionType.CLIENT)


def events(parser: FrameParser, data: bytes, cut: int | None = None) -> list[object]:
    """Feed `data` (in two pieces if `cut` is given) and take every event."""
    out: list[object] = []
    for piece in (data,) if cut is None else (data[:cut], data[cut:]):
        parser.feed(piece)
        while (event := parser.next()) is not None:
            out.append(event)
    return out


def masked(first_byte: int, payload: bytes, length_bytes: bytes | None = None) -> bytes:
    mask = b"\x01\x02\x03\x04"
    header = bytes((first_byte,)) + (length_bytes if length_bytes is not None else bytes((0x80 | len(payload),)))
    return header + mask + unmask(mask, payload)


def test_unmask_is_its_own_inverse_and_matches_the_rfc_example() -> None:
    # RFC 6455 §5.7: "Hello", masked with 37 fa 21 3d.
    assert unmask(bytes.fromhex("37fa213d"), bytes.fromhex("7f9f4d5158")) == b"Hello"
    assert unmask(b"abcd", unmask(b"abcd", b"\x00" * 9 + b"xyz")) == b"\x00" * 9 + b"xyz"


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.text(max_size=300), min_size=1, max_size=4), fragment=st.booleans(),
       cut=st.integers(0, 2000))
def test_messages_split_anywhere_come_out_whole(texts: list[str], fragment: bool, cut: int) -> None:
    conn = client()
    wire = b""
    for text in texts:
        if fragment and len(text) > 1:
            half = len(text) // 2
            wire += conn.send(TextMessage(data=text[:half], message_finished=False))
            wire += conn.send(Ping(payload=b"between"))  # control frames may come between fragments
            wire += conn.send(TextMessage(data=text[half:]))
        else:
            wire += conn.send(TextMessage(data=text))
    got = events(FrameParser(LIMIT), wire, min(cut, len(wire)))
    assert [e.text for e in got if isinstance(e, Message)] == texts
    assert all(e == PingEvent(b"between") for e in got if not isinstance(e, Message))


def test_byte_by_byte_with_long_lengths() -> None:
    conn = client()
    medium, large = "m" * 300, "l" * 70_000
    wire = conn.send(TextMessage(data=medium)) + conn.send(BytesMessage(data=large.encode()))
    wire += conn.send(Pong(payload=b"p"))
    parser = FrameParser(1 << 17)
    got: list[object] = []
    for index in range(0, len(wire), 7):
        got += events(parser, wire[index:index + 7])
    assert got == [Message(medium), Message(large), PongEvent(b"p")]


def test_close_frames() -> None:
    assert events(FrameParser(LIMIT), client().send(CloseConnection(code=4000, reason="bye"))) == [Close(4000, "bye")]
    assert events(FrameParser(LIMIT), masked(0x88, b"")) == [Close(1005, "")]
    parser = FrameParser(LIMIT)
    # Nothing after a close frame is read.
    assert events(parser, masked(0x88, (1000).to_bytes(2, "big")) + masked(0x81, b"late")) == [Close(1000, "")]


@pytest.mark.parametrize(
    ("wire", "code"),
    [(masked(0x88, b"\x03"), 1002),  # a 1-byte close payload
     (masked(0x88, (1005).to_bytes(2, "big")), 1002),  # a code only for local use
     (masked(0x88, (1004).to_bytes(2, "big")), 1002),  # reserved
     (masked(0x88, (5000).to_bytes(2, "big")), 1002),
     (masked(0x88, (1000).to_bytes(2, "big") + b"\xff"), 1007),
     (masked(0x09, b"ping"), 1002),  # a fragmented control frame
     (masked(0x89, b"x" * 126, bytes((0x80 | 126,)) + (126).to_bytes(2, "big")), 1002),  # control over 125
     (masked(0x81, b"short", bytes((0x80 | 126,)) + (5).to_bytes(2, "big")), 1002),  # not the shortest length
     (masked(0x80, b"orphan"), 1002),  # a continuation with no message begun
     (masked(0x01, b"a") + masked(0x81, b"b"), 1002),  # a new message inside a fragmented one
     (masked(0xA1, b"x"), 1002),  # RSV2
     (masked(0x8B, b"x"), 1002),  # a reserved control opcode
     (masked(0x81, b"\xc3"), 1007)],
)
def test_violations_name_their_close_code(wire: bytes, code: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        events(FrameParser(LIMIT), wire)
    assert caught.value.code == code


def test_a_message_over_the_limit_is_refused_from_its_header() -> None:
    # Only the header and a few payload bytes have arrived: the length alone decides.
    header = bytes((0x81, 0x80 | 127)) + (1 << 20).to_bytes(8, "big") + b"mask"
    with pytest.raises(ProtocolError) as caught:
        events(FrameParser(LIMIT), header + b"abc")
    assert caught.value.code == 1009
    # Fragments count together.
    first = masked(0x01, b"a" * 100)
    with pytest.raises(ProtocolError) as caught:
        events(FrameParser(150), first + masked(0x80, b"b" * 60))
    assert caught.value.code == 1009


def test_binary_that_is_not_utf8_becomes_a_replacement_character() -> None:
    assert events(FrameParser(LIMIT), masked(0x82, b"\xff{}")) == [Message("\ufffd")]


def test_an_idle_parser_keeps_no_buffer() -> None:
    parser = FrameParser(LIMIT)
    events(parser, masked(0x81, b"{}") + masked(0x01, b"half"), cut=3)
    events(parser, masked(0x80, b"-done"))
    assert parser._buffer == b"" and parser._parts is None and parser._decoder is None
