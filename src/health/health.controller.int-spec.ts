import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Redis } from 'ioredis';
import type { AddressInfo } from 'node:net';
import { startRedis, type TestRedis } from '../../test/support/redis';
import { REDIS_CLIENT, REDIS_SUBSCRIBER } from '../redis/redis.constants';
import { HealthModule } from './health.module';
import { ShutdownState } from './shutdown-state';

/** The three health routes over real HTTP, against a real Redis (or a port where none answers). */
describe('HealthModule', () => {
  let redis: TestRedis;
  const apps: INestApplication[] = [];
  const clients: Redis[] = [];

  beforeAll(async () => {
    redis = await startRedis();
  });

  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close().catch(() => undefined)));
    for (const client of clients) client.disconnect();
    await redis?.close();
  });

  /** An app of HealthModule on a client for `url`; resolves once the client is ready (or at once for a dead port). */
  const start = async (url: string, waitReady = true) => {
    const client = new Redis(url, { maxRetriesPerRequest: 0, retryStrategy: () => 1000, lazyConnect: !waitReady });
    client.on('error', () => undefined);
    clients.push(client);
    if (waitReady) await new Promise((resolve) => client.once('ready', resolve));
    // The client stands where RedisModule's two would (global providers of REDIS_CLIENT and REDIS_SUBSCRIBER).
    const providers = [REDIS_CLIENT, REDIS_SUBSCRIBER].map((provide) => ({ provide, useValue: client }));
    const redisModule = { module: class TestRedisModule {}, global: true, providers, exports: [REDIS_CLIENT, REDIS_SUBSCRIBER] };
    const moduleRef = await Test.createTestingModule({ imports: [redisModule, HealthModule] }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await app.listen(0, '127.0.0.1');
    apps.push(app);
    const base = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
    const get = async (path: string) => {
      const res = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(5000) });
      return { status: res.status, body: (await res.json()) as any };
    };
    return { app, get, shutdown: app.get(ShutdownState) };
  };

  it('answers 200 on /health, /health/live and /health/ready while Redis answers', async () => {
    const { get } = await start(redis.url);

    expect(await get('/health')).toEqual({
      status: 200,
      body: { status: 'ok', info: { redis: { status: 'up' } }, error: {}, details: { redis: { status: 'up' } } },
    });
    expect(await get('/health/live')).toMatchObject({ status: 200, body: { status: 'ok', info: { process: { status: 'up' } } } });
    expect(await get('/health/ready')).toMatchObject({
      status: 200,
      body: { status: 'ok', info: { redis: { status: 'up' }, server: { status: 'up' } }, error: {} },
    });
  });

  it('is not ready once shutting down, while /health and /health/live still answer 200', async () => {
    const { get, shutdown } = await start(redis.url);

    shutdown.begin();

    const ready = await get('/health/ready');
    expect(ready.status).toBe(503);
    expect(ready.body).toMatchObject({
      status: 'error',
      info: { redis: { status: 'up' } },
      error: { server: { status: 'down', message: 'shutting down' } },
    });
    expect((await get('/health')).status).toBe(200);
    expect((await get('/health/live')).status).toBe(200);
  });

  it('answers 503 on /health and /health/ready without Redis, and 200 on /health/live', async () => {
    const { get } = await start('redis://127.0.0.1:1', false);

    expect(await get('/health')).toMatchObject({ status: 503, body: { status: 'error', error: { redis: { status: 'down' } } } });
    expect(await get('/health/ready')).toMatchObject({
      status: 503,
      body: { status: 'error', error: { redis: { status: 'down' } }, info: { server: { status: 'up' } } },
    });
    expect(await get('/health/live')).toMatchObject({ status: 200, body: { status: 'ok' } });
  });
});
