"""Presence folded per window in the room actor: one event per subscriber per window, in its shape.

On MockClock (autojump): the window is virtual time, so "within one window" is exact.
Records are published as services/presence_announcer.py publishes them, through the node's stream.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing
from sqlalchemy.orm import Session

from roomcast.actors.presence_fold import PresenceFold
from roomcast.node import Node
from roomcast.services.presence_announcer import announce
from roomcast.storage.models import User
from roomcast.storage.users import UserSnapshot
from roomcast.wire import encode

from .helpers import Recorder, count_appends, create_rooms

LEGACY_KEYS = {"type", "room", "user", "status", "online", "online_count"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"presence_window_s": 0.1, "presence_diff_limit": 100}


def badge(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "username": f"u{user_id}", "display_name": f"User {user_id}"}


def record(room: int, user_id: int, status: str, online: list[int]) -> dict[str, Any]:
    """A presence record of one change, as services/presence_announcer.py publishes it."""
    return {"type": "presence", "room": room, "user": badge(user_id), "status": status,
            "online": [badge(u) for u in sorted(online)[:50]], "online_count": len(online),
            "present": user_id in online}


async def subscribed_pair(node: Node) -> tuple[int, Recorder, Recorder]:
    [room] = await create_rooms(node)
    diff, legacy = Recorder(), Recorder()
    await node.rooms.subscribe(room, diff, presence_diff=True)
    await node.rooms.subscribe(room, legacy)
    return room, diff, legacy


async def joins(node: Node, room: int, user_ids: list[int], online: list[int]) -> None:
    for user_id in user_ids:
        online.append(user_id)
        await node.rooms.publish_transient(room, record(room, user_id, "joined", online))


async def test_fifty_joins_within_a_window_are_one_event_per_subscriber(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    room, diff, legacy = await subscribed_pair(node)
    online: list[int] = []
    await joins(node, room, list(range(1, 51)), online)
    await trio.sleep(0.05)
    assert diff.items == legacy.items == []  # the window is still open
    await diff.wait_for(1)
    await legacy.wait_for(1)
    await trio.sleep(1)  # nothing else follows
    [event] = diff.events
    assert event == {"type": "presence_diff", "room": room, "joins": [badge(u) for u in range(1, 51)], "leaves": [],
                     "joins_truncated": 0, "leaves_truncated": 0, "online_count": 50}
    # The PROTOCOL §5 event, exactly: the last change, with the newest online list.
    [old] = legacy.events
    assert set(old) == LEGACY_KEYS
    assert old["user"] == badge(50) and old["status"] == "joined" and old["online_count"] == 50
    assert [u["id"] for u in old["online"]] == list(range(1, 51))


async def test_leaves_and_the_next_window(autojump_clock: trio.testing.MockClock, node: Node) -> None:
    room, diff, legacy = await subscribed_pair(node)
    online: list[int] = []
    await joins(node, room, [1, 2, 3, 4], online)
    await diff.wait_for(1)
    for user_id in (2, 3):
        online.remove(user_id)
        await node.rooms.publish_transient(room, record(room, user_id, "left", online))
    await diff.wait_for(2)
    await legacy.wait_for(2)
    assert diff.events[1] == {"type": "presence_diff", "room": room, "joins": [], "leaves": [badge(2), badge(3)],
                              "joins_truncated": 0, "leaves_truncated": 0, "online_count": 2}
    assert legacy.events[1]["status"] == "left" and legacy.events[1]["user"] == badge(3)
    assert [u["id"] for u in legacy.events[1]["online"]] == [1, 4]


async def test_a_join_and_leave_within_one_window_is_listed_once_as_where_it_ended(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    room, diff, _ = await subscribed_pair(node)
    online = [1]
    await node.rooms.publish_transient(room, record(room, 1, "joined", online))
    await diff.wait_for(1)
    online.append(2)
    await node.rooms.publish_transient(room, record(room, 2, "joined", online))  # joined and left: leaves only
    online.remove(2)
    await node.rooms.publish_transient(room, record(room, 2, "left", online))
    online.remove(1)
    await node.rooms.publish_transient(room, record(room, 1, "left", online))  # left and came back: joins only
    online.append(1)
    await node.rooms.publish_transient(room, record(room, 1, "joined", online))
    await diff.wait_for(2)
    assert diff.events[1] == {"type": "presence_diff", "room": room, "joins": [badge(1)], "leaves": [badge(2)],
                              "joins_truncated": 0, "leaves_truncated": 0, "online_count": 1}


async def test_a_user_whose_other_session_stays_is_not_a_leave(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    room, diff, legacy = await subscribed_pair(node)
    await node.rooms.publish_transient(room, record(room, 1, "joined", [1]))
    await diff.wait_for(1)
    await node.rooms.publish_transient(room, record(room, 1, "left", [1]))  # one of two sessions left
    await diff.wait_for(2)
    await legacy.wait_for(2)
    assert diff.events[1]["joins"] == [badge(1)] and diff.events[1]["leaves"] == []
    assert legacy.events[1]["status"] == "left"  # the PROTOCOL §5 event says what happened, as before


@pytest.mark.parametrize("settings_overrides", [{"presence_diff_limit": 10}])
async def test_the_listed_users_are_capped_and_the_rest_counted(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    room, diff, _ = await subscribed_pair(node)
    online: list[int] = []
    await joins(node, room, list(range(1, 31)), online)
    await diff.wait_for(1)
    [event] = diff.events
    assert event["joins"] == [badge(u) for u in range(1, 11)] and event["joins_truncated"] == 20
    assert event["online_count"] == 30 and len(encode(event)) < 1500


async def test_other_transient_events_are_not_held_by_the_window(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    room, diff, _ = await subscribed_pair(node)
    await node.rooms.publish_transient(room, record(room, 1, "joined", [1]))
    start = trio.current_time()
    await node.rooms.publish_transient(room, {"type": "typing", "room": room, "user": badge(1), "state": True})
    await diff.wait_for(1)
    assert diff.events[0]["type"] == "typing" and trio.current_time() - start < 0.1
    await diff.wait_for(2)
    assert diff.events[1]["type"] == "presence_diff"


def test_the_fold_refuses_what_it_cannot_read() -> None:
    fold = PresenceFold(1, 5)
    for data in (b'{"type":"presence",', b'{"type":"presence","user":{"id":"x"},"status":"joined"}',
                 b'{"type":"presence","user":{"id":1},"status":"maybe","online":[]}', b'{"type":"presence"}'):
        assert not fold.add(data)
    assert not fold
    assert fold.add(json.dumps({"type": "presence", "user": badge(1), "status": "joined", "online": []}).encode())
    legacy_event, diff_event = fold.take(legacy=True, diff=True)
    assert legacy_event is not None and diff_event is not None
    assert json.loads(diff_event)["joins"] == [badge(1)]  # an older node's record: the status says it
    assert not fold


def test_records_that_arrive_out_of_order_are_ordered_by_when_they_were_made() -> None:
    fold = PresenceFold(1, 5)

    def add(user_id: int, status: str, count: int, at: float) -> None:
        event = {"type": "presence", "room": 1, "user": badge(user_id), "status": status, "online": [],
                 "online_count": count, "present": status == "joined", "at": at}
        assert fold.add(encode(event))

    add(2, "joined", 2, at=10.0)
    add(1, "joined", 1, at=9.0)  # published late: its count is older
    add(2, "joined", 2, at=11.0)
    add(2, "left", 1, at=10.5)  # older than 2's newest change: 2 stays joined
    legacy_event, diff_event = fold.take(legacy=True, diff=True)
    assert legacy_event is not None and diff_event is not None
    diff = json.loads(diff_event)
    assert diff["joins"] == [badge(1), badge(2)] and diff["online_count"] == 2
    old = json.loads(legacy_event)
    assert set(old) == LEGACY_KEYS and old["user"] == badge(2) and old["status"] == "joined"
    add(3, "joined", 1, at=10.8)  # next window, but older than the count already sent
    assert json.loads(fold.take(legacy=False, diff=True)[1] or b"")["online_count"] == 2


def test_a_record_of_several_changes_folds_each_and_reads_as_its_newest() -> None:
    """What services/presence_announcer.py publishes for changes announced together."""
    fold = PresenceFold(1, 5)
    record = {"type": "presence", "room": 1, "user": badge(3), "status": "joined", "online": [badge(1), badge(3)],
              "online_count": 2, "present": True, "at": 12.0,
              "changes": [[badge(1), True, 10.0], [badge(2), True, 11.0], [badge(2), False, 11.5],
                          [badge(3), True, 12.0], ["not a change"], [{"id": "x"}, True, 1.0]]}
    assert fold.add(encode(record))
    legacy_event, diff_event = fold.take(legacy=True, diff=True)
    assert legacy_event is not None and diff_event is not None
    diff = json.loads(diff_event)
    assert diff["joins"] == [badge(1), badge(3)] and diff["leaves"] == [badge(2)] and diff["online_count"] == 2
    old = json.loads(legacy_event)  # the PROTOCOL §5 event of the newest change, nothing more
    assert set(old) == LEGACY_KEYS and old["user"] == badge(3) and old["status"] == "joined"


async def test_changes_announced_together_are_one_record_per_room_and_every_one_is_folded(
        autojump_clock: trio.testing.MockClock, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """services/presence_announcer.py: a burst of joins and leaves of two rooms, one record per room;
    a leave's snapshot is read once for its room, with the users' badges from the database."""
    room, diff, legacy = await subscribed_pair(node)
    [other] = await create_rooms(node)
    other_diff = Recorder()
    await node.rooms.subscribe(other, other_diff, presence_diff=True)

    def add_users(session: Session) -> list[UserSnapshot]:
        users = [User(tenant="default", username=f"p{n}", display_name=f"P {n}", role="member",
                      password_hash="x") for n in range(4)]
        session.add_all(users)
        session.flush()
        return [UserSnapshot.of(user) for user in users]

    users = await node.database.write(add_users)
    ids = [user.id for user in users]
    appended = count_appends(node, monkeypatch)
    snapshot = {"online": [], "online_count": 3}  # as a join's batch read it

    async def join(user: UserSnapshot, at: float) -> None:
        await announce(node, room, user, "joined", ids[:3], snapshot=snapshot, at=at)

    async def leave(room_id: int, user: UserSnapshot, online: list[int], at: float) -> None:
        await announce(node, room_id, user, "left", online, at=at)

    async with trio.open_nursery() as nursery:
        for n, user in enumerate(users[:3]):
            nursery.start_soon(join, user, 100.0 + n)
        nursery.start_soon(leave, room, users[0], ids[1:3], 104.0)
        nursery.start_soon(leave, other, users[3], [], 105.0)
    assert appended == [2]  # one append of one record per room
    await diff.wait_for(1)
    await legacy.wait_for(1)
    await other_diff.wait_for(1)
    [event] = diff.events
    assert sorted(u["id"] for u in event["joins"]) == ids[1:3] and [u["id"] for u in event["leaves"]] == ids[:1]
    assert event["online_count"] == 2
    [old] = legacy.events  # the newest change (the leave), with the online list read for it
    assert old["status"] == "left" and old["user"]["id"] == ids[0]
    assert [u["id"] for u in old["online"]] == ids[1:3] and old["online"][0]["username"] == "p1"
    assert other_diff.events[0]["leaves"][0]["id"] == ids[3] and other_diff.events[0]["online_count"] == 0


async def test_a_room_with_many_subscribers_folds_over_a_longer_window(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    # 400 subscribers on this node: 4 times the window (0.4 s), so its presence costs about as many
    # writes per second as a room of 100. Past 1.5 s it stretches no further.
    room, diff, legacy = await subscribed_pair(node)
    for _ in range(398):
        await node.rooms.subscribe(room, Recorder(), presence_diff=True)
    online: list[int] = []
    start = trio.current_time()
    await joins(node, room, [1], online)
    await diff.wait_for(1)
    assert 0.39 < trio.current_time() - start < 0.45
    await joins(node, room, [2, 3], online)  # the next window is as long, and holds both
    await diff.wait_for(2)
    await trio.sleep(1)
    assert [event["joins"] for event in diff.events] == [[badge(1)], [badge(2), badge(3)]]
    assert len(legacy.events) == 2
