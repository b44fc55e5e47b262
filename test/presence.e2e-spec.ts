/**
 * Presence under load and faults: a dead instance's 20,000 users are reaped (one instance at a
 * time, in pages) while the survivors' presence keys stay fresh throughout; an instance stopped
 * (SIGSTOP) longer than PRESENCE_TTL_MS is reaped by a peer and, once it runs again, registers
 * its socket again: the socket gets what was published meanwhile and live messages after,
 * nothing lost and nothing sent to it twice.
 */
import type { Redis } from 'ioredis';
import { buildEnvelope } from '../src/protocol/envelope';
import { uniqueId } from './support/ids';
import { connectionCount, leftoverKeys, owedCount } from './support/queue-entries';
import { startRedis, type TestRedis } from './support/redis';
import { startServer, type TestServer } from './support/server';
import { expectSequence, messagesOf, metric, payloadsOf, publishAll, range, sleep, withLogs } from './support/traffic';
import { waitFor } from './support/wait';
import { TestClient } from './support/ws-client';

jest.setTimeout(180_000);

const PRESENCE_TTL_MS = 2000;
const ch = (id: string) => `rm.users.${id}`;

describe('presence', () => {
  let redis: TestRedis;
  let r: Redis;
  const servers: TestServer[] = [];
  const clients: TestClient[] = [];
  const suffix = uniqueId('p');

  const start = async (name: string): Promise<TestServer> => {
    const s = await startServer({ REDIS_URL: redis.url, LOG_LEVEL: 'log', INSTANCE_ID: `${name}-${suffix}`, PRESENCE_TTL_MS: String(PRESENCE_TTL_MS) });
    servers.push(s);
    return s;
  };

  beforeAll(async () => {
    redis = await startRedis({ restartable: true });
    r = redis.client();
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.terminate();
    for (const s of servers.splice(0)) {
      s.kill('SIGCONT');
      await s.stop().catch(() => undefined);
    }
  });

  afterAll(async () => {
    await redis?.close();
  });

  it("reaps a dead instance's 20,000 users while the survivors' presence keys stay fresh", async () => {
    const a = await start('a');
    const b = await start('b');
    await withLogs([a, b], async () => {
      const dead = `dead-${suffix}`;
      const users = Array.from({ length: 20_000 }, (_, i) => `reap-${suffix}-${i}`);
      // The keys a live instance leaves for its sockets' users (attach-5.lua, registerUser), each owed one message.
      for (let i = 0; i < users.length; i += 1000) {
        const p = r.pipeline();
        for (const user of users.slice(i, i + 1000)) {
          p.hset(`rm:users:${user}:state`, `c:conn-${user}`, dead);
          p.rpush(`rm:users:${user}:owed`, buildEnvelope({ id: `id-${user}`, channel: ch(user), payload: 'owed', ts: Date.now() }));
          p.sadd(`rm:node:${dead}:users`, user);
        }
        await p.exec();
      }
      const alive = ['a', 'b'].map((name) => `rm:node:${name}-${suffix}`);
      await r.sadd('rm:nodes', dead);
      let minPttl = Infinity;
      let polls = 0;
      const startedAt = Date.now();
      await waitFor(
        async () => {
          for (const ttl of await Promise.all(alive.map((key) => r.pttl(key)))) minPttl = Math.min(minPttl, ttl);
          polls++;
          return (await r.scard(`rm:node:${dead}:users`)) === 0 && !(await r.sismember('rm:nodes', dead));
        },
        150_000,
        `the dead instance's 20,000 users reaped`,
      );
      console.log(`reaped 20,000 users in ${Date.now() - startedAt} ms; survivors' presence PTTL at least ${minPttl} ms of ${PRESENCE_TTL_MS} over ${polls} polls`);
      // -2: the key was gone (a live instance about to be declared dead).
      expect(minPttl).toBeGreaterThan(0);
      for (const s of [a, b]) expect(s.logs()).not.toMatch(/Instance [ab]-\S+ stopped refreshing/);
      expect(a.logs() + b.logs()).toMatch(new RegExp(`Instance ${dead} stopped refreshing`));
      // Every user's owed message is back in its queue, no connection left.
      for (const user of users.filter((_, i) => i % 997 === 0)) {
        expect(await connectionCount(r, user)).toBe(0);
        expect(await r.llen(`rm:users:${user}:messages`)).toBe(1);
        expect(await r.exists(`rm:users:${user}:owed`)).toBe(0);
      }
    });
  });

  it('an instance stopped longer than PRESENCE_TTL_MS is reaped, then registers its socket again: nothing lost, nothing sent twice', async () => {
    const a = await start('a');
    const b = await start('b');
    await withLogs([a, b], async () => {
      const user = uniqueId('lapse');
      const c = await TestClient.connect(a.wsUrl, { autoAck: false });
      clients.push(c);
      await c.identify(user);
      await publishAll(r, ch(user), range(3));
      expectSequence(payloadsOf(await c.messages(3)), range(3), 'before the stop');

      a.kill('SIGSTOP');
      // b finds a dead and returns the three unacked messages to the queue.
      await waitFor(async () => (await connectionCount(r, user)) === 0 && (await r.llen(`rm:users:${user}:messages`)) === 3, 20_000, 'b to reap a');
      // b routes every shard once a's leases lapsed: what is published now is queued for the user.
      await waitFor(async () => (await metric(b, 'redmessenger_route_shards')) === 64, 20_000, 'b to route every shard');
      await publishAll(r, ch(user), ['m3', 'm4']);
      await waitFor(async () => (await r.llen(`rm:users:${user}:messages`)) === 5, 10_000, 'm3 and m4 queued');
      a.kill('SIGCONT');

      await a.waitForLog(/presence lapsed/, 10_000);
      await waitFor(async () => (await connectionCount(r, user)) === 1, 10_000, 'the socket registered again');
      await waitFor(() => messagesOf(c).length >= 5, 10_000, 'm3 and m4 after the re-registration');
      // Live messages reach the socket again.
      await publishAll(r, ch(user), ['m5', 'm6']);
      await waitFor(() => messagesOf(c).length >= 7, 10_000, 'm5 and m6 live');
      await sleep(500); // anything sent twice would have come by now
      expectSequence(payloadsOf(messagesOf(c)), range(7), 'the socket across the stall, each message once');
      c.ack(messagesOf(c).map((f) => f.data.id as string));
      await waitFor(async () => (await owedCount(r, user)) === 0 && (await leftoverKeys(r, user)).length === 0, 10_000, 'every message acked');
      expect(b.logs()).toMatch(new RegExp(`Instance a-${suffix} stopped refreshing`));
    });
  });
});
