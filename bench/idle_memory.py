#!/usr/bin/env python3
"""What each idle /ws connection allocates in the server, by allocation site (tracemalloc).

Starts a real roomcast server with tracemalloc on, opens a few connections to warm it up, takes a
snapshot, opens N more idle connections with the fan-out load generator (its `idle` mode:
welcomed, not subscribed) and takes another; prints the bytes per connection of each allocation
site that grew, with the innermost roomcast line that led to it. `bench/fanout.py --scenario
idle-5000` gives the RSS figure; this says where it goes.

    python bench/idle_memory.py                         # 2000 connections, SQLite + in-process streams
    python bench/idle_memory.py -n 5000 --stack postgresql-redis --top 60
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import fanout  # noqa: E402

from roomcast.identity.tokens import TokenCodec  # noqa: E402

TRACED = "--traced-server"


def traced_server(argv: list[str]) -> None:
    """Run `run.py ARGV` with tracemalloc on; SIGUSR1 writes snapshot-K.pickle into $IDLE_MEMORY_DIR."""
    tracemalloc.start(int(os.environ.get("IDLE_MEMORY_FRAMES", "16")))
    out, taken = Path(os.environ["IDLE_MEMORY_DIR"]), [0]

    def snapshot(_signum: int, _frame: object) -> None:
        taken[0] += 1
        tracemalloc.take_snapshot().dump(str(out / f"snapshot-{taken[0]}.pickle"))
        (out / f"done-{taken[0]}").touch()

    signal.signal(signal.SIGUSR1, snapshot)
    sys.argv = [str(ROOT / "run.py"), *argv]
    runpy.run_path(str(ROOT / "run.py"), run_name="__main__")


def connect_idle(url: str, tokens: list[str], room: int, workdir: Path, server_pid: int) -> subprocess.Popen[str]:
    """The load generator with `tokens` connected and idle; close its stdin to let it go."""
    plan = {"url": url, "mode": "idle", "presence": "legacy", "server_pid": server_pid,
            "rooms": [{"id": room, "publisher": tokens[0], "subscribers": tokens}]}
    (workdir / "plan.json").write_text(json.dumps(plan))
    gen = subprocess.Popen(["node", str(fanout.LOADGEN / "loadgen.mjs"), str(workdir / "plan.json")],
                           stdout=subprocess.PIPE, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                           preexec_fn=fanout.child_setup(fanout.core_split(True)[1]))
    assert gen.stdout is not None
    if not gen.stdout.readline():
        raise SystemExit("the load generator failed")
    return gen


def report(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, connections: int, top: int) -> None:
    sizes: collections.Counter[tuple[str, str]] = collections.Counter()
    blocks: collections.Counter[tuple[str, str]] = collections.Counter()
    for stat in after.compare_to(before, "traceback"):
        frames = list(stat.traceback)  # oldest first
        site = frames[-1]
        ours = next((f for f in reversed(frames) if "/roomcast/" in f.filename), None)
        key = (f"{site.filename.split('site-packages/')[-1].split(str(ROOT) + '/')[-1]}:{site.lineno}",
               f"{ours.filename.split(str(ROOT) + '/')[-1]}:{ours.lineno}" if ours else "-")
        sizes[key] += stat.size_diff
        blocks[key] += stat.count_diff
    print(f"traced: {sum(sizes.values()) / connections:,.0f} bytes per connection")
    print(f"{'bytes':>8} {'blocks':>6}  allocated at  <-  from roomcast's")
    for key, size in sizes.most_common(top):
        print(f"{size / connections:8.1f} {blocks[key] / connections:6.2f}  {key[0]}  <-  {key[1]}")


def main() -> None:
    if sys.argv[1:2] == [TRACED]:
        traced_server(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--connections", type=int, default=2000)
    parser.add_argument("--stack", choices=fanout.ROOMCAST_STACKS, default="sqlite-memory")
    parser.add_argument("--top", type=int, default=40, help="allocation sites to show")
    args = parser.parse_args()
    fanout.raise_file_limit()
    fanout.ensure_loadgen()
    warm = 50
    with tempfile.TemporaryDirectory(prefix="rc-idle-memory-") as tmp:
        workdir = Path(tmp)
        users = warm + args.connections
        with fanout.database(args.stack, workdir) as url:
            user_ids, room_ids = fanout.prepare(url, users + 1, fanout.seating(1, users, users))
            codec = TokenCodec("HS256", fanout.SECRET, fanout.SECRET, ttl_s=3600)
            tokens = [codec.mint(uid) for uid in user_ids]
            env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")} | {
                "ROOMCAST_NO_BOOTSTRAP": "1", "ROOMCAST_DATA_DIR": str(workdir), "ROOMCAST_DATABASE_URL": url,
                "ROOMCAST_JWT_SECRET": fanout.SECRET, "ROOMCAST_LOG_LEVEL": "warning",
                "IDLE_MEMORY_DIR": str(workdir)}
            if args.stack.endswith("redis"):
                env |= {"ROOMCAST_REDIS_URL": fanout.REDIS, "ROOMCAST_REDIS_KEY_PREFIX": f"rc-idle:{os.getpid()}:"}
            command = [sys.executable, __file__, TRACED, "serve", "--port", "0"]
            with fanout.listening(command, env, workdir / "server.log", fanout.core_split(True)[0]) as (server, base):
                url_ws = base.replace("http://", "ws://")

                def snapshot(number: int) -> tracemalloc.Snapshot:
                    server.send_signal(signal.SIGUSR1)
                    while not (workdir / f"done-{number}").exists():
                        time.sleep(0.1)
                    return tracemalloc.Snapshot.load(str(workdir / f"snapshot-{number}.pickle"))

                # A first batch comes and goes: what the first connections make once is not per connection.
                gen = connect_idle(url_ws, tokens[:warm], room_ids[0], workdir, server.pid)
                assert gen.stdin is not None
                gen.stdin.close()
                gen.wait(timeout=60)
                time.sleep(2)
                before, rss_before = snapshot(1), fanout.rss_kib(server.pid)
                gen = connect_idle(url_ws, tokens[warm:users], room_ids[0], workdir, server.pid)
                time.sleep(2)
                after, rss_after = snapshot(2), fanout.rss_kib(server.pid)
                assert gen.stdin is not None
                gen.stdin.close()
                gen.wait(timeout=60)
    print(f"{args.connections} idle connections, {args.stack}; RSS (with tracemalloc's own overhead): "
          f"{(rss_after - rss_before) / args.connections:.1f} KiB per connection")
    report(before, after, args.connections, args.top)


if __name__ == "__main__":
    main()
