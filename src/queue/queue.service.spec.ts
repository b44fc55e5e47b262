import type { Redis } from 'ioredis';
import { startRedis, type TestRedis } from '../../test/support/redis';
import { uniqueId } from '../../test/support/ids';
import { entryPayload } from '../../test/support/queue-entries';
import { withDefaults } from '../config/messenger-options';
import { queueKeys as keys } from './queue-keys';
import { QueueService, messageFrame } from './queue.service';

/** Each script against a real Redis: the atomic steps that delivery is built of. */
describe('QueueService scripts', () => {
  let redis: TestRedis;
  let client: Redis;
  let listener: Redis;
  let queue: QueueService;
  const notices: Array<[string, string]> = [];
  const instance = uniqueId('node');
  const other = uniqueId('node');

  beforeAll(async () => {
    redis = await startRedis();
    client = redis.client();
    listener = redis.client();
    queue = new QueueService(client, withDefaults({ maxSocketsPerUser: 0 }));
    listener.on('message', (channel: string, text: string) => notices.push([channel, text]));
    await listener.subscribe(keys.instanceChannel(instance), keys.instanceChannel(other));
  });

  afterAll(async () => {
    await redis?.close();
  });

  beforeEach(() => {
    notices.length = 0;
  });

  const payloads = async (user: string) =>
    (await client.lrange(keys.queue(user), 0, -1)).map(entryPayload);
  const routeWith = (service: QueueService, user: string, ...messages: string[]) =>
    service.route(messages.map((payload) => ({ user, channel: keys.userChannel(user), payload })), NOW, ROUTER);
  const route = (user: string, ...messages: string[]) => routeWith(queue, user, ...messages);
  // Messages must be fresh: older than QUEUE_TTL_SECONDS (7 days by default) they would expire at attach.
  const NOW = Date.now();
  /** The instance that routes in these tests holds no socket, unless a test says otherwise. */
  const ROUTER = uniqueId('router');
  const waitNotices = async (n: number) => {
    for (let i = 0; i < 100 && notices.length < n; i++) await new Promise((r) => setTimeout(r, 10));
    return notices;
  };

  describe('route', () => {
    it('queues messages in publish order for a user with no connection', async () => {
      const user = uniqueId();

      const result = await route(user, 'one', 'two', 'three');

      expect(result).toMatchObject({ delivered: 0, queued: 3, dropped: 0, outcome: '000', local: [] });
      expect(await payloads(user)).toEqual(['one', 'two', 'three']);
      expect(JSON.parse((await client.lindex(keys.queue(user), 0))!)).toEqual({
        rm: { id: expect.any(String), channel: keys.userChannel(user), payload: 'one', ts: NOW },
      });
    });

    it('makes a message owed and notifies the instances holding a connection of the user', async () => {
      const user = uniqueId();
      await queue.attach(user, 'c1', instance);
      await queue.attach(user, 'c2', other);
      notices.length = 0;

      const result = await route(user, 'hello "quoted"\n');

      expect(result.outcome).toBe('1');
      expect(await client.llen(keys.queue(user))).toBe(0);
      const [owed] = await queue.read(user, 0, 10);
      expect(JSON.parse(messageFrame(owed.envelope))).toEqual({
        event: 'message',
        data: { id: owed.id, channel: keys.userChannel(user), payload: 'hello "quoted"\n', ts: NOW },
      });
      const heard = await waitNotices(2);
      expect(heard.map(([channel]) => channel).sort()).toEqual([keys.instanceChannel(instance), keys.instanceChannel(other)].sort());
      expect(heard[0][1]).toBe(`m|${user}|${owed.id}|${owed.envelope}`);
    });

    it("hands the routing instance its own sockets' messages in the answer instead of a notice", async () => {
      const user = uniqueId();
      await queue.attach(user, 'c1', instance);
      await queue.attach(user, 'c2', other);
      notices.length = 0;

      const result = await queue.route([{ user, channel: keys.userChannel(user), payload: 'mine' }], NOW, instance);

      expect(result.outcome).toBe('l');
      const [owed] = await queue.read(user, 0, 10);
      expect(result.local).toEqual([{ user, id: owed.id, envelope: owed.envelope }]);
      expect(await waitNotices(1)).toEqual([[keys.instanceChannel(other), `m|${user}|${owed.id}|${owed.envelope}`]]);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(notices.map(([channel]) => channel)).not.toContain(keys.instanceChannel(instance));
    });

    it('routes a mixed batch, each user on its own', async () => {
      const online = uniqueId();
      const offline = uniqueId();
      await queue.attach(online, 'c1', instance);

      const result = await queue.route(
        [
          { user: offline, channel: 'rm.channels.g', payload: 'a' },
          { user: online, channel: 'rm.channels.g', payload: 'b' },
          { user: offline, channel: keys.userChannel(offline), payload: 'c' },
        ],
        5,
        ROUTER,
      );

      expect(result).toMatchObject({ delivered: 1, queued: 2, dropped: 0, outcome: '010' });
      expect(await payloads(offline)).toEqual(['a', 'c']);
      expect((await queue.read(online, 0, 10)).map((m) => JSON.parse(messageFrame(m.envelope)).data.channel)).toEqual(['rm.channels.g']);
    });
  });

  describe('attach', () => {
    it('counts the queue in what is owed; reading takes it over in order, raw entries wrapped once', async () => {
      const user = uniqueId();
      await route(user, 'first');
      await client.rpush(keys.queue(user), 'raw second');
      await route(user, 'third');

      const result = await queue.attach(user, 'c1', instance);
      const owed = await queue.read(user, 0, 10, 42);

      expect(result).toEqual({ owed: 3, dropped: 0, replaced: [] });
      expect(owed.map((m) => JSON.parse(messageFrame(m.envelope)).data.payload)).toEqual(['first', 'raw second', 'third']);
      expect(JSON.parse(messageFrame(owed[1].envelope)).data).toEqual({ id: owed[1].id, channel: keys.userChannel(user), payload: 'raw second', ts: 42 });
      expect(new Set(owed.map((m) => m.id)).size).toBe(3);
      expect(await client.exists(keys.queue(user))).toBe(0);
      expect(await client.zscore(keys.queueIndex, user)).toBeNull();
      expect((await queue.read(user, 0, 10)).map((m) => m.id)).toEqual(owed.map((m) => m.id));
    });

    it('takes the queue over a chunk at a time; messages routed meanwhile wait behind it', async () => {
      const user = uniqueId();
      await route(user, 'q1', 'q2', 'q3');
      await queue.attach(user, 'c1', instance);

      const [q1] = await queue.read(user, 0, 1);
      const live = await route(user, 'live');
      const rest = await queue.read(user, q1.position, 10);
      const after = await route(user, 'after');

      expect(live.outcome).toBe('w');
      expect(rest.map((m) => JSON.parse(messageFrame(m.envelope)).data.payload)).toEqual(['q2', 'q3', 'live']);
      expect(after.outcome).toBe('1');
      expect((await queue.read(user, rest[2].position, 10)).map((m) => JSON.parse(messageFrame(m.envelope)).data.payload)).toEqual(['after']);
    });

    it('keeps envelope ids when messages move again, so clients can deduplicate', async () => {
      const user = uniqueId();
      await route(user, 'm');
      const before = JSON.parse((await client.lindex(keys.queue(user), 0))!).rm.id;

      await queue.attach(user, 'c1', instance);
      await queue.detach(user, 'c1', instance);
      await queue.attach(user, 'c2', instance);

      expect((await queue.read(user, 0, 10)).map((m) => m.id)).toEqual([before]);
    });

    it('tells instances holding a socket to read again when a message waits behind the queue', async () => {
      const user = uniqueId();
      await queue.attach(user, 'c1', other);
      await client.rpush(keys.queue(user), 'raw while online');
      notices.length = 0;

      const result = await route(user, 'behind it');

      expect(result.outcome).toBe('w');
      expect(await waitNotices(1)).toEqual([[keys.instanceChannel(other), `s|${user}`]]);
      expect(await payloads(user)).toEqual(['raw while online', 'behind it']);
    });
  });

  describe('read', () => {
    it('returns owed messages after a position, oldest first, at most the limit', async () => {
      const user = uniqueId();
      await route(user, '1', '2', '3', '4', '5');
      await queue.attach(user, 'c1', instance);

      const firstTwo = await queue.read(user, 0, 2);
      const rest = await queue.read(user, firstTwo[1].position, 10);

      expect(firstTwo.map((m) => JSON.parse(messageFrame(m.envelope)).data.payload)).toEqual(['1', '2']);
      expect(rest.map((m) => JSON.parse(messageFrame(m.envelope)).data.payload)).toEqual(['3', '4', '5']);
      expect(await queue.read(user, rest[2].position, 10)).toEqual([]);
    });
  });

  describe('ack', () => {
    it('removes the named owed ids, ignores the rest and tells the other instances', async () => {
      const user = uniqueId();
      await route(user, 'a', 'b', 'c');
      await queue.attach(user, 'c1', instance);
      await queue.attach(user, 'c2', other);
      const [a, b, c] = await queue.read(user, 0, 10);
      notices.length = 0;

      const removed = await queue.ack(user, [a.id, c.id, 'not-owed', a.id], instance);

      expect(removed).toBe(2);
      expect((await queue.read(user, 0, 10)).map((m) => m.id)).toEqual([b.id]);
      expect(await waitNotices(1)).toEqual([[keys.instanceChannel(other), `a|${user}|${a.id},${c.id}`]]);
    });
  });

  it('acks ten thousand ids in one call', async () => {
    const user = uniqueId();
    const many = Array.from({ length: 10000 }, (_, i) => `m${i}`);
    for (let i = 0; i < many.length; i += 500) await route(user, ...many.slice(i, i + 500));
    await queue.attach(user, 'c1', instance);
    const ids = [];
    for (let position = 0; ; ) {
      const chunk = await queue.read(user, position, 1000);
      if (chunk.length === 0) break;
      ids.push(...chunk.map((m) => m.id));
      position = chunk[chunk.length - 1].position;
    }

    expect(await queue.ack(user, ids, instance)).toBe(10000);
    expect(await client.exists(keys.owed(user), keys.owedData(user))).toBe(0);
  });

  describe('detach', () => {
    it('gives owed messages back to the head of the queue, in order, ahead of those queued since', async () => {
      const user = uniqueId();
      await route(user, 'old1', 'old2', 'old3');
      await queue.attach(user, 'c1', instance);
      const [old1] = await queue.read(user, 0, 1);
      await queue.ack(user, [old1.id], instance);
      await queue.detach(user, 'c1', instance);
      await route(user, 'new1');
      await queue.attach(user, 'c2', instance);
      await queue.read(user, 0, 2);
      await route(user, 'live');

      const result = await queue.detach(user, 'c2', instance);

      expect(result).toEqual({ requeued: 2, left: 0 });
      expect(await payloads(user)).toEqual(['old2', 'old3', 'new1', 'live']);
      expect(await client.exists(keys.owed(user), keys.owedData(user), keys.conns(user))).toBe(0);
    });

    it('keeps messages owed while another connection of the user remains', async () => {
      const user = uniqueId();
      await queue.attach(user, 'c1', instance);
      await queue.attach(user, 'c2', instance);
      await route(user, 'm');

      expect(await queue.detach(user, 'c1', instance)).toEqual({ requeued: 0, left: 1 });
      expect(await client.llen(keys.queue(user))).toBe(0);
      expect(await queue.read(user, 0, 10)).toHaveLength(1);
    });

    it("with '*' unregisters every connection of a dead instance and only those", async () => {
      const dead = uniqueId('node');
      const user = uniqueId();
      const lonely = uniqueId();
      await queue.attach(user, 'c1', dead);
      await queue.attach(user, 'c2', dead);
      await queue.attach(user, 'c3', instance);
      await queue.attach(lonely, 'c4', dead);
      await route(lonely, 'kept');
      expect((await queue.usersOf(dead)).sort()).toEqual([user, lonely].sort());

      for (const u of await queue.usersOf(dead)) await queue.detach(u, '*', dead);

      expect(await client.hgetall(keys.conns(user))).toEqual({ c3: instance });
      expect(await payloads(lonely)).toEqual(['kept']);
      expect(await queue.usersOf(dead)).toEqual([]);
    });

    it('moves a large owed set back intact (chunked LPUSH)', async () => {
      const user = uniqueId();
      const many = Array.from({ length: 2500 }, (_, i) => `m${i}`);
      for (let i = 0; i < many.length; i += 500) await route(user, ...many.slice(i, i + 500));
      await queue.attach(user, 'c1', instance);

      await queue.detach(user, 'c1', instance);

      expect(await payloads(user)).toEqual(many);
    });
  });

  it('leaves no key of a user behind once everything is acked and the user left', async () => {
    const user = uniqueId();
    await route(user, 'x', 'y');
    await queue.attach(user, 'c1', instance);
    await queue.ack(user, (await queue.read(user, 0, 10)).map((m) => m.id), instance);

    await queue.detach(user, 'c1', instance);

    expect(await client.keys(`rm:users:${user}:*`)).toEqual([]);
  });

  describe('limits', () => {
    const limited = (options: Parameters<typeof withDefaults>[0]) => new QueueService(client, withDefaults(options));

    it('MAX_QUEUE_LENGTH with drop-oldest keeps the newest and counts the dropped for the next ready', async () => {
      const capped = limited({ maxQueueLength: 3, queueOverflow: 'drop-oldest' });
      const user = uniqueId();

      const result = await routeWith(capped, user, '1', '2', '3', '4', '5');

      expect(result).toMatchObject({ queued: 5, dropped: 2, outcome: '000QQ' });
      expect(await payloads(user)).toEqual(['3', '4', '5']);
      expect(await capped.attach(user, 'c1', instance)).toMatchObject({ owed: 3, dropped: 2 });
      expect(await client.exists(keys.dropped(user))).toBe(0);
    });

    it('MAX_QUEUE_LENGTH with reject refuses new messages and counts them', async () => {
      const capped = limited({ maxQueueLength: 2, queueOverflow: 'reject' });
      const user = uniqueId();

      const result = await routeWith(capped, user, '1', '2', '3');

      expect(result).toMatchObject({ queued: 2, dropped: 1, outcome: '00x' });
      expect(await payloads(user)).toEqual(['1', '2']);
      expect((await capped.attach(user, 'c1', instance)).dropped).toBe(1);
    });

    it('caps what a connected user is owed too, dropping the oldest owed', async () => {
      const capped = limited({ maxQueueLength: 2, queueOverflow: 'drop-oldest' });
      const user = uniqueId();
      await capped.attach(user, 'c1', instance);

      expect((await routeWith(capped, user, 'a', 'b', 'c')).outcome).toBe('11D');

      expect((await capped.read(user, 0, 10)).map((m) => JSON.parse(messageFrame(m.envelope)).data.payload)).toEqual(['b', 'c']);
    });

    it('QUEUE_TTL_SECONDS expires each message on its own age: the stale go, the fresh stay', async () => {
      const expiring = limited({ queueTtlSeconds: 60 });
      const user = uniqueId();
      await expiring.route([{ user, channel: keys.userChannel(user), payload: 'stale' }], 1_000_000, ROUTER);
      await expiring.route([{ user, channel: keys.userChannel(user), payload: 'fresh' }], 1_000_000 + 90_000, ROUTER);
      const now = 1_000_000 + 100_000;

      expect(await expiring.queuedBefore(now - 60_000, 100)).toContain(user);
      expect(await expiring.expire(user, now)).toEqual({ expired: 1, left: 1 });

      expect(await payloads(user)).toEqual(['fresh']);
      expect(await expiring.queuedBefore(now - 60_000, 100)).not.toContain(user);
      expect(await expiring.attach(user, 'c1', instance, now)).toMatchObject({ owed: 1, dropped: 1 });
      expect((await expiring.read(user, 0, 10, now)).map((m) => JSON.parse(messageFrame(m.envelope)).data.payload)).toEqual(['fresh']);
      expect(await client.zscore(keys.queueIndex, user)).toBeNull();
    });

    it('drops expired entries at identify as well, and counts them', async () => {
      const expiring = limited({ queueTtlSeconds: 60 });
      const user = uniqueId();
      await expiring.route([{ user, channel: keys.userChannel(user), payload: 'old' }], 1_000, ROUTER);
      await client.rpush(keys.queue(user), 'raw entries count as fresh');

      expect(await expiring.attach(user, 'c1', instance, 500_000)).toMatchObject({ owed: 1, dropped: 1 });
    });

    it('MAX_SOCKETS_PER_USER unregisters the oldest connections and names them', async () => {
      const few = limited({ maxSocketsPerUser: 2 });
      const user = uniqueId();
      await few.attach(user, '0001', instance);
      await few.attach(user, '0002', other);
      notices.length = 0;

      const { replaced } = await few.attach(user, '0003', instance);

      expect(replaced).toEqual([{ conn: '0001', instance }]);
      expect(Object.keys(await client.hgetall(keys.conns(user))).sort()).toEqual(['0002', '0003']);
      expect(await waitNotices(1)).toContainEqual([keys.instanceChannel(instance), `k|${user}|0001`]);
    });
  });
});
