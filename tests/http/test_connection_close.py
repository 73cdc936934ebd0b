"""A request that asks to close is answered, then the connection closes; nothing after it is processed.

RFC 9112 §9.6. Hypercorn's h11 expects nothing after such a request (`Connection: close`, or any
HTTP/1.0 request), so a pipelined request behind it used to turn the answer into an empty 400.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from tests.chat_helpers import body_of, history, make_group
from tests.raw_http import RawConnection, RawResponse, head

HEALTH_CLOSE = b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"


def create_room(user: Any, name: str, extra: str = "") -> bytes:
    """A pipelined `POST /api/rooms`: had it been processed, the room would exist."""
    body = json.dumps({"kind": "group", "name": name}).encode()
    return head("POST", "/api/rooms", length=len(body), extra=f"Authorization: Bearer {user.token}\r\n{extra}") + body


def send_message(user: Any, room: int, text: str, extra: str = "") -> bytes:
    body = json.dumps({"body": text}).encode()
    return head("POST", f"/api/rooms/{room}/messages", length=len(body),
                extra=f"Authorization: Bearer {user.token}\r\n{extra}") + body


async def room_names(client: Any, user: Any) -> list[str]:
    rooms = await body_of(await client.get("/api/rooms", headers=user.headers), 200)
    return [room["name"] for room in rooms["items"]]


async def answers_then_close(live_server: str, pieces: list[bytes], count: int = 1) -> list[RawResponse]:
    """Send `pieces` (each its own write); `count` answers, the last with `Connection: close`, then EOF."""
    connection = await RawConnection.open(live_server)
    async with connection.stream:
        for piece in pieces:
            try:
                await connection.send(piece)
            except trio.BrokenResourceError:  # closed before the rest was sent: the rest is not processed
                break
            await trio.sleep(0.02)  # each piece its own read
        answers = [await connection.response() for _ in range(count)]
        assert answers[-1].headers.get("connection") == "close", answers[-1]
        assert await connection.closed_by_server()
    return answers


async def test_a_close_request_with_one_pipelined_behind_it_in_one_write(live_server: str, client: Any,
                                                                        users: Any) -> None:
    alice = await users.create("member")
    [answer] = await answers_then_close(live_server, [HEALTH_CLOSE + create_room(alice, "never")])
    assert answer.status == 200 and answer.body
    assert "never" not in await room_names(client, alice)


@pytest.mark.parametrize("cut", ["in the close request's head", "in the pipelined request", "between the two"])
async def test_a_close_request_and_a_pipelined_one_over_two_writes(live_server: str, client: Any, users: Any,
                                                                   cut: str) -> None:
    alice = await users.create("member")
    after = create_room(alice, "never")
    # Between the two, the second write mostly comes after the answer: it only guards against a read.
    at = {"in the close request's head": 20, "in the pipelined request": len(HEALTH_CLOSE) + 30,
          "between the two": len(HEALTH_CLOSE)}[cut]
    data = HEALTH_CLOSE + after
    [answer] = await answers_then_close(live_server, [data[:at], data[at:]])
    assert answer.status == 200
    assert "never" not in await room_names(client, alice)


# h11 keeps no HTTP/1.0 connection alive, asked to or not.
@pytest.mark.parametrize("fields", ["", "Connection: close\r\n", "Connection: keep-alive\r\n"])
async def test_an_http_1_0_request_closes_after_its_answer(live_server: str, client: Any, users: Any,
                                                          fields: str) -> None:
    alice = await users.create("member")
    request = f"GET /healthz HTTP/1.0\r\n{fields}\r\n".encode()
    [answer] = await answers_then_close(live_server, [request + create_room(alice, "never")])
    assert answer.status == 200
    assert "never" not in await room_names(client, alice)


async def test_a_close_request_with_a_body_then_a_pipelined_one(live_server: str, client: Any, users: Any) -> None:
    alice = await users.create("member")
    [created] = await answers_then_close(live_server, [create_room(alice, "first", "Connection: close\r\n")
                                                       + create_room(alice, "never")])
    assert created.status == 201 and json.loads(created.body)["name"] == "first"
    assert await room_names(client, alice) == ["first"]


async def test_a_close_request_whose_body_comes_later(live_server: str, client: Any, users: Any) -> None:
    """The body's last bytes and the next request arrive in one read: only the body goes on."""
    alice = await users.create("member")
    data = create_room(alice, "first", "connection: Keep-Alive, CLOSE\r\n") + create_room(alice, "never")
    body_end = data.index(b"}") + 1
    [created] = await answers_then_close(live_server, [data[:body_end - 5], data[body_end - 5:]])
    assert created.status == 201
    assert await room_names(client, alice) == ["first"]


async def test_a_client_that_half_closes_after_a_close_request_gets_its_answer(live_server: str,
                                                                              users: Any) -> None:
    """Its EOF is not read (nothing is, after such a request): it used to cut the app's answer off."""
    alice = await users.create("member")
    connection = await RawConnection.open(live_server)
    async with connection.stream:
        await connection.send(head("GET", "/api/rooms", extra=f"Authorization: Bearer {alice.token}\r\n"
                                                              "Connection: close\r\n"))
        await connection.stream.send_eof()
        answer = await connection.response()
        assert answer.status == 200 and answer.headers.get("connection") == "close"
        assert await connection.closed_by_server()


async def test_pipelined_keep_alive_requests_are_all_answered(live_server: str, client: Any, users: Any) -> None:
    """Up to the one that asks to close, which is answered last."""
    alice = await users.create("member")
    health = head("GET", "/healthz")
    data = (create_room(alice, "a") + health + create_room(alice, "b", "Connection: keep-alive\r\n") + health
            + create_room(alice, "c", "Connection: close\r\n") + create_room(alice, "never"))
    answers = await answers_then_close(live_server, [data], count=5)
    assert [answer.status for answer in answers] == [201, 200, 201, 200, 201]
    assert all(answer.headers.get("connection") != "close" for answer in answers[:4])
    assert sorted(await room_names(client, alice)) == ["a", "b", "c"]


@pytest.mark.parametrize("before", [0, 2])  # sends the fast path serves before the one that closes
async def test_a_send_that_asks_to_close_is_the_last_one_stored(live_server: str, client: Any, users: Any,
                                                                before: int) -> None:
    alice = await users.create("member")
    room = (await make_group(client, alice))["id"]
    data = b"".join(send_message(alice, room, f"kept {n}") for n in range(before))
    data += send_message(alice, room, "last", "Connection: close\r\n") + send_message(alice, room, "never")
    answers = await answers_then_close(live_server, [data], count=before + 1)
    assert [answer.status for answer in answers] == [201] * (before + 1)
    stored = [message["body"] for message in (await history(client, alice, room))["items"]]
    assert sorted(stored) == sorted([*(f"kept {n}" for n in range(before)), "last"])
