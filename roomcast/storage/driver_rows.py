"""Many rows written through the driver's own cursor, inside the session's transaction.

A batch of sends writes hundreds of rows per transaction. Through SQLAlchemy each row's
parameters pass its bind processors and execution context, and psycopg dumps a list
parameter as a text array, escaping every element in Python (a JSON payload is all quotes):
for forty outbox rows that costs a millisecond. So the batch's writes go to the driver:

- SQLite: sqlite3's `execute`/`executemany` with plain tuples, in C; timestamps in the
  text form SQLAlchemy stores and parses back.
- PostgreSQL: one statement per kind of row, every column an array (`unnest`) passed in
  binary (`%b`), which psycopg dumps without escaping: twenty times faster than as text.

Same connection, same transaction: what SQLAlchemy began is committed or rolled back with it.
A driver's error comes out wrapped as SQLAlchemy would wrap it (`sa_exc.DBAPIError` and its
kinds), so an outage or a constraint is told apart exactly as on any other statement.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar, cast

from sqlalchemy import DateTime
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

if TYPE_CHECKING:  # psycopg is there only with the postgres extra
    import psycopg

T = TypeVar("T")
_SQLITE = sqlite.dialect()
_SQLITE_TIMESTAMP = DateTime(timezone=True).dialect_impl(_SQLITE).bind_processor(_SQLITE)


def dialect(session: Session) -> str:
    """"sqlite", "postgresql" (or another SQLAlchemy dialect name, which the callers leave to SQLAlchemy)."""
    return session.connection().dialect.name


def sqlite_timestamp(moment: datetime) -> str:
    """`moment` as SQLAlchemy stores a DateTime on SQLite (what it parses back)."""
    assert _SQLITE_TIMESTAMP is not None
    stored = _SQLITE_TIMESTAMP(moment)
    assert isinstance(stored, str)
    return stored


def _wrapped(session: Session, statement: str, run: Callable[[], T]) -> T:
    """`run()`, with a driver's error raised as SQLAlchemy raises it for its own statements."""
    dialect = session.connection().dialect
    error_type = dialect.loaded_dbapi.Error
    try:
        return run()
    except error_type as exc:
        raise sa_exc.DBAPIError.instance(statement, None, exc, error_type, dialect=dialect) from exc


def _sqlite_cursor(session: Session) -> sqlite3.Cursor:
    driver = session.connection().connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver.cursor()


def sqlite_insert_each(session: Session, statement: str, rows: Sequence[tuple[object, ...]]) -> list[int]:
    """Run an INSERT once per row; the rowid of each, in order."""
    cursor = _sqlite_cursor(session)

    def run() -> list[int]:
        ids: list[int] = []
        for row in rows:
            cursor.execute(statement, row)
            assert cursor.lastrowid is not None
            ids.append(cursor.lastrowid)
        return ids

    return _wrapped(session, statement, run)


def sqlite_execute_many(session: Session, statement: str, rows: Sequence[tuple[object, ...]]) -> int:
    """Run a statement for every row (executemany); the rows it changed, all together."""
    cursor = _sqlite_cursor(session)
    return _wrapped(session, statement, lambda: cursor.executemany(statement, rows).rowcount)


def sqlite_values(rows: Sequence[tuple[object, ...]]) -> tuple[str, list[object]]:
    """`rows` as the rows of a VALUES list: its placeholders ("(?, ?), (?, ?)") and their parameters."""
    width = len(rows[0]) if rows else 0
    marks = "(" + ", ".join(["?"] * width) + ")"
    return ", ".join([marks] * len(rows)), [value for row in rows for value in row]


def sqlite_select(session: Session, statement: str, params: Sequence[object]) -> list[tuple[object, ...]]:
    """The rows of a query."""
    cursor = _sqlite_cursor(session)
    return _wrapped(session, statement, lambda: cursor.execute(statement, params).fetchall())


def pg_execute(session: Session, statement: str,
               params: Mapping[str, object]) -> tuple[list[tuple[object, ...]], int]:
    """Run one statement (placeholders `%(name)b`); the rows it returned, and the rows it changed."""
    driver = cast("psycopg.Connection[tuple[object, ...]]", session.connection().connection.driver_connection)
    def run() -> tuple[list[tuple[object, ...]], int]:
        with driver.cursor() as cursor:
            cursor.execute(statement.encode(), params)
            return (cursor.fetchall() if cursor.description is not None else []), cursor.rowcount

    return _wrapped(session, statement, run)


@functools.cache
def pg_pipelines() -> bool:
    """Whether psycopg's libpq has pipeline mode (14 and later: psycopg's binary wheels always)."""
    import psycopg

    return bool(psycopg.Pipeline.is_supported())


def pg_execute_together(session: Session, statements: Sequence[tuple[str, Mapping[str, object]]]
                        ) -> list[list[tuple[object, ...]]]:
    """Run several statements (placeholders `%(name)b`) in one round trip, in order, with libpq's
    pipeline mode (see `pg_pipelines`); the rows each returned. The first statement of a
    transaction takes its BEGIN along: that round trip is saved too."""
    driver = cast("psycopg.Connection[tuple[object, ...]]", session.connection().connection.driver_connection)

    def run() -> list[list[tuple[object, ...]]]:
        cursors = [driver.cursor() for _ in statements]
        try:
            with driver.pipeline():
                for cursor, (statement, params) in zip(cursors, statements, strict=True):
                    cursor.execute(statement.encode(), params)
            return [cursor.fetchall() if cursor.description is not None else [] for cursor in cursors]
        finally:
            for cursor in cursors:
                cursor.close()

    return _wrapped(session, statements[0][0], run)
