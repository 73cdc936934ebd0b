"""The node's supervision tree, built from the settings (DESIGN.md §5).

    roomcast                 root supervisor; if it gives up, open_node raises
    ├── stream_reader        the one multiplexed read of every active room's stream
    ├── outbox_relay         committed outbox rows → room streams
    ├── notices              the notices stream → this node's sessions of each user
    ├── transients           transient events (presence, typing, `event`) → room streams, many per append
    ├── rooms                supervisor of the room actors (started on demand)
    │   ├── room:1
    │   └── room:…
    ├── wal_checkpointer     copies SQLite's WAL into the database beside the writer (SQLite files only)
    ├── read_replica         probes the read replica's lag (with database_read_url only)
    └── …                    actors the services start on first use (`ensure`): announcer, presence
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import trio

from ..config import Settings
from ..storage.database import Database, has_wal
from ..storage.outbox import room_last_seqs
from ..storage.replica import primary_position
from ..storage.streams import Append, StreamBackend
from .actor import Actor
from .backoff import Backoff
from .checkpointer import ACTOR_NAME as CHECKPOINTER
from .checkpointer import CHECKPOINT_INTERVAL_S, WalCheckpointer
from .notices import NoticesHub
from .outbox_relay import OutboxRelay
from .registry import RoomHub
from .stream_reader import StreamReader
from .supervisor import Supervisor
from .transients import TransientPublisher


class ActorSystem:
    """The stream reader, the outbox relay and the room actors, under one root supervisor."""

    def __init__(self, settings: Settings, database: Database, backend: StreamBackend) -> None:
        def supervisor(name: str) -> Supervisor:
            return Supervisor(name, intensity=settings.supervisor_intensity, period=settings.supervisor_period_s,
                              backoff=Backoff(settings.restart_backoff_s, settings.restart_backoff_max_s))

        # How every actor waits out an outage of the database or the stream backend (DESIGN.md §11).
        retry = Backoff(settings.stream_retry_base_s, settings.stream_retry_max_s)
        self.database = database
        self.backend = backend
        self.root = supervisor("roomcast")
        self.reader = StreamReader(backend, block_s=settings.stream_read_block_s, count=settings.stream_read_count,
                                   backoff=retry)
        self.relay = OutboxRelay(database, backend, batch_size=settings.outbox_batch_size,
                                 sweep_s=settings.outbox_sweep_s, backoff=retry)
        self.transients = TransientPublisher(backend)
        self.rooms = RoomHub(database=database, backend=backend, reader=self.reader, supervisor=supervisor("rooms"),
                             idle_s=settings.room_idle_s, replay_buffer=settings.room_replay_buffer,
                             replay_stall_s=settings.room_replay_stall_s, mailbox_size=settings.room_mailbox_size,
                             transients=self.transients, retry=retry, presence_window_s=settings.presence_window_s,
                             presence_diff_limit=settings.presence_diff_limit)
        self.root.add(Actor("stream_reader", self.reader.run, describe_extra=self.reader.describe))
        self.notices = NoticesHub(backend, self.reader)
        self.root.add(Actor("outbox_relay", self.relay.run, describe_extra=self.relay.describe))
        self.root.add(self.notices.actor)
        self.root.add(self.transients.actor)
        self.root.add(self.rooms.supervisor)
        if has_wal(database.engine):
            checkpointer = WalCheckpointer(database, CHECKPOINT_INTERVAL_S, retry)
            self.root.add(Actor(CHECKPOINTER, checkpointer.run, describe_extra=checkpointer.describe))
        replica = database.replica
        if replica is not None:
            self.root.add(Actor("read_replica", lambda _: replica.run(lambda: database.read(primary_position)),
                                describe_extra=replica.describe))
        self._ensured: dict[str, Actor] = {}

    def ensure(self, name: str, make: Callable[[], Actor]) -> Actor:
        """The root's child called `name`, started from `make()` on first use.

        How the layers above add their own actors (the services' announcer, say) without
        the node having to know them: like a room's actor, each starts when first needed.
        """
        actor = self._ensured.get(name)  # kept at hand: some are asked for on every send
        if actor is None or actor.terminated.is_set():
            actor = self.root.child(name)
            if actor is None or actor.terminated.is_set():
                actor = self.root.add(make())
            self._ensured[name] = actor
        return actor

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the tree until cancelled; raises if the root supervisor gives up."""
        await self.root.serve(task_status=task_status)

    def notify_committed(self, room_id: int, events: Sequence[Append] = ()) -> None:
        self.relay.notify(room_id, events)
        self.rooms.touch(room_id)

    async def snapshot(self) -> dict[str, Any]:
        """The live tree for /api/admin/actors, with each room's lag behind the database."""
        tree = self.root.actor.describe()
        rooms = [node for node in _walk(tree) if "room" in node]
        committed = await self.database.read(room_last_seqs, [node["room"] for node in rooms])
        for node in rooms:
            last = committed.get(node["room"], 0)
            node["committed_seq"] = last
            node["lag"] = max(0, last - node["last_seq"]) if node["last_seq"] is not None else None
        return tree


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node.get("children", []):
        found.extend(_walk(child))
    return found
