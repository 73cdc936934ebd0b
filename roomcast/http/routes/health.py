"""Liveness and readiness probes (PROTOCOL §6)."""

from __future__ import annotations

import logging

import trio
from quart import Blueprint, Response, jsonify
from quart_schema import hide

from ...errors import DependencyUnavailable
from ..context import current_node
from ..errors import error_response

blueprint = Blueprint("health", __name__)
log = logging.getLogger("roomcast.http")

# A probe that hangs (a dependency behind a dead network path) counts as unavailable.
_PROBE_TIMEOUT_S = 2.0


@blueprint.get("/healthz")
@hide
async def healthz() -> Response:
    """The process is up and serving."""
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
@hide
async def readyz() -> Response:
    """The database and the stream backend answer; 503 names each one that does not.

    The read replica's state is listed too (`ok`, `starting`, `lagging`, `unavailable`), but a replica
    out of use does not make the node unready: the primary serves its reads.
    """
    node = current_node()
    checks: dict[str, str] = {}
    for name, probe in node.readiness_probes().items():
        checks[name] = "unavailable"
        try:
            with trio.move_on_after(_PROBE_TIMEOUT_S):
                await probe()
                checks[name] = "ok"
        except DependencyUnavailable:
            pass  # the outage is logged once by the dependency's gateway, not on every probe
        except Exception as exc:  # any other failure means not ready too
            log.warning("readiness: %s failed: %r", name, exc)
    ready = all(state == "ok" for state in checks.values())
    checks.update(node.readiness_notes())
    if ready:
        return jsonify({"status": "ready", "checks": checks})
    return error_response(503, "unavailable", "a dependency is unavailable", {"checks": checks})
