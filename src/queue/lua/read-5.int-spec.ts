import { uniqueId } from '../../../test/support/ids';
import { owedIds } from '../../../test/support/queue-entries';
import { useQueueScripts } from '../../../test/support/queue-scripts';
import { envelopeId, messageFrame } from '../../protocol/envelope';

/** read-5.lua against a real Redis, through QueueService.read. Set-up and helpers: test/support/queue-scripts.ts. */
const { client, queue, service, keys, ME, OTHER, NOW, message, messages, routeOne, queued, owed, droppedCounter, envelopes, snapshot, channelOf, owedUser } = useQueueScripts();

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
