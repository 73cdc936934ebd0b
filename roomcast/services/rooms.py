"""Rooms: listing, direct and group chats, settings, members and provisioning (PROTOCOL §3)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from ..errors import BadRequest, Forbidden, NotFound
from ..node import Node
from ..storage.attachments import attachments_of
from ..storage.events import append_event, take_next_seq
from ..storage.models import Room, User
from ..storage.rooms import (
    RoomRow,
    add_membership,
    delete_room,
    direct_key,
    find_direct_room,
    find_room_by_ref,
    insert_room,
    members_of,
    remove_memberships,
    room_memberships,
    room_row,
    tenant_users,
    user_room_rows,
)
from ..storage.users import UserSnapshot
from ..timestamps import utcnow
from ..wire import member_to_wire, message_to_wire, room_to_wire, room_updated_event
from .access import is_admin, open_room
from .announcements import CREATED, DELETED, note_membership, write_and_announce
from .text import check_external_ref, check_room_name, require_storable
from .webhook_events import enqueue

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

RoomKeyset = tuple[int, int]  # (last activity in µs since the epoch, room id): where a page ends


# --------------------------------------------------------------------------- views


def room_views(session: Session, rows: Sequence[RoomRow]) -> list[dict[str, Any]]:
    """Wire rooms for `rows`, with two more queries however many rows and members there are."""
    members = members_of(session, [row.room.id for row in rows])
    attachments = attachments_of(session, [row.last_message.id for row in rows if row.last_message])
    views = []
    for row in rows:
        last = None
        if row.last_message is not None and row.last_sender is not None:
            last = message_to_wire(row.last_message, row.last_sender, attachments.get(row.last_message.id, ()))
        people = [member_to_wire(user, room_role) for user, room_role in members.get(row.room.id, ())]
        views.append(room_to_wire(row.room, people, last, row.unread_count))
    return views


def room_view(session: Session, caller: UserSnapshot, room_id: int) -> dict[str, Any]:
    """The wire room as `caller` sees it, read fresh in this transaction."""
    row = room_row(session, caller.tenant, caller.id, room_id)
    assert row is not None, "the room was opened in this transaction"
    return room_views(session, [row])[0]


def _member_list(session: Session, room_id: int) -> list[dict[str, Any]]:
    return [member_to_wire(user, role) for user, role in members_of(session, [room_id]).get(room_id, ())]


def _record_room_update(node: Node, session: Session, room: Room, changes: dict[str, Any], *,
                        regraded: bool = False) -> None:
    """Store a `room_updated` event for `changes` (already applied) with the room's next seq,
    and its webhook events: `member.added` / `member.removed` for each user who came or went,
    `room.updated` for anything else (settings, or `regraded`: room roles of members who stayed),
    all with that seq."""
    room.updated_at = utcnow()
    seq = take_next_seq(session, room.id)
    append_event(session, room_updated_event(room.id, seq, changes))
    added, removed = changes.get("added", []), changes.get("removed", [])
    note_membership(session, room.id, version=seq, added=added, removed=removed)
    roles = {member["id"]: member["room_role"] for member in changes.get("members", [])}
    for user_id in added:
        enqueue(node, session, room.tenant, "member.added", room.id, seq, user=user_id, room_role=roles.get(user_id))
    for user_id in removed:
        enqueue(node, session, room.tenant, "member.removed", room.id, seq, user=user_id)
    settings_changed = changes.keys() - {"members", "added", "removed"}
    # Role changes made with arrivals or departures too: member.added / member.removed do not tell them.
    if settings_changed or regraded:
        enqueue(node, session, room.tenant, "room.updated", room.id, seq, changes=changes)


def _record_room_created(node: Node, session: Session, room: Room, members: Mapping[int, str]) -> None:
    """The `room.created` webhook event of a new room, with its first members."""
    enqueue(node, session, room.tenant, "room.created", room.id, kind=room.kind, name=room.name, topic=room.topic,
            external_ref=room.external_ref,
            members=[{"id": user_id, "room_role": role} for user_id, role in sorted(members.items())])


def _keyset(room: Room) -> RoomKeyset:
    moment = room.last_activity_at if room.last_activity_at.tzinfo else room.last_activity_at.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1), room.id


# --------------------------------------------------------------------------- membership rules


def _require_users(session: Session, tenant: str, user_ids: Iterable[int]) -> dict[int, User]:
    """The tenant's active users with those ids; 404 if any is absent (or in another tenant)."""
    wanted = set(user_ids)
    found = tenant_users(session, tenant, wanted)
    if missing := sorted(wanted - found.keys()):
        raise NotFound("no such user", details={"user_ids": missing})
    return found


def _require_contactable(node: Node, caller: UserSnapshot, others: Iterable[User]) -> None:
    """Only what the contact policy allows may share a room with the caller; admins are exempt."""
    if is_admin(caller):
        return
    denied = sorted(user.id for user in others if not node.contact_policy.allows(caller.role, user.role))
    if denied:
        raise Forbidden("the contact policy does not allow you to chat with these users",
                        code="policy_denied", details={"user_ids": denied})


def _require_changeable_members(room: Room) -> None:
    if room.kind == "direct":
        raise BadRequest("a direct room always has exactly its two members")


def _apply_members(session: Session, room: Room, desired: Mapping[int, str]) -> tuple[dict[str, Any], bool]:
    """Make the room's members exactly `desired` (user id -> room role): the changes, if any, and
    whether a member who stays has a new room role."""
    current = room_memberships(session, room.id)
    removed = sorted(current.keys() - desired.keys())
    added = sorted(desired.keys() - current.keys())
    regraded = [uid for uid in desired if uid in current and current[uid].room_role != desired[uid]]
    if not (removed or added or regraded):
        return {}, False
    remove_memberships(session, room.id, removed)
    for uid in regraded:
        current[uid].room_role = desired[uid]
    for uid in added:
        add_membership(session, room.id, uid, desired[uid], since_seq=room.last_seq)  # no notice of the past
    return _membership_changes(session, room.id, added=added, removed=removed), bool(regraded)


def _membership_changes(session: Session, room_id: int, *, added: Sequence[int] = (),
                        removed: Sequence[int] = ()) -> dict[str, Any]:
    """`room_updated` changes for a membership change: the whole new member list (`members`, as in
    the room object), and the ids of who came (`added`) and went (`removed`), when any did."""
    session.flush()
    changes: dict[str, Any] = {"members": _member_list(session, room_id)}
    if added:
        changes["added"] = list(added)
    if removed:
        changes["removed"] = list(removed)
    return changes


# --------------------------------------------------------------------------- reading


async def list_rooms(node: Node, caller: UserSnapshot, *, limit: int,
                     after: RoomKeyset | None = None) -> tuple[list[dict[str, Any]], RoomKeyset | None]:
    """The caller's rooms, most recent activity first, and where the next page starts (if any)."""
    try:
        position = None if after is None else (_EPOCH + timedelta(microseconds=after[0]), after[1])
    except OverflowError:  # no room was active then: not a cursor this server made
        raise BadRequest("invalid cursor", details={"field": "cursor"}) from None

    def work(session: Session) -> tuple[list[dict[str, Any]], RoomKeyset | None]:
        rows = user_room_rows(session, caller.tenant, caller.id, limit=limit + 1, after=position)
        page = rows[:limit]
        return room_views(session, page), (_keyset(page[-1].room) if len(rows) > limit else None)

    return await node.database.replica_read(work)


async def get_room(node: Node, caller: UserSnapshot, room_id: int) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        open_room(session, caller, room_id)
        return room_view(session, caller, room_id)

    return await node.database.replica_read(work)


# --------------------------------------------------------------------------- creating


def _new_room(tenant: str, kind: str, *, name: str = "", topic: str = "", is_active: bool = True,
              external_ref: str | None = None, direct: str | None = None) -> Room:
    now = utcnow()
    return Room(tenant=tenant, kind=kind, name=name, topic=topic, is_active=is_active, external_ref=external_ref,
                direct_key=direct, last_seq=0, created_at=now, updated_at=now, last_activity_at=now)


async def open_direct_room(node: Node, caller: UserSnapshot, other_id: int) -> tuple[dict[str, Any], bool]:
    """The direct room of the caller and `other_id`, made if new; True when it was created."""
    if other_id == caller.id:
        raise BadRequest("a direct chat needs someone other than yourself", code="self_chat")

    def work(session: Session) -> tuple[dict[str, Any], bool]:
        other = _require_users(session, caller.tenant, [other_id])[other_id]
        if not node.contact_policy.allows(caller.role, other.role):
            raise Forbidden("the contact policy does not allow you to chat with this user", code="policy_denied")
        key = direct_key(caller.id, other.id)
        room = find_direct_room(session, caller.tenant, key)
        created = False
        if room is None:
            room = insert_room(session, _new_room(caller.tenant, "direct", direct=key),
                               {caller.id: "member", other.id: "member"})
            created = room is not None
            if room is not None:
                note_membership(session, room.id, version=CREATED, added=[caller.id, other.id])
                _record_room_created(node, session, room, {caller.id: "member", other.id: "member"})
            # None: a concurrent request made the pair's room first; it is the one to return.
            room = room or find_direct_room(session, caller.tenant, key)
            assert room is not None
        return room_view(session, caller, room.id), created

    return await write_and_announce(node, work)


async def create_group_room(node: Node, caller: UserSnapshot, *, kind: str, name: str, topic: str,
                            member_ids: Sequence[int]) -> dict[str, Any]:
    """A new group (or forum) room; the caller is its owner."""
    check_room_name(name)
    require_storable(topic, "topic")

    def work(session: Session) -> dict[str, Any]:
        others = _require_users(session, caller.tenant, set(member_ids) - {caller.id})
        _require_contactable(node, caller, others.values())
        members = dict.fromkeys(others, "member") | {caller.id: "owner"}
        room = insert_room(session, _new_room(caller.tenant, kind, name=name, topic=topic), members)
        assert room is not None, "a group room has no unique key to collide on"
        note_membership(session, room.id, version=CREATED, added=members)
        _record_room_created(node, session, room, members)
        return room_view(session, caller, room.id)

    return await write_and_announce(node, work)


# --------------------------------------------------------------------------- changing


async def update_room(node: Node, caller: UserSnapshot, room_id: int, *, name: str | None = None,
                      topic: str | None = None, is_active: bool | None = None) -> dict[str, Any]:
    """Change a room's name, topic or active flag (owners, moderators, admins)."""
    if name is not None:
        check_room_name(name)
    if topic is not None:
        require_storable(topic, "topic")

    def work(session: Session) -> tuple[dict[str, Any], bool]:
        access = open_room(session, caller, room_id, lock=True)
        access.require_manager()
        room = access.room
        wanted = {"name": name, "topic": topic, "is_active": is_active}
        changes = {field: value for field, value in wanted.items()
                   if value is not None and getattr(room, field) != value}
        for field, value in changes.items():
            setattr(room, field, value)
        if changes:
            _record_room_update(node, session, room, changes)
        return room_view(session, caller, room.id), bool(changes)

    view, changed = await node.database.write(work)
    if changed:
        node.notify_committed(room_id)
    return view


async def add_member(node: Node, caller: UserSnapshot, room_id: int, user_id: int,
                     room_role: str | None = None) -> tuple[dict[str, Any], bool]:
    """Add `user_id` to the room, or change its room role; True when the user was not a member.

    Without `room_role` a new member is a plain member and an existing one keeps its role.
    """

    def work(session: Session) -> tuple[dict[str, Any], bool, bool]:
        access = open_room(session, caller, room_id, lock=True)
        access.require_manager()
        room = access.room
        _require_changeable_members(room)
        user = _require_users(session, caller.tenant, [user_id])[user_id]
        if user.id != caller.id:
            _require_contactable(node, caller, [user])
        current = room_memberships(session, room.id)
        existing = current.get(user_id)
        role = room_role or (existing.room_role if existing else "member")
        role_changes = existing is None or existing.room_role != role
        touches_owner = role == "owner" or (existing is not None and existing.room_role == "owner")
        if role_changes and touches_owner and not (is_admin(caller) or access.room_role == "owner"):
            raise Forbidden("only an owner or an admin may make or unmake owners")
        desired = {uid: m.room_role for uid, m in current.items()} | {user_id: role}
        changes, regraded = _apply_members(session, room, desired)
        if changes:
            _record_room_update(node, session, room, changes, regraded=regraded)
        return room_view(session, caller, room.id), existing is None, bool(changes)

    view, added, changed = await write_and_announce(node, work)
    if changed:
        node.notify_committed(room_id)
    return view, added


async def remove_member(node: Node, caller: UserSnapshot, room_id: int, user_id: int) -> None:
    """Remove `user_id` from the room: a manager removing someone, or anyone leaving."""

    def work(session: Session) -> None:
        access = open_room(session, caller, room_id, lock=True)
        room = access.room
        leaving = user_id == caller.id
        if not leaving:
            access.require_manager()
        _require_changeable_members(room)
        current = room_memberships(session, room.id)
        target = current.get(user_id)
        if target is None:
            raise NotFound("that user is not a member of this room")
        if not leaving and target.room_role == "owner" and not (is_admin(caller) or access.room_role == "owner"):
            raise Forbidden("only an owner or an admin may remove an owner")
        desired = {uid: m.room_role for uid, m in current.items() if uid != user_id}
        _record_room_update(node, session, room, _apply_members(session, room, desired)[0])

    await write_and_announce(node, work)
    node.notify_committed(room_id)


# --------------------------------------------------------------------------- provisioning


async def provision_room(node: Node, caller: UserSnapshot, external_ref: str, *, kind: str, name: str,
                         members: Mapping[int, str], topic: str | None = None,
                         is_active: bool | None = None) -> tuple[dict[str, Any], bool]:
    """Create or update the tenant's room with `external_ref`; True when it was created.

    Idempotent: the members become exactly `members` (user id -> room role), and a
    request that changes nothing stores no event.
    """
    check_external_ref(external_ref)
    check_room_name(name)
    if topic is not None:
        require_storable(topic, "topic")

    def work(session: Session) -> tuple[dict[str, Any], bool, bool]:
        _require_users(session, caller.tenant, members.keys())
        room = find_room_by_ref(session, caller.tenant, external_ref, lock=True)
        if room is None:
            fresh = _new_room(caller.tenant, kind, name=name, topic=topic or "",
                              is_active=True if is_active is None else is_active, external_ref=external_ref)
            if insert_room(session, fresh, members) is not None:
                note_membership(session, fresh.id, version=CREATED, added=members)
                _record_room_created(node, session, fresh, members)
                return room_view(session, caller, fresh.id), True, False
            # A concurrent PUT of the same reference created it first: update that room instead.
            room = find_room_by_ref(session, caller.tenant, external_ref, lock=True)
            assert room is not None
        wanted = {"kind": kind, "name": name, "topic": topic, "is_active": is_active}
        changes: dict[str, Any] = {field: value for field, value in wanted.items()
                                   if value is not None and getattr(room, field) != value}
        for field, value in changes.items():
            setattr(room, field, value)
        member_changes, regraded = _apply_members(session, room, members)
        changes |= member_changes
        if changes:
            _record_room_update(node, session, room, changes, regraded=regraded)
        return room_view(session, caller, room.id), False, bool(changes)

    view, created, changed = await write_and_announce(node, work)
    if changed:
        node.notify_committed(view["id"])
    return view, created


async def unprovision_room(node: Node, caller: UserSnapshot, external_ref: str) -> None:
    """Delete the tenant's room with `external_ref`, with its messages; 404 if there is none."""
    check_external_ref(external_ref)

    def work(session: Session) -> None:
        room = find_room_by_ref(session, caller.tenant, external_ref, lock=True)
        if room is None:
            raise NotFound("no room has that reference")
        note_membership(session, room.id, version=DELETED, removed=room_memberships(session, room.id))
        enqueue(node, session, room.tenant, "room.deleted", room.id, external_ref=room.external_ref)
        delete_room(session, room.id)

    await write_and_announce(node, work)
