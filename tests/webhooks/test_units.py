"""Webhook pieces without a server: settings validation, signatures, the attempt body, Retry-After."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from email.utils import format_datetime

import pytest

from roomcast.config import SettingsError, load_settings
from roomcast.services.webhook_delivery import Answer, attempt_body, retry_after_s, sign
from roomcast.timestamps import utcnow


@pytest.mark.parametrize("hook, problem", [
    ({"url": "ftp://x.test/", "secret": "s"}, "url"),
    ({"url": "https://x.test/", "secret": ""}, "secret"),
    ({"url": "https://x.test/", "secret": "s", "events": ["message.sent"]}, "unknown events"),
    ({"url": "https://x.test/", "secret": "s", "events": []}, "events"),
    ({"url": "https://x.test/", "secret": "s", "extra": 1}, "extra"),
])
def test_settings_file_targets_are_validated(hook: dict[str, object], problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        load_settings({"webhooks": [hook]}, environ={})


def test_settings_targets_take_star_and_the_environment() -> None:
    settings = load_settings({}, environ={"ROOMCAST_WEBHOOKS": json.dumps(
        [{"url": "http://127.0.0.1:1/h", "secret": "s", "events": "*"},
         {"url": "https://x.test/", "secret": "s", "events": ["member.added", "member.added"]}])})
    assert [hook.events for hook in settings.webhooks] == [["*"], ["member.added"]]
    with pytest.raises(SettingsError, match="webhook_lease_s"):
        load_settings({"webhook_timeout_s": 30, "webhook_lease_s": 20}, environ={})


def test_signature_is_the_hmac_of_the_exact_body() -> None:
    body = attempt_body('{"id":"a","event":"message.created","tenant":"t","room":1,"message":{"body":"ü"}}')
    decoded = json.loads(body)
    assert list(decoded)[-1] == "delivered_at" and decoded["message"]["body"] == "ü"
    assert sign("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_s("7") == 7.0
    assert retry_after_s(" 0 ") == 0.0
    assert retry_after_s("99999999") == 86_400.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None and retry_after_s("-3") is None
    later = retry_after_s(format_datetime(utcnow() + timedelta(seconds=30), usegmt=True))
    assert later is not None and 25 <= later <= 31
    assert retry_after_s(format_datetime(utcnow() - timedelta(seconds=30), usegmt=True)) == 0.0


@pytest.mark.parametrize("value", ["²", "¹⁰", "١٠", "５", "+5", "Wed, 21 Oct 2015 07:28:00 +9999"])
def test_a_retry_after_that_is_not_ascii_digits_nor_a_date_is_unreadable(value: str) -> None:
    assert retry_after_s(value) is None  # never an exception (found by randomized fuzzing)


@pytest.mark.parametrize("status, delivered, retryable", [
    (200, True, False), (204, True, False), (301, False, False), (400, False, False), (404, False, False),
    (408, False, True), (429, False, True), (500, False, True), (503, False, True), (None, False, True),
])
def test_what_is_retried(status: int | None, delivered: bool, retryable: bool) -> None:
    answer = Answer(status, error=None if status else "ConnectError")
    assert (answer.delivered, answer.retryable and not answer.delivered) == (delivered, retryable)
