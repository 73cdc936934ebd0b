"""What /metrics and /api/admin/stats report about a node, read from what the node already keeps.

Each node has one `Monitor`, made on first use (`monitor(node)`). It is the Prometheus
collector of the node's live state (sessions, subscriptions, room actors, deliveries,
restarts, the database pool), read at scrape time so the message path keeps no books
for it, and the behaviour of the node's `stats` actor, which samples the counters every
`stats_interval_s` (the rates over 10 s and 1 min come from those samples) and, with
Redis, posts the node's figures for the other nodes' `/api/admin/stats`.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

from ..actors.actor import Actor, ActorContext
from ..availability import Availability
from ..errors import DependencyUnavailable
from ..logs import log_event
from ..node import Node
from ..storage.outbox import outbox_backlog, room_last_seqs
from ..storage.replica import FALLBACK_REASONS
from ..timestamps import to_wire, utcnow
from ..wire import JsonObject

log = logging.getLogger("roomcast.monitoring")

# The windows of the rates /api/admin/stats reports, by their name there.
RATE_WINDOWS = {"10s": 10.0, "1m": 60.0}
# How long a scrape waits for the database figures (outbox and stream lag) before it shows the last ones.
_DATABASE_FIGURES_TIMEOUT_S = 2.0
# Room ids per query when reading the committed seq of every live room (bound parameters are limited).
_ROOMS_PER_QUERY = 1000


class Rates:
    """Per-second rates of growing counters over recent windows, from a ring of periodic samples."""

    def __init__(self, interval_s: float, span_s: float = max(RATE_WINDOWS.values())) -> None:
        # One sample at least `span_s` old must still be there when the span is asked for.
        self._samples: deque[tuple[float, tuple[int, ...]]] = deque(maxlen=math.ceil(span_s / interval_s) + 2)

    def add(self, now: float, values: tuple[int, ...]) -> None:
        self._samples.append((now, values))

    def per_second(self, now: float, current: tuple[int, ...], window_s: float) -> tuple[float, ...]:
        """Each counter's growth per second from the newest sample at least `window_s` old (or the oldest
        there is, early on) to `current`, its value `now`; zeros before there is a sample."""
        base: tuple[float, tuple[int, ...]] | None = None
        for sample in self._samples:
            if sample[0] > now - window_s and base is not None:
                break
            base = sample
        if base is None or now - base[0] <= 0:
            return tuple(0.0 for _ in current)
        elapsed = now - base[0]
        return tuple(max(0, value - old) / elapsed for value, old in zip(current, base[1], strict=True))


@dataclass(slots=True)
class DatabaseFigures:
    """What only the database knows, as of the last scrape that could ask it."""

    outbox_unpublished: int = 0
    outbox_oldest_age_s: float = 0.0
    stream_lag: int = 0
    stream_lag_max: int = 0


class Monitor:
    """A node's live figures: its Prometheus collector, and its `stats` actor's behaviour."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.rates = Rates(node.settings.stats_interval_s)
        self.database_figures = DatabaseFigures()
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = to_wire(utcnow())
        self._board_failing = False

    # ------------------------------------------------------------------ figures

    def deliveries(self) -> int:
        """Events handed to this node's sessions since start: room events and notices."""
        return self.node.rooms.deliveries + self.node.notices.delivered

    def counters(self) -> tuple[int, int]:
        """(messages committed, deliveries): the counters the rates are of."""
        return self.node.metrics.messages_committed, self.deliveries()

    def figures(self) -> JsonObject:
        """This node's figures for /api/admin/stats, as of now."""
        node = self.node
        now = trio.current_time()
        current = self.counters()
        rates = {name: self.rates.per_second(now, current, window) for name, window in RATE_WINDOWS.items()}
        return {
            "id": node.metrics.node_id,
            "host": self.host,
            "pid": self.pid,
            "started_at": self.started_at,
            "updated_at": to_wire(utcnow()),
            "connections": node.notices.session_count,
            "users_online": len(node.notices.users),
            "subscriptions": node.rooms.subscriptions,
            "rooms": len(node.rooms),
            "messages_per_s": {name: round(pair[0], 3) for name, pair in rates.items()},
            "deliveries_per_s": {name: round(pair[1], 3) for name, pair in rates.items()},
        }

    async def refresh_database_figures(self) -> bool:
        """Ask the database for the outbox backlog and the room actors' lag; False if it did not answer."""
        positions = self.node.rooms.positions()

        def read(session: Session) -> tuple[tuple[int, datetime | None], dict[int, int]]:
            rooms = list(positions)
            committed: dict[int, int] = {}
            for start in range(0, len(rooms), _ROOMS_PER_QUERY):
                committed.update(room_last_seqs(session, rooms[start:start + _ROOMS_PER_QUERY]))
            return outbox_backlog(session), committed

        with trio.move_on_after(_DATABASE_FIGURES_TIMEOUT_S):
            try:
                (unpublished, oldest), committed = await self.node.database.read(read)
            except DependencyUnavailable:
                return False  # logged once by the database's gateway; the last figures stand
            lags = [max(0, committed[room] - seq) for room, seq in positions.items() if room in committed]
            age = 0.0
            if oldest is not None:
                moment = oldest if oldest.tzinfo is not None else oldest.replace(tzinfo=UTC)
                age = max(0.0, (utcnow() - moment).total_seconds())
            self.database_figures = DatabaseFigures(unpublished, age, sum(lags), max(lags, default=0))
            return True
        return False

    # ------------------------------------------------------------------ Prometheus

    def collect(self) -> Iterator[Metric]:
        """The node's state as metric families (called by the registry at every scrape)."""
        node = self.node
        yield _gauge("roomcast_connections", "Open WebSocket sessions on this node.", node.notices.session_count)
        yield _gauge("roomcast_users_online", "Distinct users with a WebSocket session on this node.",
                     len(node.notices.users))
        yield _gauge("roomcast_subscriptions", "Room subscriptions of this node's sessions.", node.rooms.subscriptions)
        yield _gauge("roomcast_room_actors", "Live room actors on this node.", len(node.rooms))
        yield _counter("roomcast_messages_committed", "Messages committed by this node (REST and /ws sends).",
                       node.metrics.messages_committed)
        yield _counter("roomcast_send_transactions", "Transactions that committed those messages (group commit: "
                       "several sends, of any rooms, per transaction).", node.metrics.send_transactions)
        deliveries = CounterMetricFamily("roomcast_deliveries", "Events handed to this node's sessions "
                                         "(an event to n sessions counts n), by source.", labels=["source"])
        deliveries.add_metric(["room"], node.rooms.deliveries)
        deliveries.add_metric(["notice"], node.notices.delivered)
        yield deliveries
        yield _counter("roomcast_ws_frames_out", "WebSocket frames written by this node.", node.metrics.wire.frames)
        yield _counter("roomcast_ws_bytes_out", "Bytes written to WebSocket connections by this node.",
                       node.metrics.wire.bytes)
        figures = self.database_figures
        yield _gauge("roomcast_outbox_unpublished", "Committed events not yet marked published to their "
                     "stream (all nodes; marking trails publishing by up to a second).", figures.outbox_unpublished)
        yield _gauge("roomcast_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row.",
                     figures.outbox_oldest_age_s)
        yield _gauge("roomcast_stream_lag_events", "Events committed but not yet delivered by this node's room "
                     "actors, all rooms together.", figures.stream_lag)
        yield _gauge("roomcast_stream_lag_max_events", "The largest lag of one room actor of this node.",
                     figures.stream_lag_max)
        restarts = CounterMetricFamily("roomcast_actor_restarts", "Actor restarts, by supervisor.",
                                       labels=["supervisor"])
        for supervisor in (node.actors.root, node.actors.rooms.supervisor):
            restarts.add_metric([supervisor.path], supervisor.restarts_total)
        yield restarts
        yield from self._database_pool()
        yield from self._replica()
        up = GaugeMetricFamily("roomcast_dependency_up", "1 while a dependency answers, 0 during an outage.",
                               labels=["dependency"])
        up.add_metric(["database"], 0 if node.database.availability.is_down else 1)
        if node.database.replica is not None:
            up.add_metric(["database_read"], 0 if node.database.replica.availability.is_down else 1)
        streams = getattr(node.streams, "availability", None)
        up.add_metric(["streams"], 0 if isinstance(streams, Availability) and streams.is_down else 1)
        yield up

    def _database_pool(self) -> Iterator[Metric]:
        database = self.node.database
        pool = database.engine.pool
        if isinstance(pool, QueuePool):
            yield _gauge("roomcast_db_pool_size", "Connections the database pool keeps.", pool.size())
            yield _gauge("roomcast_db_pool_checked_out", "Pooled database connections in use.", pool.checkedout())
            yield _gauge("roomcast_db_pool_overflow", "Connections open beyond the pool size.", max(0, pool.overflow()))
        limiter = database.limiter
        yield _gauge("roomcast_db_threads_busy", "Worker threads running database work.", limiter.borrowed_tokens)
        yield _gauge("roomcast_db_threads_limit", "Worker threads database work may use at once.",
                     limiter.total_tokens)

    def _replica(self) -> Iterator[Metric]:
        replica = self.node.database.replica
        if replica is None:
            return
        yield _gauge("roomcast_db_replica_in_use", "1 while the read replica serves reads, 0 while it is "
                     "unavailable, starting or lagging (the primary serves them).", 1 if replica.state == "ok" else 0)
        yield _gauge("roomcast_db_replica_lag_seconds", "How long ago the primary had WAL the read replica has "
                     "not replayed (0: none; measured every database_read_probe_s).", replica.lag_s or 0.0)
        yield _counter("roomcast_db_replica_reads", "Client reads (history, room lists, replays) the read "
                       "replica answered.", replica.served)
        fallbacks = CounterMetricFamily(
            "roomcast_db_replica_fallbacks", "Client reads the read replica could have answered that the primary "
            "answered, by why: the replica unavailable, starting or lagging; own_write (the user's write not yet "
            "replayed); behind (short of a position the client gave); refused (asked again of the primary); "
            "conflict (cancelled by replay); error (the replica failed it).", labels=["reason"])
        for reason in FALLBACK_REASONS:
            fallbacks.add_metric([reason], replica.fallbacks[reason])
        yield fallbacks

    # ------------------------------------------------------------------ the stats actor

    async def run(self, ctx: ActorContext) -> None:
        """Sample the counters every interval; with Redis, post this node's figures for the others."""
        interval = self.node.settings.stats_interval_s
        try:
            while True:
                self.rates.add(trio.current_time(), self.counters())
                await self._post()
                await trio.sleep(interval)
        finally:
            await self._withdraw()

    async def _post(self) -> None:
        board = self.node.stats_board
        if board is None:
            return
        try:
            await board.publish(self.node.metrics.node_id, self.figures(), list(self.node.notices.users))
        except DependencyUnavailable as exc:  # the outage is logged once by its gateway
            if not self._board_failing:
                log_event(log, "stats.post_failed", logging.DEBUG, error=str(exc))
            self._board_failing = True
            return
        except Exception as exc:  # not an outage (Redis refused the command, say): a bug; the next round tries again
            log_event(log, "stats.post_failed", logging.WARNING, error=repr(exc))
            return
        self._board_failing = False

    async def _withdraw(self) -> None:
        """Take this node's figures out of Redis at once (an orderly stop); best effort."""
        board = self.node.stats_board
        if board is not None:
            with trio.move_on_after(1, shield=True):
                try:
                    await board.withdraw(self.node.metrics.node_id)
                except DependencyUnavailable:
                    pass  # they expire within stats_ttl_s


def monitor(node: Node) -> Monitor:
    """The node's Monitor, registered with its metrics and its `stats` actor running (made on first use)."""
    found = node.metrics.install("roomcast", lambda: Monitor(node))
    node.actors.ensure("stats", lambda: Actor("stats", found.run))
    return found


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)
