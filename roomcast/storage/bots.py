"""Bot queries: a tenant's bots, and the bots of a room that a message may trigger.

Each takes a Session and runs inside Database.read/write.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from .models import Bot, Membership, Room, User


@dataclass(frozen=True, slots=True)
class RoomBot:
    """An active bot that is a member of the room, as a message's webhook targets need it."""

    user_id: int
    username: str
    url: str
    secret: str
    trigger: str
    room_kind: str


_BOTS = Bot.__table__
_MEMBERS = Membership.__table__
_USERS = User.__table__
_ROOMS = Room.__table__
assert isinstance(_BOTS, Table) and isinstance(_MEMBERS, Table) and isinstance(_USERS, Table)
assert isinstance(_ROOMS, Table)
# Run in every transaction that stores a message (not one sent by a bot): built once, run on the
# session's Connection. It starts from the tenant's bots (few, by index) and probes each one's
# membership by primary key, so a room's size does not matter and a tenant without bots costs one probe.
_ROOM_BOTS = (
    select(_BOTS.c.user_id, _USERS.c.username, _BOTS.c.url, _BOTS.c.secret, _BOTS.c.trigger, _ROOMS.c.kind)
    .select_from(_BOTS.join(_MEMBERS, (_MEMBERS.c.user_id == _BOTS.c.user_id)
                            & (_MEMBERS.c.room_id == bindparam("room")))
                 .join(_USERS, _USERS.c.id == _BOTS.c.user_id)
                 .join(_ROOMS, _ROOMS.c.id == _MEMBERS.c.room_id))
    .where(_BOTS.c.tenant == bindparam("tenant"), _BOTS.c.active.is_(True), _USERS.c.is_active.is_(True))
    .order_by(_BOTS.c.user_id)
)


def room_bots(session: Session, tenant: str, room_id: int) -> list[RoomBot]:
    """The active bots that are members of the room."""
    rows = session.connection().execute(_ROOM_BOTS, {"tenant": tenant, "room": room_id})
    return [RoomBot(row[0], row[1], row[2], row[3], row[4], row[5]) for row in rows]


def tenant_bots(session: Session, tenant: str) -> list[tuple[Bot, User]]:
    rows = session.execute(select(Bot, User).join(User, User.id == Bot.user_id).where(Bot.tenant == tenant)
                           .order_by(Bot.user_id))
    return [(bot, user) for bot, user in rows]


def get_bot(session: Session, tenant: str, user_id: int) -> tuple[Bot, User] | None:
    """The bot with that user id if it is the tenant's (another tenant's is as absent as a missing one)."""
    bot = session.get(Bot, user_id)
    if bot is None or bot.tenant != tenant:
        return None
    user = session.get(User, user_id)
    return None if user is None else (bot, user)


def bots_by_user(session: Session, user_ids: Collection[int]) -> dict[int, Bot]:
    if not user_ids:
        return {}
    return {bot.user_id: bot for bot in session.scalars(select(Bot).where(Bot.user_id.in_(list(user_ids))))}
