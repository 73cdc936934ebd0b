"""`message.unread` (PROTOCOL §6): members with no live connection who leave a message unread.

A member is notified once per room and window: when a message of someone else, not deleted,
is still past their read pointer `notify_after_s` after it was sent and they have no live
connection on any node, one `message.unread` is queued covering every unread message of the
room they have not been notified of (`count`, `first_seq`, `last_seq`). Their `notified_seq`
moves to `last_seq` in the transaction that queues it, with a conditional update
(storage/unread.py), so nodes that scan together notify once; a member who is online when the
window ends is passed over the same way (the messages were in front of them).

The `unread` actor scans every `notify_poll_s` (and costs the send path nothing: the scan reads
what sends store anyway). It only looks at rooms with activity since its previous scan's
window, so each poll reads what moved lately; after a start it looks back `_LOOKBACK_S`.
A database or presence outage is waited out. `scan_unread` takes `now`, so tests move time.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection
from datetime import datetime, timedelta
from functools import partial

import trio
from sqlalchemy.orm import Session

from ..actors.actor import Actor, ActorContext
from ..actors.backoff import Backoff, until_available
from ..logs import log_event
from ..node import Node
from ..storage.unread import UNREAD_EVENT, Candidate, due_candidates, mark_notified, tenants_wanting_unread
from ..timestamps import to_wire, utcnow
from ..wire import JsonObject
from .webhook_events import config_targets, enqueue

log = logging.getLogger("roomcast.unread")

ACTOR_NAME = "unread"
_BATCH = 200
_MAX_BATCHES = 50  # per scan; what is left waits for the next
# How far back a freshly started scanner looks for rooms whose activity it has not seen, and
# how much its window overlaps the previous one (a message's time is taken before its commit).
_LOOKBACK_S = 86_400.0
_OVERLAP_S = 60.0


async def scan_unread(node: Node, now: datetime, since: datetime | None = None) -> int:
    """Queue `message.unread` for every member due one at `now`; how many were queued.

    `since`: look only at rooms with activity from then on (default: `_LOOKBACK_S` before the window).
    """
    settings = node.settings
    due_before = now - timedelta(seconds=settings.notify_after_s)
    since = since if since is not None else due_before - timedelta(seconds=_LOOKBACK_S)
    tenants: list[str] | None = None
    if not any(target.wants(UNREAD_EVENT, {}) for target in config_targets(settings)):
        tenants = await node.database.read(tenants_wanting_unread)
        if not tenants:
            return 0  # nobody wants it: nothing is read, nothing is marked
    queued = 0
    for _ in range(_MAX_BATCHES):
        candidates = await node.database.read(due_candidates, tenants, since, due_before, _BATCH)
        if not candidates:
            break
        online = await node.presence.online_users({candidate.user_id for candidate in candidates})
        queued += await node.database.write(_notify, node, candidates, online, due_before)
        if len(candidates) < _BATCH:
            break
    return queued


def _notify(session: Session, node: Node, candidates: list[Candidate], online: Collection[int],
            due_before: datetime) -> int:
    queued = 0
    for candidate in candidates:
        unread = mark_notified(session, candidate.room_id, candidate.user_id, due_before)
        if unread is None or candidate.user_id in online:
            continue
        enqueue(node, session, candidate.tenant, UNREAD_EVENT, candidate.room_id, user=candidate.user_id,
                username=unread.username, count=unread.count, first_seq=unread.first_seq,
                last_seq=unread.last_seq, first_at=to_wire(unread.first_at))
        queued += 1
    return queued


class UnreadScanner:
    """The `unread` actor: `scan_unread` every `notify_poll_s`, its window moving on after each scan."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.since: datetime | None = None
        self.db_retry = Backoff(node.settings.stream_retry_base_s, node.settings.stream_retry_max_s)
        self.counts: Counter[str] = Counter()
        self.actor = Actor(ACTOR_NAME, self.run, describe_extra=self.describe)

    async def run(self, ctx: ActorContext) -> None:
        settings = self.node.settings
        while True:
            now = utcnow()
            try:
                queued = await until_available(partial(scan_unread, self.node, now, self.since), self.db_retry, log,
                                               "unread.waiting")
            except Exception as exc:  # a bug, not an outage: logged; the next scan covers the same window
                log_event(log, "unread.scan_failed", logging.ERROR, error=repr(exc))
            else:
                self.counts["scans"] += 1
                self.counts["queued"] += queued
                self.since = now - timedelta(seconds=settings.notify_after_s + _OVERLAP_S)
            await trio.sleep(settings.notify_poll_s)

    def describe(self) -> JsonObject:
        return {"scans": self.counts["scans"], "queued": self.counts["queued"]}


def ensure_unread_scanner(node: Node) -> Actor:
    """Start the node's `unread` actor if it is not running yet (at serve)."""
    return node.actors.ensure(ACTOR_NAME, lambda: UnreadScanner(node).actor)
