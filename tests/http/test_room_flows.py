"""The seed systems' flows, concurrency and query cost, end to end; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpx
import pytest
import trio
from sqlalchemy import event, func, select

from roomcast.storage.models import Membership, Message, OutboxEvent
from tests.chat_helpers import body_of, expect_error, history, make_group, message_count, outbox, room_of, send

# --------------------------------------------------------------------------- education platform


async def test_enrollment_provisioning(client: Any, users: Any, node: Any) -> None:
    platform = await users.create("service")
    student, other_student = await users.create("student"), await users.create("student")
    teacher, tutor, parent = await users.create("teacher"), await users.create("tutor"), await users.create("parent")
    subject_body = {"kind": "group", "name": "Mathematics · Ann",
                    "members": [{"user_id": student.id}, {"user_id": teacher.id, "room_role": "owner"}]}
    tutor_body = {"kind": "group", "name": "Tutoring · Ann", "members": [{"user_id": student.id},
                                                                       {"user_id": tutor.id}]}
    subject_url, tutor_url = "/api/rooms/by-ref/enrollment:42:subject", "/api/rooms/by-ref/enrollment:42:tutor"

    subject = await body_of(await client.put(subject_url, headers=platform.headers, json=subject_body), 201)
    tutoring = await body_of(await client.put(tutor_url, headers=platform.headers, json=tutor_body), 201)
    assert subject["external_ref"] == "enrollment:42:subject" and subject["kind"] == "group"
    assert {m["id"]: m["room_role"] for m in subject["members"]} == {student.id: "member", teacher.id: "owner"}
    assert {m["id"] for m in tutoring["members"]} == {student.id, tutor.id}

    # A repeated PUT changes nothing: same room, same state, no event.
    again = await body_of(await client.put(subject_url, headers=platform.headers, json=subject_body), 200)
    assert again == subject
    assert await outbox(node, subject["id"]) == []

    # Who sees what.
    async def visible(user: Any) -> list[int]:
        return [room["id"] for room in (await body_of(await client.get("/api/rooms", headers=user.headers),
                                                      200))["items"]]

    assert sorted(await visible(student)) == sorted([subject["id"], tutoring["id"]])
    assert await visible(teacher) == [subject["id"]]
    assert await visible(tutor) == [tutoring["id"]]
    assert await visible(parent) == []
    await send(client, student, subject["id"], "I have a question")
    await send(client, teacher, subject["id"], "Ask away")
    assert [m["body"] for m in (await history(client, teacher, subject["id"]))["items"]] == [
        "I have a question", "Ask away"]
    for url in (f"/api/rooms/{subject['id']}", f"/api/rooms/{subject['id']}/messages"):
        await expect_error(await client.get(url, headers=other_student.headers), 403, "not_a_member")
        await expect_error(await client.get(url, headers=parent.headers), 403, "not_a_member")

    # Un-enrolling deletes the room with its messages; the tutor room stays.
    response = await client.delete(subject_url, headers=platform.headers)
    assert response.status_code == 204
    await expect_error(await client.get(f"/api/rooms/{subject['id']}", headers=student.headers), 404, "not_found")
    assert await message_count(node, subject["id"]) == 0
    leftovers = await node.database.read(lambda s: (
        s.scalar(select(func.count()).select_from(Membership).where(Membership.room_id == subject["id"])),
        s.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.room_id == subject["id"])),
    ))
    assert leftovers == (0, 0)
    assert await visible(student) == [tutoring["id"]]
    await expect_error(await client.delete(subject_url, headers=platform.headers), 404, "not_found")
    # Enrolling again makes a new room.
    renewed = await body_of(await client.put(subject_url, headers=platform.headers, json=subject_body), 201)
    assert renewed["id"] != subject["id"]


async def test_provisioning_replaces_members(client: Any, users: Any, node: Any) -> None:
    platform = await users.create("service")
    student, teacher, substitute = await users.create("student"), await users.create("teacher"), await users.create(
        "teacher")
    url = "/api/rooms/by-ref/enrollment:9:subject"
    body = {"kind": "group", "name": "Physics", "members": [{"user_id": student.id}, {"user_id": teacher.id}]}
    room = await body_of(await client.put(url, headers=platform.headers, json=body), 201)
    body["members"] = [{"user_id": student.id}, {"user_id": substitute.id, "room_role": "owner"}]
    updated = await body_of(await client.put(url, headers=platform.headers, json=body), 200)
    assert updated["id"] == room["id"]
    assert {m["id"]: m["room_role"] for m in updated["members"]} == {student.id: "member", substitute.id: "owner"}
    [change] = await outbox(node, room["id"])
    assert change["type"] == "room_updated"
    assert (change["changes"]["added"], change["changes"]["removed"]) == ([substitute.id], [teacher.id])
    await expect_error(await client.get(f"/api/rooms/{room['id']}", headers=teacher.headers), 403, "not_a_member")


async def test_an_admin_deletes_anyones_message(client: Any, users: Any) -> None:
    teacher, student = await users.create("teacher"), await users.create("student")
    admin = await users.create("admin")
    room = await make_group(client, teacher, [student])
    keep = await send(client, teacher, room["id"], "welcome")
    rude = await send(client, student, room["id"], "something rude")
    response = await client.delete(f"/api/rooms/{room['id']}/messages/{rude['id']}", headers=admin.headers)
    assert response.status_code == 204
    for viewer in (teacher, student, admin):
        assert [m["id"] for m in (await history(client, viewer, room["id"]))["items"]] == [keep["id"]]


async def test_pagination_boundaries_skip_deleted_messages(client: Any, users: Any) -> None:
    alice, bob = await users.create("member"), await users.create("member")
    room = await make_group(client, alice, [bob])
    sent = [await send(client, alice if i % 2 else bob, room["id"], f"#{i}") for i in range(30)]
    for doomed in (sent[3], sent[17], sent[29]):
        await client.delete(f"/api/rooms/{room['id']}/messages/{doomed['id']}", headers=alice.headers)
    visible = [m for m in sent if m not in (sent[3], sent[17], sent[29])]  # 27 messages

    first = await history(client, bob, room["id"], limit=10)
    assert [m["body"] for m in first["items"]] == [m["body"] for m in visible[-10:]] and first["has_more"]
    middle = await history(client, bob, room["id"], limit=10, before=first["items"][0]["seq"])
    assert [m["body"] for m in middle["items"]] == [m["body"] for m in visible[-20:-10]] and middle["has_more"]
    last = await history(client, bob, room["id"], limit=10, before=middle["items"][0]["seq"])
    assert [m["body"] for m in last["items"]] == [m["body"] for m in visible[:7]] and not last["has_more"]
    # Forwards from the start, the same messages in the same order.
    forward: list[str] = []
    after = 0
    while True:
        page = await history(client, bob, room["id"], limit=10, after=after)
        forward += [m["body"] for m in page["items"]]
        if not page["has_more"]:
            break
        after = page["items"][-1]["seq"]
    assert forward == [m["body"] for m in visible]
    # A page that ends exactly at the last message says so.
    exact = await history(client, bob, room["id"], limit=27)
    assert len(exact["items"]) == 27 and exact["has_more"] is False


# --------------------------------------------------------------------------- concurrency


async def test_fifty_concurrent_senders_get_seq_one_to_fifty(live_server: str, users: Any, node: Any) -> None:
    owner = await users.create("member")
    senders = [await users.create("member") for _ in range(50)]
    seqs: list[int] = []
    async with httpx.AsyncClient(base_url=live_server, timeout=60) as http:
        response = await http.post("/api/rooms", headers=owner.headers,
                                   json={"kind": "group", "name": "crowd", "members": [s.id for s in senders]})
        room_id = response.json()["id"]

        async def post(sender: Any) -> None:
            reply = await http.post(f"/api/rooms/{room_id}/messages", headers=sender.headers,
                                    json={"body": f"from {sender.username}"})
            assert reply.status_code == 201, reply.text
            seqs.append(reply.json()["seq"])

        async with trio.open_nursery() as nursery:
            for sender in senders:
                nursery.start_soon(post, sender)
    assert sorted(seqs) == list(range(1, 51))
    events = await outbox(node, room_id)
    assert [e["seq"] for e in events] == list(range(1, 51))
    assert sorted(e["message"]["sender"]["id"] for e in events) == sorted(s.id for s in senders)
    assert (await node.database.read(lambda s: s.scalar(
        select(func.count()).select_from(Message).where(Message.room_id == room_id)))) == 50


async def test_twenty_concurrent_retries_of_one_client_id_make_one_message(live_server: str, users: Any,
                                                                            node: Any) -> None:
    sender, other = await users.create("member"), await users.create("member")
    statuses: list[int] = []
    ids: set[int] = set()
    async with httpx.AsyncClient(base_url=live_server, timeout=60) as http:
        response = await http.post("/api/rooms", headers=sender.headers,
                                   json={"kind": "group", "name": "retry", "members": [other.id]})
        room_id = response.json()["id"]

        async def post() -> None:
            reply = await http.post(f"/api/rooms/{room_id}/messages", headers=sender.headers,
                                    json={"body": "exactly once", "client_id": "retry-me"})
            statuses.append(reply.status_code)
            ids.add(reply.json()["id"])

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(post)
    assert sorted(statuses) == [200] * 19 + [201]
    assert len(ids) == 1
    assert await message_count(node, room_id) == 1
    assert [e["seq"] for e in await outbox(node, room_id)] == [1]


async def test_concurrent_direct_room_requests_make_one_room(client: Any, users: Any) -> None:
    teacher, student = await users.create("teacher"), await users.create("student")
    results: list[tuple[int, int]] = []

    async def open_room(caller: Any, other: Any) -> None:
        response = await client.post("/api/rooms", headers=caller.headers,
                                     json={"kind": "direct", "members": [other.id]})
        results.append((response.status_code, (await response.get_json())["id"]))

    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(open_room, *((teacher, student) if i % 2 else (student, teacher)))
    assert sorted(status for status, _ in results) == [200] * 9 + [201]
    assert len({room_id for _, room_id in results}) == 1


async def test_concurrent_provisioning_of_one_reference_makes_one_room(client: Any, users: Any) -> None:
    platform, student = await users.create("service"), await users.create("student")
    results: list[tuple[int, int]] = []

    async def put() -> None:
        response = await client.put("/api/rooms/by-ref/enrollment:1:subject", headers=platform.headers,
                                    json={"kind": "group", "name": "n", "members": [{"user_id": student.id}]})
        results.append((response.status_code, (await response.get_json())["id"]))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(put)
    assert sorted(status for status, _ in results) == [200] * 9 + [201]
    assert len({room_id for _, room_id in results}) == 1


# --------------------------------------------------------------------------- query cost


_counting: ContextVar[bool] = ContextVar("counting", default=False)


@contextmanager
def counted_statements(node: Any) -> Iterator[list[str]]:
    """The statements run on behalf of this block only.

    Trio copies the caller's context into the tasks it spawns and into worker
    threads, so the request's statements see the flag; the node's background
    actors (the outbox relay, room actors) started earlier do not.
    """
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if _counting.get():
            statements.append(statement)

    for engine in node.database.engines:
        event.listen(engine, "before_cursor_execute", count)
    token = _counting.set(True)
    try:
        yield statements
    finally:
        _counting.reset(token)
        for engine in node.database.engines:
            event.remove(engine, "before_cursor_execute", count)


async def test_room_list_costs_the_same_for_5_and_100_rooms(client: Any, users: Any, node: Any) -> None:
    alice = await users.create("member")
    friends = [await users.create("member") for _ in range(4)]

    async def add_rooms(count: int) -> None:
        for i in range(count):
            room = await make_group(client, alice, friends[: 1 + i % 4], name=f"room {i}")
            await send(client, friends[i % 4], room["id"], f"hello {i}")
            if i % 3 == 0:
                await send(client, alice, room["id"], f"reply {i}")

    async def list_all() -> tuple[int, dict[str, Any]]:
        with counted_statements(node) as statements:
            page = await body_of(await client.get("/api/rooms?limit=200", headers=alice.headers), 200)
        return len(statements), page

    await add_rooms(5)
    few, small_page = await list_all()
    await add_rooms(95)
    many, big_page = await list_all()
    assert len(small_page["items"]) == 5 and len(big_page["items"]) == 100
    assert all(room["last_message"] is not None and room["members"] for room in big_page["items"])
    assert few == many, (few, many)
    assert many <= 6, many


# 40 sends per user in a row: past the default burst, so the limit would make this test depend on speed.
@pytest.mark.parametrize("settings_overrides", [{"send_burst": 1000}])
async def test_message_page_costs_the_same_for_10_and_200_messages(client: Any, users: Any, node: Any) -> None:
    people = [await users.create("member") for _ in range(5)]
    room = await make_group(client, people[0], people[1:])
    previous = None
    for i in range(200):
        message = await send(client, people[i % 5], room["id"], f"m{i}",
                             **({"reply_to": previous["id"]} if previous and i % 7 == 0 else {}))
        previous = message

    async def page(limit: int) -> int:
        with counted_statements(node) as statements:
            data = await history(client, people[0], room["id"], limit=limit)
        assert len(data["items"]) == limit
        return len(statements)

    few, many = await page(10), await page(200)
    assert few == many, (few, many)
    assert many <= 6, many


async def test_room_detail_cost_does_not_grow_with_members(client: Any, users: Any, node: Any) -> None:
    owner = await users.create("member")
    crowd = [await users.create("member") for _ in range(60)]
    small = await make_group(client, owner, crowd[:2])
    large = await make_group(client, owner, crowd)

    async def cost(room_id: int) -> int:
        with counted_statements(node) as statements:
            await room_of(client, owner, room_id)
        return len(statements)

    assert await cost(small["id"]) == await cost(large["id"])
