import { uniqueId } from '../../../test/support/ids';
import { LOOKING, useQueueScripts } from '../../../test/support/queue-scripts';

/** expire-5.lua against a real Redis, called directly and through QueueService.expire. Set-up and helpers: test/support/queue-scripts.ts. */
const { client, queue, service, keys, ME, NOW, message, routeOne, queued, state, droppedCounter, envelopes, snapshot } = useQueueScripts();

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
    await ttl.indexNew([user], NOW - 120_000);

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
