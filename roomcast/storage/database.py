"""The SQL database as Trio sees it: every call runs in a worker thread.

SQLAlchemy's sessions are synchronous; running them on the event loop would
stall every connection for the length of each query. `Database.read` and
`Database.write` hand a function to a worker thread behind a CapacityLimiter
sized to the connection pool (DESIGN.md §6), so threads never queue on the pool.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

T = TypeVar("T")

_POOL_OVERFLOW = 5
_SQLITE_BUSY_TIMEOUT_MS = 10_000


def create_database_engine(url: str, pool_size: int = 10) -> Engine:
    """An engine for `url`, with SQLite set up for concurrent use (WAL, busy timeout)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=_POOL_OVERFLOW,
            connect_args={"check_same_thread": False, "timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=_POOL_OVERFLOW, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself, so writers can ask for BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A deferred transaction that later writes can fail at once with
        # "database is locked"; taking the write lock up front makes it wait instead.
        immediate = connection.get_execution_options().get("sqlite_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """Runs session work in worker threads, one transaction per call."""

    def __init__(self, engine: Engine, pool_size: int = 10) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.limiter = trio.CapacityLimiter(pool_size + _POOL_OVERFLOW)
        # SQLite has one writer at a time. Left to its busy handler, waiting writers poll
        # with growing sleeps, in no order, each holding a thread and a connection: under
        # load some wait seconds, past busy_timeout even. Queueing them here, first come
        # first served, hands the lock straight on.
        self._sqlite_writers = trio.Lock()
        # Made once: an engine with options is a new object per call, on every write.
        self._writer_bind = engine.execution_options(sqlite_immediate=True) if self.is_sqlite else engine

    @classmethod
    def from_url(cls, url: str, pool_size: int = 10) -> Database:
        return cls(create_database_engine(url, pool_size), pool_size)

    async def read(self, work: Callable[..., T], *args: Any) -> T:
        """Run `work(session, *args)` in a worker thread inside one transaction."""
        return await trio.to_thread.run_sync(self._transaction, work, args, False, limiter=self.limiter)

    async def write(self, work: Callable[..., T], *args: Any) -> T:
        """Like `read`, but takes the write lock at BEGIN on SQLite (one writer at a time)."""
        if not self.is_sqlite:
            return await trio.to_thread.run_sync(self._transaction, work, args, True, limiter=self.limiter)
        async with self._sqlite_writers:
            return await trio.to_thread.run_sync(self._transaction, work, args, True, limiter=self.limiter)

    def _transaction(self, work: Callable[..., T], args: tuple[Any, ...], writes: bool) -> T:
        with Session(self._writer_bind if writes else self.engine, expire_on_commit=False) as session, session.begin():
            return work(session, *args)

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        await self.read(lambda session: session.execute(text("SELECT 1")))

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self.engine.dispose)
