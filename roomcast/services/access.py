"""Who may see and change a room: membership, room roles and the tenant's admins."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from ..errors import ApiError, Forbidden, NotFound
from ..storage.models import Membership, Room, User
from ..storage.rooms import RoomAccessRows, load_room
from ..storage.users import UserSnapshot

ROOM_ROLES = ("owner", "moderator", "member")
MANAGING_ROOM_ROLES = frozenset({"owner", "moderator"})


def is_admin(user: User | UserSnapshot) -> bool:
    return user.role == "admin"


@dataclass
class RoomAccess:
    """A room as opened by one caller, with the caller's membership (None for a non-member admin)."""

    room: Room
    caller: UserSnapshot
    membership: Membership | None

    @property
    def room_role(self) -> str | None:
        return self.membership.room_role if self.membership else None

    @property
    def can_manage(self) -> bool:
        """Owners, moderators and the tenant's admins manage a room."""
        return is_admin(self.caller) or self.room_role in MANAGING_ROOM_ROLES

    def require_member(self) -> Membership:
        if self.membership is None:
            raise not_a_member()
        return self.membership

    def require_manager(self) -> None:
        if not self.can_manage:
            raise Forbidden("only the room's owners and moderators, or an admin, may do this")


def not_a_member() -> Forbidden:
    return Forbidden("you are not a member of this room", code="not_a_member")


def open_room(session: Session, caller: UserSnapshot, room_id: int, *, lock: bool = False) -> RoomAccess:
    """The room for `caller`: 404 if absent or in another tenant, 403 `not_a_member` unless a
    member (admins of the tenant may open any room of it, to moderate).

    `lock` holds the room row until commit: see storage.rooms.load_room.
    """
    room, membership = load_room(session, caller.tenant, room_id, caller.id, lock=lock)
    if room is None:
        raise NotFound("no such room")
    if membership is None and not is_admin(caller):
        raise not_a_member()
    return RoomAccess(room, caller, membership)


def pair_refusal(rows: RoomAccessRows, caller: UserSnapshot, room_id: int) -> ApiError | None:
    """What `open_room(...).require_member()` would refuse `caller` in `room_id` with, judged from
    rows read for many callers at once (`storage.rooms.room_access_rows`); None: a member."""
    if rows.tenants.get(room_id) != caller.tenant:
        return NotFound("no such room")
    if (room_id, caller.id) not in rows.members:
        return not_a_member()
    return None
