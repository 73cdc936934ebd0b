"""A replay (subscribe with `since`) is paced by its subscriber (DESIGN.md §14).

It pushes no more than the subscriber has room for, waits for room, joins the live
events without gap or duplicate, and ends when the subscriber goes away, closes, or
takes nothing for `room_replay_stall_s`. On MockClock: see test_rooms.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from roomcast.actors import room as room_module
from roomcast.actors.room import RoomActor
from roomcast.node import Node

from .helpers import Recorder, SlowReader, commit_events, create_rooms
from .lifecycle import Lifecycle

STORED = 1000
LIMIT = 32
SHARE = LIMIT // 2  # what a replay may fill


@pytest.fixture
def lifecycle(caplog: pytest.LogCaptureFixture) -> Lifecycle:
    return Lifecycle(caplog)


async def stored_room(node: Node, count: int) -> tuple[int, RoomActor]:
    """A room with `count` events that its actor has delivered (so they are in `recent`, if it keeps them)."""
    [room] = await create_rooms(node)
    watcher = Recorder()
    await node.rooms.subscribe(room, watcher)
    await commit_events(node, room, count)
    await watcher.wait_for(count)
    node.rooms.unsubscribe(room, watcher)
    actor = node.rooms.get(room)
    assert actor is not None
    return room, actor


async def settle(actor: RoomActor) -> None:
    """Long enough (in virtual time) for the actor and its replays to do all they can now."""
    await trio.sleep(1)
    await trio.testing.wait_all_tasks_blocked()


def replay_tasks(actor: RoomActor) -> int:
    assert actor._replays is not None
    return len(actor._replays.child_tasks)


@pytest.mark.parametrize("settings_overrides", [
    pytest.param({"room_replay_buffer": 0, "room_replay_stall_s": 1e6}, id="from-database"),
    pytest.param({"room_replay_buffer": 4096, "room_replay_stall_s": 1e6}, id="from-recent"),
])
async def test_a_replay_pushes_only_what_fits_waits_for_room_and_joins_live_events_seamlessly(
        autojump_clock: trio.testing.MockClock, node: Node, settings_overrides: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    room, actor = await stored_room(node, STORED)
    reads = []
    original = room_module.events_after

    def counted(session: Any, *args: Any) -> Any:
        reads.append(args)
        return original(session, *args)

    monkeypatch.setattr(room_module, "events_after", counted)
    reader = SlowReader(LIMIT, per_tick=4, tick_s=0.01)
    await node.rooms.subscribe(room, reader, since=0)
    await reader.wait_for(SHARE)
    await settle(actor)
    # Not reading yet: it holds what fitted and the replay waits; live events go on meanwhile.
    assert reader.seqs == list(range(1, SHARE + 1))
    for _ in range(10):
        await commit_events(node, room, 3)
    while actor.last_seq != STORED + 30:
        await trio.sleep(0.1)
    await settle(actor)
    assert reader.seqs == list(range(1, SHARE + 1)) and actor.last_seq == STORED + 30
    assert actor.describe()["replaying"] == 1 and replay_tasks(actor) == 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.read)
        await reader.wait_for(STORED + 30)
        assert reader.most_queued <= SHARE and reader.overflows == []  # the replay never pushed more
        assert reader.waits >= STORED // SHARE  # it was paced, not handed everything at once
        await commit_events(node, room, 5)
        await reader.wait_for(STORED + 35)
        await settle(actor)
        nursery.cancel_scope.cancel()
    assert reader.seqs == list(range(1, STORED + 36))
    assert reader.overflows == []
    assert actor.describe()["replaying"] == 0 and replay_tasks(actor) == 0
    replay_reads = len(reads)
    if settings_overrides["room_replay_buffer"]:
        assert replay_reads == 0
    else:
        assert replay_reads >= STORED // 500


@pytest.mark.parametrize("settings_overrides", [{"room_replay_stall_s": 1e6}])
async def test_a_subscriber_removed_while_its_replay_waits_ends_the_replay(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    room, actor = await stored_room(node, 100)
    reader = SlowReader(10)
    await node.rooms.subscribe(room, reader, since=0)
    await reader.wait_for(5)
    await settle(actor)
    assert len(reader.items) == 5 and replay_tasks(actor) == 1

    node.rooms.unsubscribe(room, reader)
    await settle(actor)
    assert replay_tasks(actor) == 0 and actor.subscriptions == {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.read)
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert len(reader.items) == 5 and reader.overflows == []


@pytest.mark.parametrize("settings_overrides", [{"room_replay_stall_s": 1e6}])
async def test_a_subscriber_that_closes_while_its_replay_waits_is_forgotten(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    room, actor = await stored_room(node, 100)
    reader = SlowReader(10)
    await node.rooms.subscribe(room, reader, since=0)
    await reader.wait_for(5)
    await settle(actor)
    assert replay_tasks(actor) == 1

    reader.close()
    await settle(actor)
    assert replay_tasks(actor) == 0 and actor.subscriptions == {}
    assert reader.overflows == []  # it is closing already: nothing to tell it


@pytest.mark.parametrize("settings_overrides", [{"room_replay_stall_s": 5}])
async def test_a_replay_drops_a_subscriber_that_takes_nothing_for_the_stall_time_but_not_a_slow_one(
        autojump_clock: trio.testing.MockClock, node: Node, lifecycle: Lifecycle) -> None:
    room, actor = await stored_room(node, 100)
    stalled = SlowReader(10)
    slow = SlowReader(10, per_tick=4, tick_s=2)  # room for the next push every 2 s: slow, never stalled
    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow.read)
        await node.rooms.subscribe(room, stalled, since=0)
        await node.rooms.subscribe(room, slow, since=0)
        await slow.wait_for(100)
        await settle(actor)
        nursery.cancel_scope.cancel()
    assert slow.seqs == list(range(1, 101)) and slow.overflows == []
    assert stalled.overflows == [room] and len(stalled.items) == 5
    assert next(iter(actor.subscriptions.values())).subscriber is slow and replay_tasks(actor) == 0
    [line] = lifecycle.lines("room.replay_stalled")
    assert line["room"] == room and line["next_seq"] == 6
