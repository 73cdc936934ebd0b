"""A send that fails unexpectedly fails alone: the others committed with it are stored and acked."""

from __future__ import annotations

from typing import Any

import pytest
import trio

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
