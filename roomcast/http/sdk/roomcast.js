// roomcast.js: the connection to a roomcast server for any web page, as one ES module with no
// dependencies. Served by the server at /sdk/roomcast.js (TypeScript declarations: roomcast.d.ts).
//
//   import { RoomcastClient } from "/sdk/roomcast.js";
//   const client = new RoomcastClient({ token: () => myToken });
//   client.on("message", (event) => show(event.message));
//   client.start();
//   client.subscribe(12);
//   client.send(12, "hello");
//
// It keeps one /ws connection open (reconnecting with backoff and jitter), splits multi-event
// frames, resubscribes every room with `since` = the last seq seen after each reconnect (so
// nothing is missed and nothing is shown twice), and keeps an outbox: a message sent while the
// server is out of reach is stored (localStorage) with its client_id and sent when the
// connection returns, so it survives a page reload and is never stored twice (PROTOCOL §4).

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 5000;
// A server that accepted us but sent no welcome in this long is treated as gone.
const WELCOME_TIMEOUT_MS = 10000;
const AUTH_FAILURE = 1008;
// A send refused for a reason that passes (overload, outage, rate limit) is tried again after this.
const RETRY_SEND_MS = 2000;
const STORED = new Set(["message", "message_edited", "message_deleted", "room_updated"]);

/** A random id for idempotent sends (PROTOCOL §4 client_id). */
export function randomId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Where a user's outbox is stored (per tenant and user, so that people sharing a browser never mix). */
export function outboxKeyFor(user) {
  return `roomcast.outbox.${user.tenant}.${user.id}`;
}

/** Split one /ws frame into its events (one JSON object per line); unreadable lines are skipped. */
export function splitFrame(data) {
  const events = [];
  for (const line of String(data).split("\n")) {
    if (!line) continue;
    try {
      events.push(JSON.parse(line));
    } catch (err) { /* not JSON: nothing to deliver */ }
  }
  return events;
}

/** An error envelope from the server, or a network failure (status 0). */
export class RoomcastError extends Error {
  constructor(status, code, message, retryAfterS = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS;
  }

  /** Whether trying the same request later may succeed (network, overload, outage, rate limit). */
  get transient() {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

/**
 * A REST call (PROTOCOL §1): JSON in and out, the token (if any) as a bearer. Resolves to the
 * JSON answer (null for 204); rejects with RoomcastError (status 0 when the server cannot be reached).
 */
export async function request(method, url, body = undefined, token = null) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "omit", cache: "no-store",
    });
  } catch (err) {
    throw new RoomcastError(0, "network", "The server cannot be reached.");
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    const retryAfter = Number(response.headers.get("Retry-After")) || null;
    throw new RoomcastError(response.status, error.code || "http_error", error.message || `HTTP ${response.status}`, retryAfter);
  }
  return data;
}

/**
 * One logical connection to a roomcast server that survives network losses and server restarts.
 *
 * Events: every server event by its `type` ("message", "presence", …, and "*" for all of them),
 * plus "status" (`{status}`: "idle" | "connecting" | "open" | "reconnecting"), "outbox"
 * (`{items}`: the outbox changed), "sent" (`{item, message}`: an outbox entry was committed) and
 * "authfailed" (the token was refused: get a new one, then call start() again).
 */
export class RoomcastClient {
  constructor({ token, url = "", storage = globalThis.localStorage, outboxKey = null, presence = null } = {}) {
    this.tokenOf = typeof token === "function" ? token : () => token;
    this.base = String(url).replace(/\/$/, "");
    this.storage = storage || null;
    this.fixedOutboxKey = outboxKey;
    this.presence = presence;  // "diff": presence as `presence_diff` events (docs/protocol.md "Presence")
    this.outboxKey = outboxKey;
    this.outbox = [];
    this.handlers = new Map();
    this.ws = null;
    this.status = "idle";
    this.user = null;
    this.attempt = 0;
    this.stopped = true;
    this.retryTimer = null;
    this.welcomeTimer = null;
    this.livenessTimer = null;
    this.flushTimer = null;
    this.flushing = false;
    this.lastHeard = 0;
    this.heartbeatMs = 25000;
    this.refs = 0;
    this.rooms = new Map();  // room id → last seq seen
    this.subscribed = new Set();  // rooms subscribed on the current connection
    if (outboxKey) this.loadOutbox();
    if (typeof window !== "undefined") window.addEventListener("online", () => this.retryNow());
  }

  // ---------------------------------------------------------------- events

  /** Call `handler(event)` for events of `type`; returns a function that stops it. */
  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(handler);
    return () => this.handlers.get(type).delete(handler);
  }

  emit(type, event) {
    for (const handler of [...(this.handlers.get(type) || [])]) {
      try {
        handler(event);
      } catch (err) {
        // One broken handler must not stop the others or the connection.
        setTimeout(() => { throw err; });
      }
    }
  }

  // ---------------------------------------------------------------- lifecycle

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  /** Close the connection for good (sign-out); the outbox stays stored for the next start(). */
  stop() {
    this.stopped = true;
    this.clearTimers();
    clearTimeout(this.flushTimer);
    if (this.ws) {
      this.detach(this.ws);
      this.ws.close(1000, "closed by the client");
      this.ws = null;
    }
    this.subscribed.clear();
    this.setStatus("idle");
  }

  /** Forget the rooms and seqs of a signed-out user. */
  reset() {
    this.rooms.clear();
    this.subscribed.clear();
    this.user = null;
    this.outbox = [];
    this.outboxKey = this.fixedOutboxKey;
  }

  /** Send a frame if the connection is open; returns whether it went out. */
  sendFrame(frame) {
    if (!this.ws || this.status !== "open") return false;
    this.refs += 1;
    this.ws.send(JSON.stringify({ ref: `c${this.refs}`, ...frame }));
    return true;
  }

  /** Skip the rest of the backoff (the browser says the network is back). */
  retryNow() {
    if (!this.stopped && this.status === "reconnecting" && this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.connect();
    }
  }

  setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this.emit("status", { status });
  }

  connect() {
    this.retryTimer = null;
    const token = this.tokenOf();
    if (!token) {
      this.stopped = true;
      this.setStatus("idle");
      this.emit("authfailed", {});
      return;
    }
    const origin = this.base || `${location.protocol}//${location.host}`;
    const wsUrl = `${origin.replace(/^http/, "ws")}/ws?token=${encodeURIComponent(token)}`;
    const ws = new WebSocket(wsUrl);
    this.ws = ws;
    this.subscribed.clear();
    if (this.status !== "reconnecting") this.setStatus("connecting");
    ws.onmessage = (event) => this.receive(ws, event.data);
    ws.onclose = (event) => this.closed(ws, event.code);
    ws.onerror = () => {};  // onclose follows and decides
    this.welcomeTimer = setTimeout(() => this.abandon(ws), WELCOME_TIMEOUT_MS);
  }

  receive(ws, data) {
    if (ws !== this.ws) return;
    this.lastHeard = Date.now();
    for (const event of splitFrame(data)) {
      if (event.type === "welcome") this.welcomed(event);
      if (STORED.has(event.type) && !this.advance(event.room, event.seq)) continue;  // a replay overlap
      this.emit(event.type, event);
      this.emit("*", event);
    }
  }

  welcomed(event) {
    clearTimeout(this.welcomeTimer);
    this.attempt = 0;
    this.user = event.user;
    if (!this.fixedOutboxKey) this.useOutbox(outboxKeyFor(event.user));
    this.heartbeatMs = Math.max(1000, Math.min(25000, (event.heartbeat_s || 25) * 1000));
    clearInterval(this.livenessTimer);
    // The browser answers the server's pings but cannot tell us it stopped getting them;
    // our own pings show a half-open connection within a few heartbeats.
    this.livenessTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > 2.5 * this.heartbeatMs) this.abandon(this.ws);
      else this.sendFrame({ type: "ping" });
    }, this.heartbeatMs);
    this.setStatus("open");
    // Rooms a "status" handler subscribed just now already went out.
    for (const room of this.rooms.keys()) if (!this.subscribed.has(room)) this.sendSubscribe(room);
    this.flush();
  }

  /** Give up on a connection that went quiet: forget it and reconnect. */
  abandon(ws) {
    if (!ws || ws !== this.ws) return;
    this.detach(ws);
    try {
      ws.close(4000, "no answer");
    } catch (err) { /* already closing */ }
    this.closed(ws, 1006, true);
  }

  detach(ws) {
    ws.onmessage = null;
    ws.onclose = null;
    ws.onerror = null;
  }

  closed(ws, code, abandoned = false) {
    if (ws !== this.ws && !abandoned) return;
    this.ws = null;
    this.subscribed.clear();
    this.clearTimers();
    if (this.stopped) return;
    if (code === AUTH_FAILURE) {
      this.stopped = true;
      this.setStatus("idle");
      this.emit("authfailed", {});
      return;
    }
    // 1012 (restart), 1013 (too slow), 1006 (network) and the rest: come back and resume with since.
    this.setStatus("reconnecting");
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    this.attempt += 1;
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);  // jitter, so clients do not stampede
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  clearTimers() {
    clearTimeout(this.retryTimer);
    clearTimeout(this.welcomeTimer);
    clearInterval(this.livenessTimer);
    this.retryTimer = null;
  }

  // ---------------------------------------------------------------- rooms

  /**
   * Follow a room's events from `since` (default: the last seq seen, or 0 for all stored events).
   * Every reconnect resubscribes it from the last seq seen.
   */
  subscribe(roomId, since = undefined) {
    if (!this.rooms.has(roomId)) this.rooms.set(roomId, since ?? 0);
    else if (since !== undefined && since > this.rooms.get(roomId)) this.rooms.set(roomId, since);
    if (this.status === "open" && !this.subscribed.has(roomId)) this.sendSubscribe(roomId);
  }

  unsubscribe(roomId) {
    this.rooms.delete(roomId);
    if (this.subscribed.delete(roomId)) this.sendFrame({ type: "unsubscribe", room: roomId });
  }

  /** Stop following a room the server already dropped us from (`room_removed`): nothing to tell it. */
  forget(roomId) {
    this.rooms.delete(roomId);
    this.subscribed.delete(roomId);
  }

  /** The last stored-event seq seen in a room (0 if none). */
  lastSeq(roomId) {
    return this.rooms.get(roomId) ?? 0;
  }

  sendSubscribe(roomId) {
    const frame = { type: "subscribe", room: roomId, since: this.lastSeq(roomId) };
    if (this.presence) frame.presence = this.presence;
    if (this.sendFrame(frame)) this.subscribed.add(roomId);
  }

  /** Record a stored event's seq; false when it was already seen. Rooms not followed pass. */
  advance(roomId, seq) {
    if (typeof seq !== "number" || !this.rooms.has(roomId)) return true;
    if (seq <= this.rooms.get(roomId)) return false;
    this.rooms.set(roomId, seq);
    return true;
  }

  // ---------------------------------------------------------------- REST

  /** A REST call with the token (`request` below); a 401 also fires "authfailed". */
  async request(method, path, body = undefined) {
    try {
      return await request(method, this.base + path, body, this.tokenOf());
    } catch (err) {
      if (err.status === 401) this.emit("authfailed", {});
      throw err;
    }
  }

  // ---------------------------------------------------------------- outbox

  /**
   * Send a message through the outbox: it is stored at once (state "pending") and sent when the
   * connection is open, in order. Returns the outbox entry; "sent" fires when it is committed.
   */
  send(roomId, body, { replyTo = null, attachments = [], clientId = randomId() } = {}) {
    const item = {
      client_id: clientId, room: roomId, body, reply_to: replyTo, attachments,
      created_at: new Date().toISOString(), state: "pending", error: null,
    };
    this.outbox.push(item);
    this.saveOutbox();
    this.flush();
    return item;
  }

  /** What waits to be sent, or failed (state "failed", with `error`), oldest first. */
  pending(roomId = undefined) {
    return this.outbox.filter((item) => roomId === undefined || item.room === roomId);
  }

  /** Try a failed entry again (same client_id: if it was stored after all, it is not stored twice). */
  retry(clientId) {
    const item = this.outbox.find((i) => i.client_id === clientId);
    if (!item) return;
    item.state = "pending";
    item.error = null;
    this.saveOutbox();
    this.flush();
  }

  /** Drop an entry that is not being sent right now. */
  discard(clientId) {
    const before = this.outbox.length;
    this.outbox = this.outbox.filter((i) => i.client_id !== clientId || i.state === "sending");
    if (this.outbox.length !== before) this.saveOutbox();
  }

  /** Send what waits, one at a time and in order, while the connection is open. */
  async flush() {
    if (this.flushing || this.status !== "open") return;
    this.flushing = true;
    clearTimeout(this.flushTimer);
    try {
      for (;;) {
        const item = this.outbox.find((i) => i.state === "pending");
        if (!item || this.status !== "open") return;
        item.state = "sending";
        this.emit("outbox", { items: this.pending() });
        const payload = { body: item.body, client_id: item.client_id };
        if (item.reply_to) payload.reply_to = item.reply_to;
        if (item.attachments && item.attachments.length) payload.attachments = item.attachments;
        try {
          const message = await this.request("POST", `/api/rooms/${item.room}/messages`, payload);
          this.outbox = this.outbox.filter((i) => i !== item);
          this.saveOutbox();
          this.emit("sent", { item, message });
        } catch (err) {
          if (err.status === 401) {
            item.state = "pending";  // kept for when the user has a token again
            this.saveOutbox();
            return;
          }
          if (err.transient) {
            item.state = "pending";
            this.saveOutbox();
            // The socket's next welcome flushes too; this covers an outage the socket did not see.
            this.flushTimer = setTimeout(() => this.flush(), (err.retryAfterS || 0) * 1000 || RETRY_SEND_MS);
            return;
          }
          item.state = "failed";
          item.error = { status: err.status, code: err.code, message: err.message };
          this.saveOutbox();
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  useOutbox(key) {
    if (key === this.outboxKey) return;
    this.outboxKey = key;
    this.loadOutbox();
  }

  loadOutbox() {
    let items = [];
    try {
      items = JSON.parse((this.storage && this.storage.getItem(this.outboxKey)) || "[]");
    } catch (err) {
      items = [];
    }
    // An entry stored while being sent may or may not have been committed: its client_id makes resending safe.
    this.outbox = Array.isArray(items)
      ? items.filter((i) => i && i.client_id && i.room).map((i) => ({ ...i, state: i.state === "failed" ? "failed" : "pending" }))
      : [];
    this.emit("outbox", { items: this.pending() });
  }

  saveOutbox() {
    if (this.storage && this.outboxKey) {
      try {
        if (this.outbox.length) this.storage.setItem(this.outboxKey, JSON.stringify(this.outbox));
        else this.storage.removeItem(this.outboxKey);
      } catch (err) { /* storage full or disabled: the outbox still works for this page */ }
    }
    this.emit("outbox", { items: this.pending() });
  }
}
