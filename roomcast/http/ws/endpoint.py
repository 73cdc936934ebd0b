"""The front door's /ws handler: handshake, authenticate, run a session."""

from __future__ import annotations

import logging

import trio

from ...errors import ApiError
from ...identity.authenticate import bearer_token, user_for_token
from ...logs import log_event
from ...node import Node
from ..front_door import Draining, UpgradeRequest
from .connection import ConnectionClosed, WebSocket
from .handlers import HANDLERS
from .session import POLICY_VIOLATION, Session

log = logging.getLogger("roomcast.ws")


async def serve_websocket(node: Node, stream: trio.SocketStream, request: UpgradeRequest,
                          draining: Draining) -> None:
    """The front door's /ws handler: handshake, authenticate, run the session."""
    socket = WebSocket(stream, node.settings.ws_max_frame_bytes)
    try:
        await socket.accept(request)
    except ConnectionClosed:
        return
    token = (request.query.get("token") or [None])[0] or bearer_token(request.headers.get("authorization"))
    try:
        user = await user_for_token(node.database, node.tokens, token)
    except ApiError as exc:
        # PROTOCOL §5: accept, then close with 1008.
        await socket.close(POLICY_VIOLATION, exc.code)
        await socket.linger()
        return
    session = Session(node, socket, user, HANDLERS)
    log_event(log, "ws.connected", session=session.id, user=user.id)
    code = await session.run(draining)
    await socket.linger()
    log_event(log, "ws.disconnected", session=session.id, user=user.id, code=code)

