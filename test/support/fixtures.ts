// Suite fixtures: the set-up most e2e files share, registered as jest hooks where they are
// called (in a describe, or at the top of a file).
//
//   const s = useServer({ MAX_INFLIGHT: '20' });     // one Redis, one server on it
//   const [a, b] = useServer([envA, envB]).servers;  // one Redis, two servers on it
//
// beforeAll starts a Redis (or takes another fixture's) and the servers on it, each with
// REDIS_URL set; afterEach terminates the TestClients a test made with client(); afterAll
// terminates the rest, stops the servers and closes the Redis it started. The handle is lazy:
// server and servers are stand-ins, usable (in a test or a later hook) once beforeAll has run,
// so they can be kept in a const; redis and r are getters. Hooks a suite declares after the
// call run after the fixture's: its beforeAll sees the servers up, its afterEach comes after
// the clients are gone, its afterAll after the servers stopped and the Redis closed.
import type Redis from 'ioredis';
import { startRedis, type StartRedisOptions, type TestRedis } from './redis';
import { startServer, type StartServerOptions, type TestServer } from './server';
import { TestClient, type ConnectOptions } from './ws-client';

export type Env = Record<string, string>;

export interface RedisFixture {
  /** The suite's Redis. */
  readonly redis: TestRedis;
  /** A client of it (redis.client()), made on first use, and again after redis.stop() quit it. */
  readonly r: Redis;
}

export interface ClientOptions extends ConnectOptions {
  /** The server to connect to (default the first). */
  server?: TestServer;
  /** Connect here instead (e.g. through a proxy). */
  url?: string;
}

export interface ServerFixture extends RedisFixture {
  /** The first server. */
  readonly server: TestServer;
  /** One per env given to useServer, in that order. */
  readonly servers: readonly TestServer[];
  /**
   * A TestClient of a server, terminated after the test that made it (one made in a
   * beforeAll: after the suite; with keepClients: after the suite too).
   */
  client(opts?: ClientOptions): Promise<TestClient>;
  /** Another server on the suite's Redis (REDIS_URL set), stopped in afterAll. */
  start(env?: Env, opts?: StartServerOptions): Promise<TestServer>;
}

export interface UseServerOptions {
  /** Options of the suite's own Redis (default: startRedis()'s). */
  redis?: StartRedisOptions;
  /**
   * Use this fixture's Redis instead of starting one: one of an enclosing describe, whose
   * afterAll (closing it) runs after this one's.
   */
  on?: RedisFixture;
  /** Runs in beforeAll once the Redis is up, before the servers start (e.g. to add what they find at start). */
  beforeServers?: (redis: RedisFixture) => Promise<unknown>;
  /** Start the servers one after another, in order (default: all at once). */
  sequential?: boolean;
  /** Terminate the clients after the suite instead of after each test. */
  keepClients?: boolean;
}

/** One Redis for the suite: started in beforeAll, closed in afterAll. */
export function useRedis(opts: StartRedisOptions = {}): RedisFixture {
  const own = ownRedis(opts);
  beforeAll(own.start);
  afterAll(own.close);
  return own.fixture;
}

/** One Redis (or opts.on's) and a server on it per env, for the suite; see the top of this file. */
export function useServer(envs: Env | Env[] = {}, opts: UseServerOptions = {}): ServerFixture {
  const list = Array.isArray(envs) ? envs : [envs];
  const own = opts.on ? undefined : ownRedis(opts.redis ?? {});
  const base = opts.on ?? own!.fixture;
  const running: (TestServer | undefined)[] = list.map(() => undefined);
  const extra: TestServer[] = [];
  const servers = list.map((_, i) => standIn(`useServer's server ${i + 1}`, () => running[i]));
  const first = servers[0] ?? standIn("useServer's first server (none was asked for)", () => undefined);
  const testClients: TestClient[] = [];
  const suiteClients: TestClient[] = [];
  let inTest = false;

  const launch = (env: Env, startOpts?: StartServerOptions) => startServer({ REDIS_URL: base.redis.url, ...env }, startOpts);

  beforeAll(async () => {
    await own?.start();
    await opts.beforeServers?.(base);
    if (opts.sequential) {
      for (const [i, env] of list.entries()) running[i] = await launch(env);
    } else {
      // Settled, not Promise.all: a server still starting when one fails is stopped in afterAll too.
      const results = await Promise.allSettled(list.map(async (env, i) => (running[i] = await launch(env))));
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
    }
  });

  beforeEach(() => {
    inTest = true;
  });

  afterEach(() => {
    inTest = false;
    if (!opts.keepClients) for (const c of testClients.splice(0)) c.terminate();
  });

  afterAll(async () => {
    for (const c of [...suiteClients.splice(0), ...testClients.splice(0)]) c.terminate();
    const stopped = await Promise.allSettled([...running, ...extra].map((s) => s?.stop()));
    await own?.close();
    const failed = stopped.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  });

  return {
    get redis() {
      return base.redis;
    },
    get r() {
      return base.r;
    },
    server: first,
    servers,
    async client({ server = first, url, ...connect }: ClientOptions = {}) {
      const c = await TestClient.connect(url ?? server.wsUrl, connect);
      (inTest ? testClients : suiteClients).push(c);
      return c;
    },
    async start(env = {}, startOpts) {
      const s = await launch(env, startOpts);
      extra.push(s);
      return s;
    },
  };
}

/** A Redis started and closed by whoever calls start and close (the hooks of useRedis or useServer). */
function ownRedis(opts: StartRedisOptions): { fixture: RedisFixture; start(): Promise<void>; close(): Promise<void> } {
  let redis: TestRedis | undefined;
  let r: Redis | undefined;
  const started = (): TestRedis => {
    if (!redis) throw new Error("The suite's Redis is not started: use it in a test, or in a hook declared after useRedis/useServer");
    return redis;
  };
  return {
    fixture: {
      get redis() {
        return started();
      },
      get r() {
        if (!r || r.status === 'end') r = started().client();
        return r;
      },
    },
    async start() {
      redis = await startRedis(opts);
    },
    async close() {
      await redis?.close();
    },
  };
}

/** A TestServer that forwards to the one get() gives once it is started. */
function standIn(name: string, get: () => TestServer | undefined): TestServer {
  const real = (): TestServer => {
    const s = get();
    if (!s) throw new Error(`${name} is not started: use it in a test, or in a hook declared after useServer`);
    return s;
  };
  return {
    get port() {
      return real().port;
    },
    get url() {
      return real().url;
    },
    get wsUrl() {
      return real().wsUrl;
    },
    logs: () => real().logs(),
    waitForLog: (re, timeoutMs) => real().waitForLog(re, timeoutMs),
    kill: (signal) => real().kill(signal),
    exited: () => real().exited(),
    stop: () => real().stop(),
    restart: () => real().restart(),
  };
}
