"""A batch of sends stored at once (send_store.store_drafts): the same outcomes as draft by draft.

The batch path locks every room of the batch with one statement and writes each kind of
row with one; the draft-by-draft path (store_draft) is the committer's fallback. Whatever
a batch mixes (senders, rooms, refusals, client_ids given twice), each draft must get what
it would have got alone, in the order given, and the rows written must be the same.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import select

from roomcast.errors import ApiError
from roomcast.services import messaging, send_store
from roomcast.storage import driver_rows
from roomcast.storage.events import insert_outbox_rows
from roomcast.storage.messages import _MESSAGES_WITH_KEYS_SQLITE, insert_messages
from roomcast.storage.models import Message, OutboxEvent, Room
from roomcast.storage.rooms import (
    _MEMBERSHIPS_AMONG_SQLITE,
    insert_messages_with_events,
    lock_for_sends,
    pg_lock_for_sends,
)
from roomcast.storage.users import UserSnapshot, get_user
from roomcast.timestamps import utcnow
from roomcast.wire import encode_text, message_event, message_event_around_id
from tests.chat_helpers import make_group, send


async def _world(client: Any, users: Any, node: Any) -> tuple[list[UserSnapshot], list[int], int]:
    """Two members and an outsider (their snapshots), three rooms (the last inactive), and a
    message in the first room, sent by the first member with client_id "seen"."""
    alice, bob, outsider = [await users.create("member") for _ in range(3)]
    rooms = [(await make_group(client, alice, [bob], name=f"room {n}"))["id"] for n in range(3)]
    response = await client.patch(f"/api/rooms/{rooms[2]}", headers=alice.headers, json={"is_active": False})
    assert response.status_code == 200
    seen = await send(client, alice, rooms[0], "already here", client_id="seen")
    snapshots = [UserSnapshot.of(await node.database.read(get_user, user.id)) for user in (alice, bob, outsider)]
    return snapshots, rooms, seen["id"]


def _mixed_batch(node: Any, people: list[UserSnapshot], rooms: list[int], seen_id: int,
                 other_tenant_room: int) -> list[tuple[UserSnapshot, send_store.Draft]]:
    alice, bob, outsider = people
    first, second, inactive = rooms

    def draft(room: int, body: str, **fields: Any) -> send_store.Draft:
        return messaging.draft_message(node, alice, room, body, **fields)

    return [
        (alice, draft(second, "b1")),
        (bob, draft(first, "a1", client_id="twice")),
        (outsider, draft(first, "not a member")),
        (alice, draft(first, "a2", reply_to=seen_id)),
        (bob, draft(first, "a1 again", client_id="twice")),  # the second of one client_id: the first back
        (alice, draft(first, "again", client_id="seen")),  # stored before: the original back
        (alice, draft(inactive, "inactive")),
        (alice, draft(987654, "no such room")),
        (alice, draft(other_tenant_room, "elsewhere")),
        (bob, draft(second, "bad reply", reply_to=987654)),
        (alice, draft(first, "attachment", attachments=[987654])),
        (bob, draft(second, "b2", client_id="twice")),  # another room: a client_id of its own
        (alice, draft(first, "a3")),
    ]


def _summary(outcome: Any) -> Any:
    """What a caller sees of an outcome, without ids (the two worlds number rows apart)."""
    if isinstance(outcome, ApiError):
        return ("refused", outcome.code, outcome.details)
    view, row = outcome
    return ("message", view["body"], view["seq"], view["client_id"], view["reply_to"] is not None,
            row is not None and (row.seq, view["seq"]))


async def _stored(node: Any, rooms: list[int]) -> list[Any]:
    def rows(session: Any) -> list[Any]:
        messages = session.execute(select(Message.room_id, Message.seq, Message.body, Message.client_id)
                                   .where(Message.room_id.in_(rooms)).order_by(Message.room_id, Message.seq)).all()
        events = session.execute(select(OutboxEvent.room_id, OutboxEvent.seq, OutboxEvent.type)
                                 .where(OutboxEvent.room_id.in_(rooms))
                                 .order_by(OutboxEvent.room_id, OutboxEvent.seq)).all()
        index = {room: n for n, room in enumerate(rooms)}  # rooms by position: their ids differ
        return [(index[m[0]], *m[1:]) for m in messages] + [(index[e[0]], *e[1:]) for e in events]

    return await node.database.read(rows)


async def test_a_mixed_batch_gets_what_each_draft_gets_alone(client: Any, users: Any, node: Any) -> None:
    elsewhere = await users.create("member", tenant="other")
    other_room = (await make_group(client, elsewhere))["id"]
    world_a = await _world(client, users, node)
    world_b = await _world(client, users, node)

    batch = _mixed_batch(node, *world_a, other_room)
    together = await node.database.write(lambda session: send_store.store_drafts(node, session, batch))

    one_by_one: list[Any] = []
    for sender, draft in _mixed_batch(node, *world_b, other_room):
        def alone(session: Any, sender: UserSnapshot = sender, draft: send_store.Draft = draft) -> Any:
            try:
                return send_store.store_draft(node, session, sender, draft)
            except ApiError as exc:
                return exc
        one_by_one.append(await node.database.write(alone))

    assert [_summary(o) for o in together] == [_summary(o) for o in one_by_one]
    assert await _stored(node, world_a[1]) == await _stored(node, world_b[1])
    codes = [o.code if isinstance(o, ApiError) else None for o in together]
    assert codes == [None, None, "not_a_member", None, None, None, "room_inactive", "not_found", "not_found",
                     "validation_error", "validation_error", None, None]
    # Each room's seqs in the order given, none taken by a refusal or a repeat.
    first_room = [o[0]["seq"] for o in together if not isinstance(o, ApiError) and o[1] is not None
                  and o[0]["room_id"] == world_a[1][0]]
    assert first_room == [2, 3, 4]
    assert together[4][0] == together[1][0] and together[4][1] is None  # the repeat: the first one back
    assert together[5][0]["body"] == "already here" and together[5][1] is None


async def test_a_batch_rows_match_what_it_hands_the_relay(client: Any, users: Any, node: Any) -> None:
    people, rooms, _ = await _world(client, users, node)
    alice, bob, _ = people
    batch = [(sender, messaging.draft_message(node, sender, room, f"{n}"))
             for n in range(40) for sender, room in ((alice, rooms[1]), (bob, rooms[0]))]
    outcomes = await node.database.write(lambda session: send_store.store_drafts(node, session, batch))
    appends = [row for _, row in outcomes]

    def payloads(session: Any) -> dict[tuple[int, int], str]:
        found = session.execute(select(OutboxEvent.room_id, OutboxEvent.seq, OutboxEvent.payload)
                                .where(OutboxEvent.room_id.in_(rooms[:2])))
        return {(room, seq): payload for room, seq, payload in found}

    stored = await node.database.read(payloads)
    handed = {(a.room_id, a.seq): a.data.decode() for a in appends}
    assert handed == {key: payload for key, payload in stored.items() if key != (rooms[0], 1)}  # the one before
    assert [a.seq for a in appends if a.room_id == rooms[1]] == list(range(1, 41))
    assert [a.seq for a in appends if a.room_id == rooms[0]] == list(range(2, 42))
    ids = [view["id"] for view, _ in outcomes]
    assert len(set(ids)) == len(ids)
    by_id = await node.database.read(lambda s: {m.id: (m.room_id, m.seq, m.body)
                                                for m in s.scalars(select(Message).where(Message.id.in_(ids)))})
    assert all(by_id[view["id"]] == (view["room_id"], view["seq"], view["body"]) for view, _ in outcomes)


async def test_a_batch_that_breaks_is_stored_draft_by_draft(
        client: Any, users: Any, node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    people, rooms, _ = await _world(client, users, node)
    alice = people[0]
    calls: list[int] = []
    real_store_drafts = send_store.store_drafts

    def store_drafts_that_break(node: Any, session: Any, entries: Any) -> Any:
        calls.append(len(entries))
        real_store_drafts(node, session, entries)
        raise RuntimeError("a bug after the batch's writes")

    monkeypatch.setattr(messaging.committer(node), "store_many", store_drafts_that_break)
    drafts = [messaging.draft_message(node, alice, rooms[n % 2], f"m{n}") for n in range(6)]
    outcomes = await messaging.send_drafts(node, alice, drafts)
    assert calls == [6]
    assert all(not isinstance(o, Exception) and o[1] for o in outcomes), outcomes
    # The broken batch's writes were rolled back: each draft is stored once, by the slow path.
    assert [o[0]["seq"] for o in outcomes] == [2, 1, 3, 2, 4, 3]
    assert [row[:3] for row in await _stored(node, rooms[:2]) if len(row) == 4] == [
        (0, 1, "already here"), (0, 2, "m0"), (0, 3, "m2"), (0, 4, "m4"), (1, 1, "m1"), (1, 2, "m3"), (1, 3, "m5")]


async def test_the_drivers_errors_come_out_as_sqlalchemys(client: Any, users: Any, node: Any) -> None:
    """The batch's rows go through the driver's cursor; its errors are classified like any other statement's."""
    people, rooms, _ = await _world(client, users, node)
    with pytest.raises(sa_exc.IntegrityError):  # seq 1 of the room is taken
        await node.database.write(
            lambda session: insert_outbox_rows(session, [(rooms[0], 1, "message", "{}")], utcnow()))
    with pytest.raises(sa_exc.IntegrityError):
        await node.database.write(lambda session: insert_messages(session, [
            {"room_id": rooms[0], "seq": 1, "sender_id": people[0].id, "body": "again", "reply_to_id": None,
             "client_id": None, "created_at": utcnow()}]))


async def test_messages_inserted_with_their_rooms_moved_on_and_a_room_moved_meanwhile_fails_the_batch(
        client: Any, users: Any, node: Any) -> None:
    """PostgreSQL: one statement inserts the messages, moves the rooms on and writes the outbox rows;
    SQLite: three. Either way the ids come back in the rows' order, each room points at its last new
    message, each outbox row is its event with the id drawn, and a room that is not at the seq it
    was read at fails the whole batch (nothing written)."""
    people, rooms, _ = await _world(client, users, node)
    first, second = rooms[:2]

    def row(room: int, seq: int, body: str) -> dict[str, Any]:
        return {"room_id": room, "seq": seq, "sender_id": people[0].id, "body": body, "reply_to_id": None,
                "client_id": None, "created_at": utcnow()}

    def events(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [message_event_around_id(r["room_id"], r["seq"], {"id": 0, "body": r["body"]}) for r in rows]

    rows = [row(second, 1, "b1"), row(first, 2, "a2"), row(second, 2, "b2"), row(first, 3, "a3")]
    ids, appended = await node.database.write(lambda session: insert_messages_with_events(
        session, rows, [(first, 1, 3), (second, 0, 2)], events(rows), utcnow()))
    assert len(set(ids)) == 4
    stored = await node.database.read(lambda session: {
        m.id: (m.room_id, m.seq, m.body) for m in session.scalars(select(Message).where(Message.id.in_(ids)))})
    assert [stored[message_id] for message_id in ids] == [(r["room_id"], r["seq"], r["body"]) for r in rows]
    moved = await node.database.read(lambda session: {
        room.id: (room.last_seq, room.last_message_id) for room in session.scalars(select(Room))})
    assert (moved[first], moved[second]) == ((3, ids[3]), (2, ids[2]))
    expected = [encode_text(message_event(r["room_id"], r["seq"], {"id": message_id, "body": r["body"]}))
                for r, message_id in zip(rows, ids, strict=True)]
    assert [(a.room_id, a.seq, a.data.decode()) for a in appended] == [
        (r["room_id"], r["seq"], payload) for r, payload in zip(rows, expected, strict=True)]
    outbox = await node.database.read(lambda session: {
        (e.room_id, e.seq): (e.type, e.payload) for e in session.scalars(select(OutboxEvent))})
    assert [outbox[(r["room_id"], r["seq"])] for r in rows] == [("message", payload) for payload in expected]

    later = [row(second, 3, "b3"), row(first, 4, "a4")]
    with pytest.raises(RuntimeError, match="no longer at the seq"):  # the first room is at 3, not 1
        await node.database.write(lambda session: insert_messages_with_events(
            session, later, [(first, 1, 4), (second, 2, 3)], events(later), utcnow()))
    assert await node.database.read(
        lambda session: session.scalars(select(Message.id).where(Message.body.in_(["a4", "b3"]))).all()) == []
    assert await node.database.read(lambda session: session.scalars(select(OutboxEvent.seq).where(
        OutboxEvent.room_id == second, OutboxEvent.seq == 3)).all()) == []


async def test_client_ids_used_are_found_in_their_own_rooms_only(client: Any, users: Any, node: Any) -> None:
    """`lock_for_sends` asks about (room, sender, client_id) keys: a client_id a sender used in
    one room is no repeat in another, whatever else the batch asks about (on PostgreSQL each
    room looks up only its own keys, not every key of the batch)."""
    alice, bob = await users.create("member"), await users.create("member")
    rooms = [(await make_group(client, alice, [bob], name=f"room {n}"))["id"] for n in range(5)]
    for room in rooms[1::2]:
        await send(client, alice, room, "first", client_id="x")
    await send(client, bob, rooms[0], "bob's", client_id="x")
    keys = {(room, sender.id, client_id) for room in rooms for sender in (alice, bob) for client_id in ("x", "y")}
    pairs = {(room, sender.id) for room in rooms for sender in (alice, bob)}

    locked = await node.database.write(lambda session: lock_for_sends(session, pairs, keys))
    assert locked.used_client_ids == {(rooms[1], alice.id, "x"), (rooms[3], alice.id, "x"), (rooms[0], bob.id, "x")}
    assert set(locked.rooms) == set(rooms) and locked.members == pairs


async def test_memberships_are_those_of_the_pairs_asked_about(client: Any, users: Any, node: Any) -> None:
    """A sender who is a member of one room of the batch is no member of another for it, and a room
    with no member among its senders is locked all the same."""
    alice, bob, carol = [await users.create("member") for _ in range(3)]
    shared = (await make_group(client, alice, [bob, carol], name="shared"))["id"]
    alices = (await make_group(client, alice, [bob], name="alice's"))["id"]
    nobody = (await make_group(client, alice, [], name="nobody's"))["id"]
    pairs = {(shared, carol.id), (alices, carol.id), (alices, bob.id), (nobody, bob.id), (nobody, carol.id)}

    locked = await node.database.write(lambda session: lock_for_sends(session, pairs, set()))
    assert locked.members == {(shared, carol.id), (alices, bob.id)}
    assert set(locked.rooms) == {shared, alices, nobody} and locked.used_client_ids == set()


@pytest.mark.parametrize("db_backend", ["postgresql"])
async def test_postgresql_looks_each_pair_and_key_up_in_its_index(client: Any, users: Any, node: Any) -> None:
    """Each (room, user) pair and (room, sender, client_id) key is one lookup in its unique index,
    whatever the planner's statistics say of the tables: never a scan of every message or membership,
    nor every key read again for every room (what made a batch of 100 rooms cost most of its lock)."""
    alice, bob = await users.create("member"), await users.create("member")
    rooms = [(await make_group(client, alice, [bob], name=f"room {n}"))["id"] for n in range(3)]
    pairs = {(room, sender.id) for room in rooms for sender in (alice, bob)}
    keys = {(room, alice.id, f"c{n}") for room in rooms for n in range(20)}
    statement, params = pg_lock_for_sends(pairs, keys)

    def plan(session: Any) -> str:
        rows, _ = driver_rows.pg_execute(session, "EXPLAIN " + statement, params)
        return "\n".join(str(row[0]) for row in rows)

    steps = await node.database.write(plan)
    assert "Seq Scan on messages" not in steps and "Seq Scan on memberships" not in steps, steps
    assert "using uq_messages_room_id_sender_id_client_id on messages" in steps, steps
    assert "using pk_memberships on memberships" in steps, steps
    assert steps.count("Function Scan on key") == 1, steps  # read once, not once per room


@pytest.mark.parametrize("db_backend", ["sqlite"])
@pytest.mark.parametrize("statement, width", [(_MESSAGES_WITH_KEYS_SQLITE.format(rows="(?, ?, ?), (?, ?, ?)"), 3),
                                              (_MEMBERSHIPS_AMONG_SQLITE.format(pairs="(?, ?), (?, ?)"), 2)],
                         ids=["client_ids", "memberships"])
async def test_sqlite_looks_keys_up_in_the_index_never_scanning_the_table(node: Any, statement: str,
                                                                          width: int) -> None:
    """A batch's keys are searched in the index one by one: SQLite would scan the whole table (every
    message of every room) for a row value IN list, so a batch would cost more the more was stored."""

    def plan(session: Any) -> list[str]:
        rows = session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", tuple([1] * (2 * width)))
        return [row[-1] for row in rows]

    steps = await node.database.read(plan)
    table = "messages" if width == 3 else "memberships"
    assert any(step.startswith(f"SEARCH {table} USING") for step in steps), steps
    assert not any(step.startswith(f"SCAN {table}") for step in steps), steps
