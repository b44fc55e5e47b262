import { uniqueId } from '../../../test/support/ids';
import { AWAY, useQueueScripts } from '../../../test/support/queue-scripts';

/** notify-5.lua and visibility-5.lua (absences) against a real Redis, through QueueService.absence and visibility. Set-up and helpers: test/support/queue-scripts.ts. */
const { client, queue, keys, OTHER, NOW, message, routeOne, state, envelopes, snapshot, ids } = useQueueScripts();

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
