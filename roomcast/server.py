"""Serving a node: Hypercorn's Trio worker in front of the app, stopped by SIGINT/SIGTERM."""

from __future__ import annotations

import gc
import logging
import signal
from collections.abc import Callable

import trio
from hypercorn.config import Config as HypercornConfig

from .config import Settings
from .http.app import create_app
from .http.front_door import FrontDoor
from .http.ws.endpoint import WebSocketEndpoint
from .logs import log_event
from .node import Node, open_node
from .services.webhook_delivery import ensure_webhook_delivery

log = logging.getLogger("roomcast.server")


def hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = settings.shutdown_grace_s
    config.max_app_queue_size = 16
    return config


async def serve_node(node: Node, *, shutdown: trio.Event,
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve `node` (REST, web client and /ws on one port) until `shutdown` is set.

    Reports the bound URL through task_status; at shutdown WebSocket clients get 1012.
    """
    websockets = WebSocketEndpoint(node)
    ensure_webhook_delivery(node)  # deliveries queued before this start (or by other nodes) go out
    front_door = FrontDoor(create_app(node), hypercorn_config(node.settings), websockets.serve)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(websockets.heartbeats)
        nursery.start_soon(websockets.audits)
        await front_door.serve(node.settings.host, node.settings.port, shutdown_trigger=shutdown.wait,
                               task_status=task_status)
        nursery.cancel_scope.cancel()


async def _set_on_signal(shutdown: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log_event(log, "server.stopping", signal=signal.Signals(signum).name)
            shutdown.set()
            return


async def run_server(settings: Settings, on_listening: Callable[[str], None] = print) -> None:
    """`run.py serve`: open the node, serve it, stop gracefully on SIGINT/SIGTERM."""
    shutdown = trio.Event()
    async with open_node(settings) as node, trio.open_nursery() as nursery:
        nursery.start_soon(_set_on_signal, shutdown)
        url = await nursery.start(lambda task_status: serve_node(node, shutdown=shutdown, task_status=task_status))
        # What start-up made lives as long as the process: frozen, the collector's full passes
        # no longer walk it, which would stall every connection for milliseconds at a time.
        gc.collect()
        gc.freeze()
        log_event(log, "server.listening", url=url)
        on_listening(f"listening on {url}")
        await shutdown.wait()
        # serve_node returns once Hypercorn has drained; the signal watcher is done too.
    log_event(log, "server.stopped")
