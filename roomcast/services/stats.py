"""GET /api/admin/stats: this node's live figures and, with Redis, every live node's and their sum.

Each node's `stats` actor posts its figures to Redis every `stats_interval_s`
(services/monitoring.py); this reads them all back. This node's own entry is always
taken live. Redis unreachable: this node's figures are still answered, with
`cluster: "unavailable"` and no total (never an error).
"""

from __future__ import annotations

import logging

import trio

from ..errors import DependencyUnavailable
from ..logs import log_event
from ..node import Node
from ..wire import JsonObject
from .monitoring import RATE_WINDOWS, monitor

log = logging.getLogger("roomcast.stats")

# Figures that add up across nodes (users_online does not: a user may be on two nodes).
_SUMMED = ("connections", "subscriptions", "rooms")
_RATES = ("messages_per_s", "deliveries_per_s")
# How long the cluster's figures may take to read before this node answers without them.
_CLUSTER_TIMEOUT_S = 2.0


async def admin_stats(node: Node) -> JsonObject:
    """`{"node", "nodes", "total", "cluster"}` as docs/metrics.md describes them."""
    own = monitor(node).figures()
    board = node.stats_board
    if board is None:
        return {"node": own, "nodes": [own], "total": _total([own], own["users_online"]), "cluster": "single"}
    cluster = None
    with trio.move_on_after(_CLUSTER_TIMEOUT_S):
        try:
            cluster = await board.read()
        except DependencyUnavailable as exc:  # logged once per outage by the gateway
            log_event(log, "stats.cluster_unavailable", logging.DEBUG, error=str(exc))
        except Exception as exc:  # whatever else Redis answered: this node's figures still stand
            log_event(log, "stats.cluster_unreadable", logging.WARNING, error=repr(exc))
    if cluster is None:
        return {"node": own, "nodes": [own], "total": None, "cluster": "unavailable"}
    nodes = [own] + [entry for entry in cluster.nodes if entry.get("id") != own["id"]]
    # Our own users are in the board as of our last post: a user who connected since counts too.
    return {"node": own, "nodes": nodes, "total": _total(nodes, max(cluster.users_online, own["users_online"])),
            "cluster": "redis"}


def _total(nodes: list[JsonObject], users_online: int) -> JsonObject:
    total: JsonObject = {"nodes": len(nodes), "users_online": users_online}
    for name in _SUMMED:
        total[name] = sum(_number(entry.get(name)) for entry in nodes)
    for name in _RATES:
        total[name] = {window: round(sum(_rate(entry, name, window) for entry in nodes), 3) for window in RATE_WINDOWS}
    return total


def _rate(entry: JsonObject, name: str, window: str) -> float:
    rates = entry.get(name)
    return _number(rates.get(window)) if isinstance(rates, dict) else 0


def _number(value: object) -> float:
    """A figure another node posted, or 0 if it is missing or not a number (a node of another version)."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else 0
