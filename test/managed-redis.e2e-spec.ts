/**
 * Managed Redis: passwords, ACL users and TLS in every topology (one Redis, a Cluster,
 * Sentinel), wrong credentials and TLS failures (/health 503, the cause logged once, never
 * the password, retried until it works), a SIGSTOPped Redis during identify (1013 in time),
 * PUBLISH_WAIT_REPLICAS with a replica up and stopped, and INSTANCE_ID claimed at start.
 */
import type { Cluster, Redis } from 'ioredis';
import { startCluster, type TestCluster } from './support/cluster';
import { postMessage, PUBLISH_KEY } from './support/http-publish';
import { uniqueId } from './support/ids';
import { startRedis, type TestRedis } from './support/redis';
import { startSentinel, type TestSentinel } from './support/sentinel';
import { startServer, type TestServer } from './support/server';
import { makeTestTls, type TestTls } from './support/tls';
import { waitFor, within } from './support/wait';
import { TestClient } from './support/ws-client';

jest.setTimeout(120_000);

const PASSWORD = 'redis-test-password-0123';
const health = async (server: TestServer): Promise<number> => (await fetch(`${server.url}/health`, { signal: AbortSignal.timeout(5000) })).status;

/** A user identifies, then gets one message through POST /v1/messages (stored) and one raw PUBLISH (heard). */
async function roundTrip(server: TestServer, publisher: Redis | Cluster): Promise<void> {
  const user = uniqueId('managed');
  const client = await TestClient.connect(server.wsUrl, { autoAck: true });
  try {
    await client.identify(user);
    expect((await postMessage(server.url, { to: user, payload: 'over http' })).status).toBe(202);
    expect((await client.messages(1, 10_000))[0].data.payload).toBe('over http');
    // Raw pub/sub is at-most-once: one sent before this instance routes its shards (just after a start or an outage) is not heard.
    const heard = () => client.frames.some((f) => f.event === 'message' && f.data.payload === 'over pubsub');
    await waitFor(
      async () => {
        await publisher.publish(`rm.users.${user}`, 'over pubsub');
        await new Promise((resolve) => setTimeout(resolve, 300));
        return heard();
      },
      15_000,
      'a raw PUBLISH to be heard',
    );
  } finally {
    client.terminate();
  }
}

describe('managed Redis', () => {
  let tls: TestTls;
  const servers: TestServer[] = [];
  const start = async (env: Record<string, string>, opts?: { waitReady?: boolean }) => {
    const server = await startServer({ PUBLISH_API_KEYS: PUBLISH_KEY, LOG_LEVEL: 'log', ...env }, opts);
    servers.push(server);
    return server;
  };

  beforeAll(async () => {
    tls = await makeTestTls();
  });

  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.stop()));
  });

  describe('one Redis with a password, an ACL user and TLS', () => {
    let redis: TestRedis;

    beforeAll(async () => {
      redis = await startRedis({ password: PASSWORD, tls });
      await redis.client().call('ACL', 'SETUSER', 'alice', 'on', '>alice-password-0123', '~*', '&*', '+@all');
    });
    afterAll(() => redis?.close());

    it('works with requirepass in the URL', async () => {
      const server = await start({ REDIS_URL: `redis://:${PASSWORD}@127.0.0.1:${redis.port}` });
      await roundTrip(server, redis.client());
    });

    it('works with an ACL user in the URL, and REDIS_USERNAME / REDIS_PASSWORD win over the URL', async () => {
      const viaUrl = await start({ REDIS_URL: `redis://alice:alice-password-0123@127.0.0.1:${redis.port}` });
      await roundTrip(viaUrl, redis.client());
      const viaEnv = await start({ REDIS_URL: `redis://nobody:wrong@127.0.0.1:${redis.port}`, REDIS_USERNAME: 'alice', REDIS_PASSWORD: 'alice-password-0123' });
      await roundTrip(viaEnv, redis.client());
    });

    it('works over TLS (rediss://) with a CA the test made', async () => {
      const server = await start({ REDIS_URL: `rediss://127.0.0.1:${redis.tlsPort}`, REDIS_PASSWORD: PASSWORD, REDIS_TLS_CA_FILE: tls.caFile });
      await roundTrip(server, redis.client());
    });

    it('wrong credentials: /health 503, WRONGPASS logged once per connection, never the password; works once the user exists', async () => {
      const secret = 'bob-password-not-yet-valid';
      const server = await start({ REDIS_URL: `redis://bob:${secret}@127.0.0.1:${redis.port}` }, { waitReady: false });
      await server.waitForLog(/command connection to Redis failed: .*WRONGPASS/, 15_000);
      expect(await health(server)).toBe(503);
      await new Promise((resolve) => setTimeout(resolve, 2000)); // several retries
      expect(server.logs().match(/command connection to Redis failed/g)).toHaveLength(1);
      // It keeps retrying: the user made now is found without a restart.
      await redis.client().call('ACL', 'SETUSER', 'bob', 'on', `>${secret}`, '~*', '&*', '+@all');
      await waitFor(async () => (await health(server)) === 200, 15_000, '/health 200 once the user exists');
      await server.waitForLog(/command connection to Redis is back/);
      await roundTrip(server, redis.client());
      await redis.client().call('ACL', 'DELUSER', 'bob');
      expect(server.logs()).not.toContain(secret);
    });

    it('no password: NOAUTH logged; a TLS certificate not trusted: the certificate error logged; both /health 503', async () => {
      const noAuth = await start({ REDIS_URL: `redis://127.0.0.1:${redis.port}` }, { waitReady: false });
      await noAuth.waitForLog(/connection to Redis failed: .*NOAUTH/, 15_000);
      expect(await health(noAuth)).toBe(503);
      const untrusted = await start({ REDIS_URL: `rediss://:${PASSWORD}@127.0.0.1:${redis.tlsPort}` }, { waitReady: false });
      await untrusted.waitForLog(/connection to Redis failed: .*certificate/i, 15_000);
      expect(await health(untrusted)).toBe(503);
      expect(untrusted.logs()).not.toContain(PASSWORD);
    });

    it('a REDIS_TLS_CA_FILE that cannot be read stops the start, naming the variable', async () => {
      const server = await start({ REDIS_URL: `rediss://127.0.0.1:${redis.tlsPort}`, REDIS_TLS_CA_FILE: '/nonexistent/ca.pem' }, { waitReady: false });
      expect((await within(server.exited(), 15_000, 'the server to exit')).code).toBe(1);
      expect(server.logs()).toMatch(/cannot start: REDIS_TLS_CA_FILE cannot be read \(ENOENT\)/);
    });
  });

  it('a 3-master Cluster with a password and TLS (cluster bus and replication too)', async () => {
    const cluster: TestCluster = await startCluster({ masters: 3, secure: { password: PASSWORD, tls } });
    try {
      const server = await start({ REDIS_CLUSTER_NODES: cluster.seeds, REDIS_PASSWORD: PASSWORD, REDIS_TLS: 'true', REDIS_TLS_CA_FILE: tls.caFile });
      await roundTrip(server, cluster.client());
      expect(server.logs()).not.toContain(PASSWORD);
    } finally {
      await Promise.all(servers.splice(0).map((s) => s.stop()));
      await cluster.close();
    }
  });

  it('Sentinel with passwords on the master, the replica and the Sentinel', async () => {
    const sentinel: TestSentinel = await startSentinel({ password: PASSWORD, sentinelPassword: 'sentinel-password-0123' });
    try {
      const server = await start({
        REDIS_SENTINELS: sentinel.sentinels,
        REDIS_SENTINEL_MASTER: sentinel.masterName,
        REDIS_PASSWORD: PASSWORD,
        REDIS_SENTINEL_PASSWORD: 'sentinel-password-0123',
      });
      await roundTrip(server, sentinel.client());
    } finally {
      await Promise.all(servers.splice(0).map((s) => s.stop()));
      await sentinel.close();
    }
  });

  describe('faults of one Redis', () => {
    let redis: TestRedis;

    beforeAll(async () => {
      redis = await startRedis({ restartable: true });
    });
    afterAll(async () => {
      redis?.signal('SIGCONT');
      await redis?.close();
    });

    it('a SIGSTOPped Redis during identify: closed 1013 in time (command timeout), then works after SIGCONT', async () => {
      const server = await start({ REDIS_URL: redis.url, REDIS_COMMAND_TIMEOUT_MS: '1000', IDENTIFY_TIMEOUT_MS: '60000' });
      const client = await TestClient.connect(server.wsUrl);
      redis.signal('SIGSTOP');
      try {
        client.send('identify', { id: uniqueId('stopped') });
        // The identify's commands time out after 1 s (a few of them in a row at worst); nothing hangs.
        expect((await client.closed(20_000)).code).toBe(1013);
        expect(await health(server)).toBe(503);
      } finally {
        redis.signal('SIGCONT');
      }
      await waitFor(async () => (await health(server)) === 200, 20_000, '/health 200 after SIGCONT');
      await waitFor(
        async () => {
          const again = await TestClient.connect(server.wsUrl);
          try {
            await again.identify(uniqueId('resumed'));
            return true;
          } catch {
            return false;
          } finally {
            again.terminate();
          }
        },
        20_000,
        'an identify to work again after SIGCONT',
      );
    });

    it('INSTANCE_ID: a second live process with the same id refuses to start, naming it; after a crash the id starts again', async () => {
      const env = { REDIS_URL: redis.url, INSTANCE_ID: uniqueId('claimed'), PRESENCE_TTL_MS: '2000' };
      const first = await start(env);
      const second = await start(env, { waitReady: false });
      expect((await within(second.exited(), 20_000, 'the second process to exit')).code).toBe(1);
      expect(second.logs()).toMatch(new RegExp(`cannot start: INSTANCE_ID ${env.INSTANCE_ID} is in use by another running instance`));
      // SIGKILLed, its presence key lapses (PRESENCE_TTL_MS): the same id starts again, and takes its leftovers.
      first.kill('SIGKILL');
      await first.exited();
      await first.restart();
      expect(await health(first)).toBe(200);
    });
  });

  describe('PUBLISH_WAIT_REPLICAS', () => {
    let master: TestRedis;
    let replica: TestRedis;

    beforeAll(async () => {
      master = await startRedis({ restartable: true });
      replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(master.port)] });
      await waitFor(async () => /slave0:.*state=online/.test(await master.client().info('replication')), 15_000, 'the replica to be in sync');
    });
    afterAll(async () => {
      replica?.signal('SIGCONT');
      await replica?.close();
      await master?.close();
    });

    it('202 with the replica up; 503 while it is stopped (entry left pending); the retry answers the same id after SIGCONT', async () => {
      const server = await start({ REDIS_URL: master.url, PUBLISH_WAIT_REPLICAS: '1', PUBLISH_WAIT_TIMEOUT_MS: '500' });
      const r = master.client();
      const user = uniqueId('durable');
      expect((await postMessage(server.url, { to: user, payload: 'one' })).status).toBe(202);

      replica.signal('SIGSTOP');
      let first: { status: number; body: any };
      try {
        first = await postMessage(server.url, { to: user, payload: 'two' }, { idempotencyKey: 'k-two' });
        expect(first.status).toBe(503);
        expect(first.body.error.message).toMatch(/replicas.*same Idempotency-Key/);
        // The inbox entry is stored but not acknowledged while the replica cannot confirm it.
        await r.xadd('rm:inbox', '*', 'to', user, 'payload', 'three');
        await waitFor(async () => /stored, but 0 of 1 replicas/.test(server.logs()), 15_000, 'the inbox to meet the missing replica');
        const pending = (await r.xpending('rm:inbox', 'redmessenger')) as [number, ...unknown[]];
        expect(pending[0]).toBe(1);
      } finally {
        replica.signal('SIGCONT');
      }
      const retry = await postMessage(server.url, { to: user, payload: 'two' }, { idempotencyKey: 'k-two' });
      expect(retry.status).toBe(202);
      await waitFor(async () => ((await r.xpending('rm:inbox', 'redmessenger')) as [number])[0] === 0, 20_000, 'the inbox entry to be acknowledged');
      // Each message once, in order; the retried one under the id it was first given.
      const client = await TestClient.connect(server.wsUrl, { autoAck: true });
      try {
        await client.identify(user);
        const got = await client.messages(3, 10_000);
        expect(got.map((f) => f.data.payload)).toEqual(['one', 'two', 'three']);
        expect(got[1].data.id).toBe(retry.body.id);
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(client.frames.filter((f) => f.event === 'message')).toHaveLength(3);
      } finally {
        client.terminate();
      }
    });
  });
});
