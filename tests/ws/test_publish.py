"""Server-side publish end to end over real sockets: room events and broadcasts (PROTOCOL §4, §5).

The POSTs go over HTTP to the live server (httpx), the events arrive over /ws; both stacks.
Two nodes sharing PostgreSQL and Redis: tests/ws/test_publish_nodes.py.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import trio

from roomcast.node import Node
from tests.chat_helpers import make_group
from tests.helpers import eventually
from tests.publish_helpers import connect_all, nothing_live, post, refused
from tests.ws_client import SmallWindowClient, WsClient, ws_connect


@pytest.fixture
async def http(live_server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as client:
        yield client


# --------------------------------------------------------------------------- room events


async def test_an_event_reaches_the_rooms_subscribers_only(live_server: str, http: httpx.AsyncClient, client: Any,
                                                           users: Any) -> None:
    alice, bob, carol = [await users.create("member") for _ in range(3)]
    admin, service = await users.create("admin"), await users.create("service")
    room = (await make_group(client, alice, [bob]))["id"]
    other = (await make_group(client, carol, [alice]))["id"]
    data = {"engagement": 42, "status": "closed", "tags": ["a", "ü", "😀"], "nested": {"n": None, "f": 1.5}}
    async with AsyncExitStack() as stack:
        a1, a2, b, c, idle = await connect_all(stack, live_server, [alice, alice, bob, carol, bob])
        for ws in (a1, a2, b):
            await ws.subscribe(room)
        await c.subscribe(other)  # carol follows only the other room; `idle` follows nothing
        for caller in (admin, service):  # neither is a member: publishers need not be
            assert await post(http, caller, f"/api/rooms/{room}/events",
                              {"name": "engagement.updated", "data": data}) == {"accepted": True}
            for ws in (a1, a2, b):
                event = await ws.until("event")
                assert event == {"type": "event", "room": room, "name": "engagement.updated", "data": data}
        await nothing_live(c, idle)
        await post(http, admin, f"/api/rooms/{other}/events", {"name": "ping"})  # data defaults to null
        assert await c.until("event") == {"type": "event", "room": other, "name": "ping", "data": None}
        await nothing_live(a1, a2, b)


async def test_room_event_refusals(live_server: str, http: httpx.AsyncClient, client: Any, users: Any) -> None:
    alice, bob = await users.create("member"), await users.create("member")
    admin, student = await users.create("admin"), await users.create("student")
    foreign_admin = await users.create("admin", tenant="acme")
    room = (await make_group(client, alice, [bob]))["id"]
    inactive = (await make_group(client, alice, [bob], name="closed"))["id"]
    response = await client.patch(f"/api/rooms/{inactive}", headers=alice.headers, json={"is_active": False})
    assert response.status_code == 200
    path = f"/api/rooms/{room}/events"
    ok = {"name": "x", "data": 1}
    async with ws_connect(live_server, alice.token) as ws:
        await ws.subscribe(room)
        await refused(http, None, path, ok, 401, "unauthorized")
        await refused(http, SimpleNamespace(headers={"Authorization": "Bearer nonsense"}), path, ok, 401,
                      "unauthorized")
        for caller in (alice, student):  # a member of the room, but neither admin nor service
            await refused(http, caller, path, ok, 403, "forbidden")
        await refused(http, foreign_admin, path, ok, 404, "not_found")  # another tenant's room
        await refused(http, admin, "/api/rooms/987654/events", ok, 404, "not_found")
        await refused(http, admin, f"/api/rooms/{2**63}/events", ok, 404, "not_found")
        await refused(http, admin, f"/api/rooms/{inactive}/events", ok, 400, "room_inactive")
        for bad in ({}, {"data": 1}, {"name": ""}, {"name": " \t"}, {"name": "x" * 65}, {"name": "a\nb"},
                    {"name": "a\x00b"}, {"name": 5}, {"name": None}, {"name": ["x"]}, [], "x", None):
            await refused(http, admin, path, bad, 400, "validation_error")
        await refused(http, admin, path, None, 400, "malformed_json", raw=b'{"name": "x", "data": ')
        await refused(http, admin, path, None, 400, "validation_error",
                      raw=b'{"name": "x", "data": NaN}')  # Python's JSON reads it; no client could
        await refused(http, admin, path, None, 400, "validation_error", raw=b'{"name": "x", "data": "\\ud800"}')
        await refused(http, admin, path, None, 400, "validation_error", raw=b'{"name": "\\udc00", "data": 1}')
        limit = 64 << 10
        overhead = len(json.dumps("", separators=(",", ":")))
        await refused(http, admin, path, {"name": "big", "data": "x" * (limit - overhead + 1)}, 413, "too_large")
        await refused(http, admin, path, {"name": "big", "data": ["é" * 40_000]}, 413, "too_large")  # 2 bytes each
        # Exactly at the limit is accepted and delivered whole.
        await post(http, admin, path, {"name": "big", "data": "x" * (limit - overhead)})
        event = await ws.until("event")
        assert len(event["data"]) == limit - overhead
        await post(http, admin, path, {"name": "y" * 64, "data": ok})
        assert (await ws.until("event"))["name"] == "y" * 64
        await nothing_live(ws)  # none of the refused ones was delivered


# --------------------------------------------------------------------------- broadcasts


@pytest.fixture
async def school(users: Any) -> dict[str, Any]:
    """Users of the default tenant by role, and an `acme` tenant with the same roles."""
    people = {role: [await users.create(role), await users.create(role)] for role in ("teacher", "tutor", "student")}
    people["admin"] = [await users.create("admin")]
    people["service"] = [await users.create("service")]
    people["acme"] = [await users.create(role, tenant="acme") for role in ("teacher", "tutor", "student", "admin")]
    return people


async def test_a_broadcast_to_roles_reaches_exactly_those_roles_in_the_tenant(
        live_server: str, http: httpx.AsyncClient, school: dict[str, Any]) -> None:
    teachers, tutors, students = school["teacher"], school["tutor"], school["student"]
    async with AsyncExitStack() as stack:
        teacher_ws = await connect_all(stack, live_server, [*teachers, teachers[0]])  # one has two connections
        tutor_ws = await connect_all(stack, live_server, tutors)
        others = await connect_all(stack, live_server, [*students, *school["admin"], *school["acme"]])
        body = {"roles": ["teacher", "tutor"], "name": "alert", "data": {"level": "high"}}
        assert await post(http, school["service"][0], "/api/broadcast", body) == {"accepted": True}
        for ws in (*teacher_ws, *tutor_ws):
            assert await ws.until("broadcast") == {"type": "broadcast", "name": "alert", "data": {"level": "high"}}
        await nothing_live(*teacher_ws, *tutor_ws, *others)  # exactly once each; nobody else


async def test_a_broadcast_to_user_ids_reaches_those_users_of_the_tenant(
        live_server: str, http: httpx.AsyncClient, school: dict[str, Any]) -> None:
    student, teacher = school["student"][0], school["teacher"][0]
    foreign = school["acme"][0]
    async with AsyncExitStack() as stack:
        chosen = await connect_all(stack, live_server, [student, student, teacher])
        others = await connect_all(stack, live_server, [school["student"][1], school["tutor"][0], foreign])
        # A user of another tenant named by id, and an id nobody has, are simply not reached.
        body = {"user_ids": [student.id, teacher.id, foreign.id, 10**12, student.id], "name": "n", "data": [1]}
        await post(http, school["admin"][0], "/api/broadcast", body)
        for ws in chosen:
            assert await ws.until("broadcast") == {"type": "broadcast", "name": "n", "data": [1]}
        await nothing_live(*chosen, *others)
        # Roles and user ids together: a user selected both ways gets it once.
        body = {"roles": ["teacher"], "user_ids": [teacher.id, student.id], "name": "both"}
        await post(http, school["admin"][0], "/api/broadcast", body)
        for ws in chosen:
            assert (await ws.until("broadcast"))["name"] == "both"
        await nothing_live(*chosen, others[1], others[2])
        assert (await others[0].request({"type": "ping"}))["type"] == "pong"


async def test_a_broadcast_to_everyone_reaches_the_whole_tenant_and_no_other(
        live_server: str, http: httpx.AsyncClient, school: dict[str, Any]) -> None:
    ours = [person for role in ("teacher", "tutor", "student", "admin", "service") for person in school[role]]
    async with AsyncExitStack() as stack:
        our_ws = await connect_all(stack, live_server, ours)  # the caller's own connection included
        their_ws = await connect_all(stack, live_server, school["acme"])
        await post(http, school["admin"][0], "/api/broadcast", {"name": "maintenance", "data": "at 22:00"})
        for ws in our_ws:
            assert await ws.until("broadcast") == {"type": "broadcast", "name": "maintenance", "data": "at 22:00"}
        await nothing_live(*our_ws, *their_ws)
        # And the other tenant's broadcast stays there.
        await post(http, school["acme"][3], "/api/broadcast", {"name": "acme only"})
        for ws in their_ws:
            assert (await ws.until("broadcast"))["name"] == "acme only"
        await nothing_live(*our_ws, *their_ws)


async def test_broadcast_refusals(live_server: str, http: httpx.AsyncClient, school: dict[str, Any]) -> None:
    admin = school["admin"][0]
    ok = {"roles": ["teacher"], "name": "x"}
    async with ws_connect(live_server, school["teacher"][0].token) as ws:
        await refused(http, None, "/api/broadcast", ok, 401, "unauthorized")
        for caller in (school["teacher"][0], school["student"][0], school["tutor"][0]):
            await refused(http, caller, "/api/broadcast", ok, 403, "forbidden")
        for bad in (
            {"roles": ["teacher", "wizard"], "name": "x"},  # not a role
            {"roles": "teacher", "name": "x"},
            {"roles": [1], "name": "x"},
            {"roles": ["teacher"] * 9, "name": "x"},
            {"user_ids": [0], "name": "x"},
            {"user_ids": [2**63], "name": "x"},  # beyond the id range
            {"user_ids": [-1], "name": "x"},
            {"user_ids": ["1"], "name": "x"},
            {"user_ids": [True], "name": "x"},
            {"user_ids": [1.0], "name": "x"},
            {"user_ids": 5, "name": "x"},
            {"user_ids": list(range(1, 1002)), "name": "x"},  # more than 1000
            {"roles": [], "name": "x"},  # selects no one: a list that came out empty is not "everyone"
            {"roles": [], "user_ids": [], "name": "x"},
            {"roles": ["teacher"]},
            {"roles": ["teacher"], "name": ""},
            {"roles": ["teacher"], "name": "x" * 65},
        ):
            await refused(http, admin, "/api/broadcast", bad, 400, "validation_error")
        await refused(http, admin, "/api/broadcast", {**ok, "data": "x" * (64 << 10)}, 413, "too_large")
        await refused(http, admin, "/api/broadcast", None, 400, "validation_error",
                      raw=b'{"name": "x", "data": [Infinity]}')
        for depth in (256, 1000, 100_000):  # past what the parser or the validator follows: a 400, never a 500
            nested = b'{"name": "x", "data": ' + b"[" * depth + b"]" * depth + b"}"
            await refused(http, admin, "/api/broadcast", None, 400, "validation_error", raw=nested)
        await nothing_live(ws)
        deep = {"roles": ["teacher"], "name": "deep", "data": json.loads("[" * 255 + "]" * 255)}
        await post(http, admin, "/api/broadcast", deep)
        assert await ws.until("broadcast") == {"type": "broadcast", "name": "deep", "data": deep["data"]}
        # Given with the other empty, one list is enough.
        await post(http, admin, "/api/broadcast", {"roles": ["teacher"], "user_ids": [], "name": "fine"})
        assert (await ws.until("broadcast"))["name"] == "fine"


def reset(client: SmallWindowClient) -> None:
    """Close the client's socket with a TCP reset (SO_LINGER 0): the server finds out only when it writes."""
    client.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.stream.socket.close()


async def test_sockets_that_died_do_not_stop_a_broadcast(live_server: str, http: httpx.AsyncClient, users: Any,
                                                         node: Node) -> None:
    admin = await users.create("admin")
    teachers = [await users.create("teacher") for _ in range(30)]
    async with AsyncExitStack() as stack:
        alive: list[WsClient] = []
        doomed: list[SmallWindowClient] = []
        for n, teacher in enumerate(teachers):  # the dead ones in between the live ones, in every order
            if n % 3 == 1:
                doomed.append(await SmallWindowClient.connect(live_server, teacher.token))
            else:
                alive.append(await stack.enter_async_context(ws_connect(live_server, teacher.token)))
        await eventually(lambda: sum(node.notices.sessions_of(t.id) for t in teachers) == len(teachers))
        for client in doomed:
            reset(client)
        for n in range(3):  # the first meets the dead sockets; the next ones go on as well
            await post(http, admin, "/api/broadcast", {"roles": ["teacher"], "name": f"b{n}", "data": {"n": n}})
            for ws in alive:
                assert (await ws.until("broadcast"))["name"] == f"b{n}"
        await eventually(lambda: all(node.notices.sessions_of(t.id) == 0 for t in teachers[1::3]), timeout=30)
    assert node.notices.describe()["failed"] == 0
    assert node.notices.actor.restarts == 0


# The stalled client reads again only at the end, to find the close frame: the server waits for it.
@pytest.mark.parametrize("ws_settings", [{"ws_outbound_queue": 8, "ws_close_timeout_s": 60.0}])
async def test_a_session_that_cannot_keep_up_with_broadcasts_is_closed_with_1013(
        live_server: str, http: httpx.AsyncClient, users: Any, node: Node) -> None:
    admin, slow_user, fast_user = await users.create("admin"), await users.create("tutor"), await users.create("tutor")
    slow = await SmallWindowClient.connect(live_server, slow_user.token)  # reads nothing until the end
    await eventually(lambda: node.notices.sessions_of(slow_user.id) == 1)
    total = 100  # 6 MB: far more than the stalled socket's buffers and its queue of 8 hold
    async with ws_connect(live_server, fast_user.token) as fast, trio.open_nursery() as nursery:
        received: list[dict[str, Any]] = []

        async def read_fast() -> None:
            received.extend(await fast.collect("broadcast", total, timeout=120))

        nursery.start_soon(read_fast)
        for n in range(total):
            await post(http, admin, "/api/broadcast", {"roles": ["tutor"], "name": str(n), "data": "x" * 60_000})
    assert [event["name"] for event in received] == [str(n) for n in range(total)]
    with trio.fail_after(30):
        assert await slow.close_code() == 1013
    await eventually(lambda: node.notices.sessions_of(slow_user.id) == 0)
