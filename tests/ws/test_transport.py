"""/ws transport over real sockets: handshake, auth, welcome, ping, error frames, close codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.helpers import JWT_SECRET
from tests.raw_http import receive_until


def ws_url(base: str, token: str | None = None) -> str:
    url = base.replace("http://", "ws://") + "/ws"
    return f"{url}?token={token}" if token is not None else url


async def next_events(ws: Any) -> list[dict]:
    """One server frame, split into its newline-separated events."""
    frame = await ws.get_message()
    return [json.loads(line) for line in frame.split("\n")]


async def next_event(ws: Any) -> dict:
    events = await next_events(ws)
    assert len(events) == 1, events
    return events[0]


async def closed_with(ws: Any) -> int:
    with pytest.raises(ConnectionClosed) as caught:
        with trio.fail_after(5):
            while True:
                await ws.get_message()
    return caught.value.reason.code


async def test_welcome_then_ping_pong(live_server: str, users: Any) -> None:
    alice = await users.create("member", username="alice")
    async with open_websocket_url(ws_url(live_server, alice.token)) as ws:
        welcome = await next_event(ws)
        assert welcome["type"] == "welcome"
        assert welcome["user"]["id"] == alice.id and welcome["user"]["online"] is True
        assert welcome["session_id"] and welcome["heartbeat_s"] > 0
        assert welcome["server_time"].endswith("Z")
        await ws.send_message(json.dumps({"type": "ping", "ref": "r1"}))
        assert await next_event(ws) == {"type": "pong", "ref": "r1"}
        await ws.send_message(json.dumps({"type": "ping"}))
        assert await next_event(ws) == {"type": "pong"}


async def test_token_in_authorization_header(live_server: str, users: Any) -> None:
    alice = await users.create("member")
    authorization = [("Authorization", f"Bearer {alice.token}")]
    async with open_websocket_url(ws_url(live_server), extra_headers=authorization) as ws:
        assert (await next_event(ws))["type"] == "welcome"


@pytest.mark.parametrize(
    "token",
    [None, "garbage",
     jwt.encode({"sub": "1", "exp": datetime.now(UTC) - timedelta(minutes=1)}, JWT_SECRET),
     jwt.encode({"sub": "1", "exp": datetime.now(UTC) + timedelta(hours=1)}, "not-the-secret" * 3)],
    ids=["missing", "garbage", "expired", "forged"],
)
async def test_bad_token_is_accepted_then_closed_1008(live_server: str, users: Any, token: str | None) -> None:
    await users.create("member")
    async with open_websocket_url(ws_url(live_server, token)) as ws:
        assert await closed_with(ws) == 1008


@pytest.mark.parametrize(
    ("frame", "code"),
    [("{not json", "malformed_json"), ("[1, 2]", "validation_error"), ('{"no": "type"}', "validation_error"),
     ('{"type": 5}', "validation_error"), ('{"type": "dance", "ref": "x"}', "unknown_type"),
     ('{"type": "ping", "ref": 7}', "validation_error")],
    ids=["bad-json", "array", "no-type", "int-type", "unknown", "int-ref"],
)
async def test_bad_frames_get_an_error_and_the_connection_stays(live_server: str, users: Any, frame: str,
                                                               code: str) -> None:
    alice = await users.create("member")
    async with open_websocket_url(ws_url(live_server, alice.token)) as ws:
        await next_event(ws)
        await ws.send_message(frame)
        error = await next_event(ws)
        assert error["type"] == "error" and error["code"] == code and error["message"]
        if code == "unknown_type":
            assert error["ref"] == "x"
        await ws.send_message('{"type": "ping", "ref": "still-there"}')
        assert await next_event(ws) == {"type": "pong", "ref": "still-there"}


async def test_oversized_frame_closes_1009(live_server: str, users: Any) -> None:
    alice = await users.create("member")
    async with open_websocket_url(ws_url(live_server, alice.token), max_message_size=1 << 20) as ws:
        await next_event(ws)
        await ws.send_message(json.dumps({"type": "ping", "pad": "x" * (64 << 10)}))
        assert await closed_with(ws) == 1009


async def test_repeated_abuse_closes_1008(live_server: str, users: Any) -> None:
    alice = await users.create("member")
    async with open_websocket_url(ws_url(live_server, alice.token)) as ws:
        await next_event(ws)
        for _ in range(40):
            try:
                await ws.send_message("{nope")
            except ConnectionClosed:  # the server's close may overtake our last frames
                break
        assert await closed_with(ws) == 1008


async def test_a_fault_in_the_server_closes_that_session_1011_and_spares_the_others(
        live_server: str, users: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from roomcast.http.ws.handlers import HANDLERS

    async def broken(session: Any, frame: dict) -> None:
        raise RuntimeError("a bug in a handler")

    monkeypatch.setitem(HANDLERS, "typing", broken)
    alice, bob = await users.create("member"), await users.create("member")
    async with open_websocket_url(ws_url(live_server, alice.token)) as victim, \
            open_websocket_url(ws_url(live_server, bob.token)) as bystander:
        await next_event(victim)
        await next_event(bystander)
        await victim.send_message(json.dumps({"type": "typing", "room": 1, "state": True}))
        assert await closed_with(victim) == 1011
        await bystander.send_message(json.dumps({"type": "ping", "ref": "still"}))
        assert await next_event(bystander) == {"type": "pong", "ref": "still"}
    assert "session crashed" in caplog.text and "a bug in a handler" in caplog.text


async def test_websocket_ping_gets_pong(live_server: str, users: Any) -> None:
    alice = await users.create("member")
    async with open_websocket_url(ws_url(live_server, alice.token)) as ws:
        await next_event(ws)
        with trio.fail_after(5):
            await ws.ping(b"are you there")


async def test_http_and_websocket_share_the_port(live_server: str, users: Any) -> None:
    alice = await users.create("member")
    async with httpx.AsyncClient(base_url=live_server) as http:
        assert (await http.get("/healthz")).status_code == 200
        me = await http.get("/api/me", headers=alice.headers)  # keep-alive: a second request, same connection
        assert me.json()["id"] == alice.id
        plain_get = await http.get("/ws")  # not an upgrade: ordinary HTTP answers it
        assert plain_get.status_code == 404


async def test_clients_get_1012_when_the_server_stops(node: Any, users: Any) -> None:
    from roomcast.server import serve_node

    alice = await users.create("member")
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        url = await nursery.start(lambda task_status: serve_node(node, shutdown=shutdown, task_status=task_status))
        async with open_websocket_url(ws_url(url, alice.token)) as ws:
            await next_event(ws)
            shutdown.set()
            assert await closed_with(ws) == 1012


async def raw_upgrade(base: str, token: str, *, version: str = "13", key: str = "dGhlIHNhbXBsZSBub25jZQ==",
                      trailing: bytes = b"") -> tuple[bytes, trio.SocketStream]:
    """Send an upgrade request by hand; returns the response head and the open stream."""
    host, port = base.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(
        f"GET /ws?token={token} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n\r\n".encode() + trailing)
    return await receive_until(stream, b"\r\n\r\n"), stream


async def test_handshake_accept_token_follows_rfc_6455(live_server: str, users: Any) -> None:
    alice = await users.create("member")
    head, stream = await raw_upgrade(live_server, alice.token)
    async with stream:
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head  # RFC 6455 §1.3's example


async def refusal_body(head: bytes, stream: trio.SocketStream) -> Any:
    """The JSON body of a refused handshake: what follows the head, up to the server's close."""
    body = head.partition(b"\r\n\r\n")[2]
    with trio.fail_after(10):
        while chunk := await stream.receive_some(4096):
            body += chunk
    return json.loads(body)


async def test_handshake_with_a_bad_version_or_key_is_refused(live_server: str, users: Any) -> None:
    alice = await users.create("member")
    head, stream = await raw_upgrade(live_server, alice.token, version="8")
    async with stream:
        assert head.startswith(b"HTTP/1.1 426 ") and b"Sec-WebSocket-Version: 13" in head
        assert (await refusal_body(head, stream))["error"]["code"] == "validation_error"
    for key in ("", "not base64!", "c2hvcnQ="):
        head, stream = await raw_upgrade(live_server, alice.token, key=key)
        async with stream:
            assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/json" in head.lower(), key
            error = (await refusal_body(head, stream))["error"]
            assert error["code"] == "validation_error" and "Sec-WebSocket-Key" in error["message"], key


UPGRADE_HEAD = ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13")


@pytest.mark.parametrize(
    ("head", "eof"),
    [(UPGRADE_HEAD.encode(), True),  # cut short: the client's EOF comes before the blank line
     (UPGRADE_HEAD.encode() + b"\r", True),
     (UPGRADE_HEAD.encode() + b"\r\nX-Long: " + b"a" * (20 << 10) + b"\r\n\r\n", False),  # over the head cap
     (UPGRADE_HEAD.replace("Host:", "Ho\x00st:").encode() + b"\r\n\r\n", False),
     (UPGRADE_HEAD.replace("Upgrade: websocket", "Upgrade : websocket").encode() + b"\r\n\r\n", False),
     (UPGRADE_HEAD.replace("Host: 127.0.0.1\r\n", "").encode() + b"\r\n\r\n", False),
     (UPGRADE_HEAD.replace("Host: 127.0.0.1", "Host: a\r\nHost: b").encode() + b"\r\n\r\n", False),
     (UPGRADE_HEAD.replace("HTTP/1.1", "HTTP/1.x").encode() + b"\r\n\r\n", False)],
    ids=["eof-before-blank-line", "eof-after-cr", "head-over-the-cap", "nul-in-a-name", "space-before-colon",
         "no-host", "two-hosts", "bad-version"],
)
async def test_a_malformed_or_incomplete_upgrade_head_is_a_400(live_server: str, head: bytes, eof: bool) -> None:
    host, port = live_server.removeprefix("http://").split(":")
    async with await trio.open_tcp_stream(host, int(port)) as stream:
        await stream.send_all(head)
        if eof:
            await stream.send_eof()
        received = await receive_until(stream, b"\r\n")
    # Hypercorn's answer: 400, or for a head over the front door's cap that h11 still reads whole, the
    # 404 of a plain GET /ws; never the 101 that read the rest of the head as WebSocket frames.
    assert received.startswith(b"HTTP/1.1 400 " if len(head) < 1024 else b"HTTP/1.1 4"), received[:100]


@pytest.mark.parametrize(("upgrade", "connection", "upgraded"), [
    ("notwebsocket", "Upgrade", False), ("websocket", "notupgrade", False), ("websockets", "Upgrade", False),
    ("WebSocket", "keep-alive, Upgrade", True), ("websocket", "upgrade,keep-alive", True)])
async def test_upgrade_and_connection_are_read_as_token_lists(live_server: str, users: Any, upgrade: str,
                                                              connection: str, upgraded: bool) -> None:
    alice = await users.create("member")
    head = (UPGRADE_HEAD.replace("Upgrade: websocket", f"Upgrade: {upgrade}")
            .replace("Connection: Upgrade", f"Connection: {connection}")
            + f"\r\nAuthorization: Bearer {alice.token}\r\n\r\n")
    host, port = live_server.removeprefix("http://").split(":")
    async with await trio.open_tcp_stream(host, int(port)) as stream:
        await stream.send_all(head.encode())
        with trio.fail_after(5):
            received = await stream.receive_some(4096)
    assert received.startswith(b"HTTP/1.1 101 ") == upgraded, received[:100]


async def test_a_frame_sent_right_behind_the_handshake_is_read(live_server: str, users: Any) -> None:
    alice = await users.create("member")
    payload = b'{"type":"ping","ref":"early"}'
    mask = b"\x01\x02\x03\x04"
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    frame = bytes((0x81, 0x80 | len(payload))) + mask + masked
    head, stream = await raw_upgrade(live_server, alice.token, trailing=frame)
    async with stream:
        assert head.startswith(b"HTTP/1.1 101 ")
        received = head.partition(b"\r\n\r\n")[2]
        with trio.fail_after(5):
            while b'"pong"' not in received:
                received += await stream.receive_some(4096)
        assert b'{"type":"pong","ref":"early"}' in received


def client_frame(first_byte: int, payload: bytes, *, masked: bool = True) -> bytes:
    """A client frame (payload under 126 bytes), masked as RFC 6455 §5.3 requires unless told otherwise."""
    if not masked:
        return bytes((first_byte, len(payload))) + payload
    mask = b"\x11\x22\x33\x44"
    return bytes((first_byte, 0x80 | len(payload))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def server_close_code(stream: trio.SocketStream, received: bytes) -> int:
    """Read the server's frames (after the handshake head) until its close frame; its code."""
    buffer = received.partition(b"\r\n\r\n")[2]
    with trio.fail_after(5):
        while True:
            while len(buffer) >= 2:
                opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
                start = 2 + {126: 2, 127: 8}.get(length, 0)
                if length >= 126:
                    length = int.from_bytes(buffer[2:start], "big")
                if len(buffer) < start + length:
                    break
                payload, buffer = buffer[start:start + length], buffer[start + length:]
                if opcode == 0x8:
                    return int.from_bytes(payload[:2], "big")
            chunk = await stream.receive_some(4096)
            assert chunk, "the server closed TCP without a close frame"
            buffer += chunk


@pytest.mark.parametrize(
    ("frame", "code"),
    [(client_frame(0x81, b'{"type":"ping"}', masked=False), 1002),
     (client_frame(0xC1, b'{"type":"ping"}'), 1002),  # RSV1 without an extension that defines it
     (client_frame(0x83, b"x"), 1002),  # opcode 3 is reserved
     (client_frame(0x88, (999).to_bytes(2, "big")), 1002),  # a close code no endpoint may send
     (client_frame(0x81, b'{"type":"ping","ref":"\xff\xfe"}'), 1007),
     (client_frame(0x01, b'{"type":"ping","ref":"\xe2\x82') + client_frame(0x80, b'"}'), 1007)],
    ids=["unmasked", "rsv1", "reserved-opcode", "bad-close-code", "bad-utf8", "utf8-cut-across-fragments"],
)
async def test_rfc_6455_violations_close_with_their_code(live_server: str, users: Any, frame: bytes,
                                                        code: int) -> None:
    alice = await users.create("member")
    head, stream = await raw_upgrade(live_server, alice.token, trailing=frame)
    async with stream:
        assert head.startswith(b"HTTP/1.1 101 ")
        assert await server_close_code(stream, head) == code


async def test_the_server_closes_tcp_as_soon_as_the_close_handshake_is_done(
        live_server: str, users: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from roomcast.http.ws.connection import WebSocket

    # Were the server to wait for the client to close TCP after the handshake, it would
    # wait far past this test's timeout.
    monkeypatch.setattr(WebSocket.linger, "__defaults__", (3600.0,))
    alice = await users.create("member")
    head, stream = await raw_upgrade(live_server, alice.token)
    async with stream:
        await stream.send_all(client_frame(0x88, (1000).to_bytes(2, "big")))
        assert await server_close_code(stream, head) == 1000
        with trio.fail_after(10):
            while await stream.receive_some(4096):
                pass  # anything left, then the server's FIN


@pytest.mark.parametrize(("payload", "answer"), [((1001).to_bytes(2, "big"), 1001),
                                                   ((4321).to_bytes(2, "big") + b"bye", 4321), (b"", 1000)],
                         ids=["going-away", "application-code", "no-code"])
async def test_the_servers_close_frame_echoes_the_clients_code(live_server: str, users: Any, payload: bytes,
                                                               answer: int) -> None:
    """RFC 6455 §5.5.1: the answer to a close echoes its code; a close without a code gets 1000."""
    alice = await users.create("member")
    head, stream = await raw_upgrade(live_server, alice.token, trailing=client_frame(0x88, payload))
    async with stream:
        assert await server_close_code(stream, head) == answer


@pytest.mark.parametrize("chunk", [1, 3, 7, 4096], ids=["byte-by-byte", "3-bytes", "7-bytes", "all-at-once"])
async def test_frames_of_every_kind_in_any_cuts_are_read_in_order(live_server: str, users: Any, chunk: int) -> None:
    """Whole text frames (read without wsproto) and everything else (read by it) keep their order."""
    alice = await users.create("member")
    long_ref = "L" * 300  # a 16-bit length
    frames = [
        client_frame(0x81, b'{"type":"ping","ref":"a"}'),
        client_frame(0x01, b'{"type":"ping",') + client_frame(0x89, b"hi")  # a ping between fragments
        + client_frame(0x80, b'"ref":"b"}'),
        client_frame(0x82, b'{"type":"ping","ref":"c"}'),  # binary, as text
        client_frame(0x81, b""),  # an empty text frame: an error, then on
        long_frame(0x81, json.dumps({"type": "ping", "ref": long_ref[:64], "pad": long_ref}).encode()),
        client_frame(0x81, '{"type":"ping","ref":"é"}'.encode()),
    ]
    stream_bytes = b"".join(frames)
    head, stream = await raw_upgrade(live_server, alice.token)
    async with stream:
        assert head.startswith(b"HTTP/1.1 101 ")
        for start in range(0, len(stream_bytes), chunk):
            await stream.send_all(stream_bytes[start:start + chunk])
        received = head.partition(b"\r\n\r\n")[2]
        with trio.fail_after(10):
            while received.count(b'"pong"') < 5:
                received += await stream.receive_some(4096)
    refs = [json.loads(line)["ref"] for line in text_payloads(received)
            if line.startswith(b'{"type":"pong"')]
    assert refs == ["a", "b", "c", long_ref[:64], "é"]
    assert b"\x8a\x02hi" in received  # the ping between the fragments got its pong


def long_frame(first_byte: int, payload: bytes) -> bytes:
    """A masked client frame with a 16-bit length (126 to 65535 bytes)."""
    mask = b"\x55\x66\x77\x88"
    return (bytes((first_byte, 0x80 | 126)) + len(payload).to_bytes(2, "big") + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def text_payloads(received: bytes) -> list[bytes]:
    """The lines of every text frame the server sent (after the handshake head)."""
    lines: list[bytes] = []
    while len(received) >= 2:
        opcode, length = received[0] & 0x0F, received[1] & 0x7F
        start = 2 + {126: 2, 127: 8}.get(length, 0)
        if length >= 126:
            length = int.from_bytes(received[2:start], "big")
        if opcode == 0x1:
            lines += received[start:start + length].split(b"\n")
        received = received[start + length:]
    return lines
