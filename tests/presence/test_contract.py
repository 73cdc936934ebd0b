"""The presence contract: the same behaviours asked of the in-process backend and of Redis.

Any backend must pass every test here (the idea of trio.testing's stream checks). The
last tests are Redis's alone: only there do other nodes share the entries, and die.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from roomcast.storage.presence import Departure, Presence
from roomcast.storage.presence.redis import RedisPresence
from tests.conftest import REDIS_KINDS

from .conftest import TTL_S, PresenceWorld

ROOM, OTHER_ROOM = 1, 2
only_redis = pytest.mark.parametrize("backend_kind", REDIS_KINDS)


async def test_a_user_is_in_a_room_while_any_of_their_sessions_is(
        world: PresenceWorld, clock: trio.testing.MockClock | None) -> None:
    presence = world.presence
    assert await presence.join(ROOM, 5, "a") == [5]
    assert await presence.join(ROOM, 5, "b") == [5]
    assert await presence.join(ROOM, 3, "c") == [3, 5]
    assert await presence.leave(ROOM, 5, "a") == [3, 5]
    assert await presence.online_in(ROOM) == [3, 5]
    assert await presence.leave(ROOM, 5, "b") == [3]
    assert await presence.leave(ROOM, 3, "c") == []
    assert await presence.online_in(ROOM) == []


async def test_online_in_is_sorted_distinct_and_per_room(
        world: PresenceWorld, clock: trio.testing.MockClock | None) -> None:
    presence = world.presence
    for user_id, session in [(9, "a"), (2, "b"), (7, "c"), (2, "d"), (9, "e")]:
        await presence.join(ROOM, user_id, session)
    await presence.join(OTHER_ROOM, 4, "f")
    assert await presence.online_in(ROOM) == [2, 7, 9]
    assert await presence.online_in(OTHER_ROOM) == [4]
    assert await presence.online_in(3) == []


async def test_join_many_writes_every_entry_and_answers_each_room_once(
        world: PresenceWorld, clock: trio.testing.MockClock | None) -> None:
    presence = world.presence
    await presence.join(OTHER_ROOM, 4, "x")
    online = await presence.join_many([(ROOM, 9, "a"), (ROOM, 2, "b"), (3, 7, "c"), (ROOM, 9, "d")], read=[OTHER_ROOM])
    assert online == {ROOM: [2, 9], 3: [7], OTHER_ROOM: [4]}  # the read room is answered, not written
    assert await presence.join_many([(ROOM, 2, "b")]) == {ROOM: [2, 9]}  # again: counted once
    assert await presence.join_many([], read=[5]) == {5: []}
    assert await presence.join_many([]) == {}
    assert await presence.leave(ROOM, 9, "a") == [2, 9]  # user 9's other session is still there
    assert await presence.leave(ROOM, 9, "d") == [2]
    # The entries join_many wrote are kept alive like any other.
    for _ in range(int(3 * TTL_S / presence.refresh_interval_s) + 1):
        world.advance(presence.refresh_interval_s)
        assert await presence.refresh() == []
    assert await presence.online_in(ROOM) == [2]
    assert await presence.online_in(3) == [7]


async def test_a_user_is_online_while_any_of_their_sessions_is_connected(
        world: PresenceWorld, clock: trio.testing.MockClock | None) -> None:
    presence = world.presence
    assert await presence.online_users([5, 6]) == set()
    await presence.connect(5, "a")
    await presence.connect(5, "b")
    await presence.connect(6, "c")
    assert await presence.online_users([5, 6, 7]) == {5, 6}
    assert await presence.online_users(iter([6, 6])) == {6}  # any iterable, duplicates allowed
    assert await presence.online_users([]) == set()
    await presence.disconnect(5, "a")
    assert await presence.online_users([5, 6]) == {5, 6}
    await presence.disconnect(5, "b")
    assert await presence.online_users([5, 6]) == {6}


async def test_rooms_and_connections_are_apart(world: PresenceWorld, clock: trio.testing.MockClock | None) -> None:
    presence = world.presence
    await presence.join(ROOM, 5, "a")
    await presence.connect(6, "b")
    assert await presence.online_users([5, 6]) == {6}
    assert await presence.online_in(ROOM) == [5]


async def test_leaving_or_disconnecting_an_unknown_session_changes_nothing(
        world: PresenceWorld, clock: trio.testing.MockClock | None) -> None:
    presence = world.presence
    await presence.join(ROOM, 5, "a")
    await presence.connect(5, "a")
    assert await presence.leave(ROOM, 5, "never-joined") == [5]
    assert await presence.leave(ROOM, 8, "stranger") == [5]
    assert await presence.leave(OTHER_ROOM, 5, "a") == []
    await presence.disconnect(5, "never-connected")
    await presence.disconnect(8, "stranger")
    assert await presence.online_in(ROOM) == [5]
    assert await presence.online_users([5, 8]) == {5}
    assert await presence.leave(ROOM, 5, "a") == []
    assert await presence.leave(ROOM, 5, "a") == []  # twice: still harmless
    await presence.disconnect(5, "a")
    await presence.disconnect(5, "a")
    assert await presence.online_users([5]) == set()
    assert await presence.join(ROOM, 5, "b") == [5]  # and nothing is owed afterwards
    await presence.connect(5, "b")
    assert await presence.online_users([5]) == {5}


async def test_a_session_counts_once_however_often_it_joins_or_connects(
        world: PresenceWorld, clock: trio.testing.MockClock | None) -> None:
    presence = world.presence
    await presence.join(ROOM, 5, "a")
    await presence.join(ROOM, 5, "a")
    await presence.connect(5, "a")
    await presence.connect(5, "a")
    assert await presence.leave(ROOM, 5, "a") == []
    await presence.disconnect(5, "a")
    assert await presence.online_users([5]) == set()


async def test_refreshing_keeps_entries_alive_past_the_ttl_and_reports_no_departure(
        world: PresenceWorld, clock: trio.testing.MockClock | None) -> None:
    presence = world.presence
    await presence.join(ROOM, 5, "a")
    await presence.join(ROOM, 6, "b")
    await presence.connect(5, "a")
    assert presence.refresh_interval_s > 0
    rounds = int(3 * TTL_S / presence.refresh_interval_s) + 1  # three ttls at least, whatever the backend's
    for _ in range(rounds):
        world.advance(presence.refresh_interval_s)
        assert await presence.refresh() == []
    assert await presence.online_in(ROOM) == [5, 6]
    assert await presence.online_users([5, 6]) == {5}
    assert await presence.leave(ROOM, 6, "b") == [5]
    world.advance(presence.refresh_interval_s)
    assert await presence.refresh() == []
    assert await presence.online_in(ROOM) == [5]


async def test_a_forgotten_session_is_kept_alive_no_more(world: PresenceWorld,
                                                          clock: trio.testing.MockClock | None) -> None:
    presence = world.presence
    await presence.join(ROOM, 5, "a")
    await presence.join(OTHER_ROOM, 5, "a")
    await presence.connect(5, "a")
    await presence.join(ROOM, 6, "b")
    presence.forget(5, "a", [ROOM, OTHER_ROOM])  # its orderly leave could not finish
    presence.forget(7, "never-seen", [ROOM])  # harmless
    # Gone at once where the backend is the whole truth, else within the ttl: never refreshed again.
    rounds = int(2 * TTL_S / presence.refresh_interval_s) + 1
    for _ in range(rounds):
        world.advance(presence.refresh_interval_s)
        await presence.refresh()
    assert await presence.online_in(ROOM) == [6]
    assert await presence.online_in(OTHER_ROOM) == []
    assert await presence.online_users([5, 6]) == set()


# --------------------------------------------------------------------------- several nodes (Redis)


async def refresh_together(*nodes: Presence) -> list[Departure]:
    """Every node refreshes at once, racing for the same expired entries, as live nodes do."""
    departures: list[Departure] = []

    async def refresh(node: Presence) -> None:
        departures.extend(await node.refresh())

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for node in nodes:
                nursery.start_soon(refresh, node)
    return departures


@only_redis
async def test_nodes_share_what_each_has(world: PresenceWorld, clock: trio.testing.MockClock | None) -> None:
    a, b = world.presence, world.peer()
    await a.join(ROOM, 5, "a")
    assert await b.join(ROOM, 6, "b") == [5, 6]
    await b.connect(6, "b")
    assert await a.online_users([5, 6]) == {6}
    assert await a.leave(ROOM, 5, "a") == [6]
    assert await b.online_in(ROOM) == [6]


@only_redis
async def test_a_refresh_of_many_keys_keeps_them_all_and_reports_each_departure_once(
        world: PresenceWorld, clock: trio.testing.MockClock | None) -> None:
    # More keys than one refresh pipeline takes, sessions and rooms alike.
    live, dead = world.presence, world.peer()
    await live.join_many([(room, 1000 + room, "s") for room in range(1, 301)])
    for user_id in range(1, 301):
        await live.connect(user_id, f"c{user_id}")
    await dead.join_many([(room, 5000 + room, "d") for room in range(1, 301)])
    for _ in range(2):
        world.advance(live.refresh_interval_s)
        assert await live.refresh() == []
    departures = []
    for _ in range(2):  # dead stopped refreshing: its entries expire
        world.advance(live.refresh_interval_s)
        departures += await live.refresh()
    assert sorted((d.room_id, d.user_id, d.online) for d in departures) == [
        (room, 5000 + room, [1000 + room]) for room in range(1, 301)]
    assert await live.online_users(range(1, 301)) == set(range(1, 301))
    assert await live.online_in(300) == [1300]


@only_redis
async def test_a_room_with_more_sessions_than_one_refresh_batch_is_kept_whole_and_swept_once(
        world: PresenceWorld, clock: trio.testing.MockClock | None, backend_kind: str) -> None:
    # One Redis refreshes by script, a cluster by pipeline: each cuts this room into several parts.
    live, dead = world.presence, world.peer()
    assert isinstance(live, RedisPresence)
    assert (live._refresh_script is None) == (backend_kind == "redis-cluster")
    await live.join_many([(ROOM, user_id, f"s{user_id}") for user_id in range(1, 601)])
    for user_id in range(1, 601):
        await live.connect(user_id, f"s{user_id}")
    await dead.join_many([(ROOM, user_id, f"d{user_id}") for user_id in range(401, 1001)])
    for _ in range(2):
        world.advance(live.refresh_interval_s)
        assert await live.refresh() == []
    departures = []
    for _ in range(2):  # dead stopped refreshing: its entries expire, users 401-600 stay by live's
        world.advance(live.refresh_interval_s)
        departures += await live.refresh()
    assert sorted(d.user_id for d in departures) == list(range(601, 1001))
    assert await live.online_in(ROOM) == list(range(1, 601))
    assert await live.online_users(range(1, 1001)) == set(range(1, 601))
    world.advance(live.refresh_interval_s)
    assert await live.refresh() == []


@only_redis
async def test_the_entries_of_a_node_that_stops_refreshing_expire_and_one_survivor_reports_each_departure(
        world: PresenceWorld, clock: trio.testing.MockClock | None) -> None:
    dead, b, c = world.presence, world.peer(), world.peer()
    await dead.join(ROOM, 10, "d1")
    await dead.connect(10, "d1")
    await dead.join(ROOM, 20, "d2")  # user 20 is on b as well: still online when dead's entry goes
    await dead.join(OTHER_ROOM, 10, "d3")
    await b.join(ROOM, 20, "b1")
    await b.connect(20, "b1")
    await c.join(ROOM, 30, "c1")
    await c.join(OTHER_ROOM, 30, "c2")
    step = b.refresh_interval_s
    # Before the ttl has passed since dead's last refresh, its entries stand.
    for _ in range(2):
        world.advance(step)
        assert await refresh_together(b, c) == []
    assert await b.online_in(ROOM) == [10, 20, 30]
    assert await c.online_users([10, 20]) == {10, 20}
    departures: list[Departure] = []
    for _ in range(2):  # past the ttl (three steps), with a step to spare
        world.advance(step)
        departures += await refresh_together(b, c)
    # Each once, by whichever survivor won the race: user 10 left both rooms; 20 did not leave.
    assert sorted(departures, key=lambda d: d.room_id) == [
        Departure(ROOM, 10, [20, 30]),
        Departure(OTHER_ROOM, 10, [30]),
    ]
    assert await b.online_in(ROOM) == [20, 30]
    assert await c.online_in(OTHER_ROOM) == [30]
    assert await b.online_users([10, 20]) == {20}
    world.advance(step)
    assert await refresh_together(b, c) == []  # nothing is reported twice


@only_redis
async def test_keys_ttls_are_extended_every_third_round_and_entries_every_round(
        world: PresenceWorld, clock: trio.testing.MockClock | None) -> None:
    presence = world.presence
    assert isinstance(presence, RedisPresence)
    await presence.join(ROOM, 5, "a")
    await presence.connect(5, "a")
    keys = [presence._room_key(ROOM), presence._user_key(5)]

    async def shorten() -> None:
        for key in keys:
            await presence.client.expire(key, 10)

    async def ttls() -> list[int]:
        return [await presence.client.ttl(key) for key in keys]

    await shorten()
    world.advance(presence.refresh_interval_s)
    assert await presence.refresh() == []
    assert min(await ttls()) > 10  # the first round extends them
    await shorten()
    for _ in range(2):  # then two rounds that only re-score the entries
        world.advance(presence.refresh_interval_s)
        assert await presence.refresh() == []
        assert max(await ttls()) <= 10
    world.advance(presence.refresh_interval_s)  # a ttl after the last extension: the next
    assert await presence.refresh() == []
    assert min(await ttls()) > 10
    assert await presence.online_in(ROOM) == [5] and await presence.online_users([5]) == {5}
