"""Room actors on the in-process stream (DESIGN.md §2, §3): order, gaps, replay, fan-out, idleness, crashes.

On MockClock: the clock jumps whenever every task waits (database worker threads
included), so timeouts below are in virtual seconds and generous.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import trio
import trio.testing
from sqlalchemy import delete
from sqlalchemy.orm import Session

from roomcast.actors import room as room_module
from roomcast.actors.room import RoomActor, Subscribe
from roomcast.actors.stream_reader import StreamBatch
from roomcast.config import Settings
from roomcast.node import Node
from roomcast.storage.models import OutboxEvent
from roomcast.storage.rooms import delete_room
from roomcast.storage.streams import STREAM_START, Append, StreamEntry
from roomcast.wire import encode

from .faults import SlowWakeBackend, open_node_with
from .helpers import Recorder, commit_events, create_rooms
from .lifecycle import Lifecycle


@pytest.fixture
def lifecycle(caplog: pytest.LogCaptureFixture) -> Lifecycle:
    return Lifecycle(caplog)


async def test_events_reach_every_subscriber_in_order_as_the_same_bytes(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    [room] = await create_rooms(node)
    alice, bob = Recorder(), Recorder()
    assert await node.rooms.subscribe(room, alice) == 0
    assert await node.rooms.subscribe(room, bob) == 0
    for size in (1, 5, 3, 11):
        await commit_events(node, room, size)
    await alice.wait_for(20)
    await bob.wait_for(20)
    assert alice.seqs == bob.seqs == list(range(1, 21))
    # Encoded once: every subscriber holds the very same bytes object.
    assert all(a is b for a, b in zip(alice.items, bob.items, strict=True))
    assert alice.events[0] == {"type": "message", "room": room, "seq": 1, "message": {"body": "hello 1"}}


async def test_events_read_together_reach_each_subscriber_in_one_push_as_one_shared_list(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    [room] = await create_rooms(node)
    alice, bob = Recorder(), Recorder()
    await node.rooms.subscribe(room, alice)
    await node.rooms.subscribe(room, bob)
    await commit_events(node, room, 11)  # one commit: the relay publishes them in one append
    await alice.wait_for(11)
    await bob.wait_for(11)
    assert len(alice.batches) == len(bob.batches) == 1
    assert alice.batches[0] is bob.batches[0] and len(alice.batches[0]) == 11
    assert alice.seqs == list(range(1, 12))


async def test_on_attached_runs_before_any_event_and_gets_the_last_seq(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    [room] = await create_rooms(node)
    await commit_events(node, room, 4)
    subscriber = Recorder()
    attached: list[int] = []

    def on_attached(last_seq: int) -> None:
        attached.append(last_seq)
        subscriber.push(json.dumps({"type": "subscribed", "last_seq": last_seq}).encode())

    # The room actor may not have caught up yet; whatever last_seq it reports, `since`
    # semantics hold: first the reply, then every stored event after `since`.
    last = await node.rooms.subscribe(room, subscriber, since=1, on_attached=on_attached)
    assert attached == [last]
    await commit_events(node, room, 2)
    await subscriber.wait_for(1 + 5)
    assert subscriber.events[0] == {"type": "subscribed", "last_seq": last}
    assert subscriber.seqs == [2, 3, 4, 5, 6]


async def test_an_exception_from_on_attached_subscribes_nothing(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    [room] = await create_rooms(node)
    subscriber = Recorder()

    def refuse(last_seq: int) -> None:
        raise LookupError("no")

    with pytest.raises(LookupError):
        await node.rooms.subscribe(room, subscriber, on_attached=refuse)
    await commit_events(node, room, 3)
    other = Recorder()
    await node.rooms.subscribe(room, other, since=0)
    await other.wait_for(3)
    assert subscriber.items == []


@pytest.mark.parametrize("settings_overrides", [{"room_replay_buffer": 0}, {"room_replay_buffer": 1024}],
                         ids=["from-database", "from-recent"])
async def test_since_replays_then_goes_live_with_no_gap_and_no_duplicate(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    [room] = await create_rooms(node)
    watcher = Recorder()
    await node.rooms.subscribe(room, watcher)
    await commit_events(node, room, 40)
    await watcher.wait_for(40)

    late = Recorder()
    async with trio.open_nursery() as nursery:
        async def keep_sending() -> None:
            for _ in range(10):
                await commit_events(node, room, 3)
                await trio.sleep(0.01)

        nursery.start_soon(keep_sending)
        await node.rooms.subscribe(room, late, since=7)
    await late.wait_for(70 - 7)
    await trio.sleep(1)
    assert late.seqs == list(range(8, 71))


async def test_replays_of_a_new_room_actor_share_the_reads_of_what_recent_can_hold(
        autojump_clock: trio.testing.MockClock, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    # After a restart every client resumes with `since` at once, and the room's new actor has
    # nothing in `recent`: the replays share their reads instead of each reading the same rows.
    [room] = await create_rooms(node)
    await commit_events(node, room, 200, notify=False, published=True)
    reads: list[tuple[Any, ...]] = []
    original = room_module.events_after

    def counted(session: Any, *args: Any) -> Any:
        reads.append(args)
        return original(session, *args)

    monkeypatch.setattr(room_module, "events_after", counted)
    sinces = [140 + n * 2 for n in range(30)] + [10]
    resumed = [Recorder() for _ in sinces]
    async with trio.open_nursery() as nursery:
        for subscriber, since in zip(resumed, sinces, strict=True):
            nursery.start_soon(node.rooms.subscribe, room, subscriber, since)
        for _ in range(5):  # live events meanwhile
            await commit_events(node, room, 2)
    for subscriber, since in zip(resumed, sinces, strict=True):
        await subscriber.wait_for(210 - since)
    await trio.sleep(1)
    for subscriber, since in zip(resumed, sinces, strict=True):
        assert subscriber.seqs == list(range(since + 1, 211))  # no gap, no duplicate, in order
    # Not one per replay: at most one for the newest (64 back from the room's end, which the
    # live events may have moved past 140 first), one reaching back to the oldest `since` of
    # the 140s, and one for since=10 (however trio orders the subscribes).
    assert len(reads) <= 3, reads


async def test_since_ahead_of_the_room_skips_what_the_subscriber_already_has(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    [room] = await create_rooms(node)
    subscriber = Recorder()
    last = await node.rooms.subscribe(room, subscriber, since=3)
    assert last == 0
    await commit_events(node, room, 5)
    await subscriber.wait_for(2)
    await trio.sleep(1)
    assert subscriber.seqs == [4, 5]


async def test_a_gap_in_the_stream_is_filled_from_the_database(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    [room] = await create_rooms(node)
    subscriber = Recorder()
    await node.rooms.subscribe(room, subscriber)
    # Seqs 1-3 are committed but, as if their publication was lost, never reach the stream.
    await commit_events(node, room, 3, notify=False, published=True)
    [seq] = await commit_events(node, room, 1, notify=False, published=True)
    payload = json.dumps({"type": "message", "room": room, "seq": seq}).encode()
    await node.streams.append([Append(room, payload, seq)])
    await subscriber.wait_for(4)
    assert subscriber.seqs == [1, 2, 3, 4]
    assert subscriber.items[3] == payload


async def test_duplicates_on_the_stream_are_delivered_once(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    [room] = await create_rooms(node)
    subscriber = Recorder()
    await node.rooms.subscribe(room, subscriber)
    await commit_events(node, room, 2, published=True, notify=False)
    payloads = [json.dumps({"type": "message", "room": room, "seq": s}).encode() for s in (1, 2)]
    await node.streams.append([Append(room, payloads[0], 1), Append(room, payloads[1], 2),
                               Append(room, payloads[0], 1), Append(room, payloads[1], 2)])
    await subscriber.wait_for(2)
    await trio.sleep(1)
    assert subscriber.seqs == [1, 2]


async def test_the_stream_reader_fans_out_only_what_the_waiting_actor_would_do_at_once(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    """`take_now`: the next seqs while the actor waits idle for mail; a gap, presence, or mail on its
    way to the actor (which must be handled first) go through the mailbox."""
    [room] = await create_rooms(node)
    subscriber = Recorder()
    await node.rooms.subscribe(room, subscriber)
    await commit_events(node, room, 2)
    await subscriber.wait_for(2)
    await trio.sleep(1)
    actor = node.rooms.get(room)
    assert actor is not None and actor.last_seq == 2

    def entry(seq: int | None, data: bytes | None = None) -> StreamEntry:
        payload = data or json.dumps({"type": "message", "room": room, "seq": seq}).encode()
        return StreamEntry(actor.position or STREAM_START, seq, payload)

    assert not actor.take_now(StreamBatch(actor._epoch, [entry(4)]))  # seq 3 is missing
    assert not actor.take_now(StreamBatch(actor._epoch - 1, [entry(3)]))  # read for an earlier run
    presence = encode({"type": "presence", "room": room, "user": 7, "status": "joined", "online": []})
    assert not actor.take_now(StreamBatch(actor._epoch, [entry(None, presence)]))
    actor.actor.tell(room_module._WAKE)  # handed to the waiting run, which has not run yet
    assert not actor.take_now(StreamBatch(actor._epoch, [entry(3)]))
    await trio.sleep(1)
    typing = encode({"type": "typing", "room": room, "user": 7, "state": True})
    assert actor.take_now(StreamBatch(actor._epoch, [entry(2), entry(3), entry(None, typing)]))
    # Delivered in the call, the seq already delivered dropped, as the run would have.
    assert subscriber.seqs == [1, 2, 3] and subscriber.events[-1]["type"] == "typing"
    assert actor.last_seq == 3


async def test_an_overflowing_subscriber_is_dropped_and_told_while_others_get_everything(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    [room] = await create_rooms(node)
    slow, fast = Recorder(limit=5), Recorder()
    await node.rooms.subscribe(room, slow)
    await node.rooms.subscribe(room, fast)
    await commit_events(node, room, 12)
    await fast.wait_for(12)
    assert slow.overflows == [room]
    assert slow.seqs == [1, 2, 3, 4, 5]
    slow.limit = 100  # room for more now, but it is no longer subscribed
    await commit_events(node, room, 1)
    await fast.wait_for(13)
    assert len(slow.items) == 5 and fast.seqs == list(range(1, 14))


async def test_unsubscribe_stops_delivery_at_once(autojump_clock: trio.testing.MockClock, node: Node) -> None:
    [room] = await create_rooms(node)
    leaving, staying = Recorder(), Recorder()
    await node.rooms.subscribe(room, leaving)
    await node.rooms.subscribe(room, staying)
    await commit_events(node, room, 2)
    await leaving.wait_for(2)
    node.rooms.unsubscribe(room, leaving)
    await commit_events(node, room, 2)
    await staying.wait_for(4)
    assert leaving.seqs == [1, 2]


async def test_transient_events_reach_subscribers_without_a_seq_and_are_not_stored(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    [room] = await create_rooms(node)
    subscriber = Recorder()
    await node.rooms.subscribe(room, subscriber)
    await commit_events(node, room, 1)
    await subscriber.wait_for(1)
    await node.rooms.publish_transient(room, {"type": "typing", "room": room, "user": 7, "state": True})
    await commit_events(node, room, 1)
    await subscriber.wait_for(3)
    assert subscriber.events[1] == {"type": "typing", "room": room, "user": 7, "state": True}
    assert subscriber.seqs == [1, 2]
    later = Recorder()
    await node.rooms.subscribe(room, later, since=0)
    await later.wait_for(2)
    await trio.sleep(1)
    assert [e["type"] for e in later.events] == ["message", "message"]


async def test_a_burst_of_subscribes_waits_behind_the_rooms_events_and_each_is_attached(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    [room] = await create_rooms(node)
    await commit_events(node, room, 3)
    watcher = Recorder()
    await node.rooms.subscribe(room, watcher)
    actor = node.rooms.get(room)
    assert actor is not None and actor.last_seq == 3
    attached: list[int] = []  # the joiners whose `subscribed` went out, in order
    attached_when_delivered: list[int] = []  # how many had, each time the watcher got an event

    def deliver(data: bytes) -> bool:
        attached_when_delivered.append(len(attached))
        return Recorder.push(watcher, data)

    watcher.push = deliver  # type: ignore[method-assign]
    joiners = [Recorder() for _ in range(100)]
    requests = [Subscribe(joiner, None, lambda last, n=n: attached.append(n)) for n, joiner in enumerate(joiners)]
    typing = encode({"type": "typing", "room": room, "user": 7, "state": True})
    # A hundred subscribes, then an event, all waiting in the mailbox at once (no checkpoint between).
    for request in requests:
        actor.actor.tell(request)
    actor.actor.tell(StreamBatch(actor._epoch, [StreamEntry(actor.position or STREAM_START, None, typing)]))
    for request in requests:
        assert await request.reply.wait(actor.actor) == 3
    assert attached_when_delivered == [0]  # the event went out before any of the joiners was attached
    assert attached == list(range(100))  # then every joiner, in the order they came
    # Each is a subscriber like any other.
    await commit_events(node, room, 1)
    for joiner in joiners:
        await joiner.wait_for(1)
        assert joiner.seqs == [4]
    assert actor.describe()["joining"] == 0


async def test_subscribes_are_attached_while_events_keep_coming(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    [room] = await create_rooms(node)
    watcher = Recorder()
    await node.rooms.subscribe(room, watcher)
    actor = node.rooms.get(room)
    assert actor is not None
    joiners = [Recorder() for _ in range(3 * room_module._ATTACH_PER_STEP)]
    requests = [Subscribe(joiner, None, None) for joiner in joiners]
    typing = encode({"type": "typing", "room": room, "user": 7, "state": True})
    for request in requests:
        actor.actor.tell(request)
    # An event waits in the mailbox at every step: the joiners are attached all the same, a few a step.
    steps = 0
    while not all(request.reply.done.is_set() for request in requests):
        actor.actor.tell(StreamBatch(actor._epoch, [StreamEntry(actor.position or STREAM_START, None, typing)]))
        await trio.sleep(0)
        steps += 1
    assert steps <= len(joiners)
    assert len(actor.subscriptions) == len(joiners) + 1


async def test_a_new_room_actor_knows_its_stream_position_before_it_answers_a_subscriber(
        autojump_clock: trio.testing.MockClock, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # A blocked read notices a new room only once interrupted, which on Redis takes a round
    # trip: the actor must not leave the lookup of its stream's end to the reader meanwhile.
    backend = SlowWakeBackend(wake_delay_s=2.0)
    async with open_node_with(backend, settings, monkeypatch) as node:
        [room] = await create_rooms(node)
        await node.rooms.publish_transient(room, {"type": "typing", "room": room, "user": 7, "state": True})
        subscriber = Recorder()
        await node.rooms.subscribe(room, subscriber)
        # The end as it stood (not None, which the reader would look up only after the answer):
        # the typing before the subscribe lies behind it, the one after it does not.
        assert node.actors.reader.position(room) == (await backend.last_ids([room]))[room] != STREAM_START
        await node.rooms.publish_transient(room, {"type": "typing", "room": room, "user": 8, "state": True})
        await subscriber.wait_for(1)
        await trio.sleep(5)
        assert [event["user"] for event in subscriber.events] == [8]


@pytest.mark.parametrize("settings_overrides", [{"room_idle_s": 30}])
async def test_an_idle_room_actor_stops_itself_and_the_next_subscriber_starts_a_new_one(
        autojump_clock: trio.testing.MockClock, node: Node, lifecycle: Lifecycle) -> None:
    [room] = await create_rooms(node)
    subscriber = Recorder()
    await node.rooms.subscribe(room, subscriber)
    await commit_events(node, room, 1)
    await subscriber.wait_for(1)
    first = node.rooms.get(room)
    assert first is not None
    path = first.actor.path
    await trio.sleep(100)
    assert node.rooms.get(room) is first  # a subscriber keeps it alive however long

    node.rooms.unsubscribe(room, subscriber)
    await trio.sleep(29)
    assert node.rooms.get(room) is first and not first.actor.terminated.is_set()
    await trio.sleep(2)
    assert first.actor.terminated.is_set() and node.rooms.get(room) is None
    stopped = lifecycle.lines("actor.stopped", path=path)
    assert stopped[-1]["reason"] == "idle" and stopped[-1]["uptime_s"] >= 130

    again = Recorder()
    assert await node.rooms.subscribe(room, again, since=0) == 1
    await again.wait_for(1)
    assert node.rooms.get(room) is not first


@pytest.mark.parametrize("where", ["handling", "handling-from-mailbox", "gap-fill"])
async def test_a_room_actor_that_crashes_and_restarts_neither_loses_nor_duplicates(
        autojump_clock: trio.testing.MockClock, node: Node, lifecycle: Lifecycle,
        monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """"handling": a batch fails wherever it is handled (most in the stream reader's task,
    `take_now`); "handling-from-mailbox": every batch goes through the mailbox."""
    [room] = await create_rooms(node)
    crashes = {"left": 2}

    if where.startswith("handling"):
        original = RoomActor._accept

        def flaky_accept(self: RoomActor, seq: int, data: bytes) -> None:
            # Crash on the first new event read from the stream past seq 6, then past seq 18.
            threshold = 6 if crashes["left"] == 2 else 18
            if crashes["left"] and self.last_seq is not None and seq > self.last_seq >= threshold:
                crashes["left"] -= 1
                raise RuntimeError(f"injected crash at seq {seq}")
            original(self, seq, data)

        monkeypatch.setattr(RoomActor, "_accept", flaky_accept)
        if where == "handling-from-mailbox":
            monkeypatch.setattr(RoomActor, "take_now", lambda self, batch: False)
        else:
            original_take_now = RoomActor.take_now

            def counted_take_now(self: RoomActor, batch: Any) -> bool:
                taken = original_take_now(self, batch)
                crashes["taken_now"] = crashes.get("taken_now", 0) + taken
                return taken

            monkeypatch.setattr(RoomActor, "take_now", counted_take_now)
    else:
        original_fetch = room_module.events_after

        def flaky_fetch(session: Any, *args: Any) -> Any:
            if crashes["left"]:
                crashes["left"] -= 1
                raise ConnectionError("injected database hiccup")
            return original_fetch(session, *args)

        monkeypatch.setattr(room_module, "events_after", flaky_fetch)

    alice, bob = Recorder(), Recorder()
    await node.rooms.subscribe(room, alice)
    await node.rooms.subscribe(room, bob, since=0)
    expected = 0
    for _ in range(6):
        if where == "gap-fill":
            # Lose one publication: the next one makes the actor fetch the gap from the database.
            await commit_events(node, room, 1, notify=False, published=True)
            expected += 1
        await commit_events(node, room, 5)
        expected += 5
        await alice.wait_for(expected)  # one batch at a time, so each goes through the stream
        assert alice.seqs == list(range(1, expected + 1))
    total = expected
    await commit_events(node, room, 1)
    await alice.wait_for(total + 1)
    await bob.wait_for(total + 1)
    await trio.sleep(5)
    assert alice.seqs == bob.seqs == list(range(1, total + 2))
    assert crashes["left"] == 0
    assert where != "handling" or crashes["taken_now"] > 0
    path = f"roomcast/rooms/room:{room}"
    crashed = lifecycle.lines("actor.crashed", path=path)
    assert len(crashed) == 2 and crashed[0]["restart_in_s"] is not None
    assert lifecycle.lines("actor.restarting", path=path)


@pytest.mark.parametrize("lost", ["room-deleted", "rows-missing"])
async def test_events_the_database_lacks_are_an_error_unless_the_room_was_deleted(
        autojump_clock: trio.testing.MockClock, node: Node, lifecycle: Lifecycle, lost: str) -> None:
    """A room deleted while its actor runs takes its outbox rows along: a replay or a gap fill
    finds nothing, as expected (INFO); a room that exists and lacks them is a fault (ERROR)."""
    [room] = await create_rooms(node)
    node.rooms.replay_buffer = 2  # `recent` holds seqs 4-5 only: a replay from seq 1 reads the database
    alice = Recorder()
    await node.rooms.subscribe(room, alice)
    await commit_events(node, room, 5)
    await alice.wait_for(5)

    def lose(session: Session) -> None:
        if lost == "room-deleted":
            delete_room(session, room)  # its actor runs on until it idles
        else:
            session.execute(delete(OutboxEvent).where(OutboxEvent.room_id == room))

    await node.database.write(lose)
    bob = Recorder()
    assert await node.rooms.subscribe(room, bob, since=0) == 5
    await bob.wait_for(2)
    # A late entry of the room on the stream, past a gap (seqs 6-7) the database cannot fill.
    payload = json.dumps({"type": "message", "room": room, "seq": 8}).encode()
    await node.streams.append([Append(room, payload, 8)])
    await alice.wait_for(6)
    await bob.wait_for(3)
    assert alice.seqs == [1, 2, 3, 4, 5, 8]
    assert bob.seqs == [4, 5, 8]
    deleted = lost == "room-deleted"
    [replay_gap] = lifecycle.lines("room.replay_gap", room=room)
    [gap_unfilled] = lifecycle.lines("room.gap_unfilled", room=room)
    assert (replay_gap["missing_from"], replay_gap["missing_to"], replay_gap["room_deleted"]) == (1, 3, deleted)
    assert (gap_unfilled["missing_from"], gap_unfilled["missing_to"], gap_unfilled["room_deleted"]) == (6, 7, deleted)
    errors = [record.getMessage() for record in lifecycle.caplog.records if record.levelno >= logging.ERROR]
    assert errors == ([] if deleted else ["room.replay_gap", "room.gap_unfilled"])


@pytest.mark.parametrize("settings_overrides", [{"room_idle_s": 30}])
async def test_a_read_made_for_an_ended_actor_is_not_handed_to_its_successor(
        autojump_clock: trio.testing.MockClock, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each room actor numbered its stream attachments from 1, so the reader took a read made for an actor
    that had idled away as made for the new actor of the room: the new one's subscribers got a typing
    event from before they subscribed, and its stream position went back."""
    [room] = await create_rooms(node)
    first = Recorder()
    await node.rooms.subscribe(room, first)
    reader = node.actors.reader
    real_read = reader.backend.read
    armed, gate, held = trio.Event(), trio.Event(), trio.Event()

    async def read(positions: Any, **kwargs: Any) -> Any:
        if room in positions and armed.is_set() and not gate.is_set():
            held.set()
            await gate.wait()  # this read was made for the first actor; it returns after the second attached
        return await real_read(positions, **kwargs)

    monkeypatch.setattr(reader.backend, "read", read)
    await node.rooms.publish_transient(room, {"type": "typing", "room": room, "user": 1, "state": True})
    await first.wait_for(1)
    armed.set()
    await node.rooms.publish_transient(room, {"type": "typing", "room": room, "user": 1, "state": False})
    await held.wait()
    old = node.rooms.get(room)
    assert old is not None
    node.rooms.unsubscribe(room, first)
    await old.actor.terminated.wait()  # idle: gone, while the reader still waits with its position
    await node.rooms.publish_transient(room, {"type": "typing", "room": room, "user": 2, "state": True},
                                       start_actor=False)
    second = Recorder()
    await node.rooms.subscribe(room, second)  # a new actor, from the stream's end: after user 2's event
    gate.set()
    await node.rooms.publish_transient(room, {"type": "typing", "room": room, "user": 3, "state": True})
    await second.wait_for(1)
    await trio.sleep(5)
    assert [event["user"] for event in second.events] == [3]
