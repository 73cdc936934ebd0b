"""ReadOrder: which transient events a room actor drops as stale reads."""

from __future__ import annotations

from roomcast.actors.read_order import ReadOrder
from roomcast.wire import encode


def _read(user: object, seq: object) -> bytes:
    return encode({"type": "read", "room": 1, "user": {"id": user, "username": "u"}, "seq": seq})


def test_only_a_read_not_past_the_users_newest_is_stale() -> None:
    order = ReadOrder()
    assert not order.stale(_read(1, 4))
    assert order.stale(_read(1, 4)) and order.stale(_read(1, 2))
    assert not order.stale(_read(2, 1))  # each user on their own
    assert not order.stale(_read(1, 5))


def test_anything_else_passes() -> None:
    order = ReadOrder()
    assert not order.stale(_read(1, 9))
    for other in (encode({"type": "typing", "room": 1, "user": 1, "seq": 1}), b'{"type":"read",', b"\xff",
                  _read("1", 1), _read(1, "1"), _read(1, None), encode({"type": "read", "room": 1})):
        assert not order.stale(other)
