"""Who stored messages may go to besides their rooms, read in one statement: the tenant's
active webhooks and the active bots of the rooms.

A batch of sends needs both in its transaction (`send_reads.read_for_sends`); read apart
they cost two round trips to the database in every send's transaction instead of one.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Collection

from sqlalchemy import Boolean, Integer, String, Table, bindparam, cast, literal, null, select, union_all
from sqlalchemy.orm import Session

from . import driver_rows
from .bots import RoomBot
from .models import Bot, Membership, Room, User, Webhook
from .webhooks import ActiveWebhook

_BOTS, _MEMBERS, _USERS, _ROOMS, _WEBHOOKS = (Bot.__table__, Membership.__table__, User.__table__, Room.__table__,
                                              Webhook.__table__)
assert isinstance(_BOTS, Table) and isinstance(_MEMBERS, Table) and isinstance(_USERS, Table)
assert isinstance(_ROOMS, Table) and isinstance(_WEBHOOKS, Table)

_WEBHOOK, _BOT = "w", "b"
# One row shape for both: (source, room, id, username, url, secret, events or trigger, room kind).
# The bots: from the tenant's bots (few, by index), each one's membership probed by primary key.
_TARGETS = union_all(
    select(literal(_WEBHOOK).label("source"), cast(null(), Integer).label("room_id"), _WEBHOOKS.c.id.label("id"),
           cast(null(), String).label("username"), _WEBHOOKS.c.url, _WEBHOOKS.c.secret,
           _WEBHOOKS.c.events.label("selector"), cast(null(), String).label("room_kind"))
    .where(_WEBHOOKS.c.tenant == bindparam("tenant"), _WEBHOOKS.c.active.is_(True),
           bindparam("webhooks", type_=Boolean)),
    select(literal(_BOT), _MEMBERS.c.room_id, _BOTS.c.user_id, _USERS.c.username, _BOTS.c.url, _BOTS.c.secret,
           _BOTS.c.trigger, _ROOMS.c.kind)
    .select_from(_BOTS.join(_MEMBERS, (_MEMBERS.c.user_id == _BOTS.c.user_id)
                            & _MEMBERS.c.room_id.in_(bindparam("rooms", expanding=True)))
                 .join(_USERS, _USERS.c.id == _BOTS.c.user_id)
                 .join(_ROOMS, _ROOMS.c.id == _MEMBERS.c.room_id))
    .where(_BOTS.c.tenant == bindparam("tenant"), _BOTS.c.active.is_(True), _USERS.c.is_active.is_(True)),
).order_by("source", "room_id", "id")


# (source, room, id, username, url, secret, selector, room kind): a webhook's row has no room, username or kind.
_TargetRow = tuple[str, int | None, int, str | None, str, str, str, str | None]
# The same statement for SQLite's own driver: run in every batch of sends, it took four times as
# long through SQLAlchemy (260 µs against 66 for a batch to 100 rooms: the expanding IN is
# rendered anew each time). The rooms come as one parameter, a JSON array.
_TARGETS_SQLITE = (
    "SELECT 'w', NULL, id, NULL, url, secret, events, NULL FROM webhooks "
    "WHERE tenant = ? AND active IS 1 AND ? "
    "UNION ALL "
    "SELECT 'b', memberships.room_id, bots.user_id, users.username, bots.url, bots.secret, bots.trigger, rooms.kind "
    "FROM bots JOIN memberships ON memberships.user_id = bots.user_id "
    "AND memberships.room_id IN (SELECT value FROM json_each(?)) "
    "JOIN users ON users.id = bots.user_id JOIN rooms ON rooms.id = memberships.room_id "
    "WHERE bots.tenant = ? AND bots.active IS 1 AND users.is_active IS 1 "
    "ORDER BY 1, 2, 3")


# The same for psycopg itself, its parameters in binary: for `pg_targets`, to go in one round trip
# with the batch's other reads (`storage/send_reads.py`).
_TARGETS_PG = (
    "SELECT 'w', NULL::integer, id, NULL::varchar, url, secret, events, NULL::varchar FROM webhooks "
    "WHERE tenant = %(tenant)b AND active AND %(webhooks)b "
    "UNION ALL "
    "SELECT 'b', memberships.room_id, bots.user_id, users.username, bots.url, bots.secret, bots.trigger, rooms.kind "
    "FROM bots JOIN memberships ON memberships.user_id = bots.user_id "
    "AND memberships.room_id = ANY(%(rooms)b::bigint[]) "
    "JOIN users ON users.id = bots.user_id JOIN rooms ON rooms.id = memberships.room_id "
    "WHERE bots.tenant = %(tenant)b AND bots.active AND users.is_active "
    "ORDER BY 1, 2, 3")

Targets = tuple[list[ActiveWebhook], dict[int, list[RoomBot]]]


def webhooks_and_room_bots(session: Session, tenant: str, room_ids: Collection[int],
                           webhooks: bool = True) -> Targets:
    """The tenant's active webhooks (none read unless `webhooks`), and the active bots of each of
    `room_ids` (every one a key, with no bots or some), as `active_webhooks` and `room_bots` give them."""
    if driver_rows.dialect(session) == "sqlite":
        params = (tenant, webhooks, json.dumps(sorted(room_ids)), tenant)
        rows = typing.cast(list[_TargetRow], driver_rows.sqlite_select(session, _TARGETS_SQLITE, params))
    else:
        rows = typing.cast(list[_TargetRow], session.connection().execute(
            _TARGETS, {"tenant": tenant, "rooms": sorted(room_ids), "webhooks": webhooks}).all())
    return targets_of_rows(rows, room_ids)


def pg_targets(tenant: str, room_ids: Collection[int], webhooks: bool = True) -> tuple[str, dict[str, object]]:
    """`webhooks_and_room_bots` as a statement for `driver_rows.pg_execute_together`; its rows go to
    `targets_of_rows`."""
    return _TARGETS_PG, {"tenant": tenant, "rooms": sorted(room_ids), "webhooks": webhooks}


def targets_of_rows(rows: typing.Sequence[tuple[object, ...]], room_ids: Collection[int]) -> Targets:
    """The webhooks and each room's bots (every one of `room_ids` a key) from the statement's rows."""
    found: dict[int, list[RoomBot]] = {room_id: [] for room_id in room_ids}
    hooks: list[ActiveWebhook] = []
    for source, room_id, target_id, username, url, secret, selector, room_kind in typing.cast(list[_TargetRow], rows):
        if source == _WEBHOOK:
            hooks.append(ActiveWebhook(target_id, url, secret, selector))
        else:
            assert room_id is not None and username is not None and room_kind is not None  # a bot's row
            found[room_id].append(RoomBot(target_id, username, url, secret, selector, room_kind))
    return hooks, found
