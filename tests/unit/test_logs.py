"""Logging: tracebacks as one field, context fields on every line, library noise kept down."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import trio

from roomcast.logs import JsonFormatter, KeyValueFormatter, bind, configure_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root, coredis = logging.getLogger(), logging.getLogger("coredis")
    handlers, level, coredis_level = root.handlers[:], root.level, coredis.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    coredis.setLevel(coredis_level)


@pytest.mark.parametrize(("level", "expected"), [("info", logging.WARNING), ("debug", logging.WARNING),
                                                 ("error", logging.ERROR)])
def test_the_redis_clients_retry_lines_are_not_logged_at_info(restored_logging: None, level: str,
                                                              expected: int) -> None:
    configure_logging("text", level)
    assert logging.getLogger("coredis").getEffectiveLevel() == expected


def test_coredis_s_traceback_for_each_failed_connection_attempt_is_left_out(
        restored_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    """roomcast reports a Redis outage once (dependency.unavailable); coredis would add a traceback per try."""
    configure_logging("json", "info")
    library = logging.getLogger("coredis")  # the logger coredis logs it on
    try:
        raise ConnectionRefusedError("connection refused")
    except ConnectionRefusedError:
        library.exception("Connection attempt failed unexpectedly!")
    library.error("something else went wrong")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == ["something else went wrong"]


def _record(exc: BaseException | None = None) -> logging.LogRecord:
    logger = logging.getLogger("roomcast.test")
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "thing.failed", (), exc_info)


def _failure() -> BaseException:
    try:
        raise ValueError("bad thing")
    except ValueError as exc:
        return exc


def test_an_exception_is_logged_with_its_traceback_as_one_json_field() -> None:
    line = JsonFormatter().format(_record(_failure()))
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["exception"] == "ValueError('bad thing')"
    assert fields["traceback"].startswith("Traceback (most recent call last):")
    assert "_failure" in fields["traceback"] and fields["traceback"].endswith("ValueError: bad thing")


def test_the_text_format_keeps_the_traceback_on_one_line() -> None:
    line = KeyValueFormatter().format(_record(_failure()))
    assert "\n" not in line
    assert 'traceback="Traceback (most recent call last):\\n' in line
    assert line.startswith("ts=") and "event=thing.failed" in line


async def test_bound_fields_reach_the_lines_of_tasks_started_within() -> None:
    lines: list[dict[str, str]] = []

    async def child() -> None:
        lines.append(json.loads(JsonFormatter().format(_record())))

    with bind(request_id="abc123"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
    outside = json.loads(JsonFormatter().format(_record()))
    assert lines[0]["request_id"] == "abc123"
    assert "request_id" not in outside


def test_a_record_keeps_the_fields_bound_where_it_was_made() -> None:
    with bind(session="s1"):
        record = _record()
    assert json.loads(JsonFormatter().format(record))["session"] == "s1"
