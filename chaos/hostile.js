'use strict';
// Hostile mix: `npm run chaos -- --hostile [--seconds N] [--clients N] [--rate N] [--slots N]`
// (default 120 s, 1,000 clients, 500 messages a second, 4 hostile sockets of each kind).
// Its own redis-server and ONE instance of dist/main.js. Well-behaved clients (ws, identify,
// acks in batches as the SDK sends them, reconnect if closed) get numbered PUBLISHes while,
// among them, hostile clients attack in rounds (each socket opened, then watched until the
// server closes it, then the next):
//   flooders      raw socket, identify, then 1 KB frames (unknown events or acks of ids never
//                 sent) as fast as the socket takes them, never reading;
//   non-readers   raw socket, identify, never read while 8 KB messages are published to them;
//   half-open     a ws client behind an in-process TCP proxy that goes silent (no FIN, no RST);
//   spammers      connect, identify, close, again; every other round sends garbage instead.
// Every client speaks for its own address (X-Forwarded-For from the trusted loopback), so the
// per-address limits stay on: a spammer is bounded by IDENTIFY_RATE_PER_MINUTE for its address.
// Checks: every well-behaved client got every message in order (duplicates only across a
// reconnect, reported), none was closed by the server; the server's RSS (sampled every second)
// stayed under the bound printed; every hostile socket was released within its bound (seen by
// the client or in the kernel's socket table; the server's log lines say when it stalled; totals
// against redmessenger_sockets_closed_total); what was
// published to non-readers and half-open users is back in their queues, in order. Exits 1 on
// any loss or bound broken. Loopback only.
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { monitorEventLoopDelay } = require('node:perf_hooks');
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const Redis = require('ioredis');
const WebSocket = require('ws');
const { cpuMs, httpGet, rssKb, sleep, startRedis, startServer } = require('../bench/lib/procs');

const MIB = 2 ** 20;
const SETTINGS = {
  PING_INTERVAL_MS: 2000,
  PING_TIMEOUT_MS: 2000,
  SLOW_CONSUMER_BYTES: MIB,
  SLOW_CONSUMER_TIMEOUT_MS: 5000,
  MAX_FRAMES_PER_SECOND: 2000,
  MAX_FRAME_BYTES: MIB,
  // Per client address (each client here has its own, see forwardedFor): what bounds a spammer.
  CONNECTION_RATE_PER_MINUTE: 60,
  IDENTIFY_RATE_PER_MINUTE: 30,
};
/** The server's own slack (src/delivery/connection.ts): a peer that does not answer a close is cut after CLOSE_GRACE_MS; a stall is looked at every DRAIN_CHECK_MS. */
const CLOSE_GRACE_MS = 2000;
const DRAIN_CHECK_MS = 200;
/** The heartbeat ticks every min(interval, timeout) / 4 (src/messenger/heartbeat.ts). */
const HEARTBEAT_TICK_MS = Math.min(SETTINGS.PING_INTERVAL_MS, SETTINGS.PING_TIMEOUT_MS) / 4;
/** Timers and event loops run late on a loaded 2-core machine: added to every time bound. */
const LOAD_SLACK_MS = 3000;
/** A slow consumer, from its last stall to released: SLOW_CONSUMER_TIMEOUT_MS, a drain check, the close grace (reported beside the log's figures). */
const STALLED_MS = SETTINGS.SLOW_CONSUMER_TIMEOUT_MS + DRAIN_CHECK_MS + CLOSE_GRACE_MS;
const BOUNDS = {
  /** Half-open: from the proxy going silent to the server's close. */
  'half-open': SETTINGS.PING_INTERVAL_MS + SETTINGS.PING_TIMEOUT_MS + HEARTBEAT_TICK_MS + LOAD_SLACK_MS,
  /**
   * Non-reader, from its identify. Held (its unsent bytes past SLOW_CONSUMER_BYTES) it is closed
   * after SLOW_CONSUMER_TIMEOUT_MS and the close grace; if the kernel takes enough of it to drain
   * it to half, it is released and, answering no ping, cut after the heartbeat's interval +
   * timeout. Each drain starts both clocks again, until the kernel's buffers (a few MB) are full:
   * a few cycles, 30 s allowed. (The server's log says when it stalled, at most one line a second:
   * reported, not judged.)
   */
  'non-reader': 30000,
  /**
   * Flooder, from its first frame: its frames keep it heard (never cut); past MAX_FRAMES_PER_SECOND
   * it is closed at once (then CLOSE_GRACE_MS, as it answers no close); a junk flooder's unread
   * error frames may stall it first (then the stalled bound). 10 s allowed to get there.
   */
  flooder: 10000 + SETTINGS.SLOW_CONSUMER_TIMEOUT_MS + DRAIN_CHECK_MS + CLOSE_GRACE_MS + LOAD_SLACK_MS,
  /** A spammer's garbage frame or refused identify: answered and closed (the client reads). */
  refused: 1000 + LOAD_SLACK_MS,
};
/**
 * RSS bound over the baseline: each hostile socket may hold about SLOW_CONSUMER_BYTES plus a
 * few MAX_FRAME_BYTES (the contract: three here), flooders and non-readers together; plus
 * 96 MiB for the garbage collector's headroom (the young generation alone may take 3 x 32 MiB
 * with `--max-semi-space-size=32`; a 40 s run of 1,000 clients without hostiles, `--slots 0`,
 * drifted +48 MiB over its baseline).
 */
const rssBoundOver = (slots) => 2 * slots * (SETTINGS.SLOW_CONSUMER_BYTES + 3 * SETTINGS.MAX_FRAME_BYTES) + 96 * MIB;

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} needs a number`);
  return value;
};
const seconds = arg('--seconds', 120);
const clientCount = arg('--clients', 1000);
const rate = arg('--rate', 500);
const slots = arg('--slots', 4);
const verbose = workerData?.verbose ?? process.argv.includes('--verbose');
const KINDS = ['flooder', 'non-reader', 'half-open', 'spammer'];
/** `--kinds flooder,spammer`: only these hostile kinds (to look at one at a time). */
const kinds = process.argv.includes('--kinds') ? process.argv[process.argv.indexOf('--kinds') + 1].split(',') : KINDS;
if (kinds.some((k) => !KINDS.includes(k))) throw new Error(`--kinds takes a list of ${KINDS.join(', ')}`);

const started = workerData?.started ?? Date.now();
const log = (line) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}\n`);
const jitter = (ms) => ms * (0.5 + Math.random());
/** A distinct client address per virtual client, sent as X-Forwarded-For (the server trusts 127.0.0.1). */
const forwardedFor = (group, n) => `10.${group}.${(n >> 8) & 255}.${n & 255}`;
let running = true;

// --- raw WebSocket (the same as test/support/raw-ws.ts, which plain JS cannot import) ------

/** One masked text frame. */
function textFrame(text) {
  const payload = Buffer.from(text, 'utf8');
  const mask = crypto.randomBytes(4);
  const header = payload.length < 126 ? Buffer.from([0x81, 0x80 | payload.length]) : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 255]);
  for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
  return Buffer.concat([header, mask, payload]);
}

/** A socket past the upgrade that reads nothing more; `gone` resolves with the time it closed. */
async function openRaw(port, address) {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  const gone = new Promise((resolve) => socket.once('close', () => resolve(Date.now())));
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(
    `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Forwarded-For: ${address}\r\n` +
      `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  let head = '';
  await new Promise((resolve, reject) => {
    const onData = (chunk) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      socket.pause();
      if (head.startsWith('HTTP/1.1 101')) resolve();
      else reject(new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
    };
    socket.on('data', onData);
    socket.once('close', () => reject(new Error('closed during the upgrade')));
  });
  return { socket, gone, localPort: socket.localPort };
}

/** Writes `frame` as fast as the socket takes it until the socket is gone; the frames written. */
async function flood(raw, frame) {
  let sent = 0;
  let closed = false;
  void raw.gone.then(() => (closed = true));
  while (!closed) {
    sent++;
    if (raw.socket.write(frame)) {
      if (sent % 256 === 0) await new Promise((resolve) => setImmediate(resolve));
      continue;
    }
    await new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        raw.socket.off('drain', done);
        resolve();
      };
      const timer = setTimeout(done, 100);
      raw.socket.once('drain', done);
    });
  }
  return sent;
}

// --- when the server let go of a socket ---------------------------------------------------------
// A socket that never reads may never see the server's close: the FIN waits behind unsent data
// in a full window. So the run also asks the kernel: once the server has closed its end, the
// connection is gone from /proc/net/tcp* or left without an inode (orphaned).

const released = new Map(); // client port -> resolve(time the server no longer held it)
let releasePoller;
function serverReleased(serverPort, clientPort) {
  releasePoller ??= setInterval(() => {
    const held = new Set();
    for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
      let text;
      try {
        text = fs.readFileSync(file, 'utf8');
      } catch {
        continue;
      }
      for (const line of text.split('\n').slice(1)) {
        const f = line.trim().split(/\s+/);
        if (f.length > 9 && parseInt(f[1].slice(-4), 16) === serverPort && f[9] !== '0') held.add(parseInt(f[2].slice(-4), 16));
      }
    }
    const now = Date.now();
    for (const [port, resolve] of released) {
      if (held.has(port)) continue;
      released.delete(port);
      resolve(now);
    }
  }, 100);
  return new Promise((resolve) => released.set(clientPort, resolve));
}

// --- the server's log: when it saw each socket stall and closed it (by address:port) -----------

/** Per socket: its stalls ({ first, last, count }): a socket drained to half is read and sent to again, and may stall again. */
const stalls = new Map();
const slowCloses = new Map();
/** Server log lines, and those that name one refused socket or identify each (a flood of them fills a disk). */
const logLines = { total: 0, refusingSocket: 0, refusingIdentify: 0 };
function watchLog(stream) {
  let rest = '';
  stream.on('data', (chunk) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop();
    const at = Date.now();
    for (const line of lines) {
      logLines.total++;
      if (line.includes('Refusing a socket')) logLines.refusingSocket++;
      if (line.includes('Refusing an identify')) logLines.refusingIdentify++;
      let m = /socket (\S+) is not reading/.exec(line);
      if (m) {
        const stall = stalls.get(m[1]) ?? { first: at, count: 0 };
        stalls.set(m[1], Object.assign(stall, { last: at, count: stall.count + 1 }));
      }
      m = /closing socket (\S+), still not reading/.exec(line);
      if (m) slowCloses.set(m[1], at);
    }
  });
}

// --- well-behaved clients ----------------------------------------------------------------------

const latencies = [];
/** The slowest receipt in each second of the run: where the slow ones were. */
const worstBySecond = [];
class Good {
  constructor(server, n) {
    Object.assign(this, { server, n, user: `hm-u${n}`, address: forwardedFor(1, n) });
    this.published = 0; // seq of the next PUBLISH
    this.publishedAt = []; // seq -> when (ms)
    this.next = 0; // seq expected next
    this.firstGen = []; // seq -> connection generation it first arrived on
    this.gen = 0;
    this.duplicates = 0;
    this.duplicatesSameSocket = 0;
    this.outOfOrder = 0;
    this.closedByServer = [];
    this.errors = [];
    this.acks = [];
  }

  connect() {
    return new Promise((resolve) => {
      const gen = ++this.gen;
      const ws = new WebSocket(`ws://127.0.0.1:${this.server.port}/`, { perMessageDeflate: false, headers: { 'x-forwarded-for': this.address } });
      this.ws = ws;
      ws.on('open', () => ws.send(JSON.stringify({ event: 'identify', data: { id: this.user } })));
      ws.on('message', (raw) => {
        const frame = JSON.parse(raw);
        if (frame.event === 'ready') resolve();
        else if (frame.event === 'message') this.message(gen, frame.data);
        else if (frame.event === 'error') this.errors.push({ at: Date.now(), code: frame.data.code });
      });
      ws.on('error', () => undefined);
      ws.on('close', (code) => {
        clearTimeout(this.ackTimer);
        this.ackTimer = undefined;
        this.acks = [];
        if (this.stopping) return;
        this.closedByServer.push({ at: Date.now(), code });
        resolve();
        setTimeout(() => this.connect(), jitter(500));
      });
    });
  }

  message(gen, { id, payload }) {
    const now = performance.now();
    const [seqText, sentAt] = payload.split('|');
    const seq = Number(seqText);
    if (seq === this.next) {
      this.next++;
      this.firstGen[seq] = gen;
      const latency = now - Number(sentAt);
      latencies.push(latency);
      const second = Math.floor((Date.now() - started) / 1000);
      worstBySecond[second] = Math.max(worstBySecond[second] ?? 0, latency);
    } else if (seq < this.next && this.firstGen[seq] !== undefined) {
      // At-least-once: a message sent again after a reconnect; on the same socket it is a fault.
      this.duplicates++;
      if (this.firstGen[seq] === gen) this.duplicatesSameSocket++;
    } else {
      this.outOfOrder++;
      this.firstGen[seq] = gen;
      this.next = Math.max(this.next, seq + 1);
    }
    // As the SDK: one ack frame for up to 100 ids, or 10 ms after the first of them.
    this.acks.push(id);
    if (this.acks.length >= 100) this.flush();
    else this.ackTimer ??= setTimeout(() => this.flush(), 10);
  }

  flush() {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    if (this.acks.length && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ event: 'ack', data: { ids: this.acks } }));
    this.acks = [];
  }

  /** Distinct seqs received. */
  get received() {
    return this.firstGen.reduce((n, g) => n + (g === undefined ? 0 : 1), 0);
  }
}

// --- hostile clients ------------------------------------------------------------------------

/** Every hostile socket: kind, slot, when it began, when the server's stall was seen and when it was gone. */
const rounds = [];

/** Still open this long after it began: it survived (and is destroyed). */
const survivalMs = (kind) => 2 * BOUNDS[kind] + 10000;

/** Waits for a hostile socket to be gone, or to survive. */
async function watchClose(round, gone, destroy) {
  const closedAt = await Promise.race([gone, sleep(Math.max(0, round.start + survivalMs(round.kind) - Date.now())).then(() => undefined)]);
  if (closedAt === undefined) {
    round.survived = true;
    destroy();
  } else round.closedAt = closedAt;
  if (verbose)
    log(
      `${round.kind}${round.variant ? ` (${round.variant})` : ''} ${round.slot} ${round.key ?? ''}: ${round.survived ? 'SURVIVED' : `gone after ${round.closedAt - round.start} ms`}${stalls.has(round.key) ? `, ${round.closedAt - stalls.get(round.key).last} ms after its last stall (${stalls.get(round.key).count})` : ''}`,
    );
}

async function flooderSlot(server, slot) {
  for (let n = 0; running; n++) {
    const address = forwardedFor(2, slot);
    const raw = await openRaw(server.port, address);
    const key = `${address}:${raw.localPort}`;
    // Half of them send unknown events (each answered by an error frame it never reads), half acks of ids never sent.
    const kind = n % 2 === 0 ? 'junk' : 'bogus-ack';
    const round = { kind: 'flooder', variant: kind, slot, key, start: Date.now() };
    rounds.push(round);
    raw.socket.write(textFrame(JSON.stringify({ event: 'identify', data: { id: `hm-flood${slot}` } })));
    const frame =
      kind === 'junk'
        ? textFrame(JSON.stringify({ event: 'junk', data: { pad: 'x'.repeat(1000) } }))
        : textFrame(JSON.stringify({ event: 'ack', data: { ids: Array.from({ length: 40 }, (_, i) => `never-sent-${slot}-${i}-xxxxx`) } }));
    const flooding = flood(raw, frame);
    await watchClose(round, Promise.race([raw.gone, serverReleased(server.port, raw.localPort)]), () => undefined);
    raw.socket.destroy();
    round.frames = await flooding;
    parentPort?.postMessage(round);
    await sleep(jitter(1000));
  }
}

/**
 * Non-readers' users, and what is published to each (8 KB payloads, 1.3 MB/s) while its socket
 * is open, up to NON_READER_MESSAGES each (then a new socket of that user stalls on its backlog).
 */
const NON_READER_MESSAGES = 1500;
const nonReaders = [];
async function nonReaderSlot(server, slot) {
  const user = { user: `hm-nr${slot}`, published: 0, open: false };
  nonReaders.push(user);
  for (; running;) {
    const address = forwardedFor(3, slot);
    const raw = await openRaw(server.port, address);
    const key = `${address}:${raw.localPort}`;
    const round = { kind: 'non-reader', slot, key, start: Date.now() };
    rounds.push(round);
    raw.socket.write(textFrame(JSON.stringify({ event: 'identify', data: { id: user.user } })));
    user.key = key;
    user.open = true;
    await watchClose(round, Promise.race([raw.gone, serverReleased(server.port, raw.localPort)]), () => undefined);
    raw.socket.destroy();
    user.open = false;
    await sleep(jitter(1000));
  }
}

async function nonReaderProducer(pub) {
  const pad = 'x'.repeat(8192);
  while (running) {
    for (const u of nonReaders) {
      if (!u.open || u.published >= NON_READER_MESSAGES) continue;
      for (let i = 0; i < 8 && u.published < NON_READER_MESSAGES; i++) await pub.publish(`rm.users.${u.user}`, `${u.published++}|${pad}`);
    }
    await sleep(50);
  }
}

/**
 * Half-open clients: a ws client behind a proxy of this process. Each pair of sockets relays
 * until `silence()`: then what arrives is dropped and nothing is closed, as on a cut network.
 */
function startProxy(targetPort) {
  const pairs = new Map();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair = { client, upstream, silent: false };
    pair.gone = new Promise((resolve) => upstream.once('close', () => resolve(Date.now())));
    for (const s of [client, upstream]) s.on('error', () => undefined);
    client.on('data', (d) => pair.silent || upstream.write(d));
    upstream.on('data', (d) => pair.silent || client.write(d));
    client.on('close', () => pair.silent || upstream.destroy());
    upstream.on('close', () => {
      pairs.delete(client.remotePort);
      if (!pair.silent) client.destroy();
    });
    pairs.set(client.remotePort, pair);
  });
  const proxy = {
    /** The pair whose client side is the socket from `localPort`. */
    pairOf: (localPort) => pairs.get(localPort),
    listen: () => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((proxy.port = server.address().port)))),
    close: () => {
      for (const p of pairs.values()) {
        p.client.destroy();
        p.upstream.destroy();
      }
      server.close();
    },
  };
  return proxy;
}

const halfOpen = [];
async function halfOpenSlot(server, proxy, pub, slot) {
  const user = { user: `hm-ho${slot}`, published: 0 };
  halfOpen.push(user);
  while (running) {
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/`, { headers: { 'x-forwarded-for': forwardedFor(4, slot) } });
    ws.on('error', () => undefined);
    const got = [];
    ws.on('message', (raw) => got.push(JSON.parse(raw)));
    let localPort;
    ws.once('upgrade', (res) => (localPort = res.socket.localPort));
    const opened = await Promise.race([new Promise((resolve) => ws.once('open', () => resolve(true))), new Promise((resolve) => ws.once('close', () => resolve(false)))]);
    const pair = opened && proxy.pairOf(localPort);
    if (!pair) {
      ws.terminate();
      await sleep(500);
      continue;
    }
    ws.send(JSON.stringify({ event: 'identify', data: { id: user.user } }));
    // One message owed (delivered, never acked) when the network goes: it must go back to the queue.
    const seq = user.published++;
    for (let t = 0; !got.some((f) => f.event === 'ready') && t < 500; t++) await sleep(20);
    await pub.publish(`rm.users.${user.user}`, `${seq}|half-open`);
    for (let t = 0; !got.some((f) => f.event === 'message' && f.data.payload.startsWith(`${seq}|`)) && t < 250; t++) await sleep(20);
    await sleep(Math.random() * SETTINGS.PING_INTERVAL_MS); // anywhere in the ping cycle
    pair.silent = true;
    const round = { kind: 'half-open', slot, start: Date.now() };
    rounds.push(round);
    await watchClose(round, pair.gone, () => pair.upstream.destroy());
    pair.client.destroy();
    ws.terminate();
    await sleep(jitter(1000));
  }
}

/** Spammers: identify and close in a loop; every other round garbage instead of identify. Counts per outcome. */
const spam = { identified: 0, refused: 0, garbageClosed: 0, slowestRefusalMs: 0, perSlot: [], refusals: {} };
async function spammerSlot(server, slot) {
  const address = forwardedFor(5, slot);
  spam.perSlot[slot] ??= 0;
  for (let n = 0; running; n++) {
    const garbage = n % 2 === 1;
    await new Promise((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${server.port}/`, { headers: { 'x-forwarded-for': address } });
      let sentAt = 0;
      ws.on('open', () => {
        sentAt = Date.now();
        ws.send(garbage ? '{"event":"identify","data":' + 'x'.repeat(200) : JSON.stringify({ event: 'identify', data: { id: `hm-spam${slot}` } }));
      });
      ws.on('message', (raw) => {
        const frame = JSON.parse(raw);
        if (frame.event === 'ready') {
          spam.identified++;
          spam.perSlot[slot]++;
          ws.close(1000);
        } else if (frame.event === 'error') spam.refusals[frame.data.code] = (spam.refusals[frame.data.code] ?? 0) + 1;
      });
      ws.on('error', () => undefined);
      ws.on('close', (code) => {
        if (code !== 1000 && code !== 1005) {
          if (garbage) spam.garbageClosed++;
          else spam.refused++;
          if (sentAt) spam.slowestRefusalMs = Math.max(spam.slowestRefusalMs, Date.now() - sentAt);
        }
        resolve();
      });
    });
    await sleep(25); // at most 40 attempts a second per loop: a spammer, not a CPU burner on a shared machine
  }
}

// --- the run ------------------------------------------------------------------------------

const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN);
const metricValue = (text, name) => {
  const m = new RegExp(`^${name.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
};

async function main() {
  log(`hostile mix for ${seconds} s: ${clientCount} well-behaved clients, ${rate} PUBLISH/s to them, ${slots} hostile sockets of each kind (${kinds.join(', ')})`);
  const redis = await startRedis();
  const env = Object.fromEntries(Object.entries(SETTINGS).map(([k, v]) => [k, String(v)]));
  const server = await startServer('redmessenger', redis.url, { env: { ...env, TRUSTED_PROXIES: '127.0.0.1', INSTANCE_ID: 'hostile-mix', LOG_LEVEL: process.env.CHAOS_LOG_LEVEL ?? 'log' } });
  const serverLog = [];
  let logChars = 0;
  const keepLog = (d) => (logChars += d.length) < 64e6 && serverLog.push(`${((Date.now() - started) / 1000).toFixed(1)} ${d}`);
  server.child.stdout.on('data', keepLog);
  server.child.stderr.on('data', keepLog);
  watchLog(server.child.stdout);
  watchLog(server.child.stderr);
  const pub = new Redis(redis.url);
  const harnessLag = monitorEventLoopDelay({ resolution: 20 });
  harnessLag.enable();

  const good = Array.from({ length: clientCount }, (_, n) => new Good(server, n));
  for (let i = 0; i < good.length; i += 50) await Promise.all(good.slice(i, i + 50).map((c) => c.connect()));
  log(`${good.length} clients identified`);

  // Where a late receipt was held: PUBLISH answered late (the way to Redis), or a subscriber of this process on
  // one user's channel hears it late too (Redis's fan-out, or this process), or only the WebSocket is late (the server).
  const publishReplies = [];
  const tap = new Redis(redis.url);
  const tapped = [];
  await tap.subscribe(`rm.users.${good[0].user}`);
  tap.on('message', (_channel, payload) => tapped.push(performance.now() - Number(payload.split('|')[1])));

  // Steady PUBLISHes, round robin over the well-behaved users: "<seq>|<performance.now()>|".
  let producing = true;
  let rr = 0;
  const producer = (async () => {
    for (let due = performance.now(); producing;) {
      due += 10;
      for (let i = 0; i < rate / 100; i++) {
        const c = good[rr++ % good.length];
        c.publishedAt.push(Date.now());
        const at = performance.now();
        void pub.publish(`rm.users.${c.user}`, `${c.published++}|${at.toFixed(2)}|`).then(() => publishReplies.push(performance.now() - at));
      }
      await sleep(Math.max(0, due - performance.now()));
    }
  })();

  const rss = [];
  // Every second: the server's RSS, its event-loop lag (prom-client's, reset at each scrape: the worst of that
  // second), and a PING's round trip to Redis on a connection of its own (a stall of Redis stalls delivery too).
  const serverLag = [];
  const redisRtt = [];
  const routeBuffer = []; // bytes heard and not yet routed (a router falling behind)
  const probe = new Redis(redis.url);
  const sampler = setInterval(() => {
    const pingedAt = performance.now();
    const pingSecond = Math.floor((Date.now() - started) / 1000);
    void probe.ping().then(() => (redisRtt[pingSecond] = performance.now() - pingedAt));
    rss.push({ at: Date.now(), kb: rssKb(server.pid) });
    const second = Math.floor((Date.now() - started) / 1000);
    void httpGet(server.port, '/metrics', 900).then((res) => {
      if (!res) return;
      serverLag[second] = metricValue(res.body, 'nodejs_eventloop_lag_max_seconds') * 1000;
      routeBuffer[second] = metricValue(res.body, 'redmessenger_route_buffer_bytes');
    });
  }, 1000);
  await sleep(10000);
  const baselineKb = Math.max(...rss.slice(-5).map((s) => s.kb));
  const cpuBefore = { at: Date.now(), ms: cpuMs(server.pid) };
  const boundKb = baselineKb + rssBoundOver(slots) / 1024;
  log(`RSS baseline ${(baselineKb / 1024).toFixed(0)} MiB (steady traffic, no hostiles yet); bound ${(boundKb / 1024).toFixed(0)} MiB`);

  // Hostile users' PUBLISHes on a connection of their own: the well-behaved ones' answers time Redis alone.
  const hostilePub = new Redis(redis.url);
  const proxy = startProxy(server.port);
  await proxy.listen();
  const hostiles = [];
  // Flooders write as fast as the server reads: on a thread of their own, so the well-behaved clients' pongs and
  // receipts here are not held up behind their writes.
  let stopFlooders = () => undefined;
  if (kinds.includes('flooder') && slots > 0) {
    const worker = new Worker(__filename, { workerData: { role: 'flooders', port: server.port, slots, started, verbose } });
    stopFlooders = () => worker.postMessage('stop');
    hostiles.push(
      new Promise((resolve, reject) => {
        worker.on('message', (m) => (m === 'done' ? resolve() : rounds.push(m)));
        worker.on('error', reject);
      }),
    );
  }
  for (let s = 0; s < slots; s++) {
    if (kinds.includes('non-reader')) hostiles.push(nonReaderSlot(server, s));
    if (kinds.includes('half-open')) hostiles.push(halfOpenSlot(server, proxy, hostilePub, s));
    // Two loops per spammer address: faster than IDENTIFY_RATE_PER_MINUTE lets through, even on a loaded machine.
    if (kinds.includes('spammer')) hostiles.push(spammerSlot(server, s), spammerSlot(server, s));
  }
  const nrProducing = nonReaderProducer(hostilePub);
  const progress = setInterval(() => {
    const received = good.reduce((n, c) => n + c.next, 0);
    const last = rss[rss.length - 1];
    log(
      `received ${received}; hostile sockets ${rounds.length} (${rounds.filter((r) => !r.closedAt && !r.survived).length} open); spam ok ${spam.identified} refused ${spam.refused}; RSS ${(last.kb / 1024).toFixed(0)} MiB`,
    );
  }, 10000);

  await sleep(Math.max(0, seconds * 1000 - (Date.now() - started)));
  running = false;
  stopFlooders();
  producing = false;
  await producer;
  log('stopping: no new hostile sockets; waiting for the open ones to close and for every message to arrive');
  const deadline = Date.now() + 60000;
  while (good.some((c) => c.received < c.published) && Date.now() < deadline) await sleep(200);
  await Promise.all([...hostiles, nrProducing]);
  clearInterval(releasePoller);
  const serverCpuPct = Math.round((100 * (cpuMs(server.pid) - cpuBefore.ms)) / (Date.now() - cpuBefore.at));
  clearInterval(progress);
  clearInterval(sampler);
  harnessLag.disable();
  for (const c of good) c.flush();
  await sleep(500);

  // What the server counted, and what is in the queues of the users who never acked.
  const metrics = (await httpGet(server.port, '/metrics'))?.body ?? '';
  const closedTotal = (cause) => metricValue(metrics, `redmessenger_sockets_closed_total{cause="${cause}"}`);
  const queueCheck = async (users) => {
    let missing = 0;
    let unordered = 0;
    let owed = 0;
    for (const u of users) {
      owed += await pub.llen(`rm:users:${u.user}:owed`);
      const seqs = (await pub.lrange(`rm:users:${u.user}:messages`, 0, -1)).map((e) => Number(JSON.parse(e).rm.payload.split('|')[0]));
      missing += u.published - new Set(seqs).size;
      unordered += seqs.some((s, i) => s !== i) ? 1 : 0;
    }
    return { published: users.reduce((n, u) => n + u.published, 0), missing, usersOutOfOrder: unordered, stillOwed: owed };
  };
  // Messages a well-behaved client never got: still stored for it (queue or owed), or nowhere; and when they were published.
  const missing = { storedInRedis: 0, nowhere: 0, publishedAtSecond: {} };
  for (const c of good) {
    if (c.received === c.published) continue;
    const entries = [...(await pub.lrange(`rm:users:${c.user}:messages`, 0, -1)), ...(await pub.lrange(`rm:users:${c.user}:owed`, 0, -1))];
    const stored = new Set(entries.map((e) => Number(JSON.parse(e).rm.payload.split('|')[0])));
    for (let seq = 0; seq < c.published; seq++) {
      if (c.firstGen[seq] !== undefined) continue;
      if (stored.has(seq)) missing.storedInRedis++;
      else missing.nowhere++;
      const second = Math.floor((c.publishedAt[seq] - started) / 1000);
      missing.publishedAtSecond[second] = (missing.publishedAtSecond[second] ?? 0) + 1;
    }
  }
  const nrQueues = await queueCheck(nonReaders);
  const hoQueues = await queueCheck(halfOpen);

  for (const c of good) c.stopping = true;
  for (const c of good) c.ws.close(1000);
  proxy.close();
  await server.stop();
  pub.disconnect();
  probe.disconnect();
  tap.disconnect();
  hostilePub.disconnect();
  await redis.stop();

  // Figures and verdicts.
  const failures = [];
  const sorted = latencies.sort((a, b) => a - b);
  const published = good.reduce((n, c) => n + c.published, 0);
  const lost = good.reduce((n, c) => n + (c.published - c.received), 0);
  const wellBehaved = {
    clients: good.length,
    published,
    lost,
    outOfOrder: good.reduce((n, c) => n + c.outOfOrder, 0),
    duplicatesAcrossReconnect: good.reduce((n, c) => n + c.duplicates - c.duplicatesSameSocket, 0),
    duplicatesSameSocket: good.reduce((n, c) => n + c.duplicatesSameSocket, 0),
    closedByServer: good.reduce((n, c) => n + c.closedByServer.length, 0),
    errorFrames: good.reduce((n, c) => n + c.errors.length, 0),
    latencyMs: { p50: +pct(sorted, 50).toFixed(1), p99: +pct(sorted, 99).toFixed(1), p999: +pct(sorted, 99.9).toFixed(1), max: +sorted[sorted.length - 1]?.toFixed(1) },
  };
  if (lost) {
    wellBehaved.missing = missing;
    failures.push(
      `${lost} messages lost to well-behaved clients (${missing.storedInRedis} still stored for them, ${missing.nowhere} nowhere; published at second ${Object.entries(missing.publishedAtSecond)
        .map(([sec, n]) => `${sec}: ${n}`)
        .join(', ')})`,
    );
  }
  if (wellBehaved.outOfOrder) failures.push(`${wellBehaved.outOfOrder} messages out of order`);
  if (wellBehaved.duplicatesSameSocket) failures.push(`${wellBehaved.duplicatesSameSocket} duplicates on the same socket`);
  if (wellBehaved.errorFrames) failures.push(`${wellBehaved.errorFrames} error frames to well-behaved clients: ${[...new Set(good.flatMap((c) => c.errors.map((e) => e.code)))].join(', ')}`);
  if (wellBehaved.closedByServer) {
    // Grouped by second and close code: a mass close at one moment is the server's stall, not the clients'.
    const groups = new Map();
    for (const c of good)
      for (const e of c.closedByServer) {
        const key = `${((e.at - started) / 1000).toFixed(0)} s: ${e.code}`;
        groups.set(key, (groups.get(key) ?? 0) + 1);
      }
    failures.push(`well-behaved sockets closed by the server (second of the run: close code x sockets): ${[...groups].map(([k, n]) => `${k} x ${n}`).join(', ')}`);
  }

  const peakKb = Math.max(...rss.map((s) => s.kb));
  const peakAtSecond = Math.round((rss.find((s) => s.kb === peakKb).at - started) / 1000);
  const memory = {
    baselineMiB: +(baselineKb / 1024).toFixed(1),
    peakMiB: +(peakKb / 1024).toFixed(1),
    boundMiB: +(boundKb / 1024).toFixed(1),
    peakAtSecond,
    endMiB: +(rss[rss.length - 1].kb / 1024).toFixed(1),
  };
  if (peakKb > boundKb) {
    const over = rss.filter((s) => s.kb > boundKb).map((s) => Math.round((s.at - started) / 1000));
    failures.push(`RSS peak ${memory.peakMiB} MiB (at ${peakAtSecond} s) over the bound ${memory.boundMiB} MiB; over it in seconds ${over.join(', ')}`);
  }

  const hostileSummary = {};
  for (const kind of ['flooder', 'non-reader', 'half-open']) {
    const these = rounds.filter((r) => r.kind === kind);
    const lifetimes = these
      .filter((r) => r.closedAt)
      .map((r) => r.closedAt - r.start)
      .sort((a, b) => a - b);
    const bound = BOUNDS[kind];
    const entry = {
      sockets: these.length,
      closed: lifetimes.length,
      survived: these.filter((r) => r.survived).length,
      lifetimeMs: { min: lifetimes[0], median: pct(lifetimes, 50), max: lifetimes[lifetimes.length - 1], bound },
    };
    const late = lifetimes.filter((t) => t > bound);
    if (late.length) failures.push(`${late.length} ${kind} sockets open longer than ${bound} ms (slowest ${late[late.length - 1]} ms)`);
    if (entry.survived) failures.push(`${entry.survived} ${kind} sockets still open ${survivalMs(kind)} ms after they began`);
    if (kind !== 'half-open') {
      // From the server's last "not reading" line to released (the slow-consumer timeout, then the close grace).
      const stalled = these.filter((r) => r.closedAt && stalls.has(r.key));
      const afterStall = stalled.map((r) => r.closedAt - stalls.get(r.key).last).sort((a, b) => a - b);
      entry.stalled = stalled.length;
      entry.stallsPerSocket = {
        median: pct(
          stalled.map((r) => stalls.get(r.key).count).sort((a, b) => a - b),
          50,
        ),
        max: Math.max(0, ...stalled.map((r) => stalls.get(r.key).count)),
      };
      entry.firstStallToGoneMs = { max: Math.max(0, ...stalled.map((r) => r.closedAt - stalls.get(r.key).first)) };
      entry.closedAsSlowConsumer = these.filter((r) => slowCloses.has(r.key)).length;
      entry.lastStallToGoneMs = { median: pct(afterStall, 50), max: afterStall[afterStall.length - 1], expected: STALLED_MS };
      // The server writes at most one stall line a second: these figures are approximate, not judged.
    }
    if (kind === 'flooder') {
      entry.framesWritten = {
        median: pct(
          these.map((r) => r.frames ?? 0).sort((a, b) => a - b),
          50,
        ),
        max: Math.max(0, ...these.map((r) => r.frames ?? 0)),
      };
      for (const variant of ['junk', 'bogus-ack']) {
        const v = these
          .filter((r) => r.variant === variant && r.closedAt)
          .map((r) => r.closedAt - r.start)
          .sort((a, b) => a - b);
        entry[`${variant}LifetimeMs`] = { median: pct(v, 50), max: v[v.length - 1] };
      }
    }
    hostileSummary[kind] = entry;
  }
  hostileSummary['non-reader'].queues = nrQueues;
  hostileSummary['half-open'].queues = hoQueues;
  for (const [kind, q] of [
    ['non-reader', nrQueues],
    ['half-open', hoQueues],
  ]) {
    if (q.missing || q.usersOutOfOrder || q.stillOwed) failures.push(`${kind} users' queues: ${q.missing} of ${q.published} messages missing, ${q.usersOutOfOrder} out of order, ${q.stillOwed} still owed`);
  }

  // A spammer address may identify IDENTIFY_RATE_PER_MINUTE times at once, then at that rate.
  const spamBound = Math.ceil(SETTINGS.IDENTIFY_RATE_PER_MINUTE * (1 + (Date.now() - started) / 60000));
  hostileSummary.spammer = { ...spam, perSlot: undefined, identifiedPerAddress: { max: Math.max(0, ...spam.perSlot), bound: spamBound }, refusedMsBound: BOUNDS.refused };
  if (Math.max(0, ...spam.perSlot) > spamBound) failures.push(`a spammer address identified ${Math.max(...spam.perSlot)} times, over ${spamBound}`);
  if (spam.slowestRefusalMs > BOUNDS.refused) failures.push(`a spammer's refusal took ${spam.slowestRefusalMs} ms`);

  const counters = Object.fromEntries(['cut', 'rate_limited', 'slow_consumer', 'token_expired'].map((c) => [c, closedTotal(c)]));
  const counted = {
    sockets_closed_total: counters,
    identify_rate_limited_total: metricValue(metrics, 'redmessenger_identify_total{outcome="rate_limited"}'),
    messages_dropped_total: Object.fromEntries(
      ['overflow', 'rejected', 'invalid_channel', 'invalid_member', 'overload', 'fenced'].map((r) => [r, metricValue(metrics, `redmessenger_messages_dropped_total{reason="${r}"}`)]),
    ),
    serverLogLines: { ...logLines, megabytes: +(logChars / 1e6).toFixed(1) },
  };
  // Every hostile socket the run saw released was closed by the server for one of these causes
  // (a non-reader is cut when it was not held, or closed as a slow consumer when it was); half-open ones only as cut.
  const hostileClosed = hostileSummary.flooder.closed + hostileSummary['non-reader'].closed + hostileSummary['half-open'].closed;
  const serverClosed = counters.cut + counters.rate_limited + counters.slow_consumer;
  if (serverClosed !== hostileClosed) failures.push(`sockets_closed_total (cut + rate_limited + slow_consumer) is ${serverClosed}, ${hostileClosed} hostile sockets were closed`);
  if (counters.cut < hostileSummary['half-open'].closed) failures.push(`sockets_closed_total{cause="cut"} is ${counters.cut}, ${hostileSummary['half-open'].closed} half-open sockets were cut`);

  const lag = { p99Ms: +(harnessLag.percentile(99) / 1e6).toFixed(1), maxMs: +(harnessLag.max / 1e6).toFixed(1) };
  const serverLagSorted = serverLag.filter((x) => x !== undefined).sort((a, b) => a - b);
  const serverEventLoopLag = { worstSecondMs: +(serverLagSorted[serverLagSorted.length - 1] ?? NaN).toFixed(1), medianSecondMs: +pct(serverLagSorted, 50).toFixed(1) };
  const rttSorted = redisRtt.filter((x) => x !== undefined).sort((a, b) => a - b);
  const redisPingMs = { median: +pct(rttSorted, 50).toFixed(1), worst: +(rttSorted[rttSorted.length - 1] ?? NaN).toFixed(1) };
  const sortedNumbers = (list) => list.slice().sort((a, b) => a - b);
  const spread = (list) => ({ p50: +pct(sortedNumbers(list), 50).toFixed(1), p99: +pct(sortedNumbers(list), 99).toFixed(1), max: +Math.max(0, ...list).toFixed(1) });
  const pathMs = { publishReply: spread(publishReplies), redisToSubscriberHere: spread(tapped), publishToWebSocket: wellBehaved.latencyMs };
  const routeBufferPeakKB = Math.round(Math.max(0, ...routeBuffer.filter((x) => x !== undefined)) / 1024);
  console.log(
    JSON.stringify(
      {
        seconds,
        settings: SETTINGS,
        wellBehaved,
        memory,
        hostile: hostileSummary,
        counted,
        serverCpuPctOfOneCore: serverCpuPct,
        serverEventLoopLag,
        redisPingMs,
        routeBufferPeakKB,
        latencyPathMs: pathMs,
        harnessEventLoopLag: lag,
      },
      null,
      2,
    ),
  );
  const row = (k, v) => `  ${k.padEnd(34)} ${v}`;
  console.log(
    [
      'hostile mix:',
      row('well-behaved lost / out of order', `${lost} / ${wellBehaved.outOfOrder} of ${published}`),
      row('duplicates across reconnect', wellBehaved.duplicatesAcrossReconnect),
      row('publish->receipt p50 / p99 / max', `${wellBehaved.latencyMs.p50} / ${wellBehaved.latencyMs.p99} / ${wellBehaved.latencyMs.max} ms`),
      row('RSS baseline / peak / bound', `${memory.baselineMiB} / ${memory.peakMiB} / ${memory.boundMiB} MiB`),
      row('server CPU (hostile phase)', `${serverCpuPct} % of one core`),
      ...['flooder', 'non-reader', 'half-open'].map((k) =>
        row(`${k}s closed / survived`, `${hostileSummary[k].closed} / ${hostileSummary[k].survived}, slowest ${hostileSummary[k].lifetimeMs.max ?? '-'} ms (bound ${BOUNDS[k]} ms)`),
      ),
      row('spammer identifies ok / refused', `${spam.identified} / ${spam.refused} (+${spam.garbageClosed} garbage closed)`),
      row('server closes cut / rate / slow', `${counters.cut} / ${counters.rate_limited} / ${counters.slow_consumer}`),
    ].join('\n'),
  );
  for (const failure of failures) console.log(`FAIL: ${failure}`);
  if (failures.length || verbose) {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rm-hostile-')), 'server.log');
    fs.writeFileSync(file, serverLog.join(''));
    console.log(`server log (LOG_LEVEL ${process.env.CHAOS_LOG_LEVEL ?? 'log'}; each chunk prefixed with the run's second): ${file}`);
  }
  const slowSeconds = worstBySecond.map((ms, sec) => [sec, ms]).filter(([, ms]) => ms > 250);
  if (slowSeconds.length)
    console.log(
      `seconds of the run with a receipt over 250 ms (in brackets: the server's worst event-loop lag then in ms, a Redis PING's round trip in ms, the route buffer in KB; ? when unanswered within the second): ${slowSeconds.map(([sec, ms]) => `${sec} s: ${ms.toFixed(0)} ms (${serverLag[sec]?.toFixed(0) ?? '?'}, ${redisRtt[sec]?.toFixed(0) ?? '?'}, ${routeBuffer[sec] === undefined ? '?' : (routeBuffer[sec] / 1024).toFixed(0)})`).join(', ')}`,
    );
  console.log(failures.length ? 'HOSTILE: FAIL' : 'HOSTILE: PASS');
  process.exit(failures.length ? 1 : 0);
}

module.exports = { main };

// The flooders' thread (see main).
if (!isMainThread && workerData?.role === 'flooders') {
  parentPort.on('message', (m) => m === 'stop' && (running = false));
  Promise.all(Array.from({ length: workerData.slots }, (_, slot) => flooderSlot({ port: workerData.port }, slot))).then(() => {
    clearInterval(releasePoller);
    parentPort.postMessage('done');
  });
}
