"""PROTOCOL §4 over REST: send, edit, delete, history, read pointers; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from sqlalchemy import select, update

from roomcast.services import messaging
from roomcast.storage.models import Attachment, Membership, OutboxEvent
from roomcast.timestamps import utcnow
from tests.chat_helpers import (
    body_of,
    expect_error,
    history,
    make_group,
    outbox,
    read_pointer,
    room_of,
    send,
)

UNICODE_BODIES = [
    "Привет, мир! 👋🏽",
    "line one\nline two\n\n\ttabbed\r\nwindows line",
    "👨‍👩‍👧‍👦 family, 🏳️‍🌈 flag, é vs é",
    "עברית ו-العربية mixed with latin",
    "  leading and trailing spaces  ",
    "<script>alert(1)</script> & \"quotes\" 'single' \\backslash",
    "\u200b zero width space, \u2028 line separator, \U0001F600",
]


async def _room(client: Any, users: Any, n_members: int = 1) -> tuple[dict[str, Any], Any, list[Any]]:
    owner = await users.create("member")
    members = [await users.create("member") for _ in range(n_members)]
    return await make_group(client, owner, members), owner, members


# --------------------------------------------------------------------------- send


async def test_send_commits_the_message_with_the_next_seq_and_an_outbox_row(client: Any, users: Any,
                                                                            node: Any) -> None:
    room, owner, [bob] = await _room(client, users)
    response = await client.post(f"/api/rooms/{room['id']}/messages", headers=owner.headers,
                                 json={"body": "first", "client_id": "c-1"})
    first = await body_of(response, 201)
    assert first == {
        "id": first["id"], "room_id": room["id"], "seq": 1,
        "sender": {"id": owner.id, "username": owner.username, "display_name": owner.username},
        "body": "first", "reply_to": None, "attachments": [], "client_id": "c-1",
        "created_at": first["created_at"], "edited_at": None,
    }
    assert first["created_at"].endswith("Z") and len(first["created_at"]) == len("2026-01-08T10:15:30.123Z")
    second = await send(client, bob, room["id"], "second", reply_to=first["id"])
    assert second["seq"] == 2 and second["reply_to"] == first["id"]
    assert await outbox(node, room["id"]) == [
        {"type": "message", "room": room["id"], "seq": 1, "message": first},
        {"type": "message", "room": room["id"], "seq": 2, "message": second},
    ]
    assert (await room_of(client, owner, room["id"]))["last_seq"] == 2


async def test_notify_committed_is_called_after_each_stored_event(client: Any, users: Any, node: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    woken: list[int] = []
    monkeypatch.setattr(node, "notify_committed", lambda room_id, events=(): woken.append(room_id))
    room, owner, _ = await _room(client, users)
    message = await send(client, owner, room["id"])
    await send(client, owner, room["id"], "again", client_id="same")
    response = await client.post(f"/api/rooms/{room['id']}/messages", headers=owner.headers,
                                 json={"body": "again", "client_id": "same"})
    assert response.status_code == 200  # a retry stores nothing and wakes nobody
    await client.patch(f"/api/rooms/{room['id']}/messages/{message['id']}", headers=owner.headers, json={"body": "e"})
    await client.delete(f"/api/rooms/{room['id']}/messages/{message['id']}", headers=owner.headers)
    await client.post(f"/api/rooms/{room['id']}/read", headers=owner.headers, json={"seq": 4})
    assert woken == [room["id"]] * 4  # send, send, edit, delete


@pytest.mark.parametrize("body", UNICODE_BODIES)
async def test_bodies_round_trip_exactly(client: Any, users: Any, node: Any, body: str) -> None:
    room, owner, [bob] = await _room(client, users)
    sent = await send(client, owner, room["id"], body)
    assert sent["body"] == body
    assert [m["body"] for m in (await history(client, bob, room["id"]))["items"]] == [body]
    assert (await room_of(client, bob, room["id"]))["last_message"]["body"] == body
    [event] = await outbox(node, room["id"])
    assert event["message"]["body"] == body
    raw = await node.database.read(lambda s: s.scalars(select(OutboxEvent.payload)).one())
    assert json.dumps(body, ensure_ascii=False) in raw  # stored as raw UTF-8, not \u escapes
    # And on the wire: the response bytes are UTF-8 JSON of exactly this text.
    response = await client.get(f"/api/rooms/{room['id']}/messages", headers=bob.headers)
    assert json.loads((await response.get_data()).decode("utf-8"))["items"][0]["body"] == body


async def test_body_length_limit_counts_characters(client: Any, users: Any) -> None:
    room, owner, _ = await _room(client, users)
    assert len((await send(client, owner, room["id"], "я" * 4000))["body"]) == 4000
    assert (await send(client, owner, room["id"], "😀" * 4000))["body"] == "😀" * 4000
    response = await client.post(f"/api/rooms/{room['id']}/messages", headers=owner.headers,
                                 json={"body": "x" * 4001})
    error = await expect_error(response, 400, "validation_error")
    assert error["details"] == {"field": "body", "max_chars": 4000}


class TestConfiguredBodyLimit:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"max_body_chars": 10}

    async def test_the_limit_is_configurable(self, client: Any, users: Any) -> None:
        room, owner, _ = await _room(client, users)
        await send(client, owner, room["id"], "0123456789")
        response = await client.post(f"/api/rooms/{room['id']}/messages", headers=owner.headers,
                                     json={"body": "0123456789!"})
        await expect_error(response, 400, "validation_error")
        message = await send(client, owner, room["id"], "short")
        response = await client.patch(f"/api/rooms/{room['id']}/messages/{message['id']}", headers=owner.headers,
                                      json={"body": "far too long now"})
        await expect_error(response, 400, "validation_error")


@pytest.mark.parametrize("body", ["", " ", "\n\t  \r\n", "\u3000\u00a0"])
async def test_blank_bodies_are_empty_body(client: Any, users: Any, body: str) -> None:
    room, owner, _ = await _room(client, users)
    response = await client.post(f"/api/rooms/{room['id']}/messages", headers=owner.headers, json={"body": body})
    await expect_error(response, 400, "empty_body")


@pytest.mark.parametrize("payload", [
    {},
    {"body": 5},
    {"body": None},
    {"body": ["x"]},
    {"body": "x", "reply_to": "1"},
    {"body": "x", "reply_to": 0},
    {"body": "x", "client_id": ""},
    {"body": "x", "client_id": "c" * 65},
    {"body": "x", "client_id": 7},
    {"body": "x", "attachments": "1"},
    {"body": "x", "attachments": [1] * 11},
    {"body": "nul \u0000 inside"},
    {"body": "x", "client_id": "nul\u0000"},
    [],
    "hello",
])
async def test_send_validation(client: Any, users: Any, payload: Any) -> None:
    room, owner, _ = await _room(client, users)
    response = await client.post(f"/api/rooms/{room['id']}/messages", headers=owner.headers, json=payload)
    await expect_error(response, 400, "validation_error")


async def test_unpaired_surrogates_are_refused(client: Any, users: Any) -> None:
    room, owner, _ = await _room(client, users)
    response = await client.post(f"/api/rooms/{room['id']}/messages", data=b'{"body": "broken \\ud800 text"}',
                                 headers={**owner.headers, "Content-Type": "application/json"})
    await expect_error(response, 400, "validation_error")


async def test_sending_into_an_inactive_room(client: Any, users: Any) -> None:
    room, owner, _ = await _room(client, users)
    await body_of(await client.patch(f"/api/rooms/{room['id']}", headers=owner.headers, json={"is_active": False}),
                  200)
    response = await client.post(f"/api/rooms/{room['id']}/messages", headers=owner.headers, json={"body": "x"})
    await expect_error(response, 400, "room_inactive")


async def test_only_members_send_even_admins(client: Any, users: Any) -> None:
    room, _, _ = await _room(client, users)
    admin = await users.create("admin")
    response = await client.post(f"/api/rooms/{room['id']}/messages", headers=admin.headers, json={"body": "x"})
    await expect_error(response, 403, "not_a_member")
    response = await client.post("/api/rooms/777777/messages", headers=admin.headers, json={"body": "x"})
    await expect_error(response, 404, "not_found")


async def test_reply_to_must_be_a_live_message_of_the_same_room(client: Any, users: Any) -> None:
    room, owner, _ = await _room(client, users)
    other_room = await make_group(client, owner, name="other")
    elsewhere = await send(client, owner, other_room["id"], "elsewhere")
    gone = await send(client, owner, room["id"], "gone")
    await client.delete(f"/api/rooms/{room['id']}/messages/{gone['id']}", headers=owner.headers)
    url = f"/api/rooms/{room['id']}/messages"
    for target in (elsewhere["id"], 999_999):
        response = await client.post(url, headers=owner.headers, json={"body": "re", "reply_to": target})
        assert (await expect_error(response, 400, "validation_error"))["details"] == {"field": "reply_to"}
    response = await client.post(url, headers=owner.headers, json={"body": "re", "reply_to": gone["id"]})
    await expect_error(response, 400, "message_deleted")


async def test_client_id_makes_a_send_idempotent(client: Any, users: Any, node: Any) -> None:
    room, owner, [bob] = await _room(client, users)
    url = f"/api/rooms/{room['id']}/messages"
    original = await body_of(await client.post(url, headers=owner.headers,
                                               json={"body": "once", "client_id": "abc"}), 201)
    retry = await client.post(url, headers=owner.headers, json={"body": "changed?", "client_id": "abc"})
    assert await body_of(retry, 200) == original
    # The key is (room, sender, client_id): another sender or another room is another message.
    bobs = await send(client, bob, room["id"], "bob's", client_id="abc")
    other_room = await make_group(client, owner, name="other")
    elsewhere = await send(client, owner, other_room["id"], "other room", client_id="abc")
    assert len({original["id"], bobs["id"], elsewhere["id"]}) == 3
    assert [event["seq"] for event in await outbox(node, room["id"])] == [1, 2]
    # A retry after the room went inactive still answers with the original.
    await client.patch(f"/api/rooms/{room['id']}", headers=owner.headers, json={"is_active": False})
    assert await body_of(await client.post(url, headers=owner.headers, json={"body": "x", "client_id": "abc"}),
                         200) == original


async def test_sender_field_cannot_spoof_the_sender(client: Any, users: Any) -> None:
    room, owner, [bob] = await _room(client, users)
    response = await client.post(f"/api/rooms/{room['id']}/messages", headers=bob.headers, json={
        "body": "who am I", "sender": {"id": owner.id, "username": owner.username}, "sender_id": owner.id})
    message = await body_of(response, 201)
    assert message["sender"]["id"] == bob.id


# --------------------------------------------------------------------------- attachments


async def _upload(node: Any, room_id: int, uploader_id: int, name: str = "a.png", *, stored: bool = True) -> int:
    def insert(session: Any) -> int:
        attachment = Attachment(tenant="default", room_id=room_id, uploader_id=uploader_id, filename=name,
                                content_type="image/png", size=3, sha256="0" * 64 if stored else None,
                                stored_at=utcnow() if stored else None)
        session.add(attachment)
        session.flush()
        return attachment.id

    return await node.database.write(insert)


async def test_uploads_are_linked_to_the_message_that_carries_them(client: Any, users: Any, node: Any) -> None:
    room, owner, [bob] = await _room(client, users)
    first, second = await _upload(node, room["id"], owner.id), await _upload(node, room["id"], owner.id, "b.png")
    message = await send(client, owner, room["id"], "", attachments=[second, first])
    assert [a["id"] for a in message["attachments"]] == [first, second]
    assert message["attachments"][0] == {"id": first, "filename": "a.png", "content_type": "image/png", "size": 3,
                                         "url": f"/api/attachments/{first}"}
    assert (await history(client, bob, room["id"]))["items"][0]["attachments"] == message["attachments"]
    assert (await room_of(client, bob, room["id"]))["last_message"]["attachments"] == message["attachments"]
    # Already sent, someone else's, unknown, or still uploading: refused.
    bobs_upload = await _upload(node, room["id"], bob.id)
    under_way = await _upload(node, room["id"], owner.id, stored=False)
    for ids in ([first], [bobs_upload], [424242], [under_way]):
        response = await client.post(f"/api/rooms/{room['id']}/messages", headers=owner.headers,
                                     json={"body": "again", "attachments": ids})
        await expect_error(response, 400, "validation_error")
    # Its caption can be edited; the files stay.
    edited = await client.patch(f"/api/rooms/{room['id']}/messages/{message['id']}", headers=owner.headers,
                                json={"body": "caption"})
    assert (await body_of(edited, 200))["attachments"] == message["attachments"]


# --------------------------------------------------------------------------- edit


async def test_edit_takes_a_new_seq_and_keeps_the_messages_own(client: Any, users: Any, node: Any) -> None:
    room, owner, [bob] = await _room(client, users)
    message = await send(client, owner, room["id"], "typo")
    await send(client, bob, room["id"], "reply")
    response = await client.patch(f"/api/rooms/{room['id']}/messages/{message['id']}", headers=owner.headers,
                                  json={"body": "fixed ✅"})
    edited = await body_of(response, 200)
    assert edited["seq"] == 1 and edited["body"] == "fixed ✅" and edited["edited_at"] is not None
    assert edited["created_at"] == message["created_at"]
    events = await outbox(node, room["id"])
    assert events[-1] == {"type": "message_edited", "room": room["id"], "seq": 3, "message": edited}
    # The same body again stores nothing.
    same = await client.patch(f"/api/rooms/{room['id']}/messages/{message['id']}", headers=owner.headers,
                              json={"body": "fixed ✅"})
    assert await body_of(same, 200) == edited
    assert len(await outbox(node, room["id"])) == 3
    assert [m["body"] for m in (await history(client, bob, room["id"]))["items"]] == ["fixed ✅", "reply"]


async def test_edit_rules(client: Any, users: Any) -> None:
    room, owner, [bob] = await _room(client, users)
    admin = await users.create("admin")
    message = await send(client, owner, room["id"], "mine")
    url = f"/api/rooms/{room['id']}/messages/{message['id']}"
    await expect_error(await client.patch(url, headers=bob.headers, json={"body": "hijack"}), 403, "forbidden")
    await expect_error(await client.patch(url, headers=admin.headers, json={"body": "hijack"}), 403, "not_a_member")
    await expect_error(await client.patch(url, headers=owner.headers, json={"body": "  "}), 400, "empty_body")
    await expect_error(await client.patch(url, headers=owner.headers, json={"body": 1}), 400, "validation_error")
    await expect_error(await client.patch(url, headers=owner.headers, json={}), 400, "validation_error")
    other_room = await make_group(client, owner, name="other")
    await expect_error(await client.patch(f"/api/rooms/{other_room['id']}/messages/{message['id']}",
                                          headers=owner.headers, json={"body": "x"}), 404, "not_found")
    await expect_error(await client.patch(f"/api/rooms/{room['id']}/messages/{2**63}", headers=owner.headers,
                                          json={"body": "x"}), 404, "not_found")
    await client.patch(f"/api/rooms/{room['id']}", headers=owner.headers, json={"is_active": False})
    await expect_error(await client.patch(url, headers=owner.headers, json={"body": "x"}), 400, "room_inactive")
    await client.patch(f"/api/rooms/{room['id']}", headers=owner.headers, json={"is_active": True})
    assert (await client.delete(url, headers=owner.headers)).status_code == 204
    await expect_error(await client.patch(url, headers=owner.headers, json={"body": "x"}), 400, "message_deleted")


# --------------------------------------------------------------------------- delete


async def test_delete_is_soft_takes_a_seq_and_hides_the_message(client: Any, users: Any, node: Any) -> None:
    room, owner, [bob] = await _room(client, users)
    kept = await send(client, bob, room["id"], "kept")
    doomed = await send(client, bob, room["id"], "doomed")
    assert (await room_of(client, owner, room["id"]))["unread_count"] == 2
    response = await client.delete(f"/api/rooms/{room['id']}/messages/{doomed['id']}", headers=bob.headers)
    assert response.status_code == 204 and await response.get_data() == b""
    assert (await outbox(node, room["id"]))[-1] == {"type": "message_deleted", "room": room["id"], "seq": 3,
                                                    "message_id": doomed["id"]}
    assert [m["id"] for m in (await history(client, owner, room["id"]))["items"]] == [kept["id"]]
    seen = await room_of(client, owner, room["id"])
    assert seen["last_message"]["id"] == kept["id"] and seen["unread_count"] == 1 and seen["last_seq"] == 3
    # Deleting it again succeeds and stores nothing.
    again = await client.delete(f"/api/rooms/{room['id']}/messages/{doomed['id']}", headers=bob.headers)
    assert again.status_code == 204 and len(await outbox(node, room["id"])) == 3
    # Deleting the only visible message leaves the room without a last message.
    await client.delete(f"/api/rooms/{room['id']}/messages/{kept['id']}", headers=bob.headers)
    assert (await room_of(client, owner, room["id"]))["last_message"] is None


async def test_who_may_delete(client: Any, users: Any) -> None:
    room, owner, [moderator, member, author] = await _room(client, users, 3)
    await client.post(f"/api/rooms/{room['id']}/members", headers=owner.headers,
                      json={"user_id": moderator.id, "room_role": "moderator"})
    messages = [await send(client, author, room["id"], f"m{i}") for i in range(3)]
    url = f"/api/rooms/{room['id']}/messages/" + "{}"
    await expect_error(await client.delete(url.format(messages[0]["id"]), headers=member.headers), 403, "forbidden")
    assert (await client.delete(url.format(messages[0]["id"]), headers=moderator.headers)).status_code == 204
    assert (await client.delete(url.format(messages[1]["id"]), headers=owner.headers)).status_code == 204
    assert (await client.delete(url.format(messages[2]["id"]), headers=author.headers)).status_code == 204
    await expect_error(await client.delete(url.format(999999), headers=owner.headers), 404, "not_found")


# --------------------------------------------------------------------------- history


async def test_history_pages(client: Any, users: Any) -> None:
    room, owner, _ = await _room(client, users)
    sent = [await send(client, owner, room["id"], f"m{i}") for i in range(7)]
    seqs = [m["seq"] for m in sent]
    newest = await history(client, owner, room["id"], limit=3)
    assert [m["seq"] for m in newest["items"]] == seqs[-3:] and newest["has_more"] is True
    older = await history(client, owner, room["id"], limit=3, before=seqs[-3])
    assert [m["seq"] for m in older["items"]] == seqs[1:4] and older["has_more"] is True
    oldest = await history(client, owner, room["id"], limit=3, before=seqs[1])
    assert [m["seq"] for m in oldest["items"]] == seqs[:1] and oldest["has_more"] is False
    newer = await history(client, owner, room["id"], limit=4, after=seqs[1])
    assert [m["seq"] for m in newer["items"]] == seqs[2:6] and newer["has_more"] is True
    rest = await history(client, owner, room["id"], limit=4, after=seqs[5])
    assert [m["seq"] for m in rest["items"]] == seqs[6:] and rest["has_more"] is False
    assert (await history(client, owner, room["id"], after=seqs[-1])) == {"items": [], "has_more": False}
    everything = await history(client, owner, room["id"])
    assert len(everything["items"]) == 7 and everything["has_more"] is False


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=ten", "before=-1", "after=x",
                                   "before=3&after=1", f"before={2**63}"])
async def test_history_rejects_bad_parameters(client: Any, users: Any, query: str) -> None:
    room, owner, _ = await _room(client, users)
    response = await client.get(f"/api/rooms/{room['id']}/messages?{query}", headers=owner.headers)
    await expect_error(response, 400, "validation_error")


async def test_history_accepts_the_limit_bounds(client: Any, users: Any) -> None:
    room, owner, _ = await _room(client, users)
    await send(client, owner, room["id"])
    assert len((await history(client, owner, room["id"], limit=1))["items"]) == 1
    assert len((await history(client, owner, room["id"], limit=200))["items"]) == 1


async def test_admins_read_any_room_of_their_tenant(client: Any, users: Any) -> None:
    room, owner, _ = await _room(client, users)
    await send(client, owner, room["id"], "moderate me")
    admin = await users.create("admin")
    assert [m["body"] for m in (await history(client, admin, room["id"]))["items"]] == ["moderate me"]


# --------------------------------------------------------------------------- read pointer


async def test_read_pointer_drives_unread_and_never_moves_backwards(client: Any, users: Any, node: Any) -> None:
    room, owner, [bob] = await _room(client, users)
    for i in range(5):
        await send(client, owner, room["id"], f"m{i}")
    url = f"/api/rooms/{room['id']}/read"
    assert (await room_of(client, bob, room["id"]))["unread_count"] == 5
    response = await client.post(url, headers=bob.headers, json={"seq": 3})
    assert response.status_code == 204
    assert (await room_of(client, bob, room["id"]))["unread_count"] == 2
    await client.post(url, headers=bob.headers, json={"seq": 1})
    assert await read_pointer(node, room["id"], bob.id) == 3
    await client.post(url, headers=bob.headers, json={"seq": 10**12})  # clamped to the room's last seq
    assert await read_pointer(node, room["id"], bob.id) == 5
    assert (await room_of(client, bob, room["id"]))["unread_count"] == 0
    await send(client, owner, room["id"], "new")
    assert (await room_of(client, bob, room["id"]))["unread_count"] == 1
    assert len(await outbox(node, room["id"])) == 6  # reading stores no room event


async def test_a_read_overtaken_by_a_concurrent_one_announces_no_pointer_below_the_stored_one(
        client: Any, users: Any, node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    room, owner, [bob] = await _room(client, users)
    for i in range(5):
        await send(client, owner, room["id"], f"m{i}")
    published: list[dict[str, Any]] = []
    real_publish = node.rooms.publish_transient

    async def record(room_id: int, event: dict[str, Any], **kwargs: Any) -> None:
        published.append(event)
        await real_publish(room_id, event, **kwargs)

    real_advance = messaging.advance_read_pointer

    def overtaken(session: Any, room_id: int, user_id: int, seq: int) -> tuple[int, bool]:
        # Bob's read of 4 commits after this one read his pointer (0) and before it moves it to 2.
        session.connection().execute(update(Membership).where(
            Membership.room_id == room_id, Membership.user_id == user_id).values(last_read_seq=4))
        return real_advance(session, room_id, user_id, seq)

    monkeypatch.setattr(node.rooms, "publish_transient", record)
    monkeypatch.setattr(messaging, "advance_read_pointer", overtaken)
    response = await client.post(f"/api/rooms/{room['id']}/read", headers=bob.headers, json={"seq": 2})
    assert response.status_code == 204
    assert await read_pointer(node, room["id"], bob.id) == 4
    assert published == []  # the pointer did not move to 2: nothing to announce, least of all 2


async def test_reads_committed_one_after_the_other_are_announced_in_that_order(
        client: Any, users: Any, node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    room, owner, [bob] = await _room(client, users)
    for i in range(5):
        await send(client, owner, room["id"], f"m{i}")
    published: list[int] = []
    first_publishing = trio.Event()
    real_publish = node.rooms.publish_transient

    async def slow_first(room_id: int, event: dict[str, Any], **kwargs: Any) -> None:
        if event["seq"] == 2:  # the read of 2 has committed; its announcement is slow to go out
            first_publishing.set()
            await trio.sleep(0.3)
        published.append(event["seq"])
        await real_publish(room_id, event, **kwargs)

    async def read(seq: int) -> None:
        response = await client.post(f"/api/rooms/{room['id']}/read", headers=bob.headers, json={"seq": seq})
        assert response.status_code == 204

    async def read_later(seq: int) -> None:
        await first_publishing.wait()
        await read(seq)

    monkeypatch.setattr(node.rooms, "publish_transient", slow_first)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read, 2)
        nursery.start_soon(read_later, 4)
    assert await read_pointer(node, room["id"], bob.id) == 4
    # Announced 4 then 2, subscribers would be left showing 2: a pointer below the stored one.
    assert published == [2, 4]


@pytest.mark.parametrize("payload", [{}, {"seq": -1}, {"seq": "3"}, {"seq": 1.0}, {"seq": None}, {"seq": 2**63}])
async def test_read_validation(client: Any, users: Any, payload: Any) -> None:
    room, owner, _ = await _room(client, users)
    response = await client.post(f"/api/rooms/{room['id']}/read", headers=owner.headers, json=payload)
    await expect_error(response, 400, "validation_error")


async def test_admins_do_not_have_read_pointers_in_rooms_they_are_not_in(client: Any, users: Any) -> None:
    room, _, _ = await _room(client, users)
    admin = await users.create("admin")
    response = await client.post(f"/api/rooms/{room['id']}/read", headers=admin.headers, json={"seq": 1})
    await expect_error(response, 403, "not_a_member")


async def test_an_oversized_request_is_too_large(client: Any, users: Any) -> None:
    room, owner, _ = await _room(client, users)
    response = await client.post(f"/api/rooms/{room['id']}/messages", headers=owner.headers,
                                 json={"body": "x" * (2 << 20)})
    await expect_error(response, 413, "too_large")
