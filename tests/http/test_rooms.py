"""PROTOCOL §3 over REST: rooms, members, provisioning; on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chat_helpers import body_of, expect_error, make_direct, make_group, outbox, room_of, send

# --------------------------------------------------------------------------- direct rooms


async def test_direct_room_is_created_once_per_pair(client: Any, users: Any) -> None:
    teacher, student = await users.create("teacher"), await users.create("student")
    response = await client.post("/api/rooms", headers=teacher.headers,
                                 json={"kind": "direct", "members": [student.id]})
    room = await body_of(response, 201)
    assert room["kind"] == "direct" and room["last_seq"] == 0 and room["last_message"] is None
    assert room["unread_count"] == 0 and room["external_ref"] is None
    assert {(m["id"], m["room_role"]) for m in room["members"]} == {(teacher.id, "member"), (student.id, "member")}
    again = await client.post("/api/rooms", headers=teacher.headers, json={"kind": "direct", "members": [student.id]})
    assert (await body_of(again, 200))["id"] == room["id"]
    # The other side of the pair gets the same room too.
    other_side = await client.post("/api/rooms", headers=student.headers,
                                   json={"kind": "direct", "members": [teacher.id]})
    assert (await body_of(other_side, 200))["id"] == room["id"]


async def test_direct_room_with_oneself_is_self_chat(client: Any, users: Any) -> None:
    alice = await users.create("member")
    response = await client.post("/api/rooms", headers=alice.headers, json={"kind": "direct", "members": [alice.id]})
    await expect_error(response, 400, "self_chat")


@pytest.mark.parametrize(("caller_role", "target_role"), [
    ("student", "student"), ("student", "parent"), ("parent", "student"), ("parent", "parent"),
    ("member", "student"), ("teacher", "service"),
])
async def test_direct_room_outside_the_contact_policy_is_denied(client: Any, users: Any, caller_role: str,
                                                                 target_role: str) -> None:
    caller, target = await users.create(caller_role), await users.create(target_role)
    response = await client.post("/api/rooms", headers=caller.headers, json={"kind": "direct", "members": [target.id]})
    await expect_error(response, 403, "policy_denied")


async def test_direct_room_needs_exactly_one_existing_user_of_the_tenant(client: Any, users: Any) -> None:
    alice, bob = await users.create("member"), await users.create("member")
    stranger = await users.create("member", tenant="elsewhere")
    for members in ([], [alice.id, bob.id]):
        response = await client.post("/api/rooms", headers=alice.headers, json={"kind": "direct", "members": members})
        await expect_error(response, 400, "validation_error")
    for absent in (stranger.id, 999_999):
        response = await client.post("/api/rooms", headers=alice.headers, json={"kind": "direct", "members": [absent]})
        await expect_error(response, 404, "not_found")


# --------------------------------------------------------------------------- group rooms


async def test_group_room_makes_the_caller_its_owner(client: Any, users: Any) -> None:
    teacher = await users.create("teacher")
    students = [await users.create("student") for _ in range(3)]
    response = await client.post("/api/rooms", headers=teacher.headers, json={
        "kind": "group", "name": "Algebra 🧮", "topic": "Tuesdays", "members": [s.id for s in students] + [teacher.id]})
    room = await body_of(response, 201)
    assert (room["kind"], room["name"], room["topic"], room["is_active"]) == ("group", "Algebra 🧮", "Tuesdays", True)
    roles = {m["id"]: m["room_role"] for m in room["members"]}
    assert roles == {teacher.id: "owner", **{s.id: "member" for s in students}}
    member = next(m for m in room["members"] if m["id"] == students[0].id)
    assert member == {"id": students[0].id, "username": students[0].username, "display_name": students[0].username,
                      "role": "student", "room_role": "member"}
    assert room["created_at"].endswith("Z") and room["updated_at"] == room["created_at"]


async def test_forum_room_and_a_room_of_one(client: Any, users: Any) -> None:
    alice = await users.create("member")
    forum = await make_group(client, alice, [], name="Announcements", kind="forum")
    assert forum["kind"] == "forum" and [m["id"] for m in forum["members"]] == [alice.id]


@pytest.mark.parametrize("payload", [
    {"kind": "group", "members": []},                       # no name
    {"kind": "group", "name": "", "members": []},           # empty name
    {"kind": "group", "name": " \t\n", "members": []},     # blank name
    {"kind": "group", "name": "x" * 201, "members": []},    # name too long
    {"kind": "group", "name": "g", "topic": "t" * 1001},   # topic too long
    {"kind": "group", "name": "g", "members": ["1"]},       # wrong type (strict)
    {"kind": "group", "name": "g", "members": [True]},
    {"kind": "group", "name": "g", "members": [0]},
    {"kind": "group", "name": "g", "members": [2**63]},
    {"kind": "channel", "name": "g"},
    {"name": "g"},
    [],
    "group",
])
async def test_create_room_validation(client: Any, users: Any, payload: Any) -> None:
    alice = await users.create("member")
    await expect_error(await client.post("/api/rooms", headers=alice.headers, json=payload), 400, "validation_error")


async def test_group_members_must_be_of_the_tenant_and_allowed_by_the_policy(client: Any, users: Any) -> None:
    student, other_student = await users.create("student"), await users.create("student")
    teacher = await users.create("teacher")
    stranger = await users.create("teacher", tenant="elsewhere")
    response = await client.post("/api/rooms", headers=student.headers,
                                 json={"kind": "group", "name": "g", "members": [teacher.id, stranger.id]})
    assert (await expect_error(response, 404, "not_found"))["details"] == {"user_ids": [stranger.id]}
    response = await client.post("/api/rooms", headers=student.headers,
                                 json={"kind": "group", "name": "g", "members": [teacher.id, other_student.id]})
    assert (await expect_error(response, 403, "policy_denied"))["details"] == {"user_ids": [other_student.id]}
    await make_group(client, student, [teacher])
    admin = await users.create("admin")
    await make_group(client, admin, [student, other_student])  # admins are not bound by the policy


# --------------------------------------------------------------------------- list


async def test_room_list_is_most_recent_activity_first_with_last_message_and_unread(client: Any, users: Any) -> None:
    alice, bob = await users.create("member"), await users.create("member")
    first = await make_group(client, alice, [bob], name="first")
    second = await make_group(client, alice, [bob], name="second")
    third = await make_group(client, alice, [bob], name="third")
    await send(client, bob, first["id"], "one")
    await send(client, bob, first["id"], "two")
    await send(client, alice, first["id"], "mine")
    response = await client.get("/api/rooms", headers=alice.headers)
    page = await body_of(response, 200)
    assert [room["id"] for room in page["items"]] == [first["id"], third["id"], second["id"]]
    assert page["next_cursor"] is None
    top = page["items"][0]
    assert top["last_message"]["body"] == "mine" and top["last_seq"] == 3
    assert top["unread_count"] == 2  # bob's two; one's own messages are never unread
    bobs = await body_of(await client.get("/api/rooms", headers=bob.headers), 200)
    assert bobs["items"][0]["unread_count"] == 1


async def test_room_list_pages_with_a_cursor(client: Any, users: Any) -> None:
    alice = await users.create("member")
    made = [await make_group(client, alice, name=f"r{i}") for i in range(5)]
    seen: list[int] = []
    cursor = None
    for expected_size in (2, 2, 1):
        url = "/api/rooms?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await body_of(await client.get(url, headers=alice.headers), 200)
        assert len(page["items"]) == expected_size
        seen += [room["id"] for room in page["items"]]
        cursor = page["next_cursor"]
    assert cursor is None
    assert sorted(seen) == sorted(room["id"] for room in made) and len(set(seen)) == 5


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=x", "cursor=bogus", "cursor=cDE"])
async def test_room_list_rejects_bad_parameters(client: Any, users: Any, query: str) -> None:
    alice = await users.create("member")
    await expect_error(await client.get(f"/api/rooms?{query}", headers=alice.headers), 400, "validation_error")


async def test_room_list_shows_only_the_callers_rooms(client: Any, users: Any) -> None:
    alice, bob, carol = [await users.create("member") for _ in range(3)]
    await make_group(client, alice, [bob])
    page = await body_of(await client.get("/api/rooms", headers=carol.headers), 200)
    assert page == {"items": [], "next_cursor": None}


# --------------------------------------------------------------------------- detail


async def test_room_detail_for_members_admins_and_nobody_else(client: Any, users: Any) -> None:
    alice, bob, outsider = [await users.create("member") for _ in range(3)]
    admin = await users.create("admin")
    foreign_admin = await users.create("admin", tenant="elsewhere")
    room = await make_group(client, alice, [bob])
    await send(client, alice, room["id"], "hi")
    assert (await room_of(client, bob, room["id"]))["unread_count"] == 1
    await expect_error(await client.get(f"/api/rooms/{room['id']}", headers=outsider.headers), 403, "not_a_member")
    seen_by_admin = await room_of(client, admin, room["id"])
    assert seen_by_admin["unread_count"] == 0 and seen_by_admin["last_message"]["body"] == "hi"
    await expect_error(await client.get(f"/api/rooms/{room['id']}", headers=foreign_admin.headers), 404, "not_found")
    await expect_error(await client.get("/api/rooms/424242", headers=alice.headers), 404, "not_found")
    await expect_error(await client.get(f"/api/rooms/{2**63}", headers=alice.headers), 404, "not_found")


# --------------------------------------------------------------------------- update


async def test_owner_updates_a_room_and_a_room_updated_event_is_stored(client: Any, users: Any, node: Any) -> None:
    owner, member = await users.create("member"), await users.create("member")
    room = await make_group(client, owner, [member])
    response = await client.patch(f"/api/rooms/{room['id']}", headers=owner.headers,
                                  json={"name": "renamed", "topic": "new topic", "is_active": False})
    updated = await body_of(response, 200)
    assert (updated["name"], updated["topic"], updated["is_active"], updated["last_seq"]) == (
        "renamed", "new topic", False, 1)
    assert updated["updated_at"] >= room["updated_at"]
    assert await outbox(node, room["id"]) == [{"type": "room_updated", "room": room["id"], "seq": 1,
                                               "changes": {"name": "renamed", "topic": "new topic",
                                                           "is_active": False}}]
    # Only what changes is an event; a request that changes nothing stores none.
    same = await client.patch(f"/api/rooms/{room['id']}", headers=owner.headers, json={"name": "renamed"})
    assert (await body_of(same, 200))["last_seq"] == 1
    again = await client.patch(f"/api/rooms/{room['id']}", headers=owner.headers,
                               json={"is_active": True, "name": None})
    assert (await body_of(again, 200))["last_seq"] == 2
    assert (await outbox(node, room["id"]))[-1]["changes"] == {"is_active": True}


async def test_who_may_update_a_room(client: Any, users: Any) -> None:
    owner, moderator, member, outsider = [await users.create("member") for _ in range(4)]
    admin = await users.create("admin")
    foreign_admin = await users.create("admin", tenant="elsewhere")
    room = await make_group(client, owner, [moderator, member])
    await body_of(await client.post(f"/api/rooms/{room['id']}/members", headers=owner.headers,
                                    json={"user_id": moderator.id, "room_role": "moderator"}), 200)
    url = f"/api/rooms/{room['id']}"
    await body_of(await client.patch(url, headers=moderator.headers, json={"topic": "by moderator"}), 200)
    await body_of(await client.patch(url, headers=admin.headers, json={"topic": "by admin"}), 200)
    await expect_error(await client.patch(url, headers=member.headers, json={"topic": "x"}), 403, "forbidden")
    await expect_error(await client.patch(url, headers=outsider.headers, json={"topic": "x"}), 403, "not_a_member")
    await expect_error(await client.patch(url, headers=foreign_admin.headers, json={"topic": "x"}), 404, "not_found")
    await expect_error(await client.patch("/api/rooms/99999", headers=admin.headers, json={"topic": "x"}), 404,
                       "not_found")


@pytest.mark.parametrize("payload", [
    {"name": ""}, {"name": "   "}, {"name": "n" * 201}, {"topic": "t" * 1001}, {"is_active": "false"}, {"is_active": 0},
    {"name": 5}, {"name": "bad\u0000name"}, [],
])
async def test_update_room_validation(client: Any, users: Any, payload: Any) -> None:
    owner = await users.create("member")
    room = await make_group(client, owner)
    response = await client.patch(f"/api/rooms/{room['id']}", headers=owner.headers, json=payload)
    await expect_error(response, 400, "validation_error")


# --------------------------------------------------------------------------- members


async def test_adding_removing_and_leaving(client: Any, users: Any, node: Any) -> None:
    owner, bob, carol = [await users.create("member") for _ in range(3)]
    room = await make_group(client, owner)
    rid = room["id"]
    added = await body_of(await client.post(f"/api/rooms/{rid}/members", headers=owner.headers,
                                            json={"user_id": bob.id}), 201)
    assert {m["id"]: m["room_role"] for m in added["members"]} == {owner.id: "owner", bob.id: "member"}
    events = await outbox(node, rid)
    assert events[-1]["type"] == "room_updated" and events[-1]["changes"]["added"] == [bob.id]
    assert [m["id"] for m in events[-1]["changes"]["members"]] == [owner.id, bob.id]
    # Adding again changes nothing: 200 and no event.
    await body_of(await client.post(f"/api/rooms/{rid}/members", headers=owner.headers, json={"user_id": bob.id}), 200)
    assert len(await outbox(node, rid)) == 1
    # Bob, now a member, can read; carol cannot.
    await room_of(client, bob, rid)
    await expect_error(await client.get(f"/api/rooms/{rid}", headers=carol.headers), 403, "not_a_member")
    await body_of(await client.post(f"/api/rooms/{rid}/members", headers=owner.headers,
                                    json={"user_id": carol.id, "room_role": "moderator"}), 201)
    # The moderator removes bob; bob loses access.
    response = await client.delete(f"/api/rooms/{rid}/members/{bob.id}", headers=carol.headers)
    assert response.status_code == 204
    assert (await outbox(node, rid))[-1]["changes"]["removed"] == [bob.id]
    await expect_error(await client.get(f"/api/rooms/{rid}/messages", headers=bob.headers), 403, "not_a_member")
    # Carol leaves by removing herself.
    assert (await client.delete(f"/api/rooms/{rid}/members/{carol.id}", headers=carol.headers)).status_code == 204
    final = await room_of(client, owner, rid)
    assert [m["id"] for m in final["members"]] == [owner.id]
    assert [event["seq"] for event in await outbox(node, rid)] == [1, 2, 3, 4] and final["last_seq"] == 4


async def test_member_management_rules(client: Any, users: Any) -> None:
    owner, moderator, member, newcomer = [await users.create("member") for _ in range(4)]
    student, other_student = await users.create("student"), await users.create("student")
    stranger = await users.create("member", tenant="elsewhere")
    room = await make_group(client, owner, [moderator, member])
    rid = room["id"]
    members_url = f"/api/rooms/{rid}/members"
    await body_of(await client.post(members_url, headers=owner.headers,
                                    json={"user_id": moderator.id, "room_role": "moderator"}), 200)
    # Plain members manage nothing.
    await expect_error(await client.post(members_url, headers=member.headers, json={"user_id": newcomer.id}), 403,
                       "forbidden")
    await expect_error(await client.delete(f"{members_url}/{moderator.id}", headers=member.headers), 403, "forbidden")
    # Moderators neither make nor remove owners.
    await expect_error(await client.post(members_url, headers=moderator.headers,
                                         json={"user_id": newcomer.id, "room_role": "owner"}), 403, "forbidden")
    await expect_error(await client.post(members_url, headers=moderator.headers,
                                         json={"user_id": owner.id, "room_role": "member"}), 403, "forbidden")
    await expect_error(await client.delete(f"{members_url}/{owner.id}", headers=moderator.headers), 403, "forbidden")
    # Users must exist in the tenant; removing a non-member is a 404.
    await expect_error(await client.post(members_url, headers=owner.headers, json={"user_id": stranger.id}), 404,
                       "not_found")
    await expect_error(await client.post(members_url, headers=owner.headers, json={"user_id": 987654}), 404,
                       "not_found")
    await expect_error(await client.delete(f"{members_url}/{newcomer.id}", headers=owner.headers), 404, "not_found")
    # The contact policy holds for whoever adds: a student may not bring in another student.
    student_room = await make_group(client, student)
    await expect_error(await client.post(f"/api/rooms/{student_room['id']}/members", headers=student.headers,
                                         json={"user_id": other_student.id}), 403, "policy_denied")


@pytest.mark.parametrize("payload", [
    {}, {"user_id": "3"}, {"user_id": 3, "room_role": "admin"}, {"user_id": -1}, {"user_id": 1.5},
])
async def test_add_member_validation(client: Any, users: Any, payload: Any) -> None:
    owner = await users.create("member")
    room = await make_group(client, owner)
    response = await client.post(f"/api/rooms/{room['id']}/members", headers=owner.headers, json=payload)
    await expect_error(response, 400, "validation_error")


async def test_direct_room_members_do_not_change(client: Any, users: Any) -> None:
    alice, bob, carol = [await users.create("member") for _ in range(3)]
    admin = await users.create("admin")
    room = await make_direct(client, alice, bob)
    response = await client.post(f"/api/rooms/{room['id']}/members", headers=admin.headers, json={"user_id": carol.id})
    await expect_error(response, 400, "validation_error")
    response = await client.delete(f"/api/rooms/{room['id']}/members/{alice.id}", headers=alice.headers)
    await expect_error(response, 400, "validation_error")


# --------------------------------------------------------------------------- provisioning


async def test_provisioning_is_for_admins_and_services(client: Any, users: Any) -> None:
    teacher, student = await users.create("teacher"), await users.create("student")
    body = {"kind": "group", "name": "x", "members": [{"user_id": student.id}]}
    await expect_error(await client.put("/api/rooms/by-ref/ref-1", headers=teacher.headers, json=body), 403,
                       "forbidden")
    await expect_error(await client.delete("/api/rooms/by-ref/ref-1", headers=teacher.headers), 403, "forbidden")
    admin = await users.create("admin")
    room = await body_of(await client.put("/api/rooms/by-ref/ref-1", headers=admin.headers, json=body), 201)
    assert room["external_ref"] == "ref-1" and [m["id"] for m in room["members"]] == [student.id]


@pytest.mark.parametrize("payload", [
    {"kind": "direct", "name": "x", "members": []},
    {"kind": "group", "members": []},
    {"kind": "group", "name": "x"},
    {"kind": "group", "name": "x", "members": [{"user_id": 1}, {"user_id": 1, "room_role": "owner"}]},
    {"kind": "group", "name": "x", "members": [{"user_id": 1, "room_role": "boss"}]},
    {"kind": "group", "name": "x", "members": [1]},
    {"kind": "group", "name": "x", "members": [], "is_active": "yes"},
    {"kind": "group", "name": "\u3000", "members": []},  # blank: an ideographic space
])
async def test_provisioning_validation(client: Any, users: Any, payload: Any) -> None:
    service = await users.create("service")
    response = await client.put("/api/rooms/by-ref/ref", headers=service.headers, json=payload)
    await expect_error(response, 400, "validation_error")


async def test_provisioning_errors(client: Any, users: Any) -> None:
    service = await users.create("service")
    stranger = await users.create("student", tenant="elsewhere")
    body = {"kind": "group", "name": "x", "members": [{"user_id": stranger.id}]}
    await expect_error(await client.put("/api/rooms/by-ref/r", headers=service.headers, json=body), 404, "not_found")
    await expect_error(await client.delete("/api/rooms/by-ref/absent", headers=service.headers), 404, "not_found")
    too_long = "r" * 256
    response = await client.put(f"/api/rooms/by-ref/{too_long}", headers=service.headers,
                                json={"kind": "group", "name": "x", "members": []})
    await expect_error(response, 400, "validation_error")


async def test_references_are_per_tenant(client: Any, users: Any) -> None:
    here, there = await users.create("service"), await users.create("service", tenant="elsewhere")
    body = {"kind": "group", "name": "x", "members": []}
    mine = await body_of(await client.put("/api/rooms/by-ref/shared", headers=here.headers, json=body), 201)
    theirs = await body_of(await client.put("/api/rooms/by-ref/shared", headers=there.headers, json=body), 201)
    assert mine["id"] != theirs["id"]
    assert (await client.delete("/api/rooms/by-ref/shared", headers=there.headers)).status_code == 204
    await body_of(await client.put("/api/rooms/by-ref/shared", headers=here.headers, json=body), 200)


async def test_provisioning_updates_fields_and_roles(client: Any, users: Any, node: Any) -> None:
    service = await users.create("service")
    teacher, student = await users.create("teacher"), await users.create("student")
    url = "/api/rooms/by-ref/course:7"
    created = await body_of(await client.put(url, headers=service.headers, json={
        "kind": "group", "name": "Course 7", "members": [{"user_id": teacher.id, "room_role": "owner"},
                                                           {"user_id": student.id}]}), 201)
    updated = await body_of(await client.put(url, headers=service.headers, json={
        "kind": "forum", "name": "Course 7b", "topic": "t", "is_active": False,
        "members": [{"user_id": teacher.id, "room_role": "moderator"}, {"user_id": student.id}]}), 200)
    assert updated["id"] == created["id"]
    assert (updated["kind"], updated["name"], updated["topic"], updated["is_active"]) == ("forum", "Course 7b", "t",
                                                                                        False)
    assert {m["id"]: m["room_role"] for m in updated["members"]} == {teacher.id: "moderator", student.id: "member"}
    [event] = await outbox(node, created["id"])
    assert event["changes"]["kind"] == "forum" and event["changes"]["is_active"] is False
    assert "added" not in event["changes"] and "removed" not in event["changes"]


# --------------------------------------------------------------------------- every endpoint: auth and tenants

ROOM_ENDPOINTS = [
    ("get", "/api/rooms/{room}", None),
    ("patch", "/api/rooms/{room}", {"name": "x"}),
    ("post", "/api/rooms/{room}/members", {"user_id": 1}),
    ("delete", "/api/rooms/{room}/members/{user}", None),
    ("get", "/api/rooms/{room}/messages", None),
    ("post", "/api/rooms/{room}/messages", {"body": "x"}),
    ("patch", "/api/rooms/{room}/messages/{message}", {"body": "x"}),
    ("delete", "/api/rooms/{room}/messages/{message}", None),
    ("post", "/api/rooms/{room}/read", {"seq": 1}),
]
ALL_ENDPOINTS = [
    ("get", "/api/rooms", None),
    ("post", "/api/rooms", {"kind": "group", "name": "x"}),
    ("put", "/api/rooms/by-ref/r", {"kind": "group", "name": "x", "members": []}),
    ("delete", "/api/rooms/by-ref/r", None),
    *ROOM_ENDPOINTS,
]


async def _call(client: Any, method: str, url: str, payload: Any, headers: dict[str, str]) -> Any:
    kwargs: dict[str, Any] = {"headers": headers}
    if payload is not None:
        kwargs["json"] = payload
    return await getattr(client, method)(url, **kwargs)


@pytest.mark.parametrize(("method", "path", "payload"), ALL_ENDPOINTS)
@pytest.mark.parametrize("authorization", [None, "Bearer not-a-jwt", "Basic dXNlcjpwdw=="])
async def test_every_endpoint_needs_a_valid_token(client: Any, users: Any, method: str, path: str, payload: Any,
                                                  authorization: str | None) -> None:
    owner = await users.create("member")
    room = await make_group(client, owner)
    message = await send(client, owner, room["id"])
    url = path.format(room=room["id"], user=owner.id, message=message["id"])
    headers = {"Authorization": authorization} if authorization else {}
    await expect_error(await _call(client, method, url, payload, headers), 401, "unauthorized")


@pytest.mark.parametrize(("method", "path", "payload"), ROOM_ENDPOINTS)
async def test_another_tenants_room_does_not_exist(client: Any, users: Any, method: str, path: str,
                                                   payload: Any) -> None:
    owner = await users.create("member")
    room = await make_group(client, owner)
    message = await send(client, owner, room["id"])
    url = path.format(room=room["id"], user=owner.id, message=message["id"])
    for role in ("member", "admin"):
        foreigner = await users.create(role, tenant="elsewhere")
        await expect_error(await _call(client, method, url, payload, foreigner.headers), 404, "not_found")


@pytest.mark.parametrize(("method", "path", "payload"), ROOM_ENDPOINTS)
async def test_non_members_are_refused(client: Any, users: Any, method: str, path: str, payload: Any) -> None:
    owner, outsider = await users.create("member"), await users.create("member")
    room = await make_group(client, owner)
    message = await send(client, owner, room["id"])
    url = path.format(room=room["id"], user=owner.id, message=message["id"])
    await expect_error(await _call(client, method, url, payload, outsider.headers), 403, "not_a_member")


@pytest.mark.parametrize(("method", "path", "payload"),
                         [(m, p, b) for m, p, b in ALL_ENDPOINTS if b is not None])
async def test_every_json_endpoint_rejects_malformed_json(client: Any, users: Any, method: str, path: str,
                                                          payload: Any) -> None:
    admin = await users.create("admin")
    room = await make_group(client, admin)
    message = await send(client, admin, room["id"])
    url = path.format(room=room["id"], user=admin.id, message=message["id"])
    headers = {**admin.headers, "Content-Type": "application/json"}
    response = await getattr(client, method)(url, headers=headers, data=b'{"body": "x",')
    await expect_error(response, 400, "malformed_json")
    # A body that is not JSON at all (no JSON content type) is a validation error.
    response = await getattr(client, method)(url, headers=admin.headers, data=b"body=x")
    await expect_error(response, 400, "validation_error")
