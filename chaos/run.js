'use strict';
// Chaos run: `npm run chaos [-- --seconds N]` (default 300). Its own redis-server, three
// instances of dist/main.js, producers on all three publish paths (raw PUBLISH, POST
// /v1/messages, XADD rm:inbox) to a few hundred users, churning WebSocket clients that
// ack or drop, and every few seconds a random instance SIGKILLed and restarted. At the
// end it lets everything settle, reads every user's queue and owed list, and checks:
// every message answered 202 or added to the inbox was handled by a client or is still
// stored, exactly once (one id per message); raw PUBLISHes are lost only within 2 s of a
// SIGKILL (the take-over window). Exits 1 on any other loss or on a message stored twice.
// `--hostile` runs the hostile-clients mix of chaos/hostile.js instead.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const Redis = require('ioredis');
const WebSocket = require('ws');
const { freePort, httpOk, sleep } = require('../bench/lib/procs');

const ROOT = path.resolve(__dirname, '..');
const MAIN = path.join(ROOT, 'dist', 'main.js');
const KEY = 'chaos-publish-key-0123456789';
const USERS = Array.from({ length: 300 }, (_, i) => `chaos-u${i}`);
const INSTANCES = 3;
const CLIENT_SLOTS = 40;
/** A raw PUBLISH heard by an instance SIGKILLed, or sent before its shards moved, may be lost: this long after the kill (and a moment before it: heard, not yet routed). */
const WINDOW_AFTER_MS = 2000;
const WINDOW_BEFORE_MS = 250;

const args = process.argv.slice(2);
const seconds = Number(args[args.indexOf('--seconds') + 1] || 0) || (args.includes('--seconds') ? NaN : 300);
if (!Number.isFinite(seconds) || seconds <= 0) throw new Error('--seconds must be a positive number');
if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} not found: run npm run build first`);

const pick = (list) => list[Math.floor(Math.random() * list.length)];
const started = Date.now();
const log = (line) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}\n`);


const children = new Set();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130));

async function startRedis() {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rm-chaos-'));
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  children.add(child);
  const client = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 2, retryStrategy: () => 100 });
  client.on('error', () => undefined);
  for (let i = 0; ; i++) {
    try {
      await client.ping();
      break;
    } catch {
      if (i > 100) throw new Error('redis-server did not start');
      await sleep(100);
    }
  }
  return { port, url: `redis://127.0.0.1:${port}`, client, stop: () => { child.kill('SIGKILL'); fs.rmSync(dir, { recursive: true, force: true }); } };
}


class Instance {
  constructor(n, port, redisUrl) {
    Object.assign(this, { n, port, redisUrl, up: false, logs: '' });
  }

  async start() {
    const env = { ...process.env, PORT: String(this.port), INSTANCE_ID: `chaos-${this.n}`, REDIS_URL: this.redisUrl, PUBLISH_API_KEYS: KEY, LOG_LEVEL: process.env.CHAOS_LOG_LEVEL ?? 'warn' };
    this.child = spawn(process.execPath, [MAIN], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(this.child);
    const keep = (d) => (this.logs = (this.logs + d).slice(-400000));
    this.logs += `--- start at ${((Date.now() - started) / 1000).toFixed(2)} s\n`;
    this.child.stdout.on('data', keep);
    this.child.stderr.on('data', keep);
    this.exited = new Promise((resolve) => this.child.once('exit', resolve));
    const deadline = Date.now() + 20000;
    while (!(await httpOk(this.port))) {
      if (Date.now() > deadline) throw new Error(`instance ${this.n} not ready:\n${this.logs.slice(-3000)}`);
      await sleep(100);
    }
    this.up = true;
  }

  async kill() {
    this.up = false;
    this.child.kill('SIGKILL');
    await this.exited;
    children.delete(this.child);
  }

  async stop() {
    this.up = false;
    this.child.kill('SIGTERM');
    await Promise.race([this.exited, sleep(12000)]);
    this.child.kill('SIGKILL');
    children.delete(this.child);
  }
}

// What was sent, per path: payload -> { user, at }. Payloads are unique: "<path>:<seq>".
const sent = { raw: new Map(), http: new Map(), inbox: new Map() };
/** HTTP requests never answered 202 (after retries): allowed to be stored or not, but at most once. */
const unanswered = new Set();
/** Payload -> ids a client acked (at-least-once: the same id may come twice). */
const handled = new Map();
const counts = { httpRetries: 0, http503: 0, httpErrors: 0, received: 0, acked: 0, dropped: 0, connects: 0, identifyFailed: 0 };
const kills = [];
const restarts = [];
let running = true;

function post(port, body, idempotencyKey) {
  return new Promise((resolve) => {
    const data = JSON.stringify(body);
    const req = http.request(
      { host: '127.0.0.1', port, path: '/v1/messages', method: 'POST', timeout: 8000, agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), authorization: `Bearer ${KEY}`, 'idempotency-key': idempotencyKey } },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode, text }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (error) => resolve({ status: 0, text: error.message }));
    req.end(data);
  });
}

async function rawProducer(pub) {
  for (let seq = 0; running; seq++) {
    const user = pick(USERS);
    const payload = `raw:${seq}`;
    sent.raw.set(payload, { user, at: Date.now() });
    pub.publish(`rm.users.${user}`, payload).catch(() => sent.raw.delete(payload)); // not sent: nothing to expect
    await sleep(10);
  }
}

async function httpProducer(instances, worker) {
  for (let seq = 0; running; seq++) {
    const user = pick(USERS);
    const payload = `http:${worker}.${seq}`;
    const key = `k-${worker}-${seq}`;
    let answered = false;
    // A retry carries the same Idempotency-Key: stored once, whichever instance answers.
    for (let attempt = 0; attempt < 8 && !answered; attempt++) {
      const live = instances.filter((i) => i.up);
      if (live.length === 0) {
        await sleep(200);
        continue;
      }
      const { status } = await post(pick(live).port, { to: user, payload }, key);
      if (status === 202) answered = true;
      else {
        if (status === 503) counts.http503++;
        else counts.httpErrors++;
        counts.httpRetries++;
        await sleep(100 * (attempt + 1));
      }
    }
    if (answered) sent.http.set(payload, { user, at: Date.now() });
    else unanswered.add(payload);
    await sleep(15);
  }
}

async function inboxProducer(redis) {
  for (let seq = 0; running; seq++) {
    const user = pick(USERS);
    const payload = `inbox:${seq}`;
    try {
      await redis.xadd('rm:inbox', '*', 'to', user, 'payload', payload);
      sent.inbox.set(payload, { user, at: Date.now() });
    } catch {
      // not added: nothing to expect
    }
    await sleep(10);
  }
}

/** One client slot: connect to a random live instance as a random user, take messages for a while, then close (acked) or drop (unacked). */
async function clientSlot(instances) {
  while (running) {
    const live = instances.filter((i) => i.up);
    if (live.length === 0) {
      await sleep(200);
      continue;
    }
    const instance = pick(live);
    const user = pick(USERS);
    const acks = Math.random() < 0.7;
    const lifetime = 300 + Math.random() * 2500;
    counts.connects++;
    await new Promise((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${instance.port}/`);
      let pending = [];
      const flush = () => {
        if (pending.length === 0 || ws.readyState !== WebSocket.OPEN) return;
        const frames = pending;
        pending = [];
        ws.send(JSON.stringify({ event: 'ack', data: { ids: frames.map((f) => f.id) } }));
        for (const f of frames) {
          let ids = handled.get(f.payload);
          if (!ids) handled.set(f.payload, (ids = new Set()));
          ids.add(f.id);
          counts.acked++;
        }
      };
      const ackTimer = setInterval(() => acks && flush(), 50);
      const done = () => {
        clearInterval(ackTimer);
        clearTimeout(life);
        resolve();
      };
      const life = setTimeout(() => {
        if (acks) {
          flush();
          setTimeout(() => ws.close(1000), 50);
        } else {
          counts.dropped++;
          ws.terminate();
        }
      }, lifetime);
      ws.on('open', () => ws.send(JSON.stringify({ event: 'identify', data: { id: user } })));
      ws.on('message', (raw) => {
        let frame;
        try {
          frame = JSON.parse(raw.toString());
        } catch {
          return;
        }
        if (frame.event === 'message') {
          counts.received++;
          pending.push(frame.data);
        } else if (frame.event === 'error') counts.identifyFailed++;
      });
      ws.on('error', () => undefined);
      ws.on('close', done);
    });
  }
}

async function killer(instances) {
  while (running) {
    await sleep(4000 + Math.random() * 4000);
    if (!running) break;
    const victim = pick(instances.filter((i) => i.up));
    if (!victim) continue;
    const at = Date.now();
    await victim.kill();
    kills.push({ instance: victim.n, at });
    log(`SIGKILL instance ${victim.n}`);
    await sleep(1000);
    await victim.start().catch((error) => log(`restart of ${victim.n} failed: ${error.message}`));
    restarts.push({ instance: victim.n, at: Date.now() });
    log(`instance ${victim.n} restarted`);
  }
}

async function inboxSettled(redis) {
  const groups = await redis.xinfo('GROUPS', 'rm:inbox').catch(() => []);
  for (const flat of groups) {
    const info = {};
    for (let i = 0; i + 1 < flat.length; i += 2) info[flat[i]] = flat[i + 1];
    if (info.name === 'redmessenger') return Number(info.pending) === 0 && Number(info.lag ?? 0) === 0;
  }
  return false;
}

/** Every stored message (queue and owed lists) of every user: payload -> ids. */
async function storedMessages(redis) {
  const stored = new Map();
  for (const user of USERS) {
    const entries = [...(await redis.lrange(`rm:users:${user}:messages`, 0, -1)), ...(await redis.lrange(`rm:users:${user}:owed`, 0, -1))];
    for (const entry of entries) {
      let id;
      let payload = entry;
      try {
        const inner = JSON.parse(entry).rm;
        id = inner.id;
        payload = inner.payload;
      } catch {
        id = `raw:${entry}`;
      }
      let ids = stored.get(payload);
      if (!ids) stored.set(payload, (ids = new Set()));
      ids.add(id);
    }
  }
  return stored;
}

async function main() {
  log(`chaos for ${seconds} s: ${INSTANCES} instances, ${USERS.length} users, ${CLIENT_SLOTS} churning clients`);
  const redis = await startRedis();
  const instances = [];
  for (let n = 1; n <= INSTANCES; n++) instances.push(new Instance(n, await freePort(), redis.url));
  await Promise.all(instances.map((i) => i.start()));
  await sleep(2000); // shard leases spread over the three
  const pub = new Redis(redis.port, '127.0.0.1', { maxRetriesPerRequest: 2 });
  pub.on('error', () => undefined);
  const producer = new Redis(redis.port, '127.0.0.1', { maxRetriesPerRequest: 2 });
  producer.on('error', () => undefined);

  const tasks = [rawProducer(pub), inboxProducer(producer), killer(instances)];
  for (let w = 0; w < 4; w++) tasks.push(httpProducer(instances, w));
  const clients = Array.from({ length: CLIENT_SLOTS }, () => clientSlot(instances));
  const progress = setInterval(() => log(`sent raw ${sent.raw.size} http ${sent.http.size} inbox ${sent.inbox.size}; clients received ${counts.received}, acked ${counts.acked}; kills ${kills.length}`), 10000);

  await sleep(seconds * 1000);
  running = false;
  log('stopping producers and clients; letting everything settle');
  await Promise.all(tasks);
  await Promise.all(clients);
  clearInterval(progress);
  for (const instance of instances) if (!instance.up) await instance.start();
  const deadline = Date.now() + 60000;
  while (!(await inboxSettled(producer)) && Date.now() < deadline) await sleep(200);
  await sleep(3000); // the routers drain what they heard
  await Promise.all(instances.map((i) => i.stop())); // owed messages go back to the queues
  const stored = await storedMessages(producer);

  const report = {};
  let failed = false;
  const lostRaw = [];
  for (const [pathName, messages] of Object.entries(sent)) {
    let lost = 0;
    let twice = 0;
    let delivered = 0;
    let left = 0;
    for (const [payload, { at }] of messages) {
      const ids = new Set([...(handled.get(payload) ?? []), ...(stored.get(payload) ?? [])]);
      if (handled.has(payload)) delivered++;
      else if (stored.has(payload)) left++;
      if (ids.size === 0) {
        lost++;
        if (pathName === 'raw') lostRaw.push(at);
      }
      if (ids.size > 1) twice++;
    }
    report[pathName] = { sent: messages.size, deliveredToClients: delivered, stillStored: left, lost, storedTwice: twice };
    if (twice > 0 || (pathName !== 'raw' && lost > 0)) failed = true;
  }
  let unansweredTwice = 0;
  for (const payload of unanswered) if (new Set([...(handled.get(payload) ?? []), ...(stored.get(payload) ?? [])]).size > 1) unansweredTwice++;
  if (unansweredTwice > 0) failed = true;
  const inWindow = (at) => kills.some((k) => at >= k.at - WINDOW_BEFORE_MS && at <= k.at + WINDOW_AFTER_MS);
  const rawOutside = lostRaw.filter((at) => !inWindow(at)).length;
  if (rawOutside > 0) failed = true;
  const windows = kills.map((k) => {
    const lostHere = lostRaw.filter((at) => at >= k.at - WINDOW_BEFORE_MS && at <= k.at + WINDOW_AFTER_MS).length;
    return `${((k.at - started) / 1000).toFixed(1)} s instance ${k.instance}: ${lostHere} raw lost`;
  });

  console.log(JSON.stringify({ seconds, instances: INSTANCES, users: USERS.length, kills: kills.length, ...report, httpUnanswered: unanswered.size, httpUnansweredStoredTwice: unansweredTwice, ...counts }, null, 2));
  console.log(`take-over windows (${-WINDOW_BEFORE_MS} ms .. +${WINDOW_AFTER_MS} ms around each SIGKILL):\n  ${windows.join('\n  ') || '(none)'}`);
  console.log(`raw PUBLISH lost outside the windows: ${rawOutside}`);
  const nearest = (list, at) => list.reduce((best, e) => (Math.abs(at - e.at) < Math.abs(at - (best?.at ?? Infinity)) ? e : best), undefined);
  for (const at of lostRaw.filter((t) => !inWindow(t)).slice(0, 20)) {
    const k = nearest(kills, at);
    const r = nearest(restarts, at);
    console.log(`  lost at ${((at - started) / 1000).toFixed(2)} s: ${k ? `${at - k.at} ms from the SIGKILL of ${k.instance}` : 'no kill'}, ${r ? `${at - r.at} ms from the restart of ${r.instance}` : 'no restart'}`);
  }
  if (failed) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rm-chaos-logs-'));
    for (const instance of instances) fs.writeFileSync(path.join(dir, `instance-${instance.n}.log`), instance.logs);
    console.log(`instance logs (warnings and errors): ${dir}`);
  }
  console.log(failed ? 'CHAOS: FAIL' : 'CHAOS: PASS (nothing lost or stored twice on the HTTP and inbox paths; raw losses only inside take-over windows)');
  pub.disconnect();
  producer.disconnect();
  redis.client.disconnect();
  redis.stop();
  process.exit(failed ? 1 : 0);
}

// `--hostile`: the hostile-clients mix instead (chaos/hostile.js).
(args.includes('--hostile') ? require('./hostile').main : main)().catch((error) => {
  console.error(`chaos run failed: ${error.stack}`);
  process.exit(2);
});
