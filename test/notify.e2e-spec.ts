/**
 * Absences (contract 1.2, "A push fallback that knows what the user saw"): the `visibility`
 * frame, one `notify` per absence after NOTIFY_AFTER_SECONDS with the count, first and last
 * ids and collapse keys, `resolved` when everything is acked or the user looked long enough,
 * NOTIFY_REPEAT_SECONDS updates, a visible socket on one instance suppressing the notify
 * for a message stored by another, none for a retracted message. Two instances of the built
 * server on one real redis-server, real WebSocket clients.
 */
import type Redis from 'ioredis';
import { postMessage, retractMessage, PUBLISH_KEY } from './support/http-publish';
import { uniqueId } from './support/ids';
import { useServer } from './support/fixtures';
import type { TestServer } from './support/server';
import { sleep } from './support/traffic';
import { waitFor } from './support/wait';
import type { TestClient } from './support/ws-client';

jest.setTimeout(90_000);

const STREAM = 'rm:events';
type Event = Record<string, string>;

describe('notify and resolved (NOTIFY_AFTER_SECONDS)', () => {
  const env = { EVENTS_STREAM: STREAM, NOTIFY_AFTER_SECONDS: '1', LOG_LEVEL: 'log' };
  const s = useServer([
    { ...env, INSTANCE_ID: uniqueId('a'), PUBLISH_API_KEYS: PUBLISH_KEY },
    { ...env, INSTANCE_ID: uniqueId('b') },
  ]);
  /** a stores POSTs (PUBLISH_API_KEYS set; NOTIFY_REPEAT_SECONDS off), b holds sockets. */
  const [a, b] = s.servers;

  const post = async (server: TestServer, body: Record<string, unknown>): Promise<string> => {
    const answer = await postMessage(server.url, body);
    expect(answer.status).toBe(202);
    return answer.body.id;
  };
  const connect = async (server: TestServer, user: string): Promise<TestClient> => {
    const client = await s.client({ server, autoAck: false });
    await client.identify(user);
    return client;
  };
  /** The user's notify and resolved events, oldest first (on `on`, the suite's Redis unless said). */
  const events = async (user: string, on: Redis = s.r): Promise<Event[]> =>
    (await on.xrange(STREAM, '-', '+'))
      .map(([, f]) => Object.fromEntries(Array.from({ length: f.length / 2 }, (_, i) => [f[2 * i], f[2 * i + 1]])))
      .filter((e) => e.user === user && (e.type === 'notify' || e.type === 'resolved'));
  const waitForEvents = async (user: string, n: number, what: string, on: Redis = s.r): Promise<Event[]> => {
    let last: Event[] = [];
    await waitFor(async () => (last = await events(user, on)).length >= n, 10_000, what).catch((error: Error) => {
      throw new Error(`${error.message}; the user's notify/resolved events: ${JSON.stringify(last)}`);
    });
    return last;
  };
  /** Well past NOTIFY_AFTER_SECONDS and a sweep: anything due would have been written by now. */
  const settle = () => sleep(3000);

  it('an offline user: one notify with the count, ids and collapse keys after NOTIFY_AFTER_SECONDS, none more; resolved once the user looks long enough', async () => {
    const user = uniqueId('away');
    const first = await post(a, { to: user, payload: 'one', collapseKey: 'score' });
    await post(a, { to: user, payload: 'two' });
    const last = await post(a, { to: user, payload: 'three', collapseKey: 'chat' });

    const [notify] = await waitForEvents(user, 1, 'a notify');
    expect(notify).toMatchObject({ type: 'notify', count: '3', first_id: first, last_id: last });
    expect(JSON.parse(notify.collapse_keys).sort()).toEqual(['chat', 'score']);
    expect(Number(notify.age_s)).toBeGreaterThanOrEqual(1);
    await post(a, { to: user, payload: 'four' });
    await settle();
    expect(await events(user)).toHaveLength(1); // one per absence (no NOTIFY_REPEAT_SECONDS)

    // The user comes back and looks for NOTIFY_AFTER_SECONDS: the absence ends, acked or not.
    await connect(b, user);
    const [, resolved] = await waitForEvents(user, 2, 'resolved after looking');
    expect(resolved).toEqual({ type: 'resolved', user });
  });

  it('hidden on every device: notify after NOTIFY_AFTER_SECONDS, resolved when everything is acked, a new absence later', async () => {
    const user = uniqueId('hidden');
    const phone = await connect(b, user);
    const laptop = await connect(a, user);
    phone.send('visibility', { visible: false });
    laptop.send('visibility', { visible: false });
    await sleep(300);
    const id = await post(a, { to: user, payload: 'unseen' });
    const [sent] = await phone.messages(1);
    expect(sent.data.id).toBe(id);

    const [notify] = await waitForEvents(user, 1, 'a notify while hidden everywhere');
    expect(notify).toMatchObject({ type: 'notify', count: '1', first_id: id, last_id: id, collapse_keys: '[]' });
    phone.ack([id]);
    const [, resolved] = await waitForEvents(user, 2, 'resolved once acked');
    expect(resolved).toEqual({ type: 'resolved', user });

    // Still hidden: the next message is a new absence.
    const next = await post(a, { to: user, payload: 'later' });
    const third = (await waitForEvents(user, 3, 'the next absence'))[2];
    expect(third).toMatchObject({ type: 'notify', count: '1', first_id: next });
  });

  it('a visible socket on instance B suppresses the notify for a message stored by instance A; hiding it starts the absence', async () => {
    const user = uniqueId('looking');
    const client = await connect(b, user); // visible until it says otherwise
    const id = await post(a, { to: user, payload: 'seen' });
    await client.messages(1);
    await settle();
    expect(await events(user)).toEqual([]);

    client.send('visibility', { visible: false });
    const [notify] = await waitForEvents(user, 1, 'a notify once hidden');
    expect(notify).toMatchObject({ type: 'notify', count: '1', first_id: id });

    // Looking again for NOTIFY_AFTER_SECONDS without interruption ends the absence, unacked or not.
    client.send('visibility', { visible: true });
    const [, resolved] = await waitForEvents(user, 2, 'resolved after looking');
    expect(resolved.type).toBe('resolved');
    await settle();
    expect(await events(user)).toHaveLength(2);
  });

  it('an absence that ends before its notify leaves no event; a retracted message gets no notify', async () => {
    const acked = uniqueId('quick');
    const client = await connect(b, acked);
    client.send('visibility', { visible: false });
    await sleep(200);
    await post(a, { to: acked, payload: 'read at once' });
    const [m] = await client.messages(1);
    client.ack([m.data.id]);

    const retracted = uniqueId('retracted');
    const id = await post(a, { to: retracted, payload: 'never mind' });
    expect((await retractMessage(a.url, id, { to: retracted })).status).toBe(200);

    await settle();
    expect(await events(acked)).toEqual([]);
    expect(await events(retracted)).toEqual([]);
  });

  it('answers a visibility frame whose visible is not a boolean with BAD_VISIBILITY, and the socket stays open', async () => {
    const client = await connect(b, uniqueId('bad'));
    for (const data of [{}, { visible: 'no' }, { visible: null }, { visible: 0 }]) {
      client.send('visibility', data);
      const error = await client.next((f) => f.event === 'error');
      expect(error.data.code).toBe('BAD_VISIBILITY');
    }
    expect(client.isOpen).toBe(true);

    const early = await s.client({ server: b });
    early.send('visibility', { visible: false }); // before identify: refused like any frame but identify
    expect((await early.next((f) => f.event === 'error')).data.code).toBe('NOT_IDENTIFIED');
  });

  describe('NOTIFY_REPEAT_SECONDS', () => {
    // A Redis of its own: every instance of a deployment runs the sweep with the same settings.
    const own = useServer({ EVENTS_STREAM: STREAM, NOTIFY_AFTER_SECONDS: '1', NOTIFY_REPEAT_SECONDS: '2', PUBLISH_API_KEYS: PUBLISH_KEY, LOG_LEVEL: 'log', INSTANCE_ID: uniqueId('c') });
    const c = own.server;

    it('writes a further notify within the absence once that long has passed, only when the count changed', async () => {
      const on = own.redis.client();
      const user = uniqueId('repeat');
      await post(c, { to: user, payload: 'one' });
      const [first] = await waitForEvents(user, 1, 'the first notify', on);
      expect(first.count).toBe('1');
      await sleep(2500);
      expect(await events(user, on)).toHaveLength(1); // the count did not change

      await post(c, { to: user, payload: 'two' });
      const [, second] = await waitForEvents(user, 2, 'a notify with the new count', on);
      expect(second).toMatchObject({ type: 'notify', count: '2' });
    });
  });
});
