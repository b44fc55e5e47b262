'use strict';
// The scenarios. Each takes the bench context (its redis-server), the server
// kind and the scenario's counts; starts a fresh server on an emptied Redis,
// measures, stops it, and returns one flat result object.
const fs = require('node:fs');
const { connectPublisher } = require('./publisher');
const { Pool, Tracker, payload } = require('./clients');
const { sleep, cpuMs, cpuSnapshot, cpuDelta, rssKb, startServer } = require('./procs');

const range = (n, prefix) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

/** What arrived and what went wrong, the same figures for every scenario. */
const outcome = (tracker, pool) => ({
  delivered: tracker.unique,
  lost: tracker.lost,
  duplicated: tracker.duplicated,
  outOfOrder: tracker.outOfOrder,
  malformed: pool.malformed,
  errors: pool.errors.slice(0, 5),
  errorCount: pool.errors.length,
});


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

async function withServer(ctx, kind, opts, fn) {
  await ctx.redis.admin.flushall();
  await ctx.redis.admin.config('RESETSTAT');
  const profileFile = kind === 'redmessenger' ? ctx.profileFile : undefined;
  const server = await startServer(kind, ctx.redis.url, { ...opts, profileFile });
  server.profiler = profiler(server, profileFile);
  try {
    return await fn(server);
  } finally {
    await server.stop();
  }
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

/** Opens the clients, runs a warmup round (not counted), returns the pool. */
async function warmPool(server, pub, cfg) {
  const pool = new Pool(server.url, cfg.ack);
  await pool.open(range(cfg.clients, 'u'));
  let warm = 0;
  pool.onMessage = () => warm++;
  const channels = pool.clients.map((c) => c.channel);
  const warmTotal = await publishRoundRobin(pub, channels, cfg.warmupPerUser, { prefix: 'w', window: cfg.window, progress: () => warm });
  if (!(await until(() => warm >= warmTotal, 20000))) pool.errors.push(`warmup: ${warm}/${warmTotal} arrived`);
  pool.flushAll();
  await sleep(100);
  await settle(server.pid);
  pool.ackFrames = 0;
  pool.ackedIds = 0;
  return { pool, channels };
}

/** 1,000 identified clients; 100,000 messages round-robin, pipelined; acks in batches. */
async function online(ctx, kind, cfg) {
  return withServer(ctx, kind, { maxInflight: cfg.maxInflight }, async (server) => {
    const pub = await connectPublisher(ctx.redis.port);
    let pool;
    try {
      const warmed = await warmPool(server, pub, cfg);
      pool = warmed.pool;
      const tracker = new Tracker(pool.clients, cfg.perUser);
      pool.onMessage = tracker.handler;
      await ctx.redis.admin.config('RESETSTAT');
      server.profiler.start();
      const pids = { server: server.pid, redis: ctx.redis.pid };
      const s0 = cpuSnapshot(pids);
      const t0 = performance.now();
      const published = await publishRoundRobin(pub, warmed.channels, cfg.perUser, { window: cfg.window, progress: () => tracker.unique });
      const tPublished = performance.now();
      const complete = await tracker.done(cfg.deadlineMs);
      pool.flushAll();
      await sleep(300); // the last acks reach the server
      const s1 = cpuSnapshot(pids);
      const stats = parseCommandstats(await ctx.redis.admin.info('commandstats'));
      await server.profiler.stop();
      const cpu = cpuDelta(s0, s1);
      // Not the server's: the bench's own PUBLISHes and its CONFIG RESETSTAT (INFO is not counted in its own answer).
      let redisCommands = 0;
      for (const [name, { calls }] of Object.entries(stats)) if (!/^(config|info)/.test(name)) redisCommands += calls;
      redisCommands -= published;
      const scripts = (stats.evalsha?.calls ?? 0) + (stats.eval?.calls ?? 0);
      const delivered = tracker.unique;
      const activeMs = tracker.lastAt - t0;
      return {
        clients: cfg.clients,
        published,
        complete,
        ...outcome(tracker, pool),
        publishErrors: pub.errors,
        publishMs: tPublished - t0,
        deliveryMs: activeMs,
        deliveredPerSec: delivered / (activeMs / 1000),
        serverCpuMs: cpu.cpuMs.server,
        serverCpuUsPerMsg: (cpu.cpuMs.server * 1000) / delivered,
        serverCpuPct: (100 * cpu.cpuMs.server) / cpu.wallMs,
        redisCpuUsPerMsg: (cpu.cpuMs.redis * 1000) / delivered,
        benchCpuPct: cpu.benchCpuPct,
        machineBusyPct: cpu.machineBusyPct,
        otherCpuPct: cpu.otherCpuPct,
        ackFrames: pool.ackFrames,
        ackFramesPerMsg: pool.ackFrames / delivered,
        redisCommands,
        redisCommandsPerMsg: redisCommands / delivered,
        redisScriptCallsPerMsg: scripts / delivered,
        commandstats: Object.fromEntries(Object.entries(stats).map(([k, v]) => [k, v.calls])),
        redisUsecPerMsg: Object.values(stats).reduce((a, v) => a + v.usec, 0) / delivered,
        rssKbAfter: rssKb(server.pid),
      };
    } finally {
      if (pool) await pool.close();
      pub.close();
    }
  });
}

/** The online setup at a paced rate: publish-to-receipt latency. */
async function latency(ctx, kind, cfg) {
  return withServer(ctx, kind, { maxInflight: cfg.maxInflight }, async (server) => {
    const pub = await connectPublisher(ctx.redis.port);
    let pool;
    try {
      const warmed = await warmPool(server, pub, cfg);
      pool = warmed.pool;
      const channels = warmed.channels;
      const n = channels.length;
      const perUser = Math.ceil(cfg.total / n);
      const total = perUser * n;
      const tracker = new Tracker(pool.clients, perUser, { latencies: true });
      pool.onMessage = tracker.handler;
      const pids = { server: server.pid, redis: ctx.redis.pid };
      server.profiler.start();
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
      const s1 = cpuSnapshot(pids);
      await server.profiler.stop();
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
        benchCpuPct: cpu.benchCpuPct,
        machineBusyPct: cpu.machineBusyPct,
        otherCpuPct: cpu.otherCpuPct,
        ackFramesPerMsg: pool.ackFrames / tracker.unique,
      };
    } finally {
      if (pool) await pool.close();
      pub.close();
    }
  });
}

/** Queues perUser messages for each of users while they are offline, then they identify at once. */
async function drainCase(ctx, server, pub, users, perUser, cfg, prof) {
  const channels = users.map((u) => `rm.users.${u}`);
  const total = await publishRoundRobin(pub, channels, perUser);
  const queued = async () => {
    const pipe = ctx.redis.admin.pipeline();
    for (const u of users) pipe.llen(`rm:users:${u}:messages`);
    return (await pipe.exec()).reduce((sum, [, len]) => sum + Number(len), 0);
  };
  const allQueued = await until(async () => (await queued()) >= total, cfg.queueDeadlineMs, 100);
  const queuedCount = await queued();
  const pool = new Pool(server.url, cfg.ack);
  try {
    await pool.open(users, { identify: false });
    const tracker = new Tracker(pool.clients, perUser);
    pool.onMessage = tracker.handler;
    const pids = { server: server.pid, redis: ctx.redis.pid };
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
      readyQueued: readies.reduce((a, r) => a + (r.queued || 0), 0),
      complete,
      ...outcome(tracker, pool),
      drainMs: tracker.lastAt - t0,
      msgPerSec: tracker.unique / ((tracker.lastAt - t0) / 1000),
      readyMsP50: mid(ready),
      firstMsP50: mid(ttf),
      firstMsMax: ttf[ttf.length - 1],
      serverCpuUsPerMsg: (cpu.cpuMs.server * 1000) / tracker.unique,
      redisCpuUsPerMsg: (cpu.cpuMs.redis * 1000) / tracker.unique,
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
  return withServer(ctx, kind, { maxInflight: cfg.maxInflight }, async (server) => {
    const pub = await connectPublisher(ctx.redis.port);
    try {
      const one = await drainCase(ctx, server, pub, ['drain-one'], cfg.oneBacklog, cfg, server.profiler);
      const many = await drainCase(ctx, server, pub, range(cfg.manyUsers, 'drain-many-'), cfg.manyBacklog, cfg);
      const flat = {};
      for (const [k, v] of Object.entries(one)) flat[`one_${k}`] = v;
      for (const [k, v] of Object.entries(many)) flat[`many_${k}`] = v;
      return flat;
    } finally {
      pub.close();
    }
  });
}

/** Identified sockets doing nothing: the server's RSS per socket. */
async function idle(ctx, kind, cfg) {
  return withServer(ctx, kind, { maxInflight: cfg.maxInflight }, async (server) => {
    await sleep(1000);
    const rssSample = async () => {
      const s = [];
      for (let i = 0; i < 3; i++) {
        s.push(rssKb(server.pid));
        await sleep(100);
      }
      return s.sort((a, b) => a - b)[1];
    };
    const rss0 = await rssSample();
    const pool = new Pool(server.url, cfg.ack);
    try {
      server.profiler.start();
      const s0 = cpuSnapshot({ server: server.pid });
      const t0 = performance.now();
      await pool.open(range(cfg.sockets, 'idle-'), { concurrency: cfg.concurrency, localAddresses: cfg.localAddresses });
      const openMs = performance.now() - t0;
      const s1 = cpuSnapshot({ server: server.pid });
      await server.profiler.stop();
      await sleep(cfg.settleMs);
      const rss1 = await rssSample();
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

module.exports = { online, latency, drain, idle, parseCommandstats };
