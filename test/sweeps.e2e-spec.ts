/**
 * The sweeps keep up with real loads (issue 14): each loops over what is due, a page at a
 * time with bounded concurrency, until nothing is due or its budget (80% of its period) is
 * spent. 100,000 offline users, each with one message PUBLISHed to them, all expire with
 * QUEUE_TTL_SECONDS=2 (queues gone, index empty; the old sweep, 100 users per 5 s, needed
 * 5,000 s); 20,000 messages left unacked give 20,000 `unread` events, each once (the old
 * sweep: 1,000 per second). Real redis-server, the built server; the rates are printed,
 * the bounds are generous (a shared 2-core box).
 */
import type Redis from 'ioredis';
import { uniqueId } from './support/ids';
import { startRedis, type TestRedis } from './support/redis';
import { startServer, type TestServer } from './support/server';
import { metric, withLogs } from './support/traffic';
import { waitFor } from './support/wait';

jest.setTimeout(240_000);

const redises: TestRedis[] = [];
const servers: TestServer[] = [];

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
  await Promise.all(redises.map((r) => r.close().catch(() => undefined)));
});

async function setUp(env: Record<string, string>): Promise<{ r: Redis; server: TestServer }> {
  const redis = await startRedis({ restartable: true }); // a Redis of its own: its keys are only this test's
  redises.push(redis);
  const server = await startServer({ REDIS_URL: redis.url, LOG_LEVEL: 'log', ...env });
  servers.push(server);
  return { r: redis.client(), server };
}

/** One raw PUBLISH per message, pipelined 1,000 at a time; returns how long it took (ms). */
async function publishTo(r: Redis, messages: Array<[user: string, payload: string]>): Promise<number> {
  const started = Date.now();
  for (let i = 0; i < messages.length; i += 1000) {
    const p = r.pipeline();
    for (const [user, payload] of messages.slice(i, i + 1000)) p.publish(`rm.users.${user}`, payload);
    for (const [error] of (await p.exec()) ?? []) if (error) throw error;
  }
  return Date.now() - started;
}

/** The keys matching a pattern (SCAN, so a big keyspace costs Redis no long call). */
async function keysMatching(r: Redis, match: string): Promise<string[]> {
  let cursor = '0';
  const found: string[] = [];
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', match, 'COUNT', 10_000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found;
}

describe('the expiry sweep keeps up', () => {
  const USERS = 100_000;

  it(`expires one message each of ${USERS.toLocaleString('en')} offline users: queues gone, index empty`, async () => {
    const { r, server } = await setUp({ QUEUE_TTL_SECONDS: '2' });
    await withLogs([server], async () => {
      const prefix = uniqueId('exp');
      const published = await publishTo(
        r,
        Array.from({ length: USERS }, (_, i) => [`${prefix}-${i}`, `m${i}`]),
      );
      // Timed from the first expiry the metrics show to the last.
      let first = 0;
      await waitFor(
        async () => {
          const expired = await metric(server, 'redmessenger_messages_expired_total');
          if (expired > 0 && first === 0) first = Date.now();
          return expired >= USERS;
        },
        120_000,
        `${USERS} messages to expire`,
      );
      const seconds = Math.max(1, Date.now() - first) / 1000;
      console.log(
        `${USERS} users published to in ${published} ms; all expired in ${seconds.toFixed(1)} s from the first expiry: ` + `${Math.round(USERS / seconds)} users/s (the old sweep: 20 users/s, ${USERS / 20} s)`,
      );
      expect(await metric(server, 'redmessenger_messages_queued_total')).toBe(USERS);
      expect(await metric(server, 'redmessenger_messages_expired_total')).toBe(USERS);
      await waitFor(async () => (await r.zcard('rm:queues')) === 0, 10_000, 'the queue index to empty');
      // Nothing left but the users' dropped counters (each says "1 expired" at the next identify, until its own TTL).
      expect((await keysMatching(r, `rm:users:${prefix}-*`)).filter((key) => !key.endsWith(':dropped'))).toEqual([]);
      // One line per user for the first few, then one line for the rest of a sweep.
      await server.waitForLog(/queued messages of \d+ more users expired \(older than QUEUE_TTL_SECONDS=2\)/);
    });
  });
});

describe('the unread sweep keeps up', () => {
  const USERS = 10_000;
  const EACH = 2;
  const STREAM = 'rm:events';

  it(`writes one unread event for each of ${(USERS * EACH).toLocaleString('en')} messages to offline users`, async () => {
    const { r, server } = await setUp({ EVENTS_STREAM: STREAM, UNREAD_AFTER_SECONDS: '1' });
    await withLogs([server], async () => {
      const prefix = uniqueId('unr');
      const messages: Array<[string, string]> = [];
      for (let k = 0; k < EACH; k++) for (let i = 0; i < USERS; i++) messages.push([`${prefix}-${i}`, `m${k}`]);
      const total = messages.length;
      const started = Date.now();
      const published = await publishTo(r, messages);
      await waitFor(async () => (await r.xlen(STREAM)) >= total, 120_000, `${total} unread events`);
      const seconds = (Date.now() - started) / 1000;
      // Sweeps go on: wait out a few more, then nothing may have come twice.
      await new Promise((resolve) => setTimeout(resolve, 3000));
      const seen = new Set<string>();
      let count = 0;
      let firstMs = Infinity;
      let lastMs = 0;
      for (let from = '-'; ;) {
        const entries = await r.xrange(STREAM, from, '+', 'COUNT', 5000);
        for (const [id, fields] of entries) {
          const event = Object.fromEntries(fields.flatMap((_, i) => (i % 2 === 0 ? [[fields[i], fields[i + 1]]] : [])));
          expect(event.type).toBe('unread');
          expect(event.user.startsWith(`${prefix}-`)).toBe(true);
          seen.add(`${event.user}|${event.id}`);
          count++;
          const ms = Number(id.split('-')[0]);
          firstMs = Math.min(firstMs, ms);
          lastMs = Math.max(lastMs, ms);
        }
        if (entries.length < 5000) break;
        from = `(${entries[entries.length - 1][0]}`;
      }
      console.log(
        `${total} messages published in ${published} ms; all ${total} unread events written within ${seconds.toFixed(1)} s of the first PUBLISH, ` +
          `spread over ${((lastMs - firstMs) / 1000).toFixed(1)} s: ${Math.round(total / Math.max(1, (lastMs - firstMs) / 1000))} events/s ` +
          `(the old sweep: at most 1,000/s)`,
      );
      expect(count).toBe(total);
      expect(seen.size).toBe(total);
      expect(await r.zcard('rm:unread')).toBe(0);
    });
  });
});
