/**
 * Message options of the HTTP and inbox paths (PROTOCOL v1.1): `ttl` drops a message
 * never sent in time (counted in ready.dropped), `collapseKey` / `collapse` lets a newer
 * message replace a queued one never sent; both travel in the `message` frame.
 */
import { uniqueId } from './support/ids';
import { postMessage } from './support/http-publish';
import { PUBLISH_KEY } from './support/http-publish';
import { useServer } from './support/fixtures';
import { waitFor } from './support/wait';

describe('message options: ttl and collapseKey', () => {
  const s = useServer({ PUBLISH_API_KEYS: PUBLISH_KEY });
  const { server } = s;

  const post = async (body: Record<string, unknown>) => {
    const answer = await postMessage(server.url, body);
    expect(answer.status).toBe(202);
    return answer.body.id as string;
  };
  const viaInbox = async (fields: string[]) => {
    const entry = (await s.r.xadd('rm:inbox', '*', ...fields))!;
    await waitFor(async () => ((await s.r.xpending('rm:inbox', 'redmessenger')) as [number])[0] === 0 && (await s.r.get(`rm:users:${fields[1]}:inbox`)) !== null, 10_000, `inbox entry ${entry} stored`);
  };
  const online = async (id: string) => {
    const client = await s.client();
    const ready = await client.identify(id);
    return { client, ready };
  };
  /** Past a moment: the ttl is measured from when the message was stored. */
  const after = (ms: number) => {
    const until = Date.now() + ms;
    return waitFor(() => Date.now() > until, ms + 1000, `${ms} ms`);
  };

  describe('ttl', () => {
    it.each(['http', 'inbox'])('(%s) an offline user back after the ttl gets it counted in ready.dropped, not delivered', async (path) => {
      const id = uniqueId();
      if (path === 'http') await post({ to: id, payload: 'stale', ttl: 1 });
      else await viaInbox(['to', id, 'payload', 'stale', 'ttl', '1']);
      await post({ to: id, payload: 'fresh' });
      await after(1100);

      const { client, ready } = await online(id);

      expect(ready.data.dropped).toBe(1);
      const [first] = await client.messages(1);
      expect(first.data.payload).toBe('fresh');
    });

    it.each(['http', 'inbox'])('(%s) one back before the ttl gets it, with "ttl" in the frame', async (path) => {
      const id = uniqueId();
      if (path === 'http') await post({ to: id, payload: 'in time', ttl: 3600 });
      else await viaInbox(['to', id, 'payload', 'in time', 'ttl', '3600']);

      const { client, ready } = await online(id);

      expect(ready.data.dropped).toBeUndefined(); // ready omits dropped when none was
      const [message] = await client.messages(1);
      expect(message.data).toEqual({ id: expect.any(String), channel: `rm.users.${id}`, payload: 'in time', ttl: 3600, ts: expect.any(Number) });
    });

    it('a message sent once stays owed past its ttl, also after it went back to the queue', async () => {
      const id = uniqueId();
      const first = await online(id);
      const msgId = await post({ to: id, payload: 'sent', ttl: 1 });
      await first.client.messages(1);
      first.client.terminate(); // not acked: it goes back to the queue
      await waitFor(async () => (await s.r.llen(`rm:users:${id}:messages`)) === 1, 5000, 'the message requeued');
      await after(1100);

      const { client, ready } = await online(id);

      expect(ready.data.dropped).toBeUndefined(); // ready omits dropped when none was
      const [again] = await client.messages(1);
      expect(again.data).toMatchObject({ id: msgId, payload: 'sent', ttl: 1 });
    });
  });

  describe('collapseKey', () => {
    it.each(['http', 'inbox'])('(%s) three messages with one key while offline: only the newest is delivered, and none counts as dropped', async (path) => {
      const id = uniqueId();
      for (const n of [1, 2, 3]) {
        if (path === 'http') await post({ to: id, payload: `score ${n}`, collapseKey: 'score' });
        else await viaInbox(['to', id, 'payload', `score ${n}`, 'collapse', 'score']);
      }
      await post({ to: id, payload: 'marker' });

      const { client, ready } = await online(id);

      expect(ready.data.dropped).toBeUndefined(); // ready omits dropped when none was
      const messages = await client.messages(2);
      expect(messages.map((m) => m.data.payload)).toEqual(['score 3', 'marker']);
      expect(messages[0].data.collapseKey).toBe('score');
    });

    it('the newer message goes to the tail; other keys and unkeyed messages stay', async () => {
      const id = uniqueId();
      await post({ to: id, payload: 'a1', collapseKey: 'a' });
      await post({ to: id, payload: 'plain' });
      await post({ to: id, payload: 'b1', collapseKey: 'b' });
      await post({ to: id, payload: 'a2', collapseKey: 'a' });

      const { client } = await online(id);

      expect((await client.messages(3)).map((m) => m.data.payload)).toEqual(['plain', 'b1', 'a2']);
    });

    it('a message already sent, then requeued by a disconnect, is not replaced: the newer comes after it', async () => {
      const id = uniqueId();
      const first = await online(id);
      await post({ to: id, payload: 'old', collapseKey: 'k' });
      await first.client.messages(1);
      first.client.terminate();
      await waitFor(async () => (await s.r.llen(`rm:users:${id}:messages`)) === 1, 5000, 'the message requeued');

      await post({ to: id, payload: 'new', collapseKey: 'k' });
      const { client } = await online(id);

      expect((await client.messages(2)).map((m) => m.data.payload)).toEqual(['old', 'new']);
    });
  });
});

describe('message options: ttl and QUEUE_TTL_SECONDS', () => {
  const s = useServer({ PUBLISH_API_KEYS: PUBLISH_KEY, QUEUE_TTL_SECONDS: '1' });

  it('a message with a ttl expires at whichever comes first', async () => {
    const client = await s.client();
    const id = uniqueId();
    expect((await postMessage(s.server.url, { to: id, payload: 'long ttl', ttl: 3600 })).status).toBe(202);
    const until = Date.now() + 1100;
    await waitFor(() => Date.now() > until, 3000, 'the queue ttl to pass');

    const ready = await client.identify(id);

    expect(ready.data.dropped).toBe(1);
  });
});
