"""The roomcast app class and how a view reaches the node it serves."""

from __future__ import annotations

from typing import cast

from quart import current_app
from quart_trio import QuartTrio

from ..node import Node
from .streaming import StreamedRoute, StreamingHTTPConnection


class RoomcastApp(QuartTrio):
    """A QuartTrio app that carries the node it serves, and streams the bodies of `streamed_routes`."""

    node: Node
    asgi_http_class = StreamingHTTPConnection
    streamed_routes: list[StreamedRoute]


def current_node() -> Node:
    return cast(RoomcastApp, current_app).node
