'use strict';
// Child processes of the bench (redis-server, the servers under test) and what
// /proc says about them. Everything listens on and connects to loopback only.
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const Redis = require('ioredis');

const ROOT = path.resolve(__dirname, '..', '..');
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every child still running, killed when the bench exits however it exits. */
const children = new Set();
function killAll() {
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}

/** Tracks a child (killed by killAll); keeps the last `logChars` to 2 × `logChars` characters of its output. */
function track(child, name, { logChars = 20000 } = {}) {
  children.add(child);
  let output = '';
  const keep = (d) => {
    output += d.toString();
    if (output.length > 2 * logChars) output = output.slice(-logChars);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  return { child, name, pid: child.pid, logs: () => output, exited, running: () => children.has(child) };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** CPU time (user + system) of a process, in ms. */
function cpuMs(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

/** Resident set size of a process, in KiB. */
function rssKb(pid) {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** Peak resident set size (VmHWM) in KiB, since the start or the last resetPeakRss. */
function peakRssKb(pid) {
  const m = /VmHWM:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** Resets VmHWM to the current RSS (clear_refs 5, Linux 4.0+); false where not allowed. */
function resetPeakRss(pid) {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/**
 * Samples a process's VmRSS every `everyMs` on a worker thread (the bench's own event loop is
 * busiest exactly when the peak comes); stop() resolves with { maxKb, samples }.
 */
function rssSampler(pid, everyMs = 50) {
  const { Worker } = require('node:worker_threads');
  const code = `
    const fs = require('node:fs');
    const { parentPort, workerData } = require('node:worker_threads');
    let maxKb = 0, samples = 0;
    const timer = setInterval(() => {
      try {
        const m = /VmRSS:\\s+(\\d+)\\s+kB/.exec(fs.readFileSync('/proc/' + workerData.pid + '/status', 'utf8'));
        if (m) { maxKb = Math.max(maxKb, Number(m[1])); samples++; }
      } catch {}
    }, workerData.everyMs);
    parentPort.on('message', () => { clearInterval(timer); parentPort.postMessage({ maxKb, samples }); });`;
  const worker = new Worker(code, { eval: true, workerData: { pid, everyMs } });
  return {
    stop: () =>
      new Promise((resolve) => {
        worker.once('message', (r) => {
          void worker.terminate();
          resolve(r);
        });
        worker.postMessage('stop');
      }),
  };
}

/** Busy and total jiffies of the whole machine, to tell how saturated the 2 cores were. */
function machineTicks() {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = line[3] + (line[4] || 0);
  const total = line.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** A snapshot of the CPU counters of the given pids, this process and the machine. */
function cpuSnapshot(pids) {
  const snap = { at: performance.now(), self: process.cpuUsage(), machine: machineTicks(), pids: {} };
  for (const [name, pid] of Object.entries(pids)) snap.pids[name] = cpuMs(pid);
  return snap;
}

/** What happened between two snapshots: ms of CPU per pid, and utilisations in %. */
function cpuDelta(a, b) {
  const wall = b.at - a.at;
  const out = { wallMs: wall, cpuMs: {} };
  for (const name of Object.keys(a.pids)) out.cpuMs[name] = b.pids[name] - a.pids[name];
  const self = (b.self.user - a.self.user + b.self.system - a.self.system) / 1000;
  out.cpuMs.bench = self;
  out.benchCpuPct = (100 * self) / wall;
  const busy = b.machine.busy - a.machine.busy;
  const total = b.machine.total - a.machine.total;
  out.machineBusyPct = total > 0 ? (100 * busy) / total : NaN;
  // CPU used by processes that are not the bench's (another build or test run): noise, in % of one core.
  const ours = Object.values(out.cpuMs).reduce((x, y) => x + y, 0);
  out.otherCpuPct = Math.max(0, (100 * ((busy * 1000) / CLK_TCK - ours)) / wall);
  return out;
}

/**
 * Spawns `bin` (redis-server) on a free loopback port with `--port <port> --bind 127.0.0.1`
 * followed by `args`, and resolves once it answers PING.
 */
async function launchRedis(args, { bin = 'redis-server', logChars } = {}) {
  const port = await freePort();
  const argv = ['--port', String(port), '--bind', '127.0.0.1', ...args];
  const proc = track(spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'] }), 'redis-server', { logChars });
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 10000;
  for (;;) {
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => {});
    try {
      await probe.connect();
      await probe.ping();
      probe.disconnect();
      break;
    } catch {
      probe.disconnect();
      if (!proc.running() || Date.now() > deadline) throw new Error(`redis-server did not start on ${port}:\n${proc.logs()}`);
      await sleep(50);
    }
  }
  return { ...proc, port, url };
}

async function startRedis() {
  const redis = await launchRedis([
    '--save',
    '',
    '--appendonly',
    'no',
    // The bench's own instance: a pub/sub reader that falls behind is never cut off.
    '--client-output-buffer-limit',
    'pubsub 0 0 0',
    '--maxclients',
    '1000',
    '--daemonize',
    'no',
    '--loglevel',
    'warning',
  ]);
  const { url } = redis;
  const admin = new Redis(url, { connectionName: 'bench-admin' });
  admin.on('error', () => {});
  return {
    ...redis,
    admin,
    async stop() {
      admin.disconnect();
      redis.child.kill('SIGTERM');
      await Promise.race([redis.exited, sleep(3000)]);
      redis.child.kill('SIGKILL');
    },
  };
}

/** Every file below `root` as `path:size:mtimeMs`, in directory order: compare two to see a tree change. */
function fileStamps(root) {
  const out = [];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else {
        const s = fs.statSync(p);
        out.push(`${p}:${s.size}:${s.mtimeMs}`);
      }
    }
  };
  walk(root);
  return out;
}

/** A copy of dist/, taken once, so a rebuild of dist/ during the run changes nothing. */
let snapshotDir;
async function distSnapshot() {
  if (snapshotDir) return snapshotDir;
  const dist = path.join(ROOT, 'dist');
  const listing = () => fileStamps(dist).join('\n');
  const deadline = Date.now() + 60000;
  for (;;) {
    try {
      if (!fs.existsSync(path.join(dist, 'main.js'))) throw new Error('no dist/main.js');
      const before = listing();
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'redmessenger-bench-'));
      fs.cpSync(dist, path.join(dir, 'dist'), { recursive: true });
      if (listing() !== before) {
        fs.rmSync(dir, { recursive: true, force: true });
        throw new Error('dist/ changed while copying');
      }
      snapshotDir = dir;
      process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
      return dir;
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`Cannot use ${dist}: ${error.message}. Build first: npx nest build`);
      await sleep(1000);
    }
  }
}

/** GET /health on a loopback port answers 200 (within 1 s). */
function httpOk(port) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/health', timeout: 1000, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/** GET http://127.0.0.1:<port><path>: { status, body }, or null on error or after timeoutMs. */
function httpGet(port, urlPath, timeoutMs = 2000) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, timeout: timeoutMs, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        if (body.length < 4e6) body += d; // bounded: /metrics is a few KB
      });
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', () => resolve(null));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

/**
 * Starts a server under test: 'redmessenger' (the dist/ snapshot) or 'baseline'.
 * Resolves once GET /health answers 200 (RedMessenger answers only after it
 * subscribed and took the router lease; the baseline listens only once subscribed).
 */
/**
 * The node flags of `npm start` (package.json): a larger young generation, because a burst
 * keeps many short-lived messages alive at once (heard, waiting to be routed) and the
 * default 16 MiB semi-space promotes them to the old generation, where collecting costs more.
 * BENCH_SERVER_NODE_FLAGS (space-separated) replaces them, to measure another choice.
 */
const SERVER_NODE_FLAGS = process.env.BENCH_SERVER_NODE_FLAGS !== undefined ? process.env.BENCH_SERVER_NODE_FLAGS.split(' ').filter(Boolean) : ['--max-semi-space-size=32'];

async function startServer(kind, redisUrl, { maxInflight = 1000, profileFile, instanceId, env: extraEnv } = {}) {
  const port = await freePort();
  const env = {
    ...process.env,
    PORT: String(port),
    REDIS_URL: redisUrl,
    LOG_LEVEL: 'warn',
    MAX_INFLIGHT: String(maxInflight),
    AUTH_MODE: 'none',
    // Every socket of the bench comes from a few loopback addresses: the per-address limits are off (docs/performance.md, Load testing).
    CONNECTION_RATE_PER_MINUTE: '0',
    IDENTIFY_RATE_PER_MINUTE: '0',
    ...extraEnv,
  };
  // Several servers on one Redis must not share an id (the server's default derives it from PORT).
  if (instanceId) env.INSTANCE_ID = instanceId;
  let args;
  if (kind === 'redmessenger') {
    const dir = await distSnapshot();
    env.NODE_PATH = path.join(ROOT, 'node_modules');
    args = [path.join(dir, 'dist', 'main.js')];
    if (profileFile) {
      env.BENCH_CPU_PROFILE = profileFile;
      args.unshift('-r', path.join(__dirname, 'cpu-profile-hook.js'));
    }
  } else {
    args = [path.join(ROOT, 'bench', 'baseline.js')];
  }
  // Both servers run with the V8 flags `npm start` gives RedMessenger (package.json, SERVER_NODE_FLAGS).
  args.unshift(...SERVER_NODE_FLAGS);
  const proc = track(spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] }), kind);
  // BENCH_SERVER_LOG=<prefix>: each server's whole stdout to <prefix>-<kind>-<port> (for --trace-gc and the like).
  if (process.env.BENCH_SERVER_LOG) proc.child.stdout.pipe(fs.createWriteStream(`${process.env.BENCH_SERVER_LOG}-${kind}-${port}`));
  const deadline = Date.now() + 30000;
  while (!(await httpOk(port))) {
    if (!proc.running()) throw new Error(`${kind} exited before it was ready:\n${proc.logs().slice(-4000)}`);
    if (Date.now() > deadline) {
      proc.child.kill('SIGKILL');
      throw new Error(`${kind} not ready within 30 s:\n${proc.logs().slice(-4000)}`);
    }
    await sleep(50);
  }
  return {
    ...proc,
    kind,
    port,
    url: `ws://127.0.0.1:${port}/`,
    async stop() {
      if (!proc.running()) return;
      proc.child.kill('SIGTERM');
      const done = await Promise.race([proc.exited, sleep(10000).then(() => null)]);
      if (!done) {
        proc.child.kill('SIGKILL');
        await proc.exited;
      }
    },
  };
}

module.exports = {
  ROOT,
  CLK_TCK,
  machineTicks,
  sleep,
  killAll,
  track,
  freePort,
  cpuMs,
  rssKb,
  peakRssKb,
  resetPeakRss,
  rssSampler,
  cpuSnapshot,
  cpuDelta,
  launchRedis,
  startRedis,
  startServer,
  fileStamps,
  distSnapshot,
  httpGet,
  httpOk,
};
