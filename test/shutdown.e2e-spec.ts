// Graceful shutdown e2e: SIGTERM to a server whose identified sockets hold unacked messages.
// PROTOCOL.md close code 1001 ("server shutting down"), point 4 (every owed message goes back
// to the head of the queue in its original order when the last socket of a user closes for
// any reason, and is delivered at the next identify), point 2 (queue order).
import type Redis from 'ioredis';
import { uniqueId } from './support/ids';
import { startRedis, TestRedis } from './support/redis';
import { startServer, TestServer } from './support/server';
import { waitFor, within } from './support/wait';
import { Frame, TestClient } from './support/ws-client';
import { connectionCount, entryId, entryPayload, leftoverKeys, owedCount } from './support/queue-entries';

jest.setTimeout(60_000);

const SHUTDOWN_TIMEOUT_MS = 10_000; // the smallest value the server accepts
const channelOf = (id: string) => `rm.users.${id}`;
const queueKey = (id: string) => `rm:users:${id}:messages`;

const servers: TestServer[] = [];
const redises: TestRedis[] = [];
/** The current test's Redis client: each test has a Redis of its own (PUBSUB counts must be this server's). */
let r: Redis;

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
  await Promise.all(redises.map((x) => x.close().catch(() => undefined)));
});

async function newServer(env: Record<string, string> = {}): Promise<TestServer> {
  const redis = await startRedis({ restartable: true });
  redises.push(redis);
  r = redis.client();
  const s = await startServer({ REDIS_URL: redis.url, LOG_LEVEL: 'log', SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS), ...env });
  servers.push(s);
  return s;
}

async function withLogs<T>(server: TestServer, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    (err as Error).message += `\n--- server log tail ---\n${server.logs().slice(-6000)}`;
    throw err;
  }
}

async function publishAll(channel: string, payloads: string[]): Promise<void> {
  const p = r.pipeline();
  for (const payload of payloads) p.publish(channel, payload);
  for (const [err] of (await p.exec()) ?? []) if (err) throw err;
}

/** How many messages the user is owed (rm:users:<id>:owed, whatever its Redis type). */
/** Messages kept for a user while online: owed (handed out or next to hand out) and still queued behind. */
async function storedCount(id: string): Promise<number> {
  return (await owedCount(r, id)) + (await r.llen(`rm:users:${id}:messages`));
}

const messagesOf = (c: TestClient): Frame[] => c.frames.filter((f) => f.event === 'message');
const range = (tag: string, n: number) => Array.from({ length: n }, (_, i) => `${tag}-${i}`);

describe('SIGTERM', () => {
  it('closes every socket with 1001, requeues owed messages in order, exits 0 in time, and a restart delivers them', async () => {
    const server = await newServer({ MAX_INFLIGHT: '20' });
    await withLogs(server, async () => {
      const x = uniqueId('sx');
      const y = uniqueId('sy');
      // x: 50 published while offline. y: 15 published, then 15 raw entries.
      const xQueued = range('x', 50);
      const yQueued = [...range('y-pub', 15), ...range('y-raw', 15)];
      await publishAll(channelOf(x), xQueued);
      await publishAll(channelOf(y), yQueued.slice(0, 15));
      await waitFor(async () => (await r.llen(queueKey(x))) === 50 && (await r.llen(queueKey(y))) === 15, 10_000, 'offline messages queued');
      await r.rpush(queueKey(y), ...yQueued.slice(15));

      // x has two sockets; y one. None acks, except x1 acking x's first 5.
      const x1 = await TestClient.connect(server.wsUrl);
      expect((await x1.identify(x)).data.queued).toBe(50);
      await x1.messages(20, 10_000); // MAX_INFLIGHT
      const x2 = await TestClient.connect(server.wsUrl);
      expect((await x2.identify(x)).data.queued).toBe(50);
      await x2.messages(20, 10_000);
      const y1 = await TestClient.connect(server.wsUrl);
      expect((await y1.identify(y)).data.queued).toBe(30);
      await y1.messages(20, 10_000);
      x1.ack(
        messagesOf(x1)
          .slice(0, 5)
          .map((f) => f.data.id),
      );
      // The ack frees room on both of x's sockets.
      await x1.messages(25, 10_000);
      await x2.messages(25, 10_000);
      // Live messages for x while it is online: kept in Redis behind the queued ones.
      const xLive = range('x-live', 3);
      await publishAll(channelOf(x), xLive);
      await waitFor(async () => (await storedCount(x)) === 48, 10_000, "x's live messages to be stored (45 + 3)");

      const idOf = new Map<string, string>();
      for (const c of [x1, x2, y1]) for (const f of messagesOf(c)) idOf.set(f.data.payload, f.data.id);

      server.kill('SIGTERM');
      const closes = await Promise.all([x1, x2, y1].map((c) => c.closed(SHUTDOWN_TIMEOUT_MS + 2000)));
      for (const close of closes) expect(close.code).toBe(1001);
      // It exits within SHUTDOWN_TIMEOUT_MS (past it the server exits 1 itself); the code is checked last,
      // so that a wrong code does not hide the state checks below.
      const exit = await within(server.exited(), SHUTDOWN_TIMEOUT_MS + 2000, 'the server to exit after SIGTERM');

      // Everything owed is back in the queue, once, in the original order; ids kept.
      const xExpected = [...xQueued.slice(5), ...xLive];
      const xEntries = await r.lrange(queueKey(x), 0, -1);
      expect(xEntries.map(entryPayload)).toEqual(xExpected);
      const yEntries = await r.lrange(queueKey(y), 0, -1);
      expect(yEntries.map(entryPayload)).toEqual(yQueued);
      for (const e of [...xEntries, ...yEntries]) {
        const p = entryPayload(e);
        if (idOf.has(p)) expect(entryId(e)).toBe(idOf.get(p));
      }
      expect(await leftoverKeys(r, x)).toEqual([queueKey(x)]);
      expect(await leftoverKeys(r, y)).toEqual([queueKey(y)]);
      expect((await connectionCount(r, x)) + (await connectionCount(r, y))).toBe(0);

      // A restarted server delivers them, in order, with the same ids.
      await server.restart();
      for (const [id, expected] of [
        [x, xExpected],
        [y, yQueued],
      ] as const) {
        const c = await TestClient.connect(server.wsUrl, { autoAck: true });
        expect((await c.identify(id)).data.queued).toBe(expected.length);
        const got = await c.messages(expected.length, 15_000);
        expect(got.map((f) => f.data.payload)).toEqual(expected);
        for (const f of got) if (idOf.has(f.data.payload)) expect(f.data.id).toBe(idOf.get(f.data.payload));
        await waitFor(async () => (await leftoverKeys(r, id)).length === 0, 10_000, `${id}'s keys empty after acks`);
        await c.close();
      }
      expect({ exitAfterSigterm: exit }).toEqual({ exitAfterSigterm: { code: 0, signal: null } });
    });
  });

  it('a connection attempt during the shutdown is not identified; the shutdown still completes with exit 0', async () => {
    const server = await newServer();
    await withLogs(server, async () => {
      const holder = uniqueId('hold');
      const late = uniqueId('late');
      await publishAll(channelOf(holder), range('h', 10));
      await waitFor(async () => (await r.llen(queueKey(holder))) === 10, 10_000, 'holder messages queued');
      const c = await TestClient.connect(server.wsUrl);
      expect((await c.identify(holder)).data.queued).toBe(10);
      await c.messages(10, 10_000);

      // Hold the shutdown open: Redis write commands (the requeue scripts) wait while clients are paused.
      // The router unsubscribing (PUBSUB NUMPAT 0) shows the shutdown has begun.
      expect(Number(await r.pubsub('NUMPAT'))).toBeGreaterThanOrEqual(1);
      await r.call('CLIENT', 'PAUSE', '8000', 'WRITE');
      try {
        server.kill('SIGTERM');
        await waitFor(async () => Number(await r.pubsub('NUMPAT')) === 0, 5000, 'the server to stop routing (shutdown begun)');

        let attempt: TestClient | undefined;
        try {
          attempt = await TestClient.connect(server.wsUrl, { timeoutMs: 3000 });
        } catch {
          // Refused outright: not identified either.
        }
        if (attempt) {
          if (attempt.isOpen) attempt.send('identify', { id: late });
          const close = await attempt.closed(5000);
          expect([1001, 1006]).toContain(close.code);
          expect(attempt.frames.filter((f) => f.event === 'ready')).toEqual([]);
        }
      } finally {
        await r.call('CLIENT', 'UNPAUSE');
      }
      expect((await c.closed(SHUTDOWN_TIMEOUT_MS)).code).toBe(1001);
      const exit = await within(server.exited(), SHUTDOWN_TIMEOUT_MS + 2000, 'the server to exit');
      expect((await r.lrange(queueKey(holder), 0, -1)).map(entryPayload)).toEqual(range('h', 10));
      expect(await connectionCount(r, late)).toBe(0);
      expect(await leftoverKeys(r, late)).toEqual([]);
      expect({ exitAfterSigterm: exit }).toEqual({ exitAfterSigterm: { code: 0, signal: null } });
    });
  });
});
