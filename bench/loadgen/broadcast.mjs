// roomcast broadcast load generator: many connected users, one POST /api/broadcast, every receipt timed.
// Run by bench/broadcast.py with a JSON plan; prints one JSON result line on stdout.
//
// plan = {urls: [ws base per node], http: http base to POST to, admin_token, name, data_bytes,
//         role, rounds, timeout_s, grace_s, users: [{token, target: bool}]}
// User i connects to urls[i % urls.length]. Each round posts one broadcast to `role` and
// measures from just before the POST to the last target's receipt; then it waits `grace_s`
// for anything reaching a non-target (there must be nothing) or reaching a target twice.
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { LeanSocket } from "./lean_socket.mjs";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const log = (...args) => console.error("[broadcast]", ...args);

// A broadcast line is recognised from its first bytes and its name, without parsing the data.
const PREFIX = Buffer.from('{"type":"broadcast","name":"');
const NEWLINE = 0x0a;
const QUOTE = 0x22;

const closes = {};
let lastFrameAt = 0;
let round = null;  // {name, started, receipts: Map(index -> ms), extra, strays}

function onFrame(index, payload) {
  lastFrameAt = performance.now();
  for (let pos = 0; pos < payload.length;) {
    let end = payload.indexOf(NEWLINE, pos);
    if (end === -1) end = payload.length;
    if (end - pos > PREFIX.length && payload.compare(PREFIX, 0, PREFIX.length, pos, pos + PREFIX.length) === 0) {
      const at = performance.now();
      const nameEnd = payload.indexOf(QUOTE, pos + PREFIX.length);
      const name = payload.toString("utf8", pos + PREFIX.length, nameEnd);
      if (round === null || name !== round.name) round?.unexpected.push(name);
      else if (!plan.users[index].target) round.strays += 1;
      else if (round.receipts.has(index)) round.extra += 1;
      else {
        round.receipts.set(index, at - round.started);
        if (round.receipts.size === round.targets) round.done?.();
      }
    }
    pos = end + 1;
  }
}

async function connect(user, index) {
  const url = plan.urls[index % plan.urls.length];
  let welcomed;
  const welcome = new Promise((resolve) => { welcomed = resolve; });
  const socket = await LeanSocket.open(`${url}/ws?token=${user.token}`, (payload) => {
    if (welcomed !== null) { welcomed(); welcomed = null; }
    onFrame(index, payload);
  }, (code) => { closes[code] = (closes[code] ?? 0) + 1; });
  await welcome;
  return socket;
}

async function inBatches(items, size, fn) {
  const out = [];
  for (let i = 0; i < items.length; i += size) {
    out.push(...(await Promise.all(items.slice(i, i + size).map((item, k) => fn(item, i + k)))));
  }
  return out;
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const round2 = (x) => (x === null ? null : Math.round(x * 100) / 100);

async function main() {
  log(`connecting ${plan.users.length} users to ${plan.urls.length} node(s)`);
  const sockets = await inBatches(plan.users, 100, connect);
  for (const giveUp = performance.now() + 30_000; performance.now() < giveUp;) {
    if (performance.now() - lastFrameAt > 1000) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  log("all connected");
  // A warm-up the users do not get (no one has the role): the HTTP connection and the server's
  // request path are then warm, so the rounds time the broadcast, not the first request.
  const warmUp = await fetch(`${plan.http}/api/broadcast`, {
    method: "POST", body: JSON.stringify({ roles: ["parent"], name: "warm-up" }),
    headers: { Authorization: `Bearer ${plan.admin_token}`, "Content-Type": "application/json" },
  });
  if (warmUp.status !== 202) throw new Error(`warm-up broadcast answered ${warmUp.status}: ${await warmUp.text()}`);
  await new Promise((r) => setTimeout(r, 500));
  const targets = plan.users.filter((user) => user.target).length;
  const data = "x".repeat(plan.data_bytes);
  const rounds = [];
  for (let n = 0; n < plan.rounds; n++) {
    const name = `${plan.name}-${n}`;
    const body = JSON.stringify({ roles: [plan.role], name, data });
    const current = { name, targets, receipts: new Map(), extra: 0, strays: 0, unexpected: [], done: null };
    const allIn = new Promise((resolve) => { current.done = resolve; });
    current.started = performance.now();
    round = current;
    const response = await fetch(`${plan.http}/api/broadcast`, {
      method: "POST", body,
      headers: { Authorization: `Bearer ${plan.admin_token}`, "Content-Type": "application/json" },
    });
    const acceptedMs = performance.now() - current.started;
    if (response.status !== 202) throw new Error(`broadcast answered ${response.status}: ${await response.text()}`);
    await Promise.race([allIn, new Promise((r) => setTimeout(r, plan.timeout_s * 1000))]);
    const lastMs = current.receipts.size ? Math.max(...current.receipts.values()) : null;
    await new Promise((r) => setTimeout(r, plan.grace_s * 1000));  // anything for a non-target shows up here
    const times = [...current.receipts.values()].sort((a, b) => a - b);
    rounds.push({
      name, accepted_ms: round2(acceptedMs), first_ms: round2(times[0] ?? null), p50_ms: round2(percentile(times, 50)),
      p99_ms: round2(percentile(times, 99)), last_ms: round2(lastMs), received: current.receipts.size, targets,
      duplicates: current.extra, non_target_receipts: current.strays, unexpected: current.unexpected.length,
    });
  }
  round = null;
  process.stdout.write(JSON.stringify({ users: plan.users.length, nodes: plan.urls.length, rounds, closes }) + "\n");
  for (const socket of sockets) socket.terminate();
  process.exit(0);
}

main().catch((err) => { log(err.stack || String(err)); process.exit(1); });
