"""UTC timestamps as stored and as written on the wire."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, timezone-aware UTC, truncated to milliseconds (what the wire carries)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def to_wire(moment: datetime | None) -> str | None:
    """ISO-8601 UTC with milliseconds and `Z`, e.g. 2026-01-08T10:15:30.123Z."""
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite hands naive datetimes back; they were stored as UTC
        moment = moment.replace(tzinfo=UTC)
    # isoformat, not strftime: this runs for every message on the wire, and strftime costs ten times more.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
