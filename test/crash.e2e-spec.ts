// Failure e2e: the server SIGKILLed mid-purge, Redis stopped and started again, clients
// dropped mid-purge, and messages published while a purge is under way.
// PROTOCOL.md points 2 (offline queueing), 3 (purge on identify), 4 (at-least-once,
// requeue at the head in order after a SIGKILL), 5 (flow control), and the /health route.
import http from 'node:http';
import type Redis from 'ioredis';
import { uniqueId } from './support/ids';
import { startRedis, TestRedis } from './support/redis';
import { startServer, TestServer } from './support/server';
import { waitFor, within } from './support/wait';
import { Frame, TestClient } from './support/ws-client';
import { entryId, entryPayload, leftoverKeys, owedCount } from './support/queue-entries';
import { shardOf } from '../src/router/shards';
import { expectSequence, messagesOf, publishAll, sleep, withLogs } from './support/traffic';

jest.setTimeout(90_000);

const channelOf = (id: string) => `rm.users.${id}`;
const queueKey = (id: string) => `rm:users:${id}:messages`;

// ---------------------------------------------------------------------------
// Helpers (kept in this file on purpose: test/support is not ours to change).

const redises: TestRedis[] = [];
const servers: TestServer[] = [];

async function newRedis(persistent = false): Promise<TestRedis> {
  const r = await startRedis(persistent ? { persistent: true } : {});
  redises.push(r);
  return r;
}

async function newServer(env: Record<string, string>): Promise<TestServer> {
  const s = await startServer({ LOG_LEVEL: 'log', ...env });
  servers.push(s);
  return s;
}

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
  await Promise.all(redises.map((r) => r.close().catch(() => undefined)));
});

/** A payload per index, some with characters that JSON must escape and non-ASCII text. */
const payloadFor = (tag: string, i: number): string => (i % 97 === 0 ? `${tag}-${i} "quoted" \\ back\nslash é✓ 🚀` : `${tag}-${i}`);

async function rpushAll(r: Redis, key: string, payloads: string[]): Promise<void> {
  for (let i = 0; i < payloads.length; i += 500) await r.rpush(key, ...payloads.slice(i, i + 500));
}

/** Waits for n messages in all, acking each batch as it arrives. */
async function receiveAcking(c: TestClient, n: number, timeoutMs: number): Promise<Frame[]> {
  const deadline = Date.now() + timeoutMs;
  let acked = 0;
  for (;;) {
    const msgs = messagesOf(c);
    if (msgs.length > acked) {
      c.ack(msgs.slice(acked).map((f) => f.data.id));
      acked = msgs.length;
    }
    if (msgs.length >= n) return msgs;
    await c.messages(msgs.length + 1, Math.max(1, deadline - Date.now()));
  }
}

function health(url: string, timeoutMs = 3000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${url}/health`, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`GET /health did not answer within ${timeoutMs} ms (hangs)`)));
    req.on('error', reject);
  });
}

/** Resolves with p's value, or rejects if it has not settled within ms (the timer never outlives the wait). */

// ---------------------------------------------------------------------------

describe('server SIGKILLed mid-purge', () => {
  it('restarts, puts owed messages back at the head of the queue in order, and delivers everything', async () => {
    const redis = await newRedis();
    const r = redis.client();
    const server = await newServer({ REDIS_URL: redis.url, MAX_INFLIGHT: '100' });
    await withLogs([server], async () => {
      const user = uniqueId('crash');
      // 3,000 queued while the user is offline: 1,000 published, 1,000 raw RPUSHes, 1,000 published.
      const all = Array.from({ length: 3000 }, (_, i) => payloadFor(i >= 1000 && i < 2000 ? 'raw' : 'pub', i));
      await publishAll(r, channelOf(user), all.slice(0, 1000));
      await waitFor(async () => (await r.llen(queueKey(user))) === 1000, 15_000, 'the first 1,000 published messages to be queued');
      await rpushAll(r, queueKey(user), all.slice(1000, 2000));
      await publishAll(r, channelOf(user), all.slice(2000));
      await waitFor(async () => (await r.llen(queueKey(user))) === 3000, 15_000, 'all 3,000 messages to be queued');
      expectSequence((await r.lrange(queueKey(user), 0, -1)).map(entryPayload), all, 'queue before identify');

      // A slow client: takes MAX_INFLIGHT (100), acks the first 50, gets 50 more, and holds the rest unacked.
      const slow = await TestClient.connect(server.wsUrl);
      const ready = await slow.identify(user);
      expect(ready.data).toEqual(expect.objectContaining({ id: user, channel: channelOf(user), queued: 3000 }));
      const first = await slow.messages(100, 15_000);
      slow.ack(first.slice(0, 50).map((f) => f.data.id));
      const got1 = await slow.messages(150, 15_000);
      expectSequence(
        got1.map((f) => f.data.payload),
        all.slice(0, 150),
        'slow client',
      );
      const acked = new Set(got1.slice(0, 50).map((f) => f.data.id));
      const inflight = new Set(got1.slice(50).map((f) => f.data.id));
      const idOf = new Map(got1.map((f) => [f.data.payload as string, f.data.id as string]));

      // The ack of the first 50 must be stored before the crash; nothing else is acked.
      server.kill('SIGKILL');
      const exit = await within(server.exited(), 10_000, 'the SIGKILLed server to exit');
      expect(exit).toEqual({ code: null, signal: 'SIGKILL' });
      await slow.closed(10_000).catch(() => slow.terminate());

      // While the server is down another program queues one more raw entry: it must end up behind the owed ones.
      await r.rpush(queueKey(user), 'late-raw');

      await server.restart();
      const expectedQueue = [...all.slice(50), 'late-raw'];
      let entries: string[] = [];
      await waitFor(
        async () => {
          entries = await r.lrange(queueKey(user), 0, -1);
          return entries.length === expectedQueue.length;
        },
        20_000,
        `the restarted server to requeue the ${expectedQueue.length - 1} owed messages (queue length ${expectedQueue.length})`,
      ).catch(async (err: Error) => {
        throw new Error(`${err.message}; queue length is ${entries.length}, user keys ${JSON.stringify(await leftoverKeys(r, user))}`);
      });
      // Head of the queue, original order; the ids of already-sent messages are unchanged.
      expectSequence(entries.map(entryPayload), expectedQueue, 'queue after restart');
      for (const entry of entries) {
        const p = entryPayload(entry);
        if (idOf.has(p)) expect(entryId(entry)).toBe(idOf.get(p));
      }
      expect((await leftoverKeys(r, user)).filter((k) => k !== queueKey(user))).toEqual([]);

      // Reconnect with an auto-acking client: the rest arrives, in order, ids kept.
      const fast = await TestClient.connect(server.wsUrl, { autoAck: true });
      const ready2 = await fast.identify(user);
      expect(ready2.data).toEqual(expect.objectContaining({ id: user, queued: expectedQueue.length }));
      const got2 = await fast.messages(expectedQueue.length, 30_000);
      expectSequence(
        got2.map((f) => f.data.payload),
        expectedQueue,
        'reconnected client',
      );
      for (const f of got2) {
        expect(typeof f.data.id).toBe('string');
        expect(f.data.channel).toBe(channelOf(user));
        expect(typeof f.data.ts).toBe('number');
        if (idOf.has(f.data.payload)) expect(f.data.id).toBe(idOf.get(f.data.payload));
      }

      // Across both connections: after de-duplication by id everything arrived once, in order,
      // and only messages in flight at the crash came twice.
      const seen = new Set<string>();
      const deduped: string[] = [];
      const repeated: string[] = [];
      for (const f of [...got1, ...got2]) {
        if (seen.has(f.data.id)) repeated.push(f.data.id);
        else {
          seen.add(f.data.id);
          deduped.push(f.data.payload);
        }
      }
      expectSequence(deduped, [...all, 'late-raw'], 'all deliveries, de-duplicated by id');
      for (const id of repeated) {
        expect(acked.has(id)).toBe(false);
        expect(inflight.has(id)).toBe(true);
      }
      expect(new Set(got2.map((f) => f.data.id)).size).toBe(got2.length);

      await waitFor(async () => (await leftoverKeys(r, user)).length === 0, 15_000, 'queue and owed keys to be empty after every ack');
      await fast.close();
    });
  });
});

describe('server SIGKILLed and not restarted, another instance alive', () => {
  it("the surviving instance returns the dead one's owed messages to the queue in order; nothing published meanwhile is lost", async () => {
    const redis = await newRedis();
    const r = redis.client();
    const b = await newServer({ REDIS_URL: redis.url, MAX_INFLIGHT: '50', INSTANCE_ID: `ghost-b-${process.pid}` });
    const a = await newServer({ REDIS_URL: redis.url, MAX_INFLIGHT: '50', INSTANCE_ID: `ghost-a-${process.pid}` });
    await withLogs([a, b], async () => {
      // A user whose route shard b holds, so that PUBLISHes keep being routed after a dies (the
      // shards a held are routed again only after the take-over window, test/instances.e2e-spec.ts).
      // Lease values are 'holder|epoch|until|to|since': settled once a holds some and none is being handed over.
      const settled = (leases: Record<string, string>) =>
        Object.values(leases).some((v) => v.startsWith(`ghost-a-${process.pid}|`)) && Object.entries(leases).every(([f, v]) => !/^\d+$/.test(f) || v.split('|')[3] === '');
      await waitFor(async () => settled(await r.hgetall('rm:shards')), 10_000, 'the route shards split between a and b');
      const leases = await r.hgetall('rm:shards');
      let user = uniqueId('ghost');
      while (!leases[String(shardOf(user))]?.startsWith(`ghost-b-${process.pid}|`)) user = uniqueId('ghost');
      const queued = Array.from({ length: 300 }, (_, i) => payloadFor(i < 150 ? 'pub' : 'raw', i));
      await publishAll(r, channelOf(user), queued.slice(0, 150));
      await waitFor(async () => (await r.llen(queueKey(user))) === 150, 10_000, '150 queued');
      await rpushAll(r, queueKey(user), queued.slice(150));

      const c = await TestClient.connect(a.wsUrl);
      expect((await c.identify(user)).data.queued).toBe(300);
      const got1 = await c.messages(50, 10_000);
      c.ack(got1.slice(0, 20).map((f) => f.data.id));
      await c.messages(70, 10_000);
      const idOf = new Map(messagesOf(c).map((f) => [f.data.payload as string, f.data.id as string]));

      a.kill('SIGKILL');
      await within(a.exited(), 10_000, 'the SIGKILLed server to exit');
      await c.closed(10_000).catch(() => c.terminate());
      // Published after the crash, routed by b while the dead socket may still look connected.
      const during = ['during-0', 'during-1', 'during-2'];
      await publishAll(r, channelOf(user), during);

      const expected = [...queued.slice(20), ...during];
      let entries: string[] = [];
      await waitFor(
        async () => {
          entries = await r.lrange(queueKey(user), 0, -1);
          return entries.length === expected.length;
        },
        30_000,
        `the surviving instance to requeue ${expected.length} messages`,
      ).catch(async (err: Error) => {
        throw new Error(`${err.message}; queue length ${entries.length}, user keys ${JSON.stringify(await leftoverKeys(r, user))}`);
      });
      expectSequence(entries.map(entryPayload), expected, 'queue after the dead instance was reaped');
      for (const e of entries) if (idOf.has(entryPayload(e))) expect(entryId(e)).toBe(idOf.get(entryPayload(e)));

      const d = await TestClient.connect(b.wsUrl, { autoAck: true });
      expect((await d.identify(user)).data.queued).toBe(expected.length);
      const got2 = await d.messages(expected.length, 20_000);
      expectSequence(
        got2.map((f) => f.data.payload),
        expected,
        'delivered by the surviving instance',
      );
      for (const f of got2) if (idOf.has(f.data.payload)) expect(f.data.id).toBe(idOf.get(f.data.payload));
      await waitFor(async () => (await leftoverKeys(r, user)).length === 0, 10_000, 'keys empty after acks');
      await d.close();
    });
  });
});

describe('Redis stopped and started again', () => {
  it('answers /health 503 while down, 200 after; keeps the socket; delivers queued and new messages', async () => {
    const redis = await newRedis(true);
    let r = redis.client();
    const server = await newServer({ REDIS_URL: redis.url });
    await withLogs([server], async () => {
      const online = uniqueId('online');
      const offline = uniqueId('offline');

      const a = await TestClient.connect(server.wsUrl, { autoAck: true });
      expect((await a.identify(online)).data.queued).toBe(0);
      await publishAll(r, channelOf(online), ['before-0', 'before-1']);
      await a.messages(2, 10_000);

      const queuedBefore = Array.from({ length: 20 }, (_, i) => payloadFor('offline', i));
      await publishAll(r, channelOf(offline), queuedBefore.slice(0, 10));
      await waitFor(async () => (await r.llen(queueKey(offline))) === 10, 10_000, '10 queued for the offline user');
      await rpushAll(r, queueKey(offline), queuedBefore.slice(10));
      // Everything acked so far is settled before Redis goes away.
      await waitFor(async () => (await leftoverKeys(r, online)).length === 0, 10_000, 'acks of the online user to be stored');
      expect((await health(server.url)).status).toBe(200);

      await redis.stop();
      // 503 with "status":"error" while Redis is down; every answer comes (GET bounded at 3 s).
      await waitFor(async () => (await health(server.url)).status === 503, 15_000, 'GET /health to answer 503');
      // Redis stays down several seconds, as a real restart would (long enough for the server's own
      // Redis commands to give up, not only to queue); /health keeps answering 503 meanwhile.
      for (let i = 0; i < 12; i++) {
        const h = await health(server.url);
        expect(h.status).toBe(503);
        expect(h.body).toMatch(/"status"\s*:\s*"error"/);
        await sleep(500);
      }
      expect(a.isOpen).toBe(true);

      await redis.start();
      r = redis.client(); // stop() quit the old clients
      // Publish steadily from the moment Redis is back. A PUBLISH that no subscriber heard (reply 0)
      // is lost by pub/sub's nature; every PUBLISH the server heard (reply >= 1: it is the only
      // subscriber of this Redis) must reach the socket that stayed connected (point 1).
      const heard: string[] = [];
      let firstHeardAt = 0;
      let k = 0;
      const burstDeadline = Date.now() + 20_000;
      while (!firstHeardAt || Date.now() - firstHeardAt < 1500) {
        if (Date.now() > burstDeadline) throw new Error(`No PUBLISH reached a subscriber within 20 s after Redis started (${k} sent)`);
        const p = `after-${k++}`;
        if ((await r.publish(channelOf(online), p)) > 0) {
          heard.push(p);
          firstHeardAt ||= Date.now();
        }
        await sleep(3);
      }
      expect(Number(await r.pubsub('NUMPAT'))).toBeGreaterThanOrEqual(2); // rm.users.* and rm.channels.* again
      await waitFor(async () => (await health(server.url)).status === 200, 20_000, 'GET /health to answer 200 again');
      expect((await health(server.url)).body).toMatch(/"status"\s*:\s*"ok"/);
      expect(a.isOpen).toBe(true);
      const final = ['final-0', 'final-1'];
      await publishAll(r, channelOf(online), final);

      // Messages may repeat after the reconnect (at-least-once), never be lost or reordered.
      await waitFor(() => messagesOf(a).some((f) => f.data.payload === 'final-1'), 15_000, 'final-1 to arrive').catch((err: Error) => {
        throw new Error(`${err.message}; received ${JSON.stringify(messagesOf(a).map((f) => f.data.payload))}`);
      });
      const seen = new Set<string>();
      const deduped = messagesOf(a)
        .filter((f) => !seen.has(f.data.id) && seen.add(f.data.id))
        .map((f) => f.data.payload);
      const missing = heard.filter((p) => !deduped.includes(p));
      if (missing.length > 0) {
        throw new Error(
          `${missing.length} of ${heard.length} PUBLISHes heard by the server after the Redis restart never reached the ` +
            `identified socket: ${JSON.stringify(missing.slice(0, 10))} (first heard: ${heard[0]}, last: ${heard[heard.length - 1]})`,
        );
      }
      expectSequence(deduped, ['before-0', 'before-1', ...heard, ...final], 'online user across the Redis restart, de-duplicated by id');

      // The offline user's queue survived the restart and is delivered in order.
      const b = await TestClient.connect(server.wsUrl, { autoAck: true });
      expect((await b.identify(offline)).data.queued).toBe(20);
      expectSequence(
        (await b.messages(20, 15_000)).map((f) => f.data.payload),
        queuedBefore,
        'offline user after the Redis restart',
      );

      await waitFor(async () => (await leftoverKeys(r, offline)).length === 0, 10_000, 'offline user keys empty after acks');
      await waitFor(async () => (await leftoverKeys(r, online)).length === 0, 10_000, 'online user keys empty after acks');
      await a.close();
      await b.close();
    });
  });
});

describe('purge interrupted and purge with live traffic', () => {
  let redis: TestRedis;
  let r: Redis;
  let server: TestServer;

  beforeAll(async () => {
    redis = await newRedis();
    r = redis.client();
    server = await newServer({ REDIS_URL: redis.url, MAX_INFLIGHT: '100' });
  });

  it('a client dropped mid-purge without acking, several times, finds the full count and gets everything in order', async () => {
    await withLogs([server], async () => {
      const user = uniqueId('drop');
      const all = Array.from({ length: 600 }, (_, i) => payloadFor(i % 2 ? 'raw' : 'pub', i));
      // Interleave published and raw entries in blocks of 100, waiting for each published block to land.
      for (let i = 0; i < all.length; i += 100) {
        const block = all.slice(i, i + 100);
        if ((i / 100) % 2 === 0) {
          await publishAll(r, channelOf(user), block);
          await waitFor(async () => (await r.llen(queueKey(user))) === i + 100, 10_000, `block ${i / 100} queued`);
        } else {
          await rpushAll(r, queueKey(user), block);
        }
      }
      const blockOrder = all;

      const idOf = new Map<string, string>();
      // Drop 1: after 10 messages. Drop 2: with a full window (MAX_INFLIGHT). Drop 3: right after ready.
      for (const [round, take] of [
        [1, 10],
        [2, 100],
        [3, 0],
      ] as const) {
        const c = await TestClient.connect(server.wsUrl);
        const ready = await c.identify(user);
        expect({ round, queued: ready.data.queued }).toEqual({ round, queued: all.length });
        const got = take > 0 ? await c.messages(take, 10_000) : [];
        expectSequence(
          got.map((f) => f.data.payload),
          blockOrder.slice(0, take),
          `round ${round}`,
        );
        for (const f of got) {
          if (idOf.has(f.data.payload)) expect(f.data.id).toBe(idOf.get(f.data.payload));
          idOf.set(f.data.payload, f.data.id);
        }
        c.terminate();
        await c.closed();
      }

      const c = await TestClient.connect(server.wsUrl, { autoAck: true });
      const ready = await c.identify(user);
      expect(ready.data.queued).toBe(all.length);
      const got = await c.messages(all.length, 20_000);
      expectSequence(
        got.map((f) => f.data.payload),
        blockOrder,
        'final client',
      );
      expect(new Set(got.map((f) => f.data.id)).size).toBe(all.length);
      for (const f of got) if (idOf.has(f.data.payload)) expect(f.data.id).toBe(idOf.get(f.data.payload));
      await waitFor(async () => (await leftoverKeys(r, user)).length === 0, 10_000, 'keys empty after acks');
      await c.close();
    });
  });

  it('2,000 queued + 200 published during the purge arrive exactly in order, no duplicates (auto-ack)', async () => {
    await withLogs([server], async () => {
      const user = uniqueId('purge');
      const queued = Array.from({ length: 2000 }, (_, i) => payloadFor('q', i));
      const live = Array.from({ length: 200 }, (_, i) => `live-${i}`);
      await publishAll(r, channelOf(user), queued.slice(0, 1000));
      await waitFor(async () => (await r.llen(queueKey(user))) === 1000, 10_000, '1,000 queued');
      await rpushAll(r, queueKey(user), queued.slice(1000));

      const c = await TestClient.connect(server.wsUrl, { autoAck: true });
      const ready = await c.identify(user);
      expect(ready.data.queued).toBe(2000);
      await c.messages(1, 10_000);
      // Published one by one while the purge runs (acks flowing), not as one batch.
      for (const p of live) await r.publish(channelOf(user), p);
      const got = await c.messages(2200, 30_000);
      expectSequence(
        got.map((f) => f.data.payload),
        [...queued, ...live],
        'purge + live',
      );
      expect(new Set(got.map((f) => f.data.id)).size).toBe(2200);
      // Nothing more arrives (no duplicates after the last one).
      await waitFor(async () => (await leftoverKeys(r, user)).length === 0, 10_000, 'keys empty after acks');
      expect(messagesOf(c)).toHaveLength(2200);
      await c.close();
    });
  });

  it('messages published while a purge waits for acks are owed behind the queue and arrive in order (manual acks)', async () => {
    await withLogs([server], async () => {
      const user = uniqueId('purge2');
      const queued = Array.from({ length: 2000 }, (_, i) => payloadFor('q', i));
      const live = Array.from({ length: 200 }, (_, i) => `live-${i}`);
      await publishAll(r, channelOf(user), queued);
      await waitFor(async () => (await r.llen(queueKey(user))) === 2000, 10_000, '2,000 queued');

      const c = await TestClient.connect(server.wsUrl);
      expect((await c.identify(user)).data.queued).toBe(2000);
      await c.messages(100, 10_000); // a full window, unacked: the purge is stalled here
      await publishAll(r, channelOf(user), live);
      // The 200 are stored behind the queue (owed or still queued), not delivered ahead: nothing new arrives yet.
      const storedCount = async (): Promise<number> => (await owedCount(r, user)) + (await r.llen(queueKey(user)));
      await waitFor(async () => (await storedCount()) === 2200, 10_000, 'the 200 live messages to be stored');
      expect(messagesOf(c)).toHaveLength(100);
      const got = await receiveAcking(c, 2200, 30_000);
      expectSequence(
        got.map((f) => f.data.payload),
        [...queued, ...live],
        'stalled purge + live',
      );
      expect(new Set(got.map((f) => f.data.id)).size).toBe(2200);
      await waitFor(async () => (await leftoverKeys(r, user)).length === 0, 10_000, 'keys empty after acks');
      expect(messagesOf(c)).toHaveLength(2200);
      await c.close();
    });
  });
});
