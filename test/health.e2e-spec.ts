/**
 * Health routes of the built server: `/health` (Redis, terminus format), `/health/live`
 * (the process answers; Redis is not its business) and `/health/ready` (Redis up and
 * not shutting down), against a real Redis that is killed, restarted and paused.
 */
import type { Redis } from 'ioredis';
import { uniqueId } from './support/ids';
import { useServer } from './support/fixtures';
import { startServer, type TestServer } from './support/server';
import { waitFor } from './support/wait';
import { TestClient } from './support/ws-client';

interface Health {
  status: number;
  body: { status?: string; info?: Record<string, any>; error?: Record<string, any>; details?: Record<string, any> };
}

async function get(server: TestServer, path: string): Promise<Health> {
  const res = await fetch(`${server.url}${path}`, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: (await res.json()) as Health['body'] };
}

/** Resolves true once the promise settles, false if it has not after ms. */
const settlesWithin = (p: Promise<unknown>, ms: number) => Promise.race([p.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref())]);

describe('health routes', () => {
  const s = useServer({}, { redis: { restartable: true } });
  const { server } = s;

  it('answers 200 on /health, /health/live and /health/ready while Redis answers', async () => {
    expect(await get(server, '/health')).toEqual({
      status: 200,
      body: { status: 'ok', info: { redis: { status: 'up' } }, error: {}, details: { redis: { status: 'up' } } },
    });
    expect(await get(server, '/health/live')).toMatchObject({ status: 200, body: { status: 'ok', info: { process: { status: 'up' } } } });
    expect(await get(server, '/health/ready')).toMatchObject({
      status: 200,
      body: { status: 'ok', info: { redis: { status: 'up' }, server: { status: 'up' } }, error: {} },
    });
  });

  it('without Redis: /health and /health/ready answer 503, /health/live 200; all ready again once Redis is back', async () => {
    await s.redis.kill();
    try {
      await waitFor(async () => (await get(server, '/health')).status === 503, 10_000, '/health to answer 503 once Redis is gone');

      const health = await get(server, '/health');
      const ready = await get(server, '/health/ready');
      const live = await get(server, '/health/live');

      expect(health.body).toMatchObject({ status: 'error', error: { redis: { status: 'down' } } });
      expect(ready).toMatchObject({ status: 503, body: { status: 'error', error: { redis: { status: 'down' } }, info: { server: { status: 'up' } } } });
      expect(live).toMatchObject({ status: 200, body: { status: 'ok' } });
    } finally {
      await s.redis.start();
    }
    await waitFor(async () => (await get(server, '/health/ready')).status === 200, 15_000, '/health/ready to answer 200 once Redis is back');
    expect((await get(server, '/health')).status).toBe(200);
  });

  it('once shutting down, /health/ready answers 503 (server down) while /health/live still answers 200', async () => {
    // A second server whose shutdown is held open: Redis refuses writes for a while
    // (CLIENT PAUSE ... WRITE), so giving back an identified socket's owed messages,
    // a step of the shutdown, waits, and the HTTP server is still up meanwhile.
    const other = await startServer({ REDIS_URL: s.redis.url });
    const admin: Redis = s.redis.client();
    let paused = false;
    try {
      const client = await TestClient.connect(other.wsUrl);
      await client.identify(uniqueId());
      expect((await get(other, '/health/ready')).status).toBe(200);

      await admin.call('CLIENT', 'PAUSE', '15000', 'WRITE');
      paused = true;
      other.kill('SIGTERM');

      let ready: Health | undefined;
      await waitFor(
        async () => {
          ready = await get(other, '/health/ready');
          return ready.status === 503 && ready.body.error?.server?.status === 'down';
        },
        8000,
        '/health/ready to answer 503 with the server down',
      );
      expect(ready!.body).toMatchObject({ status: 'error', error: { server: { status: 'down', message: 'shutting down' } } });
      expect(await get(other, '/health/live')).toMatchObject({ status: 200, body: { status: 'ok' } });

      await admin.call('CLIENT', 'UNPAUSE');
      paused = false;
      expect(await settlesWithin(other.exited(), 10_000)).toBe(true);
      expect((await client.closed()).code).toBe(1001);
    } finally {
      if (paused) await admin.call('CLIENT', 'UNPAUSE').catch(() => undefined);
      await other.stop();
    }
  });
});
