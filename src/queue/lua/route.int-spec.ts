import { uniqueId } from '../../../test/support/ids';
import { monitorRedis } from '../../../test/support/redis-monitor';
import { entryPayload } from '../../../test/support/queue-entries';
import { useQueueScripts } from '../../../test/support/queue-scripts';
import { markSent, messageFrame } from '../../protocol/envelope';
import { formatNotice, formatNotices, parseNotices, type MessageNotice } from '../../protocol/notices';
import { RouteOutcome, UnusableKeys, type RouteGroup } from '../queue.service';
import { QueueKeys } from '../../redis/keys';

/** route.lua against a real Redis, through QueueService.route. Set-up and helpers: test/support/queue-scripts.ts. */
const { client, queue, service, keys, ME, OTHER, THIRD, NOW, notices, drain, message, messages, routeOne, queued, owed, state, droppedCounter, envelopes, snapshot, dumped, messageNotice } = useQueueScripts();

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

  it('takes the documented layout: the message table once, then runs of groups (count, epoch, entry, record, value, n, message numbers, user ids)', async () => {
    const [c, d] = [uniqueId(), uniqueId()];
    const m = message(c, 'shared');

    const answer = await client.rmRoute(
      12,
      ...keys.userKeys(c),
      keys.collapseIndex(c),
      ...keys.userKeys(d),
      keys.collapseIndex(d),
      keys.instanceChannelPrefix,
      ME,
      0,
      '0',
      0,
      1,
      '',
      '',
      m.envelope,
      2,
      3,
      '',
      0,
      '',
      1,
      1,
      c,
      d,
    );

    // Groups with every figure 0 are not listed after the outcomes.
    expect(answer).toEqual(['nn']);
    expect(await queued(c)).toEqual([m.envelope]);
    expect(await queued(d)).toEqual([m.envelope]);
    expect((await state(d)).e).toBe('3');
  });

  it('checks every argument before the first write: a malformed later run fails the call and nothing is stored', async () => {
    const a = uniqueId();
    const b = uniqueId();
    const m = message(a, 'a');
    const table = [1, '', '', m.envelope];
    // ARGV: 5 of the call, the table (6-9), a's run (10-17), then b's run from 18.
    const route = (messageTable: Array<string | number>, ...runB: Array<string | number>) =>
      client.rmRoute(12, ...keys.userKeys(a), keys.collapseIndex(a), ...keys.userKeys(b), keys.collapseIndex(b), keys.instanceChannelPrefix, ME, 0, '0', 0, ...messageTable, 1, 3, '', 0, '', 1, 1, a, ...runB);

    const settled = await Promise.allSettled([
      route(table, 'one', 0, '', 0, '', 1, 1, b),
      route(table, 0, 0, '', 0, '', 1, 1),
      route(table, 1, 'new', '', 0, '', 1, 1, b),
      route(table, 1, 0, '', 0, '', 1, 2, b),
      route(table, 1, 0, '', 0, '', 1, 1),
      route(table, 1, 0, '', 0, '', 1, 1, b, 'extra'),
      route(table, 1, 0, '', 99, '', 1, 1, b),
      route([1, '', 'soon', m.envelope], 1, 0, '', 0, '', 1, 1, b),
      route([2, '', '', m.envelope], 1, 0, '', 0, '', 1, 1, b),
    ]);

    expect(settled.map((r) => r.status)).toEqual(Array(9).fill('rejected'));
    const reasons = settled.map((r) => String((r as PromiseRejectedResult).reason));
    expect(reasons[0]).toMatch(/bad argument 18: a whole number from 1 expected/);
    expect(reasons[1]).toMatch(/bad argument 18: a whole number from 1 expected/);
    expect(reasons[2]).toMatch(/bad argument 19: a number expected/);
    expect(reasons[3]).toMatch(/bad argument 24: a message number expected/);
    expect(reasons[4]).toMatch(/do not make whole groups/);
    expect(reasons[5]).toMatch(/bad argument 26: a whole number from 1 expected/);
    expect(reasons[6]).toMatch(/bad argument 21: the KEYS index of an idempotency record expected/);
    expect(reasons[7]).toMatch(/bad argument 8: a number expected/);
    expect(reasons[8]).toMatch(/bad argument/);
    expect(await snapshot(a)).toEqual({ queue: [], owed: [], state: {}, dropped: null, mark: null });
    expect(await snapshot(b)).toEqual({ queue: [], owed: [], state: {}, dropped: null, mark: null });
  });

  describe('a group message to many members', () => {
    it('sends the message once per call, and each member gets its own outcome and figures', async () => {
      const members = Array.from({ length: 8 }, () => uniqueId());
      const [offline, elsewhere, mineToo, waiting, badQueue, alsoOffline, fenced] = members;
      await queue.attach(elsewhere, 'c1', OTHER);
      await queue.attach(mineToo, 'c1', ME);
      await routeOne(waiting, messages(waiting, 'old'));
      await queue.attach(waiting, 'c1', OTHER);
      await client.set(keys.queue(badQueue), 'foo');
      await routeOne(fenced, messages(fenced, 'at 9'), { epoch: 9 });
      await drain();
      const shared = message(offline, 'to all');
      const groups: RouteGroup[] = members.map((user) => ({ user, messages: [shared], epoch: 5 }));
      const monitor = await monitorRedis(client.options.port!, (line) => line.includes('"evalsha"'));

      const results = await queue.route(groups, ME);

      await client.ping();
      monitor.close();
      expect(monitor.lines).toHaveLength(1);
      expect(monitor.lines[0].split('to all')).toHaveLength(2);
      expect(results.slice(0, 4)).toEqual([
        { outcome: RouteOutcome.QueuedNew, position: 0, dropped: 0, refused: 0, replaced: 0, mine: false },
        { outcome: RouteOutcome.Owed, position: 0, dropped: 0, refused: 0, replaced: 0, mine: false },
        { outcome: RouteOutcome.Owed, position: 0, dropped: 0, refused: 0, replaced: 0, mine: true },
        { outcome: RouteOutcome.QueuedBehind, position: 0, dropped: 0, refused: 0, replaced: 0, mine: false },
      ]);
      expect(results[4]).toBeInstanceOf(UnusableKeys);
      expect(String(results[4])).toMatch(new RegExp(`${keys.queue(badQueue)} is a string, not a list`));
      expect(results.slice(5)).toEqual([
        { outcome: RouteOutcome.QueuedNew, position: 0, dropped: 0, refused: 0, replaced: 0, mine: false },
        { outcome: RouteOutcome.Fenced, position: 0, dropped: 0, refused: 0, replaced: 0, mine: false },
        { outcome: RouteOutcome.QueuedNew, position: 0, dropped: 0, refused: 0, replaced: 0, mine: false },
      ]);
      for (const user of [offline, alsoOffline, members[7]]) expect(await queued(user)).toEqual([shared.envelope]);
      expect(await owed(elsewhere)).toEqual([shared.envelope]);
      expect(await owed(mineToo)).toEqual([shared.envelope]);
      expect((await queued(waiting)).map(entryPayload)).toEqual(['old', 'to all']);
      expect(await client.get(keys.queue(badQueue))).toBe('foo');
      expect((await queued(fenced)).map(entryPayload)).toEqual(['at 9']);
      expect(await notices()).toEqual([[OTHER, formatNotices([messageNotice(elsewhere, 0, shared.envelope), { kind: 'sync', user: waiting }])]]);
    });

    it('routes more members than a few calls take, each stored once and told to the caller as its call is answered', async () => {
      const members = Array.from({ length: 6500 }, () => uniqueId());
      const shared = message(members[0], 'to many');
      const told: Array<[number, unknown]> = [];

      const results = await queue.route(
        members.map((user) => ({ user, messages: [shared], epoch: 4 })),
        ME,
        false,
        (g, result) => told.push([g, result]),
      );

      expect(told.map(([g]) => g)).toEqual(members.map((_, g) => g));
      expect(told.every(([g, result]) => result === results[g])).toBe(true);
      expect(new Set(results.map((r) => (r as { outcome: string }).outcome))).toEqual(new Set([RouteOutcome.QueuedNew]));
      const lengths = await Promise.all(members.map((user) => client.llen(keys.queue(user))));
      expect(lengths.every((n) => n === 1)).toBe(true);
    });

    it('routes a group message with hash-tagged keys in one call per slot, the message once in each', async () => {
      const tagged = service({}, true);
      const taggedKeys = new QueueKeys(true);
      const members = Array.from({ length: 3000 }, () => uniqueId());
      const shared = message(members[0], 'per slot');

      const results = await tagged.route(
        members.map((user) => ({ user, messages: [shared], epoch: 2 })),
        ME,
      );

      expect(new Set(results.map((r) => (r as { outcome: string }).outcome))).toEqual(new Set([RouteOutcome.QueuedNew]));
      const lengths = await Promise.all(members.map((user) => client.llen(taggedKeys.queue(user))));
      expect(lengths.every((n) => n === 1)).toBe(true);
      expect(await client.lrange(taggedKeys.queue(members[1]), 0, -1)).toEqual([shared.envelope]);
    });

    it('keeps each member in order with its own messages of the call, whatever the runs', async () => {
      const [a, b, c] = [uniqueId(), uniqueId(), uniqueId()];
      const first = message(a, 'group 1');
      const second = message(a, 'group 2');
      const own = message(b, 'own');
      const groups: RouteGroup[] = [
        { user: a, messages: [first, second], epoch: 2 },
        { user: b, messages: [first, own, second], epoch: 2 },
        { user: c, messages: [first, second], epoch: 2 },
        { user: uniqueId(), messages: [first, second], epoch: 3 },
      ];

      const results = await queue.route(groups, ME);

      expect(results.map((r) => (r as { outcome: string }).outcome)).toEqual(Array(4).fill(RouteOutcome.QueuedNew));
      expect((await queued(a)).map(entryPayload)).toEqual(['group 1', 'group 2']);
      expect((await queued(b)).map(entryPayload)).toEqual(['group 1', 'own', 'group 2']);
      expect((await queued(c)).map(entryPayload)).toEqual(['group 1', 'group 2']);
      expect((await state(groups[3].user)).e).toBe('3');
    });

    it("keeps each member's idempotency record and inbox mark, and recognises a repeat for each", async () => {
      const members = [uniqueId(), uniqueId(), uniqueId()];
      const shared = message(members[0], 'once', { collapseKey: 'k', ttl: 60 });
      const idempotency = { scope: uniqueId('scope'), hash: 'abc', answer: '{"id":"m1"}' };
      const groups = (hash = 'abc'): RouteGroup[] => members.map((user) => ({ user, messages: [shared], epoch: 0, inboxEntry: '5-1', idempotency: { ...idempotency, hash } }));

      const first = await queue.route(groups(), ME);
      const again = await queue.route(
        groups().map((g) => ({ ...g, inboxEntry: undefined })),
        ME,
      );
      const other = await queue.route(
        groups('def').map((g) => ({ ...g, inboxEntry: undefined })),
        ME,
      );
      const duplicate = await queue.route(groups(), ME);

      expect(first.map((r) => (r as { outcome: string }).outcome)).toEqual(Array(3).fill(RouteOutcome.QueuedNew));
      expect(again).toEqual(Array(3).fill({ outcome: RouteOutcome.Repeated, position: 0, dropped: 0, refused: 0, replaced: 0, mine: false, answer: '{"id":"m1"}' }));
      expect(other.map((r) => (r as { outcome: string }).outcome)).toEqual(Array(3).fill(RouteOutcome.Conflict));
      expect(duplicate.map((r) => (r as { outcome: string }).outcome)).toEqual(Array(3).fill(RouteOutcome.Duplicate));
      for (const user of members) {
        expect(await queued(user)).toEqual([shared.envelope]);
        expect(await client.get(keys.idempotency(user, idempotency.scope))).toBe('abc|{"id":"m1"}');
        expect(await client.get(keys.inboxMark(user))).toBe('5-1');
        expect(await client.hgetall(keys.collapseIndex(user))).toEqual({ '"k"': shared.envelope });
        expect((await state(user)).t).toBe(String(NOW + 60_000));
      }
    });

    it("replaces each member's queued message with the same collapse key", async () => {
      const members = [uniqueId(), uniqueId()];
      const older = message(members[0], 'score 1-0', { collapseKey: 'score' });
      const plain = message(members[0], 'chat');
      const newer = message(members[0], 'score 2-0', { collapseKey: 'score' });
      await queue.route(
        members.map((user) => ({ user, messages: [older, plain], epoch: 0 })),
        ME,
      );

      const results = await queue.route(
        members.map((user) => ({ user, messages: [newer], epoch: 0 })),
        ME,
      );

      expect(results).toEqual(Array(2).fill({ outcome: RouteOutcome.Queued, position: 0, dropped: 0, refused: 0, replaced: 1, mine: false }));
      for (const user of members) expect(await queued(user)).toEqual([plain.envelope, newer.envelope]);
    });
  });

  it('skips a user whose key has another type (before the first write) with an UnusableKeys error; the others store once', async () => {
    const users = Array.from({ length: 7 }, () => uniqueId());
    const [fine, badQueue, badOwed, online, badIndex, badMark, badRecord] = users;
    await client.hset(keys.state(fine), 'e', 1);
    await client.set(keys.queue(badQueue), 'foo');
    await queue.attach(badOwed, 'c1', OTHER);
    await client.sadd(keys.owed(badOwed), 'foo');
    await queue.attach(online, 'c1', OTHER);
    await client.rpush(keys.queue(badIndex), 'older');
    await client.set(keys.collapseIndex(badIndex), 'foo');
    await client.rpush(keys.inboxMark(badMark), 'foo');
    const idempotency = { scope: 's', hash: 'h', answer: '{"id":"1"}' };
    await client.rpush(keys.idempotency(badRecord, idempotency.scope), 'foo');
    const groups: RouteGroup[] = users.map((user) => ({ user, messages: messages(user, 'a', 'b'), epoch: 0 }));
    groups[4].messages[1].collapseKey = 'k';
    groups[5].inboxEntry = '1-1';
    groups[6].idempotency = idempotency;
    const skipped = () => Promise.all([badQueue, badOwed, badIndex, badMark, badRecord].map((user) => dumped(user, keys.idempotency(user, idempotency.scope))));
    const before = await skipped();

    const results = await queue.route(groups, ME);

    expect(results.map((r) => r instanceof UnusableKeys)).toEqual([false, true, true, false, true, true, true]);
    expect(String(results[1])).toMatch(new RegExp(`${keys.queue(badQueue)} is a string, not a list`));
    expect(String(results[2])).toMatch(new RegExp(`${keys.owed(badOwed)} is a set, not a list`));
    expect(String(results[4])).toMatch(new RegExp(`${keys.collapseIndex(badIndex)} is a string, not a hash`));
    expect(String(results[5])).toMatch(new RegExp(`${keys.inboxMark(badMark)} is a list, not a string`));
    expect(String(results[6])).toMatch(/is a list, not a string/);
    expect((await queued(fine)).map(entryPayload)).toEqual(['a', 'b']);
    expect((await owed(online)).map(entryPayload)).toEqual(['a', 'b']);
    // Nothing of a skipped user written: not even the epoch or the state.
    expect(await skipped()).toEqual(before);
    expect(await client.get(keys.queue(badQueue))).toBe('foo');
    expect(await client.lrange(keys.queue(badIndex), 0, -1)).toEqual(['older']);
  });

  it('takes a dropped counter that is not an integer as unusable only when the cap may be passed (only then is it written)', async () => {
    const capped = service({ maxQueueLength: 3, queueOverflow: 'drop-oldest' });
    const [under, past] = [uniqueId(), uniqueId()];
    for (const user of [under, past]) await client.set(keys.dropped(user), 'not a number');

    const [a, b] = await capped.route(
      [
        { user: under, messages: messages(under, 'a', 'b'), epoch: 0 },
        { user: past, messages: messages(past, 'a', 'b', 'c', 'd'), epoch: 0 },
      ],
      ME,
    );

    expect(a).toMatchObject({ outcome: RouteOutcome.QueuedNew, dropped: 0 });
    expect((await queued(under)).map(entryPayload)).toEqual(['a', 'b']);
    expect(b).toBeInstanceOf(UnusableKeys);
    expect(String(b)).toMatch(new RegExp(`${keys.dropped(past)} is not an integer`));
    expect(await client.llen(keys.queue(past))).toBe(0);
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
