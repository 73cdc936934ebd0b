#!/usr/bin/env python3
"""Fan-out benchmark: a real roomcast server, a Node.js load generator in another process, on loopback.

Every message is a real `send` over /ws: committed to the database, relayed through
the outbox and the room stream, fanned out by the room actor. Scenarios:

  flat-1x1000    1 room x 1000 subscribers, one publisher flat out   -> deliveries/s
  flat-100x10    100 rooms x 10 subscribers, a publisher per room     -> deliveries/s
  rate-1x1000    1 room x 1000 subscribers, 20 messages/s             -> p50/p99 send->receive
  idle-5000      5000 idle connections                                -> RSS per connection

    python bench/fanout.py                       # every scenario, SQLite + in-process streams
    python bench/fanout.py --stack postgresql-redis --scenario flat-1x1000
    python bench/fanout.py --profile             # also sample the server with py-spy (pip install py-spy)
    python bench/fanout.py --no-pin              # let server and load generator share every core

By default the load generator gets the last CPU core and the server the others (Linux
sched_setaffinity; PostgreSQL and Redis are left to float). Sharing cores, the
scheduler often pulls the load generator, woken by the server's writes, onto the
server's own core in the middle of a fan-out and stalls it there: on a 2-core machine
that alone moves the p99 of rate-1x1000 by several ms. Clients of a real deployment
are on other machines and steal nothing from the server.

The load generator needs Node.js 18+; its one dependency (ws) is installed with npm on first use.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, insert, text  # noqa: E402

from roomcast.identity.tokens import TokenCodec  # noqa: E402
from roomcast.storage.database import create_database_engine  # noqa: E402
from roomcast.storage.migrate import upgrade  # noqa: E402
from roomcast.storage.models import Membership, Room, User  # noqa: E402

LOADGEN = ROOT / "bench" / "loadgen"
ARTIFACTS = ROOT / "artifacts" / "fanout"
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
SECRET = secrets.token_urlsafe(32)

SCENARIOS = {
    "flat-1x1000": {"mode": "flat", "rooms": 1, "subscribers": 1000, "window": 32, "duration_s": 10, "warmup_s": 3},
    "flat-100x10": {"mode": "flat", "rooms": 100, "subscribers": 10, "window": 2, "duration_s": 10, "warmup_s": 3},
    "rate-1x1000": {"mode": "rate", "rooms": 1, "subscribers": 1000, "rate_per_s": 20, "duration_s": 60,
                    "warmup_s": 3},
    "idle-5000": {"mode": "idle", "rooms": 1, "subscribers": 5000},
}


def raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def core_split(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(server cores, load generator cores): the last core for the load generator, or None to share."""
    if not pin or not hasattr(os, "sched_setaffinity"):
        return None, None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return set(cores[:-1]), {cores[-1]}


def child_setup(cores: set[int] | None):  # type: ignore[no-untyped-def]
    """A preexec_fn: a raised file limit and, if given, the CPU cores to run on."""
    def setup() -> None:
        raise_file_limit()
        if cores is not None:
            os.sched_setaffinity(0, cores)
    return setup


@contextmanager
def database(stack: str, workdir: Path) -> Iterator[str]:
    """A fresh database: a SQLite file, or a throwaway PostgreSQL schema."""
    if stack.startswith("sqlite"):
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    schema = f"rc_bench_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def seating(rooms: int, subscribers: int, subscriber_users: int) -> list[list[int]]:
    """For each room, the user index of each subscriber connection (users are reused past
    `subscriber_users`); the publisher is user index `subscriber_users`, in every room."""
    return [[(r * subscribers + k) % subscriber_users for k in range(subscribers)] for r in range(rooms)]


def prepare(url: str, users: int, seats: list[list[int]]) -> tuple[list[int], list[int]]:
    """Users, rooms and memberships straight in the database; returns (user ids, room ids)."""
    engine = create_database_engine(url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(insert(User), [
            {"tenant": "default", "username": f"u{n}", "display_name": f"User {n}", "role": "member",
             "is_active": True} for n in range(users)])
        user_ids = [row[0] for row in connection.execute(text("SELECT id FROM users ORDER BY id"))]
        connection.execute(insert(Room), [
            {"tenant": "default", "kind": "group", "name": f"room {n}", "topic": "", "is_active": True,
             "last_seq": 0} for n in range(len(seats))])
        room_ids = [row[0] for row in connection.execute(text("SELECT id FROM rooms ORDER BY id"))]
        publisher = users - 1
        connection.execute(insert(Membership), [
            {"room_id": room_id, "user_id": user_ids[index], "room_role": "member", "last_read_seq": 0}
            for room_id, room_seats in zip(room_ids, seats, strict=True)
            for index in sorted(set(room_seats) | {publisher})])
    engine.dispose()
    return user_ids, room_ids


@contextmanager
def server(stack: str, url: str, workdir: Path, log_path: Path,
           cores: set[int] | None) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")} | {
        "ROOMCAST_NO_BOOTSTRAP": "1",
        "ROOMCAST_DATA_DIR": str(workdir),
        "ROOMCAST_DATABASE_URL": url,
        "ROOMCAST_JWT_SECRET": SECRET,
        "ROOMCAST_SEND_RATE_PER_S": "1000000",
        "ROOMCAST_SEND_BURST": "1000000",
        "ROOMCAST_LOG_LEVEL": os.environ.get("BENCH_SERVER_LOG_LEVEL", "warning"),
    }
    if webhooks := os.environ.get("BENCH_WEBHOOKS"):  # JSON, as ROOMCAST_WEBHOOKS (see bench/webhook_receiver.py)
        env["ROOMCAST_WEBHOOKS"] = webhooks
    if stack.endswith("redis"):
        env |= {"ROOMCAST_REDIS_URL": REDIS, "ROOMCAST_REDIS_KEY_PREFIX": f"rc-bench:{secrets.token_hex(4)}:"}
    process = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "serve", "--port", "0"], env=env,
                               stdout=subprocess.PIPE, stderr=log_path.open("w"), text=True,
                               preexec_fn=child_setup(cores))
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening on "):
        process.kill()
        raise SystemExit(f"server did not start: {line!r}; see {log_path}")
    try:
        yield process, line.removeprefix("listening on ").strip()
    finally:
        process.terminate()
        process.wait(timeout=30)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def ensure_loadgen() -> None:
    if not (LOADGEN / "node_modules" / "ws").exists():
        subprocess.run(["npm", "install", "--no-package-lock", "--no-audit", "--no-fund", "--silent"],
                       cwd=LOADGEN, check=True)


def run_scenario(name: str, stack: str, profile: bool, duration_s: float | None = None, pin: bool = True) -> dict:
    spec = dict(SCENARIOS[name])
    server_cores, loadgen_cores = core_split(pin)
    if duration_s is not None and "duration_s" in spec:
        spec["duration_s"] = duration_s
    with tempfile.TemporaryDirectory(prefix="rc-fanout-") as tmp:
        workdir = Path(tmp)
        subscriber_users = spec["rooms"] * spec["subscribers"]  # one user per connection, as in life
        seats = seating(spec["rooms"], spec["subscribers"], subscriber_users)
        with database(stack, workdir) as url:
            user_ids, room_ids = prepare(url, subscriber_users + 1, seats)
            codec = TokenCodec("HS256", SECRET, SECRET, ttl_s=3600)
            tokens = [codec.mint(uid) for uid in user_ids]
            rooms = [{"id": room_id, "publisher": tokens[-1], "subscribers": [tokens[index] for index in room_seats]}
                     for room_id, room_seats in zip(room_ids, seats, strict=True)]
            log_path = ARTIFACTS / f"{name}-{stack}-server.log"
            with server(stack, url, workdir, log_path, server_cores) as (process, base):
                plan = {"url": base.replace("http://", "ws://"), **spec, "rooms": rooms, "server_pid": process.pid,
                        "latency_sample_every": 1 if spec["mode"] == "rate" else 50}
                (workdir / "plan.json").write_text(json.dumps(plan))
                before = rss_kib(process.pid)
                gen = subprocess.Popen(["node", str(LOADGEN / "loadgen.mjs"), str(workdir / "plan.json")],
                                       stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True,
                                       preexec_fn=child_setup(loadgen_cores))
                assert gen.stdout is not None and gen.stdin is not None
                spy = None
                if profile and spec["mode"] == "flat":
                    time.sleep(spec["warmup_s"] + 4)  # subscribers connect, then sample the steady state
                    spy = subprocess.Popen(["py-spy", "record", "--gil", "--format", "raw", "--duration", "8",
                                            "--rate", "200", "--pid", str(process.pid),
                                            "--output", str(workdir / "profile.txt")],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                line = gen.stdout.readline()
                if not line:
                    raise SystemExit(f"load generator failed; the server's log is {log_path}")
                result = json.loads(line)
                if spec["mode"] == "idle":
                    time.sleep(2)  # let allocations settle
                    after = rss_kib(process.pid)
                    result |= {"rss_before_kib": before, "rss_after_kib": after,
                               "kib_per_connection": round((after - before) / spec["subscribers"], 2)}
                    gen.stdin.close()
                gen.wait(timeout=120)
                if spy is not None:
                    spy.wait(timeout=60)
                    result["profile_top"] = summarize_profile(workdir / "profile.txt")
                    if (workdir / "profile.txt").exists():
                        shutil.copy(workdir / "profile.txt", ARTIFACTS / f"{name}-{stack}-profile.txt")
    cores = ({"server": sorted(server_cores), "loadgen": sorted(loadgen_cores)}
             if server_cores and loadgen_cores else "shared")
    return {"scenario": name, "stack": stack, "cores": cores, **result}


def summarize_profile(path: Path, top: int = 25) -> list[tuple[str, float]]:
    """Self time by function from py-spy's collapsed stacks, as shares of all samples."""
    if not path.exists():
        return []
    self_time: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        leaf = frames[-1]
        self_time[leaf] = self_time.get(leaf, 0) + int(count)
        total += int(count)
    ranked = sorted(self_time.items(), key=lambda item: -item[1])[:top]
    return [(frame, round(100 * count / total, 1)) for frame, count in ranked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", choices=["sqlite-memory", "postgresql-redis"], default="sqlite-memory")
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--profile", action="store_true", help="sample the server with py-spy in flat scenarios")
    parser.add_argument("--duration", type=float, help="seconds to measure, instead of the scenario's own")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not keep the load generator on a core of its own")
    args = parser.parse_args()
    if shutil.which("node") is None:
        raise SystemExit("the load generator needs Node.js (node) on PATH")
    raise_file_limit()
    ensure_loadgen()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name in SCENARIOS if args.scenario == "all" else [args.scenario]:
        result = run_scenario(name, args.stack, args.profile, args.duration, args.pin)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
