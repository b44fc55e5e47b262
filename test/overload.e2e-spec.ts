/**
 * Overload: 4,000 PUBLISHes of 32 KiB to one online user, pipelined at once (128 MiB, as
 * fast as Redis takes them). Redis writes at most 64 KiB to one client per event-loop turn,
 * so such a burst outgrows a subscriber's output buffer whatever the subscriber does: with
 * the default `client-output-buffer-limit pubsub 32mb 8mb 60` Redis cuts it off, and the
 * server must say so (a warning and a metric). With the limit the README advises, the
 * server reads the burst into its route buffer and delivers every message, once, in order,
 * answering /health meanwhile.
 */
import http from 'node:http';
import type { Redis } from 'ioredis';
import { uniqueId } from './support/ids';
import { startRedis, type TestRedis } from './support/redis';
import { startServer, type TestServer } from './support/server';
import WebSocket from 'ws';
import { waitFor, within } from './support/wait';

const COUNT = 4000;
const BODY = 'y'.repeat(32 * 1024 - 8);
const payload = (i: number) => `${String(i).padStart(8, '0')}${BODY}`;

function publishBurst(r: Redis, user: string): Promise<unknown> {
  const p = r.pipeline();
  for (let i = 0; i < COUNT; i++) p.publish(`rm.users.${user}`, payload(i));
  return p.exec();
}

function healthStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(`${url}/health/live`, { timeout: 5000, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

/** Acks as messages arrive and keeps only their sequence numbers (not 128 MiB of payloads). */
async function reader(server: TestServer, user: string): Promise<{ client: WebSocket; seen: number[] }> {
  const client = new WebSocket(server.wsUrl);
  await new Promise((resolve, reject) => client.once('open', resolve).once('error', reject));
  const seen: number[] = [];
  let ids: string[] = [];
  const ready = new Promise<void>((resolve) => {
    client.on('message', (raw) => {
      const frame = JSON.parse(String(raw));
      if (frame.event === 'ready') resolve();
      if (frame.event !== 'message') return;
      seen.push(Number(String(frame.data.payload).slice(0, 8)));
      ids.push(frame.data.id);
      if (ids.length >= 50) {
        client.send(JSON.stringify({ event: 'ack', data: { ids } }));
        ids = [];
      }
    });
  });
  client.send(JSON.stringify({ event: 'identify', data: { id: user } }));
  await within(ready, 10_000, 'ready');
  return { client, seen };
}

describe('overload: a burst of large PUBLISHes to one online user', () => {
  let redis: TestRedis;
  let r: Redis;
  let server: TestServer;

  beforeEach(async () => {
    redis = await startRedis({ restartable: true });
    r = redis.client();
  });

  afterEach(async () => {
    await server?.stop();
    await redis?.close();
  });

  it('with the advised pub/sub limit, every message is delivered once and in order, and /health answers meanwhile', async () => {
    await r.config('SET', 'client-output-buffer-limit', 'pubsub 512mb 128mb 60');
    server = await startServer({ REDIS_URL: redis.url, LOG_LEVEL: 'log' });
    const user = uniqueId('burst');
    const { client, seen } = await reader(server, user);

    const burst = publishBurst(r, user);
    const health = await healthStatus(server.url);
    await burst;
    await waitFor(async () => seen.length >= COUNT, 60_000, `${COUNT} messages delivered (got ${seen.length})`);

    expect(health).toBe(200);
    expect(seen).toEqual(Array.from({ length: COUNT }, (_, i) => i));
    expect(server.logs()).not.toMatch(/pub\/sub connection to Redis dropped/);
    client.close();
  });

  it('with the default limit, Redis cuts the subscriber off: the server warns that PUBLISHes may be lost and counts it', async () => {
    server = await startServer({ REDIS_URL: redis.url, LOG_LEVEL: 'log' });
    // The start-up advice names the setting.
    await server.waitForLog(/client-output-buffer-limit for pubsub is 32 MiB/, 10_000);
    const user = uniqueId('burst');
    const { client } = await reader(server, user);

    await publishBurst(r, user);

    await server.waitForLog(/pub\/sub connection to Redis dropped: PUBLISHes sent until it is back are not heard and may be lost/, 30_000);
    await waitFor(async () => /redmessenger_subscriber_disconnects_total [1-9]/.test(await metrics(server.url)), 10_000, 'the disconnect to be counted');
    client.close();
  });
});

function metrics(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(`${url}/metrics`, { timeout: 5000, agent: false }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}
