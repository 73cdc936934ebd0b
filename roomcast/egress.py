"""Where the server's own HTTP requests (webhooks, bots) may connect: not to denied networks.

A webhook or bot URL is chosen by a tenant's admin, so without a check the server would
POST wherever it is told: to a cloud's metadata service (169.254.169.254), or to services
that trust the server's own network. The check is made when connecting, on every address
the host name resolves to, and the connection goes to an address that passed it: a name
that resolves somewhere else by the time of the attempt (DNS rebinding) gains nothing.

`egress_denied_networks` lists the networks; by default the link-local ones, where cloud
metadata services answer. An operator whose receivers are all public adds the private and
loopback ranges (see docs/operations.md).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence

import httpcore
import httpx
import trio

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SocketOptions = Iterable[httpcore.SOCKET_OPTION] | None

class EgressDenied(httpcore.ConnectError):
    """Every address of the target's host is in a denied network: no connection was made."""


def parse_networks(networks: Iterable[str]) -> list[Network]:
    """The networks of a setting the settings already checked (CIDRs or single addresses)."""
    return [ipaddress.ip_network(network, strict=False) for network in networks]


def is_denied(address: str, denied: Sequence[Network]) -> bool:
    """Whether `address` lies in one of `denied` (an IPv4-mapped IPv6 address counts as its IPv4 one)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # without an IPv6 zone (fe80::1%eth0)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == network.version and ip in network for network in denied)


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's Trio backend, connecting only to resolved addresses outside `denied`."""

    def __init__(self, denied: Sequence[Network], inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.denied = list(denied)
        self.inner = inner or httpcore.TrioBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: SocketOptions = None) -> httpcore.AsyncNetworkStream:
        if not self.denied:
            return await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        with trio.move_on_after(timeout if timeout is not None else float("inf")) as resolving:
            try:
                found = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if resolving.cancelled_caught:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out")
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        allowed = [address for address in addresses if not is_denied(address, self.denied)]
        if not allowed:
            raise EgressDenied(f"{host} resolves only to denied addresses ({', '.join(addresses)}):"
                               " see egress_denied_networks")
        error: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in allowed:  # as the resolver ordered them, like a plain connect
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: SocketOptions = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not a webhook target")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_transport(denied: Sequence[Network], limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections keep out of `denied` (`GuardedNetworkBackend`)."""
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    # httpx takes no network backend of its own; its pool (httpcore's) does. Built the way
    # httpx builds it, with the same limits and TLS context.
    pool = transport._pool
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=pool._ssl_context, max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedNetworkBackend(denied))
    return transport
