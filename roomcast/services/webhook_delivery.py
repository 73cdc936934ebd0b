"""The `webhooks` actor: delivers queued webhook events over HTTP, one per node (PROTOCOL §6).

It works from the `webhook_deliveries` table, never from memory: each round reads at
most a batch of due deliveries, claims them with a lease (storage/webhooks.py), and
posts each in its own task. Bounds: `webhook_concurrency` requests in flight per node,
`webhook_target_concurrency` per target (a target at its bound is left out of the next
claim, so one that is slow or down never takes the others' places); nothing is held for
an unreachable target but the rows themselves.

Per target, deliveries of one room go out in order: a delivery is claimable only while no
earlier one of its target and room is pending (dead ones no longer hold the line).

Outcome of an attempt:
- 2xx: delivered.
- a network error, a timeout (`webhook_connect_timeout_s`, `webhook_timeout_s` in all),
  408, 429 or 5xx: tried again after `Retry-After` (408, 429 and 503 may send it) or an
  exponential backoff with jitter (`webhook_retry_base_s` doubling up to
  `webhook_retry_max_s`); after `webhook_max_attempts` attempts the delivery is dead.
- anything else (3xx, other 4xx): dead at once: the receiver refused it and asking again
  would not change that. `POST /api/webhooks/{id}/deliveries/{did}/retry` replays it.

A database outage is waited out (claims and outcomes retried with backoff). A node that
stops gives back the leases of what it had not finished; one that dies mid-attempt leaves
its lease to expire (`webhook_lease_s`), after which any node delivers it: at least once,
with the same `id`, which receivers deduplicate on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import socket
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from datetime import timedelta
from email.utils import parsedate_to_datetime
from functools import partial

import httpx
import trio
from sqlalchemy.orm import Session

from .. import __version__
from ..actors.actor import Actor, ActorContext
from ..actors.backoff import Backoff, until_available
from ..egress import EgressDenied, guarded_transport, parse_networks
from ..errors import ApiError, DependencyUnavailable, RateLimited
from ..logs import log_event
from ..node import Node
from ..storage.bots import bots_by_user
from ..storage.models import Bot, Webhook
from ..storage.users import UserSnapshot, get_user
from ..storage.webhooks import (
    DEAD,
    DELIVERED,
    ClaimedDelivery,
    claim,
    due_ids,
    purge_finished,
    record_attempts,
    release,
    webhooks_by_id,
)
from ..timestamps import to_wire, utcnow
from ..wire import MAX_ID, JsonObject
from .messaging import send_message
from .webhook_events import Target, api_target, bot_target, config_targets

log = logging.getLogger("roomcast.webhooks")

ACTOR_NAME = "webhooks"
# What is kept of a receiver's answer (the error text, and for bots their reply).
RESPONSE_KEEP_BYTES = 64 << 10
_RETRY_AFTER_MAX_S = 86_400.0
_ROUND_COALESCE_S = 0.05
_PURGE_EVERY_S = 600.0
_PURGE_BATCH = 1000  # deliveries deleted per transaction
_ERROR_MAX = 500
_RELEASE_TIMEOUT_S = 2.0


def sign(secret: str, body: bytes) -> str:
    """The `X-Roomcast-Signature` header value: sha256=<hex HMAC-SHA256 of the body>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def attempt_body(stored: str) -> bytes:
    """The stored body with `delivered_at` (now) appended: the exact bytes sent and signed."""
    return f'{stored[:-1]},"delivered_at":"{to_wire(utcnow())}"}}'.encode()


def retry_after_s(value: str | None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date); None if absent or unreadable.

    Never raises, whatever the receiver sent: delta-seconds are ASCII digits only (RFC 9110 §10.2.3;
    `str.isdigit` also takes "²" or "١", which `float` then refuses or reads as a number).
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), _RETRY_AFTER_MAX_S)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if moment.tzinfo is None:
        return None
    return min(max(0.0, (moment - utcnow()).total_seconds()), _RETRY_AFTER_MAX_S)


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt got: a status (and the start of the body), or an error."""

    status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    body: bytes = b""
    note: str | None = None  # kept as `last_error` of a delivered delivery (a bot reply that was not posted)
    denied: bool = False  # the target's host is in egress_denied_networks: no attempt will do better

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        if self.denied:
            return False
        return self.status is None or self.status in (408, 429) or self.status >= 500


class WebhookDelivery:
    """The actor's state: the HTTP client, what is in flight, counters for /api/admin/actors."""

    def __init__(self, node: Node) -> None:
        settings = node.settings
        self.node = node
        self.settings = settings
        self.owner = f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.backoff = Backoff(settings.webhook_retry_base_s, settings.webhook_retry_max_s, jitter=0.5)
        self.db_retry = Backoff(settings.stream_retry_base_s, settings.stream_retry_max_s)
        self.in_flight: Counter[str] = Counter()
        self.held: set[int] = set()  # ids of the deliveries this node has leased and not yet finished
        self.counts: Counter[str] = Counter()  # delivered / retried / dead
        self._wake = trio.Event()
        # Attempts' outcomes on their way to the database, stored together: at most one per request in flight.
        self._outcomes, self._to_record = trio.open_memory_channel[tuple[ClaimedDelivery, JsonObject]](
            settings.webhook_concurrency)
        self.actor = Actor(ACTOR_NAME, self.run, mailbox_size=1, describe_extra=self.describe)

    def wake(self) -> None:
        self._wake.set()

    async def run(self, ctx: ActorContext) -> None:
        self._forget_previous_run()
        settings = self.settings
        timeout = httpx.Timeout(settings.webhook_timeout_s, connect=settings.webhook_connect_timeout_s)
        limits = httpx.Limits(max_connections=settings.webhook_concurrency,
                              max_keepalive_connections=settings.webhook_concurrency)
        try:
            transport = guarded_transport(parse_networks(settings.egress_denied_networks), limits)
            async with httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False,
                                         trust_env=False) as client:
                await self._serve(ctx, client)
        finally:
            await self._release_held()

    def _forget_previous_run(self) -> None:
        """A run that crashed (its supervisor starts another) left the counts of its attempts, which
        ended with it, and the outcomes it had not stored; it gave their leases back as it ended. Kept,
        the counts would leave their target busy for good; the deliveries are simply tried again."""
        self.in_flight.clear()
        while True:
            try:
                self._to_record.receive_nowait()
            except trio.WouldBlock:
                return

    async def _serve(self, ctx: ActorContext, client: httpx.AsyncClient) -> None:
        settings = self.settings
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._wake_on_mail, ctx)
            nursery.start_soon(self._record)
            next_purge = trio.current_time()
            while True:
                self._wake = trio.Event()
                free = settings.webhook_concurrency - sum(self.in_flight.values())
                full_batch = False
                try:
                    if free > 0:
                        claimed = await until_available(partial(self._claim, free), self.db_retry, log,
                                                        "webhooks.waiting")
                        for delivery, target in claimed:
                            self.in_flight[delivery.target] += 1
                            self.held.add(delivery.id)
                            nursery.start_soon(self._attempt, client, delivery, target)
                        full_batch = len(claimed) >= free
                    if trio.current_time() >= next_purge:
                        await self._purge()
                        next_purge = trio.current_time() + _PURGE_EVERY_S
                except Exception as exc:  # a bug, not an outage: logged; the next round tries again
                    log_event(log, "webhooks.round_failed", logging.ERROR, error=repr(exc))
                if full_batch and sum(self.in_flight.values()) < settings.webhook_concurrency:
                    continue
                with trio.move_on_after(settings.webhook_poll_s):
                    await self._wake.wait()
                    # Events committed and attempts finished in the next moment share one round: a
                    # busy room commits far more often than a round is worth.
                    await trio.sleep(_ROUND_COALESCE_S)

    async def _wake_on_mail(self, ctx: ActorContext) -> None:
        async for _ in ctx.mailbox:
            self._wake.set()

    async def _claim(self, free: int) -> list[tuple[ClaimedDelivery, Target | str]]:
        """Lease up to `free` due deliveries, at most the per-target bound of each target."""
        now = utcnow()
        cap = self.settings.webhook_target_concurrency
        busy = {target for target, count in self.in_flight.items() if count >= cap}
        candidates = await self.node.database.read(due_ids, now, busy, free * 4)
        if not candidates:
            return []
        taken: Counter[str] = Counter(self.in_flight)
        chosen: list[int] = []
        for delivery_id, target in candidates:
            if len(chosen) < free and taken[target] < cap:
                taken[target] += 1
                chosen.append(delivery_id)
        lease_until = now + timedelta(seconds=self.settings.webhook_lease_s)
        skip_locked = not self.node.database.is_sqlite

        def work(session: Session) -> tuple[list[ClaimedDelivery], dict[int, Webhook], dict[int, Bot]]:
            held = claim(session, chosen, self.owner, now, lease_until, skip_locked=skip_locked)
            bot_ids = {int(ident) for kind, _, ident in (d.target.partition(":") for d in held)
                       if kind == "bot" and ident.isdigit()}
            return (held, webhooks_by_id(session, {d.webhook_id for d in held if d.webhook_id is not None}),
                    bots_by_user(session, bot_ids))

        held, webhooks, bots = await self.node.database.write(work)
        return [(delivery, self._target(delivery, webhooks, bots)) for delivery in held]

    def _target(self, delivery: ClaimedDelivery, webhooks: dict[int, Webhook], bots: dict[int, Bot]) -> Target | str:
        """Where the delivery goes now, or why it goes nowhere (its target no longer exists, or is a disabled bot).

        One place per kind of target key.
        """
        kind, _, ident = delivery.target.partition(":")
        if kind == "config":
            targets = config_targets(self.settings)
            index = int(ident) if ident.isdigit() else -1
            if 0 <= index < len(targets):
                return targets[index]
        elif kind == "api" and delivery.webhook_id in webhooks:
            return api_target(webhooks[delivery.webhook_id])
        elif kind == "bot" and ident.isdigit() and int(ident) in bots:
            bot = bots[int(ident)]
            return bot_target(bot, "") if bot.active else "the bot is disabled"
        return "the target no longer exists"

    async def _attempt(self, client: httpx.AsyncClient, delivery: ClaimedDelivery, target: Target | str) -> None:
        try:
            if isinstance(target, str):
                answer = Answer(error=target)
                values = self._outcome(delivery, answer, final=True)
            else:
                answer = await self._post(client, delivery, target)
                if answer.delivered:
                    answer = await self._after_delivery(delivery, target, answer)
                values = self._outcome(delivery, answer)
        except Exception as exc:  # a bug, not an outage: its lease runs out and it is tried again
            log_event(log, "webhooks.attempt_failed", logging.ERROR, delivery=delivery.id, error=repr(exc))
            self._done([delivery])
            return
        await self._outcomes.send((delivery, values))  # never blocks long: one place per request in flight

    async def _after_delivery(self, delivery: ClaimedDelivery, target: Target, answer: Answer) -> Answer:
        """What a 2xx answer leads to beyond `delivered`: for a bot, its reply posted to the room.

        The reply is sent as the bot with the event's `id` as its client_id, so a delivery sent
        twice posts one message. A reply that is malformed or refused is noted on the delivery
        (which stays delivered); one the database could not take, or over the bot's send rate,
        makes the attempt fail, to be tried again (the bot is asked again, with the same `id`).
        """
        if not target.key.startswith("bot:"):
            return answer
        try:
            reply = _bot_reply(answer.body)
        except ValueError as exc:
            return replace(answer, note=f"reply ignored: {exc}"[:_ERROR_MAX])
        if reply is None:
            return answer
        bot_id = int(target.key.removeprefix("bot:"))
        try:
            bot = await self.node.database.read(get_user, bot_id)
            if bot is None or not bot.is_active:
                return replace(answer, note="reply not posted: the bot is disabled")
            await send_message(self.node, UserSnapshot.of(bot), delivery.room_id, reply.body, reply_to=reply.reply_to,
                               client_id=delivery.event_id)
        except DependencyUnavailable as exc:
            return Answer(error=f"reply not posted: {exc}"[:_ERROR_MAX])
        except RateLimited as exc:  # the bot replies faster than a user may send: asked again later
            return Answer(error="reply not posted: the bot is over the send rate", retry_after=exc.retry_after_s)
        except ApiError as exc:
            return replace(answer, note=f"reply not posted: {exc.code}: {exc}"[:_ERROR_MAX])
        return answer

    async def _record(self) -> None:
        """Store attempts' outcomes, as many as have come in per transaction; then their places are free."""
        while True:
            batch = [await self._to_record.receive()]
            while len(batch) < 256:
                try:
                    batch.append(self._to_record.receive_nowait())
                except trio.WouldBlock:
                    break
            outcomes = [(delivery.id, values) for delivery, values in batch]
            try:
                await until_available(partial(self.node.database.write, record_attempts, self.owner, outcomes),
                                      self.db_retry, log, "webhooks.waiting")
            except Exception as exc:  # a bug, not an outage: their leases run out and they are tried again
                log_event(log, "webhooks.record_failed", logging.ERROR, error=repr(exc))
            self._done([delivery for delivery, _ in batch])

    async def _release_held(self) -> None:
        """Stopping: give back the leases of what was not finished, so that it need not wait for them to run out."""
        held, self.held = list(self.held), set()
        if not held:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(_RELEASE_TIMEOUT_S):
            try:
                await self.node.database.write(release, held, self.owner)
            except DependencyUnavailable:
                pass  # the leases run out by themselves

    def _done(self, deliveries: list[ClaimedDelivery]) -> None:
        for delivery in deliveries:
            self.held.discard(delivery.id)
            self.in_flight[delivery.target] -= 1
            if self.in_flight[delivery.target] <= 0:
                del self.in_flight[delivery.target]
        self._wake.set()

    async def _post(self, client: httpx.AsyncClient, delivery: ClaimedDelivery, target: Target) -> Answer:
        body = attempt_body(delivery.body)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"roomcast/{__version__}",
            "X-Roomcast-Event": delivery.event,
            "X-Roomcast-Delivery": str(delivery.id),
            "X-Roomcast-Attempt": str(delivery.attempts + 1),
            "X-Roomcast-Signature": sign(target.secret, body),
        }
        with trio.move_on_after(self.settings.webhook_timeout_s) as deadline:
            try:
                async with client.stream("POST", target.url, content=body, headers=headers) as response:
                    kept = bytearray()
                    async for chunk in response.aiter_bytes():
                        kept += chunk[:RESPONSE_KEEP_BYTES - len(kept)]
                        if len(kept) >= RESPONSE_KEEP_BYTES:
                            break
                    return Answer(response.status_code, retry_after=retry_after_s(response.headers.get("Retry-After")),
                                  body=bytes(kept))
            except Exception as exc:  # whatever the network or the URL did: this attempt failed
                return Answer(error=f"{type(exc).__name__}: {exc}"[:_ERROR_MAX],
                              denied=isinstance(exc.__cause__, EgressDenied))
        assert deadline.cancelled_caught
        return Answer(error=f"timed out after {self.settings.webhook_timeout_s:g}s")

    def _outcome(self, delivery: ClaimedDelivery, answer: Answer, *, final: bool = False) -> JsonObject:
        """The columns to store for this attempt's answer."""
        now = utcnow()
        attempts = delivery.attempts + 1
        values: JsonObject = {"attempts": attempts, "last_attempt_at": now, "last_status_code": answer.status,
                              "last_error": answer.error}
        if answer.delivered:
            self._count("delivered", delivery)
            return values | {"status": DELIVERED, "delivered_at": now, "last_error": answer.note}
        if answer.status is not None and answer.error is None:
            detail = answer.body[:200].decode(errors="replace").strip()
            values["last_error"] = f"HTTP {answer.status}" + (f": {detail}" if detail else "")
        if final or not answer.retryable or attempts >= self.settings.webhook_max_attempts:
            self._count("dead", delivery)
            return values | {"status": DEAD}
        delay = answer.retry_after if answer.retry_after is not None else self.backoff.delay(attempts)
        self._count("retried", delivery)
        return values | {"next_attempt_at": now + timedelta(seconds=delay)}

    def _count(self, outcome: str, delivery: ClaimedDelivery) -> None:
        """Every attempt's outcome passes here: counted for /api/admin/actors and /metrics."""
        self.counts[outcome] += 1
        self.node.metrics.webhook_attempt(succeeded=outcome == "delivered")
        if outcome == "dead":
            log_event(log, "webhooks.dead", logging.WARNING, delivery=delivery.id, target=delivery.target,
                      webhook_event=delivery.event)

    async def _purge(self) -> None:
        try:
            await purge_expired(self.node)
        except DependencyUnavailable as exc:  # the next round tries again
            log_event(log, "webhooks.purge_failed", logging.DEBUG, error=str(exc))

    def describe(self) -> JsonObject:
        return {"in_flight": sum(self.in_flight.values()), "targets_in_flight": len(self.in_flight),
                "delivered": self.counts["delivered"], "retried": self.counts["retried"],
                "dead": self.counts["dead"]}


async def purge_expired(node: Node, batch: int = _PURGE_BATCH) -> int:
    """Forget delivered and dead deliveries older than `webhook_retention_s`; how many.

    One bounded batch per transaction, so other writers (sends, on SQLite) go between them, until a
    batch comes short: a busy target's deliveries of one round between purges outnumber a batch.
    """
    cutoff = utcnow() - timedelta(seconds=node.settings.webhook_retention_s)
    purged = 0
    while True:
        count = await node.database.write(purge_finished, cutoff, batch)
        purged += count
        if count < batch:
            return purged


@dataclass(frozen=True, slots=True)
class _Reply:
    body: str
    reply_to: int | None = None


def _bot_reply(body: bytes) -> _Reply | None:
    """A bot's reply from its answer's body: None if it has none (no body, or no `reply`).

    ValueError (saying what is wrong) if the body is not what PROTOCOL §6 asks for:
    `{"reply": {"body": "<text>", "reply_to"?: <message id>}}`.
    """
    if not body.strip():
        return None
    if len(body) >= RESPONSE_KEEP_BYTES:
        raise ValueError(f"the answer is longer than {RESPONSE_KEEP_BYTES} bytes")
    try:
        answer = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"the answer is not JSON ({type(exc).__name__})") from None
    if not isinstance(answer, dict):
        raise ValueError("the answer must be a JSON object")
    reply = answer.get("reply")
    if reply is None:
        return None
    if not isinstance(reply, dict):
        raise ValueError("reply must be an object")
    text, reply_to = reply.get("body"), reply.get("reply_to")
    if not isinstance(text, str):
        raise ValueError("reply.body must be a string")
    if reply_to is not None and (isinstance(reply_to, bool) or not isinstance(reply_to, int)
                                 or not 1 <= reply_to <= MAX_ID):
        raise ValueError("reply.reply_to must be a message id")
    return _Reply(text, reply_to)


def ensure_webhook_delivery(node: Node) -> Actor:
    """Start the node's `webhooks` actor if it is not running yet (at serve, or on the first enqueue)."""
    return node.actors.ensure(ACTOR_NAME, lambda: WebhookDelivery(node).actor)


def wake_webhook_delivery(node: Node) -> None:
    """New deliveries committed: have the actor look now instead of at its next poll. Never blocks."""
    try:
        ensure_webhook_delivery(node).tell(None)
    except (trio.WouldBlock, trio.BrokenResourceError):
        pass  # already woken, or stopping


