"""Who the client is behind proxies, and which origins may call (roomcast.http.peer)."""

from __future__ import annotations

import pytest

from roomcast.http.peer import TrustedProxies, origin_allowed

PROXIES = TrustedProxies(["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"])


@pytest.mark.parametrize(("peer", "forwarded_for", "proto", "expected"), [
    ("203.0.113.5", "198.51.100.1", "https", ("203.0.113.5", "http")),  # untrusted peer: headers ignored
    ("10.1.2.3", "198.51.100.1", "https", ("198.51.100.1", "https")),
    ("10.1.2.3", None, None, ("10.1.2.3", "http")),
    ("10.1.2.3", "spoofed, 198.51.100.1", None, ("198.51.100.1", "http")),  # only the hops we trust are read
    ("10.1.2.3", "198.51.100.1, 10.9.9.9", "https, http", ("198.51.100.1", "https")),  # two trusted hops
    ("10.1.2.3", "10.4.4.4, 10.9.9.9", None, ("10.4.4.4", "http")),  # all trusted: the leftmost
    ("10.1.2.3", "not-an-ip", "https", ("10.1.2.3", "https")),
    ("10.1.2.3", "198.51.100.1:5555", None, ("198.51.100.1", "http")),
    ("10.1.2.3", "[2001:db8::1]:443, 198.51.100.1", None, ("198.51.100.1", "http")),
    ("2001:db8::5", "2a00::1", "https", ("2a00::1", "https")),
    ("::ffff:10.0.0.1", "198.51.100.1", None, ("198.51.100.1", "http")),  # v4-mapped peer
    ("192.0.2.1", "198.51.100.1", "gopher", ("198.51.100.1", "http")),  # unknown proto ignored
    ("192.0.2.2", "198.51.100.1", "https", ("192.0.2.2", "http")),
    (None, "198.51.100.1", "https", (None, "http")),
])
def test_resolve(peer: str | None, forwarded_for: str | None, proto: str | None,
                 expected: tuple[str | None, str]) -> None:
    assert PROXIES.resolve(peer, "http", forwarded_for, proto) == expected


def test_no_trusted_proxies_believes_nobody() -> None:
    assert TrustedProxies([]).resolve("127.0.0.1", "http", "198.51.100.1", "https") == ("127.0.0.1", "http")


@pytest.mark.parametrize(("origin", "host", "scheme", "allowed", "expected"), [
    (None, "chat.example", "http", [], True),
    ("", "chat.example", "http", [], True),
    ("http://chat.example", "chat.example", "http", [], True),
    ("http://chat.example:80", "chat.example", "http", [], True),
    ("https://chat.example", "chat.example:443", "https", [], True),
    ("https://chat.example", "chat.example", "http", [], False),
    ("http://CHAT.example", "chat.example", "http", [], True),
    ("https://app.example", "chat.example", "https", ["https://app.example"], True),
    ("https://app.example:8443", "chat.example", "https", ["https://app.example"], False),
    ("https://other.example", "chat.example", "https", ["*"], True),
    ("null", "chat.example", "http", [], False),
    ("https://other.example", None, "http", [], False),
    ("http://[::1]:8000", "[::1]:8000", "http", [], True),
    ("http://x:99999", "x", "http", [], False),
])
def test_origin_allowed(origin: str | None, host: str | None, scheme: str, allowed: list[str], expected: bool) -> None:
    assert origin_allowed(origin, host=host, scheme=scheme, allowed=allowed) is expected
