/**
 * Bounded cost per socket (contract 1.2) against hostile clients: a raw socket that floods
 * frames and never reads is held and closed while the server's memory stays bounded and a
 * bystander is served; frames past MAX_FRAMES_PER_SECOND close with 4429 while a client at a
 * normal pace is never closed; acks of ids a socket was never sent cost Redis nothing.
 */
import type { Redis } from 'ioredis';
import { uniqueId } from './support/ids';
import { flood, openRaw, textFrame } from './support/raw-ws';
import { startRedis, type TestRedis } from './support/redis';
import { startServer, type TestServer } from './support/server';
import { metric, sleep } from './support/traffic';
import { waitFor } from './support/wait';
import { TestClient } from './support/ws-client';

const RSS = 'process_resident_memory_bytes';
const closedFor = (cause: string) => `redmessenger_sockets_closed_total\\{cause="${cause}"\\}`;

describe('hostile clients', () => {
  let redis: TestRedis;
  let r: Redis;
  const servers: TestServer[] = [];
  const clients: TestClient[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    r = redis.client();
  });

  afterAll(async () => {
    for (const client of clients) client.terminate();
    await Promise.all(servers.map((server) => server.stop()));
    r.disconnect();
    await redis.close();
  });

  const serve = async (env: Record<string, string>) => {
    const server = await startServer({ REDIS_URL: redis.url, LOG_LEVEL: 'log', ...env });
    servers.push(server);
    return server;
  };
  const connect = async (server: TestServer, autoAck = false) => {
    const client = await TestClient.connect(server.wsUrl, { autoAck });
    clients.push(client);
    return client;
  };

  it('a client that floods frames and never reads is held, then closed; memory stays bounded; a bystander is served within 1 s', async () => {
    const SLOW = 1024 * 1024;
    // No frame-rate limit here: the bound under test is the unread bytes and the frames waiting.
    const server = await serve({ MAX_FRAMES_PER_SECOND: '0', SLOW_CONSUMER_BYTES: String(SLOW), SLOW_CONSUMER_TIMEOUT_MS: '3000' });
    const bystanderId = uniqueId('bystander');
    const bystander = await connect(server, true);
    await bystander.identify(bystanderId);
    const rssBefore = await metric(server, RSS);

    const hostile = await openRaw(server.port);
    hostile.socket.write(textFrame(JSON.stringify({ event: 'identify', data: { id: uniqueId('flooder') } })));
    const junk = textFrame(JSON.stringify({ event: 'junk', data: { pad: 'x'.repeat(1000) } }));
    let stop = false;
    const flooding = flood(hostile, junk, () => stop);

    // Throughout the flood: the bystander gets each message within 1 s, and the server's RSS is sampled.
    let rssPeak = rssBefore;
    let slowest = 0;
    for (let i = 0; i < 40 && !(await metric(server, closedFor('slow_consumer'))); i++) {
      const sentAt = Date.now();
      await r.publish(`rm.users.${bystanderId}`, `b${i}`);
      await bystander.next((f) => f.event === 'message' && f.data.payload === `b${i}`, 1000);
      slowest = Math.max(slowest, Date.now() - sentAt);
      rssPeak = Math.max(rssPeak, await metric(server, RSS));
      await sleep(250);
    }
    await waitFor(async () => (await metric(server, closedFor('slow_consumer'))) === 1, 15000, 'the flooder closed as a slow consumer');
    await Promise.race([hostile.gone, sleep(10000)]);
    stop = true;
    const framesSent = await flooding;
    const growth = rssPeak - rssBefore;
    console.log(
      `hostile flood: ${framesSent} frames of 1 KB written before the server stopped reading and closed it; ` +
        `RSS ${(rssBefore / 2 ** 20).toFixed(0)} MiB -> peak ${(rssPeak / 2 ** 20).toFixed(0)} MiB (+${(growth / 2 ** 20).toFixed(1)} MiB); bystander slowest ${slowest} ms`,
    );
    // The contract's bound: about SLOW_CONSUMER_BYTES plus a few MAX_FRAME_BYTES (1 MiB each here), plus GC slack.
    expect(growth).toBeLessThan(48 * 2 ** 20);
    expect(server.logs()).toMatch(/closing socket .*, still not reading after SLOW_CONSUMER_TIMEOUT_MS=3000/);
    // The bystander is still served once the flooder is gone.
    await r.publish(`rm.users.${bystanderId}`, 'after');
    await bystander.next((f) => f.event === 'message' && f.data.payload === 'after', 2000);
  });

  describe('MAX_FRAMES_PER_SECOND', () => {
    let server: TestServer;
    beforeAll(async () => {
      server = await serve({ MAX_FRAMES_PER_SECOND: '100' });
    });

    it('closes a socket past the rate with RATE_LIMITED and 4429', async () => {
      const client = await connect(server);
      await client.identify(uniqueId('fast'));
      for (let i = 0; i < 300; i++) client.ack([`nope-${i}`]);
      const error = await client.next((f) => f.event === 'error');
      expect(error.data).toEqual({ code: 'RATE_LIMITED', message: expect.any(String) });
      expect((await client.closed()).code).toBe(4429);
      expect(await metric(server, closedFor('rate_limited'))).toBeGreaterThanOrEqual(1);
    });

    it('never closes a client at a normal pace, below the rate', async () => {
      const user = uniqueId('steady');
      const client = await connect(server, true);
      await client.identify(user);
      // 40 frames a second for 3 s: acks and unknown events, under the 100-a-second rate (a burst of 100 allowed).
      for (let i = 0; i < 60; i++) {
        await r.publish(`rm.users.${user}`, `m${i}`);
        client.send('noise', {});
        await sleep(50);
      }
      await client.messages(60);
      expect(client.isOpen).toBe(true);
      expect(client.frames.filter((f) => f.event === 'error').every((f) => f.data.code === 'UNKNOWN_EVENT')).toBe(true);
    });
  });

  it('acks naming ids the socket was never sent make no Redis call', async () => {
    const server = await serve({});
    const user = uniqueId('acker');
    const client = await connect(server);
    await client.identify(user);
    await r.publish(`rm.users.${user}`, 'real');
    const [real] = await client.messages(1);

    // Every command that names the user's keys, while a loop of large bogus acks runs.
    const monitor = await r.duplicate().monitor();
    const touching: string[] = [];
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args.some((arg) => arg.includes(user))) touching.push(args.slice(0, 3).join(' '));
    });
    const statsBefore = await r.info('commandstats');
    const bogus = Array.from({ length: 10_000 }, (_, i) => `${real.data.id}x${i}`);
    for (let i = 0; i < 20; i++) client.ack(bogus);
    // Frames are handled in order: the answer to this one means every ack before it was.
    client.send('probe', {});
    await client.next((f) => f.event === 'error' && f.data.code === 'UNKNOWN_EVENT');
    await sleep(200);
    expect(touching).toEqual([]);

    // The real ack still reaches Redis.
    client.ack([real.data.id]);
    await waitFor(async () => (await r.llen(`rm:users:${user}:owed`)) === 0, 5000, 'the real ack stored');
    expect(touching.length).toBeGreaterThan(0);
    const calls = (stats: string) => Number(/cmdstat_evalsha:calls=(\d+)/.exec(stats)?.[1] ?? 0);
    console.log(`bogus acks: 20 frames x 10,000 ids; evalsha calls over the whole check (periodic work included): ${calls(await r.info('commandstats')) - calls(statsBefore)}`);
    monitor.disconnect();
  });
});
