import { owedIds } from '../../../test/support/queue-entries';
import { useQueueScripts } from '../../../test/support/queue-scripts';
import { formatNotice, formatNotices } from '../../protocol/notices';
import { UnusableKeys } from '../queue.service';

/** acks.lua (the acks of many users in one call) against a real Redis, through QueueService.ackMany. Set-up: test/support/queue-scripts.ts. */
const { client, queue, keys, ME, OTHER, THIRD, notices, drain, owed, state, snapshot, dumped, owedUser } = useQueueScripts();

describe('acks.lua', () => {
  it('acks the ids of many users in one call, each as ack-5.lua would: the head trimmed, out of order kept in x, unknown ids ignored', async () => {
    const a = await owedUser(3);
    const b = await owedUser(4);
    const c = await owedUser(2);

    const results = await queue.ackMany(
      [
        {
          user: a.user,
          acks: [
            [a.ids[0], 0],
            [a.ids[1], 1],
          ],
        },
        {
          user: b.user,
          acks: [
            [b.ids[2], 2],
            ['not-an-id', 0],
          ],
        },
        { user: c.user, acks: [['nope', -1]] },
      ],
      ME,
    );

    expect(results).toEqual([
      { acked: 2, notified: false, details: undefined },
      { acked: 1, notified: false, details: undefined },
      { acked: 0, notified: false, details: undefined },
    ]);
    expect((await state(a.user)).b).toBe('2');
    expect(await owedIds(client, a.user)).toEqual([a.ids[2]]);
    expect(await state(b.user)).toMatchObject({ x: b.ids[2] });
    expect(await client.llen(keys.owed(b.user))).toBe(4);
    expect(await owedIds(client, c.user)).toEqual(c.ids);
  });

  it('answers which messages were acked when asked (events), an id acked twice counted once', async () => {
    const { user, ids } = await owedUser(2);

    const [result] = await queue.ackMany(
      [
        {
          user,
          acks: [
            [ids[1], 1],
            [ids[1], 1],
            [ids[0], -1],
          ],
        },
      ],
      ME,
      true,
    );

    expect(result).toMatchObject({ acked: 2, notified: false });
    expect(((result as { details: Array<{ id: string }> }).details ?? []).map((d) => d.id).sort()).toEqual([...ids].sort());
    expect(await owed(user)).toEqual([]);
  });

  it('tells each other instance holding sockets of the users in one PUBLISH per call', async () => {
    const a = await owedUser(2, 'c1', OTHER);
    const b = await owedUser(2, 'c2', OTHER);
    await queue.attach(b.user, 'c3', THIRD);
    await queue.attach(a.user, 'c4', ME);
    await drain();

    await queue.ackMany(
      [
        { user: a.user, acks: [[a.ids[0], 0]] },
        { user: b.user, acks: [[b.ids[1], 1]] },
      ],
      ME,
    );

    expect((await notices()).sort()).toEqual(
      [
        [
          OTHER,
          formatNotices([
            { kind: 'acked', user: a.user, ids: [a.ids[0]] },
            { kind: 'acked', user: b.user, ids: [b.ids[1]] },
          ]),
        ],
        [THIRD, formatNotice({ kind: 'acked', user: b.user, ids: [b.ids[1]] })],
      ].sort(),
    );
  });

  it('skips a user whose keys have another type with an UnusableKeys error, writing nothing of it; the others are acked', async () => {
    const good = await owedUser(2);
    const badState = await owedUser(2);
    const badOwed = await owedUser(2);
    await client.del(keys.state(badState.user));
    await client.sadd(keys.state(badState.user), 'x');
    await client.del(keys.owed(badOwed.user));
    await client.set(keys.owed(badOwed.user), 'foo');
    const before = [await dumped(badState.user), await dumped(badOwed.user)];

    const results = await queue.ackMany(
      [
        { user: badState.user, acks: [[badState.ids[0], 0]] },
        { user: good.user, acks: [[good.ids[0], 0]] },
        { user: badOwed.user, acks: [[badOwed.ids[0], 0]] },
      ],
      ME,
    );

    expect(results[0]).toBeInstanceOf(UnusableKeys);
    expect(String(results[0])).toContain(`${keys.state(badState.user)} is a set, not a hash`);
    expect(results[1]).toEqual({ acked: 1, notified: false, details: undefined });
    expect(results[2]).toBeInstanceOf(UnusableKeys);
    expect(String(results[2])).toContain(`${keys.owed(badOwed.user)} is a string, not a list`);
    expect(await owedIds(client, good.user)).toEqual([good.ids[1]]);
    expect([await dumped(badState.user), await dumped(badOwed.user)]).toEqual(before);
  });

  it('checks its arguments before its first write: a bad position acks nothing of any user', async () => {
    const a = await owedUser(2);
    const b = await owedUser(2);
    const before = [await snapshot(a.user), await snapshot(b.user)];
    const keysOf = [keys.owed(a.user), keys.state(a.user), keys.owed(b.user), keys.state(b.user)];

    const call = client.rmAcks(4, keysOf as never, [keys.instanceChannelPrefix, ME, '0', a.user, 1, a.ids[0], 0, b.user, 1, b.ids[0], 'first'] as never);

    await expect(call).rejects.toThrow(/bad argument/);
    expect([await snapshot(a.user), await snapshot(b.user)]).toEqual(before);
  });
});
