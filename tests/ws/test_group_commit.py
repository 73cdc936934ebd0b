"""Group commit on a live node: /ws and REST sends of many rooms share transactions (PROTOCOL §4, §5).

The node's committer is held at its first transaction until every sender has queued, so
what piles up meanwhile is what one commit takes: the test never depends on speed.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
import trio

from roomcast.services import messaging
from roomcast.services.send_committer import SendCommitter, SendRequest
from roomcast.storage.models import Message
from tests.chat_helpers import curse, make_group
from tests.helpers import eventually
from tests.ws_client import WsClient, ws_connect

ROOMS = 6
PER_SOCKET = 5


def hold_commits(node: Any, monkeypatch: pytest.MonkeyPatch) -> trio.Event:
    """The committer's transactions wait for the returned event (nothing else's do)."""
    gate = trio.Event()
    real_write = node.database.write

    async def held_write(work: Any, *args: Any) -> Any:
        if work.__qualname__.startswith("SendCommitter."):
            await gate.wait()
        return await real_write(work, *args)

    monkeypatch.setattr(node.database, "write", held_write)
    return gate


def count_requests(committer: SendCommitter, monkeypatch: pytest.MonkeyPatch) -> list[SendRequest]:
    """The requests handed to the committer: REST sends wait for theirs (`submit`), /ws sessions are
    called back (`offer`)."""
    submitted: list[SendRequest] = []
    real_submit, real_offer = committer.submit, committer.offer

    async def submit(request: SendRequest) -> Any:
        submitted.append(request)
        return await real_submit(request)

    def offer(request: SendRequest, on_answer: Any) -> bool:
        submitted.append(request)
        return real_offer(request, on_answer)

    monkeypatch.setattr(committer, "submit", submit)
    monkeypatch.setattr(committer, "offer", offer)
    return submitted


@pytest.fixture
def ws_settings() -> dict[str, Any]:
    # One committer, as on SQLite: with two on PostgreSQL, which of them takes the REST sends is timing.
    return {"send_committers": 1}


async def committed(node: Any, message_id: int) -> bool:
    """Whether the message is visible to another transaction, i.e. committed."""
    return await node.database.read(lambda session: session.get(Message, message_id)) is not None


async def test_sends_of_many_rooms_from_ws_and_rest_commit_together_and_each_is_answered_after_its_commit(
        live_server: str, client: Any, users: Any, node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    members = [await users.create("member") for _ in range(ROOMS)]
    rooms = [(await make_group(client, member))["id"] for member in members]
    earlier = await client.post(f"/api/rooms/{rooms[0]}/messages", headers=members[0].headers,
                                json={"body": "earlier", "client_id": "seen"})
    assert earlier.status_code == 201
    curse(monkeypatch)
    committer = messaging.committer(node)
    before = committer.transactions
    submitted = count_requests(committer, monkeypatch)
    batches: list[list[Any]] = []  # the drafts of each transaction
    real_commit = committer._commit

    async def commit(batch: list[SendRequest], *rest: Any) -> None:
        batches.append([draft for request in batch for draft in request.drafts])
        await real_commit(batch, *rest)

    monkeypatch.setattr(committer, "_commit", commit)
    gate = hold_commits(node, monkeypatch)
    rest_answers: dict[int, tuple[int, dict[str, Any]]] = {}

    async def rest_send(http: httpx.AsyncClient, index: int) -> None:
        response = await http.post(f"{live_server}/api/rooms/{rooms[index]}/messages", headers=members[index].headers,
                                   json={"body": f"rest {index}"})
        rest_answers[index] = (response.status_code, response.json())

    async with trio.open_nursery() as nursery, AsyncExitStack() as stack, httpx.AsyncClient(timeout=30) as http:
        sockets: list[WsClient] = [await stack.enter_async_context(ws_connect(live_server, member.token))
                                   for member in members]
        for index, ws in enumerate(sockets):
            for n in range(PER_SOCKET):
                await ws.send({"type": "send", "room": rooms[index], "body": f"ws {index}.{n}", "ref": f"s{n}",
                               "client_id": f"c{index}.{n}"})
        # Among good sends: one refused (not a member), one repeated client_id, one the database refuses.
        await sockets[1].send({"type": "send", "room": rooms[0], "body": "intruder", "ref": "refused"})
        await sockets[0].send({"type": "send", "room": rooms[0], "body": "again", "client_id": "seen", "ref": "again"})
        await sockets[2].send({"type": "send", "room": rooms[2], "body": "cursed", "ref": "cursed"})
        for index in range(ROOMS):
            nursery.start_soon(rest_send, http, index)
        for ws in sockets:  # each reader has queued its sends before it answers this
            assert (await ws.request({"type": "ping"}))["type"] == "pong"
        # Every session has its first batch at the committer, every REST request too.
        await eventually(lambda: len(submitted) >= 2 * ROOMS)
        assert committer.transactions == before and not rest_answers  # nothing is answered before its commit
        gate.set()

        acks: dict[int, list[dict[str, Any]]] = {}
        for index, ws in enumerate(sockets):
            acks[index] = [await ws.until_ref(f"s{n}") for n in range(PER_SOCKET)]
            for answer in acks[index]:
                assert answer["type"] == "ack", answer
                assert await committed(node, answer["message"]["id"])
        refused = await sockets[1].until_ref("refused")
        assert refused["type"] == "error" and refused["code"] == "not_a_member", refused
        again = await sockets[0].until_ref("again")
        assert again["type"] == "ack" and again["message"]["body"] == "earlier"  # the original
        cursed = await sockets[2].until_ref("cursed")
        assert cursed["type"] == "error" and cursed["code"] == "internal_error", cursed
    assert len(rest_answers) == ROOMS
    for status, body in rest_answers.values():
        assert status == 201, body
        assert await committed(node, body["id"])

    sends = ROOMS * PER_SOCKET + ROOMS + 3
    # Far fewer transactions than sends (how the later batches of each session split over the two
    # committers depends on timing); that several rooms share one is checked below.
    assert committer.transactions - before < sends // 3, committer.transactions - before
    assert len(batches) == committer.transactions - before
    # One transaction held REST and /ws sends of several rooms together.
    assert any({draft.body.split()[0] for draft in batch} >= {"rest", "ws"}
               and len({draft.room_id for draft in batch}) > 1 for batch in batches), batches
    seqs: defaultdict[int, list[int]] = defaultdict(list)
    seqs[rooms[0]].append(1)  # "earlier"
    for index, answers in acks.items():
        mine = [answer["message"]["seq"] for answer in answers]
        assert mine == sorted(mine) and len(set(mine)) == len(mine)  # sequenced in the order sent
        seqs[rooms[index]] += mine
    for index, (_, body) in rest_answers.items():
        seqs[rooms[index]].append(body["seq"])
    for room in rooms:  # every room's seqs run 1..n with no gap (the refused and failed took none)
        assert sorted(seqs[room]) == list(range(1, len(seqs[room]) + 1)), (room, seqs[room])
    assert sum(len(found) for found in seqs.values()) == sends - 3 + 1
