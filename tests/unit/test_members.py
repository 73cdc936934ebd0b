"""Indexes of small groups (roomcast/members.py): a lone member bare, a set from the second on."""

from __future__ import annotations

from roomcast import members


def test_a_group_is_its_member_while_alone_and_a_set_beyond() -> None:
    index: dict[int, str | set[str]] = {}
    members.add(index, 1, "a")
    members.add(index, 1, "a")  # once, however often
    assert index == {1: "a"} and members.count(index, 1) == 1 and members.members(index, 1) == ["a"]
    members.add(index, 1, "b")
    assert index == {1: {"a", "b"}} and members.count(index, 1) == 2
    assert sorted(members.members(index, 1)) == ["a", "b"]
    assert not members.discard(index, 1, "c") and not members.discard(index, 2, "a")
    assert members.discard(index, 1, "a")
    assert index == {1: "b"}  # alone again: bare
    assert not members.discard(index, 1, "a")
    assert members.discard(index, 1, "b")
    assert index == {} and members.count(index, 1) == 0 and members.members(index, 1) == []
