// A Node `ws` /ws peer for roomcast's fan-out benchmark: rooms as Sets, broadcast with ws.send in a loop.
//
// What a Node application written straight on the `ws` package does. It speaks the part of
// roomcast's /ws protocol the load generator uses (welcome, subscribe, send -> ack + message), with
// events shaped as roomcast's (bench/peers/shapes.py is the Python peers' copy); it stores nothing
// and accepts any token. Run by bench/fanout.py (`--stack node-ws`), which installs `ws` here first:
//
//   node bench/peers/node_ws.mjs      # prints "listening on http://127.0.0.1:PORT"
import { randomBytes } from "node:crypto";
import http from "node:http";
import { WebSocketServer } from "ws";

const HEARTBEAT_S = 30;
const rooms = new Map();  // room id -> Set of sockets
const seqs = new Map();  // room id -> last seq

const now = () => new Date().toISOString();
const user = (id) => ({ id, username: `u${id}`, display_name: `User ${id}` });

function userId(token) {
  // The token's `sub`, read without checking the signature: peers accept any token.
  try { return Number(JSON.parse(Buffer.from(token.split(".")[1], "base64url")).sub) || 0; } catch { return 0; }
}

function reply(type, ref, fields) {
  return JSON.stringify(ref === undefined || ref === null ? { type, ...fields } : { type, ...fields, ref });
}

const server = http.createServer((request, response) => {
  response.writeHead(request.url === "/readyz" ? 200 : 404, { "Content-Type": "application/json" });
  response.end(JSON.stringify({ status: request.url === "/readyz" ? "ready" : "not_found" }));
});
const wss = new WebSocketServer({ server, path: "/ws", perMessageDeflate: false });

wss.on("connection", (ws, request) => {
  const me = userId(new URL(request.url, "http://peer").searchParams.get("token") ?? "");
  const joined = new Set();
  ws.send(JSON.stringify({ type: "welcome", user: { ...user(me), role: "member", tenant: "default", online: true },
                           session_id: randomBytes(8).toString("hex"), server_time: now(), heartbeat_s: HEARTBEAT_S }));
  ws.on("message", (data) => {
    let frame;
    try { frame = JSON.parse(data.toString()); } catch { frame = null; }
    if (frame === null || typeof frame !== "object") {
      ws.send(reply("error", null, { code: "bad_json", message: "not a JSON object" }));
      return;
    }
    const { type, ref, room } = frame;
    if (type === "subscribe" && Number.isInteger(room)) {
      if (!rooms.has(room)) rooms.set(room, new Set());
      rooms.get(room).add(ws);
      joined.add(room);
      ws.send(reply("subscribed", ref, { room, last_seq: seqs.get(room) ?? 0 }));
    } else if (type === "send" && Number.isInteger(room) && typeof frame.body === "string") {
      const seq = (seqs.get(room) ?? 0) + 1;
      seqs.set(room, seq);
      const message = { id: seq, room_id: room, seq, sender: user(me), body: frame.body, reply_to: null,
                        attachments: [], client_id: null, created_at: now(), edited_at: null };
      const event = JSON.stringify({ type: "message", room, seq, message });
      for (const subscriber of rooms.get(room) ?? []) subscriber.send(event);
      ws.send(reply("ack", ref, { message }));
    } else {
      ws.send(reply("error", ref, { code: "unknown_type", message: "not supported here" }));
    }
  });
  ws.on("close", () => { for (const room of joined) rooms.get(room)?.delete(ws); });
  ws.on("error", () => {});
});

server.listen(0, "127.0.0.1", 4096, () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
