// A Redis for e2e tests: a shared one from REDIS_URL_TEST, a testcontainers one
// (REDIS_TEST_CONTAINERS=1 and a Docker engine answers; image REDIS_TEST_IMAGE, default
// redis:7-alpine), or a redis-server child process that tests can stop, restart and SIGKILL.
// Only suites that never restart Redis get a container: its mapped port changes on restart.
import { execFile } from 'node:child_process';
import Redis, { RedisOptions } from 'ioredis';
import { freePort } from './proc';
import { spawnNode } from './redis-node';
import type { TestTls } from './tls';

/** Which Redis a handle is: the REDIS_URL_TEST one, a testcontainers container, or a redis-server child. */
export type RedisKind = 'shared' | 'container' | 'process';

export interface TestRedis {
  kind: RedisKind;
  /** redis://[:password@]127.0.0.1:port */
  url: string;
  port: number;
  /** With StartRedisOptions.tls: the TLS port (the plain one stays for the harness). */
  tlsPort?: number;
  host: string;
  /** A new ioredis client, tracked: stop() and close() quit it. */
  client(options?: RedisOptions): Redis;
  /** Graceful shutdown (data kept if persistent). Quits the tracked clients first. */
  stop(): Promise<void>;
  /** Start again on the same port and data dir; resolves once PING answers. */
  start(): Promise<void>;
  /** SIGKILL, as a crash would. */
  kill(): Promise<void>;
  /** Send a signal to the redis-server (SIGSTOP: it hangs with its sockets open; SIGCONT: it goes on). */
  signal(sig: NodeJS.Signals): void;
  /** True when stop/start/kill work (a harness-owned redis-server). */
  restartable: boolean;
  /** stop + remove the temp dir + quit clients; idempotent. */
  close(): Promise<void>;
}

export interface StartRedisOptions {
  /** Data survives stop()/start() (AOF, fsync always). Implies restartable. */
  persistent?: boolean;
  /** stop/start/kill must work: always a redis-server child process. */
  restartable?: boolean;
  /** requirepass: url and client() carry it. Always a redis-server child process. */
  password?: string;
  /** Also listen with TLS on tlsPort (this certificate; clients' certificates not asked for). Always a child process. */
  tls?: TestTls;
  /** More redis-server arguments. Always a child process. */
  args?: string[];
}

export async function startRedis(opts: StartRedisOptions = {}): Promise<TestRedis> {
  // Persistence only shows across a restart, so it needs a Redis we can restart.
  const restartable = !!(opts.restartable || opts.persistent || opts.password || opts.tls || opts.args);
  const shared = process.env.REDIS_URL_TEST;
  if (shared && !restartable) return sharedRedis(shared);
  // Opt-in, so that a machine which happens to run a Docker engine keeps the default.
  if (!restartable && process.env.REDIS_TEST_CONTAINERS === '1') {
    if (containerFailed === undefined && (await dockerAvailable())) {
      try {
        return await containerRedis();
      } catch (err) {
        containerFailed = err; // do not pay for the same failure again in this file
        console.warn(`testcontainers Redis failed, using redis-server instead: ${String(err)}`);
      }
    } else if (containerFailed === undefined) {
      warnOnce('REDIS_TEST_CONTAINERS=1 but no Docker engine answers `docker info`: using redis-server');
    }
  }
  return spawnedRedis(opts);
}

// ---------------------------------------------------------------------------
// Common part: address and tracked clients.

function makeHandle(kind: RedisKind, url: string, ctl: Pick<TestRedis, 'stop' | 'start' | 'kill' | 'restartable' | 'tlsPort'> & { cleanup(): Promise<void>; signal?(sig: NodeJS.Signals): void }): TestRedis {
  const parsed = new URL(url);
  const clients = new Set<Redis>();
  const quitClients = async (): Promise<void> => {
    const all = [...clients];
    clients.clear();
    // quit() waits for a reply, which never comes from a Redis that is down; disconnect()
    // on an ended client would leave a 2 s timer behind.
    await Promise.all(
      all.map(async (c) => {
        if (c.status === 'ready') await c.quit().catch(() => c.disconnect());
        else if (c.status !== 'end') c.disconnect();
      }),
    );
  };
  let closing: Promise<void> | undefined;
  return {
    kind,
    url,
    host: parsed.hostname,
    port: Number(parsed.port || 6379),
    restartable: ctl.restartable,
    tlsPort: ctl.tlsPort,
    client(options?: RedisOptions) {
      const c = options ? new Redis(url, options) : new Redis(url);
      // Without a listener ioredis logs every failed reconnect while Redis is down;
      // commands still reject, which is what tests look at.
      c.on('error', () => undefined);
      clients.add(c);
      return c;
    },
    async stop() {
      await quitClients();
      await ctl.stop();
    },
    start: () => ctl.start(),
    kill: () => ctl.kill(),
    signal(sig) {
      if (!ctl.signal) throw new Error('signal() needs a harness-owned Redis: call startRedis({ restartable: true })');
      ctl.signal(sig);
    },
    close() {
      closing ??= (async () => {
        await quitClients();
        await ctl.cleanup();
      })();
      return closing;
    },
  };
}

function notOwned(kind: string): () => Promise<void> {
  return () => Promise.reject(new Error(`This Redis is ${kind}: stop/start/kill need a harness-owned Redis; ` + 'call startRedis({ restartable: true }).'));
}

// ---------------------------------------------------------------------------
// Shared Redis from REDIS_URL_TEST: never flushed (tests use unique ids), never stopped.

function sharedRedis(url: string): TestRedis {
  const refuse = notOwned('shared (REDIS_URL_TEST)');
  return makeHandle('shared', url, { restartable: false, stop: refuse, start: refuse, kill: refuse, cleanup: async () => {} });
}

// ---------------------------------------------------------------------------
// testcontainers, when a Docker engine answers.

let dockerCheck: Promise<boolean> | undefined;
let containerFailed: unknown;
const warned = new Set<string>();
const warnOnce = (text: string): void => {
  if (!warned.has(text)) console.warn(text);
  warned.add(text);
};

/** Whether a Docker engine answers `docker info` (asked once per test file). */
export function dockerAvailable(): Promise<boolean> {
  dockerCheck ??= new Promise((resolve) => {
    execFile('docker', ['info', '--format', '{{.ServerVersion}}'], { timeout: 3000 }, (err) => resolve(!err));
  });
  return dockerCheck;
}

async function containerRedis(): Promise<TestRedis> {
  // Loaded lazily: only this opt-in path needs it.
  const { RedisContainer } = await import('@testcontainers/redis');
  const image = process.env.REDIS_TEST_IMAGE || 'redis:7-alpine';
  const container = await new RedisContainer(image).start();
  const url = `redis://${container.getHost()}:${container.getPort()}`;
  // Printed so that a run's output shows which suites had a container.
  console.info(`testcontainers Redis ${image} (container ${container.getId().slice(0, 12)}) at ${url}`);
  const refuse = notOwned('a container');
  return makeHandle('container', url, {
    restartable: false,
    stop: refuse,
    start: refuse,
    kill: refuse,
    cleanup: async () => {
      await container.stop();
    },
  });
}

// ---------------------------------------------------------------------------
// redis-server child process: redis-node.ts's spawnNode, with this file's arguments.

async function spawnedRedis({ persistent = false, password, tls, args: extra = [] }: StartRedisOptions): Promise<TestRedis> {
  let tlsPort = 0;
  const node = await spawnNode({
    label: 'redis-server',
    // The harness PINGs the plain port, which stays open beside the TLS one.
    secure: password ? { password } : undefined,
    stopGraceMs: 10_000,
    async args(port, dir) {
      if (tls) tlsPort = await freePort();
      // Spawn arguments are not parsed by a shell: '' is the empty value `--save ""` means.
      return [
        '--bind',
        '127.0.0.1',
        '--port',
        String(port),
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        persistent ? 'yes' : 'no',
        '--appendfsync',
        'always',
        '--daemonize',
        'no',
        '--protected-mode',
        'no',
        ...(password ? ['--requirepass', password] : []),
        ...(tls ? ['--tls-port', String(tlsPort), '--tls-cert-file', tls.certFile, '--tls-key-file', tls.keyFile, '--tls-ca-cert-file', tls.caFile, '--tls-auth-clients', 'no'] : []),
        ...extra,
      ];
    },
  });

  // SIGTERM is Redis's graceful SHUTDOWN; with --save "" nothing is written beyond the AOF.
  return makeHandle('process', `redis://${password ? `:${encodeURIComponent(password)}@` : ''}127.0.0.1:${node.port}`, {
    restartable: true,
    tlsPort: tls ? tlsPort : undefined,
    stop: () => node.stop(),
    async start() {
      if (!node.running()) await node.start();
    },
    kill: () => node.kill(),
    signal: (sig) => node.signal(sig),
    cleanup: () => node.remove(),
  });
}
