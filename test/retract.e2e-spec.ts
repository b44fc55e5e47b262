/**
 * DELETE /v1/messages/<id> (PROTOCOL 1.2, "Retracting a message"): a queued message is removed,
 * a sent and unacked one is no longer owed and its sockets get `retract`, one that went back
 * to the queue is answered "sent" and the next socket is told right after `ready`; acked or
 * unknown ids are 404; a group's members each; the route's 400/401/404; across two instances;
 * no `unread` event and the per-user view's counts. Real redis-server, the built server, real
 * WebSocket clients.
 */
import WebSocket from 'ws';
import { RedMessengerClient, type ClientOptions } from '../client/src/index';
import { uniqueId } from './support/ids';
import { PUBLISH_KEY, postMessage, retractMessage } from './support/http-publish';
import { useServer } from './support/fixtures';
import type { TestServer } from './support/server';
import { waitFor } from './support/wait';
import type { Frame, TestClient } from './support/ws-client';

jest.setTimeout(90_000);

const STREAM = 'rm:events';
const ADMIN_KEY = 'test-admin-key-0123456789';

describe('DELETE /v1/messages/<id>', () => {
  const env = { EVENTS_STREAM: STREAM, UNREAD_AFTER_SECONDS: '1', LOG_LEVEL: 'log' };
  const s = useServer([
    { ...env, INSTANCE_ID: uniqueId('a'), PUBLISH_API_KEYS: PUBLISH_KEY, ADMIN_API_KEYS: ADMIN_KEY },
    { ...env, INSTANCE_ID: uniqueId('b') },
  ]);
  /** a takes DELETEs and POSTs (PUBLISH_API_KEYS set); b holds sockets, its publish routes off (PUBLISH_API_KEYS unset). */
  const [a, b] = s.servers;

  const post = async (body: Record<string, unknown>): Promise<string> => {
    const answer = await postMessage(a.url, body);
    expect(answer.status).toBe(202);
    return answer.body.id;
  };
  const retract = (id: string, query: Record<string, string>, opts?: { key?: string | null }) => retractMessage(a.url, id, query, opts);
  const connect = async (server: TestServer, user: string): Promise<TestClient> => {
    const client = await s.client({ server });
    await client.identify(user);
    return client;
  };
  const queueIds = async (user: string) => (await s.r.lrange(`rm:users:${user}:messages`, 0, -1)).map((e) => JSON.parse(e).rm.id);
  const view = async (user: string): Promise<any> => (await fetch(`${a.url}/v1/users/${user}`, { headers: { authorization: `Bearer ${ADMIN_KEY}` }, signal: AbortSignal.timeout(5000) })).json();
  /** The frames after `ready`, up to and including the first message frame. */
  const afterReady = (client: TestClient): Frame[] => {
    const start = client.frames.findIndex((f) => f.event === 'ready');
    return client.frames.slice(start + 1);
  };
  const events = async (user: string) =>
    (await s.r.xrange(STREAM, '-', '+')).map(([, f]) => Object.fromEntries(Array.from({ length: f.length / 2 }, (_, i) => [f[2 * i], f[2 * i + 1]]))).filter((e) => e.user === user);

  it('a queued message: removed, 200 queued, never delivered at the next identify', async () => {
    const user = uniqueId('q');
    const id = await post({ to: user, payload: 'take me back' });
    await post({ to: user, payload: 'keep me' });

    expect(await retract(id, { to: user })).toEqual({ status: 200, body: { retracted: 'queued' } });
    expect(await queueIds(user)).toHaveLength(1);
    expect(await view(user)).toMatchObject({ queued: 1, owed: 0 });

    const client = await connect(b, user);
    expect(client.frames.find((f) => f.event === 'ready')!.data.queued).toBe(1);
    const [message] = await client.messages(1);
    expect(message.data.payload).toBe('keep me');
    expect(afterReady(client).map((f) => f.event)).toEqual(['message']); // no retract: it was never sent
    expect(await retract(id, { to: user })).toMatchObject({ status: 404, body: { error: { code: 'NOT_FOUND' } } });
  });

  it('a sent and unacked message: the socket gets retract, 200 sent, a reconnect does not bring it back', async () => {
    const user = uniqueId('s');
    const client = await connect(a, user);
    const id = await post({ to: user, payload: 'sent' });
    await client.messages(1);
    expect(await view(user)).toMatchObject({ owed: 1 });

    expect(await retract(id, { to: user })).toEqual({ status: 200, body: { retracted: 'sent' } });
    expect((await client.next((f) => f.event === 'retract')).data).toEqual({ id });
    expect(await view(user)).toMatchObject({ owed: 0, queued: 0 });
    // Acking it now changes nothing (it is no longer owed).
    client.ack([id]);
    await client.close();
    await waitFor(async () => (await s.r.hlen(`rm:users:${user}:state`)) === 0 || !(await s.r.exists(`rm:users:${user}:state`)), 5000, 'the socket detached');

    await post({ to: user, payload: 'after' });
    const again = await connect(b, user);
    expect(again.frames.find((f) => f.event === 'ready')!.data.queued).toBe(1);
    const [message] = await again.messages(1);
    expect(message.data.payload).toBe('after');
    expect(afterReady(again).map((f) => f.event)).toEqual(['message']);
  });

  it('a sent message that went back to the queue (its socket closed): 200 sent, the next socket gets retract right after ready', async () => {
    const user = uniqueId('rq');
    const client = await connect(a, user);
    const id = await post({ to: user, payload: 'shown, then the app went away' });
    await client.messages(1);
    await client.close();
    await waitFor(async () => (await queueIds(user)).includes(id), 5000, 'the message back in the queue');
    await post({ to: user, payload: 'later' });

    expect(await retract(id, { to: user })).toEqual({ status: 200, body: { retracted: 'sent' } });
    expect(await queueIds(user)).toHaveLength(1);

    const next = await connect(b, user);
    await next.messages(1);
    const frames = afterReady(next);
    expect(frames.map((f) => f.event)).toEqual(['retract', 'message']);
    expect(frames[0].data).toEqual({ id });
    expect(frames[1].data.payload).toBe('later');
    // Told once: the socket after it is not told again.
    next.ack([frames[1].data.id]);
    await waitFor(async () => (await view(user)).owed === 0, 5000, 'the ack stored');
    await next.close();
    const third = await connect(b, user);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(afterReady(third)).toEqual([]);
  });

  it('an acked message, an unknown id, one retracted already: 404', async () => {
    const user = uniqueId('ack');
    const client = await connect(a, user);
    const id = await post({ to: user, payload: 'read' });
    await client.messages(1);
    client.ack([id]);
    await waitFor(async () => (await view(user)).owed === 0, 5000, 'the ack stored');

    expect(await retract(id, { to: user })).toMatchObject({ status: 404, body: { error: { code: 'NOT_FOUND', message: expect.any(String) } } });
    expect((await retract('no.such', { to: user })).status).toBe(404);
    expect((await retract(id, { to: uniqueId('never') })).status).toBe(404);
    expect((await retract('a,b|c', { to: user })).status).toBe(404); // not an id: never stored
  });

  it('a group message: one id for every member, retracted for each member now in the set', async () => {
    const cid = uniqueId('g');
    const [offline, online, reader] = [uniqueId('m'), uniqueId('m'), uniqueId('m')];
    await s.r.sadd(`rm:channels:${cid}:subscribers`, offline, online, reader);
    const onlineClient = await connect(b, online);
    const readerClient = await connect(a, reader);

    const answer = await postMessage(a.url, { group: cid, payload: 'to all' });
    expect(answer).toEqual({ status: 202, body: { id: expect.any(String), recipients: 3 } });
    const id = answer.body.id;
    const [[got], [read]] = await Promise.all([onlineClient.messages(1), readerClient.messages(1)]);
    expect(got.data.id).toBe(id);
    expect(read.data.id).toBe(id);
    expect(await queueIds(offline)).toEqual([id]);
    readerClient.ack([id]);
    await waitFor(async () => (await view(reader)).owed === 0, 5000, 'the reader acked');

    expect(await retract(id, { group: cid })).toEqual({ status: 200, body: { retracted: 2 } });
    expect((await onlineClient.next((f) => f.event === 'retract')).data).toEqual({ id });
    expect(await queueIds(offline)).toEqual([]);
    expect(await view(online)).toMatchObject({ owed: 0, queued: 0 });
    expect(readerClient.frames.some((f) => f.event === 'retract')).toBe(false);
    expect((await retract(id, { group: cid })).status).toBe(404);
    expect((await retract(id, { group: uniqueId('empty') })).status).toBe(404);
  });

  it('across instances: the socket on B, the DELETE to A; the socket reads on after it', async () => {
    const user = uniqueId('x');
    const client = await connect(b, user);
    const first = await post({ to: user, payload: 'one' });
    await client.messages(1);

    expect(await retract(first, { to: user })).toEqual({ status: 200, body: { retracted: 'sent' } });
    expect((await client.next((f) => f.event === 'retract')).data).toEqual({ id: first });
    await post({ to: user, payload: 'two' });
    const [, second] = await client.messages(2);
    expect(second.data.payload).toBe('two');
  });

  it('400, 401 and 404 (off) answers', async () => {
    const user = uniqueId('bad');
    const id = await post({ to: user, payload: 'x' });
    expect(await retract(id, {}, {})).toMatchObject({ status: 400, body: { error: { code: 'BAD_REQUEST', message: 'give exactly one of to and group' } } });
    expect((await retract(id, { to: user, group: 'g' })).status).toBe(400);
    expect(await retract(id, { to: '-bad' })).toMatchObject({ status: 400, body: { error: { code: 'BAD_REQUEST', message: expect.stringMatching(/^to must be an id/) } } });
    expect(await retract(id, { group: 'bad group' })).toMatchObject({ status: 400, body: { error: { message: expect.stringMatching(/^group must be an id/) } } });
    expect(await retract(id, { to: user }, { key: null })).toMatchObject({ status: 401, body: { error: { code: 'UNAUTHORIZED' } } });
    expect((await retract(id, { to: user }, { key: 'wrong-key-0123456789abcdef' })).status).toBe(401);
    // Off on B (no PUBLISH_API_KEYS): as any unknown route.
    const off = await retractMessage(b.url, id, { to: user });
    expect(off).toEqual({ status: 404, body: { statusCode: 404, error: 'Not Found', message: expect.stringMatching(/^Cannot DELETE \/v1\/messages\//) } });
    expect(await queueIds(user)).toEqual([id]); // none of these touched it
  });

  it('the SDK emits retract with the id, live and right after the next ready', async () => {
    const user = uniqueId('sdk');
    const sdk = new RedMessengerClient({ url: b.wsUrl, id: user, WebSocket: WebSocket as unknown as ClientOptions['WebSocket'] });
    const handled: string[] = [];
    const retracted: string[] = [];
    sdk.on('message', (m) => {
      handled.push(m.id);
      if (m.payload === 'hold') return new Promise(() => undefined); // shown, never acked
    });
    sdk.on('retract', (id) => retracted.push(id));
    try {
      await sdk.connect();
      const live = await post({ to: user, payload: 'live' });
      await waitFor(() => handled.includes(live), 5000, 'the SDK handled it');
      // Handled and acked by the SDK: nothing left to retract.
      await waitFor(async () => (await view(user)).owed === 0, 5000, 'the SDK acked it');
      expect((await retract(live, { to: user })).status).toBe(404);
      const held = await post({ to: user, payload: 'hold' });
      await waitFor(() => handled.includes(held), 5000, 'the SDK handing it out');
      expect((await retract(held, { to: user })).body).toEqual({ retracted: 'sent' });
      await waitFor(() => retracted.includes(held), 5000, 'the SDK emitted retract');

      // Sent to a socket that closed unacked, retracted while the app was away: told after the next ready.
      sdk.close();
      const raw = await connect(b, user);
      const away = await post({ to: user, payload: 'away' });
      await raw.messages(1);
      await raw.close();
      await waitFor(async () => (await queueIds(user)).includes(away), 5000, 'the message back in the queue');
      expect((await retract(away, { to: user })).body).toEqual({ retracted: 'sent' });
      await sdk.connect();
      await waitFor(() => retracted.includes(away), 5000, 'the SDK emitted retract');
      expect(handled).toEqual([live, held]);
    } finally {
      sdk.close();
    }
  });

  it('no unread event for a retracted message, queued or sent (UNREAD_AFTER_SECONDS=1)', async () => {
    const offline = uniqueId('uo');
    const queuedId = await post({ to: offline, payload: 'retracted' });
    const keptId = await post({ to: offline, payload: 'kept' });
    const online = uniqueId('un');
    const client = await connect(b, online);
    const sentId = await post({ to: online, payload: 'retracted' });
    const sentKept = await post({ to: online, payload: 'kept' });
    await client.messages(2);

    expect((await retract(queuedId, { to: offline })).body).toEqual({ retracted: 'queued' });
    expect((await retract(sentId, { to: online })).body).toEqual({ retracted: 'sent' });

    await waitFor(async () => (await events(offline)).some((e) => e.type === 'unread') && (await events(online)).some((e) => e.type === 'unread'), 15_000, 'the unread events of the kept messages');
    await waitFor(async () => (await s.r.zcard('rm:unread')) === 0, 10_000, 'the unread index emptied');
    expect((await events(offline)).filter((e) => e.type === 'unread').map((e) => e.id)).toEqual([keptId]);
    expect((await events(online)).filter((e) => e.type === 'unread').map((e) => e.id)).toEqual([sentKept]);
    expect((await events(online)).filter((e) => e.type === 'acked')).toEqual([]);
  });
});
