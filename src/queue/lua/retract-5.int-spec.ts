import { uniqueId } from '../../../test/support/ids';
import { useQueueScripts } from '../../../test/support/queue-scripts';
import { envelopeId, markSent } from '../../protocol/envelope';
import { formatNotice } from '../../protocol/notices';

/** retract-5.lua against a real Redis, through QueueService.retract. Set-up and helpers: test/support/queue-scripts.ts. */
const { queue, service, ME, OTHER, THIRD, NOW, notices, drain, messages, routeOne, queued, owed, state, envelopes, ids, owedUser } = useQueueScripts();

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
