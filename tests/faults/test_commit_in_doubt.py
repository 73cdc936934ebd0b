"""A group commit whose COMMIT goes unanswered (the connection dies on the way back) is in doubt:
the sends are acked if the transaction committed after all, and refused only if it did not
(PostgreSQL, settled by the transaction's id)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from roomcast.node import Node
from roomcast.services import send_committer
from roomcast.storage.commit_status import commit_status
from roomcast.storage.database import Database, DatabaseUnavailable
from tests.chat_helpers import body_of, make_group

pytestmark = pytest.mark.postgres

COMMITTER_WORK = ("together", "each_in_a_savepoint")


@pytest.fixture
def db_backend() -> str:
    return "postgresql"


def lost_answer() -> sa_exc.OperationalError:
    return sa_exc.OperationalError("COMMIT", None,
                                   psycopg.OperationalError("server closed the connection unexpectedly"))


def commit_then_lose_the_answer(monkeypatch: pytest.MonkeyPatch, *, reaches_the_server: bool) -> list[str]:
    """The committer's next transaction fails as if its COMMIT's answer were lost; the COMMIT itself
    reaches the server (it commits) or not (rolled back). Returns the names of the works it failed."""
    real = Database._transaction
    failed: list[str] = []

    def transaction(self: Database, work: Callable[..., Any], args: tuple[Any, ...], writes: bool) -> Any:
        if failed or getattr(work, "__name__", "") not in COMMITTER_WORK:
            return real(self, work, args, writes)
        failed.append(work.__name__)
        if reaches_the_server:
            real(self, work, args, writes)
        else:
            with Session(self.engine) as session, session.begin():
                work(session, *args)
                session.rollback()
        raise lost_answer()

    monkeypatch.setattr(Database, "_transaction", transaction)
    return failed


async def history(client: Any, user: Any, room: int) -> list[str]:
    page = await body_of(await client.get(f"/api/rooms/{room}/messages", headers=user.headers), 200)
    return [message["body"] for message in page["items"]]


async def test_a_commit_whose_answer_is_lost_is_acked_when_it_was_stored(
        node: Node, client: Any, users: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = await users.create("member")
    room = (await make_group(client, alice))["id"]
    failed = commit_then_lose_the_answer(monkeypatch, reaches_the_server=True)
    response = await client.post(f"/api/rooms/{room}/messages", headers=alice.headers,
                                 json={"body": "in doubt", "client_id": "c1"})
    assert failed == ["together"]
    sent = await body_of(response, 201)
    assert sent["body"] == "in doubt"
    assert await history(client, alice, room) == ["in doubt"]


async def test_a_commit_that_never_reached_the_server_is_unavailable_and_stores_nothing(
        node: Node, client: Any, users: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = await users.create("member")
    room = (await make_group(client, alice))["id"]
    failed = commit_then_lose_the_answer(monkeypatch, reaches_the_server=False)
    response = await client.post(f"/api/rooms/{room}/messages", headers=alice.headers, json={"body": "lost"})
    assert failed == ["together"]
    assert response.status_code == 503 and (await response.get_json())["error"]["code"] == "unavailable"
    assert await history(client, alice, room) == []


async def test_a_commit_still_in_doubt_when_the_database_stays_away_is_unavailable(
        node: Node, client: Any, users: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked for `_SETTLE_S` at most: the senders are then told to try again (a client_id makes it safe)."""
    alice = await users.create("member")
    room = (await make_group(client, alice))["id"]
    commit_then_lose_the_answer(monkeypatch, reaches_the_server=True)
    monkeypatch.setattr(send_committer, "_SETTLE_S", 0.3)
    real_read = Database.read
    asked: list[object] = []

    async def read(self: Database, work: Callable[..., Any], *args: Any) -> Any:
        if work is commit_status:
            asked.append(args)
            raise DatabaseUnavailable("still unreachable")
        return await real_read(self, work, *args)

    monkeypatch.setattr(Database, "read", read)
    response = await client.post(f"/api/rooms/{room}/messages", headers=alice.headers,
                                 json={"body": "unknown", "client_id": "c2"})
    assert response.status_code == 503 and len(asked) >= 2
    monkeypatch.setattr(Database, "read", real_read)
    again = await client.post(f"/api/rooms/{room}/messages", headers=alice.headers,
                              json={"body": "unknown", "client_id": "c2"})
    assert again.status_code == 200  # it had been stored: the retry gets the original, nothing twice
    assert await history(client, alice, room) == ["unknown"]


async def test_sends_that_come_while_a_commit_is_in_doubt_do_not_wait_behind_it(
        node: Node, client: Any, users: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settling asks for up to `_SETTLE_S`; a send meanwhile starts a transaction of its own, even
    a small one (under half a batch would otherwise wait for the open transaction to end)."""
    import trio

    alice, bob = await users.create("member"), await users.create("member")
    room = (await make_group(client, alice))["id"]
    other_room = (await make_group(client, bob))["id"]
    commit_then_lose_the_answer(monkeypatch, reaches_the_server=False)
    settling, release = trio.Event(), trio.Event()
    real_read = Database.read

    async def read(self: Database, work: Callable[..., Any], *args: Any) -> Any:
        if work is commit_status:
            settling.set()
            await release.wait()  # the database stays away until the other send is answered
        return await real_read(self, work, *args)

    monkeypatch.setattr(Database, "read", read)
    answers: dict[str, int] = {}

    async def send(user: Any, room_id: int, body: str) -> None:
        response = await client.post(f"/api/rooms/{room_id}/messages", headers=user.headers, json={"body": body})
        answers[body] = response.status_code

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send, alice, room, "in doubt")
        await settling.wait()
        with trio.fail_after(5):
            await send(bob, other_room, "meanwhile")  # before: held until the settling ended
        assert answers == {"meanwhile": 201}
        release.set()
    assert answers == {"meanwhile": 201, "in doubt": 503}  # it never reached the server
    assert await history(client, bob, other_room) == ["meanwhile"]
    assert await history(client, alice, room) == []
