"""One roomcast server process: its settings and the services every request uses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from .actors.notices import NoticesHub
from .actors.registry import RoomHub
from .actors.system import ActorSystem
from .config import Settings
from .identity.contact_policy import ContactPolicy
from .identity.tokens import TokenCodec
from .identity.user_cache import UserCache
from .login_throttle import LoginThrottle
from .metrics import NodeMetrics
from .ratelimit import Limiter, RateLimiter, SharedRateLimiter
from .storage.blobs import BlobStore, DatabaseBlobs
from .storage.database import Database
from .storage.migrate import upgrade
from .storage.presence import Presence, open_presence
from .storage.replica import ReadReplica
from .storage.stats_board import RedisStatsBoard, open_stats_board
from .storage.streams import Append, StreamBackend, open_stream_backend


@dataclass
class Node:
    """What the HTTP and WebSocket layers reach for; built once per process by open_node."""

    settings: Settings
    database: Database
    blobs: BlobStore  # attachment bytes
    tokens: TokenCodec
    user_cache: UserCache  # users by id for authentication, forgotten on every node when changed
    contact_policy: ContactPolicy
    streams: StreamBackend
    actors: ActorSystem
    presence: Presence
    metrics: NodeMetrics
    stats_board: RedisStatsBoard | None  # where nodes sharing a Redis post their figures; None without Redis
    send_limiter: Limiter
    typing_limiter: Limiter
    login_throttle: LoginThrottle

    @property
    def rooms(self) -> RoomHub:
        """Room actors: subscribe / unsubscribe / publish_transient (see RoomHub)."""
        return self.actors.rooms

    @property
    def notices(self) -> NoticesHub:
        """Events to users wherever they are connected: publish, and this node's sessions by user, tenant and role."""
        return self.actors.notices

    def readiness_probes(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """What /readyz checks: each probe raises when its dependency is unreachable."""
        return {"database": self.database.ping, "streams": self.streams.ping}

    def readiness_notes(self) -> dict[str, str]:
        """What /readyz reports but is not judged by: the read replica's state (the primary serves without it)."""
        replica = self.database.replica
        return {} if replica is None else {"database_read": replica.state}

    def notify_committed(self, room_id: int, events: Sequence[Append] = ()) -> None:
        """Called right after a transaction that wrote outbox rows for `room_id` commits.

        Never blocks: it wakes the outbox relay, which publishes the rows to the
        room's stream (DESIGN.md §1), and makes sure the room has an actor. `events`:
        the committed outbox rows, if the caller has them (they are then not read back).
        """
        self.actors.notify_committed(room_id, events)


def _limits(settings: Settings, streams: StreamBackend) -> tuple[Limiter, Limiter, LoginThrottle]:
    """The send and typing buckets and the login throttle: in Redis, shared by every node, when
    the streams are there (on their connection pool), else in this process."""
    from .storage.streams.redis_base import RedisStreams

    if not isinstance(streams, RedisStreams):
        return (RateLimiter(settings.send_rate_per_s, settings.send_burst),
                RateLimiter(settings.typing_rate_per_s, settings.typing_burst),
                LoginThrottle(settings.login_failures_per_username, settings.login_failures_per_address))
    client, prefix = streams.client, settings.redis_key_prefix
    return (SharedRateLimiter(client, f"{prefix}rate:send:", settings.send_rate_per_s, settings.send_burst),
            SharedRateLimiter(client, f"{prefix}rate:typing:", settings.typing_rate_per_s, settings.typing_burst),
            LoginThrottle(settings.login_failures_per_username, settings.login_failures_per_address,
                          redis=client, key_prefix=prefix))


@asynccontextmanager
async def open_node(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Node]:
    """Connect to the database (migrating it first, unless told not to) and the stream
    backend, run the supervision tree, and yield the node; leaving stops the tree."""
    database = Database.from_url(settings.resolved_database_url, settings.database_pool_size,
                                 ReadReplica.from_settings(settings), settings.database_timeout_s)
    try:
        if migrate:
            await trio.to_thread.run_sync(upgrade, database.engine)
        async with open_stream_backend(settings) as streams, trio.open_nursery() as nursery:
            actors = ActorSystem(settings, database, streams)
            await nursery.start(lambda task_status: actors.run(task_status=task_status))
            presence = open_presence(settings, streams)
            user_cache = UserCache(settings.user_cache_ttl_s, settings.user_cache_size)
            actors.notices.watch(user_cache)
            send_limiter, typing_limiter, login_throttle = _limits(settings, streams)
            node = Node(
                settings=settings,
                database=database,
                blobs=DatabaseBlobs(database),
                tokens=TokenCodec.from_settings(settings),
                user_cache=user_cache,
                contact_policy=ContactPolicy(settings.contact_policy),
                streams=streams,
                actors=actors,
                presence=presence,
                send_limiter=send_limiter,
                typing_limiter=typing_limiter,
                login_throttle=login_throttle,
                metrics=NodeMetrics(),
                stats_board=open_stats_board(settings, streams),
            )
            yield node
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await database.aclose()
