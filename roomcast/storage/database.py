"""The SQL database as Trio sees it: every call runs in a worker thread.

SQLAlchemy's sessions are synchronous; running them on the event loop would
stall every connection for the length of each query. `Database.read` and
`Database.write` hand a function to a worker thread behind a CapacityLimiter
sized to the connection pool (DESIGN.md §6), so threads never queue on the pool.

Whatever means "the database cannot be reached" comes out of `read` and `write` as one
exception, DatabaseUnavailable (REST: 503 `unavailable`; actors: wait and retry), and
every outcome is reported to `availability`, which logs an outage once and its end once.
Errors that mean a bug or a conflict (a constraint, a missing table, a deadlock) stay
what they are.

With a read replica (`database_read_url`), `Database.replica_read` is how a client-facing read
may go there; which reads it may serve, and how fresh it must be, is replica.py's concern.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import trio
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from ..availability import Availability
from ..errors import DependencyUnavailable
from .deadlines import wall_clock_deadlines
from .prompt_limiter import PromptLimiter, acquire_promptly

if TYPE_CHECKING:
    from .replica import ReadReplica

T = TypeVar("T")
log = logging.getLogger("roomcast.database")

POOL_OVERFLOW = 5
_SQLITE_BUSY_TIMEOUT_MS = 10_000
# The WAL's size, in pages, past which SQLite's writer checkpoints in its own commit, the write
# lock held: only should the node's checkpointer (actors/checkpointer.py) fall that far behind.
# SQLite's default is 1000, which a batch of sends to many rooms passes every few commits.
_SQLITE_WRITER_AUTOCHECKPOINT_PAGES = 10_000
_CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"
_CONNECT_TIMEOUT_S = 5
# libpq's TCP liveness: a PostgreSQL that vanishes from the network (a partition, a host that
# died: no reset ever comes) fails a statement waiting on it within about 20 s, as an outage
# (503), instead of holding the request until the kernel gives up many minutes later:
# unacknowledged data for `tcp_user_timeout` ms, or no answer to `keepalives_count` probes on a
# connection waiting for a reply.
_POSTGRES_CONNECT_ARGS = {"connect_timeout": _CONNECT_TIMEOUT_S, "keepalives": 1, "keepalives_idle": 5,
                          "keepalives_interval": 5, "keepalives_count": 3, "tcp_user_timeout": 20_000}
# A pooled connection unused this long is pinged before it is handed out (`_ping_after_idle`).
_PING_AFTER_IDLE_S = 1.0
_LAST_USED = "roomcast_last_used"

# SQLSTATE classes that mean the server cannot serve us now: 08 connection exception,
# 53 insufficient resources (too many connections, disk full), 58 system error (I/O).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "58")
# 57P01-57P05: the server is shutting down, restarting or not yet accepting connections.
# (57014, a cancelled statement, is not an outage.)
_UNAVAILABLE_SQLSTATE_PREFIX = "57P"
# SQLite primary result codes that mean the same: busy (the write lock was not free within
# busy_timeout), locked, I/O error, cannot open the file.
_UNAVAILABLE_SQLITE_CODES = {5, 6, 10, 14}


_ON_COMMIT = "roomcast_on_commit"


def on_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback()` on the event loop once this session's transaction has committed.

    For wake-ups that must not run before the rows they announce are visible (a queue's
    worker, say); never run if the transaction rolls back. It must not block or raise.
    """
    callbacks: list[Callable[[], None]] = session.info.setdefault(_ON_COMMIT, [])
    if callback not in callbacks:
        callbacks.append(callback)


class _GivenUp(Exception):
    """Raised in a worker thread whose caller gave up waiting (`Database._run_with_deadline`)."""


class DatabaseUnavailable(DependencyUnavailable):
    """The database cannot be reached, cannot take the work now, or did not answer in time; nothing
    was committed (except if that happened during COMMIT itself, when the outcome is unknown)."""

    dependency = "database"


def is_unavailable(error: BaseException) -> bool:
    """Whether `error`, raised by SQLAlchemy, means the database is unreachable rather than a bug.

    A SQLite write that waited busy_timeout for the write lock and gave up ("database is
    locked") counts: the database is there but cannot take the write now, and what the
    caller should do is the same as in an outage, wait and retry, never crash. /readyz does
    not turn it into "unavailable": its probe is a read, which WAL never blocks.
    """
    if isinstance(error, sa_exc.TimeoutError):  # no pooled connection came free in time
        return True
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if error.connection_invalidated or isinstance(error, sa_exc.InterfaceError):
        return True
    if not isinstance(error, sa_exc.OperationalError):
        return False
    original = error.orig
    sqlite_code = getattr(original, "sqlite_errorcode", None)
    if sqlite_code is not None:
        return sqlite_code & 0xFF in _UNAVAILABLE_SQLITE_CODES
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate is None:
        return True  # no answer from a server at all: refused, reset, timed out
    return sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES or sqlstate.startswith(_UNAVAILABLE_SQLSTATE_PREFIX)


def create_database_engine(url: str, pool_size: int = 10) -> Engine:
    """An engine for `url`, with SQLite set up for concurrent use (WAL, busy timeout)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return _sqlite_engine(url, pool_size, POOL_OVERFLOW)
    connect_args = _POSTGRES_CONNECT_ARGS if parsed.get_backend_name() == "postgresql" else {}
    engine = create_engine(url, pool_size=pool_size, max_overflow=POOL_OVERFLOW, connect_args=connect_args)
    _ping_after_idle(engine)
    return engine


def _ping_after_idle(engine: Engine) -> None:
    """Ping a pooled connection on checkout only if it sat unused for `_PING_AFTER_IDLE_S`.

    After an outage pooled connections are dead: a ping finds it, and the whole pool is
    replaced. SQLAlchemy's `pool_pre_ping` pings on every checkout: one more round trip for
    every transaction, where a connection in steady use has just proved itself.
    One that dies between two uses fails its statement instead, which invalidates the pool.
    """

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_connection: Any, record: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get(_LAST_USED, 0.0) < _PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise sa_exc.InvalidatePoolError(f"ping failed: {error}") from error


def _sqlite_engine(url: str | URL, pool_size: int, max_overflow: int,
                   autocheckpoint_pages: int | None = None) -> Engine:
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args={"check_same_thread": False, "timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000},
    )
    _configure_sqlite(engine, autocheckpoint_pages)
    return engine


def _sqlite_writer(engine: Engine) -> Engine:
    """The one connection every write of a SQLite file database goes through (`Database.write`).

    SQLite empties a connection's page cache whenever another connection has written since
    its last transaction. Writes spread over the pool would each start cold and read back
    from the WAL every page they touch: a batch of sends to 100 rooms reads some 300 pages
    that way (measured: three quarters of the node's file reads under that load). One
    writer's connection keeps its cache from one transaction to the next; there is only
    ever one writer at a time anyway.
    """
    if not has_wal(engine):  # a private database per connection: share the pool's
        return engine
    return _sqlite_engine(engine.url, pool_size=1, max_overflow=0,
                          autocheckpoint_pages=_SQLITE_WRITER_AUTOCHECKPOINT_PAGES)


def has_wal(engine: Engine) -> bool:
    """Whether `engine` is a SQLite file database (WAL), which the node checkpoints itself."""
    return engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")


def _unicode_lower(value: Any) -> Any:
    """Each character folded alone to one character, as PostgreSQL's lower() does. Python's str.lower()
    looks at the context of a 'Σ' (a final one becomes 'ς') and makes 'İ' two characters ('i̇'),
    so a name would fold apart from a part of it; the first of those two is the one-character form."""
    return "".join(char.lower()[0] for char in value) if isinstance(value, str) else value


def _configure_sqlite(engine: Engine, autocheckpoint_pages: int | None = None) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself, so writers can ask for BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        # SQLite's own lower() folds ASCII only; PostgreSQL's folds all of Unicode (search_users).
        dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        if autocheckpoint_pages is not None:
            cursor.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint_pages}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A deferred transaction that later writes can fail at once with
        # "database is locked"; taking the write lock up front makes it wait instead.
        immediate = connection.get_execution_options().get("sqlite_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """Runs session work in worker threads, one transaction per call; some reads on a replica."""

    def __init__(self, engine: Engine, pool_size: int = 10, replica: ReadReplica | None = None,
                 timeout_s: float = 15.0) -> None:
        self.engine = engine
        # A streaming replica for client-facing reads (`replica_read`); None: every read is the primary's.
        self.replica = replica
        self.is_sqlite = engine.dialect.name == "sqlite"
        # How long a call may wait for a database server (a slot, a connection, its statements) before
        # it is answered DatabaseUnavailable (`_run`). SQLite is a file: it has busy_timeout instead.
        self.timeout_s = math.inf if self.is_sqlite else timeout_s
        self.limiter = trio.CapacityLimiter(pool_size + POOL_OVERFLOW)
        self._slots = PromptLimiter(self.limiter).for_trio()
        # The threads of calls with a deadline: bounded by `limiter`, whose slots they hold themselves.
        self._threads = PromptLimiter(trio.CapacityLimiter(math.inf)).for_trio()
        self.availability = Availability("database")
        # SQLite has one writer at a time. Left to its busy handler, waiting writers poll
        # with growing sleeps, in no order, each holding a thread and a connection: under
        # load some wait seconds, past busy_timeout even. Queueing them here, first come
        # first served, hands the lock straight on.
        self._sqlite_writers = trio.Lock()
        # Probes (`ping`) given up on whose statement has not returned; changed by worker threads too.
        self._stuck_probes = 0
        self._probe_lock = threading.Lock()
        self._writer_engine = _sqlite_writer(engine) if self.is_sqlite else engine
        # Made once: an engine with options is a new object per call, on every write.
        self._writer_bind = (self._writer_engine.execution_options(sqlite_immediate=True) if self.is_sqlite
                             else engine)

    @property
    def engines(self) -> tuple[Engine, ...]:
        """Every engine this database's calls go through: the pool's, and the SQLite writer's own."""
        return (self.engine,) if self._writer_engine is self.engine else (self.engine, self._writer_engine)

    @classmethod
    def from_url(cls, url: str, pool_size: int = 10, replica: ReadReplica | None = None,
                 timeout_s: float = 15.0) -> Database:
        return cls(create_database_engine(url, pool_size), pool_size, replica, timeout_s)

    async def read(self, work: Callable[..., T], *args: Any) -> T:
        """Run `work(session, *args)` in a worker thread inside one transaction.

        DatabaseUnavailable if the database cannot be reached.
        """
        return await self._run(work, args, False)

    async def replica_read(self, work: Callable[..., T], *args: Any) -> T:
        """Like `read`, on the replica when it may serve the read (storage/replica.py): for reads a
        client asks for. `work` checks any position the client gave with `replica.require_replayed`.
        """
        if self.replica is None:
            return await self._run(work, args, False)
        return await self.replica.read(lambda: self._run(work, args, False), lambda session: work(session, *args))

    async def write(self, work: Callable[..., T], *args: Any) -> T:
        """Like `read`, but takes the write lock at BEGIN on SQLite (one writer at a time)."""
        if not self.is_sqlite:
            return await self._run(work, args, True)
        await acquire_promptly(self._sqlite_writers)
        try:
            return await self._run(work, args, True)
        finally:
            self._sqlite_writers.release()

    def wrote_for(self, user_ids: Iterable[int]) -> None:
        """Writes for these users have just committed in a transaction that was not in their context
        (the send committer's): their next replica reads wait for them too (ReadReplica.wrote)."""
        if self.replica is not None:
            self.replica.wrote(user_ids)

    async def _run(self, work: Callable[..., T], args: tuple[Any, ...], writes: bool, *,
                   abandon_on_cancel: bool = False) -> T:
        started = trio.current_time()
        try:
            if self.timeout_s == math.inf:
                result, committed = await trio.to_thread.run_sync(self._transaction, work, args, writes,
                                                                  limiter=self._slots,
                                                                  abandon_on_cancel=abandon_on_cancel)
            else:
                result, committed = await self._run_with_deadline(work, args, writes, abandon_on_cancel, started)
        except (sa_exc.DBAPIError, sa_exc.TimeoutError) as exc:
            self._raise_unavailable(exc, started)
            raise
        self.availability.succeeded(started)
        if writes and self.replica is not None:
            self.replica.committed()  # before anyone hears of the commit: their next read must see it
        for callback in committed:
            callback()
        return result

    async def _run_with_deadline(self, work: Callable[..., T], args: tuple[Any, ...], writes: bool,
                                 abandon_on_cancel: bool, started: float) -> tuple[T, list[Callable[[], None]]]:
        """`_transaction` in a worker thread, given up on after `timeout_s` (on the wall clock, as the
        thread runs: `deadlines.py`): DatabaseUnavailable.

        A server that takes packets but never answers (stopped, or behind a network that holds
        them) would hold the caller until it answers: TCP's own timeouts see nothing wrong. Given
        up on, the thread goes on once the server answers, and rolls its transaction back when
        its work is done; only one given up on during its COMMIT may commit (as when a connection
        breaks then), and its on-commit callbacks then run in the event loop all the same.

        As without a deadline, a caller cancelled while it waits for a slot leaves at once, and
        one cancelled once its work runs waits for it (until the deadline), unless
        `abandon_on_cancel`: what commits has its callbacks run.
        """
        token = trio.lowlevel.current_trio_token()
        slot = object()  # the worker slot this call holds, from the thread's start to its end
        await self._slots.acquire_on_behalf_of(slot)
        lock = threading.Lock()
        ended: list[tuple[T, list[Callable[[], None]]]] = []
        thread_started = left = given_up = False  # left: its caller no longer waits for it

        def release_slot() -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self.limiter.release_on_behalf_of, slot)

        @functools.wraps(work)
        def work_unless_given_up(session: Session, *work_args: Any) -> T:
            result = work(session, *work_args)
            with lock:
                if given_up:  # its caller was told the database did not answer: nothing commits
                    raise _GivenUp
            return result

        def run_in_thread() -> tuple[T, list[Callable[[], None]]] | None:
            nonlocal thread_started
            with lock:
                if left:  # its caller left before it began: its slot is released already
                    return None
                thread_started = True
            try:
                outcome = self._transaction(work_unless_given_up, args, writes)
                with lock:
                    ended.append(outcome)
                    if left:
                        with contextlib.suppress(trio.RunFinishedError):
                            token.run_sync_soon(self._committed_late, writes, outcome[1])
                return outcome
            finally:
                release_slot()

        def leave() -> None:
            nonlocal left
            left = True
            if not thread_started:
                self.limiter.release_on_behalf_of(slot)

        with trio.CancelScope(shield=not abandon_on_cancel) as waiting:  # shielded, only the deadline cancels it
            deadline = wall_clock_deadlines.arm(waiting, self.timeout_s)
            try:
                outcome = await trio.to_thread.run_sync(run_in_thread, limiter=self._threads,
                                                        abandon_on_cancel=True)
            except trio.Cancelled:
                if not waiting.cancel_called:  # cancelled from outside (abandon_on_cancel)
                    with lock:
                        leave()
                raise
            finally:
                wall_clock_deadlines.disarm(deadline)
            assert outcome is not None  # None only for a thread whose caller left before it began
            return outcome
        with lock:
            if ended:  # it ended just as the deadline came
                return ended[0]
            given_up = True
            leave()
        detail = f"the database did not answer within {self.timeout_s:g} s"
        self.availability.failed(TimeoutError(detail), started, detail)
        raise DatabaseUnavailable(detail)

    def _committed_late(self, writes: bool, callbacks: list[Callable[[], None]]) -> None:
        """What `_run` does after a commit, for a transaction given up on that committed after all."""
        if writes and self.replica is not None:
            self.replica.committed()
        for callback in callbacks:
            try:
                callback()
            except Exception as exc:  # in the event loop's own context: it must not end the run
                log.error("an on-commit callback failed", exc_info=exc)

    def _raise_unavailable(self, error: sa_exc.DBAPIError | sa_exc.TimeoutError, started: float, *,
                           report: bool = True) -> None:
        """DatabaseUnavailable if `error` means the database cannot be reached (`report`: as an outage)."""
        if is_unavailable(error):
            detail = describe_error(error)
            if report:
                self.availability.failed(error, started, detail)
            raise DatabaseUnavailable(detail) from error

    async def checkpoint(self) -> tuple[int, int]:
        """Copy what the WAL of a SQLite file database holds into the database, beside the writer
        (passively: it waits for no one, and holds no one back); the WAL's frames, and how many of
        them are in the database now. (0, 0) for other databases.

        Its outcome says nothing of the database's availability: a passive checkpoint goes through
        while another process holds the write lock and every write waits, say.
        """
        if not has_wal(self.engine):
            return 0, 0
        try:
            return await trio.to_thread.run_sync(self._checkpoint, limiter=self.limiter)
        except (sa_exc.DBAPIError, sa_exc.TimeoutError) as exc:
            self._raise_unavailable(exc, trio.current_time(), report=False)
            raise

    def _checkpoint(self) -> tuple[int, int]:
        # On the driver's connection, outside any transaction: SQLAlchemy would open one first.
        with self.engine.connect() as connection:
            driver = connection.connection.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            try:
                _, frames, copied = driver.execute(_CHECKPOINT).fetchone()
            except sqlite3.Error as exc:
                raise sa_exc.DBAPIError.instance(_CHECKPOINT, None, exc, sqlite3.Error,
                                                 dialect=connection.dialect) from exc
        return int(frames), int(copied)

    def _transaction(self, work: Callable[..., T], args: tuple[Any, ...],
                     writes: bool) -> tuple[T, list[Callable[[], None]]]:
        with Session(self._writer_bind if writes else self.engine, expire_on_commit=False) as session:
            with session.begin():
                result = work(session, *args)
            return result, session.info.pop(_ON_COMMIT, [])

    @property
    def stuck_probes(self) -> int:
        """Probes (`ping`) given up on whose thread still waits for the database."""
        return self._stuck_probes

    async def ping(self) -> None:
        """Raise DatabaseUnavailable if the database cannot be reached.

        A caller that gives up (/readyz, after 2 s) does not wait for the thread: where the network
        drops every packet, the statement waits until TCP gives up (`tcp_user_timeout`), and where
        the server takes packets but never answers (stopped, say), until it answers; the thread is
        left to end then, holding its connection and a worker slot meanwhile. While such a probe
        has not returned, the next ones answer at once without a thread of their own: a probe
        every second must not take every slot of an outage's length.
        """
        with self._probe_lock:
            if self._stuck_probes:
                raise DatabaseUnavailable("the database has not answered an earlier probe yet")
        returned = abandoned = False

        def probe(session: Session) -> None:
            nonlocal returned
            try:
                session.execute(text("SELECT 1"))
            finally:  # in the worker thread, whenever the statement ends
                with self._probe_lock:
                    returned = True
                    if abandoned:
                        self._stuck_probes -= 1

        try:
            await self._run(probe, (), False, abandon_on_cancel=True)
        except trio.Cancelled:
            with self._probe_lock:
                if not returned:
                    abandoned = True
                    self._stuck_probes += 1
            raise

    async def aclose(self) -> None:
        for engine in self.engines:
            await trio.to_thread.run_sync(engine.dispose)
        if self.replica is not None:
            await self.replica.aclose()


def describe_error(error: BaseException) -> str:
    """The driver's own words, first line only (SQLAlchemy appends the statement and a link)."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return f"{type(original).__name__}: {lines[0] if lines else ''}"
