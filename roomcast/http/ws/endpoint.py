"""The node's /ws endpoint: handshake, authenticate, run a session; one heartbeat for them all."""

from __future__ import annotations

import logging
import time

import trio

from ...errors import ApiError, DependencyUnavailable
from ...identity.authenticate import authenticate, bearer_token
from ...logs import bind, log_event
from ...node import Node
from ...services import live
from ..front_door import Draining, UpgradeRequest, refuse
from ..peer import TrustedProxies, origin_allowed
from .connection import ConnectionClosed, WebSocket
from .handlers import HANDLERS
from .heartbeat import Heartbeat
from .session import POLICY_VIOLATION, TRY_AGAIN_LATER, Session, unavailable_reason

log = logging.getLogger("roomcast.ws")

# Users looked up per query when the open sessions are checked for disabled users and revoked tokens.
_AUDIT_CHUNK = 500


class WebSocketEndpoint:
    """Serves the connections the front door upgrades, and pings them all from one task."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.heartbeat = Heartbeat(node.settings.heartbeat_s)
        self.proxies = TrustedProxies(node.settings.trusted_proxies)
        self._draining: Draining | None = None  # the front door's, listened to once for every session

    def _stop_sessions(self) -> None:
        """Draining started: every session closes with 1012 once what is queued for it is written."""
        for session in self.heartbeat.members():
            session.outbound.stop()  # type: ignore[attr-defined]

    async def serve(self, stream: trio.SocketStream, request: UpgradeRequest, draining: Draining) -> None:
        """The front door's /ws handler: check the origin, handshake, authenticate, run the session."""
        if draining is not self._draining:  # one listener for all: none kept per connection
            self._draining = draining
            draining.listen(self._stop_sessions)
        headers = request.headers
        client, scheme = self.proxies.resolve(_peer_address(stream), "http", headers.get("x-forwarded-for"),
                                              headers.get("x-forwarded-proto"))
        if not origin_allowed(headers.get("origin"), host=headers.get("host"), scheme=scheme,
                              allowed=self.node.settings.allowed_origins):
            # Refused before the upgrade, as browsers expect of a cross-site WebSocket: a page on
            # another origin must not ride on the user's token (allowed_origins names the ones that may).
            log_event(log, "ws.origin_refused", client=client, origin=headers.get("origin"))
            await refuse(stream, 403, "Forbidden", "forbidden", "this origin may not open /ws")
            return
        socket = WebSocket(stream, self.node.settings.ws_max_frame_bytes, self.node.metrics.wire)
        try:
            await socket.accept(request)
        except ConnectionClosed:
            return
        tokens = request.query.get("token")
        token = (tokens[0] if tokens else None) or bearer_token(request.headers.get("authorization"))
        request.release()  # the session may last for hours; its request head is not needed
        try:
            user, claims = await authenticate(self.node.database, self.node.tokens, token, self.node.user_cache,
                                             keep=False)
        except DependencyUnavailable as exc:
            # PROTOCOL §5: a dependency down at connect time is 1013, try again later.
            await socket.close(TRY_AGAIN_LATER, unavailable_reason(exc))
            await socket.linger()
            log_event(log, "ws.refused", code=TRY_AGAIN_LATER, reason=unavailable_reason(exc), client=client)
            return
        except ApiError as exc:
            # PROTOCOL §5: accept, then close with 1008.
            await socket.close(POLICY_VIOLATION, exc.code)
            await socket.linger()
            log_event(log, "ws.refused", code=POLICY_VIOLATION, reason=exc.code, client=client)
            return
        session = Session(self.node, socket, user, HANDLERS, claims.issued_at)
        # This frame lives as long as the session: keep none of the handshake alive with it.
        del headers, scheme, tokens, token, claims, request
        started = time.perf_counter()
        # Every line this session causes, in its tasks and the ones they start, names it.
        with bind(session=session.session_id):
            log_event(log, "ws.connected", user=user.id, client=client)
            self.heartbeat.add(session)
            try:
                code = await session.run(draining)
            finally:
                self.heartbeat.discard(session)
            await socket.linger()
            log_event(log, "ws.disconnected", user=user.id, code=code,
                      duration_ms=round((time.perf_counter() - started) * 1000, 2))

    async def heartbeats(self) -> None:
        """Ping each session every `heartbeat_s` (and drop those whose client went quiet)."""
        await self.heartbeat.run()

    async def audits(self) -> None:
        """Every `heartbeat_s`, close (1008) the sessions of users disabled or revoked since they connected."""
        while True:
            await trio.sleep(self.node.settings.heartbeat_s)
            sessions: list[Session] = self.heartbeat.members()  # type: ignore[assignment]
            try:
                for start in range(0, len(sessions), _AUDIT_CHUNK):
                    chunk = sessions[start:start + _AUDIT_CHUNK]
                    for session, refusal in await live.refused_sessions(self.node, chunk):
                        session.revoke(refusal)
            except DependencyUnavailable as exc:  # logged once per outage by its gateway; the next round checks
                log_event(log, "ws.audit_failed", logging.DEBUG, error=str(exc))
            except Exception:  # a bug: logged; the sessions and the next round go on
                log.exception("ws.audit_crashed")


def _peer_address(stream: trio.SocketStream) -> str | None:
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return None
    return str(peer[0]) if isinstance(peer, tuple) else None
