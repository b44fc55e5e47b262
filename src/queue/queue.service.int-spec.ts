import type { Redis } from 'ioredis';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRedis, type TestRedis } from '../../test/support/redis';
import { uniqueId } from '../../test/support/ids';
import { within } from '../../test/support/wait';
import { connectionCount, entryPayload, owedCount, owedIds } from '../../test/support/queue-entries';
import { withDefaults, type MessengerOptions } from '../config/messenger-options';
import { MetricsService } from '../metrics/metrics.service';
import { buildEnvelope, envelopeId, envelopeTs, markSent, messageFrame } from '../protocol/envelope';
import { formatNotice, formatNotices, parseNotices, type MessageNotice } from '../protocol/notices';
import { QueueKeys } from '../redis/keys';
import { QueueService, RouteOutcome, UnusableKeys, type RouteGroup, type StoredMessage } from './queue.service';

/**
 * Each Lua script of the data path against a real Redis (src/queue/lua): one describe
 * per script, through the QueueService methods that run them. Every user is a new id,
 * so the tests share one Redis.
 */
/** The state's 'L' (includes/state.lua): looking, or not, since a time of Redis's clock. */
const LOOKING = expect.stringMatching(/^1\|\d+$/);
const AWAY = expect.stringMatching(/^0\|\d+$/);

describe('queue scripts', () => {
  let redis: TestRedis;
  let client: Redis;
  let listener: Redis;
  const metrics = new MetricsService();
  const keys = new QueueKeys(false);
  /** The instance that calls in these tests; OTHER and THIRD hold sockets elsewhere. */
  const ME = uniqueId('me');
  const OTHER = uniqueId('other');
  const THIRD = uniqueId('third');
  const NOW = Date.now();
  /** Notices heard on the three instance channels, as [instance, message]. */
  const heard: Array<[string, string]> = [];
  let syncs = 0;

  const service = (options: Partial<MessengerOptions> = {}, tagged = false) => new QueueService(client, withDefaults({ maxSocketsPerUser: 0, ...options }), new QueueKeys(tagged), metrics);
  let queue: QueueService;

  beforeAll(async () => {
    redis = await startRedis();
    client = redis.client();
    listener = redis.client();
    queue = service();
    listener.on('message', (channel: string, text: string) => heard.push([channel.slice(keys.instanceChannelPrefix.length), text]));
    await listener.subscribe(keys.instanceChannel(ME), keys.instanceChannel(OTHER), keys.instanceChannel(THIRD));
  });

  afterAll(async () => {
    await redis?.close();
  });

  beforeEach(async () => {
    await drain();
  });

  /**
   * The notices published so far, each instance's in order: a marker published on every
   * channel after them comes after them on the subscriber's connection too.
   */
  async function notices(): Promise<Array<[string, string]>> {
    const marker = `sync|${++syncs}`;
    for (const instance of [ME, OTHER, THIRD]) await client.publish(keys.instanceChannel(instance), marker);
    await within(
      (async () => {
        while (heard.filter(([, text]) => text === marker).length < 3) await new Promise((r) => setTimeout(r, 5));
      })(),
      5000,
      'the notice markers',
    );
    return heard.filter(([, text]) => !text.startsWith('sync|'));
  }
  /** Forgets the notices published so far. */
  const drain = async () => {
    await notices();
    heard.length = 0;
  };

  /** A message as the router stores it: an envelope built by buildEnvelope, with its collapse key and expiry. */
  function message(user: string, payload: string, extra: { ts?: number; ttl?: number; collapseKey?: string } = {}): StoredMessage {
    const ts = extra.ts ?? NOW;
    return {
      envelope: buildEnvelope({ id: queue.ids.next(), channel: keys.userChannel(user), payload, ts, ttl: extra.ttl, collapseKey: extra.collapseKey }),
      collapseKey: extra.collapseKey === undefined ? undefined : JSON.stringify(extra.collapseKey),
      expiresAt: extra.ttl === undefined ? undefined : ts + extra.ttl * 1000,
    };
  }
  const messages = (user: string, ...payloads: string[]) => payloads.map((p) => message(user, p));

  async function routeOne(user: string, stored: StoredMessage[], opts: { via?: QueueService; epoch?: number; inboxEntry?: string; instance?: string } = {}) {
    const [result] = await (opts.via ?? queue).route([{ user, messages: stored, epoch: opts.epoch ?? 0, inboxEntry: opts.inboxEntry }], opts.instance ?? ME);
    if (result instanceof Error) throw result;
    return result;
  }

  const queued = (user: string, k = keys) => client.lrange(k.queue(user), 0, -1);
  const owed = (user: string, k = keys) => client.lrange(k.owed(user), 0, -1);
  const state = (user: string, k = keys) => client.hgetall(k.state(user));
  const droppedCounter = async (user: string) => Number((await client.get(keys.dropped(user))) ?? '0');
  const envelopes = (stored: StoredMessage[]) => stored.map((m) => m.envelope);
  /** Everything stored for a user, to show that a refused call wrote nothing. */
  const snapshot = async (user: string) => ({
    queue: await queued(user),
    owed: await owed(user),
    state: await state(user),
    dropped: await client.get(keys.dropped(user)),
    mark: await client.get(keys.inboxMark(user)),
  });
  const channelOf = (user: string) => JSON.stringify(keys.userChannel(user));
  const ids = (entries: string[]) => entries.map((e) => envelopeId(e));
  /** The `m` notice of a message newly owed at a position (protocol/notices.ts). */
  const messageNotice = (user: string, position: number, envelope: string): MessageNotice => ({ kind: 'message', user, position, envelope });

  /** A user with `n` owed messages (an online user's routes), read back with their positions. */
  async function owedUser(n: number, conn = 'c1', instance = OTHER) {
    const user = uniqueId();
    await queue.attach(user, conn, instance);
    const stored = messages(user, ...Array.from({ length: n }, (_, i) => `m${i}`));
    await routeOne(user, stored);
    return { user, stored, ids: ids(envelopes(stored)) as string[] };
  }

  describe('route.lua', () => {
    it('queues the messages of a user with no connection in order, as built: n on an empty queue, then q', async () => {
      const user = uniqueId();
      const first = messages(user, 'one', 'two');
      const second = messages(user, 'three');

      const a = await routeOne(user, first);
      const b = await routeOne(user, second);

      expect(a).toEqual({ outcome: RouteOutcome.QueuedNew, position: 0, dropped: 0, refused: 0, replaced: 0, mine: false });
      expect(b).toEqual({ outcome: RouteOutcome.Queued, position: 0, dropped: 0, refused: 0, replaced: 0, mine: false });
      expect(await queued(user)).toEqual(envelopes([...first, ...second]));
      expect(await owed(user)).toEqual([]);
      expect(await client.exists(keys.state(user))).toBe(0);
    });

    it('makes the messages of an online user with an empty queue owed at consecutive positions, and tells the other instance', async () => {
      const user = uniqueId();
      await queue.attach(user, 'c1', OTHER);
      const first = messages(user, 'a', 'b');
      const second = messages(user, 'c');

      const a = await routeOne(user, first);
      const b = await routeOne(user, second);

      expect(a).toMatchObject({ outcome: RouteOutcome.Owed, position: 0, mine: false });
      expect(b).toMatchObject({ outcome: RouteOutcome.Owed, position: 2, mine: false });
      expect(await owed(user)).toEqual(envelopes([...first, ...second]));
      expect(await queued(user)).toEqual([]);
      const all = envelopes([...first, ...second]);
      expect(await notices()).toEqual([
        [OTHER, formatNotices([messageNotice(user, 0, all[0]), messageNotice(user, 1, all[1])])],
        [OTHER, formatNotice(messageNotice(user, 2, all[2]))],
      ]);
    });

    it('answers mine to the calling instance when it holds a socket, and tells only the others', async () => {
      const user = uniqueId();
      await queue.attach(user, 'c1', OTHER);
      await queue.attach(user, 'c2', ME);
      await queue.attach(user, 'c3', THIRD);
      const stored = messages(user, 'hello');

      const result = await routeOne(user, stored);

      expect(result).toMatchObject({ outcome: RouteOutcome.Owed, position: 0, mine: true });
      const heardNow = await notices();
      expect(heardNow.map(([instance]) => instance).sort()).toEqual([OTHER, THIRD].sort());
      for (const [, text] of heardNow) expect(text).toBe(formatNotice(messageNotice(user, 0, stored[0].envelope)));
    });

    it('queues behind a non-empty queue of an online user (w) and tells its instances to read (s|user)', async () => {
      const user = uniqueId();
      const early = messages(user, 'early');
      await routeOne(user, early);
      await queue.attach(user, 'c1', OTHER);
      await queue.attach(user, 'c2', ME);
      const late = messages(user, 'late');

      const result = await routeOne(user, late);

      expect(result).toMatchObject({ outcome: RouteOutcome.QueuedBehind, position: 0, mine: true });
      expect(await queued(user)).toEqual(envelopes([...early, ...late]));
      expect(await owed(user)).toEqual([]);
      expect(await notices()).toEqual([[OTHER, formatNotice({ kind: 'sync', user })]]);
    });

    it('routes several users in one call, each on its own', async () => {
      const offline = uniqueId();
      const online = uniqueId();
      const waiting = uniqueId();
      await queue.attach(online, 'c1', OTHER);
      await routeOne(waiting, messages(waiting, 'old'));
      const groups: RouteGroup[] = [
        { user: offline, messages: messages(offline, 'x1', 'x2'), epoch: 0 },
        { user: online, messages: messages(online, 'y1'), epoch: 0 },
        { user: waiting, messages: messages(waiting, 'z1'), epoch: 0 },
      ];

      const results = await queue.route(groups, ME);

      expect(results.map((r) => (r as { outcome: string }).outcome)).toEqual([RouteOutcome.QueuedNew, RouteOutcome.Owed, RouteOutcome.Queued]);
      expect((await queued(offline)).map(entryPayload)).toEqual(['x1', 'x2']);
      expect((await owed(online)).map(entryPayload)).toEqual(['y1']);
      expect((await queued(waiting)).map(entryPayload)).toEqual(['old', 'z1']);
      expect(await notices()).toEqual([[OTHER, formatNotice(messageNotice(online, 0, groups[1].messages[0].envelope))]]);
    });

    it('checks every group before its first write: a malformed later group fails the call and nothing is stored', async () => {
      const a = uniqueId();
      const b = uniqueId();
      const m = message(a, 'a');
      const route = (...groupArgs: Array<string | number>) =>
        client.rmRoute(
          12,
          ...keys.userKeys(a),
          keys.collapseIndex(a),
          ...keys.userKeys(b),
          keys.collapseIndex(b),
          keys.instanceChannelPrefix,
          ME,
          0,
          '0',
          0,
          a,
          1,
          3,
          '',
          0,
          '',
          '',
          '',
          m.envelope,
          ...groupArgs,
        );

      const badCount = route(b, 'one', 0, '', 0, '', '', '', m.envelope);
      const badEpoch = route(b, 1, 'new', '', 0, '', '', '', m.envelope);
      const missingMessage = route(b, 2, 0, '', 0, '', '', '', m.envelope);
      const extraArgs = route(b, 1, 0, '', 0, '', '', '', m.envelope, 'extra');
      const badRecord = route(b, 1, 0, '', 99, '', '', '', m.envelope);

      const settled = await Promise.allSettled([badCount, badEpoch, missingMessage, extraArgs, badRecord]);

      expect(settled.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected', 'rejected', 'rejected']);
      expect(String((settled[0] as PromiseRejectedResult).reason)).toMatch(/bad argument 16: a number expected/);
      expect(String((settled[4] as PromiseRejectedResult).reason)).toMatch(/bad argument 19: the KEYS index of an idempotency record expected/);
      expect(await snapshot(a)).toEqual({ queue: [], owed: [], state: {}, dropped: null, mark: null });
      expect(await snapshot(b)).toEqual({ queue: [], owed: [], state: {}, dropped: null, mark: null });
    });

    it('skips a user whose key has another type (before the first write) with an UnusableKeys error; the others store once', async () => {
      const users = [uniqueId(), uniqueId(), uniqueId(), uniqueId()];
      await client.set(keys.queue(users[1]), 'foo');
      await client.set(keys.dropped(users[2]), 'not a number');
      await queue.attach(users[3], 'c1', OTHER);
      await client.hset(keys.state(users[0]), 'e', 1);

      const results = await queue.route(
        users.map((user) => ({ user, messages: messages(user, 'a', 'b'), epoch: 0 })),
        ME,
      );

      expect(results[1]).toBeInstanceOf(UnusableKeys);
      expect(String(results[1])).toMatch(new RegExp(`${keys.queue(users[1])} is a string, not a list`));
      expect(results[2]).toBeInstanceOf(UnusableKeys);
      expect(String(results[2])).toMatch(/is not an integer/);
      expect(results.filter((r) => r instanceof Error)).toHaveLength(2);
      expect((await queued(users[0])).map(entryPayload)).toEqual(['a', 'b']);
      expect((await owed(users[3])).map(entryPayload)).toEqual(['a', 'b']);
      expect(await client.get(keys.queue(users[1]))).toBe('foo');
      expect(await client.llen(keys.queue(users[2]))).toBe(0);
    });

    it('retries a call that Redis refused one user at a time', async () => {
      const users = [uniqueId(), uniqueId()];
      // An epoch that is not a number (never the router's) makes Redis refuse the whole call.
      const groups: RouteGroup[] = users.map((user) => ({ user, messages: messages(user, 'a'), epoch: 0 }));
      groups[1].epoch = Number.NaN;

      const results = await queue.route(groups, ME);

      expect(results[0]).not.toBeInstanceOf(Error);
      expect(String(results[1])).toMatch(/bad argument/);
      expect((await queued(users[0])).map(entryPayload)).toEqual(['a']);
    });

    describe('the cap', () => {
      it('drops the oldest queued messages past it and counts them', async () => {
        const capped = service({ maxQueueLength: 3, queueOverflow: 'drop-oldest' });
        const user = uniqueId();
        const stored = messages(user, '1', '2', '3', '4', '5');

        const a = await routeOne(user, stored.slice(0, 4), { via: capped });
        const b = await routeOne(user, stored.slice(4), { via: capped });

        expect(a).toMatchObject({ dropped: 1, refused: 0 });
        expect(b).toMatchObject({ dropped: 1, refused: 0 });
        expect(await queued(user)).toEqual(envelopes(stored.slice(2)));
        expect(await droppedCounter(user)).toBe(2);
        expect(await client.pttl(keys.dropped(user))).toBeGreaterThan(0);
      });

      it('drops the oldest owed messages past it: the head position moves on, positions stay absolute', async () => {
        const capped = service({ maxQueueLength: 3, queueOverflow: 'drop-oldest' });
        const user = uniqueId();
        await capped.attach(user, 'c1', OTHER);
        const stored = messages(user, '1', '2', '3', '4', '5');
        await routeOne(user, stored.slice(0, 2), { via: capped });

        const result = await routeOne(user, stored.slice(2), { via: capped });

        expect(result).toMatchObject({ outcome: RouteOutcome.Owed, position: 2, dropped: 2, refused: 0 });
        expect(await owed(user)).toEqual(envelopes(stored.slice(2)));
        expect((await state(user)).b).toBe('2');
        expect(await droppedCounter(user)).toBe(2);
        const read = await capped.read(user, 0, 10);
        expect(read.rows).toEqual(stored.slice(2).map((m, i) => ({ position: 2 + i, envelope: m.envelope })));
      });

      it('refuses the newest messages past it with reject, queued or owed, and counts them', async () => {
        const capped = service({ maxQueueLength: 3, queueOverflow: 'reject' });
        const offline = uniqueId();
        const online = uniqueId();
        await capped.attach(online, 'c1', OTHER);
        const a = messages(offline, '1', '2', '3', '4', '5');
        const b = messages(online, '1', '2', '3', '4', '5');

        const first = await routeOne(offline, a.slice(0, 2), { via: capped });
        const second = await routeOne(offline, a.slice(2), { via: capped });
        const owedResult = await routeOne(online, b, { via: capped });

        expect(first).toMatchObject({ dropped: 0, refused: 0 });
        expect(second).toMatchObject({ dropped: 0, refused: 2 });
        expect(await queued(offline)).toEqual(envelopes(a.slice(0, 3)));
        expect(await droppedCounter(offline)).toBe(2);
        expect(owedResult).toMatchObject({ outcome: RouteOutcome.Owed, position: 0, dropped: 0, refused: 2 });
        expect(await owed(online)).toEqual(envelopes(b.slice(0, 3)));
        expect(await droppedCounter(online)).toBe(2);
        expect(await notices()).toEqual([[OTHER, formatNotices(b.slice(0, 3).map((message, i) => messageNotice(online, i, message.envelope)))]]);
      });
    });

    describe('the epoch fence', () => {
      it('refuses a group routed with an older epoch than the user was routed with, and writes nothing', async () => {
        const user = uniqueId();
        await routeOne(user, messages(user, 'at 5'), { epoch: 5 });
        const before = { queue: await queued(user), state: await state(user) };

        const fenced = await routeOne(user, messages(user, 'at 4'), { epoch: 4, inboxEntry: '1-1' });

        expect(fenced).toEqual({ outcome: RouteOutcome.Fenced, position: 0, dropped: 0, refused: 0, replaced: 0, mine: false });
        expect(await queued(user)).toEqual(before.queue);
        expect(await state(user)).toEqual(before.state);
        expect(before.state.e).toBe('5');
        expect(await client.exists(keys.inboxMark(user), keys.dropped(user))).toBe(0);
      });

      it('takes the same or a newer epoch, and records the newer one', async () => {
        const user = uniqueId();
        await routeOne(user, messages(user, '1'), { epoch: 5 });

        const same = await routeOne(user, messages(user, '2'), { epoch: 5 });
        const newer = await routeOne(user, messages(user, '3'), { epoch: 6 });

        expect([same.outcome, newer.outcome]).toEqual([RouteOutcome.Queued, RouteOutcome.Queued]);
        expect((await queued(user)).map(entryPayload)).toEqual(['1', '2', '3']);
        expect((await state(user)).e).toBe('6');
      });

      it('never fences epoch 0 (the HTTP and inbox paths) and never writes it', async () => {
        const fresh = uniqueId();
        const routed = uniqueId();
        await routeOne(routed, messages(routed, 'at 6'), { epoch: 6 });

        const a = await routeOne(fresh, messages(fresh, 'http'), { epoch: 0 });
        const b = await routeOne(routed, messages(routed, 'http'), { epoch: 0 });

        expect(a.outcome).toBe(RouteOutcome.QueuedNew);
        expect(b.outcome).toBe(RouteOutcome.Queued);
        expect(await client.exists(keys.state(fresh))).toBe(0);
        expect(await state(routed)).toEqual({ e: '6' });
        expect((await queued(routed)).map(entryPayload)).toEqual(['at 6', 'http']);
      });
    });

    describe('inbox dedupe', () => {
      it('recognises the same or an older inbox entry and writes nothing; stores a newer one', async () => {
        const user = uniqueId();
        const first = await routeOne(user, messages(user, 'a'), { inboxEntry: '1700000000000-5' });
        const again = await routeOne(user, messages(user, 'a again'), { inboxEntry: '1700000000000-5' });
        const older = await routeOne(user, messages(user, 'older'), { inboxEntry: '1699999999999-9' });
        const olderSeq = await routeOne(user, messages(user, 'older seq'), { inboxEntry: '1700000000000-4' });
        const newer = await routeOne(user, messages(user, 'b'), { inboxEntry: '1700000000000-6' });

        expect(first.outcome).toBe(RouteOutcome.QueuedNew);
        expect([again.outcome, older.outcome, olderSeq.outcome]).toEqual([RouteOutcome.Duplicate, RouteOutcome.Duplicate, RouteOutcome.Duplicate]);
        expect(newer.outcome).toBe(RouteOutcome.Queued);
        expect((await queued(user)).map(entryPayload)).toEqual(['a', 'b']);
        expect(await client.get(keys.inboxMark(user))).toBe('1700000000000-6');
        expect(await client.pttl(keys.inboxMark(user))).toBeGreaterThan(0);
      });

      it('writes nothing for a duplicate of an online user either', async () => {
        const user = uniqueId();
        await queue.attach(user, 'c1', OTHER);
        await routeOne(user, messages(user, 'a'), { inboxEntry: '10-1' });
        await drain();

        const again = await routeOne(user, messages(user, 'a'), { inboxEntry: '10-1', epoch: 3 });

        expect(again.outcome).toBe(RouteOutcome.Duplicate);
        expect((await owed(user)).map(entryPayload)).toEqual(['a']);
        expect((await state(user)).e).toBeUndefined();
        expect(await notices()).toEqual([]);
      });
    });

    describe('collapse', () => {
      it('replaces a queued, never sent message with the same key: the newer goes to the tail', async () => {
        const user = uniqueId();
        const old = message(user, 'score 1-0', { collapseKey: 'score' });
        const other = message(user, 'chat');
        const otherKey = message(user, 'weather', { collapseKey: 'weather' });
        await routeOne(user, [old, other, otherKey]);
        const newer = message(user, 'score 2-0', { collapseKey: 'score' });

        const result = await routeOne(user, [newer]);

        expect(result).toMatchObject({ outcome: RouteOutcome.Queued, replaced: 1, dropped: 0, refused: 0 });
        expect(await queued(user)).toEqual(envelopes([other, otherKey, newer]));
        expect(await droppedCounter(user)).toBe(0);
      });

      it('keeps only the last of two messages with one key in the same call', async () => {
        const user = uniqueId();
        const a = message(user, 'v1', { collapseKey: 'k' });
        const plain = message(user, 'plain');
        const b = message(user, 'v2', { collapseKey: 'k' });

        const result = await routeOne(user, [a, plain, b]);

        expect(result).toMatchObject({ outcome: RouteOutcome.QueuedNew, replaced: 1, dropped: 0 });
        expect(await queued(user)).toEqual(envelopes([plain, b]));
      });

      it('does not replace a message that was sent once and requeued', async () => {
        const user = uniqueId();
        await queue.attach(user, 'c1', OTHER);
        const sent = message(user, 'v1', { collapseKey: 'k' });
        await routeOne(user, [sent]);
        await queue.detach(user, 'c1', OTHER);
        const newer = message(user, 'v2', { collapseKey: 'k' });

        const result = await routeOne(user, [newer]);

        expect(result).toMatchObject({ outcome: RouteOutcome.Queued, replaced: 0 });
        expect(await queued(user)).toEqual([markSent(sent.envelope), newer.envelope]);
      });

      it('finds the message to replace through the index, not by reading the queue', async () => {
        const user = uniqueId();
        await routeOne(user, [message(user, 'k1', { collapseKey: 'k' }), message(user, 'plain')]);
        expect(Object.keys(await client.hgetall(keys.collapseIndex(user)))).toEqual(['"k"']);
        await routeOne(user, [message(user, 'k2', { collapseKey: 'k' })]);
        expect((await queued(user)).map(entryPayload)).toEqual(['plain', 'k2']);
        expect(await client.hget(keys.collapseIndex(user), '"k"')).toBe((await queued(user))[1]);
        // Sent, then requeued: the index names bytes no longer queued (a sent entry is marked), so nothing is replaced.
        await queue.attach(user, 'c1', OTHER);
        await queue.read(user, 0, 10);
        await queue.detach(user, 'c1', OTHER);
        const k3 = message(user, 'k3', { collapseKey: 'k' });
        expect(await routeOne(user, [k3])).toMatchObject({ replaced: 0 });
        expect((await queued(user)).map(entryPayload)).toEqual(['plain', 'k2', 'k3']);
        expect(await client.hgetall(keys.collapseIndex(user))).toEqual({ '"k"': k3.envelope });
      });

      it('does not take a key that only looks alike (a prefix, or another key with the same tail)', async () => {
        const user = uniqueId();
        const a = message(user, 'a', { collapseKey: 'key' });
        const b = message(user, 'b', { collapseKey: 'key2' });
        const c = message(user, 'c', { collapseKey: 'the key', ttl: 60 });
        await routeOne(user, [a, b, c]);

        const result = await routeOne(user, [message(user, 'd', { collapseKey: 'k' }), message(user, 'e', { collapseKey: 'ey' })]);

        expect(result.replaced).toBe(0);
        expect((await queued(user)).map(entryPayload)).toEqual(['a', 'b', 'c', 'd', 'e']);
      });
    });

    it('keeps the earliest ttl expiry of a queued message in the state (t)', async () => {
      const user = uniqueId();
      await routeOne(user, [message(user, 'long', { ttl: 600 }), message(user, 'none')]);
      expect((await state(user)).t).toBe(String(NOW + 600_000));

      await routeOne(user, [message(user, 'longer', { ttl: 900 })]);
      expect((await state(user)).t).toBe(String(NOW + 600_000));

      await routeOne(user, [message(user, 'short', { ttl: 60 })]);
      expect((await state(user)).t).toBe(String(NOW + 60_000));
    });

    it('keeps payloads with quotes, newlines, backslashes and unicode byte for byte, queued, owed and in notices', async () => {
      const payloads = ['say "hi"\n\tthen\r\nbye', 'back\\slash \\"', 'ünïcödé ✓ 😀 e\u0301 \u2028', '{"ts":1}}', '"ts":5}}'];
      const offline = uniqueId();
      const online = uniqueId();
      await queue.attach(online, 'c1', OTHER);
      const a = messages(offline, ...payloads);
      const b = messages(online, ...payloads);

      await routeOne(offline, a);
      await routeOne(online, b);

      expect(await queued(offline)).toEqual(envelopes(a));
      expect((await queued(offline)).map(entryPayload)).toEqual(payloads);
      expect(await owed(online)).toEqual(envelopes(b));
      const [[, notice]] = await notices();
      const parsed = parseNotices(notice);
      expect(notice).toBe(formatNotices(b.map((message, i) => messageNotice(online, i, message.envelope))));
      expect(parsed.map((n) => JSON.parse(messageFrame((n as MessageNotice).envelope)).data.payload)).toEqual(payloads);
    });
  });

  describe('attach-5.lua', () => {
    it('checks its arguments before its first write: a bad number is refused and nothing is registered', async () => {
      const user = uniqueId();
      await routeOne(user, messages(user, '1'));
      const before = await snapshot(user);

      const call = client.rmAttach(...keys.userKeys(user), 'c1', ME, user, keys.instanceChannelPrefix, 0, 'many', NOW, 1000);

      await expect(call).rejects.toThrow();
      expect(await snapshot(user)).toEqual(before);
    });

    it('registers the connection and answers what is owed and queued, the dropped count (once) and the head position', async () => {
      const capped = service({ maxQueueLength: 2 });
      const user = uniqueId();
      await routeOne(user, messages(user, '1', '2', '3'), { via: capped });

      const first = await capped.attach(user, 'c1', ME);
      await capped.read(user, 0, 1);
      const second = await capped.attach(user, 'c2', OTHER);

      expect(first).toEqual({ owed: 2, dropped: 1, position: 0, replaced: [], first: true, expired: 0, retracted: [], lookingChanged: true });
      expect(second).toEqual({ owed: 2, dropped: 0, position: 0, replaced: [], first: false, expired: 0, retracted: [], lookingChanged: false });
      expect(await client.exists(keys.dropped(user))).toBe(0);
      expect(await state(user)).toEqual({ [`c:c1`]: ME, [`c:c2`]: OTHER, L: LOOKING });
    });

    it('answers the absolute position of the head of owed after acks', async () => {
      const { user, ids: owedIdList } = await owedUser(3);
      await queue.ack(
        user,
        [
          [owedIdList[0], 0],
          [owedIdList[1], 1],
          [owedIdList[2], 2],
        ],
        OTHER,
      );

      const result = await queue.attach(user, 'c2', ME);

      expect(result).toMatchObject({ owed: 0, position: 3 });
    });

    it('does not count ids acked out of order as owed', async () => {
      const { user, ids: owedIdList } = await owedUser(3);
      await queue.ack(user, [[owedIdList[1], 1]], OTHER);

      const result = await queue.attach(user, 'c2', ME);

      expect(result).toMatchObject({ owed: 2, position: 0 });
    });

    it('replaces the oldest connections (sorted ids) past MAX_SOCKETS_PER_USER and tells their instance', async () => {
      const limited = service({ maxSocketsPerUser: 2 });
      const user = uniqueId();
      await limited.attach(user, 'conn-2', ME);
      await limited.attach(user, 'conn-1', OTHER);

      const result = await limited.attach(user, 'conn-3', ME);

      expect(result.replaced).toEqual([{ conn: 'conn-1', instance: OTHER }]);
      expect(await state(user)).toEqual({ 'c:conn-2': ME, 'c:conn-3': ME, L: LOOKING });
      expect(await notices()).toEqual([[OTHER, formatNotice({ kind: 'replaced', user, conn: 'conn-1' })]]);
    });

    it('replaces no connection when a registered one attaches again (a reattach after a Redis reconnect)', async () => {
      const limited = service({ maxSocketsPerUser: 2 });
      const user = uniqueId();
      await limited.attach(user, 'conn-1', ME);
      await limited.attach(user, 'conn-2', OTHER);

      const again = await limited.attach(user, 'conn-1', ME);

      expect(again.replaced).toEqual([]);
      expect(await state(user)).toEqual({ 'c:conn-1': ME, 'c:conn-2': OTHER, L: LOOKING });
      expect(await notices()).toEqual([]);
    });

    it('drops the head of the queue past the queue time to live and counts it', async () => {
      const ttl = service({ queueTtlSeconds: 60 });
      const user = uniqueId();
      const stale = [message(user, 'old1', { ts: NOW - 120_000 }), message(user, 'old2', { ts: NOW - 61_000 })];
      const fresh = [message(user, 'fresh', { ts: NOW - 59_000 }), message(user, 'new')];
      await routeOne(user, [...stale, ...fresh], { via: ttl });

      const result = await ttl.attach(user, 'c1', ME, { now: NOW });

      expect(result).toMatchObject({ owed: 2, dropped: 2, position: 0 });
      expect(await queued(user)).toEqual(envelopes(fresh));
    });

    it('sweeps messages past their own ttl from anywhere in the queue once t is due, keeping the rest in order', async () => {
      const user = uniqueId();
      const a = message(user, 'a');
      const expiring = message(user, 'expiring', { ts: NOW - 5000, ttl: 1 });
      const c = message(user, 'c', { ttl: 3600 });
      const d = message(user, 'd');
      await routeOne(user, [a, expiring, c, d]);
      expect((await state(user)).t).toBe(String(NOW - 4000));

      const early = await queue.attach(user, 'c1', ME, { now: NOW - 4500 });
      const earlyQueue = await queued(user);
      await queue.detach(user, 'c1', ME);
      const due = await queue.attach(user, 'c1', ME, { now: NOW });

      expect(early).toMatchObject({ owed: 4, dropped: 0 });
      expect(earlyQueue).toEqual(envelopes([a, expiring, c, d]));
      expect(due).toMatchObject({ owed: 3, dropped: 1 });
      expect(await queued(user)).toEqual(envelopes([a, c, d]));
      expect((await state(user)).t).toBe(String(NOW + 3600_000));
    });
  });

  describe('the ttl sweep in pages (attach-5.lua, sweep-5.lua)', () => {
    const PAGE = 10;
    const payloads = (entries: string[]) => entries.map(entryPayload);
    /** 25 queued messages, every third past its own ttl (so 't' is due), the others with ttls of an hour and more. */
    async function ttlQueue() {
      const user = uniqueId();
      const stored = Array.from({ length: 25 }, (_, i) => (i % 3 === 0 ? message(user, `x${i}`, { ts: NOW - 5000, ttl: 1 }) : message(user, `k${i}`, { ttl: 3600 + i })));
      await routeOne(user, stored);
      const kept = stored.filter((_, i) => i % 3 !== 0).map((m) => entryPayload(m.envelope));
      return { user, kept };
    }
    const attachPage = (user: string, conn: string) => client.rmAttach(...keys.userKeys(user), conn, ME, user, keys.instanceChannelPrefix, 0, 0, NOW, PAGE);
    const sweepPage = (user: string, from: number, kept: number) => client.rmSweep(...keys.userKeys(user), from, PAGE, 0, NOW, kept);

    it('sweeps the whole queue a page per call before answering: ready counts only what will be delivered, t moves on', async () => {
      const { user, kept } = await ttlQueue();

      const result = await queue.attach(user, 'c1', ME, { now: NOW, page: PAGE });

      expect(result).toMatchObject({ owed: 16, dropped: 9, expired: 9, first: true });
      expect(payloads(await queued(user))).toEqual(kept);
      expect((await state(user)).t).toBe(String(NOW + 3601_000));
    });

    it('one call sweeps one page and leaves t due; the next pages go on from the position it answered', async () => {
      const { user, kept } = await ttlQueue();

      const first = await attachPage(user, 'c1');
      const afterFirst = { queue: payloads(await queued(user)), t: (await state(user)).t };
      const second = await sweepPage(user, first[6], first[7]);
      const third = await sweepPage(user, second[1], second[2]);

      // Page one: x0 x3 x6 x9 gone, six kept, the sweep goes on at 6 with k1's expiry the earliest so far.
      expect(first.slice(5)).toEqual([4, 6, NOW + 3601_000, '', 1]);
      expect(first[0]).toBe(21);
      expect(afterFirst.t).toBe(String(NOW - 4000));
      expect(afterFirst.queue.slice(0, 7)).toEqual(['k1', 'k2', 'k4', 'k5', 'k7', 'k8', 'k10']);
      expect(second).toEqual([3, 13, NOW + 3601_000]);
      expect(third).toEqual([2, -1, NOW + 3601_000]);
      expect(payloads(await queued(user))).toEqual(kept);
      expect((await state(user)).t).toBe(String(NOW + 3601_000));
    });

    it('after a read took the head between pages it may miss an expired entry, never a live one; the read drops the missed one', async () => {
      const { user, kept } = await ttlQueue();
      const first = await attachPage(user, 'c1');
      const took = await queue.read(user, 0, 3, NOW); // another socket of the user takes k1 k2 k4

      for (let from = first[6], soFar = first[7]; from >= 0;) [, from, soFar] = await sweepPage(user, from, soFar);
      const left = payloads(await queued(user));
      const rest = await queue.read(user, took.next, 100, NOW);

      expect(took.rows.map((row) => entryPayload(row.envelope))).toEqual(['k1', 'k2', 'k4']);
      expect(left).toEqual([...kept.slice(3, 8), 'x12', ...kept.slice(8)]);
      expect(rest.rows.map((row) => entryPayload(row.envelope))).toEqual(kept.slice(3));
    });

    it('stops when another sweep has ended (t no longer due), and checks its arguments before its first write', async () => {
      const { user, kept } = await ttlQueue();
      const first = await attachPage(user, 'c1');
      await queue.attach(user, 'c2', ME, { now: NOW, page: PAGE });

      await expect(client.rmSweep(...keys.userKeys(user), 0, 0, 0, NOW, 0)).rejects.toThrow(/bad argument 2/);
      expect(await sweepPage(user, first[6], first[7])).toEqual([0, -1, 0]);
      expect(payloads(await queued(user))).toEqual(kept);
    });
  });

  describe('read-5.lua', () => {
    it('checks its arguments before its first write: nothing leaves the queue on a bad now or cutoff', async () => {
      const user = uniqueId();
      await routeOne(user, messages(user, '1'));
      await client.rpush(keys.queue(user), 'raw');
      await queue.attach(user, 'c1', ME);
      const before = await snapshot(user);

      const badNow = client.rmRead(...keys.userKeys(user), 0, 10, channelOf(user), 'now', 0, 0, 'p.');
      const badCutoff = client.rmRead(...keys.userKeys(user), 0, 10, channelOf(user), NOW, 'cutoff', 0, 'p.');
      const noPrefix = client.rmRead(...keys.userKeys(user), 0, 10, channelOf(user), NOW, 0, 0);

      expect((await Promise.allSettled([badNow, badCutoff, noPrefix])).map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
      expect(await snapshot(user)).toEqual(before);
    });

    it('reads at most about SLOW_CONSUMER_BYTES at once, one message at least, from owed and from the queue', async () => {
      const small = service({ slowConsumerBytes: 2500 });
      const big = (tag: string) => `${tag}:${'x'.repeat(1000)}`;
      const owed = await owedUser(0);
      await routeOne(owed.user, messages(owed.user, big('a'), big('b'), big('c'), big('d')));
      // Owed entries: two of about 1.1 KB reach 2500 bytes with the third.
      const page1 = await small.read(owed.user, 0, 100);
      expect(page1.rows.map((r) => r.position)).toEqual([0, 1, 2]);
      expect(page1.more).toBe(true);
      const page2 = await small.read(owed.user, page1.next, 100);
      expect(page2.rows.map((r) => r.position)).toEqual([3]);

      // Queued entries are taken over only as far as the budget goes: the rest stay queued.
      const queuedUser = uniqueId();
      await routeOne(queuedUser, messages(queuedUser, big('a'), big('b'), big('c'), big('d'), big('e')));
      await queue.attach(queuedUser, 'c1', ME);
      const first = await small.read(queuedUser, 0, 100);
      expect(first.rows).toHaveLength(3);
      expect(first.more).toBe(true);
      expect(await client.llen(keys.queue(queuedUser))).toBe(2);
      const one = await service({ slowConsumerBytes: 10 }).read(queuedUser, first.next, 100);
      expect(one.rows).toHaveLength(1);
    });

    it('reads owed messages from a position, with more and next', async () => {
      const { user, stored } = await owedUser(3);

      const page1 = await queue.read(user, 0, 2);
      const page2 = await queue.read(user, page1.next, 2);

      expect(page1).toEqual({ rows: [0, 1].map((i) => ({ position: i, envelope: stored[i].envelope })), next: 2, more: true });
      expect(page2).toEqual({ rows: [{ position: 2, envelope: stored[2].envelope }], next: 3, more: false });
    });

    it('takes the queue over in order past the end of owed, giving raw entries an envelope and an id of the call', async () => {
      const user = uniqueId();
      const stored = messages(user, 'q1', 'q2');
      await routeOne(user, stored);
      await client.rpush(keys.queue(user), 'raw "one"', 'raw two');
      await queue.attach(user, 'c1', ME);

      const result = await queue.read(user, 0, 10, NOW);

      expect(result.more).toBe(false);
      expect(result.next).toBe(4);
      expect(result.rows.map((r) => r.position)).toEqual([0, 1, 2, 3]);
      expect(result.rows.slice(0, 2).map((r) => r.envelope)).toEqual(envelopes(stored));
      const wrapped = result.rows.slice(2).map((r) => JSON.parse(messageFrame(r.envelope)).data);
      expect(wrapped).toEqual([
        { id: expect.stringMatching(/\.r[0-9a-z]+\.1$/), channel: keys.userChannel(user), payload: 'raw "one"', ts: NOW },
        { id: expect.stringMatching(/\.r[0-9a-z]+\.2$/), channel: keys.userChannel(user), payload: 'raw two', ts: NOW },
      ]);
      expect(wrapped[0].id.slice(0, -1)).toBe(wrapped[1].id.slice(0, -1));
      expect(await queued(user)).toEqual([]);
      expect(await owed(user)).toEqual(result.rows.map((r) => r.envelope));
    });

    it('gives raw entries ids unique across calls', async () => {
      const user = uniqueId();
      await queue.attach(user, 'c1', ME);
      await client.rpush(keys.queue(user), 'same');
      const a = await queue.read(user, 0, 10);
      await client.rpush(keys.queue(user), 'same');
      const b = await queue.read(user, a.next, 10);

      const [idA, idB] = [envelopeId(a.rows[0].envelope), envelopeId(b.rows[0].envelope)];

      expect(idA).toBeDefined();
      expect(idB).toBeDefined();
      expect(idA).not.toBe(idB);
      expect(await owedIds(client, user)).toEqual([idA, idB]);
    });

    it('takes the queue over in chunks: more while it is not empty, next after the last one read', async () => {
      const user = uniqueId();
      const stored = messages(user, '1', '2', '3', '4', '5');
      await routeOne(user, stored);
      await queue.attach(user, 'c1', ME);

      const a = await queue.read(user, 0, 2);
      const b = await queue.read(user, a.next, 2);
      const c = await queue.read(user, b.next, 2);
      const d = await queue.read(user, c.next, 2);

      expect([a, b, c, d].map((r) => r.rows.map((row) => row.position))).toEqual([[0, 1], [2, 3], [4], []]);
      expect([a.next, b.next, c.next, d.next]).toEqual([2, 4, 5, 5]);
      expect([a.more, b.more, c.more, d.more]).toEqual([true, true, false, false]);
      expect(await queued(user)).toEqual([]);
      expect(await owed(user)).toEqual(envelopes(stored));
    });

    it('drops expired entries while taking the queue over, and counts them', async () => {
      const ttl = service({ queueTtlSeconds: 60 });
      const user = uniqueId();
      const fresh1 = message(user, 'fresh1');
      const stale = message(user, 'stale', { ts: NOW - 120_000 });
      const ttlPassed = message(user, 'ttl passed', { ts: NOW - 10_000, ttl: 5 });
      const fresh2 = message(user, 'fresh2');
      await routeOne(user, [fresh1, stale, ttlPassed, fresh2], { via: ttl });
      await client.hdel(keys.state(user), 't'); // the sweep at attach is tested there: here the read meets them
      await ttl.attach(user, 'c1', ME, { now: NOW });

      const result = await ttl.read(user, 0, 10, NOW);

      expect(result.rows).toEqual([
        { position: 0, envelope: fresh1.envelope },
        { position: 1, envelope: fresh2.envelope },
      ]);
      expect(result.next).toBe(2);
      expect(await droppedCounter(user)).toBe(2);
      expect(await owed(user)).toEqual(envelopes([fresh1, fresh2]));
    });

    it('reads absolute positions after the head was trimmed, from the head when asked for less', async () => {
      const { user, stored, ids: owedIdList } = await owedUser(4);
      await queue.ack(
        user,
        [
          [owedIdList[0], 0],
          [owedIdList[1], 1],
        ],
        OTHER,
      );

      const fromStart = await queue.read(user, 0, 10);
      const fromThree = await queue.read(user, 3, 10);

      expect(fromStart.rows).toEqual([2, 3].map((i) => ({ position: i, envelope: stored[i].envelope })));
      expect(fromStart.next).toBe(4);
      expect(fromThree.rows).toEqual([{ position: 3, envelope: stored[3].envelope }]);
    });

    it('skips ids acked out of order', async () => {
      const { user, stored, ids: owedIdList } = await owedUser(3);
      await queue.ack(user, [[owedIdList[1], 1]], OTHER);

      const result = await queue.read(user, 0, 10);

      expect(result.rows).toEqual([0, 2].map((i) => ({ position: i, envelope: stored[i].envelope })));
      expect(result.next).toBe(3);
      expect(result.more).toBe(false);
    });

    it('says more when skipped acked ids leave a short page while the queue still has messages', async () => {
      const user = uniqueId();
      const stored = messages(user, '1', '2', '3', '4', '5');
      await routeOne(user, stored);
      await queue.attach(user, 'c1', ME);
      await queue.read(user, 0, 3);
      await queue.ack(user, [[envelopeId(stored[1].envelope)!, 1]], ME);

      const result = await queue.read(user, 0, 4);

      expect(result.rows.map((r) => r.position)).toEqual([0, 2, 3]);
      expect(result.next).toBe(4);
      expect(result.more).toBe(true);
      expect(await queued(user)).toEqual([stored[4].envelope]);
    });
  });

  describe('ack-5.lua', () => {
    it('checks its arguments before its first write: a bad position or read argument acks nothing', async () => {
      const { user, ids: owedIdList } = await owedUser(3);
      await drain();
      const before = await snapshot(user);
      const args = (readPos: string | number, ...pairs: Array<string | number>) => [keys.instanceChannelPrefix, ME, user, readPos, 10, channelOf(user), NOW, 0, 0, 'p.', ...pairs];

      const badPosition = client.rmAck(...keys.userKeys(user), ...args(-1, owedIdList[0], 0, owedIdList[2], 'two'));
      const badRead = client.rmAck(...keys.userKeys(user), ...args('next', owedIdList[0], 0));
      const oddPairs = client.rmAck(...keys.userKeys(user), ...args(-1, owedIdList[0], 0, owedIdList[1]));

      expect((await Promise.allSettled([badPosition, badRead, oddPairs])).map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
      expect(await snapshot(user)).toEqual(before);
      expect(await notices()).toEqual([]);
    });

    it('trims the acked head: b moves on, owed shrinks', async () => {
      const { user, ids: owedIdList } = await owedUser(3);

      const result = await queue.ack(
        user,
        [
          [owedIdList[0], 0],
          [owedIdList[1], 1],
        ],
        OTHER,
      );

      expect(result).toEqual({ acked: 2, read: undefined, details: undefined, notified: false });
      expect((await state(user)).b).toBe('2');
      expect(await owedIds(client, user)).toEqual([owedIdList[2]]);
      expect(await client.llen(keys.owed(user))).toBe(1);
    });

    it('keeps ids acked out of order in x and trims them when the head reaches them', async () => {
      const { user, ids: owedIdList } = await owedUser(4);

      const outOfOrder = await queue.ack(user, [[owedIdList[2], 2]], OTHER);
      const afterOutOfOrder = { state: await state(user), len: await client.llen(keys.owed(user)) };
      const head = await queue.ack(user, [[owedIdList[0], 0]], OTHER);
      const afterHead = { state: await state(user), len: await client.llen(keys.owed(user)) };
      const gap = await queue.ack(user, [[owedIdList[1], 1]], OTHER);

      expect(outOfOrder.acked).toBe(1);
      expect(afterOutOfOrder.state.x).toBe(owedIdList[2]);
      expect(afterOutOfOrder.len).toBe(4);
      expect(head.acked).toBe(1);
      expect(afterHead.state).toMatchObject({ b: '1', x: owedIdList[2] });
      expect(afterHead.len).toBe(3);
      expect(gap.acked).toBe(1);
      const end = await state(user);
      expect(end.b).toBe('3');
      expect(end.x).toBeUndefined();
      expect(await owedIds(client, user)).toEqual([owedIdList[3]]);
    });

    it('ignores unknown ids, and ids already acked', async () => {
      const { user, ids: owedIdList } = await owedUser(3);
      await queue.ack(user, [[owedIdList[1], 1]], OTHER);
      const before = { state: await state(user), owed: await owed(user) };

      const result = await queue.ack(
        user,
        [
          ['not-an-id', 0],
          ['nope', -1],
          [owedIdList[1], 1],
        ],
        OTHER,
      );

      expect(result.acked).toBe(0);
      expect(await state(user)).toEqual(before.state);
      expect(await owed(user)).toEqual(before.owed);
    });

    it('counts an id acked twice in one call once', async () => {
      const { user, ids: owedIdList } = await owedUser(3);

      const result = await queue.ack(
        user,
        [
          [owedIdList[0], 0],
          [owedIdList[0], 0],
          [owedIdList[2], 2],
          [owedIdList[2], 2],
        ],
        OTHER,
      );

      expect(result.acked).toBe(2);
      expect(await owedIds(client, user)).toEqual([owedIdList[1]]);
      expect(await owedCount(client, user)).toBe(1);
    });

    it('finds ids with an unknown or wrong position by the scan', async () => {
      const { user, ids: owedIdList } = await owedUser(4);

      const result = await queue.ack(
        user,
        [
          [owedIdList[2], -1],
          [owedIdList[3], 1],
          [owedIdList[1], 99],
        ],
        OTHER,
      );

      expect(result.acked).toBe(3);
      expect((await state(user)).x!.split(',').sort()).toEqual([owedIdList[1], owedIdList[2], owedIdList[3]].sort());
      expect(await owedIds(client, user)).toEqual([owedIdList[0]]);
    });

    it('tells the other instances holding sockets of the user which ids were acked', async () => {
      const { user, ids: owedIdList } = await owedUser(3, 'c1', OTHER);
      await queue.attach(user, 'c2', ME);
      await queue.attach(user, 'c3', THIRD);
      await queue.attach(user, 'c4', THIRD);
      await drain();

      await queue.ack(
        user,
        [
          [owedIdList[0], 0],
          [owedIdList[1], 1],
        ],
        ME,
      );
      await queue.ack(user, [['unknown', 0]], ME);

      const heardNow = await notices();
      expect(heardNow.sort()).toEqual(
        [
          [OTHER, formatNotice({ kind: 'acked', user, ids: owedIdList.slice(0, 2) })],
          [THIRD, formatNotice({ kind: 'acked', user, ids: owedIdList.slice(0, 2) })],
        ].sort(),
      );
    });

    it('reads the next messages for the acking socket in the same call', async () => {
      const user = uniqueId();
      const stored = messages(user, '1', '2', '3', '4');
      await routeOne(user, stored);
      await queue.attach(user, 'c1', ME);
      const first = await queue.read(user, 0, 2);

      const result = await queue.ack(
        user,
        [
          [envelopeId(first.rows[0].envelope)!, 0],
          [envelopeId(first.rows[1].envelope)!, 1],
        ],
        ME,
        { position: first.next, limit: 10 },
      );

      expect(result.acked).toBe(2);
      expect(result.read).toEqual({ rows: [2, 3].map((i) => ({ position: i, envelope: stored[i].envelope })), next: 4, more: false });
      expect(await owed(user)).toEqual(envelopes(stored.slice(2)));
      expect((await state(user)).b).toBe('2');
    });
  });

  describe('detach-5.lua', () => {
    it('requeues nothing while another connection is left', async () => {
      const { user, stored } = await owedUser(2, 'c1', OTHER);
      await queue.attach(user, 'c2', ME);

      const result = await queue.detach(user, 'c1', OTHER);

      expect(result).toEqual({ requeued: 0, left: 1, removed: 1, lookingChanged: false });
      expect(await owed(user)).toEqual(envelopes(stored));
      expect(await queued(user)).toEqual([]);
      expect(await state(user)).toEqual({ 'c:c2': ME, L: LOOKING });
    });

    it('puts what is owed back at the head of the queue in order, marked sent, ahead of what was queued, without acked ids', async () => {
      const user = uniqueId();
      const stored = messages(user, '1', '2', '3', '4', '5', '6');
      await routeOne(user, stored.slice(0, 5), { epoch: 7 });
      await queue.attach(user, 'c1', ME);
      await queue.read(user, 0, 4);
      await queue.ack(
        user,
        [
          [envelopeId(stored[0].envelope)!, 0],
          [envelopeId(stored[2].envelope)!, 2],
        ],
        ME,
      );
      await routeOne(user, stored.slice(5), { epoch: 7 });

      const result = await queue.detach(user, 'c1', ME);

      expect(result).toEqual({ requeued: 2, left: 0, removed: 1, lookingChanged: true });
      const back = await queued(user);
      expect(back).toEqual([markSent(stored[1].envelope), markSent(stored[3].envelope), stored[4].envelope, stored[5].envelope]);
      expect(JSON.parse(back[0])).toEqual({ rm: JSON.parse(stored[1].envelope).rm, sent: true });
      expect(await client.exists(keys.owed(user))).toBe(0);
      expect(await state(user)).toEqual({ e: '7', L: AWAY });
      expect(await connectionCount(client, user)).toBe(0);
    });

    it('keeps the ttl hint while the queue is not empty, and leaves no state when nothing waits', async () => {
      const waiting = uniqueId();
      const idle = uniqueId();
      await routeOne(waiting, [message(waiting, 'ttl', { ttl: 600 })]);
      await queue.attach(waiting, 'c1', ME);
      await queue.attach(idle, 'c1', ME);

      await queue.detach(waiting, 'c1', ME);
      await queue.detach(idle, 'c1', ME);

      expect(await state(waiting)).toEqual({ t: String(NOW + 600_000), L: AWAY });
      expect(await client.exists(keys.state(idle), keys.owed(idle), keys.queue(idle))).toBe(0);
    });

    it("removes only one instance's connections with '*', and requeues once the last goes", async () => {
      const { user, stored } = await owedUser(2, 'c1', OTHER);
      await queue.attach(user, 'c2', OTHER);
      await queue.attach(user, 'c3', ME);

      const other = await queue.detach(user, '*', OTHER);
      const afterOther = await state(user);
      const mine = await queue.detach(user, '*', ME);

      expect(other).toEqual({ requeued: 0, left: 1, removed: 2, lookingChanged: false });
      expect(afterOther).toEqual({ 'c:c3': ME, L: LOOKING });
      expect(mine).toEqual({ requeued: 2, left: 0, removed: 1, lookingChanged: true });
      expect(await queued(user)).toEqual(envelopes(stored).map(markSent));
    });
    describe('in pages', () => {
      const PAGE = 10;
      /** A user with 25 owed messages on OTHER (c1), two of them acked out of order, and one queued behind. */
      async function paged() {
        const { user, stored, ids: owedIds } = await owedUser(25, 'c1', OTHER);
        await queue.ack(
          user,
          [
            [owedIds[3], 3],
            [owedIds[20], 20],
          ],
          OTHER,
        );
        const behind = message(user, 'behind');
        await client.rpush(keys.queue(user), behind.envelope);
        const back = stored.filter((_, i) => i !== 3 && i !== 20).map((m) => markSent(m.envelope));
        return { user, stored, back, behind };
      }

      it('moves at most a page per call, from the tail of owed, each page ahead of the one before; ends with everything in order', async () => {
        const { user, stored, back, behind } = await paged();

        const firstCall = await client.rmDetach(...keys.userKeys(user), 'c1', OTHER, PAGE);
        const afterFirst = { owed: await owed(user), queue: await queued(user), state: await state(user) };
        const rest = await queue.detach(user, 'c1', OTHER, PAGE);

        // The newest 10 (one acked: 9 back), ts of the queue head, 1 connection removed, more to come.
        expect(firstCall).toEqual([9, 0, envelopeTs(stored[15].envelope), 1, 1, 1]);
        expect(afterFirst.owed).toEqual(envelopes(stored.slice(0, 15)));
        expect(afterFirst.queue).toEqual([...back.slice(14), behind.envelope]);
        // Still owed keeps its head position and its own out-of-order ack; the one that went left 'x'.
        expect(afterFirst.state).toEqual({ x: envelopeId(stored[3].envelope), L: AWAY });
        expect(rest).toEqual({ requeued: 14, left: 0, removed: 0, lookingChanged: false });
        expect(await queued(user)).toEqual([...back, behind.envelope]);
        expect(await client.exists(keys.owed(user))).toBe(0);
        expect(await state(user)).toEqual({ L: AWAY });
        expect(Number(await client.zscore(keys.queueIndex, user))).toBe(envelopeTs(stored[0].envelope));
      });

      it('a socket attaching between two pages reads what is still owed, then what went back, in order; a late call moves nothing', async () => {
        const { user, stored, behind } = await paged();
        await client.rmDetach(...keys.userKeys(user), 'c1', OTHER, PAGE); // then the caller died

        const attached = await queue.attach(user, 'c2', ME);
        const read = await queue.read(user, attached.position, 100);
        const late = await queue.detach(user, 'c1', OTHER, PAGE);

        expect(attached).toMatchObject({ owed: 24, position: 0, first: true });
        const expected = [...stored.filter((_, i) => i !== 3 && i !== 20), behind].map((m) => envelopeId(m.envelope));
        expect(read.rows.map((row) => envelopeId(row.envelope))).toEqual(expected);
        expect(late).toEqual({ requeued: 0, left: 1, removed: 0, lookingChanged: false });
        expect(await state(user)).toMatchObject({ 'c:c2': ME });
      });

      it('is carried on by any later call once no connection is left (the reaper after a crash half way)', async () => {
        const { user, back, behind } = await paged();
        await client.rmDetach(...keys.userKeys(user), 'c1', OTHER, PAGE);

        const reaped = await queue.detach(user, '*', THIRD, PAGE);

        expect(reaped).toEqual({ requeued: 14, left: 0, removed: 0, lookingChanged: false });
        expect(await queued(user)).toEqual([...back, behind.envelope]);
        expect(await client.exists(keys.owed(user))).toBe(0);
        expect(await state(user)).toEqual({ L: AWAY }); // when the user stopped looking: absences count from then
      });
    });
  });

  describe('notify-5.lua and visibility-5.lua (absences)', () => {
    const AFTER = 1000;

    it('an away user with messages waiting past `after`: one notify with the count, ids and collapse keys; resolved once nothing waits', async () => {
      const user = uniqueId();
      const stored = [message(user, 'a', { ts: NOW - 5000, collapseKey: 'score' }), message(user, 'b', { ts: NOW - 4000 }), message(user, 'c', { ts: NOW - 3000, collapseKey: 'chat' })];
      await routeOne(user, stored);
      const [first, , last] = ids(envelopes(stored));

      const notify = await queue.absence(user, AFTER, 0, 100);
      const again = await queue.absence(user, AFTER, 0, 100);
      for (const id of [first, ids(envelopes(stored))[1], last]) await queue.retract(user, id!);
      const resolved = await queue.absence(user, AFTER, 0, 100);

      expect(notify).toMatchObject({ action: 'notify', next: 0, count: 3, firstId: first, lastId: last });
      expect(JSON.parse(notify.collapseKeys).sort()).toEqual(['chat', 'score']);
      expect(notify.ageSeconds).toBeGreaterThanOrEqual(5);
      expect(again).toMatchObject({ action: undefined, next: 0, count: 3 });
      expect(resolved).toMatchObject({ action: 'resolved', count: 0 });
      expect(await state(user)).toEqual({});
    });

    it('a visible socket means looking: no notify; hidden, the absence is due `after` from then', async () => {
      const user = uniqueId();
      await queue.attach(user, 'c1', OTHER);
      await routeOne(user, [message(user, 'seen', { ts: NOW - 5000 })]);

      const looking = await queue.absence(user, AFTER, 0, 100);
      const hidden = await queue.visibility(user, 'c1', false);
      const hiddenAgain = await queue.visibility(user, 'c1', false);
      const since = Number((await state(user)).L.split('|')[1]);
      const away = await queue.absence(user, AFTER, 0, 100);
      const unknown = await queue.visibility(user, 'gone', true);

      expect(looking).toMatchObject({ action: undefined, next: 0, count: 1 });
      expect(hidden).toEqual({ registered: true, lookingChanged: true });
      expect(hiddenAgain).toEqual({ registered: true, lookingChanged: false });
      expect(await state(user)).toMatchObject({ 'h:c1': '1', L: AWAY });
      expect(away).toMatchObject({ action: undefined, next: since + AFTER, count: 1 });
      expect(unknown).toEqual({ registered: false, lookingChanged: false });
    });

    it('a hidden socket attaching counts as not looking; its detach keeps the absence state', async () => {
      const user = uniqueId();
      const attached = await queue.attach(user, 'c1', OTHER, { visible: false });
      await routeOne(user, [message(user, 'x', { ts: NOW - 5000 })]);
      await client.hset(keys.state(user), 'L', `0|${NOW - 5000}`); // away for 5 s already

      const notify = await queue.absence(user, AFTER, 0, 100);
      await queue.detach(user, 'c1', OTHER);

      expect(attached.lookingChanged).toBe(false);
      expect(notify).toMatchObject({ action: 'notify', count: 1 });
      expect(await state(user)).toMatchObject({ N: expect.stringMatching(/^\d+\|1$/), L: AWAY });
    });

    it('checks its arguments before its first write', async () => {
      const user = uniqueId();
      await routeOne(user, [message(user, 'x', { ts: NOW - 5000 })]);
      const before = await snapshot(user);

      await expect(queue.absence(user, 0, 0, 100)).rejects.toThrow(/bad argument 1/);
      await expect(queue.absence(user, AFTER, 0, 0)).rejects.toThrow(/bad argument 3/);
      expect(await snapshot(user)).toEqual(before);
    });
  });

  describe('retract-5.lua', () => {
    it('removes a queued message never sent: queued, nobody told, nothing kept for the next socket', async () => {
      const user = uniqueId();
      const stored = messages(user, '1', '2', '3');
      await routeOne(user, stored);

      expect(await queue.retract(user, ids(envelopes(stored))[1]!)).toBe('queued');

      expect(await queued(user)).toEqual(envelopes([stored[0], stored[2]]));
      expect(await state(user)).toEqual({});
      expect(await notices()).toEqual([]);
      expect(await queue.retract(user, ids(envelopes(stored))[1]!)).toBeUndefined();
    });

    it('an owed message: acked out of order, so positions hold, no read and no requeue brings it back; the instances holding sockets are told', async () => {
      const { user, stored, ids: owedIdList } = await owedUser(4, 'c1', OTHER);
      await queue.attach(user, 'c2', THIRD);
      await drain();

      expect(await queue.retract(user, owedIdList[2])).toBe('sent');

      expect(await state(user)).toMatchObject({ x: owedIdList[2] });
      expect((await notices()).sort()).toEqual([
        [OTHER, formatNotice({ kind: 'retracted', user, id: owedIdList[2], every: false })],
        [THIRD, formatNotice({ kind: 'retracted', user, id: owedIdList[2], every: false })],
      ]);
      const read = await queue.read(user, 0, 10);
      expect(read.rows).toEqual([0, 1, 3].map((i) => ({ position: i, envelope: stored[i].envelope })));
      expect((await queue.attach(user, 'c3', ME)).owed).toBe(3);
      // Acking it changes nothing and is not counted; the head trims past it.
      const acked = await queue.ack(
        user,
        [
          [owedIdList[0], 0],
          [owedIdList[1], 1],
          [owedIdList[2], 2],
        ],
        ME,
        undefined,
        NOW,
        true,
      );
      expect(acked.details!.map((f) => f.id)).toEqual([owedIdList[0], owedIdList[1]]);
      expect(await owed(user)).toEqual([stored[3].envelope]);
      expect((await state(user)).b).toBe('3');
      expect((await state(user)).x).toBeUndefined();
      for (const conn of ['c1', 'c2', 'c3']) await queue.detach(user, conn, conn === 'c1' ? OTHER : conn === 'c2' ? THIRD : ME);
      expect(await queued(user)).toEqual([markSent(stored[3].envelope)]);
    });

    it('trims the head of owed when the retracted message is at it', async () => {
      const { user, stored, ids: owedIdList } = await owedUser(2);
      expect(await queue.retract(user, owedIdList[0])).toBe('sent');
      expect(await owed(user)).toEqual([stored[1].envelope]);
      expect(await state(user)).toMatchObject({ b: '1' });
      expect((await state(user)).x).toBeUndefined();
      expect(await queue.retract(user, owedIdList[0])).toBeUndefined();
    });

    it('a sent message back in the queue: sent; with no socket the next attach answers it, once, kept through a detach', async () => {
      const user = uniqueId();
      const stored = messages(user, '1', '2');
      await queue.attach(user, 'c1', ME);
      await routeOne(user, stored);
      await queue.read(user, 0, 10);
      await queue.detach(user, 'c1', ME);
      await drain();

      expect(await queue.retract(user, ids(envelopes(stored))[0]!)).toBe('sent');
      expect(await queue.retract(user, ids(envelopes(stored))[1]!)).toBe('sent');

      expect(await queued(user)).toEqual([]);
      expect(await notices()).toEqual([]);
      await queue.expire(user); // an emptied queue's state would go: the retracts stay
      const first = await queue.attach(user, 'c2', ME);
      expect(first).toMatchObject({ owed: 0, retracted: ids(envelopes(stored)) });
      await queue.detach(user, 'c2', ME);
      expect((await queue.attach(user, 'c3', ME)).retracted).toEqual([]);
    });

    it('a sent message back in the queue while the user has a socket again: every socket is told', async () => {
      const user = uniqueId();
      const stored = messages(user, '1');
      await queue.attach(user, 'c1', ME);
      await routeOne(user, stored);
      await queue.read(user, 0, 10);
      await queue.detach(user, 'c1', ME);
      await queue.attach(user, 'c2', OTHER);
      await drain();

      expect(await queue.retract(user, ids(envelopes(stored))[0]!)).toBe('sent');
      expect(await notices()).toEqual([[OTHER, formatNotice({ kind: 'retracted', user, id: ids(envelopes(stored))[0]!, every: true })]]);
      expect((await state(user)).r).toBeUndefined();
    });

    it('keeps the newest 100 ids for the next socket', async () => {
      const user = uniqueId();
      const stored = messages(user, ...Array.from({ length: 105 }, (_, i) => `m${i}`));
      await queue.attach(user, 'c1', ME);
      await routeOne(user, stored);
      await queue.read(user, 0, 200);
      await queue.detach(user, 'c1', ME);
      for (const id of ids(envelopes(stored))) expect(await queue.retract(user, id!)).toBe('sent');
      expect((await queue.attach(user, 'c2', ME)).retracted).toEqual(ids(envelopes(stored)).slice(5));
    });

    it('the cap dropping owed entries keeps the retracted ids it did not drop skipped', async () => {
      const capped = service({ maxQueueLength: 3, queueOverflow: 'drop-oldest' });
      const user = uniqueId();
      await capped.attach(user, 'c1', OTHER);
      const stored = messages(user, '1', '2', '3', '4', '5');
      await routeOne(user, stored.slice(0, 3), { via: capped });
      const all = ids(envelopes(stored)) as string[];
      expect(await capped.retract(user, all[2])).toBe('sent');

      expect(await routeOne(user, stored.slice(3), { via: capped })).toMatchObject({ dropped: 1 });

      expect((await state(user)).x).toBe(all[2]);
      expect((await capped.read(user, 0, 10)).rows.map((row) => envelopeId(row.envelope))).toEqual([all[1], all[3], all[4]]);
    });
  });

  describe('expire-5.lua', () => {
    it('checks its arguments before its first write: a bad counter ttl drops nothing', async () => {
      const user = uniqueId();
      await routeOne(user, [message(user, 'old', { ts: NOW - 120_000 })]);
      const before = await snapshot(user);

      const call = client.rmExpire(...keys.userKeys(user), NOW - 60_000, NOW, 'ttl');

      await expect(call).rejects.toThrow();
      expect(await snapshot(user)).toEqual(before);
    });

    const TTL_MS = 60_000;
    const expire = (user: string, now = NOW) => client.rmExpire(...keys.userKeys(user), now - TTL_MS, now, TTL_MS);

    it('drops the head past the cutoff, counts it, and answers how many are left and the new head ts', async () => {
      const user = uniqueId();
      const fresh = [message(user, 'fresh', { ts: NOW - 1000 }), message(user, 'stale but behind', { ts: NOW - 120_000 })];
      await routeOne(user, [message(user, 'old1', { ts: NOW - 120_000 }), message(user, 'old2', { ts: NOW - 61_000 }), ...fresh]);

      const result = await expire(user);

      expect(result).toEqual([2, 2, NOW - 1000]);
      expect(await queued(user)).toEqual(envelopes(fresh));
      expect(await droppedCounter(user)).toBe(2);
    });

    it('indexes what is left under its head ts (QueueService.expire)', async () => {
      const ttl = service({ queueTtlSeconds: 60 });
      const user = uniqueId();
      await routeOne(user, [message(user, 'old', { ts: NOW - 120_000 }), message(user, 'fresh', { ts: NOW - 5000 })], { via: ttl });
      await ttl.index(user, NOW - 120_000);

      const result = await ttl.expire(user, NOW);

      expect(result).toEqual({ expired: 1, left: 1 });
      expect(Number(await client.zscore(keys.queueIndex, user))).toBe(NOW - 5000);
    });

    it('leaves no state for an emptied queue of a user with no connection', async () => {
      const user = uniqueId();
      await routeOne(user, [message(user, 'old', { ts: NOW - 120_000, ttl: 3600 })], { epoch: 4 });
      expect(await state(user)).toEqual({ e: '4', t: String(NOW - 120_000 + 3600_000) });

      const result = await expire(user);

      expect(result).toEqual([1, 0, 0]);
      expect(await client.exists(keys.state(user), keys.queue(user))).toBe(0);
    });

    it('keeps the state of an emptied queue while the user has a connection', async () => {
      const user = uniqueId();
      await routeOne(user, [message(user, 'old', { ts: NOW - 120_000 })], { epoch: 4 });
      await queue.attach(user, 'c1', ME);

      const result = await expire(user);

      expect(result).toEqual([1, 0, 0]);
      expect(await state(user)).toEqual({ e: '4', 'c:c1': ME, L: LOOKING });
    });
  });

  describe('envelope readers: Lua (includes/envelope.lua) and TypeScript (protocol/envelope.ts)', () => {
    const fragment = readFileSync(join(__dirname, 'lua', 'includes', 'envelope.lua'), 'utf8');
    /** envelopeId, envelopeTs and markSent of envelope.lua, on each entry. */
    async function luaRead(entries: string[]): Promise<Array<[string | null, number | null, string]>> {
      const out = (await client.eval(
        `${fragment}\nlocal out = {}\nfor i = 1, #ARGV do out[i] = {envelopeId(ARGV[i]) or false, envelopeTs(ARGV[i]) or false, markSent(ARGV[i])} end\nreturn out`,
        0,
        ...entries,
      )) as Array<[string | null, number | null, string]>;
      return out;
    }
    const fields = [
      { id: 'a1.x', channel: 'rm.users.u1', payload: 'plain', ts: 1795986163346 },
      { id: 'a1.y', channel: 'rm.channels.g1', payload: 'with {"ts":12}} inside', ts: 1 },
      { id: 'a1.z', channel: 'rm.users.u1', payload: '"ts":5}}', ts: 1795986163347, ttl: 60 },
      { id: 'a1.w', channel: 'rm.users.u1', payload: 'q "quotes" \\ and \n ünï ✓ 😀', ts: 1795986163348, collapseKey: 'score "1"' },
      { id: 'a1.v', channel: 'rm.users.u1', payload: '', ts: 1795986163349, ttl: 0, collapseKey: ',"ts":1}}' },
    ];

    it('read the same id and ts of envelopes built by buildEnvelope, sent or not', async () => {
      const built = fields.map((f) => buildEnvelope(f));
      const entries = [...built, ...built.map(markSent)];

      const lua = await luaRead(entries);

      expect(lua.map(([id]) => id)).toEqual(entries.map((e) => envelopeId(e)));
      expect(lua.map(([, ts]) => ts)).toEqual(entries.map((e) => envelopeTs(e)));
      expect(lua.map(([, , sent]) => sent)).toEqual(entries.map(markSent));
      expect(lua.map(([id, ts]) => [id, ts])).toEqual([...fields, ...fields].map((f) => [f.id, f.ts]));
      for (const [i, entry] of entries.entries()) {
        const { id, channel, payload, ts, ttl, collapseKey } = fields[i % fields.length];
        expect(JSON.parse(messageFrame(entry))).toEqual({ event: 'message', data: { id, channel, payload, ts, ...(ttl === undefined ? {} : { ttl }), ...(collapseKey === undefined ? {} : { collapseKey }) } });
      }
    });

    it('both see no envelope in raw entries', async () => {
      const raws = ['plain text', '{"a":1}', '{"rm":5}', '{"rm":{"id":"x"', '"ts":5}}', ''];
      const nonEmpty = raws.filter((r) => r !== '');

      const lua = await luaRead(nonEmpty);

      expect(lua.map(([id]) => id)).toEqual(nonEmpty.map(() => null));
      expect(lua.map(([, ts]) => ts)).toEqual(nonEmpty.map(() => null));
      expect(nonEmpty.map((r) => envelopeId(r))).toEqual(nonEmpty.map(() => undefined));
      expect(raws.map((r) => envelopeTs(r))).toEqual(raws.map(() => undefined));
    });

    it('read raw entries wrapped by read-5.lua as the Lua wrote them: JSON.parse of messageFrame gives exactly the fields', async () => {
      const raws = ['plain', 'q "quotes" \\ back/slash', 'line\nbreak\ttab\u0001', 'ünïcödé ✓ 😀', '{"ts":12}}', '{"a":1}', '12345'];
      const user = uniqueId();
      await client.rpush(keys.queue(user), ...raws);
      await queue.attach(user, 'c1', ME);

      const { rows } = await queue.read(user, 0, 100, NOW);
      const lua = await luaRead(rows.map((r) => r.envelope));

      expect(rows).toHaveLength(raws.length);
      for (const [i, { envelope }] of rows.entries()) {
        const data = JSON.parse(messageFrame(envelope)).data;
        expect(data).toEqual({ id: envelopeId(envelope), channel: keys.userChannel(user), payload: raws[i], ts: NOW });
        expect(Object.keys(data)).toEqual(['id', 'channel', 'payload', 'ts']);
        expect(envelopeTs(envelope)).toBe(NOW);
        expect(lua[i]).toEqual([envelopeId(envelope), NOW, markSent(envelope)]);
        expect(JSON.parse(markSent(envelope))).toEqual({ rm: data, sent: true });
      }
    });
  });

  describe('hash-tagged keys (a Cluster layout) on one Redis', () => {
    it('routes, attaches, reads, acks and detaches with rm:users:{id}:... keys', async () => {
      const tagged = service({}, true);
      const tk = new QueueKeys(true);
      const user = uniqueId();
      const stored = [message(user, '1'), message(user, '2'), message(user, '3')];

      const routed = await routeOne(user, stored, { via: tagged, epoch: 2 });
      const attached = await tagged.attach(user, 'c1', ME);
      const read = await tagged.read(user, 0, 2);
      const acked = await tagged.ack(user, [[envelopeId(read.rows[0].envelope)!, 0]], ME, { position: read.next, limit: 10 });
      const detached = await tagged.detach(user, 'c1', ME);

      expect(tk.queue(user)).toBe(`rm:users:{${user}}:messages`);
      expect(routed.outcome).toBe(RouteOutcome.QueuedNew);
      expect(attached).toMatchObject({ owed: 3, dropped: 0, position: 0 });
      expect(read.rows.map((r) => r.position)).toEqual([0, 1]);
      expect(acked.acked).toBe(1);
      expect(acked.read!.rows).toEqual([{ position: 2, envelope: stored[2].envelope }]);
      expect(detached).toEqual({ requeued: 2, left: 0, removed: 1, lookingChanged: true });
      expect(await queued(user, tk)).toEqual([markSent(stored[1].envelope), markSent(stored[2].envelope)]);
      expect(await state(user, tk)).toEqual({ e: '2', L: AWAY });
      expect(await client.exists(keys.queue(user), keys.state(user), keys.owed(user))).toBe(0);
    });
  });
});
