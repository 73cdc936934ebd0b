"""Structured logs: one line per event, JSON by default or key=value for terminals."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from .timestamps import to_wire, utcnow

_FIELDS = "roomcast_fields"


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log `event` (e.g. `actor.started`) with structured fields."""
    logger.log(level, event, extra={_FIELDS: fields})


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": to_wire(utcnow()),
        "level": record.levelname.lower(),
        "logger": record.name,
        "event": record.getMessage(),
    }
    fields.update(getattr(record, _FIELDS, {}))
    if record.exc_info and record.exc_info[1] is not None:
        fields["exception"] = repr(record.exc_info[1])
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_record_fields(record), default=str, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = []
        for key, value in _record_fields(record).items():
            text = str(value)
            parts.append(f"{key}={json.dumps(text, ensure_ascii=False) if (' ' in text or not text) else text}")
        return " ".join(parts)


def configure_logging(log_format: str = "json", level: str = "info") -> None:
    """Send roomcast's logs (and the libraries') to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # coredis logs each of its internal retries at INFO: during a Redis outage that is a line per
    # call per attempt, while roomcast logs the outage once (dependency.unavailable) and its end once.
    logging.getLogger("coredis").setLevel(max(logging.WARNING, root.level))
