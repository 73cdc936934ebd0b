"""Timestamps on the wire: ISO-8601 UTC with milliseconds and Z."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from roomcast.timestamps import to_wire, utcnow


def test_wire_form_is_utc_milliseconds_with_z() -> None:
    assert to_wire(datetime(2026, 1, 8, 10, 15, 30, 123456, tzinfo=UTC)) == "2026-01-08T10:15:30.123Z"
    assert to_wire(datetime(2026, 1, 8, 10, 15, 30, tzinfo=UTC)) == "2026-01-08T10:15:30.000Z"


def test_other_offsets_are_converted_and_naive_times_are_taken_as_utc() -> None:
    one_hour_east = timezone(timedelta(hours=1))
    assert to_wire(datetime(2026, 1, 8, 11, 15, 30, 5000, tzinfo=one_hour_east)) == "2026-01-08T10:15:30.005Z"
    assert to_wire(datetime(2026, 1, 8, 10, 15, 30)) == "2026-01-08T10:15:30.000Z"  # as SQLite hands them back
    assert to_wire(None) is None


def test_now_is_what_the_wire_carries() -> None:
    now = utcnow()
    assert now.tzinfo is UTC and now.microsecond % 1000 == 0
    assert datetime.fromisoformat(to_wire(now).replace("Z", "+00:00")) == now  # type: ignore[union-attr]
