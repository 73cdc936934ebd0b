"""Serving a node: Hypercorn's Trio worker in front of the app, stopped by SIGINT/SIGTERM."""

from __future__ import annotations

import errno
import logging
import signal
import socket
from collections.abc import Callable

import trio
from hypercorn.config import Config as HypercornConfig

from .collector import collect_on_schedule, freeze_start_up
from .config import Settings
from .errors import StartupError
from .http.app import create_app
from .http.fast_sends import FastSends
from .http.front_door import FrontDoor
from .http.ws.endpoint import WebSocketEndpoint
from .identity.passwords import prepare_dummy_hash
from .logs import log_event
from .node import Node, open_node
from .services.attachments import ensure_orphan_sweeper
from .services.unread import ensure_unread_scanner
from .services.webhook_delivery import ensure_webhook_delivery

log = logging.getLogger("roomcast.server")


def hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = settings.shutdown_grace_s
    config.max_app_queue_size = 16
    return config


def bind_sockets(host: str, port: int) -> list[socket.socket]:
    """Bind and listen on `host`:`port` (each address it resolves to), before anything else starts.

    A failure is a StartupError of one line that says how to fix it. Port 0 picks one free
    port, the same on every address.
    """
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot resolve host {host!r} ({exc.strerror}); fix --host or ROOMCAST_HOST") from None
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(bound) > 1:
                address = (address[0], bound[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(socket.SOMAXCONN)
    except OSError as exc:
        for sock in bound:
            sock.close()
        raise StartupError(_bind_failure(host, port, exc)) from None
    return bound


def _bind_failure(host: str, port: int, error: OSError) -> str:
    where = f"port {port} on {host}"
    if error.errno == errno.EADDRINUSE:
        return f"{where} is in use; pick another with --port or stop the other server"
    if error.errno == errno.EACCES:
        return f"{where} needs privileges this user lacks; pick a port above 1023 with --port"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; fix --host (0.0.0.0 listens on every address)"
    return f"cannot listen on {where} ({error.strerror}); pick another with --host or --port"


async def serve_node(node: Node, *, shutdown: trio.Event, sockets: list[socket.socket] | None = None,
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve `node` (REST, web client and /ws on one port) until `shutdown` is set.

    `sockets`: from bind_sockets (else the settings' host and port are bound here).
    Reports the bound URL through task_status; at shutdown WebSocket clients get 1012.
    """
    websockets = WebSocketEndpoint(node)
    ensure_webhook_delivery(node)  # deliveries queued before this start (or by other nodes) go out
    ensure_unread_scanner(node)  # message.unread
    ensure_orphan_sweeper(node)  # uploads left unsent (before a restart, say) go even if none comes again
    config = hypercorn_config(node.settings)
    fast_path = FastSends(node, config) if node.settings.rest_fast_sends else None
    front_door = FrontDoor(create_app(node), config, websockets.serve, fast_path=fast_path)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(websockets.heartbeats)
        nursery.start_soon(websockets.audits)
        listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(sock)) for sock in sockets or ()]
        await front_door.serve(node.settings.host, node.settings.port, shutdown_trigger=shutdown.wait,
                               listeners=listeners or None, task_status=task_status)
        nursery.cancel_scope.cancel()


async def _set_on_signal(shutdown: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log_event(log, "server.stopping", signal=signal.Signals(signum).name)
            shutdown.set()
            return


async def run_server(settings: Settings, on_listening: Callable[[str], None] = print,
                     sockets: list[socket.socket] | None = None) -> None:
    """`run.py serve`: open the node, serve it, stop gracefully on SIGINT/SIGTERM.

    `sockets`: bound beforehand by bind_sockets, so a busy port stops start-up before the
    database is migrated and the actors start.
    """
    shutdown = trio.Event()
    async with open_node(settings) as node, trio.open_nursery() as nursery:
        nursery.start_soon(_set_on_signal, shutdown)
        url = await nursery.start(
            lambda task_status: serve_node(node, shutdown=shutdown, sockets=sockets, task_status=task_status))
        nursery.start_soon(prepare_dummy_hash)  # an unknown user's first login costs what any other does
        freeze_start_up()  # and full collections on a schedule from here on (collector.py)
        nursery.start_soon(collect_on_schedule, settings.gc_interval_s, shutdown)
        log_event(log, "server.listening", url=url)
        on_listening(f"listening on {url}")
        await shutdown.wait()
        # serve_node returns once Hypercorn has drained; the signal watcher is done too.
    log_event(log, "server.stopped")
