/**
 * Events, unread and the per-user view on a Redis Cluster (3 masters): the stream and
 * `rm:unread` are written from Node beside the per-user scripts, and the view reads one
 * user's slot, so nothing is cross-slot.
 */
import type { Cluster } from 'ioredis';
import { startCluster, type TestCluster } from './support/cluster';
import { uniqueId } from './support/ids';
import { startServer, type TestServer } from './support/server';
import { waitFor } from './support/wait';
import { TestClient } from './support/ws-client';

jest.setTimeout(90_000);

const STREAM = 'rm:events';
const KEY = 'cluster-admin-key-0123456789';

let cluster: TestCluster;
let c: Cluster;
let server: TestServer;
const clients: TestClient[] = [];

beforeAll(async () => {
  cluster = await startCluster();
  c = cluster.client();
  server = await startServer({ REDIS_CLUSTER_NODES: cluster.seeds, EVENTS_STREAM: STREAM, UNREAD_AFTER_SECONDS: '1', ADMIN_API_KEYS: KEY, LOG_LEVEL: 'log' });
  // /health answers before the subscriber is confirmed on the Cluster: publish until one is heard.
  const probe = await TestClient.connect(server.wsUrl, { autoAck: true });
  clients.push(probe);
  const warm = uniqueId('warm');
  await probe.identify(warm);
  await waitFor(
    async () => {
      await c.publish(`rm.users.${warm}`, 'probe');
      return probe.frames.some((f) => f.event === 'message');
    },
    15_000,
    'the server to route a published message',
  );
});

afterAll(async () => {
  for (const client of clients) client.terminate();
  await server?.stop();
  await cluster?.close();
});

async function eventsOf(user: string): Promise<Array<Record<string, string>>> {
  return (await c.xrange(STREAM, '-', '+')).map(([, flat]) => Object.fromEntries(flat.flatMap((v, i) => (i % 2 ? [] : [[v, flat[i + 1]]])))).filter((e) => e.user === user);
}

const view = async (user: string): Promise<any> => (await fetch(`${server.url}/v1/users/${user}`, { headers: { authorization: `Bearer ${KEY}` }, signal: AbortSignal.timeout(5000) })).json();

it('writes online, acked and offline for a user who reads, and unread for one who does not', async () => {
  const reader = uniqueId('reader');
  const away = uniqueId('away');
  const client = await TestClient.connect(server.wsUrl);
  clients.push(client);
  await client.identify(reader);
  await c.publish(`rm.users.${reader}`, 'read me');
  await c.publish(`rm.users.${away}`, 'nobody reads this');
  const [message] = await client.messages(1).catch(async (e: Error) => {
    const base = `rm:users:{${reader}}`;
    const state = JSON.stringify({ owed: await c.lrange(`${base}:owed`, 0, -1), queue: await c.lrange(`${base}:messages`, 0, -1), st: await c.hgetall(`${base}:state`) });
    throw new Error(`${e.message}\n${state}\n${server.logs().slice(-3000)}`);
  });
  expect(await view(reader)).toEqual({ id: reader, online: true, connections: 1, queued: 0, owed: 1, oldestQueuedAgeSeconds: null, dropped: 0 });
  client.ack([message.data.id]);
  await waitFor(async () => (await eventsOf(reader)).some((e) => e.type === 'acked'), 10_000, "the reader's acked event");
  await client.close();

  await waitFor(async () => (await eventsOf(reader)).some((e) => e.type === 'offline'), 10_000, "the reader's offline event");
  expect((await eventsOf(reader)).map((e) => e.type)).toEqual(['online', 'acked', 'offline']);
  expect((await eventsOf(reader))[1]).toMatchObject({ id: message.data.id, channel: `rm.users.${reader}` });

  await waitFor(async () => (await eventsOf(away)).some((e) => e.type === 'unread'), 10_000, 'the unread event');
  expect(await eventsOf(away)).toEqual([{ type: 'unread', user: away, id: expect.any(String), channel: `rm.users.${away}`, age_s: expect.stringMatching(/^\d+$/) }]);
  const awayView = await view(away);
  expect(awayView).toMatchObject({ id: away, online: false, connections: 0, queued: 1, owed: 0, dropped: 0 });
  expect(awayView.oldestQueuedAgeSeconds).toBeGreaterThanOrEqual(1);
});
