/**
 * The contract's core cases on a real local Redis Cluster of three masters, the
 * server started with REDIS_CLUSTER_NODES: online delivery, offline queueing under the
 * hash-tagged key names (`rm:users:{<id>}:messages`), purge on identify, publish during a
 * purge, requeue at the head, a SIGKILL mid-purge, groups whose members live on different
 * masters, raw RPUSHed entries, many users over every master; two instances sharing the
 * routing on the Cluster (one joining while messages are published); and invalid
 * REDIS_CLUSTER_NODES / REDIS_SENTINELS settings refused at start.
 *
 * Test PUBLISHes go through one node (a plain client to the first node): ioredis's
 * Cluster client sends each PUBLISH to a random node, and two PUBLISHes entering the
 * Cluster on different nodes reach a subscriber on a third over two bus links, so their
 * order is not kept. That is Redis Cluster's, not RedMessenger's.
 */
import calculateSlot from 'cluster-key-slot';
import Redis, { type Cluster } from 'ioredis';
import { startCluster, type TestCluster } from './support/cluster';
import { ask } from './support/redis-node';
import { uniqueId } from './support/ids';
import { connectionCount, entryId, entryPayload, owedCount } from './support/queue-entries';
import { startServer, type TestServer } from './support/server';
import { checkUser, expectSequence, metric, payloadsOf, Publisher, publishAll, range, sleep, withLogs } from './support/traffic';
import { waitFor, within } from './support/wait';
import { TestClient } from './support/ws-client';

jest.setTimeout(120_000);

const q = (id: string) => `rm:users:{${id}}:messages`;
const ch = (id: string) => `rm.users.${id}`;

describe('on a Redis Cluster of three masters', () => {
  let cluster: TestCluster;
  let c: Cluster; // reads keys
  let pub: Redis; // PUBLISHes, all through one node so their order holds
  let server: TestServer;
  const servers: TestServer[] = [];
  const clients: TestClient[] = [];
  let slotOwner: (key: string) => number;

  beforeAll(async () => {
    cluster = await startCluster({ masters: 3 });
    c = cluster.client();
    pub = new Redis({ host: cluster.nodes[0].host, port: cluster.nodes[0].port });
    server = await startServer({ REDIS_CLUSTER_NODES: cluster.seeds, MAX_INFLIGHT: '100', LOG_LEVEL: 'log', INSTANCE_ID: 'cluster-a' });
    servers.push(server);
    const slots = (await c.cluster('SLOTS')) as unknown as [number, number, [string, number]][];
    slotOwner = (key: string) => {
      const slot = calculateSlot(key);
      const r = slots.find(([s, e]) => s <= slot && slot <= e);
      if (!r) throw new Error(`no owner of slot ${slot}`);
      return Number(r[2][1]);
    };
  });

  afterEach(() => {
    for (const cl of clients.splice(0)) cl.terminate();
  });

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
    pub?.disconnect();
    await cluster?.close();
  });

  const connect = async (s: TestServer = server, autoAck = false) => {
    const cl = await TestClient.connect(s.wsUrl, { autoAck });
    clients.push(cl);
    return cl;
  };
  const online = async (id: string, s: TestServer = server, autoAck = false) => {
    const cl = await connect(s, autoAck);
    await cl.identify(id);
    return cl;
  };
  const waitQueued = (id: string, n: number, timeoutMs = 10_000) => waitFor(async () => (await c.llen(q(id))) === n, timeoutMs, `${n} entries in ${q(id)}`);
  const queuedPayloads = async (id: string) => (await c.lrange(q(id), 0, -1)).map(entryPayload);

  it('delivers online to every socket of the id, in publish order', async () => {
    await withLogs(servers, async () => {
      const id = uniqueId('cl');
      const a = await online(id, server, true);
      const b = await online(id, server, true);
      await publishAll(pub, ch(id), range(15));
      expectSequence(payloadsOf(await a.messages(15)), range(15), 'first socket');
      expectSequence(payloadsOf(await b.messages(15)), range(15), 'second socket');
      for (const f of await a.messages(15)) expect(f.data).toEqual({ id: expect.any(String), channel: ch(id), payload: expect.any(String), ts: expect.any(Number) });
      expect(await c.exists(q(id))).toBe(0);
      await waitFor(async () => (await owedCount(c, id, true)) === 0, 5000, 'every ack stored');
    });
  });

  it('queues an offline user in rm:users:{id}:messages, in order, exactly once (nothing under the v1 name)', async () => {
    await withLogs(servers, async () => {
      const id = uniqueId('cl');
      await publishAll(pub, ch(id), ['one', 'two', 'three']);
      await waitQueued(id, 3);
      await sleep(200); // a duplicate would have landed by now
      const entries = await c.lrange(q(id), 0, -1);
      expect(entries.map(entryPayload)).toEqual(['one', 'two', 'three']);
      expect(new Set(entries.map(entryId)).size).toBe(3);
      expect(await c.exists(`rm:users:${id}:messages`)).toBe(0);
    });
  });

  it('purges on identify: ready.queued, the queue in order, then live messages', async () => {
    await withLogs(servers, async () => {
      const id = uniqueId('cl');
      await publishAll(pub, ch(id), range(30, 'q'));
      await waitQueued(id, 30);
      const cl = await connect(server, true);
      const ready = await cl.identify(id);
      expect(ready.data).toEqual({ id, channel: ch(id), queued: 30 });
      await publishAll(pub, ch(id), range(5, 'live'));
      expectSequence(payloadsOf(await cl.messages(35, 10_000)), [...range(30, 'q'), ...range(5, 'live')], 'purge then live');
      await waitFor(async () => (await c.exists(q(id))) === 0 && (await owedCount(c, id, true)) === 0, 5000, 'queue and owed empty');
    });
  });

  it('keeps the order when messages are published during the purge (2,000 queued + 200 live, auto-ack)', async () => {
    await withLogs(servers, async () => {
      const id = uniqueId('cl');
      const queued = range(2000, 'q');
      const live = range(200, 'live');
      await publishAll(pub, ch(id), queued.slice(0, 1000));
      await waitQueued(id, 1000);
      await c.rpush(q(id), ...queued.slice(1000)); // raw entries too
      const cl = await connect(server, true);
      expect((await cl.identify(id)).data.queued).toBe(2000);
      await cl.messages(1, 10_000);
      for (const p of live) await pub.publish(ch(id), p); // one by one while the purge runs
      const got = await cl.messages(2200, 30_000);
      expectSequence(payloadsOf(got), [...queued, ...live], 'purge + live');
      expect(new Set(got.map((f) => f.data.id)).size).toBe(2200);
      await waitFor(async () => (await owedCount(c, id, true)) === 0 && (await c.exists(q(id))) === 0, 10_000, 'all acked');
      await sleep(200);
      expect(cl.frames.filter((f) => f.event === 'message')).toHaveLength(2200);
    });
  });

  it('requeues unacked messages at the head, in order, with their ids, when the last socket closes', async () => {
    await withLogs(servers, async () => {
      const id = uniqueId('cl');
      const a = await online(id);
      const b = await online(id);
      await publishAll(pub, ch(id), range(10));
      const got = await a.messages(10);
      await b.messages(10);
      a.ack(got.slice(0, 3).map((f) => f.data.id));
      await waitFor(async () => (await owedCount(c, id, true)) === 7, 5000, '7 owed after acking 3');
      await a.close();
      expect(await c.exists(q(id))).toBe(0); // b is still there: nothing goes back yet
      await b.close();
      await waitQueued(id, 7);
      await publishAll(pub, ch(id), ['after']);
      await waitQueued(id, 8);
      const entries = await c.lrange(q(id), 0, -1);
      expectSequence(entries.map(entryPayload), [...range(10).slice(3), 'after'], 'queue after the last close');
      expect(entries.slice(0, 7).map(entryId)).toEqual(got.slice(3).map((f) => f.data.id));
      expect(await connectionCount(c, id, true)).toBe(0);
      expect(await owedCount(c, id, true)).toBe(0);
      const again = await connect(server, true);
      expect((await again.identify(id)).data.queued).toBe(8);
      expectSequence(payloadsOf(await again.messages(8)), [...range(10).slice(3), 'after'], 'redelivered');
    });
  });

  it('delivers a raw RPUSH rm:users:{id}:messages "raw" entry', async () => {
    await withLogs(servers, async () => {
      const id = uniqueId('cl');
      await publishAll(pub, ch(id), ['published']);
      await waitQueued(id, 1);
      await c.rpush(q(id), 'raw', '{"not":"an envelope"}');
      const cl = await connect(server, true);
      expect((await cl.identify(id)).data.queued).toBe(3);
      const got = await cl.messages(3);
      expectSequence(payloadsOf(got), ['published', 'raw', '{"not":"an envelope"}'], 'raw entries');
      expect(new Set(got.map((f) => f.data.id)).size).toBe(3);
      for (const f of got) expect(f.data.channel).toBe(ch(id));
    });
  });

  it('delivers a group message to each member (members on all three masters, online and offline) with channel rm.channels.<cid>', async () => {
    await withLogs(servers, async () => {
      const cid = uniqueId('grp');
      // Two members on each master: one online, one offline.
      const byMaster = new Map<number, string[]>();
      for (let i = 0; i < 200 && [...byMaster.values()].filter((l) => l.length >= 2).length < 3; i++) {
        const id = uniqueId('mem');
        const owner = slotOwner(q(id));
        const list = byMaster.get(owner) ?? [];
        if (list.length < 2) list.push(id);
        byMaster.set(owner, list);
      }
      expect([...byMaster.keys()].sort()).toEqual(cluster.nodes.map((n) => n.port).sort());
      const onlineIds = [...byMaster.values()].map((l) => l[0]);
      const offlineIds = [...byMaster.values()].map((l) => l[1]);
      await c.sadd(`rm:channels:{${cid}}:subscribers`, ...onlineIds, ...offlineIds);
      const sockets = await Promise.all(onlineIds.map((id) => online(id, server, true)));
      await publishAll(pub, `rm.channels.${cid}`, ['g1', 'g2']);
      for (const s of sockets) {
        const got = await s.messages(2);
        expectSequence(payloadsOf(got), ['g1', 'g2'], 'online member');
        for (const f of got) expect(f.data.channel).toBe(`rm.channels.${cid}`);
      }
      for (const id of offlineIds) {
        await waitQueued(id, 2);
        expect(await queuedPayloads(id)).toEqual(['g1', 'g2']);
        expect((await c.lrange(q(id), 0, -1)).map((e) => JSON.parse(e).rm.channel)).toEqual([`rm.channels.${cid}`, `rm.channels.${cid}`]);
      }
      // One envelope per message for every member: the same id everywhere.
      const ids = sockets.map((s) =>
        s.frames
          .filter((f) => f.event === 'message')
          .map((f) => f.data.id)
          .join(),
      );
      expect(new Set(ids).size).toBe(1);
    });
  });

  it('delivers to 300 users spread over all three masters (150 online, 150 offline), each in order', async () => {
    await withLogs(servers, async () => {
      const ids = Array.from({ length: 300 }, () => uniqueId('many'));
      const perMaster = new Map<number, number>();
      for (const id of ids) perMaster.set(slotOwner(q(id)), (perMaster.get(slotOwner(q(id))) ?? 0) + 1);
      expect([...perMaster.keys()].sort()).toEqual(cluster.nodes.map((n) => n.port).sort());
      for (const n of perMaster.values()) expect(n).toBeGreaterThan(50);
      const onlineIds = ids.slice(0, 150);
      const offlineIds = ids.slice(150);
      const sockets = await Promise.all(onlineIds.map((id) => online(id, server, true)));
      const p = pub.pipeline();
      for (let k = 0; k < 5; k++) for (const id of ids) p.publish(ch(id), `m${k}`);
      await p.exec();
      for (const s of sockets) expectSequence(payloadsOf(await s.messages(5, 15_000)), range(5), 'online user');
      for (const id of offlineIds) {
        await waitQueued(id, 5);
        expect(await queuedPayloads(id)).toEqual(range(5));
      }
      const late = await Promise.all(offlineIds.slice(0, 30).map((id) => online(id, server, true)));
      for (const s of late) expectSequence(payloadsOf(await s.messages(5, 15_000)), range(5), 'offline user after identify');
    });
  });

  it('SIGKILL mid-purge, then restart: owed back at the head in order, nothing lost', async () => {
    await withLogs(servers, async () => {
      const id = uniqueId('clkill');
      const all = [...range(500, 'p'), ...range(500, 'r')];
      await publishAll(pub, ch(id), all.slice(0, 500));
      await waitQueued(id, 500);
      await c.rpush(q(id), ...all.slice(500));
      const slow = await connect();
      expect((await slow.identify(id)).data.queued).toBe(1000);
      const first = await slow.messages(100, 10_000); // MAX_INFLIGHT
      slow.ack(first.slice(0, 50).map((f) => f.data.id));
      const got1 = await slow.messages(150, 10_000);
      expectSequence(payloadsOf(got1), all.slice(0, 150), 'before the kill');
      await waitFor(async () => (await owedCount(c, id, true)) === 100, 5000, 'the 50 acks stored');
      const idOf = new Map(got1.map((f) => [f.data.payload, f.data.id]));

      server.kill('SIGKILL');
      expect(await within(server.exited(), 10_000, 'the killed server to exit')).toEqual({ code: null, signal: 'SIGKILL' });
      await slow.closed(10_000).catch(() => slow.terminate());
      await c.rpush(q(id), 'late-raw');
      await server.restart();

      const expected = [...all.slice(50), 'late-raw'];
      await waitQueued(id, expected.length, 20_000);
      const entries = await c.lrange(q(id), 0, -1);
      expectSequence(entries.map(entryPayload), expected, 'queue after the restart');
      for (const e of entries) if (idOf.has(entryPayload(e))) expect(entryId(e)).toBe(idOf.get(entryPayload(e)));

      const fast = await connect(server, true);
      expect((await fast.identify(id)).data.queued).toBe(expected.length);
      const got2 = await fast.messages(expected.length, 30_000);
      expectSequence(payloadsOf(got2), expected, 'after the restart');
      for (const f of got2) if (idOf.has(f.data.payload)) expect(f.data.id).toBe(idOf.get(f.data.payload));
      await waitFor(async () => (await owedCount(c, id, true)) === 0 && (await c.exists(q(id))) === 0, 10_000, 'all acked');
    });
  });

  describe('two instances on the Cluster', () => {
    let second: TestServer;
    const shardsOf = (s: TestServer) => metric(s, 'redmessenger_route_shards');

    it('a second instance joins while messages are published: shards move by hand-over, nothing is lost or duplicated, order holds', async () => {
      // Published as fast as one client can, on a node other than the one where the hand-overs are
      // announced (the master of rm:shards): the two reach other nodes over different bus links.
      const home = slotOwner('rm:shards');
      const away = cluster.nodes.find((n) => n.port !== home)!;
      const fast = new Redis({ host: away.host, port: away.port });
      const users = Array.from({ length: 200 }, () => uniqueId('join'));
      const publisher = new Publisher(fast, users, 0);
      await sleep(500);
      second = await startServer({ REDIS_CLUSTER_NODES: cluster.seeds, MAX_INFLIGHT: '100', LOG_LEVEL: 'log', INSTANCE_ID: 'cluster-b' });
      servers.push(second);
      await withLogs(servers, async () => {
        await waitFor(async () => (await shardsOf(second)) > 0 && (await shardsOf(server)) + (await shardsOf(second)) === 64, 10_000, 'the shards to be split between the two');
        await sleep(1000);
        await publisher.stop();
        fast.disconnect();
        expect(publisher.failed).toEqual([]);
        // Every instance hears the Cluster's messages in one order: all subscribe on the same node, the home one.
        const subscribers = await Promise.all(cluster.nodes.map(async (n) => [n.port, (String(await ask(n.port, 'CLIENT', 'LIST')).match(/name=redmessenger-subscriber/g) ?? []).length]));
        expect(subscribers.filter(([, k]) => k > 0)).toEqual([[home, 2]]);
        const sentBy = new Map<string, typeof publisher.sent>();
        for (const s of publisher.sent) sentBy.set(s.user, [...(sentBy.get(s.user) ?? []), s]);
        await waitFor(
          async () => {
            for (const u of users) if ((await c.llen(q(u))) < (sentBy.get(u)?.length ?? 0)) return false;
            return true;
          },
          15_000,
          'every message queued',
        );
        let lost = 0;
        for (const u of users) {
          const res = checkUser(sentBy.get(u) ?? [], await queuedPayloads(u));
          lost += res.lost.length;
          expect(res.duplicates).toBe(0);
          expect(res.outOfOrder).toBeUndefined();
        }
        expect({ lost, of: publisher.sent.length }).toEqual({ lost: 0, of: publisher.sent.length });
        console.log(`cluster join: ${publisher.sent.length} published during the join, second instance holds ${await shardsOf(second)} of 64 shards`);
      });
    });

    it('both instances route (offline users), and a user with a socket on each gets every message on both; one ack frees it for both', async () => {
      await withLogs(servers, async () => {
        const before = [await metric(server, 'redmessenger_messages_routed_total'), await metric(second, 'redmessenger_messages_routed_total')];
        const ids = Array.from({ length: 600 }, () => uniqueId('share'));
        const p = pub.pipeline();
        for (const id of ids) p.publish(ch(id), 'one');
        await p.exec();
        for (const id of ids) await waitQueued(id, 1);
        const after = [await metric(server, 'redmessenger_messages_routed_total'), await metric(second, 'redmessenger_messages_routed_total')];
        const share = after.map((v, i) => v - before[i]);
        expect(share[0] + share[1]).toBe(600);
        expect(share[0]).toBeGreaterThan(0);
        expect(share[1]).toBeGreaterThan(0);

        const id = uniqueId('both');
        const a = await online(id, server);
        const b = await online(id, second);
        await publishAll(pub, ch(id), range(20));
        const ga = await a.messages(20);
        const gb = await b.messages(20);
        expectSequence(payloadsOf(ga), range(20), 'socket on the first instance');
        expectSequence(payloadsOf(gb), range(20), 'socket on the second instance');
        expect(gb.map((f) => f.data.id)).toEqual(ga.map((f) => f.data.id));
        b.ack(gb.map((f) => f.data.id));
        await waitFor(async () => (await owedCount(c, id, true)) === 0, 5000, 'owed 0 after acks on the second instance');
        await a.close();
        await b.close();
        await waitFor(async () => (await connectionCount(c, id, true)) === 0, 5000, 'both unregistered');
        expect(await c.exists(q(id))).toBe(0); // acked on one: nothing goes back to the queue
      });
    });
  });
});

describe('Redis topology settings at start', () => {
  it.each([
    ['REDIS_CLUSTER_NODES', 'nonsense'],
    ['REDIS_CLUSTER_NODES', 'host:99999x'],
    ['REDIS_CLUSTER_NODES', '127.0.0.1:99999'],
    ['REDIS_CLUSTER_NODES', '127.0.0.1:7000,'],
    ['REDIS_SENTINELS', 'sentinel'],
  ])('refuses %s=%s, naming the variable, and exits non-zero', async (name, value) => {
    const s = await startServer({ [name]: value, REDIS_SENTINEL_MASTER: name === 'REDIS_SENTINELS' ? 'mymaster' : '', REDIS_URL: 'redis://127.0.0.1:1' }, { waitReady: false });
    const exit = await within(s.exited(), 15_000, 'the server to exit');
    expect(exit.code).not.toBe(0);
    expect(s.logs()).toMatch(new RegExp(`${name}.*must|must.*${name}`));
  });

  it('refuses REDIS_SENTINELS without REDIS_SENTINEL_MASTER, naming it', async () => {
    const s = await startServer({ REDIS_SENTINELS: '127.0.0.1:26379', REDIS_URL: 'redis://127.0.0.1:1' }, { waitReady: false });
    const exit = await within(s.exited(), 15_000, 'the server to exit');
    expect(exit.code).not.toBe(0);
    expect(s.logs()).toMatch(/REDIS_SENTINEL_MASTER must be set with REDIS_SENTINELS/);
  });
});
