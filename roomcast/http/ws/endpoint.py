"""The node's /ws endpoint: handshake, authenticate, run a session; one heartbeat for them all."""

from __future__ import annotations

import logging

import trio

from ...errors import ApiError, DependencyUnavailable
from ...identity.authenticate import bearer_token, user_for_token
from ...logs import log_event
from ...node import Node
from ..front_door import Draining, UpgradeRequest
from .connection import ConnectionClosed, WebSocket
from .handlers import HANDLERS
from .heartbeat import Heartbeat
from .session import POLICY_VIOLATION, TRY_AGAIN_LATER, Session, unavailable_reason

log = logging.getLogger("roomcast.ws")


class WebSocketEndpoint:
    """Serves the connections the front door upgrades, and pings them all from one task."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.heartbeat = Heartbeat(node.settings.heartbeat_s)

    async def serve(self, stream: trio.SocketStream, request: UpgradeRequest, draining: Draining) -> None:
        """The front door's /ws handler: handshake, authenticate, run the session."""
        socket = WebSocket(stream, self.node.settings.ws_max_frame_bytes)
        try:
            await socket.accept(request)
        except ConnectionClosed:
            return
        token = (request.query.get("token") or [None])[0] or bearer_token(request.headers.get("authorization"))
        request.release()  # the session may last for hours; its request head is not needed
        try:
            user = await user_for_token(self.node.database, self.node.tokens, token)
        except DependencyUnavailable as exc:
            # PROTOCOL §5: a dependency down at connect time is 1013, try again later.
            await socket.close(TRY_AGAIN_LATER, unavailable_reason(exc))
            await socket.linger()
            return
        except ApiError as exc:
            # PROTOCOL §5: accept, then close with 1008.
            await socket.close(POLICY_VIOLATION, exc.code)
            await socket.linger()
            return
        session = Session(self.node, socket, user, HANDLERS)
        log_event(log, "ws.connected", session=session.id, user=user.id)
        self.heartbeat.add(session)
        try:
            code = await session.run(draining)
        finally:
            self.heartbeat.discard(session)
        await socket.linger()
        log_event(log, "ws.disconnected", session=session.id, user=user.id, code=code)

    async def heartbeats(self) -> None:
        """Ping each session every `heartbeat_s` (and drop those whose client went quiet)."""
        await self.heartbeat.run()
