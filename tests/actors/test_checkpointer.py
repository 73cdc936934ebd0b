"""SQLite's WAL is checkpointed beside the writer, by the node's `wal_checkpointer` (actors/checkpointer.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from roomcast.actors.checkpointer import ACTOR_NAME, CHECKPOINT_INTERVAL_S
from roomcast.node import Node

from .helpers import commit_events, create_rooms

ON_SQLITE = pytest.mark.parametrize("db_backend", ["sqlite"])


async def until(condition: Callable[[], bool]) -> None:
    """Virtual time passes until `condition()`: on MockClock it may leap past a worker thread still on its way."""
    give_up_at = time.monotonic() + 30  # real seconds: a guard against a hang only
    while not condition():
        assert time.monotonic() < give_up_at
        await trio.sleep(CHECKPOINT_INTERVAL_S)


async def checkpoint_alone(node: Node) -> tuple[int, int]:
    """`Database.checkpoint()`, made again when it met the node's own checkpointer's (SQLite answers
    (-1, -1) to a checkpoint while another connection runs one)."""
    for _ in range(100):
        frames, copied = await node.database.checkpoint()
        if frames != -1:
            return frames, copied
        await trio.sleep(0.01)
    raise AssertionError("every checkpoint met another")


def checkpointer(node: Node) -> Any:
    actor = node.actors.root.child(ACTOR_NAME)
    assert actor is not None
    return actor


@ON_SQLITE
async def test_the_writer_leaves_checkpoints_to_the_actor(node: Node) -> None:
    def autocheckpoint(session: Any) -> int:
        return int(session.execute(text("PRAGMA wal_autocheckpoint")).scalar_one())

    assert await node.database.write(autocheckpoint) == 10_000  # a backstop, should the actor fall behind
    assert await node.database.read(autocheckpoint) == 1000  # SQLite's own: the pool's connections write nothing


@ON_SQLITE
async def test_what_the_writer_commits_is_copied_into_the_database(node: Node) -> None:
    room, = await create_rooms(node, 1)
    # Already published and not announced: the relay then writes nothing between the two checkpoints.
    await commit_events(node, room, 50, notify=False, published=True)
    frames, copied = await checkpoint_alone(node)
    assert frames > 0 and copied == frames  # nobody reading: all of it
    frames, copied = await checkpoint_alone(node)
    assert copied == frames  # nothing new: nothing left behind either


@ON_SQLITE
async def test_the_actor_checkpoints_every_interval(autojump_clock: trio.testing.MockClock, node: Node) -> None:
    actor = checkpointer(node)
    before = actor.describe()["checkpoints"]
    room, = await create_rooms(node, 1)
    await commit_events(node, room, 20)
    await until(lambda: actor.describe()["checkpoints"] >= before + 3)
    described = actor.describe()
    assert described["interval_s"] == CHECKPOINT_INTERVAL_S
    assert described["state"] == "running" and described["restarts"] == 0


@ON_SQLITE
async def test_an_outage_is_waited_out_and_a_failure_logged_without_a_restart(
        autojump_clock: trio.testing.MockClock, node: Node, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    database = node.database
    real = database._checkpoint
    failure: list[BaseException] = []

    def failing() -> tuple[int, int]:
        if failure:
            raise failure[0]
        return real()

    monkeypatch.setattr(database, "_checkpoint", failing)
    actor = checkpointer(node)
    failure.append(OperationalError("PRAGMA wal_checkpoint(PASSIVE)", {}, ConnectionRefusedError("refused")))
    def logged(event: str) -> bool:
        return sum(record.getMessage() == event for record in caplog.records) >= 3

    with caplog.at_level(logging.DEBUG, logger="roomcast.checkpointer"):
        await until(lambda: logged("checkpoint.waiting"))
        failure[0] = RuntimeError("a bug")
        await until(lambda: logged("checkpoint.failed"))
    failure.clear()
    before = actor.describe()["checkpoints"]
    await until(lambda: actor.describe()["checkpoints"] > before)
    described = actor.describe()
    assert described["state"] == "running" and described["restarts"] == 0


@ON_SQLITE
async def test_a_checkpoint_that_met_another_is_not_counted(
        autojump_clock: trio.testing.MockClock, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    actor = checkpointer(node)
    await until(lambda: actor.describe()["checkpoints"] >= 1)
    calls = 0

    def busy() -> tuple[int, int]:  # what SQLite answers while another connection checkpoints
        nonlocal calls
        calls += 1
        return -1, -1

    monkeypatch.setattr(node.database, "_checkpoint", busy)
    await until(lambda: calls >= 1)  # one at a time: the real one under way when patched has been counted
    before = actor.describe()
    await until(lambda: calls >= 4)
    described = actor.describe()
    assert described["checkpoints"] == before["checkpoints"]
    assert (described["wal_frames"], described["copied_frames"]) == (before["wal_frames"], before["copied_frames"])


@pytest.mark.parametrize("db_backend", ["postgresql"])
async def test_postgresql_has_no_checkpointer(node: Node) -> None:
    assert node.actors.root.child(ACTOR_NAME) is None
    assert await node.database.checkpoint() == (0, 0)
