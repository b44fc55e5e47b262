// A Redis Cluster for e2e tests: `masters` redis-server child processes (plus
// `replicasPerMaster` replicas each), joined by `redis-cli --cluster create`, ready once
// every node says cluster_state:ok with all 16384 slots assigned. Tests can SIGKILL and
// restart nodes, find the master of a key, and fail a master over to its replica.
// Nodes keep nothing on disk but nodes-<port>.conf, so a restarted master comes back empty.
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { Cluster, ClusterOptions } from 'ioredis';
import { freePort, stopChild, tail, trackChild } from './proc';
import { ask, CLI_BIN, HostPort, dataNodeArgs, logsOf, RedisNode, Secure, showing, spawnNode, Target } from './redis-node';
import { waitFor, within } from './wait';

export interface TestCluster {
  /** Every node, masters and replicas, in the order given to `--cluster create`. */
  nodes: HostPort[];
  /** `127.0.0.1:p1,127.0.0.1:p2,...`: the format of REDIS_CLUSTER_NODES. */
  seeds: string;
  /** A new ioredis Cluster client, tracked: close() quits it. */
  client(options?: ClusterOptions): Cluster;
  /** SIGKILL that node, as a crash would. */
  killNode(port: number): Promise<void>;
  /** Start it again on the same port and dir; resolves once the cluster is ok again. */
  startNode(port: number): Promise<void>;
  /** The master serving the slot of key, as the first live node sees it. */
  masterOf(key: string): Promise<HostPort>;
  /**
   * SIGKILL the master of key's slot; resolves with the promoted replica once every
   * live node says cluster_state:ok and names it owner of the slot. Needs replicas.
   */
  failoverMasterOf(key: string): Promise<HostPort>;
  /** Quit clients, stop nodes, remove dirs; idempotent. */
  close(): Promise<void>;
}

export interface StartClusterOptions {
  masters?: number;
  replicasPerMaster?: number;
  /** Every node with this password and/or TLS only (the cluster bus and replication too); client() uses them. */
  secure?: Secure;
}

const HOST = '127.0.0.1';
const CREATE_TIMEOUT_MS = 30_000;
const OK_TIMEOUT_MS = 30_000;
// Cluster bus port = port + 10000 (Redis's fixed offset): it must be free as well.
const BUS_OFFSET = 10_000;

export async function startCluster({ masters = 3, replicasPerMaster = 0, secure }: StartClusterOptions = {}): Promise<TestCluster> {
  if (masters < 3) throw new Error(`startCluster: redis-cli --cluster create needs at least 3 masters, not ${masters}`);
  const total = masters * (1 + replicasPerMaster);
  const used = new Set<number>();
  const nodes: RedisNode[] = [];
  const clients = new Set<Cluster>();

  const at = (port: number): Target => ({ port, secure });
  const live = (): RedisNode[] => nodes.filter((n) => n.running());
  const anyLive = (): number => {
    const n = live()[0];
    if (!n) throw new Error('Every node of this cluster is down');
    return n.port;
  };
  const byPort = (port: number): RedisNode => {
    const n = nodes.find((x) => x.port === port);
    if (!n) throw new Error(`No node on port ${port} in this cluster (${nodes.map((x) => x.port).join(', ')})`);
    return n;
  };

  // Every live node: state ok, all slots assigned, every node known (gossip has spread),
  // replicas linked to their master (else they cannot take over), and the same slot map
  // with only live masters in it (a restarted master may still claim its old slots).
  const healthy = async (): Promise<boolean> => {
    const maps = new Set<string>();
    for (const n of live()) {
      const info = String(await ask(at(n.port), 'CLUSTER', 'INFO'));
      if (!info.includes('cluster_state:ok') || !info.includes('cluster_slots_assigned:16384')) return false;
      if (!info.includes(`cluster_known_nodes:${total}`)) return false;
      const role = (await ask(at(n.port), 'ROLE')) as unknown[];
      if (role[0] === 'slave' && role[3] !== 'connected') return false;
      maps.add(JSON.stringify(await slotMap(at(n.port))));
    }
    if (maps.size !== 1) return false;
    const owners = new Set((JSON.parse([...maps][0]) as number[][]).map(([, , port]) => port));
    for (const port of owners) {
      if (!byPort(port).running() || ((await ask(at(port), 'ROLE')) as unknown[])[0] !== 'master') return false;
    }
    return true;
  };

  const slotOf = async (key: string): Promise<number> => Number(await ask(at(anyLive()), 'CLUSTER', 'KEYSLOT', key));

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const all = [...clients];
      clients.clear();
      await Promise.all(all.map(quitCluster));
      await Promise.all(nodes.map((n) => n.remove()));
    })();
    return closing;
  };

  try {
    for (let i = 0; i < total; i++) {
      nodes.push(
        await spawnNode({
          label: 'cluster node',
          pickPort: () => clusterPort(used),
          secure,
          args: (port, dir) => ['--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '2000', ...dataNodeArgs(port, dir, secure)],
        }),
      );
    }
    await createCluster(nodes, replicasPerMaster, secure);
    await waitFor(healthy, OK_TIMEOUT_MS, `cluster_state:ok on all ${total} nodes`, showing(nodes));
  } catch (err) {
    await close();
    throw err;
  }

  const addrs = nodes.map((n) => ({ host: HOST, port: n.port }));
  return {
    nodes: addrs,
    seeds: addrs.map((a) => `${a.host}:${a.port}`).join(','),
    client(options?: ClusterOptions) {
      const auth = { password: secure?.password, tls: secure?.tls ? { ca: secure.tls.ca } : undefined };
      const c = new Cluster(addrs, { ...options, redisOptions: { ...auth, ...options?.redisOptions } });
      // Without a listener ioredis logs every failed reconnect while a node is down.
      c.on('error', () => undefined);
      clients.add(c);
      return c;
    },
    killNode: (port) => byPort(port).kill(),
    async startNode(port) {
      await byPort(port).start();
      await waitFor(healthy, OK_TIMEOUT_MS, `cluster_state:ok after restarting node ${port}`, showing(nodes));
    },
    async masterOf(key) {
      return slotOwner(at(anyLive()), await slotOf(key));
    },
    async failoverMasterOf(key) {
      if (replicasPerMaster < 1) throw new Error('failoverMasterOf needs startCluster({ replicasPerMaster: 1 }) or more');
      const slot = await slotOf(key);
      const old = await slotOwner(at(anyLive()), slot);
      await byPort(old.port).kill();
      await waitFor(
        async () => (await healthy()) && (await slotOwner(at(anyLive()), slot)).port !== old.port,
        OK_TIMEOUT_MS,
        `a replica of ${old.port} to take over slot ${slot} with cluster_state:ok`,
        showing(nodes),
      );
      return slotOwner(at(anyLive()), slot);
    },
    close,
  };
}

/** A free port whose bus port (+10000) is free too, and neither used by this cluster. */
async function clusterPort(used: Set<number>): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await freePort();
    const bus = p + BUS_OFFSET;
    if (bus > 65535 || used.has(p) || used.has(bus) || !(await portFree(bus))) continue;
    used.add(p);
    used.add(bus);
    return p;
  }
  throw new Error('No free port pair (port, port+10000) found in 50 tries');
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, HOST, () => srv.close(() => resolve(true)));
  });
}

async function createCluster(nodes: RedisNode[], replicas: number, secure?: Secure): Promise<void> {
  const args = ['--cluster', 'create', ...nodes.map((n) => `${HOST}:${n.port}`), '--cluster-replicas', String(replicas), '--cluster-yes'];
  if (secure?.password) args.push('-a', secure.password, '--no-auth-warning');
  if (secure?.tls) args.push('--tls', '--cacert', secure.tls.caFile);
  const c = spawn(CLI_BIN(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  trackChild(c);
  let output = '';
  c.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  c.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  // 'close' comes after the output is fully read; 'error' when redis-cli cannot run.
  const done = new Promise<number | null>((resolve, reject) => {
    c.once('close', (code) => resolve(code));
    c.once('error', (err) => reject(new Error(`Could not run ${CLI_BIN()} (set REDIS_CLI_BIN?): ${err.message}`)));
  });
  let code: number | null;
  try {
    code = await within(done, CREATE_TIMEOUT_MS, 'redis-cli --cluster create');
  } catch (err) {
    await stopChild(c, 'SIGKILL', 1000);
    throw new Error(`${(err as Error).message}:\n${tail(output)}\n${logsOf(nodes)}`);
  }
  if (code !== 0) throw new Error(`redis-cli --cluster create failed (code ${code}):\n${tail(output)}\n${logsOf(nodes)}`);
}

/** [start, end, masterPort] per slot range, per CLUSTER SLOTS on that node. */
async function slotMap(target: Target): Promise<number[][]> {
  const ranges = (await ask(target, 'CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
  return ranges.map(([start, end, [, master]]) => [start, end, Number(master)]).sort((a, b) => a[0] - b[0]);
}

/** The master of slot per CLUSTER SLOTS on that node: [[start, end, [ip, port, id], ...replicas], ...]. */
async function slotOwner(target: Target, slot: number): Promise<HostPort> {
  const ranges = (await ask(target, 'CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
  const range = ranges.find(([start, end]) => start <= slot && slot <= end);
  if (!range) throw new Error(`Node ${JSON.stringify(typeof target === 'number' ? target : target.port)} knows no master for slot ${slot}`);
  return { host: range[2][0] || HOST, port: Number(range[2][1]) };
}

// quit() waits for every node to reply, which a dead node never does: disconnect then.
async function quitCluster(c: Cluster): Promise<void> {
  if (c.status === 'end') return;
  if (c.status !== 'ready') return c.disconnect();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, 2000)));
  await Promise.race([c.quit().catch(() => undefined), timeout]);
  clearTimeout(timer);
  c.disconnect(); // a no-op once quit() has ended it
}
