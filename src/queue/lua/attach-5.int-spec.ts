import { uniqueId } from '../../../test/support/ids';
import { LOOKING, useQueueScripts } from '../../../test/support/queue-scripts';
import { formatNotice } from '../../protocol/notices';

/** attach-5.lua against a real Redis, through QueueService.attach. Set-up and helpers: test/support/queue-scripts.ts. */
const { client, queue, service, keys, ME, OTHER, NOW, notices, message, messages, routeOne, queued, state, envelopes, snapshot, owedUser } = useQueueScripts();

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

  it('reads the first owed messages in the same call when asked: the queue taken over in order, from the head position', async () => {
    const user = uniqueId();
    const stored = messages(user, '1', '2', '3');
    await routeOne(user, stored);

    const attached = await queue.attach(user, 'c1', ME, { read: 2 });

    expect(attached).toMatchObject({ owed: 3, position: 0, first: true });
    expect(attached.read).toEqual({ more: true, next: 2, rows: stored.slice(0, 2).map((m, i) => ({ position: i, envelope: m.envelope })) });
    expect(await client.lrange(keys.owed(user), 0, -1)).toEqual(envelopes(stored.slice(0, 2)));
    expect(await queued(user)).toEqual(envelopes(stored.slice(2)));
    const rest = await queue.read(user, attached.read!.next, 10);
    expect(rest.rows).toEqual([{ position: 2, envelope: stored[2].envelope }]);
  });

  it('answers an empty read for a user with nothing owed, and none when not asked', async () => {
    const user = uniqueId();

    const asked = await queue.attach(user, 'c1', ME, { read: 100 });
    const notAsked = await queue.attach(user, 'c2', ME);

    expect(asked.read).toEqual({ more: false, next: 0, rows: [] });
    expect(notAsked.read).toBeUndefined();
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
