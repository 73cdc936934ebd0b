"""A send that fails unexpectedly fails alone: the others committed with it are stored and acked."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed

from roomcast.http.ws import sends
from roomcast.services import messaging
from roomcast.services.send_committer import SendCommitter, SendRequest
from tests.chat_helpers import curse, history, make_group
from tests.ws_client import ws_connect


class _GatedCommitter:
    """The node's committer, as a session sees it, whose first batch waits for `gate` (the others
    go straight on): the first is refused as if the mailbox were full, and its task then waits."""

    def __init__(self, inner: SendCommitter, gate: trio.Event, batches: list[list[str]]) -> None:
        self.inner, self.gate, self.batches = inner, gate, batches
        self.actor = inner.actor

    def offer(self, request: SendRequest, on_answer: Any) -> bool:
        self.batches.append([draft.body for draft in request.drafts])
        return len(self.batches) > 1 and self.inner.offer(request, on_answer)

    async def submit(self, request: SendRequest) -> Any:
        await self.gate.wait()
        return await self.inner.submit(request)


def gate_first_batch(monkeypatch: pytest.MonkeyPatch, gate: trio.Event) -> list[list[str]]:
    """Hold a session's first batch until `gate` is set; returns the bodies of each batch, as handed over."""
    batches: list[list[str]] = []
    real_committer = sends.committer
    monkeypatch.setattr(sends, "committer", lambda node: _GatedCommitter(real_committer(node), gate, batches))
    return batches


async def test_one_failing_send_of_a_batch_leaves_the_others_committed_and_acked(
        live_server: str, client: Any, users: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    alice = await users.create("member")
    room = (await make_group(client, alice))["id"]
    curse(monkeypatch)
    # The first send's commit waits until the client has sent everything else, so the
    # rest pile up behind it and go to the database as one batch (sends.MAX_BATCH is well above 4).
    all_sent = trio.Event()
    batches = gate_first_batch(monkeypatch, all_sent)
    async with ws_connect(live_server, alice.token) as ws:
        bodies = ["first", "a", "cursed", "b", "c"]
        for n, body in enumerate(bodies):
            await ws.send({"type": "send", "room": room, "body": body, "ref": f"s{n}"})
            if n == 0:
                await ws.request({"type": "ping"})  # its commit has begun (and waits) by now
        await ws.request({"type": "ping"})  # the reader has queued every send before this one
        all_sent.set()
        answers = [await ws.until_ref(f"s{n}") for n in range(len(bodies))]
        assert batches == [["first"], ["a", "cursed", "b", "c"]]
        assert [answer["type"] for answer in answers] == ["ack", "ack", "error", "ack", "ack"], answers
        assert answers[2]["code"] == "internal_error"
        seqs = [answer["message"]["seq"] for n, answer in enumerate(answers) if n != 2]
        assert seqs == list(range(seqs[0], seqs[0] + 4))  # the failed one took no seq
        assert (await ws.request({"type": "ping"}))["type"] == "pong"  # the connection stays
    stored = [m["body"] for m in (await history(client, alice, room))["items"]]
    assert stored == ["first", "a", "b", "c"]
    assert "the database refused this one" in caplog.text


async def test_sends_over_the_rate_in_one_batch_are_refused_in_place_and_take_no_seq(
        live_server: str, client: Any, users: Any, node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from roomcast.ratelimit import RateLimiter

    alice = await users.create("member")
    room = (await make_group(client, alice))["id"]
    node.send_limiter = RateLimiter(rate_per_s=0.01, burst=3)
    # As in the test above: the first commit waits until every other send is queued, so the
    # rest go to the rate limiter, then the committer, as one batch.
    all_sent = trio.Event()
    batches = gate_first_batch(monkeypatch, all_sent)
    async with ws_connect(live_server, alice.token) as ws:
        bodies = ["first", "a", "b", "c", "d"]
        for n, body in enumerate(bodies):
            await ws.send({"type": "send", "room": room, "body": body, "ref": f"s{n}"})
            if n == 0:
                await ws.request({"type": "ping"})
        await ws.request({"type": "ping"})
        assert not ws.pending
        all_sent.set()
        frames: list[str] = []  # the frames that answer sends (others, such as notices, may come between)
        while "s4" not in "".join(frames):
            frame = await ws.ws.get_message()
            ws.pending.extend(json.loads(line) for line in frame.split("\n"))
            if '"ref"' in frame:
                frames.append(frame)
        # The first send's ack, then the answers of the batch after it, together in one frame.
        assert [[json.loads(line).get("ref") for line in frame.split("\n")] for frame in frames] == [
            ["s0"], ["s1", "s2", "s3", "s4"]]
        answers = [await ws.until_ref(f"s{n}") for n in range(len(bodies))]
        assert batches == [["first"], ["a", "b"]]  # the budget of 3: "c" and "d" never reach the committer
        assert [answer["type"] for answer in answers] == ["ack", "ack", "ack", "error", "error"], answers
        assert all(answer["code"] == "rate_limited" and answer["retry_after"] > 0 for answer in answers[3:])
        assert [answer["message"]["seq"] for answer in answers[:3]] == [1, 2, 3]
    stored = [m["body"] for m in (await history(client, alice, room))["items"]]
    assert stored == ["first", "a", "b"]


async def test_a_flood_of_sends_over_the_rate_closes_the_connection_1008(
        live_server: str, client: Any, users: Any, node: Any) -> None:
    from roomcast.ratelimit import RateLimiter

    alice = await users.create("member")
    room = (await make_group(client, alice))["id"]
    node.send_limiter = RateLimiter(rate_per_s=0.01, burst=1)
    async with ws_connect(live_server, alice.token) as ws:
        for n in range(40):
            try:
                await ws.send({"type": "send", "room": room, "body": f"{n}"})
            except ConnectionClosed:  # the server's close may overtake our last frames
                break
        with pytest.raises(ConnectionClosed) as caught, trio.fail_after(10):
            while True:
                await ws.event()
    assert caught.value.reason.code == 1008
    assert [m["body"] for m in (await history(client, alice, room))["items"]] == ["0"]


def session_of(node: Any, user: Any) -> Any:
    from roomcast.actors.notices import Audience

    [session] = list(node.notices.recipients(Audience((user.id,))))
    return session


def pipeline_tasks(session: Any) -> list[str]:
    return [task.name for task in session._nursery.child_tasks if "SendPipeline" in task.name]


async def test_a_batch_in_the_committer_has_no_task_of_the_session_waiting_for_it(
        live_server: str, client: Any, users: Any, node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from roomcast.ratelimit import RateLimiter
    from tests.ws.test_group_commit import hold_commits

    alice = await users.create("member")
    room = (await make_group(client, alice))["id"]
    node.send_limiter = RateLimiter(rate_per_s=100, burst=100)  # tokens at once (no Redis round trip)
    gate = hold_commits(node, monkeypatch)
    async with ws_connect(live_server, alice.token) as ws:
        for n in range(3):
            await ws.send({"type": "send", "room": room, "body": f"m{n}", "ref": f"s{n}"})
        assert (await ws.request({"type": "ping"}))["type"] == "pong"  # all three read and queued
        session = session_of(node, alice)
        assert session._sends._busy and pipeline_tasks(session) == []  # the committer will call back
        gate.set()
        answers = [await ws.until_ref(f"s{n}") for n in range(3)]
        assert [answer["type"] for answer in answers] == ["ack"] * 3
        assert [answer["message"]["seq"] for answer in answers] == [1, 2, 3]
        assert not session._sends._busy and pipeline_tasks(session) == []


class _SlowLimiter:
    """A limiter whose every answer needs a round trip (as Redis's without a lease), held until `gate`."""

    def __init__(self, gate: trio.Event) -> None:
        self.gate = gate
        self.asked: list[int] = []

    async def acquire(self, key: int) -> None:
        await self.take(key, 1)

    async def take(self, key: int, count: int) -> list[float]:
        self.asked.append(count)
        await self.gate.wait()
        return [0.0] * count

    def take_if_ready(self, key: int, count: int) -> list[float] | None:
        return None


async def test_tokens_that_need_a_round_trip_are_waited_for_in_a_task_and_sends_keep_their_order(
        live_server: str, client: Any, users: Any, node: Any) -> None:
    alice = await users.create("member")
    room = (await make_group(client, alice))["id"]
    gate = trio.Event()
    node.send_limiter = limiter = _SlowLimiter(gate)
    async with ws_connect(live_server, alice.token) as ws:
        for n in range(4):
            await ws.send({"type": "send", "room": room, "body": f"m{n}", "ref": f"s{n}"})
        assert (await ws.request({"type": "ping"}))["type"] == "pong"  # the reader is not held
        session = session_of(node, alice)
        assert pipeline_tasks(session) == ["roomcast.http.ws.sends.SendPipeline._send_after_tokens"]
        gate.set()
        answers = [await ws.until_ref(f"s{n}") for n in range(4)]
        assert [answer["message"]["seq"] for answer in answers] == [1, 2, 3, 4]
        assert limiter.asked == [1, 3]  # the first alone, then what piled up meanwhile
    stored = [m["body"] for m in (await history(client, alice, room))["items"]]
    assert stored == ["m0", "m1", "m2", "m3"]


async def test_an_answer_that_fails_ends_its_session_and_leaves_the_committer_serving_others(
        live_server: str, client: Any, users: Any, node: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from roomcast.ratelimit import RateLimiter

    alice = await users.create("member")
    bob = await users.create("member")
    room = (await make_group(client, alice, [bob]))["id"]
    node.send_limiter = RateLimiter(rate_per_s=100, burst=100)
    real_answer = sends._answer

    def answer(ref: str | None, outcome: Any) -> bytes:
        if ref == "doomed":
            raise RuntimeError("a bug while answering")
        return real_answer(ref, outcome)

    monkeypatch.setattr(sends, "_answer", answer)
    async with ws_connect(live_server, alice.token) as doomed, ws_connect(live_server, bob.token) as other:
        await doomed.send({"type": "send", "room": room, "body": "stored all the same", "ref": "doomed"})
        with pytest.raises(ConnectionClosed) as closed, trio.fail_after(10):
            while True:
                await doomed.event()
        assert closed.value.reason.code == 1011
        for n in range(3):
            assert (await other.request({"type": "send", "room": room, "body": f"b{n}"}))["type"] == "ack"
    assert "a bug while answering" in caplog.text
    stored = [m["body"] for m in (await history(client, alice, room))["items"]]
    assert stored == ["stored all the same", "b0", "b1", "b2"]


async def test_sends_read_before_a_frame_that_waits_are_not_held_behind_it(
        live_server: str, client: Any, users: Any, node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from roomcast.services import live

    alice = await users.create("member")
    rooms = [(await make_group(client, alice, name=f"r{n}"))["id"] for n in range(3)]
    gates = {rooms[1]: trio.Event(), rooms[2]: trio.Event()}
    real_join = live.join_room

    async def join_room(node: Any, session: Any, room_id: int, *args: Any, **kwargs: Any) -> Any:
        if room_id in gates:
            await gates[room_id].wait()
        return await real_join(node, session, room_id, *args, **kwargs)

    monkeypatch.setattr(live, "join_room", join_room)
    async with ws_connect(live_server, alice.token) as ws:
        await ws.send({"type": "subscribe", "room": rooms[1], "ref": "j1"})  # the reader waits in it
        # Meanwhile a send and another held join arrive: the reader takes both in one read.
        await ws.send({"type": "send", "room": rooms[0], "body": "not held", "ref": "s1"})
        await ws.send({"type": "subscribe", "room": rooms[2], "ref": "j2"})
        gates[rooms[1]].set()
        assert (await ws.until_ref("j1"))["type"] == "subscribed"
        ack = await ws.until_ref("s1")  # while the second join still waits
        assert ack["type"] == "ack" and not gates[rooms[2]].is_set()
        gates[rooms[2]].set()
        assert (await ws.until_ref("j2"))["type"] == "subscribed"


async def test_sends_not_yet_handed_over_when_the_client_leaves_are_dropped(
        live_server: str, client: Any, users: Any, node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from roomcast.actors.notices import Audience
    from roomcast.ratelimit import RateLimiter
    from tests.helpers import eventually
    from tests.ws.test_group_commit import hold_commits

    alice = await users.create("member")
    room = (await make_group(client, alice))["id"]
    node.send_limiter = RateLimiter(rate_per_s=100, burst=100)
    gate = hold_commits(node, monkeypatch)
    committer = messaging.committer(node)
    before = committer.messages
    async with ws_connect(live_server, alice.token) as ws:
        await ws.send({"type": "send", "room": room, "body": "handed over", "ref": "s0"})
        assert (await ws.request({"type": "ping"}))["type"] == "pong"  # s0 is in the committer, held
        for n in (1, 2):
            await ws.send({"type": "send", "room": room, "body": f"pending {n}", "ref": f"s{n}"})
        assert (await ws.request({"type": "ping"}))["type"] == "pong"  # read, waiting behind s0
    await eventually(lambda: not list(node.notices.recipients(Audience((alice.id,)))))  # the session ended
    gate.set()
    # A batch handed over from its answer's callback would be in the committer by the time it is idle.
    await eventually(lambda: committer.messages > before and not committer._open and not committer._outstanding
                     and not committer.actor.backlog)
    assert committer.messages == before + 1
    assert [m["body"] for m in (await history(client, alice, room))["items"]] == ["handed over"]


async def test_a_session_sends_to_the_node_s_new_committer_once_the_old_one_ended_for_good(
        live_server: str, client: Any, users: Any, node: Any) -> None:
    from tests.helpers import eventually

    alice = await users.create("member")
    room = (await make_group(client, alice))["id"]
    async with ws_connect(live_server, alice.token) as ws:
        assert (await ws.request({"type": "send", "room": room, "body": "one"}))["type"] == "ack"
        old = messaging.committer(node)
        old.actor.stop("replaced in a test")
        await eventually(lambda: old.actor.terminated.is_set())
        assert (await ws.request({"type": "send", "room": room, "body": "two"}))["type"] == "ack"
        new = messaging.committer(node)
        assert new is not old and new.messages == 1
    assert [m["body"] for m in (await history(client, alice, room))["items"]] == ["one", "two"]
