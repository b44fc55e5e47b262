/**
 * Starting the server: invalid configuration stops the start with a message that
 * names the variable; a missing Redis is waited for, never a crash loop.
 */
import { startRedis } from './support/redis';
import { startServer } from './support/server';
import { waitFor } from './support/wait';
import { TestClient } from './support/ws-client';

describe('start-up', () => {
  it.each([
    ['PORT', 'eighty'],
    ['MAX_INFLIGHT', '0'],
    ['MAX_FRAME_BYTES', 'lots'],
    ['REDIS_URL', 'localhost:6379'],
    ['AUTH_MODE', 'bogus'],
    ['IDENTIFY_TIMEOUT_MS', '-5'],
    ['LOG_LEVEL', 'chatty'],
    ['HOST', 'not a host!'],
    ['PRESENCE_TTL_MS', '500'],
  ])('refuses %s=%s, naming the variable, and exits non-zero', async (name, value) => {
    const server = await startServer({ [name]: value, REDIS_URL: name === 'REDIS_URL' ? value : 'redis://127.0.0.1:1' }, { waitReady: false });

    const exit = await server.exited();

    expect(exit.code).not.toBe(0);
    expect(server.logs()).toMatch(new RegExp(`${name}.*must|must.*${name}`));
  });

  it('keeps its presence key for PRESENCE_TTL_MS, refreshed before it lapses', async () => {
    const redis = await startRedis();
    const server = await startServer({ REDIS_URL: redis.url, PRESENCE_TTL_MS: '2000', INSTANCE_ID: 'presence-ttl' });
    const r = redis.client();
    try {
      const ttls: number[] = [];
      for (let i = 0; i < 5; i++) {
        ttls.push(await r.pttl('rm:node:presence-ttl'));
        await new Promise((resolve) => setTimeout(resolve, 400));
      }
      // Alive throughout (never lapsed: -2 would mean gone) and never longer than the setting.
      expect(ttls.every((ttl) => ttl > 0 && ttl <= 2000)).toBe(true);
    } finally {
      await server.stop();
      await redis.close();
    }
  });

  it('listens on HOST when it is set', async () => {
    const redis = await startRedis();
    const server = await startServer({ REDIS_URL: redis.url, HOST: '127.0.0.1' });
    try {
      expect(await server.waitForLog(/RedMessenger listening/)).toContain('listening on 127.0.0.1, port');
      expect((await fetch(`${server.url}/health`)).status).toBe(200);
    } finally {
      await server.stop();
      await redis.close();
    }
  });

  it('refuses AUTH_MODE=jwt without a key, naming both settings', async () => {
    const server = await startServer({ AUTH_MODE: 'jwt', REDIS_URL: 'redis://127.0.0.1:1' }, { waitReady: false });

    expect((await server.exited()).code).not.toBe(0);
    expect(server.logs()).toContain('AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY');
  });

  it('starts without Redis, answers /health with 503 at once, and serves once Redis appears', async () => {
    // A harness Redis, stopped before the server starts: its port is known and free.
    const redis = await startRedis({ restartable: true });
    await redis.stop();
    const server = await startServer({ REDIS_URL: redis.url }, { waitReady: false });
    try {
      await server.waitForLog(/RedMessenger listening/, 20000);
      const down = await fetch(`${server.url}/health`, { signal: AbortSignal.timeout(5000) });
      expect(down.status).toBe(503);
      expect(await down.json()).toMatchObject({ status: 'error' });
      await waitFor(() => /connection to Redis failed/.test(server.logs()), 5000, 'a log line saying Redis is unreachable');
      expect(await Promise.race([server.exited(), new Promise((r) => setTimeout(() => r('running'), 1000))])).toBe('running');

      await redis.start();
      await waitFor(async () => (await fetch(`${server.url}/health`)).status === 200, 15000, '/health to answer 200');
      const client = await TestClient.connect(server.wsUrl, { autoAck: true });
      await client.identify('late-user');
      await redis.client().publish('rm.users.late-user', 'hello');
      expect((await client.messages(1))[0].data.payload).toBe('hello');
      client.terminate();
    } finally {
      await server.stop();
      await redis.close();
    }
  });
});
