#!/usr/bin/env python3
"""History reads with and without a read replica: where the database work goes.

Runs the local primary and streaming replica of tests/replication.sh (starting them if need be),
makes a throwaway schema on the primary (dropped at the end) with one room of `--history`
messages and `--clients` member users, then serves it twice with `run.py serve`: once with
`database_read_url` unset, once pointing at the replica. Each time every client reads the
room's newest page (`--limit` messages) `--reads` times, all clients at once. Prints reads/s and
the CPU seconds per read of the server process, of the primary's PostgreSQL processes and of
the replica's (from /proc: each postmaster and its backends, exited ones included), and where
the server says the reads went (/metrics). Bounded in count and time; 127.0.0.1 only.

    python bench/replica_reads.py
    python bench/replica_reads.py --clients 32 --reads 200
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rest_send import Client, make_clients, server  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from roomcast.storage.database import create_database_engine  # noqa: E402
from roomcast.storage.migrate import upgrade  # noqa: E402

SCRIPT = ROOT / "tests" / "replication.sh"
DATA = Path(os.environ.get("ROOMCAST_TEST_REPLICATION_DIR", "/tmp/roomcast-pg-replication"))
PRIMARY_PORT, REPLICA_PORT = os.environ.get("ROOMCAST_TEST_REPLICATION_PORTS", "5433 5434").split()


def url(port: str, schema: str | None = None) -> str:
    parsed = make_url(f"postgresql+psycopg://postgres@127.0.0.1:{port}/test")
    if schema:
        parsed = parsed.update_query_dict({"options": f"-csearch_path={schema}"})
    return parsed.render_as_string(hide_password=False)


def cluster_cpu(data_dir: Path) -> float:
    """CPU seconds used so far by a PostgreSQL server: its postmaster, its live processes and the exited ones."""
    tick = os.sysconf("SC_CLK_TCK")
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster:  # its own time, and that of the children it has reaped
            total += sum(int(value) for value in fields[11:15]) / tick
        elif ppid == postmaster:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_caught_up(primary: str, replica: str) -> None:
    with create_engine(primary).connect() as connection:
        position = connection.execute(text("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")).scalar_one()
    engine = create_engine(replica)
    deadline = time.monotonic() + 30
    with engine.connect() as connection:
        while connection.execute(text("SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn")).scalar_one() < position:
            if time.monotonic() > deadline:
                raise SystemExit("the replica did not catch up within 30 s")
            time.sleep(0.05)
            connection.rollback()
    engine.dispose()


async def fill(base_url: str, clients: list[Client], history: int) -> int:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        owner = clients[0]
        response = await http.post("/api/rooms", headers=owner.headers, json={
            "kind": "group", "name": "history", "members": [client.user_id for client in clients[1:]]})
        response.raise_for_status()
        room_id = int(response.json()["id"])
        for n in range(history):
            (await http.post(f"/api/rooms/{room_id}/messages", headers=owner.headers,
                             json={"body": f"message {n} · a line of history long enough to be typical"})
             ).raise_for_status()
    return room_id


def metric(page: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines() if line.startswith(name))


async def read_load(base_url: str, clients: list[Client], room_id: int, reads: int, limit: int,
                    time_limit: float, cpu_of: dict[str, object]) -> dict[str, float]:
    """Every client reads the newest page `reads` times; the figures of the run."""
    done = 0
    http_limits = httpx.Limits(max_connections=len(clients), max_keepalive_connections=len(clients))
    async with httpx.AsyncClient(base_url=base_url, limits=http_limits, timeout=30) as http:

        async def reader(client: Client) -> None:
            nonlocal done
            for _ in range(reads):
                response = await http.get(f"/api/rooms/{room_id}/messages?limit={limit}", headers=client.headers)
                response.raise_for_status()
                assert len(response.json()["items"]) == limit
                done += 1

        async with trio.open_nursery() as nursery:  # one warm-up read each: connections, caches
            for client in clients:
                nursery.start_soon(partial(http.get, f"/api/rooms/{room_id}/messages?limit=1",
                                           headers=client.headers))
        before = {name: measure() for name, measure in cpu_of.items()}  # type: ignore[operator]
        started = time.perf_counter()
        with trio.move_on_after(time_limit):
            async with trio.open_nursery() as nursery:
                for client in clients:
                    nursery.start_soon(reader, client)
        elapsed = time.perf_counter() - started
        after = {name: measure() for name, measure in cpu_of.items()}  # type: ignore[operator]
        page = (await http.get("/metrics")).text
    figures = {"reads": float(done), "elapsed": elapsed}
    figures.update({name: after[name] - before[name] for name in cpu_of})
    figures["replica_reads"] = metric(page, "roomcast_db_replica_reads_total")
    figures["fallbacks"] = metric(page, "roomcast_db_replica_fallbacks_total")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16, help="concurrent readers (each a user)")
    parser.add_argument("--reads", type=int, default=100, help="reads per client")
    parser.add_argument("--history", type=int, default=200, help="messages in the room")
    parser.add_argument("--limit", type=int, default=50, help="messages per page")
    parser.add_argument("--time-limit", type=float, default=120.0)
    args = parser.parse_args()
    if not (2 <= args.clients <= 200 and 1 <= args.reads <= 10_000 and 1 <= args.limit <= min(200, args.history)
            and args.history <= 10_000):
        parser.error("need 2 <= clients <= 200, 1 <= reads <= 10000, 1 <= limit <= min(200, history) <= 10000")
    subprocess.run([str(SCRIPT), "start"], check=True, stdout=subprocess.DEVNULL)

    schema = f"rc_bench_{os.getpid()}_{secrets.token_hex(4)}"
    admin = create_engine(url(PRIMARY_PORT), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    data_dir = Path(tempfile.mkdtemp(prefix="roomcast-bench-"))
    secret = secrets.token_urlsafe(48)
    primary, replica = url(PRIMARY_PORT, schema), url(REPLICA_PORT, schema)
    results = {}
    try:
        engine = create_database_engine(primary)
        upgrade(engine)
        engine.dispose()
        clients = make_clients(primary, secret, args.clients)
        with server(primary, data_dir, secret) as (base_url, _):
            room_id = trio.run(fill, base_url, clients, args.history)
        wait_caught_up(primary, replica)
        for label, settings in (("primary only", {}), ("with replica", {"ROOMCAST_DATABASE_READ_URL": replica})):
            with server(primary, data_dir, secret, settings) as (base_url, pid):
                time.sleep(1)  # the replica's prober finds it in use
                cpu_of = {"server": lambda pid=pid: process_cpu(pid),
                          "primary": lambda: cluster_cpu(DATA / "primary"),
                          "replica": lambda: cluster_cpu(DATA / "replica")}
                results[label] = trio.run(read_load, base_url, clients, room_id, args.reads, args.limit,
                                          args.time_limit, cpu_of)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    print(f"clients={args.clients} reads/client={args.reads} page={args.limit} of {args.history} messages; "
          f"{os.cpu_count()} cores shared by the server, both PostgreSQL servers and this client")
    print(f"{'':14} {'reads/s':>8} {'server ms/read':>15} {'primary ms/read':>16} {'replica ms/read':>16} "
          f"{'replica answered':>17}")
    for label, figures in results.items():
        reads = figures["reads"]
        print(f"{label:14} {reads / figures['elapsed']:8.0f} {figures['server'] / reads * 1000:15.3f} "
              f"{figures['primary'] / reads * 1000:16.3f} {figures['replica'] / reads * 1000:16.3f} "
              f"{figures['replica_reads']:10.0f} of {reads + len(clients):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
