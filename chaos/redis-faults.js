'use strict';
// Redis faults: `npm run chaos -- --redis-faults [--scenario sentinel|cluster|partition|all]
// [--seconds N]` (N per scenario, default 120). Each scenario starts its own Redis topology
// on loopback and three instances of dist/main.js, runs the load of chaos/run.js (raw
// PUBLISH, POST /v1/messages, XADD rm:inbox to 300 users; churning clients that ack or drop)
// and injects faults until the time is up:
// - sentinel: master + replica + one Sentinel; the master SIGKILLed, the replica promoted,
//   the old master restarted as a replica. PUBLISH_WAIT_REPLICAS=1.
// - cluster: 3 masters + 3 replicas; in turn CLUSTER FAILOVER on the replica of the node the
//   subscribers are pinned to (the master of rm:shards' slot), SIGKILL of that node, SIGKILL
//   of another master; a killed node restarted (as a replica). PUBLISH_WAIT_REPLICAS=1.
// - partition: one Redis; instance 1 reaches it through a TCP proxy that holds every byte
//   (both ways, new connections too) for PRESENCE_TTL_MS + 4 s, then relays again, as a cut
//   network link that heals does (TCP delays, it never drops bytes mid-stream).
// The inbox producer counts an entry as sent once WAIT says a replica has it (where there
// are replicas), as a durable producer would; unconfirmed ones, like unanswered POSTs, may be
// stored or not but at most once. Checks, per scenario: every 202 and every confirmed inbox
// entry handled by a client or still stored, under one id; raw PUBLISHes lost (or stored
// under two ids) only inside a window around each fault: from WINDOW_BEFORE_MS before it
// starts to WINDOW_AFTER_MS after it is over (a master promoted and the cluster ok; the
// link relaying again). A raw PUBLISH Redis answered with 0 receivers (no instance subscribed:
// the publisher is told) is counted apart, not as lost. Exits 1 on anything else.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const Redis = require('ioredis');
const { freePort, sleep, track } = require('../bench/lib/procs');
const { log, secondsOf, option, mainBuilt, Instance, Traffic, inboxSettled, storedMessages } = require('./lib');

const HOST = '127.0.0.1';
const USERS = Array.from({ length: 300 }, (_, i) => `chaos-u${i}`);
const CLIENT_SLOTS = 30;
const HTTP_WORKERS = 4;
const PRESENCE_TTL_MS = 5000; // the server's default
const PARTITION_MS = PRESENCE_TTL_MS + 4000;
/** Quiet time between two faults. */
const GAP_MS = 10000;
const WINDOW_BEFORE_MS = 500;
const WINDOW_AFTER_MS = 3000;
const SHARDS_KEY = 'rm:shards';

const args = process.argv.slice(2);
const seconds = Number(option(args, '--seconds', '120'));
if (!Number.isFinite(seconds) || seconds <= 0) throw new Error('--seconds must be a positive number');
const scenario = option(args, '--scenario', 'all');
if (!['all', 'sentinel', 'cluster', 'partition'].includes(scenario)) throw new Error('--scenario must be sentinel, cluster, partition or all');
mainBuilt();

const quiet = (client) => (client.on('error', () => undefined), client);

/** One reply from the node on port (a fresh connection, short timeouts), or undefined if it does not answer. */
async function ask(port, ...command) {
  const c = quiet(new Redis(port, HOST, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000, commandTimeout: 2000 }));
  try {
    await c.connect();
    return await c.call(...command);
  } catch {
    return undefined;
  } finally {
    c.disconnect();
  }
}

async function until(what, ms, check) {
  const deadline = Date.now() + ms;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

/** A redis-server on a fixed port and dir that can be SIGKILLed and started again with the same arguments. */
class Node {
  constructor(port, args) {
    this.port = port;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rm-chaos-redis-'));
    this.args = ['--port', String(port), '--bind', HOST, '--dir', this.dir, '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--repl-diskless-sync-delay', '0', ...args(this.dir)];
  }

  async start(extra = []) {
    this.earlier = `${this.earlier ?? ''}${this.proc?.logs() ?? ''}--- start ${secondsOf(Date.now())} s ${extra.join(' ')}\n`;
    this.proc = track(spawn('redis-server', [...this.args, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] }), `redis ${this.port}`);
    await until(`redis-server on ${this.port}`, 10000, async () => (await ask(this.port, 'PING')) === 'PONG');
  }

  running() {
    return this.proc?.running() ?? false;
  }

  logs() {
    return `${this.earlier ?? ''}${this.proc?.logs() ?? ''}`;
  }

  async kill() {
    this.proc.child.kill('SIGKILL');
    await this.proc.exited;
  }

  remove() {
    if (this.running()) this.proc.child.kill('SIGKILL');
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A port whose cluster bus port (+10000) is free too. */
async function clusterPort(used) {
  for (;;) {
    const port = await freePort();
    if (port + 10000 > 65535 || used.has(port)) continue;
    const free = await new Promise((resolve) => {
      const srv = net.createServer().once('error', () => resolve(false));
      srv.listen(port + 10000, HOST, () => srv.close(() => resolve(true)));
    });
    if (free) {
      used.add(port);
      return port;
    }
  }
}

/**
 * A TCP proxy to targetPort that can be cut: while cut it relays nothing either way and
 * connects no new connection upstream, but keeps every byte (and close) and relays them on
 * heal, in order.
 */
async function startCutProxy(targetPort) {
  let cut = false;
  let held = [];
  const sockets = new Set();
  const relay = (fn) => (cut ? held.push(fn) : fn());
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('error', () => undefined);
    let upstream;
    const toUpstream = [];
    relay(() => {
      upstream = net.connect(targetPort, HOST);
      sockets.add(upstream);
      upstream.on('error', () => undefined);
      for (const chunk of toUpstream.splice(0)) upstream.write(chunk);
      upstream.on('data', (chunk) => relay(() => client.write(chunk)));
      upstream.on('close', () => relay(() => client.destroy()));
    });
    client.on('data', (chunk) => relay(() => (upstream ? upstream.write(chunk) : toUpstream.push(chunk))));
    client.on('close', () => relay(() => upstream?.destroy()));
  });
  await new Promise((resolve) => server.listen(0, HOST, resolve));
  return {
    port: server.address().port,
    cut: () => (cut = true),
    heal: () => {
      cut = false;
      const fns = held;
      held = [];
      for (const fn of fns) fn();
    },
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

// ---------------------------------------------------------------- topologies

async function startSentinelSet() {
  const master = new Node(await freePort(), () => []);
  await master.start();
  const replica = new Node(await freePort(), () => []);
  await replica.start(['--replicaof', HOST, String(master.port)]);
  const sentinelPort = await freePort();
  const sentinel = new Node(sentinelPort, () => []);
  const conf = path.join(sentinel.dir, 'sentinel.conf');
  fs.writeFileSync(
    conf,
    [
      `port ${sentinelPort}`,
      `bind ${HOST}`,
      'protected-mode no',
      `dir ${sentinel.dir}`,
      `sentinel monitor mymaster ${HOST} ${master.port} 1`,
      'sentinel down-after-milliseconds mymaster 1000',
      'sentinel failover-timeout mymaster 5000',
      '',
    ].join('\n'),
  );
  sentinel.args = [conf, '--sentinel'];
  await sentinel.start();
  const data = [master, replica];
  const masterPort = async () => Number((await ask(sentinelPort, 'SENTINEL', 'get-master-addr-by-name', 'mymaster'))?.[1]);
  const inSync = async () => {
    const m = await masterPort();
    const other = data.find((n) => n.port !== m);
    const info = String(await ask(m, 'INFO', 'replication'));
    if (!new RegExp(`slave\\d+:ip=${HOST},port=${other.port},state=online`).test(info)) return false;
    const replicas = (await ask(sentinelPort, 'SENTINEL', 'replicas', 'mymaster')) ?? [];
    return replicas.some((r) => r.includes(String(other.port)) && r[r.indexOf('flags') + 1] === 'slave');
  };
  await until('the replica in sync and known to the Sentinel', 30000, inSync);
  // A failover this run did not cause (a loaded machine: a master slow to answer PING for down-after 1 s) may promote a replica
  // restarted empty, and the old master then resyncs from it: what was stored is gone. Watched, to tell such a loss apart.
  let expected = master.port;
  let planned = 0; // bumped when a fault starts and when it is over: an answer asked for across either is stale
  const unplanned = [];
  const watcher = setInterval(async () => {
    const asked = planned;
    const m = await masterPort().catch(() => NaN);
    if (asked % 2 === 0 && asked === planned && m && m !== expected) {
      unplanned.push({ at: Date.now(), from: expected, to: m });
      log(`the Sentinel failed over on its own: ${expected} -> ${m}`);
      expected = m;
    }
  }, 250);
  return {
    unplanned,
    env: { REDIS_SENTINELS: `${HOST}:${sentinelPort}`, REDIS_SENTINEL_MASTER: 'mymaster', PUBLISH_WAIT_REPLICAS: '1' },
    client: () => quiet(new Redis({ sentinels: [{ host: HOST, port: sentinelPort }], name: 'mymaster', maxRetriesPerRequest: 2 })),
    /** SIGKILL the master; the fault is over once the Sentinel names the replica and it answers ROLE master. */
    async fault(faults) {
      const old = await masterPort();
      const oldNode = data.find((n) => n.port === old);
      const next = data.find((n) => n.port !== old);
      const f = { what: `SIGKILL master ${old}`, at: Date.now() };
      faults.push(f);
      planned++;
      await oldNode.kill();
      await until('the promotion', 30000, async () => (await masterPort()) === next.port && (await ask(next.port, 'ROLE'))?.[0] === 'master');
      f.over = Date.now();
      expected = next.port;
      planned++;
      log(`${f.what}: ${next.port} promoted after ${f.over - f.at} ms`);
      await oldNode.start(['--replicaof', HOST, String(next.port)]);
      await until('the old master in sync as a replica', 30000, inSync);
    },
    nodes: [sentinel, ...data],
    stop: () => {
      clearInterval(watcher);
      [sentinel, ...data].forEach((n) => n.remove());
    },
  };
}

async function startCluster() {
  const used = new Set();
  const nodes = [];
  for (let i = 0; i < 6; i++) {
    const node = new Node(await clusterPort(used), (dir) => ['--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, 'nodes.conf'), '--cluster-node-timeout', '2000']);
    await node.start();
    nodes.push(node);
  }
  const create = track(spawn('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `${HOST}:${n.port}`), '--cluster-replicas', '1', '--cluster-yes'], { stdio: ['ignore', 'pipe', 'pipe'] }), 'redis-cli');
  const { code } = await create.exited;
  if (code !== 0) throw new Error(`redis-cli --cluster create failed:\n${create.logs()}`);
  const live = () => nodes.filter((n) => n.running());
  /** [start, end, master port, replica ports] per CLUSTER SLOTS on the first live node. */
  const slots = async () => ((await ask(live()[0].port, 'CLUSTER', 'SLOTS')) ?? []).map(([s, e, m, ...r]) => [s, e, Number(m[1]), r.map((x) => Number(x[1]))]);
  const slot = Number(await ask(nodes[0].port, 'CLUSTER', 'KEYSLOT', SHARDS_KEY));
  const home = async () => (await slots()).find(([s, e]) => s <= slot && slot <= e);
  const healthy = async () => {
    const maps = new Set();
    for (const n of live()) {
      const info = String(await ask(n.port, 'CLUSTER', 'INFO'));
      if (!info.includes('cluster_state:ok') || !info.includes('cluster_slots_assigned:16384') || !info.includes('cluster_known_nodes:6')) return false;
      const role = await ask(n.port, 'ROLE');
      if (role?.[0] === 'slave' && role[3] !== 'connected') return false;
      const map = ((await ask(n.port, 'CLUSTER', 'SLOTS')) ?? [])
        .map(([s, e, m]) => `${s}-${e}:${m[1]}`)
        .sort()
        .join(',');
      maps.add(map);
    }
    if (maps.size !== 1) return false;
    for (const [, , m] of await slots()) if (!nodes.find((n) => n.port === m)?.running() || (await ask(m, 'ROLE'))?.[0] !== 'master') return false;
    return true;
  };
  await until('cluster_state:ok on all 6 nodes', 30000, healthy);
  let turn = 0;
  return {
    tagged: true,
    env: { REDIS_CLUSTER_NODES: nodes.map((n) => `${HOST}:${n.port}`).join(','), PUBLISH_WAIT_REPLICAS: '1' },
    client: () =>
      quiet(
        new Redis.Cluster(
          nodes.map((n) => ({ host: HOST, port: n.port })),
          { redisOptions: { maxRetriesPerRequest: 2 } },
        ),
      ),
    /** In turn: CLUSTER FAILOVER on the home node's replica, SIGKILL of the home node, SIGKILL of another master. */
    async fault(faults) {
      const kind = turn++ % 3;
      const [, , homePort, homeReplicas] = await home();
      const f = { at: Date.now() };
      let victim;
      if (kind === 0) {
        f.what = `CLUSTER FAILOVER on ${homeReplicas[0]} (replica of the subscribers' node ${homePort})`;
        faults.push(f);
        const reply = await ask(homeReplicas[0], 'CLUSTER', 'FAILOVER');
        if (reply !== 'OK') throw new Error(`CLUSTER FAILOVER answered ${reply}`);
      } else {
        const masters = [...new Set((await slots()).map(([, , m]) => m))];
        const port = kind === 1 ? homePort : masters.find((m) => m !== homePort);
        victim = nodes.find((n) => n.port === port);
        f.what = `SIGKILL master ${port}${port === homePort ? " (the subscribers' node)" : ''}`;
        faults.push(f);
        await victim.kill();
      }
      const moved = kind !== 2 ? async () => (await home())[2] !== homePort : async () => true;
      await until(`the cluster ok after ${f.what}`, 30000, async () => (await moved()) && (await healthy()));
      f.over = Date.now();
      log(`${f.what}: cluster ok, rm:shards on ${(await home())[2]}, after ${f.over - f.at} ms`);
      if (victim) {
        await victim.start();
        await until('the killed node back as a replica', 30000, healthy);
      }
    },
    nodes,
    stop: () => nodes.forEach((n) => n.remove()),
  };
}

async function startPartitioned() {
  const node = new Node(await freePort(), () => []);
  await node.start();
  const proxy = await startCutProxy(node.port);
  return {
    env: { REDIS_URL: `redis://${HOST}:${node.port}` },
    /** Instance 1 goes through the proxy. */
    envOf: (n) => (n === 1 ? { REDIS_URL: `redis://${HOST}:${proxy.port}` } : {}),
    client: () => quiet(new Redis(node.port, HOST, { maxRetriesPerRequest: 2 })),
    /** Cut instance 1 from Redis for PARTITION_MS; the fault is over when the link relays again. */
    async fault(faults, admin) {
      const f = { what: `instance 1 cut from Redis for ${PARTITION_MS} ms`, at: Date.now() };
      faults.push(f);
      proxy.cut();
      await until('presence of instance 1 to lapse', PARTITION_MS, async () => (await admin.exists('rm:node:chaos-1')) === 0).then(
        () => (f.note = `its presence key gone after ${Date.now() - f.at} ms`),
        () => (f.note = 'its presence key still there when the link healed'),
      );
      await sleep(f.at + PARTITION_MS - Date.now());
      proxy.heal();
      f.over = Date.now();
      await until('presence of instance 1 back', 20000, async () => (await admin.exists('rm:node:chaos-1')) === 1).then(
        () => (f.note += `, back ${Date.now() - f.over} ms after the heal`),
        () => (f.note += ', not back 20 s after the heal'),
      );
      log(`${f.what}: ${f.note}`);
    },
    nodes: [node],
    heal: () => proxy.heal(),
    stop: () => {
      proxy.close();
      node.remove();
    },
  };
}

// ---------------------------------------------------------------- a scenario

/** Why inbox entries went unconfirmed: message -> count. */
const inboxTrouble = new Map();

/** XADD and WAIT 1 on the same connection (a pipeline goes to the node of rm:inbox): confirmed once a replica has it. */
async function xaddReplicated(redis, fields) {
  // An ioredis Cluster pipeline to a node that dies can stay unsettled: unconfirmed after 10 s.
  let timer;
  const timeout = new Promise((resolve, reject) => (timer = setTimeout(() => reject(new Error('XADD + WAIT: no answer in 10 s')), 10000)));
  const replies = redis
    .pipeline()
    .xadd('rm:inbox', '*', ...fields)
    .call('WAIT', 1, 1000)
    .exec();
  try {
    const [[addError], [waitError, replicas]] = await Promise.race([replies, timeout]).finally(() => clearTimeout(timer));
    if (addError || waitError) throw addError ?? waitError;
    if (replicas < 1) throw new Error('WAIT 1: no replica has it');
    return true;
  } catch (error) {
    // The pipeline does not follow MOVED (WAIT has no key): learn the new slot map for the next one.
    if (/MOVED|CLUSTERDOWN/.test(error.message)) redis.refreshSlotsCache?.();
    inboxTrouble.set(error.message, (inboxTrouble.get(error.message) ?? 0) + 1);
    return false;
  }
}

async function run(name, topology) {
  log(`scenario ${name}: ${seconds} s, 3 instances, ${USERS.length} users, ${CLIENT_SLOTS} churning clients`);
  const instances = [];
  for (let n = 1; n <= 3; n++) instances.push(new Instance(n, await freePort(), { ...topology.env, ...topology.envOf?.(n) }));
  await Promise.all(instances.map((i) => i.start()));
  await sleep(2000); // shard leases spread over the three
  const pub = topology.client();
  const producer = topology.client();
  const admin = topology.client();
  const traffic = new Traffic(USERS);
  const faults = [];
  const begun = Date.now();
  let faultError;
  const injector = (async () => {
    while (Date.now() - begun < seconds * 1000 - GAP_MS) {
      await sleep(GAP_MS);
      if (!traffic.running || Date.now() - begun > seconds * 1000 - GAP_MS / 2) break; // over while the load runs
      await topology.fault(faults, admin).catch((error) => (faultError = error));
      if (faultError) break;
    }
  })();
  const wait = topology.env.PUBLISH_WAIT_REPLICAS === '1' ? xaddReplicated : undefined;
  const tasks = [traffic.rawProducer(pub), traffic.inboxProducer(producer, wait)];
  for (let w = 0; w < HTTP_WORKERS; w++) tasks.push(traffic.httpProducer(instances, w));
  tasks.push(...Array.from({ length: CLIENT_SLOTS }, () => traffic.clientSlot(instances)));
  const { sent, counts } = traffic;
  const progress = setInterval(
    () => log(`sent raw ${sent.raw.size} http ${sent.http.size} inbox ${sent.inbox.size}; clients received ${counts.received}, acked ${counts.acked}; faults ${faults.length}`),
    10000,
  );
  while (Date.now() - begun < seconds * 1000 && !faultError) await sleep(200);
  traffic.running = false;
  log('stopping producers and clients; letting everything settle');
  await Promise.all(tasks);
  await injector;
  clearInterval(progress);
  topology.heal?.();
  const deadline = Date.now() + 60000;
  while (!(await inboxSettled(admin)) && Date.now() < deadline) await sleep(200);
  const settled = Date.now() < deadline ? undefined : await admin.xinfo('GROUPS', 'rm:inbox').catch((error) => error.message);
  await sleep(3000); // the routers drain what they heard
  await Promise.all(instances.map((i) => i.stop())); // owed messages go back to the queues
  const stored = await storedMessages(admin, USERS, topology.tagged);
  const { report, unansweredTwice } = traffic.tally(stored);
  for (const c of [pub, producer, admin]) c.disconnect();
  topology.stop();

  const windowOf = (f) => [f.at - WINDOW_BEFORE_MS, (f.over ?? Date.now()) + WINDOW_AFTER_MS];
  const inWindow = (at) => faults.some((f) => at >= windowOf(f)[0] && at <= windowOf(f)[1]);
  const problems = [];
  if (faultError) problems.push(`fault injection failed: ${faultError.message}`);
  for (const u of topology.unplanned ?? [])
    problems.push(`the Sentinel failed over on its own at ${secondsOf(u.at)} s, ${u.from} -> ${u.to} (a replica restarted empty may have been promoted: losses on every path are then Redis's)`);
  if (unansweredTwice > 0) problems.push(`${unansweredTwice} unconfirmed messages stored under two ids`);
  const rows = [];
  // A raw PUBLISH counts from when Redis took it (one the publisher's client held while it reconnected was published then).
  // A raw PUBLISH Redis answered with 0 receivers reached no instance (every subscriber was reconnecting):
  // its publisher was told so by PUBLISH's answer. Counted apart, never a loss RedMessenger could prevent.
  const unheard = report.raw.lostSent.filter((e) => e.receivers === 0).length;
  report.raw.lostAt = report.raw.lostSent.filter((e) => e.receivers !== 0).map((e) => e.acceptedAt ?? e.at);
  for (const [pathName, r] of Object.entries(report)) {
    const lostOutside = r.lostAt.filter((at) => !inWindow(at)).length;
    const twiceOutside = r.twiceAt.filter((at) => !inWindow(at)).length;
    const allowed = pathName === 'raw';
    if (allowed ? lostOutside > 0 : r.lost > 0) problems.push(`${pathName}: ${allowed ? lostOutside : r.lost} lost${allowed ? ' outside the windows' : ''}`);
    if (allowed ? twiceOutside > 0 : r.storedTwice > 0) problems.push(`${pathName}: ${allowed ? twiceOutside : r.storedTwice} under two ids${allowed ? ' outside the windows' : ''}`);
    rows.push(
      `  ${pathName.padEnd(6)}${String(r.sent).padStart(7)}${String(r.deliveredToClients).padStart(11)}${String(r.stillStored).padStart(8)}${String(r.lost).padStart(6)}${String(lostOutside).padStart(9)}${String(r.storedTwice).padStart(7)}`,
    );
  }
  const lines = [`== scenario ${name}: ${seconds} s, ${faults.length} faults; ${problems.length ? 'FAIL' : 'PASS'}`];
  lines.push('  path     sent  delivered  stored  lost  outside  twice');
  lines.push(...rows);
  const unconfirmed = [...traffic.unanswered].filter((p) => p.startsWith('inbox:')).length;
  lines.push(
    `  unanswered POSTs ${traffic.unanswered.size - unconfirmed}, inbox entries not confirmed on a replica ${unconfirmed} (either stored twice: ${unansweredTwice}); POST retries ${counts.httpRetries} (503: ${counts.http503}, other: ${counts.httpErrors})`,
  );
  if (settled) lines.push(`  the inbox group had not settled 60 s after the load stopped (nothing lost or stored twice is judged by what is stored): XINFO GROUPS ${JSON.stringify(settled)}`);
  if (inboxTrouble.size) lines.push(`  inbox entries unconfirmed because: ${[...inboxTrouble].map(([m, n]) => `${n} × ${m}`).join('; ')}`);
  inboxTrouble.clear();
  if (unheard > 0) lines.push(`  raw PUBLISHes Redis answered "0 subscribers" (no instance subscribed at that moment; not counted as lost): ${unheard}`);
  lines.push(`  clients: ${counts.connects} connects, ${counts.received} messages received, ${counts.acked} acked, ${counts.dropped} dropped unacked, ${counts.identifyFailed} error frames`);
  lines.push(`  windows (${WINDOW_BEFORE_MS} ms before a fault .. ${WINDOW_AFTER_MS} ms after it is over):`);
  for (const f of faults) {
    const [from, to] = windowOf(f);
    const lostHere = report.raw.lostAt.filter((at) => at >= from && at <= to).length;
    const twiceHere = report.raw.twiceAt.filter((at) => at >= from && at <= to).length;
    lines.push(
      `    ${secondsOf(f.at)} s ${f.what}; over after ${f.over ? f.over - f.at : '?'} ms${f.note ? ` (${f.note})` : ''}: window ${secondsOf(from)}-${secondsOf(to)} s, raw lost ${lostHere}, twice ${twiceHere}`,
    );
  }
  // Which ids a message stored twice carries (an id starts with the tag of the process that gave it).
  const twice = [...sent.raw.keys()].map((p) => [p, new Set([...(traffic.handled.get(p) ?? []), ...(stored.get(p) ?? [])])]).filter(([, ids]) => ids.size > 1);
  if (twice.length)
    lines.push(
      `  raw stored under two ids, e.g.: ${twice
        .slice(0, 3)
        .map(([p, ids]) => `${p} ${[...ids].join(' and ')}`)
        .join('; ')}`,
    );
  for (const p of problems) lines.push(`  problem: ${p}`);
  for (const pathName of ['http', 'inbox']) {
    const at = report[pathName].lostAt.sort((a, b) => a - b);
    if (at.length) lines.push(`    ${pathName} lost: ${at.length}, sent from ${secondsOf(at[0])} s to ${secondsOf(at.at(-1))} s`);
  }
  const twiceOutside = report.raw.twiceAt.filter((at) => !inWindow(at)).sort((a, b) => a - b);
  if (twiceOutside.length) lines.push(`    raw under two ids outside the windows, sent from ${secondsOf(twiceOutside[0])} s to ${secondsOf(twiceOutside.at(-1))} s`);
  const outside = [...report.raw.lostSent, ...report.http.lostSent, ...report.inbox.lostSent].filter((e) => !inWindow(e.acceptedAt ?? e.at)).sort((a, b) => a.at - b.at);
  for (const e of outside.slice(0, 12))
    lines.push(`    lost: to ${e.user}, sent at ${secondsOf(e.at)} s${e.acceptedAt ? `, taken by Redis at ${secondsOf(e.acceptedAt)} s, reached ${e.receivers} subscribers` : ''}`);
  if (outside.length) {
    const dropped = instances.map((i) => `instance ${i.n}: ${(i.logs.match(/did not complete; a message heard meanwhile is dropped/g) ?? []).length}`);
    lines.push(`    "hand-over ... did not complete ... dropped" log lines: ${dropped.join(', ')}`);
  }
  if (problems.length) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `rm-chaos-${name}-logs-`));
    for (const instance of instances) fs.writeFileSync(path.join(dir, `instance-${instance.n}.log`), instance.logs);
    for (const node of topology.nodes) fs.writeFileSync(path.join(dir, `redis-${node.port}.log`), node.logs());
    lines.push(`  instance logs: ${dir}`);
  }
  console.log(lines.join('\n'));
  return problems.length === 0;
}

async function main() {
  const starters = { sentinel: startSentinelSet, cluster: startCluster, partition: startPartitioned };
  let ok = true;
  for (const name of scenario === 'all' ? Object.keys(starters) : [scenario]) {
    ok = (await run(name, await starters[name]())) && ok;
  }
  console.log(ok ? 'CHAOS (Redis faults): PASS' : 'CHAOS (Redis faults): FAIL');
  process.exit(ok ? 0 : 1);
}

main().catch((error) => {
  console.error(`chaos run failed: ${error.stack}`);
  process.exit(2);
});
