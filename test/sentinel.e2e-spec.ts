/**
 * RedMessenger on a Sentinel-managed Redis (one master, one replica, one sentinel), the
 * server started with REDIS_SENTINELS and REDIS_SENTINEL_MASTER: online and offline
 * delivery; then a failover (the master SIGKILLed) while a publisher sends to online and
 * offline users through a Sentinel-backed client. What was stored before the failover is
 * all delivered after it; what is lost was published inside the failover window (raw
 * pub/sub: no subscriber hears it, or the server heard it as the master died); after the
 * failover delivery works again, online and offline, without restarting the server.
 */
import type { Redis } from 'ioredis';
import { uniqueId } from './support/ids';
import { entryPayload, owedCount } from './support/queue-entries';
import { startSentinel, type TestSentinel } from './support/sentinel';
import { startServer, type TestServer } from './support/server';
import { checkUser, expectSequence, messagesOf, payloadsOf, Publisher, publishAll, range, sleep, type Sent, withLogs } from './support/traffic';
import { waitFor, within } from './support/wait';
import { TestClient } from './support/ws-client';

jest.setTimeout(120_000);

const q = (id: string) => `rm:users:${id}:messages`;
const ch = (id: string) => `rm.users.${id}`;
/** Messages the server heard but had not stored (or that were not replicated) when the master died: ms before the kill. */
const IN_FLIGHT_MARGIN_MS = 100;

describe('on Redis with Sentinel', () => {
  let sentinel: TestSentinel;
  let r: Redis;
  let server: TestServer;
  const clients: TestClient[] = [];

  beforeAll(async () => {
    sentinel = await startSentinel();
    r = sentinel.client();
    server = await startServer({ REDIS_SENTINELS: sentinel.sentinels, REDIS_SENTINEL_MASTER: sentinel.masterName, MAX_INFLIGHT: '100', LOG_LEVEL: 'log' });
  });

  afterAll(async () => {
    for (const c of clients) c.terminate();
    await server?.stop();
    await sentinel?.close();
  });

  const connect = async (autoAck = false) => {
    const c = await TestClient.connect(server.wsUrl, { autoAck });
    clients.push(c);
    return c;
  };
  const waitQueued = (id: string, n: number, timeoutMs = 10_000) => waitFor(async () => (await r.llen(q(id))) === n, timeoutMs, `${n} entries in ${q(id)}`);

  /** The first payloads of each id, de-duplicated by message id (at-least-once after a reconnect). */
  const deduped = (c: TestClient) => {
    const seen = new Set<string>();
    return messagesOf(c)
      .filter((f) => !seen.has(f.data.id) && seen.add(f.data.id))
      .map((f) => f.data.payload as string);
  };

  it('delivers online and offline (queue, purge on identify)', async () => {
    await withLogs([server], async () => {
      const on = uniqueId('son');
      const off = uniqueId('soff');
      const a = await connect(true);
      await a.identify(on);
      await publishAll(r, ch(on), range(10));
      expectSequence(payloadsOf(await a.messages(10)), range(10), 'online');
      await publishAll(r, ch(off), range(10, 'q'));
      await waitQueued(off, 10);
      expect((await r.lrange(q(off), 0, -1)).map(entryPayload)).toEqual(range(10, 'q'));
      const b = await connect(true);
      expect((await b.identify(off)).data.queued).toBe(10);
      expectSequence(payloadsOf(await b.messages(10)), range(10, 'q'), 'offline after identify');
      await waitFor(async () => (await owedCount(r, on)) + (await owedCount(r, off)) === 0, 5000, 'all acked');
    });
  });

  it('a failover mid-traffic loses nothing that was stored; only messages of the failover window are lost; delivery works again after it', async () => {
    const onlineIds = Array.from({ length: 5 }, () => uniqueId('fon'));
    const offlineIds = Array.from({ length: 50 }, () => uniqueId('foff'));
    await withLogs([server], async () => {
      const sockets = new Map<string, TestClient>();
      for (const id of onlineIds) {
        const c = await connect(true);
        await c.identify(id);
        sockets.set(id, c);
      }
      // Fails fast while the master is away instead of queueing: each attempt is recorded with its time.
      const pubClient = sentinel.client({ enableOfflineQueue: false, maxRetriesPerRequest: 0 });
      await waitFor(() => pubClient.status === 'ready', 5000, 'the publisher client ready');
      const publisher = new Publisher(pubClient, [...onlineIds, ...offlineIds], 2);
      await sleep(1500);

      // What is stored now (made sure it reached the replica) must all be delivered after the failover.
      const storedBefore = new Map<string, string[]>();
      for (const id of offlineIds) storedBefore.set(id, (await r.lrange(q(id), 0, -1)).map(entryPayload));
      const deliveredBefore = new Map([...sockets].map(([id, c]) => [id, deduped(c)]));
      await r.set(uniqueId('marker'), '1');
      expect(await r.wait(1, 2000)).toBe(1);

      const killedAt = Date.now();
      await within(sentinel.failover(), 30_000, 'the failover');
      const promotedAt = Date.now();
      // Keep publishing until the server has stored messages again, and a while after.
      await waitFor(() => publisher.sent.some((s) => s.sentAt > promotedAt && s.receivers > 0), 20_000, 'a PUBLISH heard after the failover');
      await sleep(2000);
      await publisher.stop();

      // Offline users identify now: everything stored arrives in order.
      const sent = new Map<string, Sent[]>();
      for (const s of publisher.sent) sent.set(s.user, [...(sent.get(s.user) ?? []), s]);
      let lost: Sent[] = [];
      const received = new Map<string, string[]>();
      for (const id of onlineIds) {
        await waitFor(async () => (await owedCount(r, id)) === 0, 10_000, `${id}: everything acked`);
        received.set(id, deduped(sockets.get(id)!));
      }
      for (const id of offlineIds) {
        const c = await connect(true);
        const { queued } = (await c.identify(id)).data;
        await c.messages(queued, 10_000);
        received.set(id, deduped(c));
      }
      for (const id of [...onlineIds, ...offlineIds]) {
        const got = received.get(id)!;
        const res = checkUser(sent.get(id) ?? [], got);
        expect({ id, outOfOrder: res.outOfOrder }).toEqual({ id, outOfOrder: undefined });
        lost = lost.concat(res.lost);
        // Nothing stored (or delivered) before the failover is lost.
        const before = offlineIds.includes(id) ? storedBefore.get(id)! : deliveredBefore.get(id)!;
        const missing = before.filter((p) => !got.includes(p));
        expect({ id, missing }).toEqual({ id, missing: [] });
      }
      // The failover window: from the kill to the first PUBLISH after the promotion that was stored or delivered.
      const post = publisher.sent.filter((s) => s.sentAt > killedAt);
      const lostSet = new Set(lost.map((s) => `${s.user}|${s.seq}`));
      const firstOk = post.find((s) => s.sentAt > promotedAt && !lostSet.has(`${s.user}|${s.seq}`));
      expect(firstOk).toBeDefined();
      const windowEnd = firstOk!.sentAt;
      const failedAfter = publisher.failed.filter((f) => f.at > killedAt);
      const heardButLost = lost.filter((s) => s.receivers > 0);
      console.log(
        `Sentinel failover: replica promoted ${promotedAt - killedAt} ms after the master was killed; PUBLISHes stored again from ` +
          `${windowEnd - killedAt} ms after the kill. ${publisher.sent.length} PUBLISHes answered (${post.length} after the kill, ` +
          `${post.filter((s) => s.receivers === 0).length} of those heard by no subscriber), ${failedAfter.length} refused while no master answered; ` +
          `${lost.length} lost (${heardButLost.length} of them heard by the server), published ` +
          `${lost.length ? Math.min(...lost.map((s) => s.sentAt)) - killedAt : 0}..${lost.length ? Math.max(...lost.map((s) => s.sentAt)) - killedAt : 0} ms after the kill`,
      );
      for (const s of lost) {
        expect(s.sentAt).toBeGreaterThanOrEqual(killedAt - IN_FLIGHT_MARGIN_MS);
        expect(s.sentAt).toBeLessThan(windowEnd);
      }
      // A PUBLISH the server heard is lost only if it was in flight as the master died.
      for (const s of heardButLost) expect(s.sentAt).toBeLessThan(killedAt + IN_FLIGHT_MARGIN_MS);

      // After the failover, without a restart: a socket that stayed open, a new socket, and an offline user.
      const kept = sockets.get(onlineIds[0])!;
      const n = messagesOf(kept).length;
      await r.publish(ch(onlineIds[0]), 'after-failover');
      await waitFor(
        () =>
          messagesOf(kept)
            .slice(n)
            .some((f) => f.data.payload === 'after-failover'),
        10_000,
        'the kept socket to get a new message',
      );
      const fresh = uniqueId('new');
      const c = await connect(true);
      await c.identify(fresh);
      await publishAll(r, ch(fresh), range(5));
      expectSequence(payloadsOf(await c.messages(5, 10_000)), range(5), 'new socket after the failover');
      const off = uniqueId('newoff');
      await publishAll(r, ch(off), range(5, 'q'));
      await waitQueued(off, 5);
      const d = await connect(true);
      expect((await d.identify(off)).data.queued).toBe(5);
      expectSequence(payloadsOf(await d.messages(5, 10_000)), range(5, 'q'), 'offline user after the failover');
    });
  });
});
