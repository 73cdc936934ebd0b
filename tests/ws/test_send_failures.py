"""A send that fails unexpectedly fails alone: the others committed with it are stored and acked."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed

from roomcast.http.ws import sends
from tests.chat_helpers import curse, history, make_group
from tests.ws_client import ws_connect


async def test_one_failing_send_of_a_batch_leaves_the_others_committed_and_acked(
        live_server: str, client: Any, users: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    alice = await users.create("member")
    room = (await make_group(client, alice))["id"]
    curse(monkeypatch)
    # The first send's commit waits until the client has sent everything else, so the
    # rest pile up behind it and go to the database as one batch (sends.MAX_BATCH is well above 4).
    all_sent = trio.Event()
    real_send_drafts = sends.send_drafts
    batches: list[list[str]] = []

    async def send_drafts(node: Any, user: Any, drafts: Any) -> Any:
        batches.append([draft.body for draft in drafts])
        if len(batches) == 1:
            await all_sent.wait()
        return await real_send_drafts(node, user, drafts)

    monkeypatch.setattr(sends, "send_drafts", send_drafts)
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
    real_send_drafts = sends.send_drafts
    batches: list[list[str]] = []

    async def send_drafts(node: Any, user: Any, drafts: Any) -> Any:
        batches.append([draft.body for draft in drafts])
        if len(batches) == 1:
            await all_sent.wait()
        return await real_send_drafts(node, user, drafts)

    monkeypatch.setattr(sends, "send_drafts", send_drafts)
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


async def test_the_send_task_stays_while_sends_come_and_ends_at_a_heartbeat_once_idle(
        live_server: str, client: Any, users: Any, node: Any) -> None:
    from roomcast.actors.notices import Audience
    from tests.helpers import eventually

    alice = await users.create("member")
    room = (await make_group(client, alice))["id"]
    async with ws_connect(live_server, alice.token) as ws:
        assert (await ws.request({"type": "send", "room": room, "body": "one"}))["type"] == "ack"
        [session] = list(node.notices.recipients(Audience((alice.id,))))
        pipeline = session._sends
        assert pipeline._running and pipeline._parked is not None  # idle, waiting for the next send
        assert (await ws.request({"type": "send", "room": room, "body": "two"}))["type"] == "ack"
        session.heartbeat(trio.current_time(), node.settings.heartbeat_s)  # it finds the task idle
        await eventually(lambda: not pipeline._running)
        assert (await ws.request({"type": "send", "room": room, "body": "three"}))["type"] == "ack"
        assert pipeline._running  # a new task for the new send
    assert [m["body"] for m in (await history(client, alice, room))["items"]] == ["one", "two", "three"]
