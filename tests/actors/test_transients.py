"""Transient events published at the same moment go to the stream backend in one append
(actors/transients.py), in the order published; a backend that is down fails each of them."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from roomcast.node import Node
from roomcast.storage.streams import Append, StreamUnavailable

from .helpers import Recorder, count_appends, create_rooms


async def test_events_published_together_go_in_one_append_in_order(
        autojump_clock: trio.testing.MockClock, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    [room] = await create_rooms(node)
    subscriber = Recorder()
    await node.rooms.subscribe(room, subscriber)
    appends = count_appends(node, monkeypatch)

    async def publisher(user: int) -> None:  # ten events, one after the other
        for n in range(10):
            await node.rooms.publish_transient(room, {"type": "typing", "room": room, "user": user, "n": n})

    async with trio.open_nursery() as nursery:
        for user in range(20):
            nursery.start_soon(publisher, user)
    assert sum(appends) == 200 and len(appends) <= 20  # many at a time, not one by one
    await subscriber.wait_for(200)
    for user in range(20):  # each publisher's in the order it published them
        assert [event["n"] for event in subscriber.events if event["user"] == user] == list(range(10))
    await node.rooms.publish_transient(room, {"type": "typing", "room": room, "user": 50, "state": False})
    assert appends[-1] == 1  # alone, at once
    await subscriber.wait_for(201)


async def test_a_backend_that_is_down_fails_every_event_of_the_append_and_the_next_ones_go(
        autojump_clock: trio.testing.MockClock, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    [room] = await create_rooms(node)
    subscriber = Recorder()
    await node.rooms.subscribe(room, subscriber)
    real_append = node.streams.append

    async def down(items: Sequence[Append]) -> list[str]:
        raise StreamUnavailable("down for the test")

    monkeypatch.setattr(node.streams, "append", down)
    failed: list[int] = []

    async def publish(user: int) -> None:
        try:
            await node.rooms.publish_transient(room, {"type": "typing", "room": room, "user": user, "state": True})
        except StreamUnavailable:
            failed.append(user)

    async with trio.open_nursery() as nursery:
        for user in range(10):
            nursery.start_soon(publish, user)
    assert sorted(failed) == list(range(10))
    monkeypatch.setattr(node.streams, "append", real_append)
    await node.rooms.publish_transient(room, {"type": "typing", "room": room, "user": 99, "state": True})
    await subscriber.wait_for(1)
    assert [event["user"] for event in subscriber.events] == [99]
    assert node.actors.transients.describe() == {"appends": 1, "published": 1}


async def test_a_users_read_events_reach_subscribers_in_pointer_order(
        autojump_clock: trio.testing.MockClock, node: Node) -> None:
    """Two reads of one user taken on two nodes reach the stream in either order; a read event behind
    one already passed on (6, then 4) used to go out too, leaving subscribers showing 4."""
    [room] = await create_rooms(node)
    subscriber = Recorder()
    await node.rooms.subscribe(room, subscriber)

    def read(user: int, seq: int) -> dict[str, object]:
        return {"type": "read", "room": room, "user": {"id": user, "username": f"u{user}"}, "seq": seq}

    for event in (read(1, 6), read(1, 4), read(2, 3), read(1, 6), read(2, 5), read(1, 7)):
        await node.rooms.publish_transient(room, event)
    await node.rooms.publish_transient(room, {"type": "typing", "room": room, "user": 1, "state": True})
    await subscriber.wait_for(5)
    assert [(event["type"], event.get("seq")) for event in subscriber.events] == [
        ("read", 6), ("read", 3), ("read", 5), ("read", 7), ("typing", None)]
