"""Liveness and readiness probes (PROTOCOL §6)."""

from __future__ import annotations

import logging

from quart import Blueprint, Response, jsonify
from quart_schema import hide

from ..context import current_node
from ..errors import error_response

blueprint = Blueprint("health", __name__)
log = logging.getLogger("roomcast.http")


@blueprint.get("/healthz")
@hide
async def healthz() -> Response:
    """The process is up and serving."""
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
@hide
async def readyz() -> Response:
    """The database and the stream backend answer."""
    node = current_node()
    checks: dict[str, str] = {}
    for name, probe in node.readiness_probes().items():
        try:
            await probe()
            checks[name] = "ok"
        except Exception as exc:  # any failure means not ready; the reason goes to the log
            log.warning("readiness: %s unavailable: %r", name, exc)
            checks[name] = "unavailable"
    if all(state == "ok" for state in checks.values()):
        return jsonify({"status": "ready", "checks": checks})
    return error_response(503, "unavailable", "a dependency is unavailable", {"checks": checks})
