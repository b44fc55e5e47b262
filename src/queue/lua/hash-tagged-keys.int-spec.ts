import { uniqueId } from '../../../test/support/ids';
import { AWAY, useQueueScripts } from '../../../test/support/queue-scripts';
import { envelopeId, markSent } from '../../protocol/envelope';
import { RouteOutcome } from '../queue.service';
import { QueueKeys } from '../../redis/keys';

/** The queue scripts with hash-tagged keys (the Cluster layout) on one real Redis. Set-up and helpers: test/support/queue-scripts.ts. */
const { client, service, keys, ME, message, routeOne, queued, state } = useQueueScripts();

describe('hash-tagged keys (a Cluster layout) on one Redis', () => {
  it('routes, attaches, reads, acks and detaches with rm:users:{id}:... keys', async () => {
    const tagged = service({}, true);
    const tk = new QueueKeys(true);
    const user = uniqueId();
    const stored = [message(user, '1'), message(user, '2'), message(user, '3')];

    const routed = await routeOne(user, stored, { via: tagged, epoch: 2 });
    const attached = await tagged.attach(user, 'c1', ME);
    const read = await tagged.read(user, 0, 2);
    const acked = await tagged.ack(user, [[envelopeId(read.rows[0].envelope)!, 0]], ME, { position: read.next, limit: 10 });
    const detached = await tagged.detach(user, 'c1', ME);

    expect(tk.queue(user)).toBe(`rm:users:{${user}}:messages`);
    expect(routed.outcome).toBe(RouteOutcome.QueuedNew);
    expect(attached).toMatchObject({ owed: 3, dropped: 0, position: 0 });
    expect(read.rows.map((r) => r.position)).toEqual([0, 1]);
    expect(acked.acked).toBe(1);
    expect(acked.read!.rows).toEqual([{ position: 2, envelope: stored[2].envelope }]);
    expect(detached).toEqual({ requeued: 2, left: 0, removed: 1, lookingChanged: true });
    expect(await queued(user, tk)).toEqual([markSent(stored[1].envelope), markSent(stored[2].envelope)]);
    expect(await state(user, tk)).toEqual({ e: '2', L: AWAY });
    expect(await client.exists(keys.queue(user), keys.state(user), keys.owed(user))).toBe(0);
  });
});
