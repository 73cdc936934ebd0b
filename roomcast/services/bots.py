"""Bots (PROTOCOL §6): an admin's API for a tenant's bots, and their tokens.

A bot is a user with role `bot` plus where the messages that trigger it go (`bots` row:
url, secret, trigger, active). Its token is an ordinary JWT for that user, minted with
`bot_token_ttl_s`; `POST /api/bots/{id}/token` mints a new one and revokes the earlier ones
(the admin tools' revocation, services/admin_users.py). Deleting a bot disables its user with
the same tools (its messages stay) and forgets its configuration; queued deliveries to it are
then dead. Another tenant's bot is as absent as a missing one (404).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio
from sqlalchemy.orm import Session

from ..config import check_webhook_secret, check_webhook_url
from ..errors import BadRequest, NotFound
from ..node import Node
from ..storage import users as stored_users
from ..storage.bots import get_bot, tenant_bots
from ..storage.models import Bot, User
from ..storage.users import UserSnapshot
from ..timestamps import to_wire, utcnow
from ..wire import MAX_ID, JsonObject, user_to_wire
from . import admin_users
from .webhook_events import BOT_TRIGGERS
from .webhooks import retry_target_delivery, target_deliveries

T = TypeVar("T")


def bot_to_wire(bot: Bot, user: User) -> JsonObject:
    """A bot as the API shows it (`id` is its user's id); the secret is never shown."""
    return {"id": bot.user_id, "user": user_to_wire(user), "url": bot.url, "trigger": bot.trigger,
            "active": bot.active, "created_at": to_wire(bot.created_at), "updated_at": to_wire(bot.updated_at)}


def _checked(field: str, check: Callable[[T], T], value: T) -> T:
    try:
        return check(value)
    except ValueError as exc:
        raise BadRequest(str(exc), details={"field": field}) from None


def _check_trigger(trigger: str) -> None:
    if trigger not in BOT_TRIGGERS:
        raise BadRequest(f"trigger must be one of {', '.join(BOT_TRIGGERS)}", details={"field": "trigger"})


def _found(session: Session, caller: UserSnapshot, bot_id: int) -> tuple[Bot, User]:
    found = get_bot(session, caller.tenant, bot_id) if 1 <= bot_id <= MAX_ID else None
    if found is None:
        raise NotFound("no such bot")
    return found


def _mint(node: Node, user_id: int) -> str:
    return node.tokens.mint(user_id, node.settings.bot_token_ttl_s)


async def create_bot(node: Node, caller: UserSnapshot, *, username: str, display_name: str | None, url: str,
                     secret: str, trigger: str) -> JsonObject:
    """A new bot of the caller's tenant: `{"user", "token", "bot"}`. A taken username → Conflict."""
    _checked("url", check_webhook_url, url)
    _checked("secret", check_webhook_secret, secret)
    _check_trigger(trigger)

    def work(session: Session) -> tuple[Bot, User]:
        user = stored_users.create_user(session, tenant=caller.tenant, username=username, role="bot",
                                        display_name=display_name)
        now = utcnow()
        bot = Bot(user_id=user.id, tenant=caller.tenant, url=url, secret=secret, trigger=trigger, active=True,
                  created_at=now, updated_at=now)
        session.add(bot)
        session.flush()
        return bot, user

    bot, user = await node.database.write(work)
    return {"user": user_to_wire(user), "token": _mint(node, user.id), "bot": bot_to_wire(bot, user)}


async def list_bots(node: Node, caller: UserSnapshot) -> list[JsonObject]:
    return await node.database.read(
        lambda session: [bot_to_wire(bot, user) for bot, user in tenant_bots(session, caller.tenant)])


async def get_bot_view(node: Node, caller: UserSnapshot, bot_id: int) -> JsonObject:
    return await node.database.read(lambda session: bot_to_wire(*_found(session, caller, bot_id)))


async def update_bot(node: Node, caller: UserSnapshot, bot_id: int, *, url: str | None = None,
                     secret: str | None = None, trigger: str | None = None, active: bool | None = None) -> JsonObject:
    """Change a bot's url, secret, trigger or active flag (an inactive bot is sent nothing new)."""
    if url is not None:
        _checked("url", check_webhook_url, url)
    if secret is not None:
        _checked("secret", check_webhook_secret, secret)
    if trigger is not None:
        _check_trigger(trigger)

    def work(session: Session) -> JsonObject:
        bot, user = _found(session, caller, bot_id)
        for field, value in (("url", url), ("secret", secret), ("trigger", trigger), ("active", active)):
            if value is not None:
                setattr(bot, field, value)
        bot.updated_at = utcnow()
        session.flush()
        return bot_to_wire(bot, user)

    return await node.database.write(work)


async def delete_bot(node: Node, caller: UserSnapshot, bot_id: int) -> None:
    """Disable the bot's user with the admin tools (its tokens are revoked and its sessions closed
    with 1008 on every node; its messages stay), then forget the bot."""
    await node.database.read(_found, caller, bot_id)
    await admin_users.disable_user(node, caller.tenant, bot_id)

    def work(session: Session) -> None:
        found = get_bot(session, caller.tenant, bot_id)
        if found is not None:
            session.delete(found[0])

    await node.database.write(work)


async def rotate_token(node: Node, caller: UserSnapshot, bot_id: int) -> JsonObject:
    """A new token for the bot; every token issued before it is revoked (and the bot's open
    sessions closed with 1008), with the admin tools' revocation. `{"user", "token"}`."""
    await node.database.read(_found, caller, bot_id)
    await admin_users.revoke_tokens(node, caller.tenant, bot_id)
    # Tokens carry `iat` in milliseconds, rounded down: one minted in the revocation's own
    # millisecond would be refused, so the new one is minted after it.
    await trio.sleep(0.002)
    user = await node.database.read(lambda session: _found(session, caller, bot_id)[1])
    return {"user": user_to_wire(user), "token": _mint(node, user.id)}


def _bot_key(caller: UserSnapshot, bot_id: int) -> Callable[[Session], str]:
    def key_of(session: Session) -> str:
        _found(session, caller, bot_id)
        return f"bot:{bot_id}"

    return key_of


async def list_bot_deliveries(node: Node, caller: UserSnapshot, bot_id: int, *, limit: int, before: int | None,
                              status: str | None = None) -> tuple[list[JsonObject], int | None]:
    """The messages sent to the bot, as webhook deliveries (newest first)."""
    return await target_deliveries(node, caller, _bot_key(caller, bot_id), limit=limit, before=before,
                                   status=status)


async def retry_bot_delivery(node: Node, caller: UserSnapshot, bot_id: int, delivery_id: int) -> JsonObject:
    """Send a message to the bot again (same `id`: a reply it gives is posted once all the same)."""
    return await retry_target_delivery(node, caller, _bot_key(caller, bot_id), delivery_id)
