#!/usr/bin/env python3
"""Pipeline benchmark: commit → outbox relay → room stream → room actor → subscriber, in one process.

Opens a real node (`open_node`: database, stream backend, stream reader, outbox
relay, room actors under their supervisors), makes `--rooms` group rooms with
`--subscribers` in-process subscribers each, then has `--producers` concurrent
senders commit `--events` messages through the real send path
(`services.messaging.send_message`: one transaction for the message and its
outbox row, then the relay is woken). Every subscriber timestamps each event as
the room actor pushes it. With `--batch K` (K > 1) each producer instead commits
K messages to one room per transaction through the storage layer (seq, message,
outbox row, as send_message stores them, without its checks): fewer commits per
event, to see what the relay, stream and room actors carry when commits are not
the limit.

Figures, per scenario:
  events/s        stored events delivered to subscribers / (first send .. last push)
  commit p50/p99  how long send_message took (the database transaction)
  c→e p50/p99     commit-to-enqueue: from send_message returning to the subscriber's push
It also checks that every subscriber got every event of its room once, in seq order.

Backends: `memory` is the in-process stream on a fresh SQLite file; `redis` is
Redis Streams (unique key prefix, deleted afterwards) on a throwaway PostgreSQL
schema (created and dropped); `redis-cluster` the same on a Redis Cluster
(`--redis-cluster-url`, by default the one .ci/redis-cluster starts). Bounded in
count and in time (`--time-limit`); talks only to the servers named.

    python bench/pipeline.py                                  # memory and redis, 1 and 1000 rooms
    python bench/pipeline.py --backend redis-cluster --rooms 1000
    python bench/pipeline.py --backend memory --rooms 1000 --events 20000 --repeat 3
    python bench/pipeline.py --events 50 --rooms 2            # smoke check, a few seconds
    python bench/pipeline.py --batch 20                       # 20 messages per transaction
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "bench"))

from rest_send import DEFAULT_POSTGRES_URL, database, percentile  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from roomcast.config import load_settings  # noqa: E402
from roomcast.logs import configure_logging  # noqa: E402
from roomcast.node import Node, open_node  # noqa: E402
from roomcast.services.messaging import send_message  # noqa: E402
from roomcast.storage.events import append_event, take_next_seq  # noqa: E402
from roomcast.storage.models import Message, Room, User  # noqa: E402
from roomcast.storage.rooms import insert_room  # noqa: E402
from roomcast.storage.users import create_user  # noqa: E402
from roomcast.timestamps import utcnow  # noqa: E402
from roomcast.wire import message_event, message_to_wire  # noqa: E402
from tests.redis_helpers import REDIS_CLUSTER_URL, delete_keys  # noqa: E402

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# The head of every stored event as the room actor delivers it (wire.message_event, compact JSON).
EVENT_HEAD = re.compile(rb'^\{"type":"message","room":(\d+),"seq":(\d+),')


class Tally:
    """What every probe adds to: deliveries so far, and an event set once all are in."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = 0
        self.overflows = 0
        self.all_in = trio.Event()


class Probe:
    """An in-process subscriber (the hub's Subscriber protocol) that timestamps each push.

    Bounded like a session's outbound queue: past `capacity` it refuses (push → False)
    and the room drops it, which the bench reports as an overflow.
    """

    __slots__ = ("capacity", "items", "tally", "times")

    def __init__(self, capacity: int, tally: Tally) -> None:
        self.capacity = capacity
        self.tally = tally
        self.items: list[bytes] = []
        self.times: list[float] = []

    def push(self, data: bytes) -> bool:
        now = time.perf_counter()
        if len(self.items) >= self.capacity:
            return False
        self.items.append(data)
        self.times.append(now)
        tally = self.tally
        tally.received += 1
        if tally.received >= tally.expected:
            tally.all_in.set()
        return True

    def push_many(self, data: list[bytes]) -> bool:
        now = time.perf_counter()
        if len(self.items) + len(data) > self.capacity:
            return False
        self.items.extend(data)
        self.times.extend([now] * len(data))
        tally = self.tally
        tally.received += len(data)
        if tally.received >= tally.expected:
            tally.all_in.set()
        return True

    def overflowed(self, room_id: int) -> None:
        self.tally.overflows += 1
        self.tally.all_in.set()  # it will never complete: stop waiting

    def free_slots(self) -> int:
        return self.capacity - len(self.items)

    async def wait_for_room(self, n: int) -> bool:
        return False  # it subscribes live only: no replay ever waits here


@dataclass
class Result:
    backend: str
    rooms: int
    subscribers_per_room: int
    producers: int
    batch: int
    events: int
    delivered: int
    seconds: float
    events_per_s: float
    commits_per_s: float
    commit_p50_ms: float
    commit_p99_ms: float
    c2e_p50_ms: float
    c2e_p99_ms: float
    c2e_max_ms: float
    stream_reads: int
    cpu_ms_per_event: float
    load_1min: float
    problems: list[str]


@asynccontextmanager
async def node_for(backend: str, data_dir: Path, postgres_url: str, redis_url: str) -> AsyncIterator[Node]:
    """A node on a fresh database: SQLite + in-process streams, or PostgreSQL + Redis (one, or a cluster)."""
    kind = "sqlite" if backend == "memory" else "postgresql"
    prefix = f"rc-bench:{os.getpid()}:{secrets.token_hex(4)}:"
    with database(kind, data_dir, postgres_url) as url:
        flags: dict[str, Any] = {
            "data_dir": data_dir,
            "database_url": url,
            "jwt_secret": secrets.token_urlsafe(48),
            "log_format": "text",
            "log_level": "warning",
            # Measure the pipeline, not a rate limiter.
            "send_rate_per_s": 1_000_000,
            "send_burst": 1_000_000,
        }
        if backend != "memory":
            flags |= {"redis_url": redis_url, "redis_key_prefix": prefix}
        settings = load_settings(flags, environ={})
        try:
            async with open_node(settings, migrate=False) as node:
                yield node
        finally:
            if backend != "memory":
                await delete_keys(redis_url, prefix)


async def make_users_and_rooms(node: Node, producers: int, rooms: int) -> tuple[list[User], list[int]]:
    """`producers` users, and `rooms` group rooms with every one of them a member."""
    def work(session: Session) -> tuple[list[User], list[int]]:
        tag = secrets.token_hex(3)
        users = [create_user(session, tenant="default", username=f"bench{tag}{i}", role="member")
                 for i in range(producers)]
        members = {user.id: "member" for user in users}
        now = utcnow()
        room_ids = []
        for index in range(rooms):
            room = Room(tenant="default", kind="group", name=f"bench room {index}", topic="", is_active=True,
                        last_seq=0, created_at=now, updated_at=now, last_activity_at=now)
            inserted = insert_room(session, room, members)
            assert inserted is not None
            room_ids.append(inserted.id)
        return users, room_ids

    return await node.database.write(work)


def store_messages(session: Session, room_id: int, sender: User, bodies: list[str]) -> list[int]:
    """Messages and their outbox rows in one transaction, stored as send_message stores one."""
    seqs = []
    for body in bodies:
        now = utcnow()
        seq = take_next_seq(session, room_id, last_activity_at=now)
        message = Message(room_id=room_id, seq=seq, sender_id=sender.id, body=body, created_at=now)
        session.add(message)
        session.flush()
        append_event(session, message_event(room_id, seq, message_to_wire(message, sender)))
        seqs.append(seq)
    session.flush()
    return seqs


async def run_scenario(node: Node, backend: str, rooms: int, subscribers: int, producers: int, batch: int,
                       events: int, time_limit: float) -> Result:
    users, room_ids = await make_users_and_rooms(node, producers, rooms)
    per_room = [0] * rooms
    for n in range(events):
        per_room[(n // batch) % rooms] += 1
    warm_up = producers  # one send per producer before measuring, into the first rooms
    warm_per_room = [warm_up // rooms + (1 if index < warm_up % rooms else 0) for index in range(rooms)]
    tally = Tally(expected=(warm_up + events) * subscribers)
    probes: dict[int, list[Probe]] = {}
    for index, room_id in enumerate(room_ids):
        capacity = per_room[index] + warm_per_room[index]
        probes[room_id] = [Probe(capacity, tally) for _ in range(subscribers)]

    # Attach: each room gets its actor, which attaches to the stream reader.
    limiter = trio.CapacityLimiter(32)

    async def attach(room_id: int) -> None:
        async with limiter:
            for probe in probes[room_id]:
                await node.rooms.subscribe(room_id, probe)

    async with trio.open_nursery() as nursery:
        for room_id in room_ids:
            nursery.start_soon(attach, room_id)
    reader = node.actors.reader
    with trio.fail_after(60):
        # Until the reader holds a stream position for every room: from then on events come by stream.
        while any(reader.position(room_id) is None for room_id in room_ids):
            await trio.sleep(0.01)

    committed: dict[tuple[int, int], float] = {}
    commit_times: list[float] = []

    async def send(user: User, room_id: int, body: str, measure: bool) -> None:
        started = time.perf_counter()
        message, _ = await send_message(node, user, room_id, body)
        done = time.perf_counter()
        if measure:
            committed[(room_id, message["seq"])] = done
            commit_times.append(done - started)

    async def commit_batch(user: User, room_id: int, bodies: list[str]) -> None:
        started = time.perf_counter()
        seqs = await node.database.write(store_messages, room_id, user, bodies)
        node.notify_committed(room_id)
        done = time.perf_counter()
        for seq in seqs:
            committed[(room_id, seq)] = done
        commit_times.append(done - started)

    async def producer(index: int) -> None:
        if batch == 1:
            for n in range(index, events, producers):
                await send(users[index], room_ids[n % rooms], f"message {n} from producer {index} · привет 👋", True)
            return
        # Batch b (of `batch` messages, the last maybe fewer) goes to room b % rooms.
        for b in range(index, -(-events // batch), producers):
            first = b * batch
            last = min(first + batch, events)
            bodies = [f"message {n} from producer {index} · привет 👋" for n in range(first, last)]
            await commit_batch(users[index], room_ids[b % rooms], bodies)

    async with trio.open_nursery() as nursery:
        for index in range(warm_up):
            nursery.start_soon(send, users[index], room_ids[index % rooms], "warm-up", False)
    with trio.fail_after(60):
        while tally.received < warm_up * subscribers:
            await trio.sleep(0.005)

    problems: list[str] = []
    reads_before = reader.reads
    cpu_before = time.process_time()
    started = time.perf_counter()
    with trio.move_on_after(time_limit) as limit:
        async with trio.open_nursery() as nursery:
            for index in range(producers):
                nursery.start_soon(producer, index)
        commits_done = time.perf_counter()
        await tally.all_in.wait()
    finished = time.perf_counter()
    cpu = time.process_time() - cpu_before
    reads = reader.reads - reads_before
    if limit.cancelled_caught:
        problems.append(f"time limit of {time_limit}s reached")
        commits_done = finished
    if tally.overflows:
        problems.append(f"{tally.overflows} subscribers overflowed")

    latencies: list[float] = []
    last_push = started
    for room_id, room_probes in probes.items():
        for probe in room_probes:
            seqs = []
            for data, at in zip(probe.items, probe.times, strict=True):
                head = EVENT_HEAD.match(data)
                if head is None or int(head.group(1)) != room_id:
                    problems.append(f"room {room_id}: unexpected event {data[:60]!r}")
                    continue
                seq = int(head.group(2))
                seqs.append(seq)
                commit = committed.get((room_id, seq))
                if commit is not None:  # None: a warm-up event, or a send cut off by the time limit
                    latencies.append(at - commit)
                    last_push = max(last_push, at)
            if seqs != list(range(1, len(seqs) + 1)):
                problems.append(f"room {room_id}: seqs not 1..n in order")
    delivered = len(latencies)
    if delivered != events * subscribers:
        problems.append(f"delivered {delivered} of {events * subscribers}")
    latencies.sort()
    commit_times.sort()
    elapsed = last_push - started
    return Result(
        backend=backend, rooms=rooms, subscribers_per_room=subscribers, producers=producers, batch=batch,
        events=events,
        delivered=delivered, seconds=round(elapsed, 3),
        events_per_s=round(delivered / subscribers / elapsed, 1) if elapsed > 0 else 0.0,
        commits_per_s=round(len(committed) / (commits_done - started), 1),
        commit_p50_ms=ms(percentile(commit_times, 0.50)), commit_p99_ms=ms(percentile(commit_times, 0.99)),
        c2e_p50_ms=ms(percentile(latencies, 0.50)), c2e_p99_ms=ms(percentile(latencies, 0.99)),
        c2e_max_ms=ms(latencies[-1]) if latencies else 0.0,
        stream_reads=reads, cpu_ms_per_event=round(cpu / max(1, events) * 1000, 3),
        load_1min=os.getloadavg()[0], problems=problems[:10],
    )


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


async def one_run(backend: str, rooms: int, args: argparse.Namespace) -> Result:
    data_dir = Path(tempfile.mkdtemp(prefix="roomcast-pipeline-"))
    try:
        redis_url = args.redis_cluster_url if backend == "redis-cluster" else args.redis_url
        async with node_for(backend, data_dir, args.postgres_url, redis_url) as node:
            return await run_scenario(node, backend, rooms, args.subscribers, args.producers, args.batch,
                                      args.events, args.time_limit)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


COLUMNS = [
    ("backend", "backend", "{}"), ("rooms", "rooms", "{}"), ("run", "run", "{}"),
    ("events_per_s", "events/s", "{:.0f}"), ("commits_per_s", "commits/s", "{:.0f}"),
    ("commit_p50_ms", "commit p50", "{:.2f}"), ("commit_p99_ms", "commit p99", "{:.2f}"),
    ("c2e_p50_ms", "c→e p50", "{:.2f}"), ("c2e_p99_ms", "c→e p99", "{:.2f}"), ("c2e_max_ms", "c→e max", "{:.2f}"),
    ("stream_reads", "reads", "{}"), ("cpu_ms_per_event", "cpu ms/ev", "{:.3f}"), ("load_1min", "load", "{:.2f}"),
]


def table(rows: list[dict[str, Any]]) -> str:
    cells = [[title for _, title, _ in COLUMNS]]
    cells += [[fmt.format(row[key]) for key, _, fmt in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)) for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("memory", "redis", "redis-cluster", "all"), default="all")
    parser.add_argument("--rooms", default="1,1000", help="comma-separated room counts, one scenario each")
    parser.add_argument("--events", type=int, default=5_000, help="messages committed per scenario")
    parser.add_argument("--producers", type=int, default=8, help="concurrent senders (each a user)")
    parser.add_argument("--subscribers", type=int, default=1, help="in-process subscribers per room")
    parser.add_argument("--batch", type=int, default=1,
                        help="messages per transaction: 1 is send_message; more commits K at a time (storage layer)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario; the table marks the best")
    parser.add_argument("--time-limit", type=float, default=120.0, help="give up on a run after this many seconds")
    parser.add_argument("--postgres-url", default=os.environ.get("ROOMCAST_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--redis-url", default=os.environ.get("ROOMCAST_BENCH_REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument("--redis-cluster-url", default=os.environ.get("ROOMCAST_BENCH_REDIS_CLUSTER_URL",
                                                                      REDIS_CLUSTER_URL))
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args()
    try:
        room_counts = [int(part) for part in args.rooms.split(",") if part.strip()]
    except ValueError:
        parser.error("--rooms takes comma-separated integers, e.g. 1,1000")
    if not (room_counts and all(1 <= r <= 10_000 for r in room_counts) and 1 <= args.producers <= 256
            and 1 <= args.subscribers <= 1000 and 1 <= args.events <= 1_000_000 and 1 <= args.repeat <= 20
            and 1 <= args.batch <= 1000):
        parser.error("need 1 <= rooms <= 10000, 1 <= producers <= 256, 1 <= subscribers <= 1000, "
                     "1 <= events <= 1000000, 1 <= repeat <= 20, 1 <= batch <= 1000")
    configure_logging("text", "warning")
    logging.getLogger("roomcast").setLevel(logging.WARNING)
    backends = ["memory", "redis"] if args.backend == "all" else [args.backend]

    rows: list[dict[str, Any]] = []
    for backend in backends:
        for rooms in room_counts:
            runs = []
            for run in range(1, args.repeat + 1):
                result = trio.run(one_run, backend, rooms, args)
                runs.append({**asdict(result), "run": run})
                print(f"  {backend} rooms={rooms} run {run}: {result.events_per_s:.0f} events/s, "
                      f"c→e p50 {result.c2e_p50_ms:.2f}ms p99 {result.c2e_p99_ms:.2f}ms"
                      + (f"  PROBLEMS: {result.problems}" if result.problems else ""), file=sys.stderr)
            best = max(runs, key=lambda row: row["events_per_s"])
            best["best"] = True
            if len(runs) > 1:
                rates = [row["events_per_s"] for row in runs]
                best["spread_events_per_s"] = [min(rates), max(rates)]
                best["spread_c2e_p99_ms"] = [min(r["c2e_p99_ms"] for r in runs), max(r["c2e_p99_ms"] for r in runs)]
            rows.extend(runs)

    failed = [row for row in rows if row["problems"]]
    load = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps({"command": " ".join([os.path.basename(sys.executable), *sys.argv]), "cpus": os.cpu_count(),
                          "load_average": load, "results": rows}, indent=2, ensure_ascii=False))
        return 1 if failed else 0
    print(f"pipeline: producers={args.producers} batch={args.batch} events={args.events} "
          f"subscribers/room={args.subscribers} repeat={args.repeat}; {os.cpu_count()} cores; "
          f"load average {' '.join(map(str, load))}")
    print(table(rows))
    for row in rows:
        if row.get("spread_events_per_s"):
            low, high = row["spread_events_per_s"]
            p99_low, p99_high = row["spread_c2e_p99_ms"]
            print(f"{row['backend']} rooms={row['rooms']}: best run {row['run']}; events/s {low:.0f}..{high:.0f}, "
                  f"c→e p99 {p99_low:.2f}..{p99_high:.2f}ms over {args.repeat} runs")
    for row in failed:
        print(f"PROBLEMS in {row['backend']} rooms={row['rooms']} run {row['run']}: {row['problems']}")
    print("events/s: events delivered / (first send .. last push); commits/s: events committed / commit phase; "
          "commit: one send_message (or --batch transaction); c→e: commit returned → subscriber push")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
