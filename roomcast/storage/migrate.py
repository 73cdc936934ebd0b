"""Bring a database's schema up to date with Alembic, from code (`run.py migrate`, `serve`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, text

MIGRATIONS = Path(__file__).with_name("migrations")
# Several nodes may start at once; on PostgreSQL they take turns migrating.
_MIGRATION_LOCK_KEY = 0x726F6F6D  # "room"
_SQLITE_MIGRATION_WAIT_MS = 300_000


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to `revision` (blocking: call it from a worker thread)."""
    _migrate(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Undo the migrations after `revision` (an operator's and the tests' tool; blocking)."""
    _migrate(engine, command.downgrade, revision)


def _migrate(engine: Engine, step: Callable[[Config, str], None], revision: str) -> None:
    config = alembic_config(engine)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A migration that rebuilds a table (batch mode) drops the old one, and with foreign
            # keys on that cascades into every row referencing it. SQLite's own procedure: keys
            # off outside the transaction (the pragma is a no-op inside one), checked before commit.
            _sqlite_pragma(connection, "foreign_keys=OFF")
            # Nodes booting together queue for the write lock behind each other's whole upgrade,
            # which on a busy machine outlasts the usual busy timeout.
            usual_wait_ms = connection.connection.driver_connection.execute(  # type: ignore[union-attr]
                "PRAGMA busy_timeout").fetchone()[0]
            _sqlite_pragma(connection, f"busy_timeout={_SQLITE_MIGRATION_WAIT_MS}")
        try:
            # On SQLite, BEGIN IMMEDIATE holds the write lock for the whole upgrade.
            with connection.execution_options(sqlite_immediate=True).begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
                config.attributes["connection"] = connection
                step(config, revision)
                if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
                    raise RuntimeError(f"migration left rows with dangling foreign keys: {broken[:10]}")
        finally:
            if sqlite:
                _sqlite_pragma(connection, "foreign_keys=ON")
                _sqlite_pragma(connection, f"busy_timeout={usual_wait_ms}")


def _sqlite_pragma(connection: Connection, pragma: str) -> None:
    """Run a PRAGMA on the driver connection, outside any transaction SQLAlchemy would begin."""
    connection.connection.driver_connection.execute(f"PRAGMA {pragma}")  # type: ignore[union-attr]


def revise(engine: Engine, message: str) -> None:
    """Autogenerate a new revision from the models (a developer's tool)."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)
