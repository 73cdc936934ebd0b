"""The roomcast app class and how a view reaches the node it serves."""

from __future__ import annotations

from typing import cast

from quart import current_app
from quart_trio import QuartTrio

from ..node import Node


class RoomcastApp(QuartTrio):
    """A QuartTrio app that carries the node it serves."""

    node: Node


def current_node() -> Node:
    return cast(RoomcastApp, current_app).node
