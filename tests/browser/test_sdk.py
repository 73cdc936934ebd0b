"""The connection SDK (/sdk/roomcast.js) on its own, as another web app would use it."""

from __future__ import annotations

from typing import Any

import pytest

from .harness import ServerProcess

pytestmark = pytest.mark.browser

USE_SDK = """async ([token, roomId]) => {
    const { RoomcastClient, splitFrame } = await import("/sdk/roomcast.js");
    const seen = [];
    const client = new RoomcastClient({ token: () => token, storage: null });
    client.on("message", (event) => seen.push(event.message.body));
    const opened = new Promise((resolve) => client.on("status", ({ status }) => status === "open" && resolve()));
    client.start();
    await opened;
    client.subscribe(roomId, 0);  // since 0: everything stored, then live
    const sent = new Promise((resolve) => client.on("sent", ({ message }) => resolve(message)));
    client.send(roomId, "from the SDK");
    const message = await sent;
    while (seen.length < 2) await new Promise((r) => setTimeout(r, 20));
    client.stop();
    return { seen, id: message.id, status: client.status, pending: client.pending().length,
             split: splitFrame('{"type":"a"}\\n{"type":"b"}\\nnot json\\n').map((e) => e.type) };
}"""


def test_the_sdk_connects_replays_with_since_sends_through_the_outbox_and_splits_frames(
        server: ServerProcess, open_page: Any) -> None:
    alice = server.create_user("alice")
    bob = server.create_user("bob")
    room = server.group(alice, "SDK", bob)
    server.send(alice, room["id"], "stored before")
    page = open_page()
    result = page.evaluate(USE_SDK, [bob.token, room["id"]])
    assert result["seen"] == ["stored before", "from the SDK"]  # the replay, then the live event: once each
    assert result["status"] == "idle" and result["pending"] == 0
    assert result["split"] == ["a", "b"]
    items = server.api("GET", f"/api/rooms/{room['id']}/messages", bob).json()["items"]
    assert [m["body"] for m in items] == ["stored before", "from the SDK"]
    assert items[1]["id"] == result["id"]
