// roomcast fan-out load generator: many WebSocket subscribers, a few publishers, one process.
// Run by bench/fanout.py with a JSON plan; prints one JSON result line on stdout.
//
// plan = {url, duration_s, warmup_s, mode: "flat" | "rate" | "idle", rate_per_s, window,
//         rooms: [{id, publisher: token, subscribers: [token, ...]}]}
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import { LeanSocket } from "./lean_socket.mjs";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const log = (...args) => console.error("[loadgen]", ...args);

let deliveries = 0;
let frames = 0;  // subscriber frames while measuring: deliveries / frames is the coalescing
let measuring = false;
// Latency samples in fixed-size chunks: a million samples pushed onto one array would make V8
// copy it as it grows, pauses that would show up as server latency.
const CHUNK = 1 << 16;
const latencyChunks = [new Float64Array(CHUNK)];
let latencyCount = 0;
function recordLatency(ms) {
  const offset = latencyCount % CHUNK;
  if (offset === 0 && latencyCount > 0) latencyChunks.push(new Float64Array(CHUNK));
  latencyChunks[latencyChunks.length - 1][offset] = ms;
  latencyCount += 1;
}
function sortedLatencies() {
  const all = new Float64Array(latencyCount);
  latencyChunks.forEach((chunk, index) => all.set(chunk.subarray(0, Math.min(CHUNK, latencyCount - index * CHUNK)), index * CHUNK));
  return all.sort();
}
const closes = {};
const LATENCY_SAMPLE_EVERY = plan.latency_sample_every ?? 1;
let sampleCounter = 0;
let lastSubscriberFrameAt = 0;

// Publishers use the `ws` package; subscribers, a thousand of them in this one process, use
// LeanSocket, and a `message` line is counted (and its body, the send time, read for latency)
// straight from the frame's bytes, without decoding or parsing it: the load generator must not
// be the bottleneck. Every other line (welcome, subscribed) is parsed.
const MESSAGE_PREFIX = Buffer.from('{"type":"message",');
const BODY_KEY = Buffer.from('"body":"');
const NEWLINE = 0x0a;
const QUOTE = 0x22;

function connect(token, onEvent) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${plan.url}/ws?token=${token}`, { perMessageDeflate: false });
    let welcomed = false;
    ws.on("message", (data) => {
      for (const line of data.toString().split("\n")) {
        const event = JSON.parse(line);
        if (!welcomed && event.type === "welcome") {
          welcomed = true;
          resolve(ws);
        }
        onEvent(event, ws);
      }
    });
    ws.on("close", (code) => {
      closes[code] = (closes[code] ?? 0) + 1;
      if (!welcomed) reject(new Error(`closed ${code} before welcome`));
    });
    ws.on("error", (err) => { if (!welcomed) reject(err); });
  });
}

function countMessages(payload) {
  frames += 1;
  for (let pos = 0; pos < payload.length;) {
    let end = payload.indexOf(NEWLINE, pos);
    if (end === -1) end = payload.length;
    if (end - pos > MESSAGE_PREFIX.length
        && payload.compare(MESSAGE_PREFIX, 0, MESSAGE_PREFIX.length, pos, pos + MESSAGE_PREFIX.length) === 0) {
      deliveries += 1;
      if (++sampleCounter % LATENCY_SAMPLE_EVERY === 0) {
        const start = payload.indexOf(BODY_KEY, pos) + BODY_KEY.length;
        const sent = Number(payload.toString("latin1", start, payload.indexOf(QUOTE, start)));
        recordLatency(performance.now() - sent);
      }
    }
    pos = end + 1;
  }
}

/** A subscriber connection: welcome, then (unless idle) subscribed to `room`, then counting. */
async function subscriber(token, room) {
  let live = false;
  const inbox = [];  // parsed events before going live (the welcome may come with the handshake)
  let wake = null;
  const lean = await LeanSocket.open(`${plan.url}/ws?token=${token}`, (payload) => {
    lastSubscriberFrameAt = performance.now();
    if (live) {
      if (measuring) countMessages(payload);
      return;
    }
    for (const line of payload.toString().split("\n")) inbox.push(JSON.parse(line));
    if (wake !== null) { const w = wake; wake = null; w(); }
  }, (code) => { closes[code] = (closes[code] ?? 0) + 1; });
  const next = async (type) => {
    for (;;) {
      const index = inbox.findIndex((event) => event.type === type);
      if (index >= 0) return inbox.splice(index, 1)[0];
      await new Promise((resolve) => { wake = resolve; });
    }
  };
  await next("welcome");
  if (room !== null) {
    lean.sendText(JSON.stringify({ type: "subscribe", room, ref: `s${room}` }));
    await next("subscribed");
    live = true;
  }
  return lean;
}

async function inBatches(items, size, fn) {
  const out = [];
  for (let i = 0; i < items.length; i += size) {
    out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  }
  return out;
}

/** The server's user + system CPU time so far, in ms (Linux /proc; NaN elsewhere). */
function serverCpuMs() {
  try {
    const fields = readFileSync(`/proc/${plan.server_pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;  // utime, stime in clock ticks (100/s)
  } catch { return NaN; }
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function main() {
  const subscriptions = plan.rooms.flatMap((room) => room.subscribers.map((token) => ({ room: room.id, token })));
  log(`connecting ${subscriptions.length} subscribers`);
  const sockets = await inBatches(subscriptions, 100,
    ({ room, token }) => subscriber(token, plan.mode === "idle" ? null : room));
  log("all connected");
  // A thousand joins send a thousand presence events to up to a thousand subscribers each:
  // let that settle (no subscriber frame for a second, at most a minute) before publishing.
  for (const giveUp = performance.now() + 60_000; performance.now() < giveUp;) {
    if (performance.now() - lastSubscriberFrameAt > 1000) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  log("quiet");

  if (plan.mode === "idle") {
    process.stdout.write(JSON.stringify({ ready: true, connections: sockets.length }) + "\n");
    await new Promise((resolve) => process.stdin.on("close", resolve).resume());
    process.exit(0);
  }

  let sent = 0, acked = 0, errors = 0;
  const publishers = await Promise.all(plan.rooms.map(async (room) => {
    const publisher = { room: room.id, inflight: 0 };
    publisher.ws = await connect(room.publisher, (event) => {
      if (event.type === "ack") { acked += 1; publisher.inflight -= 1; publisher.pump?.(); }
      else if (event.type === "error") { errors += 1; publisher.inflight -= 1; publisher.pump?.(); }
    });
    return publisher;
  }));
  const send = (p) => {
    p.inflight += 1; sent += 1;
    p.ws.send(JSON.stringify({ type: "send", room: p.room, body: String(performance.now()) }));
  };

  let running = true;
  if (plan.mode === "flat") {
    for (const p of publishers) {
      p.pump = () => { while (running && p.inflight < plan.window) send(p); };
      p.pump();
    }
  } else {
    const perPublisherInterval = 1000 / (plan.rate_per_s / publishers.length);
    for (const p of publishers) p.timer = setInterval(() => running && send(p), perPublisherInterval);
  }

  await new Promise((r) => setTimeout(r, plan.warmup_s * 1000));
  measuring = true;
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  const serverBefore = serverCpuMs();
  await new Promise((r) => setTimeout(r, plan.duration_s * 1000));
  measuring = false;
  const elapsed = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const serverCpu = serverCpuMs() - serverBefore;
  running = false;
  for (const p of publishers) clearInterval(p.timer);

  const latencies = sortedLatencies();
  const result = {
    mode: plan.mode, rooms: plan.rooms.length, subscribers: subscriptions.length,
    seconds: elapsed, deliveries, deliveries_per_s: deliveries / elapsed, frames,
    events_per_frame: frames ? deliveries / frames : null,
    sent, acked, errors, closes,
    loadgen_cpu_share: (cpu.user + cpu.system) / 1000 / (elapsed * 1000),
    server_cpu_share: serverCpu / (elapsed * 1000),
    latency_ms: { p1: percentile(latencies, 1), p10: percentile(latencies, 10), p50: percentile(latencies, 50), p90: percentile(latencies, 90), p99: percentile(latencies, 99), max: latencies.length ? latencies[latencies.length - 1] : null,
                  samples: latencies.length },
  };
  process.stdout.write(JSON.stringify(result) + "\n");
  for (const ws of [...sockets, ...publishers.map((p) => p.ws)]) ws.terminate();
  process.exit(0);
}

main().catch((err) => { log(err.stack || String(err)); process.exit(1); });
