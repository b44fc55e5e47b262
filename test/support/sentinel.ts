// A Sentinel-managed Redis for e2e tests: a master, one replica and one sentinel
// (quorum 1, down-after 1 s), each a redis-server child process in its own temp dir.
// Ready once the replica is in sync and the sentinel knows both. failover() SIGKILLs the
// master and waits for the sentinel to promote the replica; restartOld() brings the
// killed node back as a replica, so failover() can run again.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import Redis, { RedisOptions } from 'ioredis';
import { ask, dataNodeArgs, HostPort, RedisNode, showing, spawnNode, Target } from './redis-node';
import { waitFor } from './wait';

export interface TestSentinel {
  /** `127.0.0.1:<port>`: the format of REDIS_SENTINELS. */
  sentinels: string;
  masterName: 'mymaster';
  /** The master as the sentinel names it now. */
  master(): Promise<HostPort>;
  /** A new ioredis client ({ sentinels, name }), tracked: close() quits it. */
  client(options?: RedisOptions): Redis;
  /** SIGKILL the master; resolves once the sentinel names the replica and it answers ROLE as master. */
  failover(): Promise<void>;
  /** Start the node the last failover() killed, as a replica of the current master. */
  restartOld(): Promise<void>;
  /** Quit clients, stop all three processes, remove dirs; idempotent. */
  close(): Promise<void>;
}

const HOST = '127.0.0.1';
const NAME = 'mymaster';
const READY_TIMEOUT_MS = 30_000;
const FAILOVER_TIMEOUT_MS = 30_000;

export interface StartSentinelOptions {
  /** requirepass (and masterauth) of the master and the replica. */
  password?: string;
  /** requirepass of the Sentinel itself. */
  sentinelPassword?: string;
}

export async function startSentinel({ password, sentinelPassword }: StartSentinelOptions = {}): Promise<TestSentinel> {
  const node = (port: number): Target => ({ port, secure: { password } });
  const sentinelAt = (): Target => ({ port: sentinel!.port, secure: { password: sentinelPassword } });
  const data: RedisNode[] = []; // the two data nodes; which is master changes on failover
  let sentinel: RedisNode | undefined;
  let killed: RedisNode | undefined;
  const clients = new Set<Redis>();
  const all = (): RedisNode[] => (sentinel ? [...data, sentinel] : data);

  const serverArgs = (port: number, dir: string): string[] => dataNodeArgs(port, dir, { password });

  const master = async (): Promise<HostPort> => {
    const addr = (await ask(sentinelAt(), 'SENTINEL', 'get-master-addr-by-name', NAME)) as [string, string] | null;
    if (!addr) throw new Error(`Sentinel ${sentinel!.port} does not know ${NAME}`);
    return { host: addr[0], port: Number(addr[1]) };
  };
  const role = async (port: number): Promise<string> => String(((await ask(node(port), 'ROLE')) as unknown[])[0]);

  // The master lists the replica as online, the sentinel names this master and sees the
  // replica up (flags exactly "slave": not s_down, not disconnected), so it could fail over to it.
  const inSync = async (masterPort: number, replicaPort: number): Promise<boolean> => {
    const info = String(await ask(node(masterPort), 'INFO', 'replication'));
    if (!new RegExp(`slave\\d+:ip=${HOST},port=${replicaPort},state=online`).test(info)) return false;
    if ((await master()).port !== masterPort) return false;
    const replicas = (await ask(sentinelAt(), 'SENTINEL', 'replicas', NAME)) as string[][];
    return replicas.some((r) => fields(r).port === String(replicaPort) && fields(r).flags === 'slave');
  };

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const cs = [...clients];
      clients.clear();
      // quit() waits for a reply, which never comes from a master that is down.
      await Promise.all(
        cs.map(async (c) => {
          if (c.status === 'ready') await c.quit().catch(() => c.disconnect());
          else if (c.status !== 'end') c.disconnect();
        }),
      );
      // Sentinel first, so it does not start a failover while the data nodes stop.
      await sentinel?.remove();
      await Promise.all(data.map((n) => n.remove()));
    })();
    return closing;
  };

  try {
    const m = await spawnNode({ label: 'master', args: serverArgs, secure: { password } });
    data.push(m);
    data.push(await spawnNode({ label: 'replica', secure: { password }, args: (p, d) => [...serverArgs(p, d), '--replicaof', HOST, String(m.port)] }));
    sentinel = await spawnNode({
      label: 'sentinel',
      secure: { password: sentinelPassword },
      // Sentinel rewrites its config file, so it lives in the sentinel's own temp dir.
      args: async (port, dir) => {
        const conf = path.join(dir, 'sentinel.conf');
        await writeFile(
          conf,
          [
            `port ${port}`,
            `bind ${HOST}`,
            'protected-mode no',
            'daemonize no',
            `dir ${dir}`,
            `sentinel monitor ${NAME} ${HOST} ${m.port} 1`,
            `sentinel down-after-milliseconds ${NAME} 1000`,
            `sentinel failover-timeout ${NAME} 5000`,
            `sentinel parallel-syncs ${NAME} 1`,
            ...(password ? [`sentinel auth-pass ${NAME} ${password}`] : []),
            ...(sentinelPassword ? [`requirepass ${sentinelPassword}`] : []),
            '',
          ].join('\n'),
        );
        return [conf, '--sentinel'];
      },
    });
    await waitFor(() => inSync(m.port, data[1].port), READY_TIMEOUT_MS, 'the replica in sync and known to the sentinel', showing(all()));
  } catch (err) {
    await close();
    throw err;
  }

  const s = sentinel;
  return {
    sentinels: `${HOST}:${s.port}`,
    masterName: NAME,
    master,
    client(options?: RedisOptions) {
      const c = new Redis({ password, sentinelPassword, ...options, sentinels: [{ host: HOST, port: s.port }], name: NAME });
      // Without a listener ioredis logs every failed reconnect while the master is down.
      c.on('error', () => undefined);
      clients.add(c);
      return c;
    },
    async failover() {
      const old = await master();
      const oldNode = data.find((n) => n.port === old.port);
      const next = data.find((n) => n.port !== old.port);
      if (!oldNode?.running() || !next?.running()) {
        throw new Error(`failover() needs both nodes up (master ${old.port}): call restartOld() after a failover`);
      }
      await oldNode.kill();
      killed = oldNode;
      await waitFor(
        async () => (await master()).port === next.port && (await role(next.port)) === 'master',
        FAILOVER_TIMEOUT_MS,
        `the sentinel to promote ${next.port} after killing ${old.port}`,
        showing(all()),
      );
    },
    async restartOld() {
      if (!killed) throw new Error('restartOld(): no node was killed by failover()');
      const node = killed;
      const current = await master();
      // Straight in as a replica: started as a master it would take writes until the sentinel demotes it.
      await node.start(['--replicaof', current.host, String(current.port)]);
      killed = undefined;
      await waitFor(() => inSync(current.port, node.port), READY_TIMEOUT_MS, `${node.port} in sync with ${current.port} and known to the sentinel`, showing(all()));
    },
    close,
  };
}

/** SENTINEL replies are flat [name, value, name, value, ...] lists. */
function fields(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]] = flat[i + 1];
  return out;
}
