"""Room streams on a Redis Cluster: rooms spread over every master, one blocking read per master.

Room keys are those of one Redis (`redis_base`), so they spread over the cluster's hash
slots. A command may only name keys of one slot, so no single XREAD can wait on a master's
rooms: each master also holds a *bell*, `<prefix>bell:{<n>}`, a short stream to which
every append adds one entry (a *ring*) naming the rooms it appended to on that master. The
ring goes in the same pipeline as the entries, after them, on the same connection: by the
time a node sees a ring, what it announces is there. `<n>` is the smallest number whose hash
slot the master owns, so every node that sees the same layout picks the same bell.

Each node keeps one blocking XREAD on every master's bell (its *listeners*: connections grow
with masters, not with rooms). A ring marks the rooms it names as not caught up; `read()`
fetches those (non-blocking XREADs, pipelined per master) from the positions it is given.
A room newly attached or moved to another position is fetched once whatever the bells say.
`interrupt()` needs no Redis: `read()` waits on this process's own event.

Outages: a listener that loses its master has missed rings, so the next `read()` raises
StreamUnavailable and the stream reader resyncs every room, as after a Redis restart (each
moves to its stream's end and its room actor heals from the database). A listener that
(re)starts makes the next read fetch every live room once (a *sweep*). While slots move
between masters a ring can land on a bell no node listens to (the appender's layout is
behind); every `sweep_s` every live room is fetched anyway, which bounds how late that
makes an entry. Nothing is lost either way.
"""

from __future__ import annotations

import logging
import math
import secrets
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import coredis
import trio
from coredis import PureToken
from coredis.connection import TCPLocation
from coredis.patterns.pipeline import ClusterPipeline
from coredis.response.types import StreamEntry as RawEntry

from ...config import RedisClusterAddress
from ...logs import log_event
from .base import STREAM_START, Append, ReadCursor, StreamEntry, StreamUnavailable
from .redis_base import _KEY_CACHE_MAX, RedisStreams, client_name, entry, text, unreachable
from .redis_pool import SlotKeepingClusterPool

if TYPE_CHECKING:
    from coredis.cluster._layout import ClusterLayout  # the pool's `cluster_layout`; coredis exports no name for it

log = logging.getLogger("roomcast.streams")

SLOTS = 16384
# Rings kept per bell, and read at once: a listener that gets a full batch may have fallen
# further behind than the bell keeps, so it has every live room fetched.
_BELL_MAXLEN = 10_000
_BELL_COUNT = 1000
# How often the layout is looked at for masters gained, lost or moved (and bells to follow).
_LAYOUT_CHECK_S = 1.0
# A bell no one rings any more (its master lost the slot, the prefix changed) goes after a day;
# each node renews the bells it rings about once an hour.
_BELL_TTL_MS = 24 * 3600 * 1000
_BELL_RENEW_S = 3600.0


class RedisClusterStreamBackend(RedisStreams):
    """Room streams on a Redis Cluster; several processes sharing it serve the same rooms."""

    name = "redis-cluster"

    def __init__(self, client: coredis.RedisCluster[bytes], *, prefix: str, maxlen: int, node_id: str,
                 max_block_s: float = 5.0, sweep_s: float = 10.0, retry_base_s: float = 0.1,
                 retry_max_s: float = 5.0) -> None:
        super().__init__(client, prefix=prefix, maxlen=maxlen, node_id=node_id)
        self.cluster = client
        # A blocked XREAD must return before the client's own request timeout fires.
        self.max_block_s = max_block_s
        self.sweep_s = sweep_s
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.connected = False
        self.listening: set[bytes] = set()  # bells with a listener armed now
        self._bells: dict[str, bytes] = {}  # master ("host:port") → its bell, as of the last look at the layout
        self._renew_at: dict[bytes, float] = {}  # bell → when this node next renews its ttl
        self._layout_sample: tuple[str, ...] = ()
        self._slots: dict[int, int] = {}  # room → hash slot of its key
        self._caught_up: dict[int, str] = {}  # room → the position its last fetch found nothing after
        self._rung_while_fetching: set[int] | None = None
        self._live: Mapping[int, str] = {}  # positions of the read waiting now
        self._news = trio.Event()
        self._interrupted = False
        self._missed = False  # a listener lost its master: rings may be gone
        self._sweep_at = -math.inf

    # ------------------------------------------------------------------ slots and bells

    def slot(self, room_id: int) -> int:
        """The hash slot of the room's stream key."""
        slot = self._slots.get(room_id)
        if slot is None:
            if len(self._slots) >= _KEY_CACHE_MAX:
                self._slots.clear()
            slot = self._slots[room_id] = key_slot(self.key(room_id))
        return slot

    def bell_key(self, tag: int) -> bytes:
        return f"{self.prefix}bell:{{{tag}}}".encode()

    def bells(self, *, look: bool = False) -> dict[str, bytes]:
        """Each master's bell ("host:port" → key). With `look`, first recomputed if the layout changed."""
        if not self._bells or (look and _layout_sample(self._layout(), self._bells.values()) != self._layout_sample):
            self._recompute_bells()
        return self._bells

    def _recompute_bells(self) -> None:
        layout = self._layout()
        self._bells = _bells_of(layout, self.bell_key)
        self._layout_sample = _layout_sample(layout, self._bells.values())

    def _layout(self) -> ClusterLayout:
        return self.cluster.connection_pool.cluster_layout

    def _owners(self, room_ids: Iterable[int]) -> dict[int, str]:
        node_for_slot = self._layout().node_for_slot
        return {room_id: node_for_slot(self.slot(room_id)).name for room_id in room_ids}

    def _stack_rings(self, pipe: ClusterPipeline[bytes], owners: Mapping[int, str]) -> None:
        bells = self.bells()
        rooms_of: dict[bytes, list[str]] = {}
        for room_id, owner in owners.items():
            bell = bells.get(owner)
            if bell is None:  # a master that had no slots when the bells were last computed
                self._recompute_bells()
                bells = self._bells
                bell = bells.get(owner)
            if bell is not None:
                rooms_of.setdefault(bell, []).append(str(room_id))
        now = trio.current_time()
        for bell, rooms in rooms_of.items():
            pipe.xadd(bell, {"r": ",".join(rooms)}, trim_strategy=PureToken.MAXLEN,
                      trim_operator=PureToken.APPROXIMATELY, threshold=_BELL_MAXLEN)
            if now >= self._renew_at.get(bell, -math.inf):
                self._renew_at[bell] = now + _BELL_RENEW_S
                pipe.pexpire(bell, _BELL_TTL_MS)

    # ------------------------------------------------------------------ appends

    async def append(self, items: Sequence[Append]) -> list[str]:
        if not items:
            return []
        with self.guarded():
            owners = self._owners({item.room_id for item in items})
            async with self.cluster.pipeline(transaction=False) as pipe:
                requests = self.stack_appends(pipe, items)
                self._stack_rings(pipe, owners)  # per master after its entries (a pipeline keeps order per node)
            ids = [text(await request) for request in requests]
            # A slot that moved during the append (a MOVED answer updated the layout): its entries
            # went to the new master after the old one's ring, so ring the new one, after them.
            moved = {room_id: owner for room_id, owner in self._owners(owners).items() if owner != owners[room_id]}
            if moved:
                async with self.cluster.pipeline(transaction=False) as pipe:
                    self._stack_rings(pipe, moved)
        return ids

    # ------------------------------------------------------------------ reads

    async def read(self, positions: Mapping[int, str], *, count: int, timeout: float,
                   cursor: ReadCursor | None = None) -> dict[int, list[StreamEntry]]:
        # What a read fetches is what the bells rang for (and rooms moved): `cursor` has nothing to add.
        self.check_connected()
        deadline = trio.current_time() + timeout
        self._live = positions
        try:
            while True:
                if self._missed:
                    self._missed = False
                    raise StreamUnavailable("a master's bell went unheard: rings may be lost")
                self._news = trio.Event()
                due = self._due(positions)
                if due:
                    found = await self._fetch(due, count, positions)
                    if found:
                        return found
                if self._interrupted:
                    self._interrupted = False
                    return {}
                with trio.move_on_at(deadline):
                    await self._news.wait()
                    continue
                return {}
        finally:
            self._live = {}

    def _due(self, positions: Mapping[int, str]) -> dict[int, str]:
        """The rooms to fetch: those rung or moved since their last fetch; all of them at a sweep."""
        now = trio.current_time()
        if now >= self._sweep_at:
            self._sweep_at = now + self.sweep_s
            return dict(positions)
        caught_up = self._caught_up
        return {room_id: position for room_id, position in positions.items() if caught_up.get(room_id) != position}

    async def _fetch(self, due: Mapping[int, str], count: int,
                     positions: Mapping[int, str]) -> dict[int, list[StreamEntry]]:
        """Entries after each due room's position: one XREAD per slot, pipelined per master."""
        by_slot: dict[int, dict[bytes | str, str]] = {}
        for room_id, position in due.items():
            by_slot.setdefault(self.slot(room_id), {})[self.key(room_id)] = position
        found: dict[int, list[StreamEntry]] = {}
        rung: set[int] = set()
        self._rung_while_fetching = rung
        try:
            with self.guarded():
                async with self.cluster.pipeline(transaction=False) as pipe:
                    requests = [pipe.xread(streams, count=count) for streams in by_slot.values()]
                for request in requests:
                    for key, entries in ((await request) or {}).items():
                        room = self.room_of(key)
                        if room is not None and entries:
                            found[room] = [entry(raw) for raw in entries]
        finally:
            self._rung_while_fetching = None
        caught_up = self._caught_up
        if len(caught_up) > 2 * len(positions) + 1000:  # rooms no longer read are forgotten now and then
            self._caught_up = caught_up = {room_id: caught_up[room_id] for room_id in positions
                                           if room_id in caught_up}
        for room_id, position in due.items():
            got = found.get(room_id)
            if room_id in rung or (got is not None and len(got) >= count):
                caught_up.pop(room_id, None)  # rung meanwhile, or more to read: fetch again
            else:
                caught_up[room_id] = got[-1].id if got else position
        return found

    def _ring(self, room_ids: Iterable[int]) -> None:
        """Rooms a bell named: no longer caught up; wake a read waiting for any of them."""
        caught_up, live, rung = self._caught_up, self._live, self._rung_while_fetching
        wake = False
        for room_id in room_ids:
            caught_up.pop(room_id, None)
            if rung is not None:
                rung.add(room_id)
            wake = wake or room_id in live
        if wake:
            self._news.set()

    def _sweep_soon(self) -> None:
        self._sweep_at = -math.inf
        self._news.set()

    def interrupt(self) -> None:
        self._interrupted = True
        self._news.set()

    def check_connected(self) -> None:
        if not self.connected:
            raise StreamUnavailable("redis cluster: not connected")

    # ------------------------------------------------------------------ the connection and the listeners

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect (again and again, until the cluster answers), then keep a listener on each master's bell.

        Started once the first attempt has connected or failed: a node whose cluster is up
        serves at once, one whose cluster is down starts anyway and connects later.
        """
        failures = 0
        announced = False
        while True:
            started = trio.current_time()
            try:
                async with self.cluster, trio.open_nursery() as nursery:
                    self.connected = True
                    failures = 0
                    self.availability.succeeded(started)
                    await nursery.start(self._follow_layout)
                    if not announced:
                        announced = True
                        task_status.started()
            except Exception as exc:
                if not unreachable(exc):
                    raise
                self.availability.failed(exc, started)
            finally:
                self.connected = False
            if not announced:
                announced = True
                task_status.started()
            failures += 1
            await trio.sleep(min(self.retry_max_s, self.retry_base_s * 2 ** min(failures, 16)))

    async def _follow_layout(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """A listener per master's bell; bells of masters gone (or moved) lose theirs."""
        listeners: dict[bytes, trio.CancelScope] = {}
        task_status_sent = False
        async with trio.open_nursery() as nursery:
            while True:
                wanted = set(self.bells(look=True).values())
                for bell in list(listeners):
                    if bell not in wanted:
                        listeners.pop(bell).cancel()
                for bell in wanted - listeners.keys():
                    listeners[bell] = await nursery.start(self._listen, bell)
                if not task_status_sent:
                    task_status_sent = True
                    task_status.started()
                await trio.sleep(_LAYOUT_CHECK_S)

    async def _listen(self, bell: bytes, *, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        """One blocking XREAD after another on `bell`; each ring marks its rooms."""
        with trio.CancelScope() as scope:
            task_status.started(scope)
            position: str | None = None
            failures = 0
            block_ms = max(1, int(self.max_block_s * 1000))
            try:
                while True:
                    try:
                        with self.guarded():
                            if position is None:
                                newest = await self.cluster.xrevrange(bell, count=1)
                                position = text(newest[0].identifier) if newest else STREAM_START
                                self.listening.add(bell)
                                self._sweep_soon()  # whatever came before the bell's end is fetched now
                            reply = await self.cluster.xread({bell: position}, count=_BELL_COUNT, block=block_ms)
                    except StreamUnavailable:
                        failures += 1
                        if position is not None:
                            log_event(log, "streams.bell_lost", logging.DEBUG, bell=bell.decode())
                        position = None
                        self.listening.discard(bell)
                        self._missed = True
                        self._news.set()
                        await trio.sleep(min(self.retry_max_s, self.retry_base_s * 2 ** min(failures, 16)))
                        continue
                    failures = 0
                    entries = (reply or {}).get(bell, ())
                    if not entries:
                        continue
                    position = text(entries[-1].identifier)
                    self._ring(_rooms_rung(entries))
                    if len(entries) >= _BELL_COUNT:
                        self._sweep_soon()
            finally:
                self.listening.discard(bell)


def _rooms_rung(entries: Iterable[RawEntry]) -> set[int]:
    rooms: set[int] = set()
    for raw in entries:
        named = raw.field_values.get(b"r")
        if named:
            rooms.update(int(room_id) for room_id in text(named).split(","))
    return rooms


def _owner(layout: ClusterLayout, slot: int) -> str:
    """The master of `slot` ("host:port"), or "" for a slot without one (the cluster is not whole)."""
    try:
        return layout.node_for_slot(slot).name
    except coredis.exceptions.RedisClusterError:
        return ""


def _layout_sample(layout: ClusterLayout, bells: Iterable[bytes]) -> tuple[str, ...]:
    """Enough of the layout to notice a change that moves a bell: the masters, the owner of
    every 64th slot and of each bell's slot."""
    owners = [_owner(layout, slot) for slot in (*range(0, SLOTS, 64), *(key_slot(bell) for bell in bells))]
    return (*sorted(node.name for node in layout.primaries), *owners)


def _bells_of(layout: ClusterLayout, bell_key: Callable[[int], bytes]) -> dict[str, bytes]:
    """Each master that owns slots → the bell of the smallest n whose slot it owns."""
    owners = {_owner(layout, slot) for slot in range(SLOTS)} - {""}
    bells: dict[str, bytes] = {}
    n = 0
    while len(bells) < len(owners):  # ends: every owner owns a slot, and n's slots cover them all
        owner = _owner(layout, _tag_slot(n))
        if owner and owner not in bells:
            bells[owner] = bell_key(n)
        n += 1
    return bells


def _crc16_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
        table.append(crc)
    return tuple(table)


_CRC16 = _crc16_table()


def key_slot(key: bytes) -> int:
    """The cluster's hash slot of `key`: CRC16 (XMODEM) of the key, or of its {hash tag}, mod 16384."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    crc = 0
    for byte in key:
        crc = ((crc << 8) & 0xFF00) ^ _CRC16[((crc >> 8) & 0xFF) ^ byte]
    return crc % SLOTS


_tag_slots: list[int] = []


def _tag_slot(n: int) -> int:
    """The slot of bell tag `n` (computed once each)."""
    while len(_tag_slots) <= n:
        _tag_slots.append(key_slot(str(len(_tag_slots)).encode()))
    return _tag_slots[n]


@asynccontextmanager
async def open_redis_cluster_backend(address: RedisClusterAddress, *, prefix: str, maxlen: int, max_connections: int,
                                     timeout_s: float, connect_timeout_s: float
                                     ) -> AsyncIterator[RedisClusterStreamBackend]:
    """A pool of at most `max_connections` to each node of the cluster, and the task that keeps it
    connected and listens to the bells.

    Connections are named `<prefix>node:<id>` (CLIENT LIST on each master shows them). The
    cluster may be down at start-up: the node starts, and connects once it answers.
    """
    node_id = secrets.token_hex(6)
    # coredis's own pool loses a slot for every connection lost in the middle of a command (redis_pool).
    pool = SlotKeepingClusterPool(
        startup_nodes=[TCPLocation(host, port) for host, port in address.nodes],
        max_connections=max_connections,
        max_connections_per_node=True,
        client_name=client_name(prefix, node_id),
        stream_timeout=timeout_s,
        connect_timeout=connect_timeout_s,
        username=address.username,
        password=address.password,
        ssl_context=ssl.create_default_context() if address.tls else None,
    )
    client = coredis.RedisCluster(connection_pool=pool)
    backend = RedisClusterStreamBackend(client, prefix=prefix, maxlen=maxlen, node_id=node_id,
                                        max_block_s=timeout_s / 2)
    async with trio.open_nursery() as nursery:
        await nursery.start(backend.run)
        try:
            yield backend
        finally:
            nursery.cancel_scope.cancel()
