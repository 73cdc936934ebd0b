"""SQLite: many rows written through the driver's own cursor, inside the session's transaction.

A batch of sends writes hundreds of rows per transaction. Through SQLAlchemy each row's
parameters pass its bind processors (a timestamp becomes text, per row and column) and
its execution context; sqlite3's `execute`/`executemany` take plain tuples in C. The
statements here are the plain ones SQLAlchemy would emit, on the same connection and so in
the same transaction; timestamps are stored in the text form SQLAlchemy stores and reads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

_DIALECT = sqlite.dialect()
_STORE_TIMESTAMP = DateTime(timezone=True).dialect_impl(_DIALECT).bind_processor(_DIALECT)


def is_sqlite(session: Session) -> bool:
    return session.connection().dialect.name == "sqlite"


def timestamp(moment: datetime) -> str:
    """`moment` as SQLAlchemy stores a DateTime on SQLite (what it parses back)."""
    assert _STORE_TIMESTAMP is not None
    stored = _STORE_TIMESTAMP(moment)
    assert isinstance(stored, str)
    return stored


def cursor(session: Session) -> sqlite3.Cursor:
    """A cursor of the session's own sqlite3 connection (its transaction is open)."""
    driver = session.connection().connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver.cursor()


def insert_each(session: Session, statement: str, rows: Sequence[tuple[object, ...]]) -> list[int]:
    """Run an INSERT once per row; the rowid of each, in order."""
    found = cursor(session)
    ids: list[int] = []
    for row in rows:
        found.execute(statement, row)
        assert found.lastrowid is not None
        ids.append(found.lastrowid)
    return ids


def execute_many(session: Session, statement: str, rows: Sequence[tuple[object, ...]]) -> int:
    """Run a statement for every row (executemany); the rows it changed, all together."""
    found = cursor(session)
    found.executemany(statement, rows)
    return found.rowcount
