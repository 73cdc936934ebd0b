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


USE_REQUEST = """async ([token, roomId]) => {
    const { request, RoomcastClient, RoomcastError } = await import("/sdk/roomcast.js");
    const room = await request("GET", `/api/rooms/${roomId}`, undefined, token);
    const refusal = async (call) => {
        try { await call(); return null; } catch (err) {
            const { status, code, transient } = err;
            return { error: err instanceof RoomcastError, status, code, transient };
        }
    };
    const client = new RoomcastClient({ token: () => "not a token", storage: null });
    let authfailed = 0;
    client.on("authfailed", () => { authfailed += 1; });
    return {
        name: room.name,
        missing: await refusal(() => request("GET", "/api/rooms/987654", undefined, token)),
        unsigned: await refusal(() => client.request("GET", "/api/me")),
        authfailed,
        unreachable: await refusal(() => request("GET", "http://127.0.0.1:9/api/me")),
    };
}"""


def test_the_sdk_request_works_without_a_client_and_rejects_with_roomcast_errors(
        server: ServerProcess, open_page: Any) -> None:
    alice = server.create_user("alice")
    room = server.group(alice, "Requests")
    result = open_page().evaluate(USE_REQUEST, [alice.token, room["id"]])
    assert result["name"] == "Requests"
    assert result["missing"] == {"error": True, "status": 404, "code": "not_found", "transient": False}
    assert result["unsigned"] == {"error": True, "status": 401, "code": "unauthorized", "transient": False}
    assert result["authfailed"] == 1  # a client's 401 also tells its listeners
    assert result["unreachable"] == {"error": True, "status": 0, "code": "network", "transient": True}
