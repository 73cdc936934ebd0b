"""Client frames that must get an `error` frame, never a 1011: out-of-range ids, odd JSON, odd `ref`.

Every case is sent over a real socket on both stacks; after each the connection must
still answer a ping.
"""

from __future__ import annotations

import json
from typing import Any

from tests.chat_helpers import make_group, send
from tests.ws_client import WsClient, ws_connect

MAX_ID = 2**63 - 1
BEYOND = 2**63  # one past the database's BIGINT
ANSWERS = {"error", "pong", "subscribed", "unsubscribed", "ack"}


async def answer_to(ws: WsClient, frame: dict[str, Any] | str) -> dict[str, Any]:
    """Send `frame` (a dict, or raw text), then a ping; the one answer that came before the pong.

    Room events and notices (a `room_added` may trail the room's creation) are not answers.
    """
    await (ws.send(frame) if isinstance(frame, dict) else ws.ws.send_message(frame))
    before: list[dict[str, Any]] = []
    await ws.send({"type": "ping", "ref": "after"})
    while (event := await ws.event())["type"] != "pong" or event.get("ref") != "after":
        if event["type"] in ANSWERS:
            before.append(event)
    assert len(before) == 1, (frame, before)
    return before[0]


async def test_ids_beyond_the_database_range_are_validation_errors(live_server: str, client: Any,
                                                                  users: Any) -> None:
    alice = await users.create("member")
    room = (await make_group(client, alice))["id"]
    message = (await send(client, alice, room, "to reply to"))["id"]
    frames = [
        {"type": "subscribe", "room": BEYOND},
        {"type": "subscribe", "room": room, "since": BEYOND},
        {"type": "unsubscribe", "room": BEYOND},
        {"type": "send", "room": BEYOND, "body": "hi"},
        {"type": "send", "room": room, "body": "hi", "reply_to": BEYOND},
        {"type": "send", "room": room, "body": "hi", "attachments": [BEYOND]},
        {"type": "send", "room": room, "body": "hi", "attachments": [1, -BEYOND]},
        {"type": "typing", "room": BEYOND, "state": True},
        {"type": "read", "room": BEYOND, "seq": 1},
        {"type": "read", "room": room, "seq": BEYOND},
        {"type": "subscribe", "room": -BEYOND},
        {"type": "read", "room": room, "seq": 10**30},
    ]
    async with ws_connect(live_server, alice.token) as ws:
        for n, frame in enumerate(frames):
            error = await answer_to(ws, {**frame, "ref": f"f{n}"})
            answer = (error["type"], error["code"], error["ref"])
            assert answer == ("error", "validation_error", f"f{n}"), (frame, error)
        # The largest id is in range: the rules decide, as for any id.
        for frame, code in [({"type": "subscribe", "room": MAX_ID}, "not_found"),
                            ({"type": "typing", "room": MAX_ID, "state": False}, "not_found"),
                            ({"type": "read", "room": MAX_ID, "seq": MAX_ID}, "not_found")]:
            assert (await answer_to(ws, frame))["code"] == code, frame
        reply = await ws.request({"type": "send", "room": room, "body": "still sending", "reply_to": message})
        assert reply["type"] == "ack" and reply["message"]["reply_to"] == message, reply


async def test_a_number_too_long_for_python_is_a_validation_error(live_server: str, users: Any) -> None:
    alice = await users.create("member")
    async with ws_connect(live_server, alice.token) as ws:
        for text in ('{"type":"ping","ref":"long","n":' + "9" * 5000 + "}",
                     '{"type":"read","room":' + "1" * 5000 + ',"seq":1}'):
            error = await answer_to(ws, text)
            assert (error["type"], error["code"]) == ("error", "validation_error"), error


async def test_json_nested_too_deeply_is_an_error(live_server: str, users: Any) -> None:
    alice = await users.create("member")
    async with ws_connect(live_server, alice.token) as ws:
        for text in ('{"type":"ping","x":' + "[" * 20_000 + "]" * 20_000 + "}",
                     '{"type":"ping","x":' + "[" * 30_000 + "]" * 30_000 + "}",
                     '{"a":' * 10_000 + "1" + "}" * 10_000):
            error = await answer_to(ws, text)
            assert (error["type"], error["code"]) == ("error", "validation_error"), error


async def test_a_ref_that_is_not_valid_unicode_or_too_long_is_refused_without_echo(live_server: str,
                                                                                   users: Any) -> None:
    alice = await users.create("member")
    async with ws_connect(live_server, alice.token) as ws:
        for text in ('{"type":"ping","ref":"\\ud800"}', '{"type":"ping","ref":"a\\udfff"}',
                     '{"type":"send","room":1,"body":"x","ref":"\\udbff\\udbff"}',
                     json.dumps({"type": "ping", "ref": "r" * 257})):
            error = await answer_to(ws, text)
            assert (error["type"], error["code"]) == ("error", "validation_error") and "ref" not in error, error
        # A well-formed pair is one character and fine; so is a ref of the longest length.
        assert await answer_to(ws, '{"type":"ping","ref":"\\ud83d\\ude00"}') == {"type": "pong", "ref": "😀"}
        assert await answer_to(ws, json.dumps({"type": "ping", "ref": "r" * 256})) == {"type": "pong",
                                                                                       "ref": "r" * 256}


async def test_an_error_for_a_frame_without_a_usable_type_echoes_its_ref(live_server: str, users: Any) -> None:
    alice = await users.create("member")
    async with ws_connect(live_server, alice.token) as ws:
        for frame in ({"ref": "no-type"}, {"type": 5, "ref": "int-type"}, {"type": None, "ref": "null-type"},
                      {"type": "dance", "ref": "unknown"}, {"type": "subscribe", "ref": "no-room"}):
            error = await answer_to(ws, frame)
            assert error["type"] == "error" and error["ref"] == frame["ref"], (frame, error)
        long_type = await answer_to(ws, {"type": "x" * 60_000, "ref": "long-type"})
        assert long_type["code"] == "unknown_type" and len(long_type["message"]) < 200, long_type


async def test_a_validation_error_names_its_field_in_details(live_server: str, client: Any, users: Any) -> None:
    alice = await users.create("member")
    room = (await make_group(client, alice))["id"]
    # Refused by the frame check, by the handler's rules before the database, and by the committer.
    cases = [
        ({"type": "subscribe", "room": room, "presence": 5}, "presence"),
        ({"type": "read", "room": room, "seq": -1}, "seq"),
        ({"type": "send", "room": "x", "body": "hi"}, "room"),
        ({"type": "send", "room": room, "body": "hi", "client_id": ""}, "client_id"),
        ({"type": "send", "room": room, "body": "a\u0000b"}, "body"),
        ({"type": "send", "room": room, "body": "hi", "attachments": [MAX_ID]}, None),
    ]
    async with ws_connect(live_server, alice.token) as ws:
        for frame, field in cases:
            error = await ws.request(frame)  # a send is answered after the commit: wait for its ref
            assert (error["type"], error["code"]) == ("error", "validation_error"), error
            if field is not None:
                assert error["details"]["field"] == field, (frame, error)
            else:
                assert error["details"], (frame, error)
        ping = await answer_to(ws, {"type": "ping", "ref": "p"})
        assert ping == {"type": "pong", "ref": "p"} and "details" not in ping
