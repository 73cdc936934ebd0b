"""Messages carry their attachments everywhere: REST and /ws sends, /ws events, catch-up and history."""

from __future__ import annotations

from typing import Any

import httpx

from tests.chat_helpers import history, make_group, room_of
from tests.ws_client import ws_connect

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)


async def _upload(http: httpx.AsyncClient, user: Any, room_id: int, name: str) -> dict[str, Any]:
    response = await http.post(f"/api/rooms/{room_id}/attachments", headers=user.headers,
                               files={"file": (name, PNG, "image/png")})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_ws_and_rest_sends_carry_attachments_to_events_catch_up_and_history(live_server: str, client: Any,
                                                                                  users: Any) -> None:
    alice, bob = await users.create("member"), await users.create("member")
    room = (await make_group(client, alice, [bob]))["id"]
    async with httpx.AsyncClient(base_url=live_server, timeout=60) as http, \
            ws_connect(live_server, bob.token) as watcher, ws_connect(live_server, alice.token) as sender:
        await watcher.subscribe(room)
        first, second = await _upload(http, alice, room, "a.png"), await _upload(http, alice, room, "b.png")

        ack = await sender.request({"type": "send", "room": room, "body": "two files",
                                    "attachments": [second["id"], first["id"]]})
        assert ack["type"] == "ack", ack
        assert ack["message"]["attachments"] == [first, second]  # in upload order
        event = await watcher.until("message")
        assert event["message"] == ack["message"]

        third = await _upload(http, alice, room, "c.png")
        response = await http.post(f"/api/rooms/{room}/messages", headers=alice.headers,
                                   json={"body": "", "attachments": [third["id"]]})
        assert response.status_code == 201 and response.json()["attachments"] == [third]
        assert (await watcher.until("message"))["message"]["attachments"] == [third]

        # An attachment is sent once; an unknown id, or another's upload, is refused alike.
        for ids in ([first["id"]], [987654321]):
            refused = await sender.request({"type": "send", "room": room, "body": "again", "attachments": ids})
            assert refused["type"] == "error" and refused["code"] == "validation_error", refused
        bobs = await _upload(http, bob, room, "bob.png")
        refused = await sender.request({"type": "send", "room": room, "body": "x", "attachments": [bobs["id"]]})
        assert refused["code"] == "validation_error"

    items = (await history(client, bob, room))["items"]
    assert [m["attachments"] for m in items] == [[first, second], [third]]
    assert (await room_of(client, bob, room))["last_message"]["attachments"] == [third]
    async with ws_connect(live_server, bob.token) as late:  # a catch-up carries them too
        await late.subscribe(room, since=0)
        caught_up = await late.collect("message", 2)
        assert [e["message"]["attachments"] for e in caught_up] == [[first, second], [third]]


async def test_ws_and_rest_refuse_alike_a_list_of_more_than_ten_attachment_ids_repeats_included(
        live_server: str, client: Any, users: Any) -> None:
    alice = await users.create("member")
    room = (await make_group(client, alice, []))["id"]
    async with httpx.AsyncClient(base_url=live_server, timeout=60) as http, \
            ws_connect(live_server, alice.token) as sender:
        upload = await _upload(http, alice, room, "a.png")
        ids = [upload["id"]] * 11
        response = await http.post(f"/api/rooms/{room}/messages", headers=alice.headers,
                                   json={"body": "x", "attachments": ids})
        assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error"
        refused = await sender.request({"type": "send", "room": room, "body": "x", "attachments": ids})
        assert refused["type"] == "error" and refused["code"] == "validation_error", refused
        assert refused["details"]["field"] == "attachments"
        # Repeats within the limit are one attachment, over REST as over /ws.
        ack = await sender.request({"type": "send", "room": room, "body": "x", "attachments": ids[:2]})
        assert ack["type"] == "ack" and ack["message"]["attachments"] == [upload], ack
