"""Who the client is, for REST and /ws alike: its address and scheme, and whether its Origin may call.

Behind a reverse proxy the socket's peer is the proxy. `X-Forwarded-For` and
`X-Forwarded-Proto` are believed only when that peer is one of `trusted_proxies`:
anyone else could write them. Walking `X-Forwarded-For` from the right, trusted
proxies are skipped; the first address that is not one is the client. The
address feeds the login throttle and the logs; the scheme feeds the same-origin
check of the `/ws` handshake.

Hypercorn's ProxyFixMiddleware trusts a number of hops whoever the peer is, and
would not see `/ws` (served below Quart): hence this one rule, for both.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from urllib.parse import urlsplit

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _ip(text: str) -> _Address | None:
    """An IP address from a peer or an `X-Forwarded-For` entry (a port or brackets tolerated), or None."""
    text = text.strip()
    if text.startswith("["):  # [v6]:port
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class TrustedProxies:
    """The `trusted_proxies` setting: resolves the client behind them."""

    def __init__(self, networks: Iterable[str]) -> None:
        self._networks = [ipaddress.ip_network(network, strict=False) for network in networks]

    def trusts(self, address: _Address | None) -> bool:
        if address is None:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address.version == network.version and address in network for network in self._networks)

    def resolve(self, peer: str | None, scheme: str, forwarded_for: str | None,
                forwarded_proto: str | None) -> tuple[str | None, str]:
        """(client address, scheme) of a request whose socket peer is `peer`."""
        peer_ip = _ip(peer) if peer else None
        if not self.trusts(peer_ip):
            return peer, scheme
        client, trusted_hops = peer, 1
        for hop in reversed([part for part in (forwarded_for or "").split(",") if part.strip()]):
            hop_ip = _ip(hop)
            if hop_ip is None:
                break  # garbage: the client is the last proxy that wrote something readable
            client = str(hop_ip)
            if not self.trusts(hop_ip):
                break
            trusted_hops += 1
        protos = [part.strip().lower() for part in (forwarded_proto or "").split(",") if part.strip()]
        if protos:
            # The value written by the outermost trusted proxy (werkzeug's ProxyFix counts the same way).
            proto = protos[max(0, len(protos) - trusted_hops)]
            if proto in ("http", "https"):
                scheme = proto
        return client, scheme

    def resolve_fields(self, peer: str | None, scheme: str,
                       headers: Iterable[tuple[bytes, bytes]]) -> tuple[str | None, str]:
        """`resolve` with the forwarding headers read from a request's (name, value) pairs."""
        headers = list(headers)
        return self.resolve(peer, scheme, _header(headers, b"x-forwarded-for"), _header(headers, b"x-forwarded-proto"))


def _origin_key(origin: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme]


def origin_allowed(origin: str | None, *, host: str | None, scheme: str, allowed: Sequence[str]) -> bool:
    """Whether a request with this `Origin` may proceed: none (not a browser), the server's own
    origin (`scheme` and the `Host` header), or one of `allowed_origins` ("*": any)."""
    if not origin:
        return True
    if "*" in allowed:
        return True
    key = _origin_key(origin)
    if key is None:
        return False  # "null" (a sandboxed page, a file) or garbage
    if key in {_origin_key(entry) for entry in allowed}:
        return True
    return bool(host) and key == _origin_key(f"{scheme}://{host}")


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    values = [value.decode("latin-1") for key, value in headers if key.lower() == name]
    return ", ".join(values) if values else None


ASGIApp = Callable[[MutableMapping[str, object], Callable[[], Awaitable[object]],
                    Callable[[MutableMapping[str, object]], Awaitable[None]]], Awaitable[None]]


class ForwardedHeaders:
    """ASGI middleware: `scope["client"]` and `scope["scheme"]` as `TrustedProxies` resolves them."""

    def __init__(self, app: ASGIApp, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: MutableMapping[str, object], receive: Callable[[], Awaitable[object]],
                       send: Callable[[MutableMapping[str, object]], Awaitable[None]]) -> None:
        client = scope.get("client")
        if scope.get("type") in ("http", "websocket") and isinstance(client, tuple | list) and client:
            raw_headers = scope.get("headers")
            headers: list[tuple[bytes, bytes]] = list(raw_headers) if isinstance(raw_headers, Iterable) else []
            scheme = str(scope.get("scheme", "http"))
            address, resolved = self.proxies.resolve_fields(str(client[0]), scheme, headers)
            if address != client[0] or resolved != scheme:
                scope = dict(scope, client=(address, client[1] if len(client) > 1 else 0), scheme=resolved)
        await self.app(scope, receive, send)
