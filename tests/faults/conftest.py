"""Fault tests run on both stacks, like the /ws tests: SQLite with in-process streams, PostgreSQL with Redis."""

from tests.ws.conftest import db_backend, settings_overrides, stack, ws_settings

__all__ = ["db_backend", "settings_overrides", "stack", "ws_settings"]
