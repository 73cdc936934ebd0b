"""Checks `run.py` makes before anything starts: each failure is one line that says how to fix it.

`serve` runs them all (and binds its port, server.bind_sockets) before it migrates the
database or starts an actor; the other commands check what they use.
"""

from __future__ import annotations

import secrets

from sqlalchemy import text
from sqlalchemy.engine import make_url

from .config import Settings
from .errors import StartupError
from .identity.tokens import TokenCodec
from .storage.database import create_database_engine


def uses_data_dir(settings: Settings) -> bool:
    """Whether data_dir holds anything: the SQLite file of the default database, or the generated secret."""
    hs256_without_secret = settings.jwt_algorithm == "HS256" and not settings.jwt_secret
    return settings.database_url is None or hs256_without_secret


def check_data_dir(settings: Settings) -> None:
    """data_dir exists (made if need be) and this user can write in it."""
    if not uses_data_dir(settings):
        return
    path = settings.data_dir
    probe = path / f".write-check-{secrets.token_hex(4)}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StartupError(f"data_dir {path} is not writable ({exc.strerror}); fix its permissions or point "
                           f"data_dir (ROOMCAST_DATA_DIR) at a folder this user can write") from None


def check_database(settings: Settings) -> None:
    """The database answers `SELECT 1` (SQLite: the file can be opened or made)."""
    url = settings.resolved_database_url
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        engine = create_database_engine(url)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:  # no driver, refused, unknown host, bad password, unreadable file...
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        raise StartupError(f"database {shown} is unreachable ({reason}); start it or fix database_url "
                           f"(ROOMCAST_DATABASE_URL)") from None


def check_tokens(settings: Settings) -> None:
    """The JWT keys can be read (and the embedded default's secret made)."""
    try:
        TokenCodec.from_settings(settings)
    except OSError as exc:
        where = exc.filename or settings.data_dir
        raise StartupError(f"cannot read the JWT key {where} ({exc.strerror}); fix jwt_public_key_file / "
                           f"jwt_private_key_file, or data_dir for the generated secret") from None


def check_all(settings: Settings) -> None:
    """What every command that touches the database needs, in the order a person would fix it."""
    check_data_dir(settings)
    check_database(settings)

