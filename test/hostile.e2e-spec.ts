/**
 * Bounded cost per socket (contract 1.2) against hostile clients: a raw socket that floods
 * frames and never reads is held and closed while the server's memory stays bounded and a
 * bystander is served; frames past MAX_FRAMES_PER_SECOND close with 4429 while a client at a
 * normal pace is never closed; acks of ids a socket was never sent cost Redis nothing.
 */
import { uniqueId } from './support/ids';
import { flood, openRaw, textFrame } from './support/raw-ws';
import { useServer } from './support/fixtures';
import { monitorRedis } from './support/redis-monitor';
import type { TestServer } from './support/server';
import { metric, sleep } from './support/traffic';
import { waitFor } from './support/wait';

const RSS = 'process_resident_memory_bytes';
const closedFor = (cause: string) => `redmessenger_sockets_closed_total\\{cause="${cause}"\\}`;

describe('hostile clients', () => {
  // No server up front: each describe starts its own on the suite's Redis.
  const s = useServer([], { keepClients: true });

  const serve = (env: Record<string, string>) => s.start({ LOG_LEVEL: 'log', ...env });
  const connect = (server: TestServer, autoAck = false) => s.client({ server, autoAck });

  /**
   * Runs `hostile` while a bystander gets a message every 250 ms, each within 1 s, and the
   * server's RSS is sampled; resolves with the peak growth and the slowest delivery.
   */
  async function besieged(server: TestServer, done: () => Promise<boolean>, hostile: () => Promise<unknown>) {
    const bystanderId = uniqueId('bystander');
    const bystander = await connect(server, true);
    await bystander.identify(bystanderId);
    const rssBefore = await metric(server, RSS);
    const attack = hostile();
    let rssPeak = rssBefore;
    let slowest = 0;
    for (let i = 0; i < 80 && !(await done()); i++) {
      const sentAt = Date.now();
      await s.r.publish(`rm.users.${bystanderId}`, `b${i}`);
      await bystander.next((f) => f.event === 'message' && f.data.payload === `b${i}`, 1000);
      slowest = Math.max(slowest, Date.now() - sentAt);
      rssPeak = Math.max(rssPeak, await metric(server, RSS));
      await sleep(250);
    }
    await attack;
    // Still served once the hostile client is gone.
    await s.r.publish(`rm.users.${bystanderId}`, 'after');
    await bystander.next((f) => f.event === 'message' && f.data.payload === 'after', 2000);
    return { growth: rssPeak - rssBefore, rssBefore, rssPeak, slowest };
  }
  const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

  describe('a raw socket that floods frames and never reads', () => {
    const SLOW = 1024 * 1024;
    let server: TestServer;
    beforeAll(async () => {
      server = await serve({ SLOW_CONSUMER_BYTES: String(SLOW), SLOW_CONSUMER_TIMEOUT_MS: '3000' });
    });

    it('as fast as it can: closed at MAX_FRAMES_PER_SECOND, memory bounded, a bystander served within 1 s', async () => {
      const raw = await openRaw(server.port);
      let sent = 0;
      const figures = await besieged(
        server,
        async () => (await metric(server, closedFor('rate_limited'))) >= 1,
        async () => {
          raw.socket.write(textFrame(JSON.stringify({ event: 'identify', data: { id: uniqueId('flooder') } })));
          sent = await flood(raw, textFrame(JSON.stringify({ event: 'junk', data: { pad: 'x'.repeat(1000) } })), () => false);
        },
      );
      await Promise.race([raw.gone, sleep(5000)]);
      console.log(
        `hostile flood (full speed): ${sent} frames of 1 KB written; RSS ${mib(figures.rssBefore)} -> peak ${mib(figures.rssPeak)} MiB (+${mib(figures.growth)}); bystander slowest ${figures.slowest} ms`,
      );
      expect(await metric(server, closedFor('rate_limited'))).toBe(1);
      expect(figures.growth).toBeLessThan(48 * 2 ** 20);
    });

    it('below the frame rate, with messages owed to it: held (not read from), closed as a slow consumer, memory bounded, a bystander served within 1 s', async () => {
      const user = uniqueId('nonreader');
      const raw = await openRaw(server.port);
      let sent = 0;
      let stop = false;
      const figures = await besieged(
        server,
        async () => (await metric(server, closedFor('slow_consumer'))) >= 1,
        async () => {
          raw.socket.write(textFrame(JSON.stringify({ event: 'identify', data: { id: user } })));
          const pad = 'y'.repeat(64 * 1024);
          const publishing = (async () => {
            for (let i = 0; i < 200 && !stop; i++) await s.r.publish(`rm.users.${user}`, `${i}:${pad}`);
          })();
          // Unknown events at 1,000 a second (half the limit): each earns an error frame it never reads.
          sent = await flood(raw, textFrame(JSON.stringify({ event: 'junk', data: { pad: 'x'.repeat(1000) } })), () => stop, 1000);
          await publishing;
        },
      );
      stop = true;
      await waitFor(async () => (await metric(server, closedFor('slow_consumer'))) === 1, 15000, 'the non-reader closed as a slow consumer');
      await Promise.race([raw.gone, sleep(10000)]);
      console.log(`hostile non-reader: ${sent} frames written; RSS ${mib(figures.rssBefore)} -> peak ${mib(figures.rssPeak)} MiB (+${mib(figures.growth)}); bystander slowest ${figures.slowest} ms`);
      // The contract's bound: about SLOW_CONSUMER_BYTES plus a few MAX_FRAME_BYTES (and a read of SLOW_CONSUMER_BYTES),
      // plus what routing its 12.5 MiB of messages leaves to the garbage collector (payload, envelope and frame
      // copies): measured +32 to +50 MiB over several runs; without the bounds the heap grew by about 1 GB in 30 s.
      expect(figures.growth).toBeLessThan(64 * 2 ** 20);
      expect(server.logs()).toMatch(new RegExp(`${user}: closing socket .*, still not reading after SLOW_CONSUMER_TIMEOUT_MS=3000`));
      // What it was owed and never acked is back in its queue, in order.
      await waitFor(async () => (await s.r.llen(`rm:users:${user}:messages`)) > 0, 10000, 'its messages back in the queue');
      const queued = (await s.r.lrange(`rm:users:${user}:messages`, 0, -1)).map((e) => Number(JSON.parse(e).rm.payload.split(':')[0]));
      expect(queued).toEqual([...queued].sort((x, y) => x - y));
    });
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
        await s.r.publish(`rm.users.${user}`, `m${i}`);
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
    await s.r.publish(`rm.users.${user}`, 'real');
    const [real] = await client.messages(1);

    // Every command that names the user's keys, while a loop of large bogus acks runs.
    const monitor = await monitorRedis(s.redis.port, (line) => line.includes(user), s.redis.host);
    const touching = monitor.lines;
    const statsBefore = await s.r.info('commandstats');
    const bogus = Array.from({ length: 10_000 }, (_, i) => `${real.data.id}x${i}`);
    for (let i = 0; i < 20; i++) client.ack(bogus);
    // Frames are handled in order: the answer to this one means every ack before it was.
    client.send('probe', {});
    await client.next((f) => f.event === 'error' && f.data.code === 'UNKNOWN_EVENT');
    await sleep(200);
    expect(touching).toEqual([]);

    // The real ack still reaches Redis.
    client.ack([real.data.id]);
    await waitFor(async () => (await s.r.llen(`rm:users:${user}:owed`)) === 0, 5000, 'the real ack stored');
    expect(touching.length).toBeGreaterThan(0);
    const calls = (stats: string) => Number(/cmdstat_evalsha:calls=(\d+)/.exec(stats)?.[1] ?? 0);
    console.log(`bogus acks: 20 frames x 10,000 ids; evalsha calls over the whole check (periodic work included): ${calls(await s.r.info('commandstats')) - calls(statsBefore)}`);
    monitor.close();
  });
});
