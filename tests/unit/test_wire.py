"""The one encoder: what is encoded once and reused gives the same bytes as encoding the whole event."""

from __future__ import annotations

import json

import pytest

from roomcast.wire import (
    encode,
    encode_members,
    encode_text,
    encode_with_members,
    message_event,
    message_event_around_id,
    send_ack,
)


def test_an_event_with_encoded_members_is_the_event_encoded_whole() -> None:
    snapshot = {"online": [{"id": 1, "username": "ana", "display_name": "Ana ✓"}], "online_count": 1}
    head = {"type": "subscribed", "ref": "s", "room": 7, "last_seq": 3}
    data = encode_with_members(head, encode_members(snapshot))
    assert data == encode({**head, **snapshot})
    assert json.loads(data) == {**head, **snapshot}
    assert encode_with_members({}, encode_members(snapshot)) == encode(snapshot)


_MESSAGE = {"id": 41, "room_id": 7, "seq": 12, "sender": {"id": 3, "username": "ana", "display_name": "Ana \u2713"},
            "body": 'quote " backslash \\ newline \n emoji \U0001f44b', "reply_to": None, "attachments": [],
            "client_id": "c-1", "created_at": "2026-12-02T10:00:00.000Z"}


@pytest.mark.parametrize("ref", [None, "r1", 'a "quoted" ref ✓'])
def test_an_ack_cut_from_the_stored_event_is_the_ack_encoded_whole(ref: str | None) -> None:
    whole = encode({"type": "ack", "message": _MESSAGE} if ref is None else
                   {"type": "ack", "ref": ref, "message": _MESSAGE})
    stored = encode(message_event(7, 12, _MESSAGE))
    assert send_ack(ref, _MESSAGE, stored) == whole
    assert send_ack(ref, _MESSAGE) == whole
    assert json.loads(whole)["message"] == _MESSAGE


def test_an_ack_whose_stored_event_is_of_another_message_is_encoded_whole() -> None:
    other = encode(message_event(7, 13, {**_MESSAGE, "seq": 13}))
    assert send_ack("r", _MESSAGE, other) == encode({"type": "ack", "ref": "r", "message": _MESSAGE})


def test_a_message_event_is_encoded_around_the_id_it_will_get() -> None:
    message = {"id": 0, "room_id": 3, "seq": 7, "body": 'hé "quoted" \u2028', "reply_to": None}
    head, tail = message_event_around_id(3, 7, message)
    for message_id in (1, 42, 9_007_199_254_740_993):  # past a double's exact integers too
        assert head + str(message_id) + tail == encode_text(message_event(3, 7, {**message, "id": message_id}))


def test_only_a_message_with_its_id_first_and_still_zero_is_encoded_around_it() -> None:
    with pytest.raises(ValueError):
        message_event_around_id(3, 7, {"id": 5, "body": "x"})
    with pytest.raises(ValueError):
        message_event_around_id(3, 7, {"body": "x", "id": 0})
