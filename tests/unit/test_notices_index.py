"""The notices hub's index of sessions by user, tenant and role, and how it reads a notice's audience."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest

from roomcast.actors.notices import Audience, NoticesHub
from roomcast.actors.stream_reader import StreamReader
from roomcast.storage.streams import MemoryStreamBackend
from roomcast.wire import JsonObject


class Inbox:
    def __init__(self, name: str, fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.got: list[JsonObject] = []

    def notice(self, event: JsonObject, data: bytes) -> None:
        if self.fail:
            raise RuntimeError("broken session")
        assert json.loads(data) == event
        self.got.append(event)

    def __repr__(self) -> str:
        return self.name


def hub() -> NoticesHub:
    backend = MemoryStreamBackend()
    return NoticesHub(backend, StreamReader(backend))


def names(found: Iterable[object]) -> list[str]:
    return sorted(repr(session) for session in found)


def test_an_audience_selects_by_tenant_role_and_user_each_session_once() -> None:
    notices = hub()
    t1, t2, tu, st, foreign = Inbox("t1"), Inbox("t2"), Inbox("tu"), Inbox("st"), Inbox("foreign")
    notices.add(1, t1, tenant="a", role="teacher")
    notices.add(1, t2, tenant="a", role="teacher")  # the same user's second connection
    notices.add(2, tu, tenant="a", role="tutor")
    notices.add(3, st, tenant="a", role="student")
    notices.add(4, foreign, tenant="b", role="teacher")
    assert names(notices.recipients(Audience((), "a", ("teacher", "tutor")))) == ["t1", "t2", "tu"]
    assert names(notices.recipients(Audience((), "a"))) == ["st", "t1", "t2", "tu"]
    assert names(notices.recipients(Audience((3, 4, 1), "a", ("teacher",)))) == ["st", "t1", "t2"]
    assert names(notices.recipients(Audience((4,), "a"))) == []  # a user of another tenant
    assert names(notices.recipients(Audience((4, 3)))) == ["foreign", "st"]  # by user: any tenant
    assert names(notices.recipients(Audience((), "nobody"))) == []


def test_removing_a_session_empties_every_index() -> None:
    notices = hub()
    one, other = Inbox("one"), Inbox("other")
    notices.add(1, one, tenant="a", role="teacher")
    notices.add(1, other)  # added without tenant and role: reached by user only
    assert names(notices.recipients(Audience((), "a"))) == ["one"]
    notices.remove(1, one)
    notices.remove(1, other)
    notices.remove(1, other)  # twice is harmless
    assert notices.describe()["sessions"] == 0 and notices.describe()["users"] == 0
    assert list(notices.recipients(Audience((), "a"))) == [] and notices.sessions_of(1) == 0


def test_a_failing_session_does_not_keep_a_notice_from_the_others() -> None:
    notices = hub()
    sessions = [Inbox(f"s{n}", fail=n == 1) for n in range(3)]
    for n, session in enumerate(sessions):
        notices.add(10 + n, session, tenant="a", role="tutor")
    notices._deliver(json.dumps({**Audience((), "a", ("tutor",)).to_wire(), "event": {"type": "broadcast"}}).encode())
    assert [len(session.got) for session in sessions] == [1, 0, 1]
    assert notices.describe()["failed"] == 1


@pytest.mark.parametrize("notice", [
    b"not json",
    b'{"event": {"type": "x"}}',
    b'{"to": "1", "event": {"type": "x"}}',
    b'{"to": [true], "event": {"type": "x"}}',
    b'{"to": [1], "event": "x"}',
    b'{"tenant": 5, "roles": [], "users": [], "event": {}}',
    b'{"tenant": "a", "roles": [1], "users": [], "event": {}}',
    b'{"tenant": "a", "roles": [], "users": ["1"], "event": {}}',
    b'{"tenant": "a", "users": [], "event": {}}',
])
def test_an_unreadable_notice_is_skipped(notice: bytes) -> None:
    notices = hub()
    inbox = Inbox("x")
    notices.add(1, inbox, tenant="a", role="teacher")
    notices._deliver(notice)
    assert inbox.got == []
    notices._deliver(json.dumps({"to": [1], "event": {"type": "room_removed", "room": 3}}).encode())
    assert inbox.got == [{"type": "room_removed", "room": 3}]
