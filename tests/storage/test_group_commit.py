"""The node's send committer under concurrency: seq order with no gaps, lock order across nodes, a bounded queue."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from sqlalchemy import select

from roomcast.config import Settings
from roomcast.errors import Unavailable
from roomcast.node import Node, open_node
from roomcast.services import messaging
from roomcast.storage.models import Message
from roomcast.storage.users import get_user
from tests.chat_helpers import make_group
from tests.helpers import eventually
from tests.ws.test_group_commit import hold_commits

ROOMS = 12


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"send_burst": 100_000, "send_rate_per_s": 100_000.0, "send_batch_max": 16}


async def room_seqs(node: Node, room_ids: list[int]) -> dict[int, list[int]]:
    def work(session: Any) -> dict[int, list[int]]:
        found: defaultdict[int, list[int]] = defaultdict(list)
        for room_id, seq in session.execute(select(Message.room_id, Message.seq).where(Message.room_id.in_(room_ids))
                                            .order_by(Message.room_id, Message.seq)):
            found[room_id].append(seq)
        return found

    return await node.database.read(work)


async def send_flat_out(node: Node, user: Any, rooms: list[int], requests: int, seed: int,
                        outcomes: list[Any]) -> None:
    """`requests` requests of 1 to 4 drafts each, to rooms in random order (so locks are wanted out of order)."""
    rng = random.Random(seed)
    for n in range(requests):
        drafts = [messaging.draft_message(node, user, rng.choice(rooms), f"{seed}.{n}.{k}")
                  for k in range(rng.randint(1, 4))]
        answers = await messaging.send_drafts(node, user, drafts)
        for draft, answer in zip(drafts, answers, strict=True):
            outcomes.append((draft, answer))
        seqs = [answer[0]["seq"] for draft, answer in zip(drafts, answers, strict=True)
                if draft.room_id == drafts[0].room_id and not isinstance(answer, Exception)]
        assert seqs == sorted(seqs)  # one request's drafts to one room keep their order


async def test_concurrent_sends_to_many_rooms_take_every_seq_once_in_order(
        client: Any, users: Any, node: Node) -> None:
    owner = await users.create("member")
    rooms = [(await make_group(client, owner))["id"] for _ in range(ROOMS)]
    user = await node.database.read(get_user, owner.id)
    committer = messaging.committer(node)
    before = committer.transactions
    outcomes: list[Any] = []
    async with trio.open_nursery() as nursery:
        for seed in range(16):
            nursery.start_soon(send_flat_out, node, user, rooms, 10, seed, outcomes)
    assert not [answer for _, answer in outcomes if isinstance(answer, Exception)]
    assert committer.transactions - before < 16 * 10  # fewer transactions than requests (and than sends)
    by_room = await room_seqs(node, rooms)
    for room in rooms:
        assert by_room[room] == list(range(1, len(by_room[room]) + 1))
    assert sum(len(seqs) for seqs in by_room.values()) == len(outcomes)
    # Every acknowledged message is the one stored with its seq.
    acked = {(draft.room_id, answer[0]["seq"]): answer[0]["body"] for draft, answer in outcomes}
    assert len(acked) == len(outcomes)


@pytest.fixture
async def second_node(settings: Settings) -> AsyncIterator[Node]:
    async with open_node(settings, migrate=False) as other:
        yield other


@pytest.mark.postgres
@pytest.mark.parametrize("db_backend", ["postgresql"])
@pytest.mark.parametrize("settings_overrides", [{"send_burst": 100_000, "send_rate_per_s": 100_000.0,
                                                 "send_batch_max": 8, "send_committers": 3}])
async def test_two_nodes_sending_to_overlapping_rooms_never_deadlock(
        client: Any, users: Any, node: Node, second_node: Node) -> None:
    # Three transactions at once per node, each locking several of the same few rooms, wanted in
    # random order: without the room-id order PostgreSQL would find deadlocks (and fail sends).
    owner = await users.create("member")
    rooms = [(await make_group(client, owner))["id"] for _ in range(4)]
    user = await node.database.read(get_user, owner.id)
    outcomes: list[Any] = []
    async with trio.open_nursery() as nursery:
        for seed, on in enumerate([node, second_node] * 6):
            nursery.start_soon(send_flat_out, on, user, rooms, 15, seed, outcomes)
    failed = [answer for _, answer in outcomes if isinstance(answer, Exception)]
    assert not failed, failed[:3]
    by_room = await room_seqs(node, rooms)
    for room in rooms:
        assert by_room[room] == list(range(1, len(by_room[room]) + 1))
    assert sum(len(seqs) for seqs in by_room.values()) == len(outcomes)
    assert messaging.committer(node).transactions and messaging.committer(second_node).transactions


@pytest.mark.parametrize("settings_overrides", [{"send_burst": 100_000, "send_rate_per_s": 100_000.0,
                                                 "send_queue_max": 2, "send_batch_max": 2,
                                                 "send_committers": 1}])
async def test_a_full_queue_makes_senders_wait_and_loses_nothing(
        client: Any, users: Any, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    owner = await users.create("member")
    room = (await make_group(client, owner))["id"]
    user = await node.database.read(get_user, owner.id)
    committer = messaging.committer(node)
    gate = hold_commits(node, monkeypatch)
    done: list[Any] = []

    async def one(n: int) -> None:
        [answer] = await messaging.send_drafts(node, user, [messaging.draft_message(node, user, room, f"m{n}")])
        done.append(answer)

    async with trio.open_nursery() as nursery:
        for n in range(8):
            nursery.start_soon(one, n)
        # One batch of two is at the (held) database, two wait in the queue, and the other four
        # senders wait to queue theirs.
        await eventually(lambda: committer.actor.backlog == 2)
        await trio.testing.wait_all_tasks_blocked()
        assert committer.actor.backlog == 2 and not done
        assert committer.actor.outbox.statistics().tasks_waiting_send == 4
        gate.set()
    assert len(done) == 8 and not [answer for answer in done if isinstance(answer, Exception)]
    assert (await room_seqs(node, [room]))[room] == list(range(1, 9))


@pytest.mark.parametrize("settings_overrides", [{"send_burst": 100_000, "send_rate_per_s": 100_000.0,
                                                 "send_batch_max": 1, "send_committers": 1}])
async def test_sends_waiting_when_the_committer_stops_are_answered_unavailable(
        client: Any, users: Any, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    owner = await users.create("member")
    room = (await make_group(client, owner))["id"]
    user = await node.database.read(get_user, owner.id)
    committer = messaging.committer(node)
    hold_commits(node, monkeypatch)  # never opened: the committer is stopped while it waits
    done: list[Any] = []

    async def one(n: int) -> None:
        done.extend(await messaging.send_drafts(node, user, [messaging.draft_message(node, user, room, f"m{n}")]))

    async with trio.open_nursery() as nursery:
        for n in range(3):
            nursery.start_soon(one, n)
        await eventually(lambda: committer.actor.backlog == 2)  # one at the database, two queued
        committer.actor.stop()
    assert len(done) == 3 and all(isinstance(answer, Unavailable) for answer in done), done
    monkeypatch.undo()
    # The next send starts a new committer.
    [answer] = await messaging.send_drafts(node, user, [messaging.draft_message(node, user, room, "after")])
    assert not isinstance(answer, Exception) and messaging.committer(node) is not committer
    assert (await room_seqs(node, [room]))[room] == [1]


async def test_one_transaction_of_several_rooms_is_published_in_one_append(
        client: Any, users: Any, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    owner = await users.create("member")
    rooms = [(await make_group(client, owner))["id"] for _ in range(5)]
    user = await node.database.read(get_user, owner.id)
    await eventually(lambda: not node.actors.relay.describe()["ready"])  # the rooms' own events are out
    appended: list[list[int]] = []
    relay = node.actors.relay
    real_append = relay.backend.append

    async def append(items: Any) -> Any:
        appended.append([item.room_id for item in items])
        return await real_append(items)

    monkeypatch.setattr(relay.backend, "append", append)
    outcomes = await messaging.send_drafts(node, user, [messaging.draft_message(node, user, room, "hello")
                                                        for room in rooms])
    assert not [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    await eventually(lambda: any(set(rooms) <= set(call) for call in appended))
    assert [call for call in appended if set(call) & set(rooms)] == [sorted(rooms)]


@pytest.mark.postgres
@pytest.mark.parametrize("db_backend", ["postgresql"])
@pytest.mark.parametrize("settings_overrides", [{"send_burst": 100_000, "send_rate_per_s": 100_000.0,
                                                 "send_batch_max": 8, "send_committers": 2}])
async def test_a_second_transaction_opens_only_for_a_backlog_of_half_a_batch(
        client: Any, users: Any, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    owner = await users.create("member")
    room = (await make_group(client, owner))["id"]
    user = await node.database.read(get_user, owner.id)
    committer = messaging.committer(node)
    gate = trio.Event()
    real_write = node.database.write
    opened: list[bool] = []  # a transaction of the committer's, as it opens (and waits for the gate)

    async def held_write(work: Any, *args: Any) -> Any:
        if work.__qualname__.startswith("SendCommitter."):
            opened.append(True)
            await gate.wait()
        return await real_write(work, *args)

    sizes: list[int] = []
    real_commit = committer._commit

    async def commit(batch: list[Any], *rest: Any) -> None:
        sizes.append(sum(len(request.drafts) for request in batch))
        await real_commit(batch, *rest)

    monkeypatch.setattr(committer, "_commit", commit)
    monkeypatch.setattr(node.database, "write", held_write)
    done: list[Any] = []

    async def send(body: str) -> None:
        done.extend(await messaging.send_drafts(node, user, [messaging.draft_message(node, user, room, body)]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send, "first")
        await eventually(lambda: len(opened) == 1)  # one transaction open, held
        for n in range(3):  # a backlog of 3, under half a batch (4): the other committer waits
            nursery.start_soon(send, f"small {n}")
        await trio.testing.wait_all_tasks_blocked()
        assert len(opened) == 1 and sizes == [1]
        nursery.start_soon(send, "fourth")  # half a batch waits now: a second transaction opens
        await eventually(lambda: len(opened) == 2)
        await trio.testing.wait_all_tasks_blocked()
        assert sizes == [1, 4]
        gate.set()
    assert len(done) == 5 and not [answer for answer in done if isinstance(answer, Exception)]
    assert sorted(answer[0]["seq"] for answer in done) == [1, 2, 3, 4, 5]
    assert committer.transactions == 2


@pytest.mark.postgres
@pytest.mark.parametrize("db_backend", ["postgresql"])
@pytest.mark.parametrize("settings_overrides", [{"send_burst": 100_000, "send_rate_per_s": 100_000.0,
                                                 "send_batch_max": 8, "send_committers": 2}])
async def test_a_small_backlog_waits_for_the_open_transaction_and_goes_in_the_next_whole(
        client: Any, users: Any, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    owner = await users.create("member")
    room = (await make_group(client, owner))["id"]
    user = await node.database.read(get_user, owner.id)
    committer = messaging.committer(node)
    gate = hold_commits(node, monkeypatch)
    sizes: list[int] = []
    real_commit = committer._commit

    async def commit(batch: list[Any], *rest: Any) -> None:
        sizes.append(sum(len(request.drafts) for request in batch))
        await real_commit(batch, *rest)

    monkeypatch.setattr(committer, "_commit", commit)
    done: list[Any] = []

    async def send(body: str) -> None:
        done.extend(await messaging.send_drafts(node, user, [messaging.draft_message(node, user, room, body)]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send, "first")
        await eventually(lambda: sizes == [1])
        for n in range(3):  # one at a time, each waiting (the other committer is free) before the next
            nursery.start_soon(send, f"then {n}")
            await trio.testing.wait_all_tasks_blocked()
        assert sizes == [1]
        gate.set()
    assert sizes == [1, 3]  # not 1, 1, 2 or the like: the three went together
    assert sorted(answer[0]["seq"] for answer in done) == [1, 2, 3, 4]
