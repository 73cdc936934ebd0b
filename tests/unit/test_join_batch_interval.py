"""During a burst of subscribes a batch of joins starts at most every `join_batch_interval_s`
(services/joins.py): joins trickling in share a batch, and one after a quiet spell goes at once, as
does each of one client's subscribes to its rooms one after another.

The batcher's policy alone, on a frozen clock that only the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import trio
import trio.testing

from roomcast.services import joins
from roomcast.services.joins import JoinBatcher, JoinRequest
from roomcast.storage.users import UserSnapshot

USER = UserSnapshot(1, "default", "u1", "U 1", "member")


def batcher(interval: float) -> JoinBatcher:
    node: Any = SimpleNamespace(settings=SimpleNamespace(join_batch_interval_s=interval))
    return JoinBatcher(node)


def requests(count: int, session: str | None = None) -> list[JoinRequest]:
    """Joins of `count` sessions (or all of one `session`, each to another room)."""
    return [JoinRequest(USER, session or f"session {n}", n + 1, fresh=True, diff=False) for n in range(count)]


@asynccontextmanager
async def taking(joins_batcher: JoinBatcher, mailbox: trio.MemoryReceiveChannel[JoinRequest],
                 ) -> AsyncIterator[tuple[list[list[JoinRequest]], trio.CancelScope]]:
    """The next batch taken in the background while the block moves the clock: (what was taken, once
    it was; the scope that stops the taking)."""
    taken: list[list[JoinRequest]] = []

    async def take() -> None:
        taken.append(await joins_batcher._take(mailbox))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(take)
        yield taken, nursery.cancel_scope


async def taken_now(joins_batcher: JoinBatcher, mailbox: trio.MemoryReceiveChannel[JoinRequest]) -> list[JoinRequest]:
    """The next batch, which must come without the clock moving (a hang fails the test instead)."""
    async with taking(joins_batcher, mailbox) as (taken, scope):
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()
    assert taken, "the batch waited for the clock"
    return taken[0]


async def test_joins_trickling_in_during_a_burst_share_a_batch_and_one_after_a_quiet_spell_goes_at_once(
        mock_clock: trio.testing.MockClock) -> None:
    joins_batcher = batcher(0.05)
    send, mailbox = trio.open_memory_channel[JoinRequest](16)
    *starting, first, second, third, fourth, later = requests(joins._BURST_SESSIONS + 4)
    for request in [*starting, first]:  # the burst starts: several sessions at once
        send.send_nowait(request)
    assert await taken_now(joins_batcher, mailbox) == [*starting, first]  # nothing before them: at once

    async with taking(joins_batcher, mailbox) as (taken, _):
        send.send_nowait(second)  # within the interval of the first batch: it waits for the rest
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(0.02)
        send.send_nowait(third)
        mock_clock.jump(0.02)
        send.send_nowait(fourth)
        await trio.testing.wait_all_tasks_blocked()
        assert taken == []  # 0.04 s after the first batch started
        mock_clock.jump(0.01)  # the interval is up
    assert taken == [[second, third, fourth]]

    mock_clock.jump(1.0)  # a quiet spell
    send.send_nowait(later)
    assert await taken_now(joins_batcher, mailbox) == [later]


async def test_a_full_batch_does_not_wait_for_the_interval(mock_clock: trio.testing.MockClock) -> None:
    joins_batcher = batcher(0.05)
    send, mailbox = trio.open_memory_channel[JoinRequest](joins._BATCH_MAX + 10)
    starting = requests(joins._BURST_SESSIONS)
    burst = requests(joins._BATCH_MAX + 3 + joins._BURST_SESSIONS)[joins._BURST_SESSIONS:]
    for request in starting:
        send.send_nowait(request)
    assert await taken_now(joins_batcher, mailbox) == starting
    for request in burst:
        send.send_nowait(request)
    assert await taken_now(joins_batcher, mailbox) == burst[:joins._BATCH_MAX]
    # The rest came in the same interval: they wait for it, then go.
    async with taking(joins_batcher, mailbox) as (taken, _):
        await trio.testing.wait_all_tasks_blocked()
        assert taken == []
        mock_clock.jump(0.05)
    assert taken == [burst[joins._BATCH_MAX:]]


async def test_no_interval_takes_each_batch_as_soon_as_a_join_waits(mock_clock: trio.testing.MockClock) -> None:
    joins_batcher = batcher(0.0)
    send, mailbox = trio.open_memory_channel[JoinRequest](16)
    for request in requests(3):
        send.send_nowait(request)
        assert await taken_now(joins_batcher, mailbox) == [request]


async def test_one_clients_subscribes_one_after_another_never_wait(mock_clock: trio.testing.MockClock) -> None:
    joins_batcher = batcher(0.05)
    send, mailbox = trio.open_memory_channel[JoinRequest](16)
    for request in requests(12, session="one client"):  # the web client subscribing to its rooms
        send.send_nowait(request)
        assert await taken_now(joins_batcher, mailbox) == [request]
    # Nor do a few clients at once: a burst takes more sessions than that.
    for request in requests(joins._BURST_SESSIONS - 1):
        send.send_nowait(request)
        assert await taken_now(joins_batcher, mailbox) == [request]
