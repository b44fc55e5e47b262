#!/usr/bin/env node
'use strict';
/**
 * RedMessenger soak test: `npm run soak` (builds, then runs this), or
 * `node soak/run.js [--minutes 3] [--connections 2000] [--users 500] [--rate 2000]`.
 *
 * Starts its own redis-server on a free loopback port and the built server
 * (dist/main.js, copied first so a concurrent rebuild cannot change it mid-run) as
 * a child, then for the duration:
 *   - `--connections` WebSocket clients churn: connect, identify as one of `--users`
 *     users, stay 1-10 s, ack what they get (70 %) or never ack (30 %), then close
 *     (half) or terminate (half), and start over;
 *   - a publisher PUBLISHes `--rate` messages/s round-robin to the users, each payload
 *     carrying a global and a per-user sequence number;
 *   - at `--kill-at` (2/3) of the run the server is SIGKILLed and restarted (same
 *     port, same env, same INSTANCE_ID);
 * then stops publishing, closes the churners, connects every user once with an
 * auto-acking client and drains what is queued or owed.
 *
 * Reports: published, delivered (unique), lost (PUBLISH reached the server's
 * subscriber, never delivered: must be 0), duplicates by cause (fan-out to sockets
 * open together, redelivery of unacked messages, acks in flight at a close or at
 * the kill, and the unexpected kinds: after a settled ack, twice on one socket),
 * split before/after the failure, order and routing checks, server RSS every 5 s and
 * event-loop delay/utilisation (from a preloaded probe). A table on stdout, JSON in
 * soak/results/<ts>.json. Exit code 1 if a must-be-zero figure is not zero.
 *
 * Everything listens on or connects to 127.0.0.1 only (the server binds its port on
 * every interface, as `app.listen(port)` does; the soak connects over loopback).
 */
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { monitorEventLoopDelay } = require('node:perf_hooks');
const Redis = require('ioredis');
const WebSocket = require('ws');
// Child tracking (killed at exit, or on SIGINT/SIGTERM/SIGHUP with exit code 130), free ports, redis-server, /proc.
const procs = require('../bench/lib/procs');

const { sleep, killAll, freePort, fileStamps } = procs;

const ROOT = path.resolve(__dirname, '..');
const PROBE = path.join(__dirname, 'lib', 'loop-probe.js');

// ---------------------------------------------------------------------------
// Options

function parseArgs(argv) {
  const opts = {
    minutes: 3,
    connections: 2000,
    users: 500,
    rate: 2000,
    killAt: 2 / 3,
    kill: true,
    stayMinS: 1,
    stayMaxS: 10,
    ackRatio: 0.7,
    terminateRatio: 0.5,
    graceMs: 2000,
    drainTimeoutS: 180,
    out: path.join(__dirname, 'results'),
    snapshot: true,
    maxSocketsPerUser: 0,
  };
  const num = (name, v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} needs a non-negative number, got ${v}`);
    return n;
  };
  for (let i = 2; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2);
    const value = () => (inline !== undefined ? inline : argv[++i]);
    switch (flag) {
      case '--minutes':
        opts.minutes = num('minutes', value());
        break;
      case '--connections':
        opts.connections = Math.round(num('connections', value()));
        break;
      case '--users':
        opts.users = Math.max(1, Math.round(num('users', value())));
        break;
      case '--rate':
        opts.rate = num('rate', value());
        break;
      case '--kill-at':
        opts.killAt = num('kill-at', value());
        break;
      case '--no-kill':
        opts.kill = false;
        break;
      case '--ack-ratio':
        opts.ackRatio = num('ack-ratio', value());
        break;
      case '--stay-min':
        opts.stayMinS = num('stay-min', value());
        break;
      case '--stay-max':
        opts.stayMaxS = num('stay-max', value());
        break;
      case '--drain-timeout':
        opts.drainTimeoutS = num('drain-timeout', value());
        break;
      case '--max-sockets-per-user':
        opts.maxSocketsPerUser = Math.round(num('max-sockets-per-user', value()));
        break;
      case '--out':
        opts.out = path.resolve(value());
        break;
      case '--no-snapshot':
        opts.snapshot = false;
        break;
      case '-h':
      case '--help':
        console.log(fs.readFileSync(__filename, 'utf8').split('*/')[0]);
        process.exit(0);
        break;
      default:
        throw new Error(`Unknown option ${argv[i]} (see --help)`);
    }
  }
  if (opts.minutes <= 0 || opts.minutes > 24 * 60) throw new Error('--minutes must be in (0, 1440]');
  if (opts.stayMaxS < opts.stayMinS) throw new Error('--stay-max must be >= --stay-min');
  return opts;
}

// ---------------------------------------------------------------------------
// Processes

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  // Before the handler of procs.js, which kills the children and exits with 130.
  process.prependListener(sig, () => console.error(`\n${sig}: stopping the soak`));
}

/** Keeps the last 100-200 kB of a child's output (the soak's server logs are reported). */
const track = (child, name) => procs.track(child, name, { logChars: 100_000 });

/** CPU time (user + system) of a process so far, in ms; NaN once it is gone. */
function cpuMs(pid) {
  try {
    return procs.cpuMs(pid);
  } catch {
    return NaN;
  }
}

function rssKb(pid) {
  try {
    return procs.rssKb(pid);
  } catch {
    return NaN;
  }
}

function startRedis(dir) {
  return procs.launchRedis(['--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning', '--maxclients', '10000'], {
    bin: process.env.REDIS_SERVER_BIN || 'redis-server',
    logChars: 100_000,
  });
}

/** dist/ copied once (retrying while a concurrent build is rewriting it), so the restart runs the same code. */
async function distSnapshot(tmp) {
  const dist = path.join(ROOT, 'dist');
  const listing = () => fileStamps(dist).sort().join('\n');
  // Every asset the build copies (the Lua scripts) must be there too: a build writes them last.
  const assets = [];
  const walkSrc = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walkSrc(p);
      else if (e.name.endsWith('.lua')) assets.push(path.relative(path.join(ROOT, 'src'), p));
    }
  };
  walkSrc(path.join(ROOT, 'src'));
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      if (!fs.existsSync(path.join(dist, 'main.js'))) throw new Error('no dist/main.js');
      if (!fs.existsSync(path.join(dist, 'app.module.js'))) throw new Error('no dist/app.module.js');
      const missing = assets.filter((a) => !fs.existsSync(path.join(dist, a)));
      if (missing.length) throw new Error(`dist/ lacks ${missing.join(', ')}`);
      const before = listing();
      await sleep(2000); // a build in progress shows as a listing that changes
      if (listing() !== before) throw new Error('dist/ is changing');
      const target = fs.mkdtempSync(path.join(tmp, 'dist-'));
      fs.cpSync(dist, target, { recursive: true });
      if (listing() !== before) {
        fs.rmSync(target, { recursive: true, force: true });
        throw new Error('dist/ changed while copying');
      }
      return path.join(target, 'main.js');
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`Cannot use ${dist}: ${error.message}. Build first: npm run build`);
      await sleep(1000);
    }
  }
}

/** GET /health: the status code (0: no answer within timeoutMs), how long it took, and the body's gist. */
function health(port, timeoutMs = 5000) {
  const start = Date.now();
  return new Promise((resolve) => {
    const done = (status, body = '') => resolve({ status, ms: Date.now() - start, body: body.slice(0, 300) });
    const req = http.get({ host: '127.0.0.1', port, path: '/health', timeout: timeoutMs, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => done(res.statusCode, body));
      res.on('error', () => done(res.statusCode, body));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => done(0, err.message));
  });
}

/**
 * Spawns the server and waits until GET /health answers 200. With `lenient`, a server
 * that runs but is not healthy within readyTimeoutMs is kept (and reported) rather than killed.
 */
async function startServer(main, env, { readyTimeoutMs = 30_000, lenient = false, onHealth } = {}) {
  const proc = track(spawn(process.execPath, ['-r', PROBE, main], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] }), 'server');
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    const h = await health(Number(env.PORT), 2000);
    if (onHealth) onHealth(h);
    if (h.status === 200) return { ...proc, healthy: true };
    if (!proc.running()) throw new Error(`server exited before it was ready:\n${proc.logs().slice(-4000)}`);
    if (Date.now() > deadline) {
      if (lenient) return { ...proc, healthy: false };
      proc.child.kill('SIGKILL');
      throw new Error(`server not ready within ${readyTimeoutMs} ms (last /health: ${JSON.stringify(h)}):\n${proc.logs().slice(-4000)}`);
    }
    await sleep(h.status === 0 ? 50 : 200);
  }
}

// ---------------------------------------------------------------------------
// Per-message bookkeeping, in growable typed arrays indexed by the global sequence g.
// Message g goes to user g % users with per-user sequence floor(g / users).

class Grow {
  constructor(Type, n) {
    this.Type = Type;
    this.a = new Type(n);
  }
  ensure(i) {
    if (i < this.a.length) return;
    let n = this.a.length;
    while (n <= i) n *= 2;
    const b = new this.Type(n);
    b.set(this.a);
    this.a = b;
  }
  get(i) {
    return i < this.a.length ? this.a[i] : 0;
  }
  set(i, v) {
    this.ensure(i);
    this.a[i] = v;
  }
}

const PUB = { pending: 0, accepted: 1, noSubscriber: 2, failed: 3 };

function main() {
  const opts = parseArgs(process.argv);
  return soak(opts);
}

async function soak(opts) {
  const started = new Date();
  const loadStart = os.loadavg();
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const durationMs = Math.round(opts.minutes * 60_000);
  const capacity = Math.ceil(opts.rate * (durationMs / 1000) * 1.1) + 1024;
  const userIds = Array.from({ length: opts.users }, (_, i) => `soak-u${i}`);
  const log = (msg) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${msg}`);
  let t0 = Date.now();

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'redmessenger-soak-'));
  process.on('exit', () => {
    try {
      fs.rmSync(tmp, { recursive: true, force: true });
    } catch {
      // best effort
    }
  });
  const probeFile = path.join(tmp, 'probe.jsonl');

  const redis = await startRedis(tmp);
  const admin = new Redis(redis.url, { connectionName: 'soak-admin' });
  admin.on('error', () => undefined);
  const publisher = new Redis(redis.url, { connectionName: 'soak-publisher', enableOfflineQueue: true });
  publisher.on('error', () => undefined);

  let mainJs = opts.snapshot ? await distSnapshot(tmp) : path.join(ROOT, 'dist', 'main.js');
  const port = await freePort();
  const serverEnv = {
    ...process.env,
    NODE_PATH: path.join(ROOT, 'node_modules'),
    PORT: String(port),
    REDIS_URL: redis.url,
    LOG_LEVEL: 'warn',
    INSTANCE_ID: `soak-${port}`,
    AUTH_MODE: 'none',
    // Thousands of sockets a second from one address are the point here, not abuse.
    CONNECTION_RATE_PER_MINUTE: '0',
    IDENTIFY_RATE_PER_MINUTE: '0',
    MAX_SOCKETS_PER_USER: String(opts.maxSocketsPerUser),
    SOAK_PROBE_FILE: probeFile,
  };
  delete serverEnv.NODE_OPTIONS;
  let server;
  for (let attempt = 1; ; attempt++) {
    try {
      server = await startServer(mainJs, serverEnv);
      break;
    } catch (error) {
      // A snapshot taken halfway through someone else's build: take another one.
      if (!opts.snapshot || attempt >= 3) throw error;
      console.error(`server did not start from ${mainJs}, taking a new snapshot of dist/: ${error.message.split('\n')[0]}`);
      mainJs = await distSnapshot(tmp);
    }
  }
  const runs = [{ pid: server.pid, startedAt: Date.now() }];
  const url = `ws://127.0.0.1:${port}/`;
  t0 = Date.now();
  log(`redis ${redis.url}, server pid ${server.pid} on port ${port} (${mainJs}); ${opts.connections} connections, ${opts.users} users, ${opts.rate} msg/s for ${opts.minutes} min`);

  // --- state -------------------------------------------------------------
  const pubState = new Grow(Uint8Array, capacity);
  const pubAt = new Grow(Float64Array, capacity);
  const firstAt = new Grow(Float64Array, capacity);
  const recvCount = new Grow(Uint16Array, capacity);
  const serverId = new Grow(Float64Array, capacity); // the message id, as a number (ids are decimal strings)
  const ackAt = new Grow(Float64Array, capacity);
  const ackSock = new Grow(Int32Array, capacity);
  const sockClosedAt = new Grow(Float64Array, 1 << 16); // by socket index
  let published = 0;
  let sockets = 0;
  let killAt = 0; // time of the SIGKILL (0: not yet)
  let restartedAt = 0; // time /health answered 200 again (or gave up waiting)
  let restartSpawnedAt = 0;
  let firstReadyAfterKill = 0; // first `ready` a client got from the restarted server
  const healthLog = []; // every /health probe: during the restart wait, and every 5 s
  let killedPid = 0;

  const zero = () => ({ fanout: 0, unackedRedelivery: 0, ackInFlight: 0, afterSettledAck: 0, sameSocket: 0 });
  const dup = { before: zero(), after: zero() };
  const inFlightAtFailure = new Set(); // g received before the kill, not settled, received again after
  const counters = {
    receipts: 0,
    unique: 0,
    orderViolations: 0,
    misrouted: 0,
    idChanged: 0,
    unparsedPayload: 0,
    identifies: 0,
    identifyFailures: 0,
    connectFailures: 0,
    connectFailureReasons: {},
    errorFrames: {},
    closeCodes: {},
    acksSent: 0,
    ackFrames: 0,
    sessions: 0,
    sessionsAck: 0,
    sessionsDrop: 0,
    closedByClient: 0,
    terminatedByClient: 0,
    closedByServer: 0,
  };
  const examples = { orderViolations: [], misrouted: [], idChanged: [], afterSettledAck: [], sameSocket: [], lost: [] };
  const example = (kind, v) => {
    if (examples[kind].length < 10) examples[kind].push(v);
  };

  // --- receipts ------------------------------------------------------------
  /** A `message` frame on socket s: account for it, and classify a repeat by its cause. */
  function onMessage(s, data, now) {
    counters.receipts++;
    let g;
    try {
      g = JSON.parse(data.payload).g;
    } catch {
      counters.unparsedPayload++;
      return;
    }
    if (!Number.isInteger(g) || g < 0 || g >= published + 1e6) {
      counters.unparsedPayload++;
      return;
    }
    const user = userIds[g % opts.users];
    if (user !== s.user || data.channel !== `rm.users.${s.user}`) {
      counters.misrouted++;
      example('misrouted', { g, socketUser: s.user, channel: data.channel });
    }
    const id = Number(data.id);
    if (s.lastG >= g) {
      counters.orderViolations++;
      example('orderViolations', { socket: s.index, user: s.user, after: s.lastG, got: g });
    }
    s.lastG = Math.max(s.lastG, g);
    const seen = recvCount.get(g);
    recvCount.set(g, Math.min(65535, seen + 1));
    if (seen === 0) {
      counters.unique++;
      firstAt.set(g, now);
      serverId.set(g, id);
    } else {
      if (serverId.get(g) !== id) {
        counters.idChanged++;
        example('idChanged', { g, first: serverId.get(g), now: id });
      }
      const bucket = killAt && now >= killAt ? dup.after : dup.before;
      let cause;
      if (s.received.has(g)) cause = 'sameSocket';
      else if (s.identifiedAt <= firstAt.get(g)) cause = 'fanout';
      else {
        const acked = ackAt.get(g);
        if (!acked || acked >= s.identifiedAt) cause = 'unackedRedelivery';
        else {
          const by = ackSock.get(g);
          const closed = sockClosedAt.get(by);
          const settledAt = acked + opts.graceMs;
          const killedInWindow = killAt && killAt >= acked && killAt <= settledAt;
          const settled = settledAt < s.identifiedAt && (!closed || closed > settledAt) && !killedInWindow;
          cause = settled ? 'afterSettledAck' : 'ackInFlight';
        }
      }
      bucket[cause]++;
      if (cause === 'afterSettledAck')
        example('afterSettledAck', { g, user, id: data.id, ackedAt: ackAt.get(g) - t0, ackBy: ackSock.get(g), socket: s.index, identifiedAt: s.identifiedAt - t0, receivedAt: now - t0 });
      if (cause === 'sameSocket') example('sameSocket', { g, user, id: data.id, socket: s.index, receivedAt: now - t0 });
      if (killAt && now >= killAt && firstAt.get(g) < killAt) {
        const acked = ackAt.get(g);
        if (!acked || acked + opts.graceMs > killAt) inFlightAtFailure.add(g);
      }
    }
    s.received.add(g);
    if (s.acks) {
      s.pending.push(data.id);
      s.pendingG.push(g);
      if (s.pending.length === 1) setTimeout(() => flushAcks(s), 10);
    }
  }

  function flushAcks(s) {
    const ids = s.pending;
    const gs = s.pendingG;
    s.pending = [];
    s.pendingG = [];
    if (!ids.length || s.ws.readyState !== WebSocket.OPEN) return;
    s.ws.send(JSON.stringify({ event: 'ack', data: { ids } }));
    const now = Date.now();
    counters.ackFrames++;
    counters.acksSent += ids.length;
    for (const g of gs) {
      if (!ackAt.get(g)) {
        ackAt.set(g, now);
        ackSock.set(g, s.index);
      }
    }
  }

  // --- one socket's life ----------------------------------------------------
  /**
   * Connects, identifies as `user`, and resolves once the socket has closed (however
   * it closed). `stayMs` after ready (or `until()` returning true) it closes or terminates.
   */
  function session({ user, acks, stayMs, terminate, onReady, onCreate }) {
    return new Promise((resolve) => {
      const s = {
        index: sockets++,
        user,
        acks,
        ws: null,
        identifiedAt: Infinity,
        lastG: -1,
        received: new Set(),
        pending: [],
        pendingG: [],
        readyQueued: -1,
        ended: false,
        receivedCount: 0,
      };
      counters.sessions++;
      let stayTimer;
      let connectTimer;
      const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 5000 });
      s.ws = ws;
      connectTimer = setTimeout(() => ws.terminate(), 10_000);
      ws.on('open', () => {
        s.opened = true;
        clearTimeout(connectTimer);
        ws.send(JSON.stringify({ event: 'identify', data: { id: user } }));
      });
      ws.on('message', (raw) => {
        let frame;
        try {
          frame = JSON.parse(raw.toString());
        } catch {
          counters.unparsedPayload++;
          return;
        }
        const now = Date.now();
        if (frame.event === 'message') {
          s.receivedCount++;
          onMessage(s, frame.data, now);
        } else if (frame.event === 'ready') {
          counters.identifies++;
          s.identifiedAt = now;
          if (restartSpawnedAt && !firstReadyAfterKill) firstReadyAfterKill = now; // from the new process only
          s.readyQueued = frame.data?.queued ?? -1;
          if (onReady) onReady(s);
          if (stayMs !== undefined) {
            stayTimer = setTimeout(() => {
              if (s.acks) flushAcks(s);
              s.closing = true;
              if (terminate) {
                counters.terminatedByClient++;
                ws.terminate();
              } else {
                counters.closedByClient++;
                ws.close(1000);
                setTimeout(() => ws.terminate(), 3000).unref();
              }
            }, stayMs);
          }
        } else if (frame.event === 'error') {
          const code = frame.data?.code ?? '?';
          counters.errorFrames[code] = (counters.errorFrames[code] ?? 0) + 1;
        }
      });
      ws.on('error', (err) => (s.error = err.message));
      ws.on('close', (code) => {
        clearTimeout(connectTimer);
        clearTimeout(stayTimer);
        const now = Date.now();
        sockClosedAt.set(s.index, now);
        if (!s.opened) {
          counters.connectFailures++;
          const phase = !killAt ? 'beforeFailure' : !restartedAt ? 'duringRestart' : 'afterRestart';
          const why = `${phase}: ${(s.error ?? `closed ${code}`).replace(/\d+\.\d+\.\d+\.\d+:\d+/, 'addr')}`;
          counters.connectFailureReasons[why] = (counters.connectFailureReasons[why] ?? 0) + 1;
        } else if (s.identifiedAt === Infinity) counters.identifyFailures++;
        if (s.opened && !s.closing) counters.closedByServer++;
        counters.closeCodes[code] = (counters.closeCodes[code] ?? 0) + 1;
        s.ended = true;
        resolve(s);
      });
      s.forceClose = () => {
        s.closing = true;
        if (ws.readyState === WebSocket.OPEN) {
          if (s.acks) flushAcks(s);
          ws.close(1000);
          setTimeout(() => ws.terminate(), 3000).unref();
        } else ws.terminate();
      };
      live.add(s);
      s.done = () => live.delete(s);
      if (onCreate) onCreate(s);
    });
  }

  // --- churn ---------------------------------------------------------------
  const live = new Set();
  let churning = true;
  const rand = (a, b) => a + Math.random() * (b - a);
  async function churner() {
    await sleep(rand(0, 3000)); // ramp up over 3 s
    let backoff = 100;
    for (let guard = 0; churning && guard < 1_000_000; guard++) {
      const acks = Math.random() < opts.ackRatio;
      if (acks) counters.sessionsAck++;
      else counters.sessionsDrop++;
      const s = await session({
        user: userIds[Math.floor(Math.random() * opts.users)],
        acks,
        stayMs: rand(opts.stayMinS * 1000, opts.stayMaxS * 1000),
        terminate: Math.random() < opts.terminateRatio,
      });
      s.done();
      if (s.identifiedAt === Infinity) {
        // the server is down (the forced failure) or refused us: back off, then try again
        await sleep(backoff + Math.random() * backoff);
        backoff = Math.min(2000, backoff * 2);
      } else backoff = 100;
    }
  }

  // --- publisher ------------------------------------------------------------
  let publishing = true;
  let pubInFlight = 0;
  const pubStart = Date.now();
  const publisherDone = (async () => {
    const perTickCap = Math.max(1, Math.ceil(opts.rate / 20));
    for (let guard = 0; publishing && guard < 10_000_000; guard++) {
      const due = Math.floor((opts.rate * (Date.now() - pubStart)) / 1000);
      const n = Math.min(perTickCap, due - published);
      if (n > 0 && pubInFlight < 50) {
        const pipe = publisher.pipeline();
        const from = published;
        const now = Date.now();
        for (let k = 0; k < n; k++) {
          const g = published++;
          const u = g % opts.users;
          pubAt.set(g, now);
          pubState.set(g, PUB.pending);
          pipe.publish(`rm.users.${userIds[u]}`, JSON.stringify({ g, u, n: Math.floor(g / opts.users), t: now }));
        }
        pubInFlight++;
        pipe
          .exec()
          .then((results) => {
            results.forEach(([err, receivers], k) => pubState.set(from + k, err ? PUB.failed : receivers > 0 ? PUB.accepted : PUB.noSubscriber));
          })
          .catch(() => {
            for (let k = 0; k < n; k++) pubState.set(from + k, PUB.failed);
          })
          .finally(() => pubInFlight--);
      }
      await sleep(5);
    }
    const deadline = Date.now() + 10_000;
    while (pubInFlight > 0 && Date.now() < deadline) await sleep(10);
  })();

  // --- sampling -------------------------------------------------------------
  const samples = [];
  let lastCpu = { t: Date.now(), server: cpuMs(server.pid), serverPid: server.pid, redis: cpuMs(redis.pid), self: process.cpuUsage() };
  const pct = (ms, wall) => (Number.isFinite(ms) ? Math.round((100 * ms) / wall) : null);
  const driverLag = monitorEventLoopDelay({ resolution: 10 });
  driverLag.enable();
  const sampler = setInterval(async () => {
    const t = Date.now();
    let redisMem = NaN;
    try {
      redisMem = Number(/used_memory:(\d+)/.exec(await admin.info('memory'))?.[1]);
    } catch {
      // Redis busy: skip
    }
    const cpuNow = { t: Date.now(), server: cpuMs(server.pid), serverPid: server.pid, redis: cpuMs(redis.pid), self: process.cpuUsage() };
    const wall = cpuNow.t - lastCpu.t;
    const cpu = {
      serverCpuPct: cpuNow.serverPid === lastCpu.serverPid ? pct(cpuNow.server - lastCpu.server, wall) : null,
      redisCpuPct: pct(cpuNow.redis - lastCpu.redis, wall),
      driverCpuPct: pct((cpuNow.self.user - lastCpu.self.user + cpuNow.self.system - lastCpu.self.system) / 1000, wall),
    };
    lastCpu = cpuNow;
    const h = server.running() ? await health(port, 5000) : { status: -1, ms: 0, body: 'not running' };
    healthLog.push({ t: t - t0, phase: 'sample', ...h });
    samples.push({
      t: t - t0,
      health: h.status,
      healthMs: h.ms,
      ...cpu,
      pid: server.pid,
      serverRssKb: server.running() ? rssKb(server.pid) : NaN,
      redisUsedMemory: redisMem,
      live: live.size,
      published,
      unique: counters.unique,
      receipts: counters.receipts,
      driverLagP99Ms: Math.round(driverLag.percentile(99) / 1e4) / 100,
    });
    driverLag.reset();
  }, 5000);
  const progress = setInterval(() => {
    const last = samples[samples.length - 1];
    log(`published ${published}, delivered ${counters.unique} unique / ${counters.receipts} receipts, ${live.size} sockets, server RSS ${last ? Math.round(last.serverRssKb / 1024) : '?'} MiB`);
  }, 15_000);

  // --- the run --------------------------------------------------------------
  const churners = Array.from({ length: opts.connections }, () => churner());
  const killDue = opts.kill ? t0 + Math.round(durationMs * opts.killAt) : Infinity;
  const endAt = t0 + durationMs;
  while (Date.now() < endAt) {
    if (Date.now() >= killDue && !killAt) {
      killedPid = server.pid;
      log(`forced failure: SIGKILL server pid ${server.pid}`);
      killAt = Date.now();
      server.child.kill('SIGKILL');
      await server.exited;
      restartSpawnedAt = Date.now();
      server = await startServer(mainJs, serverEnv, {
        readyTimeoutMs: 60_000,
        lenient: true,
        onHealth: (h) => healthLog.push({ t: Date.now() - t0, phase: 'restart', ...h }),
      });
      restartedAt = Date.now();
      runs.push({ pid: server.pid, startedAt: restartSpawnedAt, healthyAfterMs: server.healthy ? restartedAt - killAt : null });
      const lastHealth = healthLog[healthLog.length - 1];
      log(
        server.healthy
          ? `server restarted as pid ${server.pid}, /health 200 ${restartedAt - killAt} ms after the kill (first client ready after ${firstReadyAfterKill ? firstReadyAfterKill - killAt : '?'} ms)`
          : `server restarted as pid ${server.pid} but /health not 200 within 60 s (last: ${JSON.stringify(lastHealth)}); first client ready ${firstReadyAfterKill ? firstReadyAfterKill - killAt : '?'} ms after the kill`,
      );
    }
    if (!server.running()) throw new Error(`the server exited on its own:\n${server.logs().slice(-4000)}`);
    await sleep(100);
  }

  // --- wind down: stop publishing, close the churners -------------------------
  publishing = false;
  await publisherDone;
  const publishedAll = published;
  log(`stopped publishing after ${published} messages; closing ${live.size} sockets`);
  await sleep(1000); // let routing of the last PUBLISHes finish while sockets are still there
  churning = false;
  for (const s of [...live]) s.forceClose();
  const windDeadline = Date.now() + 15_000;
  while (live.size > 0 && Date.now() < windDeadline) await sleep(50);
  for (const s of [...live]) s.ws.terminate();
  await Promise.race([Promise.all(churners), sleep(5000)]);

  // --- drain: every user once, auto-acking, until Redis holds nothing for it --------
  const drainStart = Date.now();
  log('draining: every user once with an auto-acking client');
  const drainStats = { users: 0, queuedAtReady: 0, timedOut: [], leftover: [] };
  const drainUser = async (user) => {
    const deadline = Date.now() + opts.drainTimeoutS * 1000;
    for (let attempt = 0; attempt < 5 && Date.now() < deadline; attempt++) {
      let sock;
      let ready = false;
      const closed = session({ user, acks: true, onCreate: (s) => (sock = s), onReady: () => (ready = true) });
      const done = await Promise.race([
        closed.then(() => 'closed'),
        (async () => {
          for (;;) {
            if (Date.now() > deadline) return 'timeout';
            if (sock.ended) return 'closed';
            if (ready && sock.receivedCount >= sock.readyQueued) {
              const [[, q], [, o]] = await admin.multi().llen(`rm:users:${user}:messages`).zcard(`rm:users:${user}:owed`).exec();
              if (q === 0 && o === 0) return 'drained';
            }
            await sleep(100);
          }
        })(),
      ]);
      if (ready) drainStats.queuedAtReady += Math.max(0, sock.readyQueued);
      if (done === 'drained' || done === 'timeout') {
        if (done === 'timeout') drainStats.timedOut.push(user);
        sock.forceClose();
        (await closed).done();
        return;
      }
      (await closed).done(); // closed before drained: try again
      await sleep(200);
    }
  };
  const queueUsers = [...userIds];
  const drainers = Array.from({ length: 50 }, async () => {
    for (let u = queueUsers.shift(); u !== undefined; u = queueUsers.shift()) {
      await drainUser(u);
      drainStats.users++;
    }
  });
  await Promise.all(drainers);
  await sleep(500);
  for (const user of userIds) {
    const n = await admin.exists(`rm:users:${user}:messages`, `rm:users:${user}:owed`, `rm:users:${user}:state`);
    if (n) drainStats.leftover.push(user);
  }
  const drainMs = Date.now() - drainStart;
  log(`drained ${drainStats.users} users in ${(drainMs / 1000).toFixed(1)} s`);
  clearInterval(sampler);
  clearInterval(progress);

  // --- accounting ------------------------------------------------------------
  let accepted = 0;
  let noSubscriber = 0;
  let failed = 0;
  let pending = 0;
  let lost = 0;
  let lostAtKill = 0;
  let lostAtRestart = 0;
  const lostRel = [];
  let deliveredDespiteNoSubscriber = 0;
  // Pub/sub is at-most-once: a PUBLISH the dying process's subscriber still counted (the kernel closes its
  // socket a few ms after SIGKILL) or that it held in memory is gone with it. "at restart": from then until the
  // new process has held the router lease for a while (the lease of a dead holder lives 5 s).
  const killFrom = killAt ? killAt - 1000 : Infinity;
  const killTo = killAt ? killAt + 500 : -Infinity;
  const restartTo = restartedAt ? restartedAt + 6000 : -Infinity;
  for (let g = 0; g < publishedAll; g++) {
    const st = pubState.get(g);
    const got = recvCount.get(g) > 0;
    if (st === PUB.accepted) {
      accepted++;
      if (!got) {
        lost++;
        const at = pubAt.get(g);
        if (killAt) lostRel.push(at - killAt);
        if (at >= killFrom && at <= killTo) lostAtKill++;
        else if (at > killTo && at <= restartTo) lostAtRestart++;
        example('lost', { g, user: userIds[g % opts.users], n: Math.floor(g / opts.users), publishedAt: at - t0, relToKillMs: killAt ? at - killAt : null });
      }
    } else if (st === PUB.noSubscriber) {
      noSubscriber++;
      if (got) deliveredDespiteNoSubscriber++;
    } else if (st === PUB.failed) failed++;
    else pending++;
  }
  const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
  const unexpected = (b) => b.afterSettledAck + b.sameSocket;

  // Server health over time: RSS from /proc every 5 s, event loop from the probe.
  const probes = fs.existsSync(probeFile)
    ? fs
        .readFileSync(probeFile, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l))
    : [];
  const stats = (xs) => {
    const v = xs.filter((x) => Number.isFinite(x));
    if (!v.length) return null;
    return { n: v.length, min: Math.min(...v), max: Math.max(...v), first: v[0], last: v[v.length - 1], mean: Math.round((v.reduce((a, b) => a + b, 0) / v.length) * 100) / 100 };
  };
  const perRun = runs.map((r, i) => {
    const rs = samples.filter((s) => s.pid === r.pid);
    const ps = probes.filter((p) => p.pid === r.pid);
    return {
      run: i + 1,
      pid: r.pid,
      serverCpuPct: stats(rs.map((s) => s.serverCpuPct ?? NaN)),
      redisCpuPct: stats(rs.map((s) => s.redisCpuPct ?? NaN)),
      driverCpuPct: stats(rs.map((s) => s.driverCpuPct ?? NaN)),
      rssMiB: stats(rs.map((s) => Math.round((s.serverRssKb / 1024) * 10) / 10)),
      heapUsedMiB: stats(ps.map((p) => Math.round((p.heapUsed / 1048576) * 10) / 10)),
      loopDelayP99Ms: stats(ps.map((p) => p.lagP99Ms)),
      loopDelayMaxMs: stats(ps.map((p) => p.lagMaxMs)),
      eventLoopUtilization: stats(ps.map((p) => p.elu)),
      activeHandles: stats(ps.map((p) => p.handles)),
    };
  });

  const results = {
    startedAt: started.toISOString(),
    options: { ...opts, out: undefined },
    machine: { cpus: os.cpus().length, node: process.version, loadavgAtStart: loadStart.map((x) => Math.round(x * 100) / 100), loadavgAtEnd: os.loadavg().map((x) => Math.round(x * 100) / 100) },
    server: {
      port,
      mainJs,
      instanceId: serverEnv.INSTANCE_ID,
      runs: perRun,
      killedPid,
      killAtS: killAt ? (killAt - t0) / 1000 : null,
      restartHealthyMs: killAt && server.healthy ? restartedAt - killAt : null,
      restartFirstClientReadyMs: firstReadyAfterKill ? firstReadyAfterKill - killAt : null,
      health: {
        probes: healthLog.length,
        non200: healthLog.filter((h) => h.status !== 200).length,
        slowestMs: Math.max(0, ...healthLog.map((h) => h.ms)),
        answers: Object.entries(healthLog.reduce((a, h) => ((a[h.status] = (a[h.status] ?? 0) + 1), a), {}))
          .map(([k, v]) => `${k}:${v}`)
          .join(' '),
        examplesNon200: healthLog.filter((h) => h.status !== 200).slice(0, 8),
      },
      logTail: server.logs().slice(-3000),
    },
    messages: {
      published: publishedAll,
      publishRatePerS: Math.round(publishedAll / (durationMs / 1000)),
      acceptedBySubscriber: accepted,
      refusedNoSubscriber: noSubscriber,
      publishFailed: failed,
      publishUnsettled: pending,
      deliveredUnique: counters.unique,
      receipts: counters.receipts,
      lost,
      lostAtKill,
      lostAtRestart,
      lostOutsideFailure: lost - lostAtKill - lostAtRestart,
      lostPublishedRelToKillMs: lostRel.length ? { min: lostRel.reduce((x, y) => Math.min(x, y)), max: lostRel.reduce((x, y) => Math.max(x, y)) } : null,
      deliveredDespiteNoSubscriber,
    },
    duplicates: {
      beforeFailure: dup.before,
      afterFailure: dup.after,
      unexpectedBeforeFailure: unexpected(dup.before),
      unexpectedAfterFailure: unexpected(dup.after),
      inFlightAtFailureRedelivered: inFlightAtFailure.size,
      totalExtraReceipts: sum(dup.before) + sum(dup.after),
      explanation:
        'fanout: copies to sockets of the user open when it was first delivered (contract point 1); unackedRedelivery: to a socket that identified later, ' +
        'no ack sent yet (point 4); ackInFlight: an ack was sent but the acking socket closed, or the server was killed, within graceMs of it, or it was sent ' +
        'less than graceMs before the new socket identified; afterSettledAck and sameSocket are unexpected.',
    },
    checks: {
      orderViolationsPerSocket: counters.orderViolations,
      misrouted: counters.misrouted,
      idChanged: counters.idChanged,
      unparsedPayload: counters.unparsedPayload,
    },
    clients: {
      sessions: counters.sessions,
      ackingSessions: counters.sessionsAck,
      droppingSessions: counters.sessionsDrop,
      identifies: counters.identifies,
      connectFailures: counters.connectFailures,
      connectFailureReasons: counters.connectFailureReasons,
      identifyFailures: counters.identifyFailures,
      closedByClient: counters.closedByClient,
      terminatedByClient: counters.terminatedByClient,
      closedByServer: counters.closedByServer,
      closeCodes: counters.closeCodes,
      errorFrames: counters.errorFrames,
      ackFrames: counters.ackFrames,
      idsAcked: counters.acksSent,
    },
    drain: {
      users: drainStats.users,
      queuedAtReady: drainStats.queuedAtReady,
      seconds: Math.round(drainMs / 100) / 10,
      timedOut: drainStats.timedOut,
      usersWithKeysLeft: drainStats.leftover.length,
      examplesLeft: drainStats.leftover.slice(0, 10),
    },
    samples,
    examples,
  };
  results.ok =
    lost - lostAtKill === 0 &&
    unexpected(dup.before) === 0 &&
    unexpected(dup.after) === 0 &&
    counters.orderViolations === 0 &&
    counters.misrouted === 0 &&
    counters.idChanged === 0 &&
    drainStats.timedOut.length === 0;

  fs.mkdirSync(opts.out, { recursive: true });
  const outFile = path.join(opts.out, `${stamp}.json`);
  fs.writeFileSync(outFile, `${JSON.stringify(results, null, 2)}\n`);

  printSummary(results, outFile);

  // --- stop ----------------------------------------------------------------------
  admin.disconnect();
  publisher.disconnect();
  server.child.kill('SIGTERM');
  await Promise.race([server.exited, sleep(10_000)]);
  redis.child.kill('SIGTERM');
  await Promise.race([redis.exited, sleep(5000)]);
  killAll();
  return results.ok ? 0 : 1;
}

function printSummary(r, outFile) {
  const rows = [];
  const row = (k, v, note = '') => rows.push([k, String(v), note]);
  const m = r.messages;
  const d = r.duplicates;
  row('machine', `${r.machine.cpus} CPUs, load ${r.machine.loadavgAtStart[0]} at start, ${r.machine.loadavgAtEnd[0]} at end`, 'shared with other work');
  row('published', m.published, `${m.publishRatePerS}/s`);
  row('  reached the server (PUBLISH > 0)', m.acceptedBySubscriber);
  row('  no subscriber (PUBLISH = 0)', m.refusedNoSubscriber, 'server down: pub/sub drops it, by design');
  row('  publish failed / unsettled', `${m.publishFailed} / ${m.publishUnsettled}`);
  row('delivered (unique)', m.deliveredUnique, `${m.receipts} receipts in all`);
  row('LOST (reached server, never delivered)', m.lost, m.lost === 0 ? 'ok' : 'MUST BE 0');
  row(
    '  published within 1 s before / 0.5 s after the SIGKILL',
    m.lostAtKill,
    `in the dead process (pub/sub is at-most-once)${m.lostPublishedRelToKillMs ? `; published ${m.lostPublishedRelToKillMs.min}..${m.lostPublishedRelToKillMs.max} ms from the kill` : ''}`,
  );
  row('  published between that and restart + 6 s', m.lostAtRestart, m.lostAtRestart ? 'reached the restarted process, dropped' : '');
  row('  at any other time', m.lostOutsideFailure, m.lostOutsideFailure ? 'MUST BE 0' : 'ok');
  row('duplicates, before failure', JSON.stringify(d.beforeFailure));
  row('duplicates, after failure', JSON.stringify(d.afterFailure));
  row(
    '  unexpected (after settled ack, same socket)',
    `${d.unexpectedBeforeFailure} before / ${d.unexpectedAfterFailure} after`,
    d.unexpectedBeforeFailure + d.unexpectedAfterFailure === 0 ? 'ok' : 'MUST BE 0',
  );
  row('  in flight at the failure, redelivered', d.inFlightAtFailureRedelivered, 'distinct messages');
  row('order violations (per socket)', r.checks.orderViolationsPerSocket, r.checks.orderViolationsPerSocket ? 'MUST BE 0' : 'ok');
  row('misrouted / id changed', `${r.checks.misrouted} / ${r.checks.idChanged}`);
  row('sessions (ack / drop)', `${r.clients.sessions} (${r.clients.ackingSessions} / ${r.clients.droppingSessions})`, `${r.clients.identifies} identified`);
  row('close codes seen by clients', JSON.stringify(r.clients.closeCodes));
  row('connects that failed', r.clients.connectFailures, JSON.stringify(r.clients.connectFailureReasons).slice(0, 200));
  row('error frames', JSON.stringify(r.clients.errorFrames));
  row(
    'forced failure',
    r.server.killAtS === null ? 'none' : `SIGKILL at ${r.server.killAtS.toFixed(1)} s`,
    r.server.killAtS === null ? '' : `first client ready after ${r.server.restartFirstClientReadyMs} ms; /health 200 after ${r.server.restartHealthyMs ?? 'NEVER (60 s)'} ms`,
  );
  row('GET /health probes', `${r.server.health.probes}: ${r.server.health.answers}`, `slowest ${r.server.health.slowestMs} ms`);
  row('drain', `${r.drain.users} users, ${r.drain.queuedAtReady} queued at ready, ${r.drain.seconds} s`, `timed out: ${r.drain.timedOut.length}, users with keys left: ${r.drain.usersWithKeysLeft}`);
  for (const run of r.server.runs) {
    const f = (s, unit) => (s ? `min ${s.min}${unit} max ${s.max}${unit} first ${s.first}${unit} last ${s.last}${unit} (n=${s.n})` : 'n/a');
    row(`server run ${run.run} (pid ${run.pid}) RSS`, f(run.rssMiB, ' MiB'));
    row(`  heap used`, f(run.heapUsedMiB, ' MiB'));
    row(`  event-loop delay p99 / 5 s`, f(run.loopDelayP99Ms, ' ms'));
    row(`  event-loop delay max / 5 s`, f(run.loopDelayMaxMs, ' ms'));
    row(`  event-loop utilisation`, f(run.eventLoopUtilization, ''));
    row(`  CPU % (of one core): server / redis / soak driver`, `mean ${run.serverCpuPct?.mean} / ${run.redisCpuPct?.mean} / ${run.driverCpuPct?.mean}`, `server max ${run.serverCpuPct?.max}`);
  }
  const w0 = Math.max(...rows.map((x) => x[0].length));
  const w1 = Math.min(70, Math.max(...rows.map((x) => x[1].length)));
  console.log(`\n${'='.repeat(w0 + w1 + 20)}\nRedMessenger soak ${r.ok ? 'PASSED' : 'FAILED'}\n${'-'.repeat(w0 + w1 + 20)}`);
  for (const [k, v, n] of rows) console.log(`${k.padEnd(w0)}  ${v.padEnd(w1)}  ${n}`);
  console.log(`${'='.repeat(w0 + w1 + 20)}\nresults: ${outFile}`);
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      console.error(`soak failed: ${err.stack || err.message}`);
      killAll();
      process.exit(2);
    },
  );
}

module.exports = { parseArgs };
