"""A FastAPI /ws peer for the fan-out benchmark: the FastAPI docs' ConnectionManager broadcast, under uvicorn.

The manager is the docs' pattern (https://fastapi.tiangolo.com/advanced/websockets/), kept per room:
`broadcast` awaits `send_text` on each subscriber in turn. It speaks the part of roomcast's /ws
protocol the load generator uses (welcome, subscribe, send -> ack + message); it stores nothing and
accepts any token. Run by bench/fanout.py (`--stack fastapi`) in bench/peers/.venv:

    python bench/peers/fastapi_server.py      # prints "listening on http://127.0.0.1:PORT"
"""

from __future__ import annotations

import json
import secrets
import socket

import shapes
import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect


class ConnectionManager:
    def __init__(self) -> None:
        self.rooms: dict[int, list[WebSocket]] = {}
        self.seqs: dict[int, shapes.Room] = {}

    def subscribe(self, room: int, websocket: WebSocket) -> None:
        subscribers = self.rooms.setdefault(room, [])
        if websocket not in subscribers:
            subscribers.append(websocket)

    def disconnect(self, websocket: WebSocket) -> None:
        for subscribers in self.rooms.values():
            if websocket in subscribers:
                subscribers.remove(websocket)

    async def send_personal_message(self, message: str, websocket: WebSocket) -> None:
        await websocket.send_text(message)

    async def broadcast(self, room: int, message: str) -> None:
        for connection in list(self.rooms.get(room, ())):
            await connection.send_text(message)


app = FastAPI()
manager = ConnectionManager()


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket, token: str = "") -> None:
    await websocket.accept()
    user = shapes.user_id(token)
    await manager.send_personal_message(shapes.welcome(user, secrets.token_hex(8)), websocket)
    try:
        while True:
            data = await websocket.receive_text()
            try:
                frame = json.loads(data)
                kind, ref, room = frame.get("type"), frame.get("ref"), frame.get("room")
            except (ValueError, AttributeError):
                await manager.send_personal_message(shapes.error(None, "bad_json", "not a JSON object"), websocket)
                continue
            if kind == "subscribe" and isinstance(room, int):
                manager.subscribe(room, websocket)
                last_seq = manager.seqs.setdefault(room, shapes.Room()).seq
                await manager.send_personal_message(shapes.reply("subscribed", ref, room=room, last_seq=last_seq),
                                                    websocket)
            elif kind == "send" and isinstance(room, int) and isinstance(frame.get("body"), str):
                message = manager.seqs.setdefault(room, shapes.Room()).message(room, user, frame["body"])
                await manager.broadcast(room, shapes.message_event(room, message))
                await manager.send_personal_message(shapes.reply("ack", ref, message=message), websocket)
            else:
                await manager.send_personal_message(shapes.error(ref, "unknown_type", "not supported here"),
                                                    websocket)
    except WebSocketDisconnect:
        pass
    finally:  # the docs forget only on WebSocketDisconnect; any end of the connection must
        manager.disconnect(websocket)


def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, ws_per_message_deflate=False,
                            backlog=4096)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
