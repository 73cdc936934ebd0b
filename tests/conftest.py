"""Shared fixtures: settings, a node on SQLite or PostgreSQL, the app, users with tokens, live servers.

PostgreSQL, Redis and the Redis Cluster are real servers. Where one is missing the tests
that need it skip, unless ROOMCAST_TEST_REQUIRE_SERVICES=1 (set by .ci/run): then they fail.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from hypercorn.config import Config as HypercornConfig
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from roomcast.config import Settings, load_settings, redis_cluster_address
from roomcast.http.app import create_app
from roomcast.http.context import RoomcastApp
from roomcast.http.front_door import FastPath, FrontDoor
from roomcast.http.ws.endpoint import WebSocketEndpoint
from roomcast.identity import passwords
from roomcast.identity.passwords import hash_password
from roomcast.node import Node, open_node
from roomcast.server import hypercorn_config, serve_node
from roomcast.storage.database import create_database_engine
from roomcast.storage.migrate import upgrade
from roomcast.storage.models import Base
from roomcast.storage.users import create_user
from tests.helpers import JWT_SECRET, POSTGRES_URL, REDIS_URL
from tests.redis_helpers import REDIS_CLUSTER_URL

REQUIRE_SERVICES = os.environ.get("ROOMCAST_TEST_REQUIRE_SERVICES") == "1"


def service_missing(what: str, reason: str) -> None:
    """Skip for a developer without the service; fail in CI, where it must be there."""
    message = f"{what} is not reachable ({reason})"
    if REQUIRE_SERVICES:
        pytest.fail(message + "; CI requires it", pytrace=False)
    pytest.skip(message)


# --------------------------------------------------------------------------- scheduling and hashing

# Tests that share something fixed must not run at the same time, so under xdist each of these groups runs on
# one worker: the read-replica tests share the PostgreSQL primary/replica pair on fixed ports (and restart the
# replica), and a browser module shares one server process (a module fixture) among its tests.
_SERIAL_GROUPS = ("tests/replica/",)
_MODULE_GROUPS = ("tests/browser/",)


def serial_group(nodeid: str) -> str | None:
    """The group a test must run in (on one worker, one after another), or None when it may go anywhere."""
    path = nodeid.split("::", 1)[0]
    group = next((prefix for prefix in _SERIAL_GROUPS if path.startswith(prefix)), None)
    if group is None and path.startswith(_MODULE_GROUPS):
        group = path
    return group


@pytest.hookimpl(optionalhook=True)  # `-p no:xdist` runs the suite in one process
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup`, with groups given by `serial_group` (by path: xdist_group marks go unseen here)."""
    from xdist.scheduler import LoadGroupScheduling

    class PathGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return serial_group(nodeid) or nodeid

    return PathGroupScheduling(config, log) if config.getvalue("dist") == "loadgroup" else None


_PRODUCTION_HASHER = passwords._hasher
_CHEAP_HASHER = PasswordHasher.from_parameters(CHEAPEST)


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashing() -> Iterator[None]:
    """Argon2id at its lowest cost in the test process: hashing is meant to be slow, and the suite hashes a lot.
    tests/unit/test_passwords.py checks the production parameters (`production_password_hashing`)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(passwords, "_hasher", _CHEAP_HASHER)  # the dummy hash follows the hasher
        yield


@pytest.fixture
def production_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The product's own hasher (and so its dummy hash) back for one test."""
    monkeypatch.setattr(passwords, "_hasher", _PRODUCTION_HASHER)


# --------------------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = create_database_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_schema_url() -> Iterator[str]:
    """A migrated schema of its own in the test database, dropped at the end of the session."""
    try:
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # psycopg missing, server down, no such database...
        service_missing("PostgreSQL", repr(exc))
    schema = f"rc_test_{os.getpid()}_{secrets.token_hex(4)}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    url_text = url.render_as_string(hide_password=False)
    engine = create_database_engine(url_text)
    upgrade(engine)
    engine.dispose()
    try:
        yield url_text
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _truncate_all(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_backend(request: pytest.FixtureRequest) -> str:
    """Runs a test once on SQLite and once on PostgreSQL."""
    return request.param


@pytest.fixture
def database_url(db_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if db_backend == "postgresql":
        url = request.getfixturevalue("postgres_schema_url")
        _truncate_all(url)
        return url
    path = tmp_path / "roomcast.db"
    shutil.copy(request.getfixturevalue("sqlite_template"), path)
    return f"sqlite:///{path}"


# --------------------------------------------------------------------------- redis


def _ask(host: str, port: int, command: bytes) -> bytes:
    """One inline command's raw reply (enough of it for PING and CLUSTER INFO)."""
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(command + b"\r\n")
        return sock.recv(4096)


@pytest.fixture(scope="session")
def single_redis_url() -> str:
    """The test Redis server's URL, once it has answered PING."""
    parts = urlsplit(REDIS_URL)
    try:
        if not _ask(parts.hostname or "127.0.0.1", parts.port or 6379, b"PING").startswith(b"+PONG"):
            raise ConnectionError("no PONG")
    except OSError as exc:
        service_missing("Redis", repr(exc))
    return REDIS_URL


@pytest.fixture(scope="session")
def redis_url(single_redis_url: str) -> str:
    """The Redis tests run on: the one server (modules that also run on the cluster override it
    with `redis_kind_url`)."""
    return single_redis_url


@pytest.fixture(scope="session")
def redis_cluster_url() -> str:
    """The test Redis Cluster's URL (.ci/redis-cluster starts one), once each node it names says it is ok."""
    address = redis_cluster_address(REDIS_CLUSTER_URL)
    assert address is not None, f"ROOMCAST_TEST_REDIS_CLUSTER_URL is not a redis+cluster:// URL: {REDIS_CLUSTER_URL}"
    try:
        for host, port in address.nodes:
            if b"cluster_state:ok" not in _ask(host, port, b"CLUSTER INFO"):
                raise ConnectionError(f"{host}:{port} is not part of a healthy cluster")
    except OSError as exc:
        service_missing("Redis Cluster", repr(exc))
    return REDIS_CLUSTER_URL


# Modules that run on one Redis and on a cluster too override `redis_url`:
#     @pytest.fixture(params=REDIS_KINDS)
#     def redis_url(request: pytest.FixtureRequest) -> str:
#         return redis_kind_url(request)
REDIS_KINDS = [pytest.param("redis", marks=pytest.mark.redis),
               pytest.param("redis-cluster", marks=pytest.mark.redis_cluster)]


def redis_kind_url(request: pytest.FixtureRequest, kind: str | None = None) -> str:
    """The URL for a REDIS_KINDS parameter (the request's own, unless given)."""
    kind = kind or request.param
    return str(request.getfixturevalue("single_redis_url" if kind == "redis" else "redis_cluster_url"))


@pytest.fixture
def redis_key_prefix() -> str:
    """Keys of one test never meet another test's, even across parallel runs."""
    return f"rc-test:{os.getpid()}:{secrets.token_hex(4)}:"


# --------------------------------------------------------------------------- node and app


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    flags: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": database_url,
        "jwt_secret": JWT_SECRET,
        "port": 0,
        "log_format": "text",
        "shutdown_grace_s": 2,
    }
    flags.update(overrides)
    return load_settings(flags, environ={})


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module (or parametrize) to change the node's settings."""
    return {}


@pytest.fixture
def settings(tmp_path: Path, database_url: str, settings_overrides: dict[str, Any]) -> Settings:
    return make_settings(tmp_path, database_url, **settings_overrides)


class EventLoopQueryGuard:
    """Records SQL statements run on the Trio event-loop thread (they must run in workers)."""

    def __init__(self) -> None:
        self.offences: list[str] = []
        self.statements = 0

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements += 1
        if trio.lowlevel.in_trio_run():
            self.offences.append(statement)
            raise AssertionError(f"SQL ran on the Trio event-loop thread: {statement}")


@pytest.fixture
def query_guard() -> EventLoopQueryGuard:
    """Watches every statement of the test's node; any on the event-loop thread fails the test."""
    return EventLoopQueryGuard()


@pytest.fixture
async def node(settings: Settings, query_guard: EventLoopQueryGuard) -> AsyncIterator[Node]:
    async with open_node(settings, migrate=False) as opened:
        for engine in opened.database.engines:
            event.listen(engine, "before_cursor_execute", query_guard)
        yield opened
        assert not query_guard.offences, f"SQL on the event-loop thread: {query_guard.offences}"


@pytest.fixture
def app(node: Node) -> RoomcastApp:
    return create_app(node)


@pytest.fixture
def client(app: RoomcastApp) -> Any:
    return app.test_client()


# --------------------------------------------------------------------------- users


@dataclass
class ApiUser:
    id: int
    username: str
    role: str
    tenant: str
    token: str
    password: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.headers = {"Authorization": f"Bearer {self.token}"}


_usernames = itertools.count(1)


class UserFactory:
    """Creates users straight in the database and mints their tokens."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def create(self, role: str = "member", *, tenant: str = "default", username: str | None = None,
                     password: str | None = None, display_name: str | None = None) -> ApiUser:
        username = username or f"{role}{next(_usernames)}"
        password_hash = await hash_password(password) if password else None
        user = await self.node.database.write(
            lambda session: create_user(session, tenant=tenant, username=username, role=role,
                                        display_name=display_name, password_hash=password_hash)
        )
        return ApiUser(user.id, username, role, tenant, self.node.tokens.mint(user.id), password)


@pytest.fixture
def users(node: Node) -> UserFactory:
    return UserFactory(node)


# --------------------------------------------------------------------------- live server


@pytest.fixture
async def live_server(node: Node, nursery: trio.Nursery) -> AsyncIterator[str]:
    """The node served by Hypercorn on a free port over real sockets; yields its base URL."""
    shutdown = trio.Event()
    url = await nursery.start(lambda task_status: serve_node(node, shutdown=shutdown, task_status=task_status))
    yield url
    shutdown.set()


async def serve_front_door(node: Node, nursery: trio.Nursery, shutdown: trio.Event,
                           fast_path: FastPath | None, config: HypercornConfig | None = None) -> str:
    """Serve `node` on a free port through a front door of one's own making; its base URL."""
    door = FrontDoor(create_app(node), config or hypercorn_config(node.settings), WebSocketEndpoint(node).serve,
                     fast_path=fast_path)
    url: str = await nursery.start(partial(door.serve, "127.0.0.1", 0, shutdown_trigger=shutdown.wait))
    return url


@pytest.fixture
async def quart_server(node: Node, nursery: trio.Nursery) -> AsyncIterator[str]:
    """The node served with no fast path: every request through Hypercorn and Quart (for comparisons)."""
    shutdown = trio.Event()
    yield await serve_front_door(node, nursery, shutdown, None)
    shutdown.set()
