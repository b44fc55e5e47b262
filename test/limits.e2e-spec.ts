/**
 * Limits with a stated policy, never silent: queue cap and overflow policy, queue
 * TTL, sockets per user, connections per instance, rate limits per address,
 * slow consumers, and the Origin allow-list.
 */
import { connectionCount } from './support/queue-entries';
import type { Redis } from 'ioredis';
import { uniqueId } from './support/ids';
import { startRedis, type TestRedis } from './support/redis';
import { startServer, type TestServer } from './support/server';
import { waitFor } from './support/wait';
import { TestClient } from './support/ws-client';

describe('limits', () => {
  // Limits are the routing instance's: each server below gets a Redis of its own.
  let publisher: Redis;
  const redises: TestRedis[] = [];
  const servers: TestServer[] = [];
  const clients: TestClient[] = [];

  afterEach(() => {
    for (const client of clients.splice(0)) client.terminate();
  });

  afterAll(async () => {
    await Promise.all(servers.map((server) => server.stop()));
    await Promise.all(redises.map((redis) => redis.close()));
  });

  /** A server on a Redis of its own; `publisher` then talks to that Redis. */
  const serve = async (env: Record<string, string>) => {
    const redis = await startRedis();
    redises.push(redis);
    publisher = redis.client();
    const server = await startServer({ REDIS_URL: redis.url, ...env });
    servers.push(server);
    return server;
  };
  const connect = async (server: TestServer, headers?: Record<string, string>, autoAck = false) => {
    const client = await TestClient.connect(server.wsUrl, { headers, autoAck });
    clients.push(client);
    return client;
  };
  const publish = async (id: string, ...payloads: string[]) => {
    for (const payload of payloads) await publisher.publish(`rm.users.${id}`, payload);
  };
  const waitQueued = (id: string, n: number) => waitFor(async () => (await publisher.llen(`rm:users:${id}:messages`)) === n, 5000, `${n} queued for ${id}`);
  const queuedPayloads = async (id: string) => (await publisher.lrange(`rm:users:${id}:messages`, 0, -1)).map((e) => JSON.parse(e).rm.payload);

  describe('queue cap, TTL and sockets per user', () => {
    let server: TestServer;
    beforeAll(async () => {
      server = await serve({ MAX_QUEUE_LENGTH: '5', QUEUE_OVERFLOW: 'drop-oldest', QUEUE_TTL_SECONDS: '1', MAX_SOCKETS_PER_USER: '2' });
    });

    it('MAX_QUEUE_LENGTH with drop-oldest keeps the newest, logs it, and reports dropped in the next ready', async () => {
      const id = uniqueId();

      await publish(id, '1', '2', '3', '4', '5', '6', '7');

      await waitFor(async () => (await queuedPayloads(id)).join() === '3,4,5,6,7', 5000, 'the two oldest dropped');
      await server.waitForLog(new RegExp(`${id}: queue full \\(MAX_QUEUE_LENGTH=5\\), dropped its oldest messages`));
      const client = await connect(server, undefined, true);
      expect((await client.identify(id)).data).toEqual({ id, channel: `rm.users.${id}`, queued: 5, dropped: 2 });
      expect((await client.messages(5)).map((m) => m.data.payload)).toEqual(['3', '4', '5', '6', '7']);
    });

    it('QUEUE_TTL_SECONDS expires messages on their own age, counted in ready, leaving no keys', async () => {
      const id = uniqueId();
      await publish(id, 'stale');
      await waitQueued(id, 1);

      // The sweeper runs every 5 s on the router; the stale message goes without an identify.
      await waitFor(async () => (await publisher.exists(`rm:users:${id}:messages`)) === 0, 12000, 'the stale message to expire');
      await publish(id, 'fresh');
      await waitQueued(id, 1);
      const client = await connect(server, undefined, true);

      expect((await client.identify(id)).data).toMatchObject({ queued: 1, dropped: 1 });
      expect((await client.messages(1))[0].data.payload).toBe('fresh');
      await server.waitForLog(new RegExp(`${id}: 1 queued messages expired`));
      await waitFor(async () => (await publisher.exists(`rm:users:${id}:owed`)) === 0, 5000, 'the ack to land');
      await client.close();
      await waitFor(async () => (await publisher.keys(`rm:users:${id}:*`)).length === 0, 5000, 'no keys of the user left');
    });

    it('MAX_SOCKETS_PER_USER closes the oldest socket with 4409 after an error frame', async () => {
      const id = uniqueId();
      const oldest = await connect(server);
      await oldest.identify(id);
      const middle = await connect(server);
      await middle.identify(id);

      const newest = await connect(server);
      await newest.identify(id);

      expect((await oldest.next((f) => f.event === 'error')).data.code).toBe('REPLACED');
      expect((await oldest.closed()).code).toBe(4409);
      await publish(id, 'for the two left');
      expect((await middle.messages(1))[0].data.payload).toBe('for the two left');
      expect((await newest.messages(1))[0].data.payload).toBe('for the two left');
      expect(await connectionCount(publisher, id)).toBe(2);
    });
  });

  describe('reject policy and connections per instance', () => {
    let server: TestServer;
    beforeAll(async () => {
      server = await serve({ MAX_QUEUE_LENGTH: '3', QUEUE_OVERFLOW: 'reject', MAX_CONNECTIONS: '2' });
    });

    it('MAX_QUEUE_LENGTH with reject refuses new messages and counts them', async () => {
      const id = uniqueId();

      await publish(id, 'a', 'b', 'c', 'd', 'e');

      await waitQueued(id, 3);
      await server.waitForLog(new RegExp(`${id}: queue full \\(MAX_QUEUE_LENGTH=3\\), refused new messages`));
      expect(await queuedPayloads(id)).toEqual(['a', 'b', 'c']);
      const client = await connect(server);
      expect((await client.identify(id)).data).toMatchObject({ queued: 3, dropped: 2 });
    });

    it('MAX_CONNECTIONS closes a socket past the limit with 1013', async () => {
      await connect(server);
      await connect(server);

      const third = await connect(server);

      expect((await third.closed()).code).toBe(1013);
    });
  });

  describe('rate limits per address, with X-Forwarded-For from a trusted proxy', () => {
    let server: TestServer;
    beforeAll(async () => {
      server = await serve({ CONNECTION_RATE_PER_MINUTE: '3', IDENTIFY_RATE_PER_MINUTE: '2', TRUSTED_PROXIES: '127.0.0.1' });
    });
    const from = (address: string) => connect(server, { 'X-Forwarded-For': `198.51.100.77, ${address}` });

    it('closes with 4429 past CONNECTION_RATE_PER_MINUTE, per address', async () => {
      await from('203.0.113.1');
      await from('203.0.113.1');
      await from('203.0.113.1');

      const fourth = await from('203.0.113.1');
      const elsewhere = await from('203.0.113.2');

      expect((await fourth.next((f) => f.event === 'error')).data.code).toBe('TOO_MANY_ATTEMPTS');
      expect((await fourth.closed()).code).toBe(4429);
      expect((await elsewhere.identify(uniqueId())).event).toBe('ready');
    });

    it('counts the IPv6 addresses of one /64 as one address, another /64 apart', async () => {
      await from('2001:db8:5:6::1');
      await from('2001:db8:5:6:ffff::2');
      await from('2001:DB8:5:6:1234:5678:9abc:def0');

      const fourth = await from('2001:db8:5:6::4');
      const elsewhere = await from('2001:db8:5:7::1');

      expect((await fourth.next((f) => f.event === 'error')).data.code).toBe('TOO_MANY_ATTEMPTS');
      expect((await fourth.closed()).code).toBe(4429);
      expect((await elsewhere.identify(uniqueId())).event).toBe('ready');
    });

    it('closes with 4429 past IDENTIFY_RATE_PER_MINUTE, per address', async () => {
      const first = await from('203.0.113.9');
      await first.identify(uniqueId());
      const second = await from('203.0.113.9');
      await second.identify(uniqueId());

      const third = await from('203.0.113.9');
      third.send('identify', { id: uniqueId() });

      expect((await third.next((f) => f.event === 'error')).data.code).toBe('TOO_MANY_ATTEMPTS');
      expect((await third.closed()).code).toBe(4429);
    });
  });

  describe('slow consumers and origins', () => {
    let server: TestServer;
    beforeAll(async () => {
      server = await serve({
        SLOW_CONSUMER_BYTES: '65536',
        SLOW_CONSUMER_TIMEOUT_MS: '1000',
        ALLOWED_ORIGINS: 'https://app.example',
      });
    });

    it('stops sending to a socket that does not read, closes it after the timeout, and loses nothing', async () => {
      const id = uniqueId();
      const client = await connect(server);
      await client.identify(id);
      // Stop reading: the kernel buffers fill, then the server's unsent bytes grow. Each message is
      // larger than what the kernel's send buffer (autotuned up to 4 MiB) can take within the timeout.
      (client as unknown as { ws: { _socket: { pause(): void } } }).ws._socket.pause();
      const big = 'x'.repeat(1024 * 1024);
      const count = 30;
      for (let i = 0; i < count; i++) await publisher.publish(`rm.users.${id}`, `${i}:${big}`);

      await server.waitForLog(new RegExp(`${id}: socket .* is not reading`), 15000);
      await server.waitForLog(new RegExp(`${id}: closing socket .*, still not reading`), 15000);
      await waitQueued(id, count);
      expect((await queuedPayloads(id)).map((p: string) => Number(p.split(':')[0]))).toEqual(Array.from({ length: count }, (_, i) => i));
    });

    it('refuses an upgrade from an Origin not in ALLOWED_ORIGINS, accepts a listed one or none', async () => {
      await expect(TestClient.connect(server.wsUrl, { headers: { Origin: 'https://evil.example' } })).rejects.toThrow(/403/);
      const listed = await connect(server, { Origin: 'https://app.example' });
      expect((await listed.identify(uniqueId())).event).toBe('ready');
      const none = await connect(server);
      expect((await none.identify(uniqueId())).event).toBe('ready');
    });
  });
});
