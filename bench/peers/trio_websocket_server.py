"""A raw trio-websocket /ws peer for the fan-out benchmark: a task per connection, broadcast in a loop.

What a Trio application written straight on trio-websocket does: each connection's handler reads
messages; a `send` awaits `send_message` on each subscriber of the room in turn. It speaks the part of
roomcast's /ws protocol the load generator uses (welcome, subscribe, send -> ack + message); it
stores nothing and accepts any token. Run by bench/fanout.py (`--stack trio-websocket`):

    python bench/peers/trio_websocket_server.py      # prints "listening on http://127.0.0.1:PORT"
"""

from __future__ import annotations

import json
import secrets
from urllib.parse import parse_qs, urlsplit

import shapes
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

rooms: dict[int, set[WebSocketConnection]] = {}
seqs: dict[int, shapes.Room] = {}


async def broadcast(room: int, message: str) -> None:
    for subscriber in list(rooms.get(room, ())):
        try:
            await subscriber.send_message(message)
        except ConnectionClosed:
            pass  # its own handler forgets it


async def handle(request: WebSocketRequest) -> None:
    if urlsplit(request.path).path != "/ws":
        await request.reject(404)
        return
    token = (parse_qs(urlsplit(request.path).query).get("token") or [""])[0]
    ws = await request.accept()
    user = shapes.user_id(token)
    joined: set[int] = set()
    try:
        await ws.send_message(shapes.welcome(user, secrets.token_hex(8)))
        while True:
            data = await ws.get_message()
            try:
                frame = json.loads(data)
                kind, ref, room = frame.get("type"), frame.get("ref"), frame.get("room")
            except (ValueError, AttributeError):
                await ws.send_message(shapes.error(None, "bad_json", "not a JSON object"))
                continue
            if kind == "subscribe" and isinstance(room, int):
                rooms.setdefault(room, set()).add(ws)
                joined.add(room)
                last_seq = seqs.setdefault(room, shapes.Room()).seq
                await ws.send_message(shapes.reply("subscribed", ref, room=room, last_seq=last_seq))
            elif kind == "send" and isinstance(room, int) and isinstance(frame.get("body"), str):
                message = seqs.setdefault(room, shapes.Room()).message(room, user, frame["body"])
                await broadcast(room, shapes.message_event(room, message))
                await ws.send_message(shapes.reply("ack", ref, message=message))
            else:
                await ws.send_message(shapes.error(ref, "unknown_type", "not supported here"))
    except ConnectionClosed:
        pass
    finally:
        for room in joined:
            rooms[room].discard(ws)


async def main() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handle, "127.0.0.1", 0, None)
        print(f"listening on http://127.0.0.1:{server.port}", flush=True)


if __name__ == "__main__":
    trio.run(main)
