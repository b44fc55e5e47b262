import { uniqueId } from '../../../test/support/ids';
import { owedCount, owedIds } from '../../../test/support/queue-entries';
import { useQueueScripts } from '../../../test/support/queue-scripts';
import { envelopeId } from '../../protocol/envelope';
import { formatNotice } from '../../protocol/notices';

/** ack-5.lua against a real Redis, through QueueService.ack. Set-up and helpers: test/support/queue-scripts.ts. */
const { client, queue, keys, ME, OTHER, THIRD, NOW, notices, drain, messages, routeOne, owed, state, envelopes, snapshot, channelOf, owedUser } = useQueueScripts();

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
