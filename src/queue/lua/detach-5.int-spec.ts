import { uniqueId } from '../../../test/support/ids';
import { connectionCount } from '../../../test/support/queue-entries';
import { AWAY, LOOKING, useQueueScripts } from '../../../test/support/queue-scripts';
import { envelopeId, envelopeTs, markSent } from '../../protocol/envelope';

/** detach-5.lua against a real Redis, through QueueService.detach. Set-up and helpers: test/support/queue-scripts.ts. */
const { client, queue, keys, ME, OTHER, THIRD, NOW, message, messages, routeOne, queued, owed, state, envelopes, owedUser } = useQueueScripts();

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
