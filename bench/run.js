'use strict';
// RedMessenger benchmark suite: `node bench/run.js [--quick] [--repeat N] [--only a,b] [--profile]`.
// Starts its own redis-server and server processes (RedMessenger from a copy of
// dist/, bench/baseline.js, and a Mosquitto of its own), runs every scenario against
// each that has it, prints a table of medians with the ratios RedMessenger / baseline
// and RedMessenger / Mosquitto and a verdict against the targets (issue 17's), and
// appends JSON lines to bench/results/<timestamp>.jsonl.
const { execFileSync, execSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { ROOT, sleep, machineTicks, startRedis, distSnapshot } = require('./lib/procs');
const scenarios = require('./lib/scenarios');
const { mosquittoAvailable, MOSQUITTO } = require('./lib/mqtt');

const SCENARIOS = ['online', 'burst', 'latency', 'drain', 'idle', 'storm', 'fanout', 'instances', 'publish', 'absence'];
const SERVERS = ['redmessenger', 'baseline', 'mosquitto'];
/** Who runs each scenario; the others' column says n/a (the pipe has no queue and no groups, Mosquitto no groups or instances). */
const KINDS = {
  online: ['redmessenger', 'baseline'],
  burst: SERVERS,
  latency: SERVERS,
  drain: ['redmessenger', 'mosquitto'],
  idle: SERVERS,
  storm: ['redmessenger', 'mosquitto'],
  fanout: ['redmessenger'],
  instances: ['redmessenger'],
  publish: ['redmessenger'],
  absence: ['redmessenger'],
};
/** The SDK's ack policy (client/src/index.ts: ackBatchSize ?? 100, ackDelayMs ?? 10, a timer per client): the latency scenario's. */
const SDK_ACKS = { ackBatch: 100, ackDelayMs: 10, sdk: true };

function parseArgs(argv) {
  const args = { repeat: 1, only: SCENARIOS, quick: false, profile: false, deadlineS: 1200, maxNoisePct: 20, ackBatch: 50, ackDelayMs: 500, mosquitto: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') args.quick = true;
    else if (a === '--profile') args.profile = true;
    else if (a === '--no-mosquitto') args.mosquitto = false;
    else if (a === '--repeat') args.repeat = Math.max(1, Number(argv[++i]) || 1);
    else if (a === '--deadline') args.deadlineS = Number(argv[++i]);
    else if (a === '--max-noise') args.maxNoisePct = Number(argv[++i]);
    else if (a === '--ack-batch') args.ackBatch = Math.max(1, Number(argv[++i]) || 1);
    else if (a === '--ack-delay') args.ackDelayMs = Math.max(1, Number(argv[++i]) || 1);
    else if (a === '--only') {
      // "redis" (Redis cost) is measured by the online scenario.
      args.only = [
        ...new Set(
          String(argv[++i])
            .split(',')
            .map((s) => (s === 'redis' ? 'online' : s)),
        ),
      ];
      for (const s of args.only) if (!SCENARIOS.includes(s)) throw new Error(`--only: unknown scenario ${s} (${SCENARIOS.join(', ')}, redis)`);
    } else if (a === '--help' || a === '-h') {
      console.log(`node bench/run.js [--quick] [--repeat N] [--only ${SCENARIOS.join(',')},redis] [--no-mosquitto] [--profile] [--deadline S] [--ack-batch N] [--ack-delay MS] [--max-noise PCT]`);
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return args;
}

/** Scenario counts: the issue's, or smaller ones for --quick. */
function config({ quick, ackBatch, ackDelayMs }) {
  const ack = { ackBatch, ackDelayMs };
  const sdkAck = SDK_ACKS;
  const maxInflight = 1000;
  return quick
    ? {
        online: { clients: 200, perUser: 50, warmupPerUser: 5, window: 20000, deadlineMs: 20000, ack, maxInflight },
        burst: { clients: 200, perUser: 100, warmupPerUser: 5, window: 20000, deadlineMs: 20000, ack, maxInflight },
        latency: { clients: 200, rate: 5000, total: 10000, warmupPerUser: 5, window: 20000, deadlineMs: 10000, ack: sdkAck, maxInflight },
        drain: { oneBacklog: 10000, manyUsers: 20, manyBacklog: 500, queueDeadlineMs: 20000, deadlineMs: 20000, ack, maxInflight },
        idle: { sockets: 1000, concurrency: 100, settleMs: 1000, localAddresses: addrs(2), ack, maxInflight },
        storm: { users: 500, perUser: 10, settleMs: 1000, connectTimeoutMs: 60000, deadlineMs: 60000, localAddresses: addrs(2), ack, maxInflight },
        fanout: { members: 5000, online: 100, deadlineMs: 30000, ack, maxInflight },
        instances: { instances: 3, clientsPerInstance: 100, perUser: 50, warmupPerUser: 5, window: 20000, settleMs: 3000, deadlineMs: 20000, ack, maxInflight },
        publish: { messages: 20000, users: 1000, concurrency: 64, deadlineMs: 120000 },
        absence: { users: 5000, longQueue: 1000, retracts: 50, deadlineMs: 60000 },
      }
    : {
        online: { clients: 1000, perUser: 100, warmupPerUser: 5, window: 20000, deadlineMs: 60000, ack, maxInflight },
        burst: { clients: 1000, perUser: 100, warmupPerUser: 5, window: 20000, deadlineMs: 60000, ack, maxInflight },
        latency: { clients: 1000, rate: 5000, total: 50000, warmupPerUser: 5, window: 20000, deadlineMs: 20000, ack: sdkAck, maxInflight },
        drain: { oneBacklog: 100000, manyUsers: 100, manyBacklog: 1000, queueDeadlineMs: 60000, deadlineMs: 60000, ack, maxInflight },
        idle: { sockets: 10000, concurrency: 200, settleMs: 3000, localAddresses: addrs(4), ack, maxInflight },
        storm: { users: 10000, perUser: 10, settleMs: 3000, connectTimeoutMs: 60000, deadlineMs: 120000, localAddresses: addrs(64), ack, maxInflight },
        fanout: { members: 100000, online: 1000, deadlineMs: 60000, ack, maxInflight },
        // 3 × 1,000 users, 34 messages each: 102,000 (the round-robin gives every user the same count).
        instances: { instances: 3, clientsPerInstance: 1000, perUser: 34, warmupPerUser: 5, window: 20000, settleMs: 3000, deadlineMs: 60000, ack, maxInflight },
        publish: { messages: 20000, users: 1000, concurrency: 64, deadlineMs: 120000 },
        absence: { users: 100000, longQueue: 10000, retracts: 100, deadlineMs: 120000 },
      };
}
const addrs = (n) => Array.from({ length: n }, (_, i) => `127.0.0.${i + 1}`);

/** Idle needs one descriptor per socket in this process (and in the server): raise the soft limit or re-exec under a raised one. */
function ensureFileLimit(needed) {
  const soft = Number(execSync('ulimit -n', { shell: '/bin/sh' }).toString().trim());
  if (!(soft < needed)) return soft;
  const hard = execSync('ulimit -Hn', { shell: '/bin/sh' }).toString().trim();
  if (process.env.BENCH_ULIMIT_RAISED || (hard !== 'unlimited' && Number(hard) < needed)) {
    throw new Error(`ulimit -n is ${soft} (hard ${hard}); the idle scenario needs ${needed}. Raise it (ulimit -n ${needed}) or use --quick.`);
  }
  const limit = hard === 'unlimited' ? Math.max(needed, 65536) : Number(hard);
  const r = spawnSync('/bin/sh', ['-c', `ulimit -n ${limit} && exec "$0" "$@"`, process.execPath, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, BENCH_ULIMIT_RAISED: '1' },
  });
  process.exit(r.status ?? 1);
}

function machine() {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const model = (/^model name\s*:\s*(.*)$/m.exec(cpuinfo) || [])[1] || os.cpus()[0]?.model;
  const git = (args) => {
    try {
      return execFileSync('git', args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] })
        .toString()
        .trim();
    } catch {
      return undefined;
    }
  };
  return {
    nproc: os.availableParallelism ? os.availableParallelism() : os.cpus().length,
    cpu: model,
    memMB: Math.round(os.totalmem() / 2 ** 20),
    node: process.version,
    redis: execFileSync('redis-server', ['--version']).toString().trim(),
    commit: git(['rev-parse', '--short', 'HEAD']),
    srcDirty: Boolean(git(['status', '--porcelain', '--', 'src'])),
  };
}

const median = (xs) => {
  const v = xs.filter((x) => typeof x === 'number' && !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const worst = (xs) => {
  const v = xs.filter((x) => typeof x === 'number');
  return v.length ? Math.max(...v) : undefined;
};

/** The run with the largest figure `key` (runs without it last). */
const worstBy = (runs, key) => [...runs].sort((a, b) => (b[key] ?? -Infinity) - (a[key] ?? -Infinity))[0];

const fmt = {
  int: (x) => (x === undefined ? 'n/a' : Math.round(x).toLocaleString('en-US')),
  f1: (x) => (x === undefined ? 'n/a' : x.toFixed(1)),
  f2: (x) => (x === undefined ? 'n/a' : x.toFixed(2)),
  f3: (x) => (x === undefined ? 'n/a' : x.toFixed(3)),
  pct: (x) => (x === undefined ? 'n/a' : `${Math.round(x)}%`),
};

const k = (n) => (n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : n.toLocaleString('en-US'));
const ms = (x) => (x === undefined ? 'n/a' : x.toFixed(0));
const mb = (x) => (x === undefined ? 'n/a' : (x / 1024).toFixed(0));

/**
 * The table's rows: where the figure comes from, how it is aggregated over
 * repeats (median, or worst for error counts), and its target: `ratioMin` /
 * `ratioMax` against the baseline (or, with `vs: 'mosquitto'`, against Mosquitto),
 * or `max` / `min` / `zero` on RedMessenger's figure (`text` replaces the target's
 * wording). `pick` takes the runs and returns the figure, for figures that are not a
 * number. `name` may be a function of the scenario counts; `noRatio`: the ratio means
 * nothing (the load generator's CPU, the noise).
 */
const FIGURES = [
  { s: 'online', name: 'delivered msg/s', key: 'deliveredPerSec', f: fmt.int, target: { ratioMin: 0.7 } },
  { s: 'online', name: 'server CPU µs/msg', key: 'serverCpuUsPerMsg', f: fmt.f1, target: { ratioMax: 1.4 } },
  { s: 'online', name: 'lost', key: 'lost', agg: worst, f: fmt.int, target: { zero: true } },
  { s: 'online', name: 'duplicated', key: 'duplicated', agg: worst, f: fmt.int, target: { zero: true } },
  { s: 'online', name: 'out-of-order', key: 'outOfOrder', agg: worst, f: fmt.int, target: { zero: true } },
  { s: 'online', name: 'server CPU busy', key: 'serverCpuPct', f: fmt.pct },
  { s: 'online', name: 'Redis CPU µs/msg', key: 'redisCpuUsPerMsg', f: fmt.f1 },
  { s: 'online', name: 'bench process CPU', key: 'benchCpuPct', f: fmt.pct, noRatio: true },
  { s: 'online', name: 'ack frames / msg', key: 'ackFramesPerMsg', f: fmt.f2 },
  { s: 'online', name: 'other processes CPU (noise)', key: 'otherCpuPct', f: fmt.pct, noRatio: true },
  { s: 'burst', name: 'delivered msg/s', key: 'deliveredPerSec', f: fmt.int, target: { ratioMin: 0.7 } },
  { s: 'burst', name: 'server CPU µs/msg', key: 'serverCpuUsPerMsg', f: fmt.f1, target: { ratioMax: 1.4 } },
  { s: 'burst', name: 'Redis CPU µs/msg (INFO cpu)', key: 'redisInfoCpuUsPerMsg', f: fmt.f1 },
  { s: 'burst', name: 'Redis commands / delivered msg', key: 'redisCommandsPerMsg', f: fmt.f2 },
  // The baseline has no queue: under an unpaced burst it may lose messages. Reported; the target is RedMessenger's.
  { s: 'burst', name: 'lost / dup / ooo', key: 'lost', agg: worst, f: fmt.int, target: { zero: true }, combo: ['lost', 'duplicated', 'outOfOrder'] },
  { s: 'burst', name: 'publish msg/s (Redis took them)', key: 'publishPerSec', f: fmt.int },
  { s: 'burst', name: 'bench process CPU', key: 'benchCpuPct', f: fmt.pct, noRatio: true },
  { s: 'burst', name: 'other processes CPU (noise)', key: 'otherCpuPct', f: fmt.pct, noRatio: true },
  { s: 'latency', name: 'p50 ms', key: 'p50Ms', f: fmt.f2 },
  { s: 'latency', name: 'p99 ms', key: 'p99Ms', f: fmt.f2, target: { ratioMax: 1.3 } },
  { s: 'latency', name: 'max ms', key: 'maxMs', f: fmt.f2 },
  { s: 'latency', name: 'lost / dup / ooo', key: 'lost', agg: worst, f: fmt.int, target: { zero: true }, combo: ['lost', 'duplicated', 'outOfOrder'] },
  { s: 'latency', name: 'server CPU µs/msg', key: 'serverCpuUsPerMsg', f: fmt.f1, target: { ratioMax: 1.5 } },
  { s: 'latency', name: 'Redis CPU µs/msg (INFO cpu)', key: 'redisInfoCpuUsPerMsg', f: fmt.f1, target: { max: 12 } },
  { s: 'latency', name: 'server CPU busy', key: 'serverCpuPct', f: fmt.pct },
  { s: 'latency', name: 'ack frames / msg (SDK policy)', key: 'ackFramesPerMsg', f: fmt.f2 },
  { s: 'latency', name: 'other processes CPU (noise)', key: 'otherCpuPct', f: fmt.pct, noRatio: true },
  { s: 'drain', name: (c) => `1 user × ${k(c.drain.oneBacklog)}: msg/s`, key: 'one_msgPerSec', f: fmt.int, target: { ratioMin: 1.2, vs: 'mosquitto' } },
  { s: 'drain', name: '1 user: time to first ms', key: 'one_firstMsP50', f: fmt.f1 },
  { s: 'drain', name: (c) => `${c.drain.manyUsers} users × ${k(c.drain.manyBacklog)}: msg/s`, key: 'many_msgPerSec', f: fmt.int, target: { ratioMin: 1.2, vs: 'mosquitto' } },
  { s: 'drain', name: (c) => `${c.drain.manyUsers} users: time to first ms, p50`, key: 'many_firstMsP50', f: fmt.f1 },
  { s: 'drain', name: (c) => `${c.drain.manyUsers} users: time to first ms, max`, key: 'many_firstMsMax', f: fmt.f1 },
  {
    s: 'drain',
    name: 'lost / dup / ooo',
    key: 'one_lost',
    agg: worst,
    f: fmt.int,
    target: { zero: true },
    combo: ['one_lost', 'one_duplicated', 'one_outOfOrder', 'many_lost', 'many_duplicated', 'many_outOfOrder'],
  },
  { s: 'drain', name: 'server CPU µs/msg (1 user)', key: 'one_serverCpuUsPerMsg', f: fmt.f1 },
  { s: 'idle', name: 'RSS KB per idle socket', key: 'rssKbPerSocket', f: fmt.f2, target: { ratioMax: 1.3 } },
  { s: 'idle', name: 'server RSS MB with all open', key: 'rssKbAfter', f: mb },
  { s: 'idle', name: 'identify CPU µs per socket', key: 'identifyCpuUsPerSocket', f: fmt.f1 },
  { s: 'storm', name: (c) => `all ${k(c.storm.users * c.storm.perUser)} received, s`, key: 'doneS', f: fmt.f2, target: { ratioMax: 1, vs: 'mosquitto', text: '≤ mosq' } },
  { s: 'storm', name: 'first message (any user), ms', key: 'firstMs', f: ms, target: { max: 1000 } },
  // One process creates all 10,000 sockets in one loop and reads nothing meanwhile: no client can get a message before it ends.
  { s: 'storm', name: 'of which the bench creating the sockets, ms', key: 'openLoopMs', f: ms },
  {
    s: 'storm',
    name: 'first message per user, ms p50 / p99',
    pick: (runs) => [median(runs.map((r) => r.firstMsP50)), median(runs.map((r) => r.firstMsP99))],
    f: (v) => (v && v[0] !== undefined ? `${ms(v[0])} / ${ms(v[1])}` : 'n/a'),
  },
  {
    s: 'storm',
    name: 'ready / CONNACK ms, p50 / last',
    pick: (runs) => [median(runs.map((r) => r.readyMsP50)), median(runs.map((r) => r.readyMsMax))],
    f: (v) => (v && v[0] !== undefined ? `${ms(v[0])} / ${ms(v[1])}` : 'n/a'),
  },
  { s: 'storm', name: 'RSS peak MB', key: 'rssPeakKb', f: mb },
  { s: 'storm', name: (c) => `RSS MB, ${k(c.storm.users)} idle identified sockets`, key: 'idleRssKb', f: mb },
  { s: 'storm', name: 'RSS peak / idle RSS', key: 'rssPeakOverIdle', f: fmt.f2, target: { max: 2, text: '≤ 2× idle' } },
  { s: 'storm', name: 'server CPU µs/msg', key: 'serverCpuUsPerMsg', f: fmt.f1 },
  { s: 'storm', name: 'lost / dup / ooo', key: 'lost', agg: worst, f: fmt.int, target: { zero: true }, combo: ['lost', 'duplicated', 'outOfOrder'] },
  { s: 'storm', name: 'client errors', key: 'errorCount', agg: worst, f: fmt.int, target: { zero: true } },
  { s: 'storm', name: 'bench process CPU', key: 'benchCpuPct', f: fmt.pct, noRatio: true },
  { s: 'storm', name: 'other processes CPU (noise)', key: 'otherCpuPct', f: fmt.pct, noRatio: true },
  { s: 'fanout', name: (c) => `all ${k(c.fanout.members)} stored or delivered, ms`, key: 'allMs', f: ms, target: { max: 1500 } },
  { s: 'fanout', name: (c) => `all ${k(c.fanout.online)} online got it, ms`, key: 'onlineMs', f: ms, target: { max: 1500 } },
  { s: 'fanout', name: 'first online got it, ms', key: 'onlineFirstMs', f: ms },
  { s: 'fanout', name: 'all stored (routed_total), ms', key: 'storedMs', f: ms },
  { s: 'fanout', name: 'server CPU µs per member', key: 'serverCpuUsPerMember', f: fmt.f1 },
  { s: 'fanout', name: 'Redis CPU µs per member (INFO cpu)', key: 'redisCpuUsPerMember', f: fmt.f1 },
  { s: 'fanout', name: 'lost / dup / ooo', key: 'lost', agg: worst, f: fmt.int, target: { zero: true }, combo: ['lost', 'duplicated', 'outOfOrder'] },
  { s: 'fanout', name: 'other processes CPU (noise)', key: 'otherCpuPct', f: fmt.pct, noRatio: true },
  { s: 'instances', name: 'total delivered msg/s', key: 'deliveredPerSec', f: fmt.int },
  // The run whose shares are the most uneven, as the deviation row below.
  { s: 'instances', name: 'routing share per instance', pick: (runs) => worstBy(runs, 'routedShareMaxDevPct')?.routedShares, f: (v) => (v ? v.map((x) => x.toFixed(2)).join(' / ') : 'n/a') },
  { s: 'instances', name: 'max deviation from 1/N', key: 'routedShareMaxDevPct', agg: worst, f: fmt.pct, target: { max: 20, text: 'each within 1/N ± 20%' } },
  { s: 'instances', name: 'server CPU µs/msg (sum)', key: 'serverCpuUsPerMsg', f: fmt.f1 },
  { s: 'instances', name: 'one instance, same load: CPU µs/msg', key: 'one_serverCpuUsPerMsg', f: fmt.f1 },
  { s: 'instances', name: 'one instance, same load: msg/s', key: 'one_deliveredPerSec', f: fmt.int },
  { s: 'instances', name: 'CPU µs/msg: all instances / one', key: 'cpuVsOne', f: fmt.f2, target: { max: 1.3, text: '≤ 1.3× one' } },
  {
    s: 'instances',
    name: 'lost / dup / ooo',
    key: 'lost',
    agg: worst,
    f: fmt.int,
    target: { zero: true },
    combo: ['lost', 'duplicated', 'outOfOrder', 'one_lost', 'one_duplicated', 'one_outOfOrder'],
  },
  { s: 'instances', name: 'bench process CPU', key: 'benchCpuPct', f: fmt.pct, noRatio: true },
  { s: 'instances', name: 'other processes CPU (noise)', key: 'otherCpuPct', f: fmt.pct, noRatio: true },
  { s: 'publish', name: 'raw PUBLISH msgs/s (until queued)', key: 'rawMsgPerSec', f: fmt.int },
  { s: 'publish', name: 'HTTP POST /v1/messages req/s (64 in flight)', key: 'httpReqPerSec', f: fmt.int },
  { s: 'publish', name: 'inbox entries/s (until acked)', key: 'inboxEntriesPerSec', f: fmt.int },
  { s: 'publish', name: 'HTTP + inbox messages not stored', key: 'lost', agg: worst, f: fmt.int, target: { zero: true } },
  { s: 'absence', name: (c) => `notify decisions/s (${k(c.absence.users)} absent users)`, key: 'notifyDecisionsPerSec', f: fmt.int },
  { s: 'absence', name: 'server CPU µs per notify', key: 'notifyServerCpuUsPer', f: fmt.f1 },
  { s: 'absence', name: 'Redis CPU µs per notify', key: 'notifyRedisCpuUsPer', f: fmt.f1 },
  { s: 'absence', name: (c) => `retract ms, ${c.absence.longQueue.toLocaleString('en-US')}-message queue`, key: 'retractLongMs', f: fmt.f2 },
  { s: 'absence', name: 'retract ms, 10-message queue', key: 'retractShortMs', f: fmt.f2 },
  {
    s: 'absence',
    name: 'Redis CPU µs per retract (long / short)',
    pick: (runs) => [median(runs.map((r) => r.retractLongRedisUs)), median(runs.map((r) => r.retractShortRedisUs))],
    f: (v) => (v && v[0] !== undefined ? `${v[0].toFixed(0)} / ${v[1].toFixed(0)}` : 'n/a'),
  },
  { s: 'absence', name: 'errors', key: 'errorCount', agg: worst, f: fmt.int, target: { zero: true } },
  { s: 'redis', from: 'online', name: 'Redis commands / delivered msg', key: 'redisCommandsPerMsg', f: fmt.f2, target: { max: 1 } },
  { s: 'redis', from: 'online', name: 'of which EVALSHA (round trips)', key: 'redisScriptCallsPerMsg', f: fmt.f3 },
];

function targetText(t) {
  if (!t) return '';
  if (t.text) return t.text;
  const ref = t.vs === 'mosquitto' ? 'mosq' : 'base';
  if (t.ratioMin !== undefined) return `≥ ${t.ratioMin}× ${ref}`;
  if (t.ratioMax !== undefined) return `≤ ${t.ratioMax}× ${ref}`;
  if (t.max !== undefined) return `≤ ${t.max.toLocaleString('en-US')}`;
  if (t.min !== undefined) return `≥ ${t.min.toLocaleString('en-US')}`;
  if (t.zero) return '0';
  return '';
}

/** PASS / FAIL of RedMessenger's figure `rm`; `refs` holds the baseline's and Mosquitto's. */
function verdict(t, rm, refs) {
  if (!t || rm === undefined) return '';
  const ok = (b) => (b ? 'PASS' : 'FAIL');
  const ref = refs[t.vs || 'baseline'];
  if (t.ratioMin !== undefined) return ref ? ok(rm / ref >= t.ratioMin) : '';
  if (t.ratioMax !== undefined) return ref ? ok(rm / ref <= t.ratioMax) : '';
  if (t.max !== undefined) return ok(rm <= t.max);
  if (t.min !== undefined) return ok(rm >= t.min);
  if (t.zero) return ok(rm === 0);
  return '';
}

function table(results, { repeat, quick, ackBatch, ackDelayMs, maxNoisePct }, cfg) {
  const rows = [];
  const summary = [];
  let anyNoisy = false;
  for (const fig of FIGURES) {
    const from = fig.from || fig.s;
    const per = {};
    for (const kind of SERVERS) {
      const runs = results.filter((r) => r.scenario === from && r.server === kind && !r.na && !r.failed);
      if (runs.length === 0) {
        per[kind] = { v: undefined, text: results.some((r) => r.scenario === from && r.server === kind && r.na) ? 'n/a' : '—' };
        continue;
      }
      const mark = runs.some((r) => r.noisy) && !fig.target?.zero ? '*' : '';
      if (fig.combo) {
        const parts = fig.combo.map((key) => worst(runs.map((r) => r[key])));
        const present = parts.filter((p) => p !== undefined);
        per[kind] = { v: present.length ? present.reduce((a, b) => a + b, 0) : undefined, text: parts.map(fmt.int).join(' / ') };
        if (fig.combo.length === 6) per[kind].text = `${parts.slice(0, 3).map(fmt.int).join('/')} · ${parts.slice(3).map(fmt.int).join('/')}`;
      } else if (fig.pick) {
        const v = fig.pick(runs);
        per[kind] = { v, text: fig.f(v) };
      } else {
        const v = (fig.agg || median)(runs.map((r) => r[fig.key]));
        per[kind] = { v, text: fig.f(v) };
      }
      if (per[kind].v !== undefined) per[kind].text += mark;
      anyNoisy ||= Boolean(mark);
    }
    if (SERVERS.every((kind) => per[kind].text === '—' || (kind !== 'redmessenger' && per[kind].text === 'n/a'))) continue;
    const rm = per.redmessenger.v;
    const refs = { baseline: per.baseline.v, mosquitto: per.mosquitto.v };
    const ratioTo = (ref) => (rm !== undefined && ref !== undefined && ref !== 0 && !fig.combo && !fig.pick && !fig.noRatio && !fig.target?.zero ? `${(rm / ref).toFixed(2)}×` : '');
    const name = typeof fig.name === 'function' ? fig.name(cfg) : fig.name;
    const v = verdict(fig.target, rm, refs);
    rows.push([fig.s, name, per.redmessenger.text, per.baseline.text, per.mosquitto.text, ratioTo(refs.baseline), ratioTo(refs.mosquitto), targetText(fig.target), v]);
    summary.push({
      scenario: fig.s,
      figure: name,
      redmessenger: rm,
      baseline: refs.baseline,
      mosquitto: refs.mosquitto,
      ratio: ratioTo(refs.baseline) || undefined,
      ratioMosquitto: ratioTo(refs.mosquitto) || undefined,
      target: targetText(fig.target) || undefined,
      verdict: v || undefined,
    });
  }
  const head = ['scenario', 'figure', 'RedMessenger', 'baseline', 'mosquitto', 'RM/base', 'RM/mosq', 'target', 'verdict'];
  const right = (i) => i >= 2 && i <= 6;
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) => `| ${cells.map((c, i) => (right(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(' | ')} |`;
  const out = [line(head), `|${widths.map((w, i) => (right(i) ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`, ...rows.map(line)];
  if (anyNoisy) out.push('', `* measured while other processes on the machine took over ${maxNoisePct}% of a core (the quietest of up to 3 attempts, 1 with --quick): take with care.`);
  out.push(
    '',
    `Medians of ${repeat} run${repeat > 1 ? 's' : ''} (lost / dup / ooo: worst run)${quick ? "; --quick counts, not the issue's" : ''}. CPU % are of one core. Clients ack every ${ackBatch} messages or ${ackDelayMs} ms, whichever comes first; in latency, as the SDK does (${SDK_ACKS.ackBatch} or ${SDK_ACKS.ackDelayMs} ms after the first); Mosquitto's PUBACK each message.`,
  );
  return { text: out.join('\n'), summary };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const cfg = config(args);
  if (args.mosquitto && !mosquittoAvailable()) {
    process.stderr.write(`No ${MOSQUITTO} (BENCH_MOSQUITTO names another): the mosquitto column stays empty\n`);
    args.mosquitto = false;
  }
  // One descriptor per socket in this process: idle's sockets, the storm's, or the instances' clients.
  const sockets = Math.max(
    args.only.includes('idle') ? cfg.idle.sockets : 0,
    args.only.includes('storm') ? cfg.storm.users : 0,
    args.only.includes('instances') ? cfg.instances.instances * cfg.instances.clientsPerInstance : 0,
  );
  if (sockets) ensureFileLimit(sockets + 1000);
  const started = Date.now();
  const deadline = started + args.deadlineS * 1000;
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const resultsDir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const resultsFile = path.join(resultsDir, `${stamp}.jsonl`);
  const write = (obj) => fs.appendFileSync(resultsFile, `${JSON.stringify(obj)}\n`);
  const info = machine();
  write({ type: 'run', at: new Date().toISOString(), argv: process.argv.slice(2), ...args, machine: info, config: cfg });
  const log = (s) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(3)} s] ${s}\n`);
  log(`${info.nproc} × ${info.cpu}, ${info.node}, ${info.redis.split(' ').slice(0, 3).join(' ')}; results: ${path.relative(process.cwd(), resultsFile)}`);

  await distSnapshot();
  // Another process busy on this 2-core machine skews every figure: say so up front.
  const m0 = machineTicks();
  await sleep(1000);
  const m1 = machineTicks();
  const busyBefore = (100 * (m1.busy - m0.busy)) / (m1.total - m0.total);
  write({ type: 'quiet-check', machineBusyPct: busyBefore });
  if (busyBefore > 10) log(`WARNING: the machine was ${busyBefore.toFixed(0)}% busy before the bench started; figures will be noisy`);
  const redis = await startRedis();
  const ctx = { redis };
  const results = [];
  const profileFiles = [];
  const kindsOf = (scenario) => KINDS[scenario].filter((kind) => args.mosquitto || kind !== 'mosquitto');
  const total = args.repeat * args.only.reduce((n, scenario) => n + kindsOf(scenario).length, 0);
  let done = 0;
  try {
    outer: for (let rep = 1; rep <= args.repeat; rep++) {
      for (const scenario of args.only) {
        // Rotate which server goes first, so none always runs on a cooler machine.
        const own = kindsOf(scenario);
        const kinds = own.map((_, i) => own[(i + rep - 1) % own.length]);
        for (const kind of SERVERS) {
          // n/a: the scenario does not apply (no queue, no groups, no instances).
          if (!KINDS[scenario].includes(kind)) results.push({ type: 'result', scenario, server: kind, repeat: rep, na: true });
        }
        for (const kind of kinds) {
          if (Date.now() > deadline) {
            log(`deadline of ${args.deadlineS} s reached: stopping here`);
            break outer;
          }
          ctx.profileFile = args.profile && rep === 1 && kind === 'redmessenger' ? path.join(resultsDir, `${stamp}-redmessenger-${scenario}.cpuprofile`) : undefined;
          // Another process taking CPU during a measurement skews it: measure again (at most 3 times
          // in all, while the time left allows for the measurements still to come) and keep the quietest.
          let best;
          for (let attempt = 1; ; attempt++) {
            await waitQuiet(log, args.quick ? 3000 : 20000);
            const t0 = Date.now();
            let result;
            try {
              result = await scenarios[scenario](ctx, kind, cfg[scenario]);
            } catch (error) {
              result = { failed: true, error: error.message.slice(0, 2000) };
              log(`${scenario} ${kind} #${rep} FAILED: ${error.message.slice(0, 400)}`);
            }
            result.seconds = (Date.now() - t0) / 1000;
            result.attempt = attempt;
            result.noisePct = Math.max(result.otherCpuPct ?? 0, result.one_otherCpuPct ?? 0, result.many_otherCpuPct ?? 0);
            if (result.na) result.noisePct = 0;
            result.noisy = result.noisePct > args.maxNoisePct;
            if (attempt > 1) write({ type: 'attempt', scenario, server: kind, repeat: rep, ...result });
            if (!best || (!result.failed && (best.failed || result.noisePct < best.noisePct))) best = result;
            done++;
            const left = (total - done) * 45000 + 30000;
            if (!result.noisy || attempt >= 3 || args.quick || ctx.profileFile || deadline - Date.now() < left) break;
            log(`${scenario} ${kind} #${rep}: other processes used ${result.noisePct.toFixed(0)}% of a core during the measurement; measuring again`);
            done--;
          }
          const result = best;
          if (ctx.profileFile) profileFiles.push(ctx.profileFile);
          const row = { type: 'result', scenario, server: kind, repeat: rep, quick: args.quick, profiled: Boolean(ctx.profileFile), ...result };
          results.push(row);
          write(row);
          log(`${scenario.padEnd(9)} ${kind.padEnd(12)} #${rep}: ${brief(row)} (${row.seconds.toFixed(1)} s${row.noisy ? `; NOISY: others took ${row.noisePct.toFixed(0)}% of a core` : ''})`);
        }
      }
    }
  } finally {
    await redis.stop();
  }
  const { text, summary } = table(results, args, cfg);
  write({ type: 'summary', seconds: (Date.now() - started) / 1000, figures: summary });
  console.log(
    `\nRedMessenger vs baseline (the bare pipe) and Mosquitto — ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${info.nproc} × ${info.cpu}, node ${info.node}, commit ${info.commit}${info.srcDirty ? ' (src modified)' : ''}\n`,
  );
  console.log(text);
  console.log(`\nTotal ${((Date.now() - started) / 1000).toFixed(0)} s. Results: ${path.relative(process.cwd(), resultsFile)}`);
  for (const file of profileFiles) {
    if (fs.existsSync(file)) console.log(`\n${require('./lib/profile-summary').summarise(file)}`);
    else console.log(`\nNo CPU profile was written (${file}).`);
  }
  const anyFailed = results.some((r) => r.failed);
  process.exitCode = anyFailed ? 1 : 0;
}

/** Waits (at most maxMs) for the machine to be quiet: under 15% busy over half a second. */
async function waitQuiet(log, maxMs) {
  const end = Date.now() + maxMs;
  let busy = 100;
  while (Date.now() < end) {
    const a = machineTicks();
    await sleep(500);
    const b = machineTicks();
    busy = (100 * (b.busy - a.busy)) / (b.total - a.total);
    if (busy < 15) return busy;
  }
  log(`the machine stayed ${busy.toFixed(0)}% busy (other processes); measuring anyway`);
  return busy;
}

function brief(r) {
  if (r.failed) return 'failed';
  if (r.na) return 'n/a';
  const extra = r.errorCount ? `, ${r.errorCount} client errors: ${r.errors[0]}` : '';
  switch (r.scenario) {
    case 'online':
      return `${fmt.int(r.deliveredPerSec)} msg/s, ${fmt.f1(r.serverCpuUsPerMsg)} µs/msg, lost ${r.lost} dup ${r.duplicated} ooo ${r.outOfOrder}, ${fmt.f2(r.redisCommandsPerMsg)} Redis cmds/msg, bench CPU ${fmt.pct(r.benchCpuPct)}, other ${fmt.pct(r.otherCpuPct)}${extra}`;
    case 'burst':
      return `${fmt.int(r.deliveredPerSec)} msg/s delivered (published at ${fmt.int(r.publishPerSec)} msg/s), ${fmt.f1(r.serverCpuUsPerMsg)} µs/msg, Redis ${fmt.f1(r.redisInfoCpuUsPerMsg)} µs/msg, lost ${r.lost} dup ${r.duplicated} ooo ${r.outOfOrder}, bench CPU ${fmt.pct(r.benchCpuPct)}, other ${fmt.pct(r.otherCpuPct)}${extra}`;
    case 'instances':
      return `${fmt.int(r.deliveredPerSec)} msg/s, routed ${r.routed.join(' / ')} (shares ${r.routedShares ? r.routedShares.map((x) => x.toFixed(2)).join(' / ') : 'n/a'}), ${fmt.f1(r.serverCpuUsPerMsg)} µs/msg (sum) against ${fmt.f1(r.one_serverCpuUsPerMsg)} on one instance (${fmt.f2(r.cpuVsOne)}×), lost ${r.lost} dup ${r.duplicated} ooo ${r.outOfOrder}, bench CPU ${fmt.pct(r.benchCpuPct)}${extra}`;
    case 'publish':
      return `${r.messages} messages to ${r.users} offline users: raw PUBLISH ${fmt.int(r.rawMsgPerSec)} msg/s, HTTP ${fmt.int(r.httpReqPerSec)} req/s (${r.concurrency} in flight), inbox ${fmt.int(r.inboxEntriesPerSec)} entries/s, not stored ${r.lost}${r.errorCount ? `, errors: ${r.errors[0]}` : ''}`;
    case 'latency':
      return `p50 ${fmt.f2(r.p50Ms)} p99 ${fmt.f2(r.p99Ms)} max ${fmt.f2(r.maxMs)} ms at ${fmt.int(r.achievedRate)} msg/s, ${fmt.f1(r.serverCpuUsPerMsg)} µs/msg, Redis ${fmt.f1(r.redisInfoCpuUsPerMsg)} µs/msg, lost ${r.lost} dup ${r.duplicated} ooo ${r.outOfOrder}${extra}`;
    case 'drain':
      return `1 user ${fmt.int(r.one_msgPerSec)} msg/s (first ${fmt.f1(r.one_firstMsP50)} ms), ${r.many_users} users ${fmt.int(r.many_msgPerSec)} msg/s (first p50 ${fmt.f1(r.many_firstMsP50)} ms), lost ${r.one_lost}+${r.many_lost}${r.one_errorCount || r.many_errorCount ? `, errors: ${r.one_errors?.[0] ?? r.many_errors?.[0]}` : ''}`;
    case 'storm':
      return `${r.users} users × ${r.perUser}: all received in ${fmt.f2(r.doneS)} s, first after ${fmt.f1(r.firstMs)} ms (per user p50 ${fmt.f1(r.firstMsP50)}), RSS ${fmt.int(r.rssKbBefore / 1024)} → peak ${fmt.int(r.rssPeakKb / 1024)} MB${r.idleRssKb ? ` (idle ${fmt.int(r.idleRssKb / 1024)} MB: ${fmt.f2(r.rssPeakOverIdle)}×)` : ''}, lost ${r.lost} dup ${r.duplicated} ooo ${r.outOfOrder}, other ${fmt.pct(r.otherCpuPct)}${extra}`;
    case 'fanout':
      return `${r.members} members (${r.online} online): all stored or delivered in ${fmt.f1(r.allMs)} ms (stored ${fmt.f1(r.storedMs)}, online ${fmt.f1(r.onlineMs)}), queued ${r.queued}, lost ${r.lost} dup ${r.duplicated}, server ${fmt.f1(r.serverCpuUsPerMember)} µs and Redis ${fmt.f1(r.redisCpuUsPerMember)} µs per member${extra}`;
    case 'idle':
      return `${r.open}/${r.sockets} open, ${fmt.f2(r.rssKbPerSocket)} KB/socket (${fmt.int(r.rssKbBefore / 1024)} → ${fmt.int(r.rssKbAfter / 1024)} MB), opened in ${fmt.int(r.openMs)} ms${extra}`;
    default:
      return '';
  }
}

main().catch((error) => {
  console.error(`bench failed: ${error.stack || error.message}`);
  process.exit(1);
});
