"""Webhook events: who gets an event, and its queue rows, written in the event's own transaction.

The outbox pattern of the send path (DESIGN.md §1), for webhooks: a service that stores
an event calls `enqueue` inside the same transaction, which inserts one `webhook_deliveries`
row per matching target. A crash anywhere loses nothing (the rows commit with the event or
not at all) and a send never waits for a receiver: the enqueue is an INSERT, nothing else.

Fan-out happens here, at enqueue time, one row per target: each row then carries its own
status, attempts and lease, so a target that fails never holds another back, per-target
ordering is a property of the rows, and the delivery list of a target is a plain query.
What it costs a send is one indexed lookup of the tenant's active API targets per
transaction (cached on the session for the rest of it); an event that no target wants
writes nothing.

Targets come from sources: the settings file (`config:N`, every tenant), the admin
API (`api:ID`, its tenant), and bots (`bot:USER_ID`): a message that is not a bot's own
(`to_bots`) goes to the room's bots whose trigger it meets (`bot_target`). A bot's lookup
is one more indexed query in a transaction that stores a message, cached like the first.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from ..config import Settings
from ..node import Node
from ..storage.bots import RoomBot, room_bots
from ..storage.database import on_commit
from ..storage.models import Bot, Webhook
from ..storage.send_targets import Targets
from ..storage.webhooks import PENDING, ActiveWebhook, active_webhooks, insert_deliveries
from ..timestamps import utcnow
from ..wire import JsonObject, encode_text

_TARGETS = "roomcast_webhook_targets"
_WAKE = "roomcast_webhook_wake"
_ROOM_BOTS = "roomcast_room_bots"
BOT_EVENT = "message.created"
BOT_TRIGGERS = ("direct", "mention", "all")


@dataclass(frozen=True, slots=True)
class Target:
    """Where an event goes: `key` is stored on its deliveries ("config:0", "api:12").

    `accepts`, if set, looks at the event's body too (a bot's trigger: direct, mention, all).
    """

    key: str
    url: str
    secret: str
    events: frozenset[str]
    webhook_id: int | None = None
    active: bool = True
    accepts: Callable[[JsonObject], bool] | None = None

    def wants(self, event: str, body: JsonObject) -> bool:
        if not (self.active and ("*" in self.events or event in self.events)):
            return False
        return self.accepts is None or self.accepts(body)


def config_targets(settings: Settings) -> list[Target]:
    """The settings file's targets, as `config:<index in the list>`."""
    return [Target(f"config:{index}", hook.url, hook.secret, frozenset(hook.events), active=hook.active)
            for index, hook in enumerate(settings.webhooks)]


def api_target(webhook: Webhook | ActiveWebhook) -> Target:
    active = webhook.active if isinstance(webhook, Webhook) else True
    return Target(f"api:{webhook.id}", webhook.url, webhook.secret, frozenset(json.loads(webhook.events)),
                  webhook.id, active)


def bot_target(bot: Bot | RoomBot, username: str, room_kind: str | None = None) -> Target:
    """A bot as a target of `message.created`: the messages its trigger takes.

    `direct`: messages in a direct room with the bot; `mention`: messages naming `@username` as
    a whole word; `all`: every message of its rooms. `room_kind` None (a delivery already
    queued, resolved to be sent) accepts what was queued.
    """
    active = bot.active if isinstance(bot, Bot) else True
    trigger = bot.trigger
    accepts = None if room_kind is None else _trigger(trigger, username, room_kind)
    return Target(f"bot:{bot.user_id}", bot.url, bot.secret, frozenset({BOT_EVENT}), active=active, accepts=accepts)


def mentions(username: str) -> re.Pattern[str]:
    """`@username` as a whole word: not part of a longer name, nor of an address (a@username)."""
    return re.compile(rf"(?<![\w@.]){re.escape('@' + username)}(?![\w@]|\.\w)", re.IGNORECASE)


def _trigger(trigger: str, username: str, room_kind: str) -> Callable[[JsonObject], bool]:
    if trigger == "direct":
        return lambda body: room_kind == "direct"
    if trigger == "mention":
        pattern = mentions(username)

        def mentioned(body: JsonObject) -> bool:
            message = body.get("message")
            text = message.get("body") if isinstance(message, dict) else None
            return isinstance(text, str) and pattern.search(text) is not None

        return mentioned
    return lambda body: trigger == "all"


def _bot_targets(session: Session, tenant: str, room_id: int) -> list[Target]:
    # By tenant and room: a batch may have read a room for a sender of another tenant (refused).
    cache: dict[tuple[str, int], list[Target]] = session.info.setdefault(_ROOM_BOTS, {})
    if (tenant, room_id) not in cache:
        cache[tenant, room_id] = [bot_target(bot, bot.username, bot.room_kind)
                                  for bot in room_bots(session, tenant, room_id)]
    return cache[tenant, room_id]


def keep_targets(session: Session, settings: Settings, tenant: str, targets: Targets) -> None:
    """Keep, for `enqueue` in this transaction, targets read for the tenant (`webhooks_and_room_bots`:
    a batch of sends reads them with its other reads, `storage/send_reads.py`); webhooks already
    kept stay as they are."""
    webhooks, bots = targets
    tenants: dict[str, list[Target]] = session.info.setdefault(_TARGETS, {})
    rooms: dict[tuple[str, int], list[Target]] = session.info.setdefault(_ROOM_BOTS, {})
    if tenant not in tenants:
        tenants[tenant] = _targets_of(settings, webhooks)
    for room_id, room_bots_found in bots.items():
        rooms[tenant, room_id] = [bot_target(bot, bot.username, bot.room_kind) for bot in room_bots_found]


def _targets_of(settings: Settings, webhooks: list[ActiveWebhook]) -> list[Target]:
    """Every target that may get a tenant's events: the configured ones, then its API webhooks."""
    return config_targets(settings) + [api_target(w) for w in webhooks]


def _tenant_targets(session: Session, settings: Settings, tenant: str) -> list[Target]:
    """Every target that may get the tenant's events, read once per transaction (each source adds its own)."""
    cache: dict[str, list[Target]] = session.info.setdefault(_TARGETS, {})
    if tenant not in cache:
        cache[tenant] = _targets_of(settings, active_webhooks(session, tenant))
    return cache[tenant]


def enqueue(node: Node, session: Session, tenant: str, event: str, room_id: int, seq: int | None = None,
            *, to_bots: bool = False, **fields: object) -> int:
    """Queue `event` for every target of `tenant` that wants it, in this transaction; how many.

    The body is PROTOCOL §6's without `delivered_at` (added at each attempt); its `id` is the
    same for every target and every retry. The node's delivery actor is woken once the
    transaction commits. `to_bots`: a message not sent by a bot, which the room's bots may take.
    """
    candidates = _tenant_targets(session, node.settings, tenant)
    if to_bots and event == BOT_EVENT:
        candidates = candidates + _bot_targets(session, tenant, room_id)
    if not candidates:  # the usual case on a send: nothing to build
        return 0
    body: JsonObject = {"id": "", "event": event, "tenant": tenant, "room": room_id}
    if seq is not None:
        body["seq"] = seq
    body.update(fields)
    targets = [target for target in candidates if target.wants(event, body)]
    if not targets:
        return 0
    body["id"] = uuid.uuid4().hex
    text = encode_text(body)
    now = utcnow()
    insert_deliveries(session, [
        {"tenant": tenant, "target": target.key, "webhook_id": target.webhook_id, "event_id": body["id"],
         "event": event, "room_id": room_id, "seq": seq, "body": text, "status": PENDING, "attempts": 0,
         "next_attempt_at": now, "created_at": now}
        for target in targets])
    if not session.info.get(_WAKE):
        session.info[_WAKE] = True
        on_commit(session, lambda: _wake(node))
    return len(targets)


def _wake(node: Node) -> None:
    from .webhook_delivery import wake_webhook_delivery  # it imports this module

    wake_webhook_delivery(node)
