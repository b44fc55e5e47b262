/**
 * GET /v1/users/<id> (README, Per-user view): read from Redis, so two instances give
 * the same answer; before and after identify, ack and disconnect; 401 without a valid
 * key, 400 for an invalid id, 404 while ADMIN_API_KEYS is unset.
 */
import { uniqueId } from './support/ids';
import { connectionCount } from './support/queue-entries';
import { useServer } from './support/fixtures';
import { startRedis } from './support/redis';
import { startServer, type TestServer } from './support/server';
import { waitFor } from './support/wait';

jest.setTimeout(60_000);

const KEY = 'admin-key-0123456789abcdef';
const OTHER_KEY = 'second-admin-key-0123456789';

const env = { ADMIN_API_KEYS: `${KEY}, ${OTHER_KEY}`, MAX_QUEUE_LENGTH: '3', LOG_LEVEL: 'log' };
const s = useServer(
  [
    { ...env, INSTANCE_ID: uniqueId('a') },
    { ...env, INSTANCE_ID: uniqueId('b') },
  ],
  { sequential: true },
);
const [a, b] = s.servers;

function get(server: TestServer, path: string, key: string | null = KEY) {
  return fetch(`${server.url}${path}`, { headers: key === null ? {} : { authorization: `Bearer ${key}` }, signal: AbortSignal.timeout(5000) });
}

/** The view from both instances: the same, but for the age, which moves on between the two reads. */
async function view(user: string): Promise<any> {
  const answers = await Promise.all(
    [a, b].map(async (server) => {
      const res = await get(server, `/v1/users/${user}`);
      expect(res.status).toBe(200);
      return res.json();
    }),
  );
  const [fromA, fromB] = answers as any[];
  expect({ ...fromB, oldestQueuedAgeSeconds: typeof fromB.oldestQueuedAgeSeconds }).toEqual({ ...fromA, oldestQueuedAgeSeconds: typeof fromA.oldestQueuedAgeSeconds });
  return fromA;
}

it('follows a user through queueing, identify, ack and disconnect, the same from two instances', async () => {
  const user = uniqueId('viewed');
  expect(await view(user)).toEqual({ id: user, online: false, connections: 0, queued: 0, owed: 0, oldestQueuedAgeSeconds: null, dropped: 0 });

  const before = Date.now();
  await s.r.publish(`rm.users.${user}`, 'one');
  await s.r.publish(`rm.users.${user}`, 'two');
  await waitFor(async () => (await s.r.llen(`rm:users:${user}:messages`)) === 2, 5000, 'two queued messages');
  const queued = await view(user);
  expect(queued).toMatchObject({ online: false, connections: 0, queued: 2, owed: 0, dropped: 0 });
  expect(queued.oldestQueuedAgeSeconds).toBeGreaterThanOrEqual(0);
  expect(queued.oldestQueuedAgeSeconds).toBeLessThanOrEqual((Date.now() - before) / 1000 + 1);

  const client = await s.client({ server: a });
  await client.identify(user);
  const messages = await client.messages(2);
  expect(await view(user)).toEqual({ id: user, online: true, connections: 1, queued: 0, owed: 2, oldestQueuedAgeSeconds: null, dropped: 0 });

  // Acked out of order: owed counts what is still unacked.
  client.ack([messages[1].data.id]);
  await waitFor(async () => (await view(user)).owed === 1, 5000, 'the ack to be stored');
  expect(await view(user)).toMatchObject({ online: true, connections: 1, queued: 0, owed: 1 });

  await client.close();
  await waitFor(async () => (await connectionCount(s.r, user)) === 0, 5000, 'the socket to be unregistered');
  const left = await view(user);
  expect(left).toMatchObject({ online: false, connections: 0, queued: 1, owed: 0, dropped: 0 });
  expect(left.oldestQueuedAgeSeconds).toBeGreaterThanOrEqual(0);
});

it('counts drops since the last identify without consuming them', async () => {
  const user = uniqueId('dropped');
  const pipeline = s.r.pipeline();
  for (let i = 0; i < 5; i++) pipeline.publish(`rm.users.${user}`, `m${i}`);
  await pipeline.exec();
  await waitFor(async () => (await view(user)).dropped === 2, 5000, 'two drops past MAX_QUEUE_LENGTH=3');
  expect(await view(user)).toMatchObject({ queued: 3, dropped: 2 });

  const client = await s.client({ server: b, autoAck: true });
  expect((await client.identify(user)).data).toMatchObject({ queued: 3, dropped: 2 });
  await client.messages(3);
  await waitFor(async () => (await view(user)).owed === 0, 5000, 'the acks to be stored');
  expect(await view(user)).toEqual({ id: user, online: true, connections: 1, queued: 0, owed: 0, oldestQueuedAgeSeconds: null, dropped: 0 });
});

it('takes a raw entry at the head of the queue: its age is null without an index time', async () => {
  const user = uniqueId('raw');
  await s.r.rpush(`rm:users:${user}:messages`, 'pushed by another program');
  expect(await view(user)).toMatchObject({ queued: 1, oldestQueuedAgeSeconds: null });
});

it('answers 401 without a valid key, and takes every key of the list', async () => {
  const user = uniqueId('guarded');
  const none = await get(a, `/v1/users/${user}`, null);
  expect(none.status).toBe(401);
  expect(none.headers.get('www-authenticate')).toBe('Bearer');
  expect((await get(a, `/v1/users/${user}`, 'wrong-key-0123456789abcdef')).status).toBe(401);
  expect((await get(a, `/v1/users/${user}`, KEY.slice(0, -1))).status).toBe(401);
  expect((await fetch(`${a.url}/v1/users/${user}`, { headers: { authorization: KEY } })).status).toBe(401); // no Bearer
  expect((await get(b, `/v1/users/${user}`, OTHER_KEY)).status).toBe(200);
});

it('answers 400 for an invalid id', async () => {
  for (const bad of ['-starts-with-dash', 'has%20space', 'x'.repeat(129), 'semi%3Bcolon']) {
    const res = await get(a, `/v1/users/${bad}`);
    expect(res.status).toBe(400);
  }
});

it('answers 404 while ADMIN_API_KEYS is unset, as for any unknown route, and refuses a short key at start', async () => {
  const other = await startRedis();
  const off = await startServer({ REDIS_URL: other.url, LOG_LEVEL: 'log' });
  try {
    const res = await get(off, '/v1/users/someone');
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ statusCode: 404, error: 'Not Found', message: 'Cannot GET /v1/users/someone' });
    expect(await (await fetch(`${off.url}/v1/nothing-here`)).json()).toEqual({ statusCode: 404, error: 'Not Found', message: 'Cannot GET /v1/nothing-here' });
  } finally {
    await off.stop();
  }
  const refused = await startServer({ REDIS_URL: other.url, ADMIN_API_KEYS: 'short' }, { waitReady: false });
  expect((await refused.exited()).code).toBe(1);
  expect(refused.logs()).toMatch(/ADMIN_API_KEYS must be a comma-separated list of keys of at least 16 characters/);
  expect(refused.logs()).not.toContain('short,');
  await other.close();
});
