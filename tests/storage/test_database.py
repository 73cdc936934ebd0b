"""The Database gateway: work runs in worker threads, one transaction per call, bounded by the pool."""

from __future__ import annotations

import threading
import time

import pytest
import trio
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from roomcast.errors import Conflict
from roomcast.node import Node
from roomcast.storage.database import Database, DatabaseUnavailable, on_commit
from roomcast.storage.models import User
from roomcast.storage.users import create_user


async def test_work_runs_off_the_event_loop_thread(node: Node) -> None:
    loop_thread = threading.get_ident()
    seen = await node.database.read(lambda session: (threading.get_ident(), trio.lowlevel.in_trio_run()))
    assert seen[0] != loop_thread
    assert seen[1] is False


async def test_limiter_is_sized_to_the_pool(node: Node) -> None:
    assert node.database.limiter.total_tokens == node.settings.database_pool_size + 5


async def test_a_failed_transaction_leaves_nothing(node: Node) -> None:
    def create_then_fail(session):  # type: ignore[no-untyped-def]
        create_user(session, tenant="default", username="ghost", role="member")
        session.flush()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await node.database.write(create_then_fail)
    assert await node.database.read(lambda s: s.scalar(select(func.count()).select_from(User))) == 0


async def test_concurrent_writers_all_commit(node: Node) -> None:
    """Many writers at once: SQLite waits for its write lock instead of failing with 'locked'."""

    async def add(n: int) -> None:
        await node.database.write(lambda s: create_user(s, tenant="default", username=f"u{n}", role="member"))

    async with trio.open_nursery() as nursery:
        for n in range(40):
            nursery.start_soon(add, n)
    assert await node.database.read(lambda s: s.scalar(select(func.count()).select_from(User))) == 40


async def test_duplicate_username_in_a_tenant_conflicts(node: Node) -> None:
    await node.database.write(lambda s: create_user(s, tenant="a", username="same", role="member"))
    await node.database.write(lambda s: create_user(s, tenant="b", username="same", role="member"))
    with pytest.raises(Conflict):
        await node.database.write(lambda s: create_user(s, tenant="a", username="same", role="member"))


async def test_ping(node: Node) -> None:
    await node.database.ping()
    assert await node.database.read(lambda s: s.execute(text("SELECT 1")).scalar()) == 1


async def test_an_unreachable_database_is_database_unavailable_and_a_bug_is_not(node: Node) -> None:
    # Nothing listens on port 1: the connection is refused at once.
    unreachable = Database.from_url("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            await unreachable.ping()
        assert raised.value.code == "unavailable" and raised.value.status == 503
        assert raised.value.details == {"dependency": "database"}
        assert unreachable.availability.is_down
    finally:
        await unreachable.aclose()
    # A mistake in a statement is a bug, not an outage.
    with pytest.raises(DBAPIError) as raised_bug:
        await node.database.read(lambda session: session.execute(text("SELECT * FROM no_such_table")))
    assert not isinstance(raised_bug.value, DatabaseUnavailable)
    assert not node.database.availability.is_down



async def test_a_call_the_database_does_not_answer_in_time_is_unavailable_and_commits_nothing(
        node: Node, autojump_clock: trio.testing.MockClock) -> None:
    # The deadline is kept on the wall clock, as the thread runs: the mock clock, which leaps over
    # every wait for a thread, neither brings it forward nor holds it back.
    node.database.timeout_s = 0.2  # as on PostgreSQL; the work below stands for a server that does not answer
    answer, finished = threading.Event(), threading.Event()

    def create_when_answered(session):  # type: ignore[no-untyped-def]
        try:
            create_user(session, tenant="default", username="late", role="member")
            session.flush()
            answer.wait()
        finally:
            finished.set()

    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match=r"did not answer within 0\.2 s"):
        await node.database.write(create_when_answered)
    assert time.monotonic() - started >= 0.2
    assert node.database.availability.down_since is not None  # /readyz and the logs hear of it
    answer.set()  # the server answers after all: the work ends, and its transaction is rolled back
    await trio.to_thread.run_sync(finished.wait)
    while node.database.limiter.borrowed_tokens:  # until the thread given up on has ended
        await trio.sleep(0.01)
    assert await node.database.read(lambda s: s.scalar(select(func.count()).select_from(User))) == 0


async def test_a_mock_clock_leaping_ahead_brings_no_deadline_forward(
        node: Node, autojump_clock: trio.testing.MockClock) -> None:
    node.database.timeout_s = 15.0
    release = threading.Event()

    def create_when_released(session):  # type: ignore[no-untyped-def]
        release.wait()
        create_user(session, tenant="default", username="slow", role="member")

    async def release_later() -> None:
        await trio.sleep(3600)  # an hour of the mock clock: no time at all on the wall clock
        release.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(release_later)
        await node.database.write(create_when_released)
    assert await node.database.read(lambda s: s.scalar(select(func.count()).select_from(User))) == 1


async def test_a_caller_cancelled_once_its_work_runs_waits_for_it_as_without_a_deadline(node: Node) -> None:
    node.database.timeout_s = 30.0
    entered, release = threading.Event(), threading.Event()
    callbacks_ran = trio.Event()
    returned = False

    def create(session):  # type: ignore[no-untyped-def]
        entered.set()
        release.wait()
        create_user(session, tenant="default", username="kept", role="member")
        on_commit(session, callbacks_ran.set)

    async def cancel_once_it_runs() -> None:
        await trio.to_thread.run_sync(entered.wait)
        scope.cancel()
        release.set()

    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as scope:
            nursery.start_soon(cancel_once_it_runs)
            await node.database.write(create)
            returned = True
    assert returned and callbacks_ran.is_set()  # it waited for its work, committed, callbacks and all
    assert await node.database.read(lambda s: s.scalar(select(func.count()).select_from(User))) == 1


async def test_a_caller_cancelled_while_it_waits_for_a_slot_leaves_at_once_and_holds_none(node: Node) -> None:
    node.database.timeout_s = 30.0
    node.database.limiter.total_tokens = 1
    entered, release = threading.Event(), threading.Event()

    def hold_the_slot(session):  # type: ignore[no-untyped-def]
        entered.set()
        release.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(node.database.read, hold_the_slot)
        await trio.to_thread.run_sync(entered.wait)
        with trio.move_on_after(0.2) as waited:
            await node.database.read(lambda session: None)  # waits for the one slot
        assert waited.cancelled_caught
        assert node.database.limiter.borrowed_tokens == 1  # the holder's only
        release.set()
    assert await node.database.read(lambda session: 7) == 7
