"""A loopback TCP proxy that can be cut and restored: how the fault tests take a server away.

The shared PostgreSQL and Redis serve every test process; stopping them is not an
option. Pointed at this proxy instead, a node loses its dependency the way it would
on a network fault: `cut()` resets every proxied connection at once and resets each
new one as soon as it arrives; `restore()` lets connections through again. `blackhole()` is
a network that drops every packet: nothing gets through either way, and no one is told,
until `restore()`.
"""

from __future__ import annotations

import socket
import struct

import trio

_CHUNK = 64 << 10


def _reset(stream: trio.SocketStream) -> None:
    """Make the coming close send RST (SO_LINGER 0), not FIN: the peer sees `connection reset`."""
    try:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


class _Link:
    """One proxied connection: the client's side, the server's side, and the scope pumping between them."""

    def __init__(self, client: trio.SocketStream, server: trio.SocketStream, scope: trio.CancelScope) -> None:
        self.client = client
        self.server = server
        self.scope = scope

    def reset(self) -> None:
        _reset(self.client)
        _reset(self.server)
        self.scope.cancel()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to `target_host:target_port` until cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.is_cut = False
        self.cuts = 0  # how many times it was cut
        self.connections = 0  # accepted so far, refused ones included
        self._links: set[_Link] = set()
        self._open = trio.Event()  # set while traffic flows (not blackholed)
        self._open.set()

    def url_for(self, url: str) -> str:
        """`url` (redis:// or a SQLAlchemy URL) with its host:port replaced by this proxy's."""
        host, port = self.target
        needle = f"{host}:{port}"
        if needle not in url:
            raise ValueError(f"{url!r} does not name {needle}")
        return url.replace(needle, f"127.0.0.1:{self.port}", 1)

    def cut(self) -> None:
        """Reset every connection through the proxy; new ones are reset on arrival until `restore()`."""
        self.is_cut = True
        self.cuts += 1
        for link in list(self._links):
            link.reset()

    def blackhole(self) -> None:
        """Hold every byte in either direction, on every connection and each new one, until `restore()`."""
        if self._open.is_set():
            self._open = trio.Event()

    def restore(self) -> None:
        self.is_cut = False
        self._open.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        if self.is_cut:
            _reset(client)
            await client.aclose()
            return
        await self._open.wait()
        try:
            server = await trio.open_tcp_stream(*self.target)
        except OSError:
            _reset(client)
            await client.aclose()
            return
        with trio.CancelScope() as scope:
            link = _Link(client, server, scope)
            self._links.add(link)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, server, nursery.cancel_scope)
                    nursery.start_soon(self._pump, server, client, nursery.cancel_scope)
            finally:
                self._links.discard(link)
        with trio.CancelScope(shield=True):
            await client.aclose()
            await server.aclose()

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream, both: trio.CancelScope) -> None:
        try:
            while data := await source.receive_some(_CHUNK):
                await self._open.wait()
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        both.cancel()  # either side closing ends the connection
