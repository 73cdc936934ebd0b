"""Room events in storage: seqs, outbox rows and the unique-key races, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import inspect, select

from roomcast.errors import ApiError
from roomcast.services import messaging, send_store
from roomcast.storage.events import append_event, take_next_seq
from roomcast.storage.models import Message, OutboxEvent, Room
from roomcast.storage.rooms import (
    SendTarget,
    direct_key,
    find_direct_room,
    insert_room,
    lock_room_for_send,
    record_room_message,
)
from roomcast.storage.users import create_user, get_user
from roomcast.timestamps import utcnow
from roomcast.wire import encode, encode_text
from tests.chat_helpers import curse, make_group, outbox, room_of, send


def _room(tenant: str = "default", key: str | None = None) -> Room:
    now = utcnow()
    return Room(tenant=tenant, kind="direct" if key else "group", name="", topic="", is_active=True,
                direct_key=key, last_seq=0, created_at=now, updated_at=now, last_activity_at=now)


async def test_next_seq_and_outbox_row_in_one_transaction(node: Any) -> None:
    def work(session: Any) -> tuple[int, list[int]]:
        room = insert_room(session, _room(), {})
        assert room is not None
        seqs = []
        for _ in range(3):
            seq = take_next_seq(session, room.id)
            append_event(session, {"type": "room_updated", "room": room.id, "seq": seq, "changes": {"topic": "é"}})
            seqs.append(seq)
        return room.id, seqs

    room_id, seqs = await node.database.write(work)
    assert seqs == [1, 2, 3]
    rows = await node.database.read(lambda s: s.scalars(select(OutboxEvent).order_by(OutboxEvent.seq)).all())
    assert [(r.room_id, r.seq, r.type, r.published_at) for r in rows] == [
        (room_id, seq, "room_updated", None) for seq in seqs]
    assert rows[0].payload == f'{{"type":"room_updated","room":{room_id},"seq":1,"changes":{{"topic":"é"}}}}'
    assert (await node.database.read(lambda s: s.get(Room, room_id))).last_seq == 3


async def test_a_failed_transaction_takes_no_seq(node: Any) -> None:
    room_id = await node.database.write(lambda s: insert_room(s, _room(), {}).id)  # type: ignore[union-attr]

    def fail(session: Any) -> None:
        take_next_seq(session, room_id)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await node.database.write(fail)
    assert await node.database.write(take_next_seq, room_id) == 1


async def test_append_event_returns_the_row_as_the_relay_publishes_it(node: Any) -> None:
    room_id = await node.database.write(lambda s: insert_room(s, _room(), {}).id)  # type: ignore[union-attr]
    event = {"type": "room_updated", "room": room_id, "seq": 1, "changes": {"topic": "é"}}
    appended = await node.database.write(append_event, event)
    assert (appended.room_id, appended.seq, appended.data) == (room_id, 1, encode(event))
    assert (await outbox(node, room_id))[0]["changes"] == {"topic": "é"}


async def test_a_message_moves_the_room_on_only_from_the_seq_before_it(node: Any) -> None:
    room_id = await node.database.write(lambda s: insert_room(s, _room(), {}).id)  # type: ignore[union-attr]

    def record(session: Any, seq: int) -> None:
        record_room_message(session, room_id, seq, message_id=1, at=utcnow())

    await node.database.write(record, 1)
    with pytest.raises(RuntimeError, match="no longer at seq 2"):
        await node.database.write(record, 3)  # seq 2 skipped: refused, not a gap
    room = await node.database.read(lambda s: s.get(Room, room_id))
    assert (room.last_seq, room.last_message_id) == (1, 1)


async def test_the_send_lock_reads_membership_and_tenant(node: Any) -> None:
    alice = await node.database.write(lambda s: create_user(s, tenant="default", username="alice", role="member"))
    room_id = await node.database.write(lambda s: insert_room(s, _room(), {alice.id: "member"}).id)  # type: ignore[union-attr]

    def lock(session: Any, tenant: str, user_id: int) -> SendTarget | None:
        return lock_room_for_send(session, tenant, room_id, user_id)

    assert await node.database.write(lock, "default", alice.id) == SendTarget(room_id, True, 0, True)
    assert await node.database.write(lock, "default", alice.id + 1) == SendTarget(room_id, True, 0, False)
    assert await node.database.write(lock, "other", alice.id) is None


def test_events_are_compact_utf8_json() -> None:
    event = {"type": "message", "room": 1, "seq": 2, "message": {"body": "Привет 👋\n"}}
    assert encode_text(event) == '{"type":"message","room":1,"seq":2,"message":{"body":"Привет 👋\\n"}}'
    assert json.loads(encode_text(event)) == event


async def test_insert_room_yields_to_an_existing_unique_key(node: Any) -> None:
    key = direct_key(7, 3)
    assert key == "3:7"

    def work(session: Any) -> tuple[int, Room | None, int]:
        first = insert_room(session, _room(key=key), {})
        assert first is not None
        second = insert_room(session, _room(key=key), {})
        # The transaction is still usable: the savepoint undid only the failed insert.
        found = find_direct_room(session, "default", key)
        assert found is not None
        return first.id, second, found.id

    first_id, second, found_id = await node.database.write(work)
    assert second is None and found_id == first_id
    # Other tenants have their own keys.
    assert await node.database.write(lambda s: insert_room(s, _room(tenant="t2", key=key), {}) is not None)


async def test_a_lost_client_id_race_returns_the_original_and_takes_no_seq(
        client: Any, users: Any, node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    owner = await users.create("member")
    room = await make_group(client, owner)
    original = await send(client, owner, room["id"], "first try", client_id="dup")
    # As if a concurrent retry committed between our look-up and our insert: the batch's look-up
    # misses, its insert hits the unique constraint and fails the transaction; the committer
    # then stores draft by draft, where the look-up misses once more, the insert fails again,
    # and the savepoint cleans up.
    real_lookup = send_store.find_by_client_id
    lookups = 0

    def lookup_that_misses_once(*args: Any) -> Message | None:
        nonlocal lookups
        lookups += 1
        return None if lookups == 1 else real_lookup(*args)

    monkeypatch.setattr(send_store, "find_by_client_ids", lambda session, keys: {})
    monkeypatch.setattr(send_store, "find_by_client_id", lookup_that_misses_once)
    user = await node.database.read(get_user, owner.id)
    message, created = await messaging.send_message(node, user, room["id"], "second try", client_id="dup")
    assert (message, created) == (original, False)
    assert (await room_of(client, owner, room["id"]))["last_seq"] == 1
    assert [e["seq"] for e in await outbox(node, room["id"])] == [1]
    bodies = await node.database.read(lambda s: s.scalars(select(Message.body)).all())
    assert bodies == ["first try"] and lookups == 2


async def test_every_kind_of_room_event_takes_the_next_seq(client: Any, users: Any, node: Any) -> None:
    owner, bob, carol = [await users.create("member") for _ in range(3)]
    room = await make_group(client, owner, [bob])
    rid = room["id"]
    message = await send(client, bob, rid, "hello")
    await client.patch(f"/api/rooms/{rid}/messages/{message['id']}", headers=bob.headers, json={"body": "edited"})
    await client.patch(f"/api/rooms/{rid}", headers=owner.headers, json={"topic": "t"})
    await client.post(f"/api/rooms/{rid}/members", headers=owner.headers, json={"user_id": carol.id})
    await client.delete(f"/api/rooms/{rid}/messages/{message['id']}", headers=owner.headers)
    await client.delete(f"/api/rooms/{rid}/members/{carol.id}", headers=carol.headers)
    events = await outbox(node, rid)
    assert [(e["seq"], e["type"]) for e in events] == [
        (1, "message"), (2, "message_edited"), (3, "room_updated"), (4, "room_updated"), (5, "message_deleted"),
        (6, "room_updated")]
    assert events[1]["message"]["seq"] == 1 and events[1]["message"]["body"] == "edited"
    assert events[4]["message_id"] == message["id"]
    assert (await room_of(client, owner, rid))["last_seq"] == 6


async def test_replies_are_indexed_so_deleting_a_room_stays_linear(node: Any) -> None:
    def indexed_columns(session: Any) -> list[list[str]]:
        return [index["column_names"] for index in inspect(session.connection()).get_indexes("messages")]

    assert ["reply_to_id"] in await node.database.read(indexed_columns)


async def test_drafts_sent_together_commit_once_in_order_and_a_refused_one_leaves_the_rest(
        client: Any, users: Any, node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    owner = await users.create("member")
    room = await make_group(client, owner)
    earlier = await send(client, owner, room["id"], "earlier", client_id="seen")
    user = await node.database.read(get_user, owner.id)
    drafts = [messaging.draft_message(node, user, room["id"], "one"),
              messaging.draft_message(node, user, room["id"], "replying to nothing", reply_to=987654),
              messaging.draft_message(node, user, room["id"], "earlier", client_id="seen"),
              messaging.draft_message(node, user, room["id"], "two", client_id="fresh")]
    committer = messaging.committer(node)
    transactions = committer.transactions
    outcomes = await messaging.send_drafts(node, user, drafts)
    assert committer.transactions == transactions + 1
    first, refused, repeated, second = outcomes
    assert isinstance(refused, ApiError) and refused.details == {"field": "reply_to"}
    assert repeated == (earlier, None)  # the original, not stored again
    assert (first[0]["seq"], second[0]["seq"]) == (2, 3)
    assert first[1] is not None and json.loads(first[1])["message"] == first[0]  # the event as stored
    assert second[1] is not None and json.loads(second[1])["message"] == second[0]
    assert [e["seq"] for e in await outbox(node, room["id"])] == [1, 2, 3]  # the refused one took no seq
    assert (await room_of(client, owner, room["id"]))["last_seq"] == 3


async def test_a_draft_that_fails_unexpectedly_fails_alone_and_a_failed_transaction_fails_each(
        client: Any, users: Any, node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    owner = await users.create("member")
    room = await make_group(client, owner)
    user = await node.database.read(get_user, owner.id)
    curse(monkeypatch, error="refused by the database")
    drafts = [messaging.draft_message(node, user, room["id"], body, client_id=f"c-{body}")
              for body in ("one", "cursed", "two")]
    first, failed, second = await messaging.send_drafts(node, user, drafts)
    assert isinstance(failed, RuntimeError)
    assert (first[0]["body"], second[0]["body"]) == ("one", "two")
    assert first[1] is not None and second[1] is not None
    assert [e["seq"] for e in await outbox(node, room["id"])] == [1, 2]  # the failed one took no seq
    [alone] = await messaging.send_drafts(node, user, drafts[1:2])
    assert isinstance(alone, RuntimeError)

    async def broken_write(work: Any, *args: Any) -> Any:
        raise ConnectionError("the database is gone")

    monkeypatch.setattr(node.database, "write", broken_write)
    outcomes = await messaging.send_drafts(node, user, drafts)
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes), outcomes
    monkeypatch.undo()
    [after] = await messaging.send_drafts(node, user, [messaging.draft_message(node, user, room["id"], "after")])
    assert not isinstance(after, Exception) and after[0]["seq"] == 3  # the committer goes on


async def test_drafts_of_several_rooms_commit_together(client: Any, users: Any, node: Any) -> None:
    owner = await users.create("member")
    first, second = await make_group(client, owner), await make_group(client, owner)
    user = await node.database.read(get_user, owner.id)
    committer = messaging.committer(node)
    transactions = committer.transactions
    outcomes = await messaging.send_drafts(node, user, [
        messaging.draft_message(node, user, second["id"], "b1"), messaging.draft_message(node, user, first["id"], "a1"),
        messaging.draft_message(node, user, second["id"], "b2")])
    assert committer.transactions == transactions + 1
    assert [(o[0]["room_id"], o[0]["seq"], o[0]["body"]) for o in outcomes if not isinstance(o, Exception)] == [
        (second["id"], 1, "b1"), (first["id"], 1, "a1"), (second["id"], 2, "b2")]
