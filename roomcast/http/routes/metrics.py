"""GET /metrics (PROTOCOL §6): the node's metrics in the Prometheus text format, and the count of
HTTP requests by route and status that feeds them.

Not under /api: scrapers carry no user's JWT. With `metrics_token` set, a scrape needs
`Authorization: Bearer <metrics_token>` (401 otherwise); unset, it is open to whoever
reaches the port.
"""

from __future__ import annotations

import hmac

from quart import Blueprint, Quart, Response, request
from quart_schema import hide

from ...metrics import CONTENT_TYPE, NodeMetrics
from ...services.monitoring import monitor
from ..context import current_node
from ..errors import error_response

blueprint = Blueprint("metrics", __name__)

# Any other method a client sends is counted as "other": a label must not take values from clients.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@blueprint.get("/metrics")
@hide
async def metrics() -> Response:
    """Every metric of this node (docs/metrics.md lists them)."""
    node = current_node()
    token = node.settings.metrics_token
    if token is not None:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return error_response(401, "unauthorized", "/metrics needs the metrics token as a bearer token",
                                  headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    await monitor(node).refresh_database_figures()  # the database down: the last figures stand
    return Response(node.metrics.render(), content_type=CONTENT_TYPE)


def count_requests(app: Quart, node_metrics: NodeMetrics) -> None:
    """Count every answered request by method, route (the URL rule, never the raw path) and status."""

    @app.after_request
    async def _count(response: Response) -> Response:
        rule = request.url_rule
        count_request(node_metrics, request.method, rule.rule if rule is not None else None, response.status_code)
        return response


def count_request(node_metrics: NodeMetrics, method: str, rule: str | None, status: int) -> None:
    """Count one answered request (`rule`: the URL rule it matched, if any), for the app and the fast sends."""
    node_metrics.http_requests.labels(method if method in _METHODS else "other", rule or "unmatched",
                                      str(status)).inc()
