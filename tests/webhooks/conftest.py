"""Webhook tests: a real receiver on loopback, named in the node's settings; fast retries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.webhooks.receiver import Receiver

SECRET = "hook-secret-ü"
FAST = {
    "webhook_retry_base_s": 0.05,
    "webhook_retry_max_s": 0.2,
    "webhook_poll_s": 0.05,
    "webhook_timeout_s": 1.0,
    "webhook_connect_timeout_s": 1.0,
    "webhook_lease_s": 3.0,
    "send_burst": 1000,
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.stop()


@pytest.fixture
def webhook_settings() -> dict[str, Any]:
    """Override in a test module to change the webhook settings."""
    return {}


@pytest.fixture
def settings_overrides(receiver: Receiver, webhook_settings: dict[str, Any]) -> dict[str, Any]:
    return {"webhooks": [{"url": receiver.url, "secret": SECRET}], **FAST, **webhook_settings}
