"""The one encoder: shared members encoded once give the same bytes as encoding the whole event."""

from __future__ import annotations

import json

from roomcast.wire import encode, encode_members, encode_with_members


def test_an_event_with_encoded_members_is_the_event_encoded_whole() -> None:
    snapshot = {"online": [{"id": 1, "username": "ana", "display_name": "Ana ✓"}], "online_count": 1}
    head = {"type": "subscribed", "ref": "s", "room": 7, "last_seq": 3}
    data = encode_with_members(head, encode_members(snapshot))
    assert data == encode({**head, **snapshot})
    assert json.loads(data) == {**head, **snapshot}
    assert encode_with_members({}, encode_members(snapshot)) == encode(snapshot)
