// roomcast fan-out load generator: many WebSocket subscribers, a few publishers, one process.
// Run by bench/fanout.py with a JSON plan; prints one JSON result line on stdout.
//
// plan = {url, duration_s, warmup_s, mode: "flat" | "rate" | "idle" | "storm" | "drop", rate_per_s, window,
//         presence: "legacy" | "diff", join_over_s, rooms: [{id, publisher: token, subscribers: [token, ...]}]}
// Several nodes (bench/scaling.py): a room may name `publisher_url` and `subscriber_urls` (one per
// subscriber), each a node's ws:// base, instead of `url`; `server_pids` lists every node's process.
//
// storm: every subscriber connects first; then they all subscribe within `join_over_s` while the
//   publishers start at `rate_per_s` at once (no warm-up, no waiting for quiet); latency, bytes
//   received and presence bytes are counted from the first subscribe on.
// drop: every subscriber connects and subscribes, then all drop their TCP connection at once with a
//   reset; bench/fanout.py then checks the server.
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import { LeanSocket } from "./lean_socket.mjs";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const log = (...args) => console.error("[loadgen]", ...args);

let deliveries = 0;
let frames = 0;  // subscriber frames while measuring: deliveries / frames is the coalescing
let measuring = false;
let countingBytes = false;
// Latency samples in fixed-size chunks: a million samples pushed onto one array would make V8
// copy it as it grows, pauses that would show up as server latency.
const CHUNK = 1 << 16;
class Samples {
  constructor() { this.chunks = [new Float64Array(CHUNK)]; this.count = 0; }
  record(ms) {
    const offset = this.count % CHUNK;
    if (offset === 0 && this.count > 0) this.chunks.push(new Float64Array(CHUNK));
    this.chunks[this.chunks.length - 1][offset] = ms;
    this.count += 1;
  }
  sorted() {
    const all = new Float64Array(this.count);
    this.chunks.forEach((chunk, index) => all.set(chunk.subarray(0, Math.min(CHUNK, this.count - index * CHUNK)), index * CHUNK));
    return all.sort();
  }
}
const latencySamples = new Samples();
// storm: the samples of messages sent while subscribers were still joining, and of those sent after.
const joiningSamples = new Samples();
const afterSamples = new Samples();
let joinedAt = null;  // performance.now() once every subscriber is subscribed (storm)
const worstBySent = new Map();  // storm: each message's latest delivery (ms), by its send time
function recordLatency(ms, sent) {
  latencySamples.record(ms);
  if (plan.mode === "storm") {
    (joinedAt === null || sent < joinedAt ? joiningSamples : afterSamples).record(ms);
    if (!(worstBySent.get(sent) >= ms)) worstBySent.set(sent, ms);
  }
}
const sortedLatencies = () => latencySamples.sorted();
const closes = {};
const LATENCY_SAMPLE_EVERY = plan.latency_sample_every ?? 1;
let sampleCounter = 0;
let lastSubscriberFrameAt = 0;
let receivedBytes = 0;  // every subscriber byte while measuring (payloads, without WebSocket framing)
let presenceBytes = 0;  // of which presence events (`presence` and `presence_diff` lines)
let presenceEvents = 0;

// Publishers use the `ws` package; subscribers, a thousand of them in this one process, use
// LeanSocket, and a `message` line is counted (and its body, the send time, read for latency)
// straight from the frame's bytes, without decoding or parsing it: the load generator must not
// be the bottleneck. Every other line (welcome, subscribed) is parsed.
const MESSAGE_PREFIX = Buffer.from('{"type":"message",');
const PRESENCE_PREFIX = Buffer.from('{"type":"presence');
const BODY_KEY = Buffer.from('"body":"');
const NEWLINE = 0x0a;
const QUOTE = 0x22;

function connect(token, onEvent, url = plan.url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}/ws?token=${token}`, { perMessageDeflate: false });
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

function startsWith(payload, pos, end, prefix) {
  return end - pos > prefix.length && payload.compare(prefix, 0, prefix.length, pos, pos + prefix.length) === 0;
}

function countBytes(payload) {
  receivedBytes += payload.length;
  for (let pos = 0; pos < payload.length;) {
    let end = payload.indexOf(NEWLINE, pos);
    if (end === -1) end = payload.length;
    if (startsWith(payload, pos, end, PRESENCE_PREFIX)) { presenceBytes += end - pos; presenceEvents += 1; }
    pos = end + 1;
  }
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
        recordLatency(performance.now() - sent, sent);
      }
    }
    pos = end + 1;
  }
}

/** A subscriber connection: welcome, then (unless idle) subscribed to `room`, then counting.
 * With `gate` (a promise), it connects, then waits for the gate before it subscribes. */
async function subscriber(token, room, gate = null, url = plan.url) {
  let live = false;
  const inbox = [];  // parsed events before going live (the welcome may come with the handshake)
  let wake = null;
  const lean = await LeanSocket.open(`${url}/ws?token=${token}`, (payload) => {
    lastSubscriberFrameAt = performance.now();
    if (countingBytes) countBytes(payload);
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
  if (gate !== null) await gate();
  if (room !== null) {
    const frame = { type: "subscribe", room, ref: `s${room}` };
    if (plan.presence === "diff") frame.presence = "diff";
    lean.sendText(JSON.stringify(frame));
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

/** The servers' user + system CPU time so far, in ms, summed over every node (Linux /proc; NaN elsewhere). */
function serverCpuMs() {
  try {
    let total = 0;
    for (const pid of plan.server_pids ?? [plan.server_pid]) {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
      total += (Number(fields[11]) + Number(fields[12])) * 10;  // utime, stime in clock ticks (100/s)
    }
    return total;
  } catch { return NaN; }
}

function summary(sorted) {
  return { p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99),
           max: sorted.length ? sorted[sorted.length - 1] : null, samples: sorted.length };
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** The server's /proc/<pid>/io counters (wchar: bytes it wrote through write calls, sockets included). */
function serverIo() {
  try {
    return Object.fromEntries(readFileSync(`/proc/${plan.server_pid}/io`, "utf8").trim().split("\n")
      .map((line) => { const [key, value] = line.split(": "); return [key, Number(value)]; }));
  } catch { return null; }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

// Every send carries a client_id, as the web client's and the SDK's do (PROTOCOL §5: the server
// looks each one up before it stores the message); the body is the send time, for the latency.
const clientIdPrefix = `lg${Math.random().toString(36).slice(2, 8)}-`;
let clientIds = 0;
const sendFrame = (room) => JSON.stringify(
  { type: "send", room, body: String(performance.now()), client_id: clientIdPrefix + (clientIds += 1) });

/** Connect every subscriber (100 at a time), each stopping at a gate before it subscribes.
 * Returns release(): they then subscribe, spread evenly over `join_over_s`, and a promise of them all. */
async function connectHeld(subscriptions) {
  let open;
  const opened = new Promise((r) => { open = r; });
  let releasedAt = 0;
  const spreadMs = (plan.join_over_s * 1000) / subscriptions.length;
  const all = [];
  for (let i = 0; i < subscriptions.length; i += 100) {
    await Promise.all(subscriptions.slice(i, i + 100).map(({ room, token, url }, k) => {
      let arrived;
      const atGate = new Promise((r) => { arrived = r; });
      const done = subscriber(token, room, async () => {
        arrived();
        await opened;
        await sleep((i + k) * spreadMs - (performance.now() - releasedAt));
      }, url);
      all.push(done);
      return Promise.race([atGate, done]);  // `done` rejects if the connection fails
    }));
  }
  return { release: () => { releasedAt = performance.now(); open(); }, subscribed: Promise.all(all) };
}

async function connectPublishers(counts) {
  return Promise.all(plan.rooms.map(async (room) => {
    const publisher = { room: room.id, inflight: 0 };
    publisher.ws = await connect(room.publisher, (event) => {
      if (event.type === "ack") { counts.acked += 1; publisher.inflight -= 1; }
      else if (event.type === "error") { counts.errors += 1; publisher.inflight -= 1; }
    }, room.publisher_url ?? plan.url);
    return publisher;
  }));
}

/** storm: the joins and the first messages at once; what it costs and how late messages are. */
async function storm(subscriptions) {
  log(`connecting ${subscriptions.length} subscribers (not yet subscribed)`);
  const held = await connectHeld(subscriptions);
  const counts = { sent: 0, acked: 0, errors: 0 };
  const publishers = await connectPublishers(counts);
  log("storm");
  // The storm starts now: bench/fanout.py starts its profiler on this line (it reads on for the result).
  process.stdout.write(JSON.stringify({ phase: "storm" }) + "\n");
  const ioBefore = serverIo();
  const serverBefore = serverCpuMs();
  measuring = countingBytes = true;
  const started = performance.now();
  let joinedAfter = null;
  let joinCpuMs = null;  // the server's CPU time from the first subscribe to the last `subscribed`
  held.subscribed.then(() => {
    joinedAt = performance.now();
    joinedAfter = (joinedAt - started) / 1000;
    joinCpuMs = serverCpuMs() - serverBefore;
  });
  held.release();
  const interval = 1000 / (plan.rate_per_s / publishers.length);
  for (const p of publishers) {
    p.timer = setInterval(() => {
      p.inflight += 1; counts.sent += 1;
      p.ws.send(sendFrame(p.room));
    }, interval);
  }
  await sleep(plan.duration_s * 1000);
  for (const p of publishers) clearInterval(p.timer);
  await sleep(1000);  // the last messages' deliveries
  measuring = countingBytes = false;
  const elapsed = (performance.now() - started) / 1000;
  const ioAfter = serverIo();
  const latencies = sortedLatencies();
  const result = {
    mode: plan.mode, presence: plan.presence, rooms: plan.rooms.length, subscribers: subscriptions.length,
    seconds: elapsed, join_over_s: plan.join_over_s, all_subscribed_after_s: joinedAfter, ...counts, deliveries, closes,
    received_bytes: receivedBytes, presence_bytes: presenceBytes, presence_events: presenceEvents,
    server_wchar_bytes: ioBefore && ioAfter ? ioAfter.wchar - ioBefore.wchar : null,
    server_cpu_share: (serverCpuMs() - serverBefore) / (elapsed * 1000),
    server_cpu_s: (serverCpuMs() - serverBefore) / 1000,
    server_cpu_s_until_subscribed: joinCpuMs === null ? null : joinCpuMs / 1000,
    latency_ms: summary(latencies),
    // Messages sent before the last subscriber was subscribed, and after.
    latency_ms_joining: summary(joiningSamples.sorted()),
    latency_ms_after: summary(afterSamples.sorted()),
    // The messages whose last delivery came latest: [seconds after the storm began, ms].
    slowest_messages: [...worstBySent].sort((a, b) => b[1] - a[1]).slice(0, 5)
      .map(([sent, ms]) => [Number(((sent - started) / 1000).toFixed(2)), Number(ms.toFixed(1))]),
  };
  process.stdout.write(JSON.stringify(result) + "\n");
  for (const p of publishers) p.ws.terminate();
  for (const lean of await held.subscribed) lean.terminate();
  process.exit(0);
}

/** drop: everyone subscribed, then every connection reset at once; the caller checks the server. */
async function drop(subscriptions) {
  log(`connecting ${subscriptions.length} subscribers`);
  const sockets = await inBatches(subscriptions, 100, ({ room, token, url }) => subscriber(token, room, null, url));
  await sleep(1000);
  process.stdout.write(JSON.stringify({ ready: true, connections: sockets.length }) + "\n");
  await new Promise((resolve) => process.stdin.once("data", resolve).resume());
  for (const lean of sockets) lean.reset();
  process.stdout.write(JSON.stringify({ mode: plan.mode, presence: plan.presence, dropped: sockets.length, closes }) + "\n");
  await sleep(200);  // the resets leave before we exit
  process.exit(0);
}

async function main() {
  const subscriptions = plan.rooms.flatMap((room) => room.subscribers.map((token, k) => (
    { room: room.id, token, url: room.subscriber_urls?.[k] ?? plan.url })));
  if (plan.mode === "storm") return storm(subscriptions);
  if (plan.mode === "drop") return drop(subscriptions);
  log(`connecting ${subscriptions.length} subscribers`);
  const sockets = await inBatches(subscriptions, 100,
    ({ room, token, url }) => subscriber(token, room, null, url));
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

  let sent = 0, acked = 0, errors = 0, ackedMeasured = 0;
  const publishers = await Promise.all(plan.rooms.map(async (room) => {
    const publisher = { room: room.id, inflight: 0 };
    publisher.ws = await connect(room.publisher, (event) => {
      if (event.type === "ack") { acked += 1; ackedMeasured += measuring; publisher.inflight -= 1; publisher.pump?.(); }
      else if (event.type === "error") { errors += 1; publisher.inflight -= 1; publisher.pump?.(); }
    }, room.publisher_url ?? plan.url);
    return publisher;
  }));
  const send = (p) => {
    p.inflight += 1; sent += 1;
    p.ws.send(sendFrame(p.room));
  };

  let running = true;
  if (plan.mode === "flat") {
    for (const p of publishers) {
      p.pump = () => { while (running && p.inflight < plan.window) send(p); };
      p.pump();
    }
  } else {
    const perPublisherInterval = 1000 / (plan.rate_per_s / publishers.length);
    // Each publisher starts at its own moment within the interval: many publishers' sends spread
    // out over it as people's do, rather than arriving together as one burst per interval.
    for (const p of publishers) {
      const start = publishers.length > 1 ? Math.random() * perPublisherInterval : 0;
      p.starting = setTimeout(() => { p.timer = setInterval(() => running && send(p), perPublisherInterval); }, start);
    }
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
  for (const p of publishers) { clearTimeout(p.starting); clearInterval(p.timer); }

  const latencies = sortedLatencies();
  const result = {
    mode: plan.mode, rooms: plan.rooms.length, subscribers: subscriptions.length,
    seconds: elapsed, deliveries, deliveries_per_s: deliveries / elapsed, frames,
    events_per_frame: frames ? deliveries / frames : null,
    sent, acked, errors, closes, acked_measured: ackedMeasured, acked_per_s: ackedMeasured / elapsed,
    loadgen_cpu_share: (cpu.user + cpu.system) / 1000 / (elapsed * 1000),
    server_cpu_share: serverCpu / (elapsed * 1000),
    // What the server spends per committed message, fan-out included: steadier than rates on a busy machine.
    server_cpu_ms_per_message: ackedMeasured ? serverCpu / ackedMeasured : null,
    latency_ms: { p1: percentile(latencies, 1), p10: percentile(latencies, 10), p50: percentile(latencies, 50), p90: percentile(latencies, 90), p99: percentile(latencies, 99), max: latencies.length ? latencies[latencies.length - 1] : null,
                  samples: latencies.length },
  };
  process.stdout.write(JSON.stringify(result) + "\n");
  for (const ws of [...sockets, ...publishers.map((p) => p.ws)]) ws.terminate();
  process.exit(0);
}

main().catch((err) => { log(err.stack || String(err)); process.exit(1); });
