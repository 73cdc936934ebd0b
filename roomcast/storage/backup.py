"""Backing up and restoring a SQLite database with SQLite's online backup API.

The backup API copies a consistent snapshot page by page while the server keeps
writing (WAL mode), so `run.py backup` needs no downtime. A restore replaces the live
file's contents and so must not run under a server: each `run.py serve` on SQLite holds
a shared lock on `<database>.lock` for its lifetime, and restore asks for it exclusively.
Plain sync code: the CLI runs it outside any event loop.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

_PAGES_PER_STEP = 1024  # a writer waits at most one step's copy for the lock


class BackupError(Exception):
    """The backup or restore cannot be done; the message says why and what to do."""


def sqlite_path(database_url: str) -> Path | None:
    """The file of a SQLite URL, or None for any other database (or an in-memory one)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).resolve()


def _lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


@contextmanager
def serving(database: Path) -> Iterator[None]:
    """Held by a server for as long as it uses `database`: restore refuses meanwhile."""
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(_lock_path(database), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        yield


def _copy(source: sqlite3.Connection, target: sqlite3.Connection) -> None:
    source.backup(target, pages=_PAGES_PER_STEP)


def _check(path: Path) -> None:
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            result = connection.execute("PRAGMA quick_check").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a SQLite database ({exc})") from None
    if not result or result[0] != "ok":
        raise BackupError(f"{path} is damaged (quick_check: {result[0] if result else 'no answer'})")


def backup(database: Path, destination: Path) -> Path:
    """Copy `database` to `destination` (a file, or a folder to put a timestamped file in).

    Consistent while a server writes. Refuses to overwrite a file; writes beside it first
    and renames, so a failed backup leaves no half file under the name. Returns the file written.
    """
    if not database.exists():
        raise BackupError(f"there is no database at {database} to back up")
    if destination.is_dir():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        destination = destination / f"roomcast-{stamp}.db"
    if destination.exists():
        raise BackupError(f"{destination} exists; name a new file or a folder")
    partial = destination.with_name(f".{destination.name}.partial")
    try:
        source = sqlite3.connect(database)
        target = sqlite3.connect(partial)
        try:
            _copy(source, target)
        finally:
            target.close()
            source.close()
        os.replace(partial, destination)
    except (sqlite3.Error, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"backup to {destination} failed ({exc})") from None
    return destination


def restore(backup_file: Path, database: Path) -> None:
    """Replace `database`'s contents with `backup_file`'s; refuses while a server uses it."""
    if not backup_file.is_file():
        raise BackupError(f"there is no backup file at {backup_file}")
    _check(backup_file)
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(_lock_path(database), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"a server is using {database}; stop it (every node), then restore") from None
        try:
            source = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
            target = sqlite3.connect(database)
            try:
                _copy(source, target)
            finally:
                target.close()
                source.close()
        except sqlite3.Error as exc:
            raise BackupError(f"restore into {database} failed ({exc})") from None
