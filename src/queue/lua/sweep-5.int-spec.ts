import { uniqueId } from '../../../test/support/ids';
import { entryPayload } from '../../../test/support/queue-entries';
import { useQueueScripts } from '../../../test/support/queue-scripts';

/** The ttl sweep in pages against a real Redis: attach-5.lua's first page, then sweep-5.lua's (QueueService.attach runs both). Set-up and helpers: test/support/queue-scripts.ts. */
const { client, queue, keys, ME, NOW, message, routeOne, queued, state } = useQueueScripts();

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

  it('reads nothing in the attach call while a sweep goes on: the socket reads once the queue is swept', async () => {
    const { user } = await ttlQueue();

    const result = await queue.attach(user, 'c1', ME, { now: NOW, page: PAGE, read: 100 });

    expect(result.read).toBeUndefined();
    expect(await client.llen(keys.owed(user))).toBe(0);
  });

  it('one call sweeps one page and leaves t due; the next pages go on from the position it answered', async () => {
    const { user, kept } = await ttlQueue();

    const first = await attachPage(user, 'c1');
    const afterFirst = { queue: payloads(await queued(user)), t: (await state(user)).t };
    const second = await sweepPage(user, first[6], first[7]);
    const third = await sweepPage(user, second[1], second[2]);

    // Page one: x0 x3 x6 x9 gone, six kept, the sweep goes on at 6 with k1's expiry the earliest so far.
    expect(first.slice(5)).toEqual([4, 6, NOW + 3601_000, '', 1, []]); // no read: none asked (nor while a sweep goes on)
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
