#!/usr/bin/env python3
"""REST send benchmark: concurrent clients posting messages into several rooms over real HTTP.

Starts its own server (`run.py serve --port 0`) on a fresh SQLite file, or on a
throwaway PostgreSQL schema that it creates and drops, then has `--clients`
users each post `--messages` messages (after one warm-up send) into one of
`--rooms` group rooms, all at once, each client on one keep-alive connection.
Prints messages/s, latency percentiles and the server's CPU time per message
(from /proc: the figure to trust on a shared machine), and checks that every
room's seq counted every message. Bounded in count and in time (`--time-limit`);
talks only to 127.0.0.1.

The default client (`--client raw`) writes each request and reads each answer by
hand: httpx costs its caller more CPU per request than a send costs the server
on the fast path (docs/architecture.md, "REST sends below Quart"), so with it
the client, not the server, is what is measured once both share two cores.
`--client httpx` sends through httpx's connection pool, as an application would.

    python bench/rest_send.py                           # SQLite
    python bench/rest_send.py --database postgresql     # PostgreSQL at --postgres-url
    python bench/rest_send.py --client httpx            # through httpx

The server runs on every core but the last and the clients on the last one (`--no-pin` to
share them), as fanout.py does: a client woken on the server's core stalls the server.

Server CPU per message, 32 clients, 4 rooms, raw client, on 2 cores shared with it:
before the fast path 1.2 ms (SQLite) and 2.1 ms (PostgreSQL); with it 0.4–0.5 ms and
0.9–1.0 ms (docs/architecture.md, "REST sends below Quart"). Pinned, `--messages 300`:
SQLite 0.42–0.49 ms (1,980–2,260 messages/s, p99 35–36 ms), PostgreSQL 0.50–0.63 ms
(1,300–1,610 messages/s, p99 39–52 ms).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fanout import send_counters  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from roomcast.identity.tokens import TokenCodec  # noqa: E402
from roomcast.storage.database import create_database_engine  # noqa: E402
from roomcast.storage.migrate import upgrade  # noqa: E402
from roomcast.storage.users import create_user  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LISTENING = re.compile(r"listening on (http://\S+)")


@dataclass
class Client:
    user_id: int
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@contextmanager
def database(kind: str, data_dir: Path, postgres_url: str) -> Iterator[str]:
    """A fresh, migrated database URL: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if kind == "sqlite":
        url = f"sqlite:///{data_dir / 'roomcast.db'}"
        engine = create_database_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
        return
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    schema = f"rc_bench_{os.getpid()}_{secrets.token_hex(4)}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        schema_url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
        url_text = schema_url.render_as_string(hide_password=False)
        engine = create_database_engine(url_text)
        upgrade(engine)
        engine.dispose()
        yield url_text
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def make_clients(url: str, secret: str, count: int) -> list[Client]:
    """`count` users made straight in the database, with tokens signed by the server's secret."""
    engine = create_database_engine(url)
    codec = TokenCodec("HS256", secret, secret, 3600)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        users = [create_user(session, tenant="default", username=f"bench{i}", role="member") for i in range(count)]
    engine.dispose()
    return [Client(user.id, codec.mint(user.id)) for user in users]


@contextmanager
def server(url: str, data_dir: Path, secret: str, settings: dict[str, str] | None = None,
           cores: set[int] | None = None) -> Iterator[tuple[str, int]]:
    """`run.py serve --port 0` on `url` (and `settings`, environment variables), on `cores` if given;
    yields its base URL and pid, and stops it on exit."""
    env = {**os.environ, "ROOMCAST_NO_BOOTSTRAP": "1", "ROOMCAST_DATA_DIR": str(data_dir),
           "ROOMCAST_DATABASE_URL": url, "ROOMCAST_JWT_SECRET": secret, "ROOMCAST_LOG_LEVEL": "warning",
           # Measure the send path, not a rate limiter.
           "ROOMCAST_SEND_RATE_PER_S": "1000000", "ROOMCAST_SEND_BURST": "1000000", **(settings or {})}
    log = open(data_dir / "server.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "serve", "--port", "0"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=log, text=True,
                               preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None)
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        base_url = None
        while base_url is None:
            # Logs go to stderr, so stdout is line by line: wait for each line, but not forever.
            ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = process.stdout.readline() if ready else ""
            if not line:
                raise SystemExit(f"the server did not start; see {data_dir / 'server.log'}")
            if match := LISTENING.search(line):
                base_url = match.group(1)
        yield base_url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def split_cores() -> tuple[set[int] | None, set[int] | None]:
    """The server's cores and the clients' (the last one), as fanout.py splits them; (None, None) on one core.

    Sharing cores, the scheduler may run the clients, woken by the server's answers, on the
    server's core in the middle of its work: a stall no client on another machine causes.
    """
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    return set(available[:-1]), {available[-1]}


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) the process has used so far; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))]


class RawConnection:
    """One keep-alive HTTP/1.1 connection, written and read by hand: the lean client (httpx costs the
    client more CPU per request than the fast path costs the server)."""

    def __init__(self, stream: trio.SocketStream, host: str, address: tuple[str, int]) -> None:
        self.stream = stream
        self.host = host
        self.address = address
        self.buffer = b""

    @classmethod
    async def open(cls, base_url: str) -> RawConnection:
        host, port = base_url.removeprefix("http://").rsplit(":", 1)
        address = (host.strip("[]"), int(port))
        return cls(await trio.open_tcp_stream(*address), f"{host}:{port}", address)

    async def post(self, path: str, token: str, body: bytes) -> tuple[int, bytes]:
        await self.stream.send_all(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            await self._fill()
        head = self.buffer[:end].decode("latin-1").split("\r\n")
        length = next(int(line.split(":", 1)[1]) for line in head if line.lower().startswith("content-length:"))
        while len(self.buffer) < end + 4 + length:
            await self._fill()
        answer, self.buffer = self.buffer[end + 4:end + 4 + length], self.buffer[end + 4 + length:]
        if any(line.lower().replace(" ", "") == "connection:close" for line in head):
            # The server closes a connection after its keep-alive request limit: open the next one.
            await self.stream.aclose()
            self.stream, self.buffer = await trio.open_tcp_stream(*self.address), b""
        return int(head[0].split(" ")[1]), answer

    async def _fill(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        self.buffer += chunk


async def run_load(base_url: str, server_pid: int, clients: list[Client], rooms: int, messages: int,
                   time_limit: float, raw: bool) -> tuple[list[float], float, float | None, dict[int, int]]:
    """Every client posts `messages` messages.

    Returns the latencies, the elapsed seconds, the server's CPU seconds meanwhile, and sends per room.
    """
    latencies: list[float] = []
    sent_to: dict[int, int] = {}
    raw_connections: dict[int, RawConnection] = {}
    limits = httpx.Limits(max_connections=len(clients), max_keepalive_connections=len(clients))
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:
        owner = clients[0]
        room_ids = []
        for index in range(rooms):
            response = await http.post("/api/rooms", headers=owner.headers, json={
                "kind": "group", "name": f"bench room {index}", "members": [c.user_id for c in clients]})
            response.raise_for_status()
            room_ids.append(response.json()["id"])
        sent_to = dict.fromkeys(room_ids, 0)

        sends = itertools.count()

        async def post(client: Client, room_id: int, body: str, record: bool) -> None:
            started = time.perf_counter()
            # With a client_id, as the web client and the SDK send every message.
            message = {"body": body, "client_id": f"rest-{next(sends)}"}
            if raw:
                status, answer = await raw_connections[client.user_id].post(
                    f"/api/rooms/{room_id}/messages", client.token, json.dumps(message).encode())
            else:
                response = await http.post(f"/api/rooms/{room_id}/messages", headers=client.headers, json=message)
                status, answer = response.status_code, response.content
            if status != 201:
                raise RuntimeError(f"send failed: {status} {answer!r}")
            sent_to[room_id] += 1
            if record:
                latencies.append(time.perf_counter() - started)

        async def warm_up(index: int, client: Client) -> None:
            if raw:
                raw_connections[client.user_id] = await RawConnection.open(base_url)
            await post(client, room_ids[index % rooms], "warm-up", record=False)

        async def client_loop(index: int, client: Client) -> None:
            room_id = room_ids[index % rooms]
            for n in range(messages):
                await post(client, room_id, f"message {n} from client {index} · привет 👋", record=True)

        async with trio.open_nursery() as nursery:
            for index, client in enumerate(clients):
                nursery.start_soon(warm_up, index, client)
        started, cpu_before = time.perf_counter(), cpu_seconds(server_pid)
        with trio.move_on_after(time_limit) as scope:
            async with trio.open_nursery() as nursery:
                for index, client in enumerate(clients):
                    nursery.start_soon(client_loop, index, client)
        elapsed, cpu_after = time.perf_counter() - started, cpu_seconds(server_pid)
        for connection in raw_connections.values():
            await connection.stream.aclose()
        server_cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
        if scope.cancelled_caught:
            print(f"time limit of {time_limit}s reached; reporting what was sent", file=sys.stderr)
        for room_id, count in sent_to.items():
            last_seq = (await http.get(f"/api/rooms/{room_id}", headers=owner.headers)).json()["last_seq"]
            # Sends cut off by the time limit may have committed unanswered: then only "at least".
            if last_seq < count or (last_seq != count and not scope.cancelled_caught):
                raise RuntimeError(f"room {room_id}: last_seq {last_seq} but {count} messages were sent")
    return latencies, elapsed, server_cpu, sent_to


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get("ROOMCAST_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--clients", type=int, default=32, help="concurrent senders (each a user)")
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--messages", type=int, default=50, help="messages per client")
    parser.add_argument("--time-limit", type=float, default=120.0, help="stop sending after this many seconds")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="raw: one hand-written keep-alive connection per client; httpx: httpx's pool")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="let server and clients share every core (default: clients on the last core)")
    args = parser.parse_args()
    if not (1 <= args.clients <= 1000 and 1 <= args.rooms <= args.clients and 1 <= args.messages <= 10_000):
        parser.error("need 1 <= rooms <= clients <= 1000 and 1 <= messages <= 10000")

    data_dir = Path(tempfile.mkdtemp(prefix="roomcast-bench-"))
    secret = secrets.token_urlsafe(48)
    try:
        with database(args.database, data_dir, args.postgres_url) as url:
            clients = make_clients(url, secret, args.clients)
            server_cores, client_cores = split_cores() if args.pin else (None, None)
            with server(url, data_dir, secret, cores=server_cores) as (base_url, pid):
                if client_cores:
                    os.sched_setaffinity(0, client_cores)
                latencies, elapsed, server_cpu, sent_to = trio.run(run_load, base_url, pid, clients, args.rooms,
                                                                   args.messages, args.time_limit, args.client == "raw")
                counters = send_counters(httpx.get(f"{base_url}/metrics", timeout=10).text)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    latencies.sort()
    total = len(latencies)
    print(f"database={args.database} client={args.client} clients={args.clients} rooms={args.rooms} "
          f"messages/client={args.messages}")
    print(f"sent {total} messages in {elapsed:.2f}s: {total / elapsed:.0f} messages/s")
    print(f"latency p50={percentile(latencies, 0.50) * 1000:.1f}ms p99={percentile(latencies, 0.99) * 1000:.1f}ms "
          f"max={latencies[-1] * 1000:.1f}ms")
    if server_cpu is not None:
        placement = (f"server on cores {sorted(server_cores)}, clients on {sorted(client_cores)}"
                     if server_cores and client_cores else f"{os.cpu_count()} cores shared with the clients")
        print(f"server CPU: {server_cpu:.2f}s, {server_cpu / total * 1000:.2f}ms per message "
              f"({server_cpu / elapsed:.0%} of one core); {placement}")
    if counters.get("transactions"):
        print(f"group commit: {counters['messages'] / counters['transactions']:.1f} messages per transaction "
              f"({counters['transactions']:.0f} transactions, warm-up included)")
    print(f"messages per room (each room's last_seq checked): {sorted(sent_to.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
