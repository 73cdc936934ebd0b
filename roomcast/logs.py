"""Structured logs: one line per event, JSON by default or key=value for terminals.

Each line carries the fields bound to the current context (`bind`): the HTTP request's
`request_id`, the WebSocket's `session`. Trio copies the context into every task started
from within, so the lines a request or session causes anywhere below it carry them too.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

from .timestamps import to_wire, utcnow

_FIELDS = "roomcast_fields"
_CONTEXT = "roomcast_context"

# Fields every line logged in this context carries; a new mapping on each bind, never mutated.
_bound: ContextVar[dict[str, str]] = ContextVar("roomcast_log_context", default={})  # noqa: B039


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, *,
              exc_info: BaseException | None = None, **fields: Any) -> None:
    """Log `event` (e.g. `actor.started`) with structured fields (and `exc_info`'s traceback)."""
    logger.log(level, event, exc_info=exc_info, extra={_FIELDS: fields})


class bind:
    """Add `fields` to every line logged in this context (and in the tasks it starts).

    A slotted object rather than a generator: a /ws session stays inside one for hours, and a
    suspended generator's frame costs some 500 bytes per connection.
    """

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: str) -> None:
        self._fields: dict[str, str] | None = fields
        self._token: Token[dict[str, str]] | None = None

    def __enter__(self) -> None:
        fields, self._fields = self._fields or {}, None
        self._token = _bound.set({**_bound.get(), **fields})

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _bound.reset(self._token)
            self._token = None


def bound_fields() -> dict[str, str]:
    """The fields `bind` has added in this context."""
    return _bound.get()


def _stamp_context(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """Wrap a LogRecord factory so each record keeps the fields bound where it was made
    (a handler may format it later, or in another context)."""
    if getattr(factory, "roomcast_stamps", False):
        return factory

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        setattr(record, _CONTEXT, _bound.get())
        return record

    make.roomcast_stamps = True  # type: ignore[attr-defined]
    return make


logging.setLogRecordFactory(_stamp_context(logging.getLogRecordFactory()))


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": to_wire(utcnow()),
        "level": record.levelname.lower(),
        "logger": record.name,
        "event": record.getMessage(),
    }
    fields.update(getattr(record, _CONTEXT, {}))
    fields.update(getattr(record, _FIELDS, {}))
    if record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        fields["exception"] = repr(error)
        fields["traceback"] = "".join(traceback.format_exception(error)).rstrip("\n")
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_record_fields(record), default=str, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    """key=value pairs on one line; a value with spaces, quotes or line breaks is a JSON string."""

    def format(self, record: logging.LogRecord) -> str:
        parts = []
        for key, value in _record_fields(record).items():
            text = str(value)
            plain = text and not any(char in text for char in ' "=\n\r\t')
            parts.append(f"{key}={text if plain else json.dumps(text, ensure_ascii=False)}")
        return " ".join(parts)


def _reported_by_roomcast(record: logging.LogRecord) -> bool:
    """False for coredis's traceback of each failed connection attempt: during a Redis outage that is
    one per reconnect try, while roomcast reports the outage once (dependency.unavailable, with the
    error) and its end once."""
    return not (record.name.startswith("coredis") and record.msg == "Connection attempt failed unexpectedly!")


def configure_logging(log_format: str = "json", level: str = "info") -> None:
    """Send roomcast's logs (and the libraries') to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else KeyValueFormatter())
    handler.addFilter(_reported_by_roomcast)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # coredis logs each of its internal retries at INFO: during a Redis outage that is a line per
    # call per attempt, while roomcast logs the outage once (dependency.unavailable) and its end once.
    logging.getLogger("coredis").setLevel(max(logging.WARNING, root.level))
