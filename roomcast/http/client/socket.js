// The /ws connection (PROTOCOL §5): connect, split frames, keep it alive, reconnect with backoff.
// The URL is the one place the token may appear in a URL, as the protocol asks browsers to do.

import { getToken } from "./api.js";

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 5000;
// A server that accepted us but sent no welcome in this long is treated as gone.
const WELCOME_TIMEOUT_MS = 10000;
const AUTH_FAILURE = 1008;

/**
 * One logical connection that survives network losses and server restarts.
 *
 * Status goes "connecting" → "open" (after `welcome`) → "reconnecting" → "open" …; the owner
 * resubscribes on every `welcome` with the last seq it saw per room, so nothing is missed.
 */
export class ChatSocket {
  constructor({ onEvent, onStatus, onAuthFailed }) {
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.onAuthFailed = onAuthFailed;
    this.ws = null;
    this.status = "idle";
    this.attempt = 0;
    this.stopped = true;
    this.retryTimer = null;
    this.welcomeTimer = null;
    this.livenessTimer = null;
    this.lastHeard = 0;
    this.heartbeatMs = 25000;
    this.refs = 0;
    window.addEventListener("online", () => this.retryNow());
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    this.clearTimers();
    if (this.ws) {
      this.detach(this.ws);
      this.ws.close(1000, "signed out");
      this.ws = null;
    }
    this.setStatus("idle");
  }

  /** Send a frame if the connection is open; returns whether it went out. */
  send(frame) {
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
    this.onStatus(status);
  }

  connect() {
    this.retryTimer = null;
    const token = getToken();
    if (!token) {
      this.onAuthFailed();
      return;
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws?token=${encodeURIComponent(token)}`);
    this.ws = ws;
    if (this.status !== "reconnecting") this.setStatus("connecting");
    ws.onmessage = (event) => this.receive(ws, event.data);
    ws.onclose = (event) => this.closed(ws, event.code);
    ws.onerror = () => {};  // onclose follows and decides
    this.welcomeTimer = setTimeout(() => this.abandon(ws), WELCOME_TIMEOUT_MS);
  }

  receive(ws, data) {
    if (ws !== this.ws) return;
    this.lastHeard = Date.now();
    // One frame may hold several events separated by newlines.
    for (const line of String(data).split("\n")) {
      if (!line) continue;
      let event;
      try {
        event = JSON.parse(line);
      } catch (err) {
        continue;
      }
      if (event.type === "welcome") this.welcomed(event);
      this.onEvent(event);
    }
  }

  welcomed(event) {
    clearTimeout(this.welcomeTimer);
    this.attempt = 0;
    this.heartbeatMs = Math.max(1000, Math.min(25000, (event.heartbeat_s || 25) * 1000));
    clearInterval(this.livenessTimer);
    // The browser answers the server's pings but cannot tell us it stopped getting them;
    // our own pings show a half-open connection within a few heartbeats.
    this.livenessTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > 2.5 * this.heartbeatMs) this.abandon(this.ws);
      else this.send({ type: "ping" });
    }, this.heartbeatMs);
    this.setStatus("open");
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
    this.clearTimers();
    if (this.stopped) return;
    if (code === AUTH_FAILURE) {
      this.stopped = true;
      this.setStatus("idle");
      this.onAuthFailed();
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
}
