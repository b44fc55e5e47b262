'use strict';
// The scenarios. Each takes the bench context (its redis-server), the server
// kind and the scenario's counts; starts a fresh server on an emptied Redis,
// measures, stops it, and returns one flat result object.
const fs = require('node:fs');
const http = require('node:http');
const { connectPublisher } = require('./publisher');
const { Pool, Tracker, payload } = require('./clients');
const { MqttPool, connectMqttPublisher, startMosquitto } = require('./mqtt');
const { sleep, cpuMs, cpuSnapshot, cpuDelta, rssKb, peakRssKb, resetPeakRss, rssSampler, startServer, httpGet } = require('./procs');

const range = (n, prefix) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

/** What arrived and what went wrong, the same figures for every scenario (one pool or several). */
const outcome = (tracker, pool) => {
  const pools = [].concat(pool);
  const errors = pools.flatMap((p) => p.errors);
  return {
    delivered: tracker.unique,
    lost: tracker.lost,
    duplicated: tracker.duplicated,
    outOfOrder: tracker.outOfOrder,
    malformed: pools.reduce((a, p) => a + p.malformed, 0),
    errors: errors.slice(0, 5),
    errorCount: errors.length,
  };
};

/** Rejects after ms, so a phase that hangs fails its measurement instead of stalling the bench. */
function withDeadline(promise, ms, what) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Redis's own CPU time in ms, as it reports it (INFO cpu: used_cpu_sys + used_cpu_user). */
async function redisInfoCpuMs(admin) {
  const info = await withDeadline(admin.info('cpu'), 5000, 'INFO cpu');
  const field = (name) => Number((new RegExp(`^${name}:([0-9.]+)`, 'm').exec(info) || [])[1]);
  return (field('used_cpu_sys') + field('used_cpu_user')) * 1000;
}

/** The sum of every series of a Prometheus metric in /metrics text; absent counts as 0. */
function metricSum(text, name) {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    let rest = line.slice(name.length);
    if (rest[0] === '{') rest = rest.slice(rest.lastIndexOf('}') + 1);
    else if (rest[0] !== ' ') continue; // another metric whose name starts the same
    const v = Number(rest.trim().split(/\s+/)[0]);
    if (Number.isFinite(v)) sum += v;
  }
  return sum;
}

/** Each server's redmessenger_messages_routed_total, read from its GET /metrics. */
async function routedCounts(servers) {
  return Promise.all(
    servers.map(async (s) => {
      const res = await httpGet(s.port, '/metrics', 5000);
      if (!res || res.status !== 200) throw new Error(`${s.instanceId}: GET /metrics answered ${res ? res.status : 'nothing'}`);
      return metricSum(res.body, 'redmessenger_messages_routed_total');
    }),
  );
}

/**
 * PUBLISHes perUser messages to each client's channel, round-robin, pipelined
 * `chunk` at a time. With a tracker and a window, never lets more than `window`
 * messages be published and not yet received (unless receipt stalls for 2 s).
 */
async function publishRoundRobin(pub, channels, perUser, { prefix = '', chunk = 1000, window = Infinity, progress } = {}) {
  const n = channels.length;
  const total = n * perUser;
  let i = 0;
  let stalled = false;
  while (i < total) {
    const end = Math.min(total, i + chunk);
    const chs = [];
    const ps = [];
    for (; i < end; i++) {
      chs.push(channels[i % n]);
      ps.push(payload(Math.floor(i / n), prefix));
    }
    await pub.publish(chs, ps);
    if (!progress || stalled) continue;
    let seen = progress();
    let since = performance.now();
    while (i - progress() > window) {
      await sleep(1);
      const now = progress();
      if (now !== seen) {
        seen = now;
        since = performance.now();
      } else if (performance.now() - since > 2000) {
        stalled = true; // nothing arrives: publish the rest without waiting, the tracker's deadline ends the phase
        break;
      }
    }
  }
  return total;
}

/** Waits until fn() returns true, polling; false after timeoutMs. */
async function until(fn, timeoutMs, everyMs = 20) {
  const end = performance.now() + timeoutMs;
  while (performance.now() < end) {
    if (await fn()) return true;
    await sleep(everyMs);
  }
  return false;
}

function parseCommandstats(text) {
  const out = {};
  for (const line of text.split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line.trim());
    if (m) out[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) };
  }
  return out;
}

/**
 * With `run.js --profile`, RedMessenger runs with bench/lib/cpu-profile-hook.js:
 * start() and stop() bracket the measured window (SIGUSR2 each); stop() waits for the file.
 */
function profiler(server, file) {
  return {
    start() {
      if (file) process.kill(server.pid, 'SIGUSR2');
    },
    async stop() {
      if (!file) return;
      process.kill(server.pid, 'SIGUSR2');
      await until(() => fs.existsSync(file), 10000, 100);
    },
  };
}

/** n fresh servers of one kind on an emptied Redis (distinct INSTANCE_IDs when several); the first is profiled. */
async function withServers(ctx, kind, n, opts, fn) {
  await ctx.redis.admin.flushall();
  await ctx.redis.admin.config('RESETSTAT');
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const profileFile = kind === 'redmessenger' && i === 0 ? ctx.profileFile : undefined;
      const instanceId = n > 1 ? `bench-${i + 1}` : undefined;
      const server = await startServer(kind, ctx.redis.url, { ...opts, profileFile, instanceId });
      server.instanceId = instanceId ?? kind;
      server.profiler = profiler(server, profileFile);
      servers.push(server);
    }
    return await fn(servers);
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}

const withServer = (ctx, kind, opts, fn) => withServers(ctx, kind, 1, opts, ([server]) => fn(server));

/**
 * What a scenario needs of the system under test, whichever it is: its process (`server`,
 * `pid`), a pool of clients, a publisher with publish(channels, payloads), a user's
 * channel, and whether Redis figures apply. RedMessenger and the baseline: WebSocket
 * clients and PUBLISH rm.users.<id>; Mosquitto: MQTT clients and QoS 1 PUBLISH to
 * users/<id> (persistent sessions).
 */
async function withEndpoint(ctx, kind, opts, fn) {
  if (kind === 'mosquitto') {
    const broker = await startMosquitto();
    broker.profiler = profiler(broker, undefined);
    try {
      return await fn({ kind, server: broker, pid: broker.pid, redis: false, channel: (u) => `users/${u}`, pool: () => new MqttPool(broker.port), publisher: () => connectMqttPublisher(broker.port) });
    } finally {
      await broker.stop();
    }
  }
  return withServer(ctx, kind, opts, (server) =>
    fn({
      kind,
      server,
      pid: server.pid,
      redis: true,
      channel: (u) => `rm.users.${u}`,
      pool: (ack, poolOpts) => new Pool(server.url, ack, poolOpts),
      publisher: () => connectPublisher(ctx.redis.port),
    }),
  );
}

/** Waits (at most maxMs) until the server used under 5% of a core over 100 ms: done with what came before. */
async function settle(pid, maxMs = 3000) {
  const end = performance.now() + maxMs;
  let before = cpuMs(pid);
  while (performance.now() < end) {
    await sleep(100);
    const now = cpuMs(pid);
    if (now - before < 5) return true;
    before = now;
  }
  return false;
}

/** A warmup round (not counted) to the pools' open clients; then waits for the servers to go quiet. */
async function warmUp(pub, pools, channels, servers, cfg) {
  let warm = 0;
  for (const pool of pools) pool.onMessage = () => warm++;
  const warmTotal = await publishRoundRobin(pub, channels, cfg.warmupPerUser, { prefix: 'w', window: cfg.window, progress: () => warm });
  if (!(await until(() => warm >= warmTotal, 20000))) pools[0].errors.push(`warmup: ${warm}/${warmTotal} arrived`);
  for (const pool of pools) pool.flushAll();
  await sleep(100);
  for (const server of servers) await settle(server.pid);
  for (const pool of pools) {
    pool.ackFrames = 0;
    pool.ackedIds = 0;
  }
}

/** Opens the clients (Mosquitto's: connected and subscribed), runs a warmup round (not counted), returns the pool. */
async function warmPool(ep, pub, cfg) {
  const pool = ep.pool(cfg.ack);
  await pool.open(range(cfg.clients, 'u'));
  const channels = pool.clients.map((c) => c.channel);
  await warmUp(pub, [pool], channels, [ep.server], cfg);
  return { pool, channels };
}

/**
 * The measured phase of online, burst and instances: perUser messages to each
 * channel round-robin, at most `window` ahead of receipt (Infinity: unpaced,
 * no waiting on receipts), then the delivery figures. CPU of all the servers is
 * summed; Redis CPU both from /proc and from its own INFO cpu (none for Mosquitto).
 */
async function measurePush(ctx, servers, pub, pools, channels, { perUser, window, deadlineMs }) {
  const { admin } = ctx.redis;
  const withRedis = servers[0].kind !== 'mosquitto';
  const tracker = new Tracker(
    pools.flatMap((p) => p.clients),
    perUser,
  );
  for (const pool of pools) pool.onMessage = tracker.handler;
  if (withRedis) await admin.config('RESETSTAT');
  servers[0].profiler.start();
  const pids = { redis: ctx.redis.pid };
  servers.forEach((s, i) => (pids[`server${i}`] = s.pid));
  const redis0 = withRedis ? await redisInfoCpuMs(admin) : 0;
  const s0 = cpuSnapshot(pids);
  const t0 = performance.now();
  const progress = window === Infinity ? undefined : () => tracker.unique;
  const published = await withDeadline(publishRoundRobin(pub, channels, perUser, { window, progress }), deadlineMs, 'publishing');
  const tPublished = performance.now();
  const complete = await tracker.done(deadlineMs);
  for (const pool of pools) pool.flushAll();
  await sleep(300); // the last acks reach the server
  const s1 = cpuSnapshot(pids);
  const redis1 = withRedis ? await redisInfoCpuMs(admin) : 0;
  const stats = withRedis ? parseCommandstats(await withDeadline(admin.info('commandstats'), 5000, 'INFO commandstats')) : {};
  await servers[0].profiler.stop();
  const cpu = cpuDelta(s0, s1);
  // Not the server's: the bench's own PUBLISHes and its CONFIG RESETSTAT (INFO is not counted in its own answer).
  let redisCommands = 0;
  for (const [name, { calls }] of Object.entries(stats)) if (!/^(config|info)/.test(name)) redisCommands += calls;
  redisCommands -= published;
  const scripts = (stats.evalsha?.calls ?? 0) + (stats.eval?.calls ?? 0);
  const delivered = tracker.unique;
  const activeMs = tracker.lastAt - t0;
  const serverCpuMs = servers.reduce((sum, _, i) => sum + cpu.cpuMs[`server${i}`], 0);
  const ackFrames = pools.reduce((a, p) => a + p.ackFrames, 0);
  const redisFigures = withRedis
    ? {
        redisCpuUsPerMsg: (cpu.cpuMs.redis * 1000) / delivered,
        redisInfoCpuUsPerMsg: ((redis1 - redis0) * 1000) / delivered,
        redisCommands,
        redisCommandsPerMsg: redisCommands / delivered,
        redisScriptCallsPerMsg: scripts / delivered,
        commandstats: Object.fromEntries(Object.entries(stats).map(([k, v]) => [k, v.calls])),
        redisUsecPerMsg: Object.values(stats).reduce((a, v) => a + v.usec, 0) / delivered,
      }
    : {};
  return {
    published,
    complete,
    ...outcome(tracker, pools),
    publishErrors: pub.errors,
    publishMs: tPublished - t0,
    publishPerSec: published / ((tPublished - t0) / 1000),
    deliveryMs: activeMs,
    deliveredPerSec: delivered / (activeMs / 1000),
    serverCpuMs,
    serverCpuUsPerMsg: (serverCpuMs * 1000) / delivered,
    serverCpuPct: (100 * serverCpuMs) / cpu.wallMs,
    benchCpuPct: cpu.benchCpuPct,
    machineBusyPct: cpu.machineBusyPct,
    otherCpuPct: cpu.otherCpuPct,
    ackFrames,
    ackFramesPerMsg: ackFrames / delivered,
    ...redisFigures,
  };
}

/** 1,000 identified clients, 100,000 messages round-robin, pipelined, `window` ahead of receipt at most; acks in batches. */
function push(ctx, kind, cfg, window) {
  return withEndpoint(ctx, kind, { maxInflight: cfg.maxInflight }, async (ep) => {
    const pub = await ep.publisher();
    let pool;
    try {
      const warmed = await warmPool(ep, pub, cfg);
      pool = warmed.pool;
      const r = await measurePush(ctx, [ep.server], pub, [pool], warmed.channels, { perUser: cfg.perUser, window, deadlineMs: cfg.deadlineMs });
      return { clients: cfg.clients, window, ...r, rssKbAfter: rssKb(ep.pid) };
    } finally {
      if (pool) await pool.close();
      pub.close();
    }
  });
}

/** Windowed: the publisher stays at most cfg.window messages ahead of receipt. */
const online = (ctx, kind, cfg) => push(ctx, kind, cfg, cfg.window);

/** Unpaced: published as fast as Redis (Mosquitto: its PUBACKs) answers the pipelined chunks, never waiting on receipts. */
const burst = (ctx, kind, cfg) => push(ctx, kind, cfg, Infinity);

/**
 * The online setup at a paced rate: publish-to-receipt latency, the server's CPU and
 * Redis's (INFO cpu) per message. cfg.ack is the SDK's ack policy (run.js).
 */
async function latency(ctx, kind, cfg) {
  return withEndpoint(ctx, kind, { maxInflight: cfg.maxInflight }, async (ep) => {
    const pub = await ep.publisher();
    const { admin } = ctx.redis;
    let pool;
    try {
      const warmed = await warmPool(ep, pub, cfg);
      pool = warmed.pool;
      const channels = warmed.channels;
      const n = channels.length;
      const perUser = Math.ceil(cfg.total / n);
      const total = perUser * n;
      const tracker = new Tracker(pool.clients, perUser, { latencies: true });
      pool.onMessage = tracker.handler;
      const pids = { server: ep.pid, redis: ctx.redis.pid };
      ep.server.profiler.start();
      const redis0 = ep.redis ? await redisInfoCpuMs(admin) : 0;
      if (ep.redis) await admin.config('RESETSTAT');
      const netIn0 = ep.redis ? Number(/total_net_input_bytes:(\d+)/.exec(await admin.info('stats'))?.[1] ?? 0) : 0;
      const s0 = cpuSnapshot(pids);
      const start = performance.now();
      let sent = 0;
      let lateTicks = 0;
      while (sent < total) {
        const due = Math.min(total, Math.floor(((performance.now() - start) * cfg.rate) / 1000) + 1);
        if (due - sent > cfg.rate / 100) lateTicks++; // the publisher fell > 10 ms behind its pace
        if (due > sent) {
          const chs = [];
          const ps = [];
          for (; sent < due; sent++) {
            chs.push(channels[sent % n]);
            ps.push(payload(Math.floor(sent / n)));
          }
          void pub.publish(chs, ps);
        }
        await sleep(1);
      }
      const sendMs = performance.now() - start;
      const complete = await tracker.done(cfg.deadlineMs);
      pool.flushAll();
      await sleep(50); // the last acks (the SDK's 10 ms timer) are in the window, as the rest were
      const s1 = cpuSnapshot(pids);
      const redis1 = ep.redis ? await redisInfoCpuMs(admin) : 0;
      // Where Redis's time went (µs per delivered message by command): the profile `INFO cpu` does not give.
      const commands = ep.redis ? parseCommandstats(await admin.info('commandstats')) : {};
      const netIn1 = ep.redis ? Number(/total_net_input_bytes:(\d+)/.exec(await admin.info('stats'))?.[1] ?? 0) : 0;
      await ep.server.profiler.stop();
      const cpu = cpuDelta(s0, s1);
      const lat = tracker.latencyStats() ?? {};
      return {
        clients: cfg.clients,
        rate: cfg.rate,
        published: total,
        achievedRate: total / (sendMs / 1000),
        lateTicks,
        publishErrors: pub.errors,
        complete,
        ...outcome(tracker, pool),
        p50Ms: lat.p50,
        p90Ms: lat.p90,
        p99Ms: lat.p99,
        p999Ms: lat.p999,
        maxMs: lat.max,
        serverCpuPct: (100 * cpu.cpuMs.server) / cpu.wallMs,
        serverCpuUsPerMsg: (cpu.cpuMs.server * 1000) / tracker.unique,
        redisInfoCpuUsPerMsg: ep.redis ? ((redis1 - redis0) * 1000) / tracker.unique : undefined,
        benchCpuPct: cpu.benchCpuPct,
        machineBusyPct: cpu.machineBusyPct,
        otherCpuPct: cpu.otherCpuPct,
        ackFramesPerMsg: pool.ackFrames / tracker.unique,
        // Everything Redis read (the publisher's PUBLISHes too): what the server writes to it per message shows as the rest.
        redisInputBytesPerMsg: ep.redis ? (netIn1 - netIn0) / tracker.unique : undefined,
        redisUsPerMsgByCommand: Object.fromEntries(Object.entries(commands).map(([name, { calls, usec }]) => [name, { callsPerMsg: calls / tracker.unique, usPerMsg: usec / tracker.unique }])),
      };
    } finally {
      if (pool) await pool.close();
      pub.close();
    }
  });
}

/** Mosquitto keeps what comes for an offline client only for a session it knows: connect (persistent) and subscribe, then go. */
async function mqttSessions(ep, users, cfg) {
  const pool = ep.pool();
  try {
    await pool.open(users, { concurrency: 200, localAddresses: cfg.localAddresses });
  } finally {
    await pool.close();
  }
  if (pool.errors.length) throw new Error(`registering ${users.length} sessions: ${pool.errors[0]}`);
}

/** RedMessenger's messages_queued_total (its GET /metrics). */
const queuedTotal = async (server) => metricSum((await httpGet(server.port, '/metrics', 5000))?.body ?? '', 'redmessenger_messages_queued_total');

/**
 * Queues perUser messages for each of users while they are offline (Mosquitto: once each
 * has a persistent session; a PUBACK means stored), then their sockets open and they
 * identify (send CONNECT) at once.
 */
async function drainCase(ctx, ep, pub, users, perUser, cfg, prof) {
  if (!ep.redis) await mqttSessions(ep, users, cfg);
  const channels = users.map(ep.channel);
  const total = await publishRoundRobin(pub, channels, perUser);
  const queued = async () => {
    const pipe = ctx.redis.admin.pipeline();
    for (const u of users) pipe.llen(`rm:users:${u}:messages`);
    return (await pipe.exec()).reduce((sum, [, len]) => sum + Number(len), 0);
  };
  const allQueued = ep.redis ? await until(async () => (await queued()) >= total, cfg.queueDeadlineMs, 100) : true;
  const queuedCount = ep.redis ? await queued() : total;
  const pool = ep.pool(cfg.ack);
  try {
    await pool.open(users, { identify: false });
    const tracker = new Tracker(pool.clients, perUser);
    pool.onMessage = tracker.handler;
    const pids = { server: ep.pid, redis: ctx.redis.pid };
    prof?.start();
    const s0 = cpuSnapshot(pids);
    const t0 = performance.now();
    const readies = await Promise.all(pool.clients.map((c) => c.identify()));
    const complete = await tracker.done(cfg.deadlineMs);
    const s1 = cpuSnapshot(pids);
    await prof?.stop();
    pool.flushAll();
    await sleep(300); // the last acks reach the server before the sockets close
    const cpu = cpuDelta(s0, s1);
    const ttf = pool.clients.map((c) => (c.state.firstAt ? c.state.firstAt - c.identifiedAt : Infinity)).sort((a, b) => a - b);
    const ready = pool.clients.map((c) => c.readyAt - c.identifiedAt).sort((a, b) => a - b);
    const mid = (a) => a[Math.floor(a.length / 2)];
    return {
      users: users.length,
      perUser,
      published: total,
      allQueued,
      queued: queuedCount,
      readyQueued: readies.reduce((a, r) => a + (r?.queued || 0), 0),
      complete,
      ...outcome(tracker, pool),
      drainMs: tracker.lastAt - t0,
      msgPerSec: tracker.unique / ((tracker.lastAt - t0) / 1000),
      readyMsP50: mid(ready),
      firstMsP50: mid(ttf),
      firstMsMax: ttf[ttf.length - 1],
      serverCpuUsPerMsg: (cpu.cpuMs.server * 1000) / tracker.unique,
      redisCpuUsPerMsg: ep.redis ? (cpu.cpuMs.redis * 1000) / tracker.unique : undefined,
      benchCpuPct: cpu.benchCpuPct,
      otherCpuPct: cpu.otherCpuPct,
    };
  } finally {
    await pool.close();
  }
}

/** 100,000 queued for one offline user, then 1,000 for each of 100 users. The baseline has no queue. */
async function drain(ctx, kind, cfg) {
  if (kind === 'baseline') return { na: true };
  return withEndpoint(ctx, kind, { maxInflight: cfg.maxInflight }, async (ep) => {
    const pub = await ep.publisher();
    try {
      const one = await drainCase(ctx, ep, pub, ['drain-one'], cfg.oneBacklog, cfg, ep.server.profiler);
      const many = await drainCase(ctx, ep, pub, range(cfg.manyUsers, 'drain-many-'), cfg.manyBacklog, cfg);
      const flat = {};
      for (const [k, v] of Object.entries(one)) flat[`one_${k}`] = v;
      for (const [k, v] of Object.entries(many)) flat[`many_${k}`] = v;
      return flat;
    } finally {
      pub.close();
    }
  });
}

/** The median of three RSS samples 100 ms apart, KiB. */
async function rssSample(pid) {
  const s = [];
  for (let i = 0; i < 3; i++) {
    s.push(rssKb(pid));
    await sleep(100);
  }
  return s.sort((a, b) => a - b)[1];
}

/** Identified sockets (Mosquitto: connected, subscribed clients) doing nothing: the server's RSS per socket. */
async function idle(ctx, kind, cfg) {
  return withEndpoint(ctx, kind, { maxInflight: cfg.maxInflight }, async (ep) => {
    await sleep(1000);
    const rss0 = await rssSample(ep.pid);
    const pool = ep.pool(cfg.ack);
    try {
      ep.server.profiler.start();
      const s0 = cpuSnapshot({ server: ep.pid });
      const t0 = performance.now();
      await pool.open(range(cfg.sockets, 'idle-'), { concurrency: cfg.concurrency, localAddresses: cfg.localAddresses });
      const openMs = performance.now() - t0;
      const s1 = cpuSnapshot({ server: ep.pid });
      await ep.server.profiler.stop();
      await sleep(cfg.settleMs);
      const rss1 = await rssSample(ep.pid);
      return {
        sockets: cfg.sockets,
        open: pool.clients.filter((c) => c.readyAt > 0).length,
        errors: pool.errors.slice(0, 5),
        errorCount: pool.errors.length,
        openMs,
        identifyCpuUsPerSocket: (cpuDelta(s0, s1).cpuMs.server * 1000) / cfg.sockets,
        rssKbBefore: rss0,
        rssKbAfter: rss1,
        rssKbPerSocket: (rss1 - rss0) / cfg.sockets,
      };
    } finally {
      await pool.close();
    }
  });
}

/**
 * A reconnect storm: `users` offline users with `perUser` messages queued each (published
 * while they were offline), then every socket opens and identifies at once (Mosquitto:
 * connects to its persistent session). Figures: time until every message arrived, time
 * to the first message (any user; and each user's, p50 and p99), from the storm's start; the server's RSS
 * peak over the storm (VmHWM after a reset, and VmRSS sampled every 50 ms), and, for
 * RedMessenger, the RSS of as many idle identified sockets on a fresh server, which the
 * peak is held against.
 */
async function storm(ctx, kind, cfg) {
  if (kind === 'baseline') return { na: true };
  const users = range(cfg.users, 'storm-');
  const opts = { maxInflight: cfg.maxInflight };
  let idleRssKb;
  if (kind === 'redmessenger') {
    idleRssKb = await withEndpoint(ctx, kind, opts, async (ep) => {
      const pool = ep.pool(cfg.ack);
      try {
        await pool.open(users, { concurrency: 200, localAddresses: cfg.localAddresses });
        await sleep(cfg.settleMs);
        return await rssSample(ep.pid);
      } finally {
        await pool.close();
      }
    });
  }
  return withEndpoint(ctx, kind, opts, async (ep) => {
    const pub = await ep.publisher();
    const pool = ep.pool(cfg.ack);
    try {
      if (!ep.redis) await mqttSessions(ep, users, cfg);
      const queued0 = ep.redis ? await queuedTotal(ep.server) : 0;
      const total = await publishRoundRobin(pub, users.map(ep.channel), cfg.perUser);
      if (ep.redis && !(await until(async () => (await queuedTotal(ep.server)) - queued0 >= total, cfg.deadlineMs, 100))) {
        throw new Error(`only ${(await queuedTotal(ep.server)) - queued0} of ${total} messages queued`);
      }
      await settle(ep.pid, 5000);
      const clients = pool.add(users, { localAddresses: cfg.localAddresses });
      const tracker = new Tracker(clients, cfg.perUser);
      pool.onMessage = tracker.handler;
      const rssBefore = rssKb(ep.pid);
      const hwmReset = resetPeakRss(ep.pid);
      const sampler = rssSampler(ep.pid, 50);
      const pids = { server: ep.pid, redis: ctx.redis.pid };
      ep.server.profiler.start();
      const s0 = cpuSnapshot(pids);
      const t0 = performance.now();
      let identified = 0;
      for (const c of clients) {
        c.open(cfg.connectTimeoutMs)
          .then(() => c.identify(cfg.connectTimeoutMs))
          .then(() => identified++)
          .catch((error) => pool.errors.push(`${c.user}: ${error.message}`));
      }
      // All at once, as after a network blip: one synchronous loop, so nothing (no 101, no message) is read before
      // the last socket is created; its time is reported, as the floor of "first message" on this bench.
      const openedMs = performance.now() - t0;
      const complete = await tracker.done(cfg.deadlineMs, cfg.deadlineMs);
      const s1 = cpuSnapshot(pids);
      const sampled = await sampler.stop();
      const hwm = hwmReset ? peakRssKb(ep.pid) : undefined;
      await ep.server.profiler.stop();
      pool.flushAll();
      await sleep(300);
      const cpu = cpuDelta(s0, s1);
      const firsts = clients.map((c) => (c.state.firstAt ? c.state.firstAt - t0 : Infinity)).sort((a, b) => a - b);
      const readies = clients.map((c) => (c.readyAt ? c.readyAt - t0 : Infinity)).sort((a, b) => a - b);
      const q = (a, p) => a[Math.min(a.length - 1, Math.floor(p * a.length))];
      const peak = Math.max(hwm ?? 0, sampled.maxKb);
      return {
        users: users.length,
        perUser: cfg.perUser,
        published: total,
        identified,
        complete,
        ...outcome(tracker, pool),
        doneMs: complete ? tracker.lastAt - t0 : undefined,
        doneS: complete ? (tracker.lastAt - t0) / 1000 : undefined,
        firstMs: tracker.firstAt ? tracker.firstAt - t0 : undefined,
        openLoopMs: openedMs,
        firstMsP50: q(firsts, 0.5),
        firstMsP99: q(firsts, 0.99),
        readyMsP50: q(readies, 0.5),
        readyMsMax: readies[readies.length - 1],
        rssKbBefore: rssBefore,
        rssPeakKb: peak,
        rssPeakSampledKb: sampled.maxKb,
        rssSamples: sampled.samples,
        rssPeakHwmKb: hwm,
        idleRssKb,
        rssPeakOverIdle: idleRssKb ? peak / idleRssKb : undefined,
        serverCpuUsPerMsg: (cpu.cpuMs.server * 1000) / Math.max(1, tracker.unique),
        serverCpuPct: (100 * cpu.cpuMs.server) / cpu.wallMs,
        benchCpuPct: cpu.benchCpuPct,
        otherCpuPct: cpu.otherCpuPct,
      };
    } finally {
      await pool.close();
      pub.close();
    }
  });
}

/**
 * Group fan-out: one group of `members` (SADD rm:channels:<cid>:subscribers), `online` of
 * them identified (spread over the set), one PUBLISH rm.channels.<cid>. Figures: time until
 * every member's copy is stored or delivered (redmessenger_messages_routed_total has grown
 * by `members`, polled every 20 ms), time until every online member got it, the server's
 * and Redis's CPU per member; then each offline member's queue must hold exactly the one
 * message. RedMessenger only (the pipe and Mosquitto have no groups).
 */
async function fanout(ctx, kind, cfg) {
  if (kind !== 'redmessenger') return { na: true };
  const cid = 'bench-group';
  return withServer(ctx, kind, { maxInflight: cfg.maxInflight }, async (server) => {
    const { admin } = ctx.redis;
    const members = range(cfg.members, 'fan-');
    for (let i = 0; i < members.length; i += 10000) await admin.sadd(`rm:channels:${cid}:subscribers`, ...members.slice(i, i + 10000));
    const step = Math.floor(cfg.members / cfg.online);
    const onlineUsers = Array.from({ length: cfg.online }, (_, i) => members[i * step]);
    const pool = new Pool(server.url, cfg.ack, { groupChannel: `rm.channels.${cid}` });
    const pub = await connectPublisher(ctx.redis.port);
    const routed = async () => metricSum((await httpGet(server.port, '/metrics', 5000))?.body ?? '', 'redmessenger_messages_routed_total');
    try {
      await pool.open(onlineUsers, { concurrency: 200 });
      const tracker = new Tracker(pool.clients, 1);
      pool.onMessage = tracker.handler;
      await settle(server.pid);
      const routed0 = await routed();
      const pids = { server: server.pid, redis: ctx.redis.pid };
      const redis0 = await redisInfoCpuMs(admin);
      server.profiler.start();
      const s0 = cpuSnapshot(pids);
      const t0 = performance.now();
      await pub.publish([`rm.channels.${cid}`], [payload(0)]);
      let storedAt;
      const stored = await until(
        async () => {
          const done = (await routed()) - routed0 >= cfg.members;
          if (done) storedAt = performance.now();
          return done;
        },
        cfg.deadlineMs,
        50, // each poll renders /metrics on the server: often enough to time 1.5 s, rarely enough to cost it little
      );
      const onlineDone = await tracker.done(cfg.deadlineMs);
      const s1 = cpuSnapshot(pids);
      await server.profiler.stop();
      const redis1 = await redisInfoCpuMs(admin);
      pool.flushAll();
      await sleep(300);
      const cpu = cpuDelta(s0, s1);
      // Every offline member's queue holds the one message.
      const isOnline = new Set(onlineUsers);
      const offline = members.filter((m) => !isOnline.has(m));
      let queued = 0;
      let missing = 0;
      let extra = 0;
      for (let i = 0; i < offline.length; i += 10000) {
        const pipe = admin.pipeline();
        for (const m of offline.slice(i, i + 10000)) pipe.llen(`rm:users:${m}:messages`);
        for (const [, len] of await pipe.exec()) {
          queued += Number(len);
          if (Number(len) === 0) missing++;
          else extra += Number(len) - 1;
        }
      }
      const o = outcome(tracker, pool);
      const onlineMs = onlineDone ? tracker.lastAt - t0 : undefined;
      const storedMs = stored ? storedAt - t0 : undefined;
      return {
        members: cfg.members,
        online: cfg.online,
        ...o,
        queued,
        // Online members who did not get it (twice) and offline members whose queue does not hold it (more than once).
        lost: o.lost + missing,
        duplicated: o.duplicated + extra,
        storedMs,
        onlineMs,
        onlineFirstMs: tracker.firstAt ? tracker.firstAt - t0 : undefined,
        allMs: storedMs !== undefined && onlineMs !== undefined ? Math.max(storedMs, onlineMs) : undefined,
        serverCpuUsPerMember: (cpu.cpuMs.server * 1000) / cfg.members,
        redisCpuUsPerMember: ((redis1 - redis0) * 1000) / cfg.members,
        benchCpuPct: cpu.benchCpuPct,
        otherCpuPct: cpu.otherCpuPct,
      };
    } finally {
      await pool.close();
      pub.close();
    }
  });
}

/**
 * N servers on one Redis, clientsPerInstance distinct users connected to each;
 * the online publisher round-robin over all of them. How the routing is shared
 * comes from each instance's redmessenger_messages_routed_total.
 */
async function instancesRun(ctx, kind, cfg, n, clientsPerInstance) {
  return withServers(ctx, kind, n, { maxInflight: cfg.maxInflight }, async (servers) => {
    // Every instance answers /metrics, then a few seconds so that routing settles (leases, joins).
    for (const s of servers) {
      if (!(await until(async () => (await httpGet(s.port, '/metrics', 1000))?.status === 200, 10000, 100))) {
        throw new Error(`${s.instanceId}: GET /metrics did not answer 200 within 10 s`);
      }
    }
    await sleep(cfg.settleMs);
    const pub = await connectPublisher(ctx.redis.port);
    const pools = [];
    try {
      for (let k = 0; k < n; k++) {
        const pool = new Pool(servers[k].url, cfg.ack);
        pools.push(pool);
        await pool.open(range(clientsPerInstance, `i${k}-u`));
      }
      // Interleaved, so every chunk of the publisher reaches users of every instance.
      const channels = [];
      for (let j = 0; j < clientsPerInstance; j++) for (const pool of pools) channels.push(pool.clients[j].channel);
      await warmUp(pub, pools, channels, servers, cfg);
      const before = await routedCounts(servers);
      const r = await measurePush(ctx, servers, pub, pools, channels, { perUser: cfg.perUser, window: cfg.window, deadlineMs: cfg.deadlineMs });
      const after = await routedCounts(servers);
      const routed = after.map((a, i) => a - before[i]);
      const sum = routed.reduce((a, b) => a + b, 0);
      const shares = sum > 0 ? routed.map((x) => x / sum) : undefined;
      return {
        instances: n,
        clientsPerInstance,
        ...r,
        routed,
        routedShares: shares,
        // The worst instance's distance from an even share, in % of 1/N.
        routedShareMaxDevPct: shares ? Math.max(...shares.map((x) => Math.abs(x - 1 / n) * n * 100)) : undefined,
        rssKbAfter: servers.map((s) => rssKb(s.pid)),
      };
    } finally {
      for (const pool of pools) await pool.close();
      pub.close();
    }
  });
}

/**
 * Three instances, then the same load (all the users, the same messages) on one
 * instance: total server CPU per message of the three against the one's. The
 * baseline and Mosquitto have no instances.
 */
async function instances(ctx, kind, cfg) {
  if (kind !== 'redmessenger') return { na: true };
  const many = await instancesRun(ctx, kind, cfg, cfg.instances, cfg.clientsPerInstance);
  const profileFile = ctx.profileFile;
  ctx.profileFile = undefined; // the profile is of the first of the three
  let one;
  try {
    one = await instancesRun(ctx, kind, cfg, 1, cfg.instances * cfg.clientsPerInstance);
  } finally {
    ctx.profileFile = profileFile;
  }
  const flat = { ...many };
  for (const k of ['deliveredPerSec', 'serverCpuUsPerMsg', 'serverCpuPct', 'lost', 'duplicated', 'outOfOrder', 'otherCpuPct', 'benchCpuPct', 'errorCount', 'errors', 'complete']) flat[`one_${k}`] = one[k];
  flat.cpuVsOne = many.serverCpuUsPerMsg / one.serverCpuUsPerMsg;
  return flat;
}

const PUBLISH_KEY = 'bench-publish-key-0123456789';

/** POSTs every body to /v1/messages, `concurrency` in flight on keep-alive connections; resolves with the statuses seen. */
function postAll(port, bodies, concurrency) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const statuses = {};
  let next = 0;
  const one = () =>
    new Promise((resolve) => {
      const body = bodies[next++];
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          path: '/v1/messages',
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${PUBLISH_KEY}`, 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode));
        },
      );
      req.on('error', () => resolve('error'));
      req.end(body);
    });
  const worker = async () => {
    while (next < bodies.length) {
      const status = await one();
      statuses[status] = (statuses[status] ?? 0) + 1;
    }
  };
  return Promise.all(Array.from({ length: concurrency }, worker)).then(() => {
    agent.destroy();
    return statuses;
  });
}

/** XINFO GROUPS of rm:inbox: pending + lag of the redmessenger group (undefined before it exists). */
async function inboxLeft(admin) {
  const groups = await admin.xinfo('GROUPS', 'rm:inbox').catch(() => []);
  for (const flat of groups) {
    const info = {};
    for (let i = 0; i + 1 < flat.length; i += 2) info[flat[i]] = flat[i + 1];
    if (info.name === 'redmessenger') return Number(info.pending) + Number(info.lag ?? 0);
  }
  return undefined;
}

/**
 * The publish paths, one after the other against one server, each `messages` to
 * `users` offline users (so each message is queued): raw PUBLISH (time until all are
 * queued, from messages_queued_total), POST /v1/messages with `concurrency` requests in
 * flight (time until the last 202), and XADD to rm:inbox pipelined (time until the
 * group has acknowledged every entry).
 */
async function publish(ctx, kind, cfg) {
  if (kind === 'baseline') return { na: true };
  return withServer(ctx, kind, { env: { PUBLISH_API_KEYS: PUBLISH_KEY } }, async (server) => {
    const { admin } = ctx.redis;
    const queuedTotal = async () => metricSum((await httpGet(server.port, '/metrics', 5000))?.body ?? '', 'redmessenger_messages_queued_total');
    const users = (prefix) => range(cfg.users, prefix);
    const errors = [];

    // Raw PUBLISH: pipelined in chunks, timed until the server has queued every one.
    const pub = await connectPublisher(ctx.redis.port);
    const rawUsers = users('raw-u');
    const channels = [];
    const payloads = [];
    for (let i = 0; i < cfg.messages; i++) {
      channels.push(`rm.users.${rawUsers[i % cfg.users]}`);
      payloads.push(payload(i));
    }
    const base = await queuedTotal();
    let t0 = performance.now();
    for (let i = 0; i < cfg.messages; i += 1000) await pub.publish(channels.slice(i, i + 1000), payloads.slice(i, i + 1000));
    const rawDone = await until(async () => (await queuedTotal()) - base >= cfg.messages, cfg.deadlineMs, 20);
    const rawMs = performance.now() - t0;
    pub.close();
    if (!rawDone) errors.push(`raw: ${(await queuedTotal()) - base}/${cfg.messages} queued`);

    // HTTP: concurrent keep-alive requests, each answered once stored.
    const httpUsers = users('http-u');
    const bodies = Array.from({ length: cfg.messages }, (_, i) => JSON.stringify({ to: httpUsers[i % cfg.users], payload: payload(i) }));
    t0 = performance.now();
    const statuses = await withDeadline(postAll(server.port, bodies, cfg.concurrency), cfg.deadlineMs, 'HTTP publish');
    const httpMs = performance.now() - t0;
    if (statuses[202] !== cfg.messages) errors.push(`http: statuses ${JSON.stringify(statuses)}`);

    // Inbox: XADD pipelined, timed until the group has stored and acknowledged all.
    const inboxUsers = users('inbox-u');
    t0 = performance.now();
    for (let i = 0; i < cfg.messages; i += 1000) {
      const pipeline = admin.pipeline();
      for (let j = i; j < Math.min(i + 1000, cfg.messages); j++) pipeline.xadd('rm:inbox', '*', 'to', inboxUsers[j % cfg.users], 'payload', payload(j));
      await pipeline.exec();
    }
    const inboxDone = await until(async () => (await admin.xlen('rm:inbox')) >= cfg.messages && (await inboxLeft(admin)) === 0, cfg.deadlineMs, 20);
    const inboxMs = performance.now() - t0;
    if (!inboxDone) errors.push(`inbox: ${await inboxLeft(admin)} entries left`);

    const queuedLens = await Promise.all([...users('http-u'), ...users('inbox-u')].map((u) => admin.llen(`rm:users:${u}:messages`)));
    const stored = queuedLens.reduce((a, b) => a + b, 0);
    if (stored !== 2 * cfg.messages) errors.push(`stored ${stored} of ${2 * cfg.messages} HTTP + inbox messages`);
    return {
      messages: cfg.messages,
      users: cfg.users,
      concurrency: cfg.concurrency,
      rawMsgPerSec: rawDone ? (cfg.messages / rawMs) * 1000 : undefined,
      httpReqPerSec: (cfg.messages / httpMs) * 1000,
      inboxEntriesPerSec: inboxDone ? (cfg.messages / inboxMs) * 1000 : undefined,
      lost: 2 * cfg.messages - stored,
      errors,
      errorCount: errors.length,
    };
  });
}

/**
 * Absences and retract (issue 18's load checks), one server with EVENTS_STREAM and
 * NOTIFY_AFTER_SECONDS=1: `users` offline users get one raw PUBLISH each; once all are
 * queued, the time until every one has its `notify` (redmessenger_events_total{type="notify"}),
 * with the server's and Redis's CPU per decision. Then the cost a retract adds to a long
 * queue: `retracts` DELETEs of messages spread over a `longQueue`-message queue against as
 * many on a 10-message queue, one at a time (median ms each, Redis CPU per retract).
 */
async function absence(ctx, kind, cfg) {
  if (kind === 'baseline') return { na: true };
  const env = { PUBLISH_API_KEYS: PUBLISH_KEY, EVENTS_STREAM: 'rm:events', NOTIFY_AFTER_SECONDS: '1', EVENTS_MAXLEN: String(cfg.users * 2) };
  return withServer(ctx, kind, { env }, async (server) => {
    const { admin } = ctx.redis;
    const metrics = async () => (await httpGet(server.port, '/metrics', 5000))?.body ?? '';
    const counter = async (name, label) => Number((new RegExp(`^${name}\\{${label}\\} (\\S+)$`, 'm').exec(await metrics()) || [])[1] ?? 0);
    const errors = [];

    // One message each for `users` offline users, all queued, then every absence decided.
    const pub = await connectPublisher(ctx.redis.port);
    const users = range(cfg.users, 'away-u');
    const queuedBase = metricSum(await metrics(), 'redmessenger_messages_queued_total');
    for (let i = 0; i < users.length; i += 1000) {
      const chunk = users.slice(i, i + 1000);
      await pub.publish(
        chunk.map((u) => `rm.users.${u}`),
        chunk.map((_, j) => payload(i + j)),
      );
    }
    pub.close();
    const queued = await until(async () => metricSum(await metrics(), 'redmessenger_messages_queued_total') - queuedBase >= users.length, cfg.deadlineMs, 50);
    if (!queued) errors.push('not every message was queued');
    const cpu0 = cpuSnapshot({ server: server.pid });
    const redis0 = await redisInfoCpuMs(admin);
    const t0 = performance.now();
    const notified = await until(async () => (await counter('redmessenger_events_total', 'type="notify"')) >= users.length, cfg.deadlineMs, 100);
    const notifyMs = performance.now() - t0;
    const cpu = cpuDelta(cpu0, cpuSnapshot({ server: server.pid }));
    const redisMs = (await redisInfoCpuMs(admin)) - redis0;
    const notifies = await counter('redmessenger_events_total', 'type="notify"');
    if (!notified) errors.push(`${notifies} of ${users.length} notify events`);

    // Retract: DELETEs of messages spread over a long queue, then over a short one.
    const retractTimes = async (user, n) => {
      const body = (i) => JSON.stringify({ to: user, payload: payload(i) });
      const statuses = await postAll(
        server.port,
        Array.from({ length: n }, (_, i) => body(i)),
        16,
      );
      if (statuses[202] !== n) errors.push(`queueing for ${user}: ${JSON.stringify(statuses)}`);
      const ids = (await admin.lrange(`rm:users:${user}:messages`, 0, -1)).map((e) => JSON.parse(e).rm.id);
      const picks = Array.from({ length: Math.min(cfg.retracts, ids.length) }, (_, i) => ids[Math.floor(((i + 0.5) * ids.length) / Math.min(cfg.retracts, ids.length))]);
      const times = [];
      const redisBefore = await redisInfoCpuMs(admin);
      for (const id of picks) {
        const t = performance.now();
        const res = await fetch(`http://127.0.0.1:${server.port}/v1/messages/${id}?to=${user}`, { method: 'DELETE', headers: { authorization: `Bearer ${PUBLISH_KEY}` } });
        await res.text();
        times.push(performance.now() - t);
        if (res.status !== 200) errors.push(`DELETE ${id}: ${res.status}`);
      }
      const redisPer = ((await redisInfoCpuMs(admin)) - redisBefore) / picks.length;
      times.sort((a, b) => a - b);
      return { ms: times[Math.floor(times.length / 2)], redisUs: redisPer * 1000 };
    };
    const long = await retractTimes('retract-long', cfg.longQueue);
    const short = await retractTimes('retract-short', 10);

    return {
      users: users.length,
      notifyDecisionsPerSec: notified ? (users.length / notifyMs) * 1000 : undefined,
      notifyServerCpuUsPer: (cpu.cpuMs.server * 1000) / Math.max(1, notifies),
      notifyRedisCpuUsPer: (redisMs * 1000) / Math.max(1, notifies),
      retractLongMs: long.ms,
      retractShortMs: short.ms,
      retractLongRedisUs: long.redisUs,
      retractShortRedisUs: short.redisUs,
      errors,
      errorCount: errors.length,
    };
  });
}

module.exports = { online, burst, latency, drain, idle, instances, publish, absence, storm, fanout, parseCommandstats, metricSum };
