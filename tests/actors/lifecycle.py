"""Reading the supervision log lines back in tests."""

from __future__ import annotations

import logging
from typing import Any

import pytest


class Lifecycle:
    """The `actor.*` (and other structured) lines logged during a test, in order."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        caplog.set_level(logging.DEBUG, logger="roomcast")

    def lines(self, event: str | None = None, **match: Any) -> list[dict[str, Any]]:
        found = []
        for record in self.caplog.records:
            fields = dict(getattr(record, "roomcast_fields", {}))
            fields["event"] = record.getMessage()
            if event is not None and fields["event"] != event:
                continue
            if all(fields.get(key) == value for key, value in match.items()):
                found.append(fields)
        return found

    def events(self, path: str) -> list[str]:
        return [line["event"] for line in self.lines(path=path)]
