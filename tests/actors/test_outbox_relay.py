"""The outbox relay (DESIGN.md §1): in order, marked published, through outages and crashes."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from sqlalchemy.orm import Session

from roomcast.actors import outbox_relay
from roomcast.config import Settings
from roomcast.node import Node
from roomcast.services.messaging import send_message
from roomcast.storage.models import Membership, User
from roomcast.storage.streams import STREAM_START, MemoryStreamBackend
from roomcast.wire import encode
from tests.chat_helpers import outbox
from tests.helpers import eventually

from .faults import SwitchableBackend, open_node_with
from .helpers import Recorder, commit_events, commit_to_rooms, create_rooms, unpublished_count
from .lifecycle import Lifecycle


@pytest.fixture
def lifecycle(caplog: pytest.LogCaptureFixture) -> Lifecycle:
    return Lifecycle(caplog)


async def wait_until_published(node: Node) -> None:
    while await unpublished_count(node):
        await trio.sleep(0.1)


async def test_committed_rows_reach_their_streams_in_seq_order_and_are_marked(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    room_a, room_b = await create_rooms(node, 2)
    for _ in range(5):
        await commit_to_rooms(node, [room_a, room_b], per_room=3)
        await commit_events(node, room_a, 2)
    await wait_until_published(node)
    found = await node.streams.read({room_a: STREAM_START, room_b: STREAM_START}, count=1000, timeout=0)
    assert [e.seq for e in found[room_a]] == list(range(1, 26))
    assert [e.seq for e in found[room_b]] == list(range(1, 16))
    assert found[room_a][0].data.startswith(b'{"type": "message", "room": %d, "seq": 1' % room_a)
    assert node.actors.relay.published == 40


@pytest.mark.parametrize("settings_overrides", [{"outbox_batch_size": 7}])
async def test_a_backlog_larger_than_a_batch_is_published_in_order(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    [room] = await create_rooms(node)
    await commit_events(node, room, 50)
    await wait_until_published(node)
    found = await node.streams.read({room: STREAM_START}, count=1000, timeout=0)
    assert [e.seq for e in found[room]] == list(range(1, 51))


async def test_the_relay_and_the_reader_ride_out_a_stream_outage_and_lose_nothing(
        autojump_clock: trio.testing.MockClock, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        lifecycle: Lifecycle) -> None:
    backend = SwitchableBackend(MemoryStreamBackend(1000))
    async with open_node_with(backend, settings, monkeypatch) as node:
        [room] = await create_rooms(node)
        subscriber = Recorder()
        await node.rooms.subscribe(room, subscriber)
        await commit_events(node, room, 3)
        await subscriber.wait_for(3)
        await wait_until_published(node)  # delivered is not yet marked: the outage starts after both

        backend.down = True
        went_down = trio.current_time()
        for _ in range(4):
            await commit_events(node, room, 2)
            await trio.sleep(3)
        # The relay reads its rows in a worker thread, which the mock clock does not wait for:
        # on a loaded machine the sleeps above can all pass before its first append. Wait (in
        # virtual time, as long as it takes) for that append to fail before the clock moves on.
        await eventually(lambda: lifecycle.lines("outbox.stream_unavailable"), timeout=3600)
        await trio.sleep(60)
        assert subscriber.seqs == [1, 2, 3]
        assert await unpublished_count(node) == 8
        failures = lifecycle.lines("outbox.stream_unavailable")
        assert failures and failures[0]["waiting"] >= 2
        assert lifecycle.lines("stream.unavailable")
        # Kept retrying, with backoff rather than in a hot loop (virtual seconds; the reader
        # and the relay each settle at one try per 2.5-5 s).
        per_second = backend.failed_calls / (trio.current_time() - went_down)
        assert backend.failed_calls > 10 and per_second < 2

        backend.down = False
        await subscriber.wait_for(11)
        await wait_until_published(node)
        assert subscriber.seqs == list(range(1, 12))
        assert lifecycle.lines("outbox.stream_recovered")
        assert lifecycle.lines("stream.reconnected")
        assert not lifecycle.lines("actor.crashed")


async def test_rows_committed_but_never_published_before_a_crash_are_published_on_restart(
        autojump_clock: trio.testing.MockClock, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first process commits, then dies before its relay could publish anything.
    dead = SwitchableBackend(MemoryStreamBackend(1000))
    dead.down = True
    async with open_node_with(dead, settings, monkeypatch) as first:
        [room] = await create_rooms(first)
        await commit_events(first, room, 4)
        await commit_events(first, room, 1, notify=False)
        await trio.sleep(1)
        assert await unpublished_count(first) == 5

    # The next process (fresh in-process streams) publishes them on start.
    async with open_node_with(MemoryStreamBackend(1000), settings, monkeypatch) as second:
        await wait_until_published(second)
        found = await second.streams.read({room: STREAM_START}, count=100, timeout=0)
        assert [e.seq for e in found[room]] == [1, 2, 3, 4, 5]
        subscriber = Recorder()
        await second.rooms.subscribe(room, subscriber, since=0)
        await subscriber.wait_for(5)
        assert subscriber.seqs == [1, 2, 3, 4, 5]


async def test_a_send_hands_its_committed_row_to_the_relay_which_publishes_it_unread(
        autojump_clock: trio.testing.MockClock, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    [room] = await create_rooms(node)

    def member(session: Session) -> User:
        user = User(tenant="default", username="sender", display_name="Sender", role="member", is_active=True)
        session.add(user)
        session.flush()
        session.add(Membership(room_id=room, user_id=user.id, room_role="member", last_read_seq=0))
        return user

    sender = await node.database.write(member)
    await wait_until_published(node)
    reads = 0
    real_unpublished = outbox_relay.unpublished

    def counted_unpublished(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        if kwargs.get("room_ids") is not None:  # a read-back of notified rooms, not the periodic sweep
            reads += 1
        return real_unpublished(*args, **kwargs)

    monkeypatch.setattr(outbox_relay, "unpublished", counted_unpublished)
    subscriber = Recorder()
    await node.rooms.subscribe(room, subscriber)
    message, _ = await send_message(node, sender, room, "straight through")
    await subscriber.wait_for(1)
    await wait_until_published(node)
    assert reads == 0  # published from memory, not read back
    [stored] = await outbox(node, room)
    assert subscriber.items == [encode(stored)] and subscriber.events[0]["message"] == message
