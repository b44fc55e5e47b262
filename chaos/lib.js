'use strict';
// What the chaos runs share (chaos/run.js, chaos/redis-faults.js): the instances of
// dist/main.js, the producers on the three publish paths, the churning clients, and the
// final tally of what was sent against what clients handled or Redis still stores.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const WebSocket = require('ws');
const { httpOk, sleep } = require('../bench/lib/procs');

const ROOT = path.resolve(__dirname, '..');
const MAIN = path.join(ROOT, 'dist', 'main.js');
const KEY = 'chaos-publish-key-0123456789';

const pick = (list) => list[Math.floor(Math.random() * list.length)];
const started = Date.now();
const log = (line) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}\n`);
const secondsOf = (at) => ((at - started) / 1000).toFixed(1);

/** `--name value` from argv, or fallback when absent. */
function option(args, name, fallback) {
  const i = args.indexOf(name);
  return i === -1 ? fallback : args[i + 1];
}

function mainBuilt() {
  if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} not found: run npm run build first`);
}

const children = new Set();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130));

/** One dist/main.js on `port`, with the Redis settings in `redisEnv` (REDIS_URL, REDIS_SENTINELS, ...). */
class Instance {
  constructor(n, port, redisEnv) {
    Object.assign(this, { n, port, redisEnv, up: false, logs: '' });
  }

  async start() {
    const env = { ...process.env, PORT: String(this.port), INSTANCE_ID: `chaos-${this.n}`, ...this.redisEnv, PUBLISH_API_KEYS: KEY, LOG_LEVEL: process.env.CHAOS_LOG_LEVEL ?? 'warn' };
    this.child = spawn(process.execPath, [MAIN], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(this.child);
    const keep = (d) => (this.logs = (this.logs + d).slice(-400000));
    this.logs += `--- start at ${secondsOf(Date.now())} s\n`;
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

function post(port, body, idempotencyKey) {
  return new Promise((resolve) => {
    const data = JSON.stringify(body);
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path: '/v1/messages',
        method: 'POST',
        timeout: 8000,
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), authorization: `Bearer ${KEY}`, 'idempotency-key': idempotencyKey },
      },
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

/**
 * The load of a chaos run and what it saw. Payloads are unique ("<path>:<seq>"); `sent` maps
 * each to { user, at } per path. `unanswered`: sent but never confirmed (no 202 after retries,
 * an inbox entry not confirmed on a replica): allowed to be stored or not, but at most once.
 * `handled`: payload -> ids a client acked (at-least-once: the same id may come twice).
 */
class Traffic {
  constructor(users) {
    this.users = users;
    this.sent = { raw: new Map(), http: new Map(), inbox: new Map() };
    this.unanswered = new Set();
    this.handled = new Map();
    this.counts = { httpRetries: 0, http503: 0, httpErrors: 0, received: 0, acked: 0, dropped: 0, connects: 0, identifyFailed: 0 };
    this.running = true;
  }

  async rawProducer(pub) {
    for (let seq = 0; this.running; seq++) {
      const user = pick(this.users);
      const payload = `raw:${seq}`;
      const sent = { user, at: Date.now() };
      this.sent.raw.set(payload, sent);
      // When Redis took it, and how many subscribers it reached there (0: nobody heard it).
      pub.publish(`rm.users.${user}`, payload).then(
        (n) => Object.assign(sent, { acceptedAt: Date.now(), receivers: n }),
        () => this.sent.raw.delete(payload),
      ); // not sent: nothing to expect
      await sleep(10);
    }
  }

  async httpProducer(instances, worker) {
    for (let seq = 0; this.running; seq++) {
      const user = pick(this.users);
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
          if (status === 503) this.counts.http503++;
          else this.counts.httpErrors++;
          this.counts.httpRetries++;
          await sleep(100 * (attempt + 1));
        }
      }
      if (answered) this.sent.http.set(payload, { user, at: Date.now() });
      else this.unanswered.add(payload);
      await sleep(15);
    }
  }

  /** XADD to rm:inbox; with `confirm` (a function of the client), the entry counts as sent only once it confirms (a replica has it). */
  async inboxProducer(redis, confirm) {
    for (let seq = 0; this.running; seq++) {
      const user = pick(this.users);
      const payload = `inbox:${seq}`;
      try {
        if (confirm) {
          if (await confirm(redis, ['to', user, 'payload', payload])) this.sent.inbox.set(payload, { user, at: Date.now() });
          else this.unanswered.add(payload);
        } else {
          await redis.xadd('rm:inbox', '*', 'to', user, 'payload', payload);
          this.sent.inbox.set(payload, { user, at: Date.now() });
        }
      } catch {
        if (confirm) this.unanswered.add(payload); // may have been added
        // else not added: nothing to expect
      }
      await sleep(10);
    }
  }

  /** One client slot: connect to a random live instance as a random user, take messages for a while, then close (acked) or drop (unacked). */
  async clientSlot(instances) {
    const { counts, handled } = this;
    while (this.running) {
      const live = instances.filter((i) => i.up);
      if (live.length === 0) {
        await sleep(200);
        continue;
      }
      const instance = pick(live);
      const user = pick(this.users);
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

  /**
   * Per path: sent, delivered to clients, still stored, lost (no id), stored twice (two ids),
   * and the send times of the lost and the twice-stored; plus the unanswered stored twice.
   */
  tally(stored) {
    const ids = (payload) => new Set([...(this.handled.get(payload) ?? []), ...(stored.get(payload) ?? [])]);
    const report = {};
    for (const [pathName, messages] of Object.entries(this.sent)) {
      const r = { sent: messages.size, deliveredToClients: 0, stillStored: 0, lost: 0, storedTwice: 0, lostAt: [], twiceAt: [], lostSent: [] };
      for (const [payload, entry] of messages) {
        const { at } = entry;
        if (this.handled.has(payload)) r.deliveredToClients++;
        else if (stored.has(payload)) r.stillStored++;
        const n = ids(payload).size;
        if (n === 0) {
          r.lost++;
          r.lostAt.push(at);
          r.lostSent.push(entry);
        }
        if (n > 1) {
          r.storedTwice++;
          r.twiceAt.push(at);
        }
      }
      report[pathName] = r;
    }
    let unansweredTwice = 0;
    for (const payload of this.unanswered) if (ids(payload).size > 1) unansweredTwice++;
    return { report, unansweredTwice };
  }
}

/** The consumer group has read and acknowledged every inbox entry (XINFO GROUPS). */
async function inboxSettled(redis) {
  const groups = await redis.xinfo('GROUPS', 'rm:inbox').catch(() => []);
  for (const flat of groups) {
    const info = {};
    for (let i = 0; i + 1 < flat.length; i += 2) info[flat[i]] = flat[i + 1];
    if (info.name === 'redmessenger') return Number(info.pending) === 0 && Number(info.lag ?? 0) === 0;
  }
  return false;
}

/** Every stored message (queue and owed lists) of every user: payload -> ids. `tagged`: Cluster key names (`rm:users:{id}:...`). */
async function storedMessages(redis, users, tagged = false) {
  const stored = new Map();
  for (const user of users) {
    const base = tagged ? `rm:users:{${user}}` : `rm:users:${user}`;
    const entries = [...(await redis.lrange(`${base}:messages`, 0, -1)), ...(await redis.lrange(`${base}:owed`, 0, -1))];
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

module.exports = { ROOT, MAIN, KEY, pick, started, log, secondsOf, option, mainBuilt, children, Instance, post, Traffic, inboxSettled, storedMessages };
