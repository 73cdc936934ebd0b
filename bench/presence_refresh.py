#!/usr/bin/env python3
"""Presence refresh benchmark: what keeping a node's sessions alive in Redis costs it, round by round.

Every `presence_ttl_s / 3` each node re-scores its own sessions' entries (one per session in
each of its rooms and one per user) and looks for expired entries in its rooms
(storage/presence/redis.py). This registers `--sessions` sessions of distinct users spread
over `--rooms` rooms on a real Redis (one server, or a cluster with a `redis+cluster://`
URL), then times `--rounds` refreshes of each kind: a plain round, and a maintaining one
(every third, which also extends the keys' TTLs and sweeps the users' keys). It prints this
process's CPU per round (`time.process_time`: the client's side, encoding and replies), its
wall time, and the commands Redis counted (INFO commandstats; one server only). The keys
are throwaway and deleted afterwards.

    python bench/presence_refresh.py                                   # 1000 sessions, 1 room
    python bench/presence_refresh.py --sessions 5000 --rooms 100
    python bench/presence_refresh.py --redis redis+cluster://127.0.0.1:7001
"""

from __future__ import annotations

import argparse
import math
import secrets
import statistics
import sys
import time
from pathlib import Path

import coredis
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from roomcast.config import load_settings
from roomcast.storage.presence.redis import RedisPresence
from roomcast.storage.streams import open_stream_backend
from roomcast.storage.streams.redis_base import RedisStreams


async def commands(streams: RedisStreams) -> int | None:
    """The commands Redis has run so far (None on a cluster: its nodes count apart)."""
    if isinstance(streams.client, coredis.RedisCluster):
        return None
    stats = await streams.client.info("commandstats")
    return sum(int(value["calls"]) for key, value in stats.items()
               if key.startswith("cmdstat_") and isinstance(value, dict))


async def main(args: argparse.Namespace) -> None:
    prefix = f"bench-presence-{secrets.token_hex(4)}:"
    settings = load_settings({"redis_url": args.redis, "redis_key_prefix": prefix, "redis_max_connections": 8},
                             environ={})
    async with open_stream_backend(settings) as streams:
        assert isinstance(streams, RedisStreams)
        presence = RedisPresence(streams.client, prefix, ttl_s=15.0, guard=streams.guarded)
        joins = [(1 + user % args.rooms, 1000 + user, secrets.token_hex(8)) for user in range(args.sessions)]
        for start in range(0, len(joins), 500):
            part = joins[start:start + 500]
            await presence.join_many(part)
            for _, user_id, session_id in part:
                await presence.connect(user_id, session_id)
        try:
            for kind in ("plain", "maintaining"):
                cpu_ms: list[float] = []
                wall_ms: list[float] = []
                calls: list[int] = []
                for _ in range(args.rounds):
                    # A maintaining round is one whose last maintenance is a ttl old.
                    presence._maintained_at = -math.inf if kind == "maintaining" else time.time()
                    before = await commands(streams)
                    cpu, wall = time.process_time(), time.perf_counter()
                    departures = await presence.refresh()
                    cpu_ms.append(1000 * (time.process_time() - cpu))
                    wall_ms.append(1000 * (time.perf_counter() - wall))
                    after = await commands(streams)
                    if before is not None and after is not None:
                        calls.append(after - before - 1)  # less the INFO that read the count
                    assert not departures, departures
                counted = f", {statistics.median(calls):.0f} Redis commands" if calls else ""
                print(f"{kind:11} round, {args.sessions} sessions in {args.rooms} rooms: "
                      f"CPU {statistics.median(cpu_ms):.1f} ms (min {min(cpu_ms):.1f}), "
                      f"wall {statistics.median(wall_ms):.1f} ms{counted}")
        finally:
            keys = [presence._room_key(room) for room in range(1, args.rooms + 1)]
            keys += [presence._user_key(user_id) for _, user_id, _ in joins]
            for start in range(0, len(keys), 500):
                for key in keys[start:start + 500]:
                    await streams.client.delete([key])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    trio.run(main, parser.parse_args())
