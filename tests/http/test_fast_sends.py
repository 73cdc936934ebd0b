"""REST sends served by the front door itself (http/fast_sends.py), over real sockets.

Every case is sent to two servers of one node: one with the fast path, one without (Hypercorn
and Quart for every request). The answers must be the same, but for what differs by nature
(ids, times, the Date); the fast path must have answered the cases it serves and left the
others to Hypercorn. Then keep-alive and pipelining with other requests mixed in, heads that
are malformed or never end, bodies that are late, metrics and the access line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import trio

from roomcast.http import fast_sends as fast_sends_module
from roomcast.http import framing
from roomcast.http.fast_sends import FastSends
from roomcast.http.routes.messages import SEND_RULE
from roomcast.node import Node
from roomcast.server import hypercorn_config
from tests.chat_helpers import make_group, send
from tests.conftest import serve_front_door
from tests.raw_http import RawConnection, RawResponse

KEEP_ALIVE_S = 0.3  # the fast server's idle keep-alive: short, so the tests that wait for it are quick


@dataclass
class Fast:
    url: str
    sends: FastSends


@pytest.fixture
async def fast(node: Node, nursery: trio.Nursery) -> AsyncIterator[Fast]:
    config = hypercorn_config(node.settings)
    config.keep_alive_timeout = KEEP_ALIVE_S
    sends = FastSends(node, config)
    shutdown = trio.Event()
    yield Fast(await serve_front_door(node, nursery, shutdown, sends, config), sends)
    shutdown.set()


# --------------------------------------------------------------------------- what each server is sent


@dataclass
class Scene:
    """The same rooms and users, made afresh for each server (so ids differ; `names` maps them)."""

    token: str
    room: int
    inactive_room: int
    foreign_room: int  # the caller is not a member
    other_tenant_room: int
    message: int
    deleted: int
    unknown_user_token: str
    names: dict[str, dict[object, str]]  # what stands for the scene's ids and names, by the key they are under


async def make_scene(client: Any, users: Any, node: Node, tag: str) -> Scene:
    owner = await users.create("member", username=f"{tag}-owner")
    bob = await users.create("member", username=f"{tag}-bob")
    outsider = await users.create("member", username=f"{tag}-out")
    stranger = await users.create("member", tenant="elsewhere", username=f"{tag}-str")
    room = (await make_group(client, owner, [bob]))["id"]
    inactive = (await make_group(client, owner, [bob], name="old"))["id"]
    response = await client.patch(f"/api/rooms/{inactive}", headers=owner.headers, json={"is_active": False})
    assert response.status_code == 200, await response.get_json()
    foreign = (await make_group(client, outsider, []))["id"]
    other_tenant = (await make_group(client, stranger, []))["id"]
    message = (await send(client, owner, room, "first"))["id"]
    deleted = (await send(client, owner, room, "gone"))["id"]
    assert (await client.delete(f"/api/rooms/{room}/messages/{deleted}", headers=owner.headers)).status_code == 204
    names = {"room_id": {room: "<room>"}, "reply_to": {message: "<message>"}, "sender": {owner.id: "<owner>"},
             "username": {owner.username: "<owner name>"}, "display_name": {owner.username: "<owner name>"}}
    return Scene(owner.token, room, inactive, foreign, other_tenant, message, deleted,
                 node.tokens.mint(10**9), names)


def request(scene: Scene, body: bytes | str | None = None, *, room: int | str | None = None, token: str | None = "",
            content_type: str | None = "application/json", extra: str = "", method: str = "POST",
            version: str = "HTTP/1.1", path: str | None = None, length: int | None = None) -> bytes:
    if isinstance(body, str):
        body = body.encode()
    payload = b'{"body": "hello \xf0\x9f\x91\x8b"}' if body is None else body
    target = path or f"/api/rooms/{scene.room if room is None else room}/messages"
    fields = ["Host: test", "X-Request-Id: case-1"]
    if token is not None:
        fields.append(f"Authorization: Bearer {token or scene.token}")
    if content_type is not None:
        fields.append(f"Content-Type: {content_type}")
    if "Transfer-Encoding" not in extra:
        fields.append(f"Content-Length: {len(payload) if length is None else length}")
    head = f"{method} {target} {version}\r\n" + "".join(f"{field}\r\n" for field in fields) + extra + "\r\n"
    return head.encode() + payload


def chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


Case = Callable[[Scene], list[bytes]]
SERVED = True  # answered by the fast path
LEFT = False  # handed to Hypercorn

CASES: dict[str, tuple[bool, Case]] = {
    "sent": (SERVED, lambda s: [request(s)]),
    "sent, then repeated by client_id": (SERVED, lambda s: [request(s, '{"body": "x", "client_id": "c-1"}')] * 2),
    "a reply": (SERVED, lambda s: [request(s, json.dumps({"body": "re", "reply_to": s.message}))]),
    "a reply to another room's message": (SERVED, lambda s: [request(s, '{"body": "re", "reply_to": 999999}')]),
    "a reply to a deleted message": (SERVED, lambda s: [request(s, json.dumps({"body": "re", "reply_to": s.deleted}))]),
    "attachments that are no one's upload": (SERVED, lambda s: [request(s, '{"body": "", "attachments": [999999]}')]),
    "a blank body": (SERVED, lambda s: [request(s, '{"body": " \\n "}')]),
    "a body too long": (SERVED, lambda s: [request(s, json.dumps({"body": "я" * 4001}))]),
    "a list": (SERVED, lambda s: [request(s, "[]")]),
    "fields of the wrong type": (SERVED, lambda s: [request(s, '{"body": 5, "client_id": "", "reply_to": 0}')]),
    "too many attachments": (SERVED, lambda s: [request(s, '{"body": "x", "attachments": [1,2,3,4,5,6,7,8,9,10,11]}')]),
    "malformed JSON": (SERVED, lambda s: [request(s, "{body: 1}")]),
    "no body": (SERVED, lambda s: [request(s, b"")]),
    "not UTF-8": (SERVED, lambda s: [request(s, b'{"body": "\xff"}')]),
    "JSON nested too deeply": (SERVED, lambda s: [request(s, "[" * 100_000 + "]" * 100_000)]),
    "no token": (SERVED, lambda s: [request(s, token=None)]),
    "a bad token": (SERVED, lambda s: [request(s, token="not.a.token")]),
    "not a bearer token": (SERVED, lambda s: [request(s, extra="Authorization: Basic eDp5\r\n", token=None)]),
    "the token of no user": (SERVED, lambda s: [request(s, token=s.unknown_user_token)]),
    "no such room": (SERVED, lambda s: [request(s, room=999999)]),
    "a room of another tenant": (SERVED, lambda s: [request(s, room=s.other_tenant_room)]),
    "a room one is not a member of": (SERVED, lambda s: [request(s, room=s.foreign_room)]),
    "an inactive room": (SERVED, lambda s: [request(s, room=s.inactive_room)]),
    "a query string": (SERVED, lambda s: [request(s, path=f"/api/rooms/{s.room}/messages?x=1&y=%20")]),
    "JSON with a charset": (SERVED, lambda s: [request(s, content_type="application/json; charset=utf-8")]),
    "a bad request id is replaced": (SERVED, lambda s: [request(s, extra="X-Request-Id: no spaces\r\n")]),
    # Left to Hypercorn, which answers as it always did.
    "a room id out of range": (LEFT, lambda s: [request(s, room=2**63)]),
    "room id 0": (LEFT, lambda s: [request(s, room=0)]),
    "room id with a sign": (LEFT, lambda s: [request(s, room="+1")]),
    "plain text": (LEFT, lambda s: [request(s, content_type="text/plain")]),
    "no content type": (LEFT, lambda s: [request(s, content_type=None)]),
    "a body over the limit": (LEFT, lambda s: [request(s, b"{}", length=(1 << 20) + 1)]),
    "chunked": (LEFT, lambda s: [request(s, chunked(b'{"body": "chunks"}'), extra="Transfer-Encoding: chunked\r\n")]),
    "chunked and a Content-Length": (LEFT, lambda s: [request(s, chunked(b"{}"), extra="Transfer-Encoding: chunked\r\n"
                                                                                       "Content-Length: 6\r\n")]),
    "Expect: 100-continue": (LEFT, lambda s: [request(s, extra="Expect: 100-continue\r\n")]),
    "Connection: close": (LEFT, lambda s: [request(s, extra="Connection: close\r\n")]),
    "two Content-Types": (LEFT, lambda s: [request(s, extra="Content-Type: application/json\r\n")]),
    "a lower-case method": (LEFT, lambda s: [request(s, method="post")]),
    "HTTP/1.0": (LEFT, lambda s: [request(s, version="HTTP/1.0")]),
    "a field without a colon": (LEFT, lambda s: [request(s, extra="Broken field\r\n")]),
    "obsolete line folding": (LEFT, lambda s: [request(s, extra="X-Folded: a\r\n b\r\n")]),
    "a bare LF": (LEFT, lambda s: [request(s, extra="X-Lf: a\nX-Other: b\r\n")]),
    "a GET of the history": (LEFT, lambda s: [request(s, b"", method="GET")]),
    "a send after a GET": (LEFT, lambda s: [request(s, b"", method="GET"), request(s)]),
    "a GET after a send": (SERVED, lambda s: [request(s), request(s, b"", method="GET"), request(s)]),
}


async def exchange(url: str, requests: list[bytes]) -> list[RawResponse | str]:
    """Each request on one connection, one after the other; each answer (interim 1xx answers skipped),
    or "closed" once the server has closed the connection."""
    answers: list[RawResponse | str] = []
    connection = await RawConnection.open(url)
    async with connection.stream:
        for raw in requests:
            try:
                await connection.send(raw)
                answer = await connection.response()
                while answer.status < 200:
                    answer = await connection.response()
            except (AssertionError, trio.BrokenResourceError):
                answers.append("closed")
                break
            answers.append(answer)
            if answer.headers.get("connection") == "close":
                answers.append("closed" if await connection.closed_by_server() else "open")
                break
    return answers


def normalized(answer: RawResponse | str, names: dict[str, dict[object, str]]) -> object:
    if isinstance(answer, str):
        return answer
    headers = {name: value for name, value in answer.headers.items() if name not in ("date", "content-length")}
    assert int(answer.headers["content-length"]) == len(answer.body)
    if headers.get("x-request-id") != "case-1":
        headers["x-request-id"] = "<new>" if len(headers.get("x-request-id", "")) == 16 else "<bad>"
    if not answer.body.startswith(b"{"):
        return answer.status, headers, answer.body

    def named(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            if "created_at" in value:
                value = {**value, "id": "<id>", "created_at": "<time>"}
            if key == "sender":
                value = {**value, "id": names["sender"].get(value["id"], value["id"])}
            return {k: named(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [named(item, key) for item in value]
        if key == "retry_after":  # seconds from now: a little less for the second server
            return "<s>"
        return names.get(key, {}).get(value, value)

    compact = b'", "' not in answer.body and answer.body.endswith(b"}\n")  # as Quart's jsonify writes it
    # Compared in order, as sent.
    return answer.status, headers, compact, json.dumps(named(json.loads(answer.body)), ensure_ascii=False)


async def compare(cases: dict[str, tuple[bool, Case]], fast: Fast, quart_server: str, client: Any, users: Any,
                  node: Node) -> None:
    """Each case on a connection of its own to each server, in order; every case that differs is named."""
    scenes = [await make_scene(client, users, node, tag) for tag in ("f", "q")]
    differ = []
    for case, (served, requests) in cases.items():
        outcomes = []
        for url, scene in zip((fast.url, quart_server), scenes, strict=True):
            answered = fast.sends.answered
            answers = await exchange(url, requests(scene))
            outcomes.append([normalized(answer, scene.names) for answer in answers])
            if url == fast.url and (fast.sends.answered > answered) is not served:
                differ.append((case, "served by the fast path" if not served else "handed to Hypercorn"))
        if outcomes[0] != outcomes[1]:
            differ.append((case, outcomes))
    assert not differ, differ


async def test_the_fast_path_answers_as_the_app_does(fast: Fast, quart_server: str, client: Any, users: Any,
                                                     node: Node) -> None:
    await compare(CASES, fast, quart_server, client, users, node)


class TestRateLimited:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"send_burst": 3, "send_rate_per_s": 0.01}  # two sends make the scene

    async def test_the_second_send_is_refused_alike(self, fast: Fast, quart_server: str, client: Any, users: Any,
                                                    node: Node) -> None:
        await compare({"rate": (SERVED, lambda s: [request(s, '{"body": "x"}')] * 2)}, fast, quart_server, client,
                      users, node)


class TestCors:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"allowed_origins": ["https://app.example"]}

    async def test_cors_answers_alike(self, fast: Fast, quart_server: str, client: Any, users: Any,
                                      node: Node) -> None:
        await compare({
            "no Origin": (SERVED, lambda s: [request(s)]),
            "an allowed Origin": (LEFT, lambda s: [request(s, extra="Origin: https://app.example\r\n")]),
            "another Origin": (LEFT, lambda s: [request(s, extra="Origin: https://evil.example\r\n")]),
            "an error without Origin": (SERVED, lambda s: [request(s, room=999999)]),
        }, fast, quart_server, client, users, node)


# --------------------------------------------------------------------------- one connection, many requests


async def test_pipelined_sends_are_answered_in_order_with_other_requests_between(
        fast: Fast, client: Any, users: Any, node: Node) -> None:
    scene = await make_scene(client, users, node, "p")
    sends = [request(scene, json.dumps({"body": f"n{n}"})) for n in range(4)]
    health = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
    connection = await RawConnection.open(fast.url)
    async with connection.stream:
        await connection.send(b"".join(sends[:3]) + health + sends[3])  # one write: all in one segment
        answers = [await connection.response() for _ in range(5)]
        assert [answer.status for answer in answers] == [201, 201, 201, 200, 201]
        seqs = [json.loads(answers[n].body)["seq"] for n in (0, 1, 2, 4)]
        assert [json.loads(answers[n].body)["body"] for n in (0, 1, 2, 4)] == ["n0", "n1", "n2", "n3"]
        assert seqs == sorted(seqs) and len(set(seqs)) == 4
        # Hypercorn has the connection since the GET; it stays usable.
        await connection.send(sends[0])
        assert (await connection.response()).status == 201
    assert fast.sends.answered == 3


async def test_a_kept_alive_connection_stays_on_the_fast_path(fast: Fast, client: Any, users: Any,
                                                              node: Node) -> None:
    scene = await make_scene(client, users, node, "k")
    connection = await RawConnection.open(fast.url)
    async with connection.stream:
        for n in range(5):
            await connection.send(request(scene, json.dumps({"body": f"n{n}"})))
            assert (await connection.response()).status == 201
    assert fast.sends.answered == 5


async def test_a_body_sent_in_pieces_and_a_head_in_two_writes(fast: Fast, client: Any, users: Any,
                                                              node: Node) -> None:
    scene = await make_scene(client, users, node, "s")
    raw = request(scene)
    connection = await RawConnection.open(fast.url)
    async with connection.stream:
        await connection.send(request(scene))
        assert (await connection.response()).status == 201
        cut = raw.index(b"\r\n\r\n")
        for piece in (raw[:20], raw[20:cut], raw[cut:-3], raw[-3:]):
            await connection.send(piece)
            await trio.sleep(0.01)
        assert (await connection.response()).status == 201
    assert fast.sends.answered == 2


async def test_an_idle_connection_is_closed_after_keep_alive(fast: Fast, client: Any, users: Any,
                                                             node: Node) -> None:
    scene = await make_scene(client, users, node, "i")
    connection = await RawConnection.open(fast.url)
    async with connection.stream:
        await connection.send(request(scene))
        assert (await connection.response()).status == 201
        assert await connection.closed_by_server()  # after KEEP_ALIVE_S


async def test_a_head_that_never_ends_is_bounded(fast: Fast, client: Any, users: Any, node: Node,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Slowloris on a kept-alive connection: the partial head goes to Hypercorn after HEAD_TIMEOUT_S,
    which closes the connection when its own keep-alive runs out."""
    monkeypatch.setattr(fast_sends_module, "HEAD_TIMEOUT_S", 0.2)
    scene = await make_scene(client, users, node, "h")
    connection = await RawConnection.open(fast.url)
    async with connection.stream:
        await connection.send(request(scene))
        assert (await connection.response()).status == 201
        await connection.send(b"POST /api/rooms/1/messages HTTP/1.1\r\nHost: te")
        with trio.fail_after(5):
            while await connection.stream.receive_some(1024):
                pass


async def test_a_stray_crlf_after_a_send_is_refused_at_once_as_hypercorn_does(
        fast: Fast, quart_server: str, client: Any, users: Any, node: Node) -> None:
    """h11 refuses a request line that starts with CR, LF, a space or a control byte as soon as it
    sees that byte; the fast path waited HEAD_TIMEOUT_S (10 s) for a head first."""
    for url, tag in ((fast.url, "cf"), (quart_server, "cq")):
        scene = await make_scene(client, users, node, tag)
        for stray in (b"\r\n", b" x"):
            connection = await RawConnection.open(url)
            async with connection.stream:
                await connection.send(request(scene))
                assert (await connection.response()).status == 201
                await connection.send(stray)
                with trio.fail_after(2):
                    answer = await connection.response()
                assert (answer.status, answer.headers.get("connection")) == (400, "close"), (url, stray)
                assert await connection.closed_by_server()
    assert fast.sends.answered == 2


async def test_a_late_body_is_left_to_hypercorn_which_waits_for_it(fast: Fast, client: Any, users: Any,
                                                                   node: Node,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_sends_module, "BODY_TIMEOUT_S", 0.1)
    scene = await make_scene(client, users, node, "l")
    raw = request(scene)
    cut = raw.index(b"\r\n\r\n") + 4
    connection = await RawConnection.open(fast.url)
    async with connection.stream:
        await connection.send(raw[:cut])
        await trio.sleep(0.3)
        await connection.send(raw[cut:])
        assert (await connection.response()).status == 201
    assert fast.sends.answered == 0


async def test_a_refused_token_is_answered_before_the_body_and_the_connection_kept(
        fast: Fast, client: Any, users: Any, node: Node) -> None:
    scene = await make_scene(client, users, node, "t")
    raw = request(scene, token="nope")
    cut = raw.index(b"\r\n\r\n") + 4
    connection = await RawConnection.open(fast.url)
    async with connection.stream:
        await connection.send(raw[:cut])
        assert (await connection.response()).status == 401  # the body is still to come
        await trio.sleep(0.05)
        await connection.send(raw[cut:] + request(scene))
        assert (await connection.response()).status == 201
    assert fast.sends.answered == 2


async def test_a_body_that_never_comes_after_a_refusal_closes_the_connection(
        fast: Fast, client: Any, users: Any, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(framing, "BODY_DRAIN_TIMEOUT_S", 0.1)
    scene = await make_scene(client, users, node, "d")
    raw = request(scene, token="nope")
    connection = await RawConnection.open(fast.url)
    async with connection.stream:
        await connection.send(raw[:raw.index(b"\r\n\r\n") + 4])
        assert (await connection.response()).status == 401
        assert await connection.closed_by_server()


async def test_the_keep_alive_request_cap_closes_as_hypercorn_does(node: Node, nursery: trio.Nursery, client: Any,
                                                                   users: Any) -> None:
    config = hypercorn_config(node.settings)
    config.keep_alive_max_requests = 2
    shutdown = trio.Event()
    url = await serve_front_door(node, nursery, shutdown, FastSends(node, config), config)
    scene = await make_scene(client, users, node, "m")
    answers = await exchange(url, [request(scene)] * 3)
    assert [a if isinstance(a, str) else a.status for a in answers] == [201, 201, "closed"]
    shutdown.set()


async def test_an_idle_fast_connection_ends_when_the_node_stops(node: Node, nursery: trio.Nursery, client: Any,
                                                                users: Any) -> None:
    shutdown = trio.Event()
    url = await serve_front_door(node, nursery, shutdown, FastSends(node, hypercorn_config(node.settings)))
    scene = await make_scene(client, users, node, "z")
    connection = await RawConnection.open(url)
    async with connection.stream:
        await connection.send(request(scene))
        assert (await connection.response()).status == 201
        shutdown.set()
        assert await connection.closed_by_server()  # long before the 5 s keep-alive


# --------------------------------------------------------------------------- what else the app does per request


async def test_sends_are_counted_and_logged_like_the_apps(fast: Fast, client: Any, users: Any, node: Node,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    scene = await make_scene(client, users, node, "c")
    counter = node.metrics.http_requests

    def count(status: str) -> float:
        return counter.labels("POST", SEND_RULE, status)._value.get()  # type: ignore[no-any-return]

    before = count("201"), count("404")
    with caplog.at_level(logging.INFO, logger="roomcast.access"):
        await exchange(fast.url, [request(scene), request(scene, room=999999)])
    assert (count("201"), count("404")) == (before[0] + 1, before[1] + 1)
    lines = [record for record in caplog.records if record.getMessage() == "http.request"]
    fields = [record.roomcast_fields for record in lines]  # type: ignore[attr-defined]
    assert [(f["method"], f["route"], f["path"], f["status"], f["client"]) for f in fields] == [
        ("POST", SEND_RULE, f"/api/rooms/{scene.room}/messages", 201, "127.0.0.1"),
        ("POST", SEND_RULE, "/api/rooms/999999/messages", 404, "127.0.0.1")]
    assert {record.roomcast_context["request_id"] for record in lines} == {"case-1"}  # type: ignore[attr-defined]
