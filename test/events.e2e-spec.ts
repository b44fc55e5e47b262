/**
 * EVENTS_STREAM (README, Events): each event type with its fields, written once per
 * fact by the instance that saw it; none at all (not one XADD) while it is unset;
 * EVENTS_MAXLEN trimming; `unread` once per message left unacked, never for one acked
 * in time or dropped. Real redis-server, the built server, real WebSocket clients.
 */
import type Redis from 'ioredis';
import { uniqueId } from './support/ids';
import { connectionCount, entryId } from './support/queue-entries';
import { useServer } from './support/fixtures';
import { waitFor, within } from './support/wait';

jest.setTimeout(90_000);

const STREAM = 'rm:events';
type Event = Record<string, string>;

// Each describe has a Redis of its own: INFO commandstats counts only its server's commands.
const OWN = { redis: { restartable: true } };

/** The stream's entries as objects, oldest first. */
async function readEvents(r: Redis, stream = STREAM): Promise<Event[]> {
  const entries = await r.xrange(stream, '-', '+');
  return entries.map(([, fields]) => {
    const event: Event = {};
    for (let i = 0; i < fields.length; i += 2) event[fields[i]] = fields[i + 1];
    return event;
  });
}

/** Waits until `pick` finds what it looks for among the events, and returns it. */
async function waitForEvents<T>(r: Redis, what: string, pick: (events: Event[]) => T | undefined, timeoutMs = 10_000): Promise<T> {
  let found: T | undefined;
  let last: Event[] = [];
  await waitFor(
    async () => {
      last = await readEvents(r);
      found = pick(last);
      return found !== undefined;
    },
    timeoutMs,
    what,
  ).catch((error: Error) => {
    throw new Error(`${error.message}; the stream holds ${JSON.stringify(last.slice(-10))}`);
  });
  return found!;
}

const ofUser = (events: Event[], user: string) => events.filter((e) => e.user === user);

describe('EVENTS_STREAM set (two instances, UNREAD_AFTER_SECONDS=1, MAX_QUEUE_LENGTH=3)', () => {
  const env = { LOG_LEVEL: 'log', EVENTS_STREAM: STREAM, UNREAD_AFTER_SECONDS: '1', MAX_QUEUE_LENGTH: '3' };
  const s = useServer(
    [
      { ...env, INSTANCE_ID: uniqueId('a') },
      { ...env, INSTANCE_ID: uniqueId('b') },
    ],
    { ...OWN, sequential: true },
  );
  const [a, b] = s.servers;

  it('acked: one per message, with user, id, channel and latency_ms from storage to ack', async () => {
    const user = uniqueId('acker');
    const client = await s.client({ server: a });
    await client.identify(user);
    await s.r.publish(`rm.users.${user}`, 'hello');
    const [message] = await client.messages(1);
    client.ack([message.data.id]);
    client.ack([message.data.id]); // a second ack of the same message is no new fact

    const acked = await waitForEvents(s.r, 'the acked event', (events) => ofUser(events, user).find((e) => e.type === 'acked'));
    expect(acked).toEqual({ type: 'acked', user, id: message.data.id, channel: `rm.users.${user}`, latency_ms: expect.stringMatching(/^\d+$/) });
    expect(Number(acked.latency_ms)).toBeGreaterThanOrEqual(0);

    // The offline event comes after everything this instance wrote for the user: then count.
    await client.close();
    await waitForEvents(s.r, 'the offline event', (events) => ofUser(events, user).find((e) => e.type === 'offline'));
    expect(ofUser(await readEvents(s.r), user).filter((e) => e.type === 'acked')).toHaveLength(1);
  });

  it('online at the first identify only, offline when the last socket closes, across instances', async () => {
    const user = uniqueId('presence');
    const first = await s.client({ server: a });
    await first.identify(user);
    await waitForEvents(s.r, 'the online event', (events) => ofUser(events, user).find((e) => e.type === 'online'));
    const second = await s.client({ server: b });
    await second.identify(user);
    expect(await connectionCount(s.r, user)).toBe(2);

    await second.close();
    await waitFor(async () => (await connectionCount(s.r, user)) === 1, 5000, 'the second socket to be unregistered');
    await first.close();
    await waitForEvents(s.r, 'the offline event', (events) => ofUser(events, user).find((e) => e.type === 'offline'));

    // Each instance writes its facts in order, and the offline one was the last for the user.
    expect(ofUser(await readEvents(s.r), user)).toEqual([
      { type: 'online', user },
      { type: 'offline', user },
    ]);
  });

  it('dropped with reason overflow past MAX_QUEUE_LENGTH, and no unread for the dropped messages', async () => {
    const user = uniqueId('overflow');
    const pipeline = s.r.pipeline();
    for (let i = 0; i < 5; i++) pipeline.publish(`rm.users.${user}`, `m${i}`);
    await pipeline.exec();

    const dropped = await waitForEvents(s.r, '2 messages dropped for overflow', (events) => {
      const drops = ofUser(events, user).filter((e) => e.type === 'dropped');
      return drops.reduce((sum, e) => sum + Number(e.count), 0) === 2 ? drops : undefined;
    });
    for (const event of dropped) expect(event).toEqual({ type: 'dropped', user, count: expect.stringMatching(/^[12]$/), reason: 'overflow' });

    // The three kept become unread after a second; the two dropped never do.
    const kept = (await s.r.lrange(`rm:users:${user}:messages`, 0, -1)).map((entry) => entryId(entry)!);
    expect(kept).toHaveLength(3);
    const unread = await waitForEvents(s.r, 'unread events for the 3 kept messages', (events) => {
      const found = ofUser(events, user).filter((e) => e.type === 'unread');
      return found.length >= 3 ? found : undefined;
    });
    expect(unread.map((e) => e.id).sort()).toEqual([...kept].sort());
    for (const event of unread) {
      expect(event).toEqual({ type: 'unread', user, id: expect.any(String), channel: `rm.users.${user}`, age_s: expect.stringMatching(/^\d+$/) });
      expect(Number(event.age_s)).toBeGreaterThanOrEqual(1);
    }
  });

  it('unread once for a message left unacked, never for one acked in time', async () => {
    const offline = uniqueId('away');
    const reader = uniqueId('reader');
    const client = await s.client({ server: b, autoAck: true });
    await client.identify(reader);

    await s.r.publish(`rm.users.${offline}`, 'nobody reads this');
    const unread = await waitForEvents(s.r, 'the unread event', (events) => ofUser(events, offline).find((e) => e.type === 'unread'));
    const [queued] = await s.r.lrange(`rm:users:${offline}:messages`, 0, -1);
    expect(unread).toEqual({ type: 'unread', user: offline, id: entryId(queued), channel: `rm.users.${offline}`, age_s: expect.stringMatching(/^\d+$/) });
    expect(await s.r.zscore('rm:unread', `${offline}|${unread.id}`)).toBeNull(); // taken: it cannot come again

    await s.r.publish(`rm.users.${reader}`, 'read at once');
    const [message] = await client.messages(1);
    await waitForEvents(s.r, 'the ack of the read message', (events) => ofUser(events, reader).find((e) => e.type === 'acked' && e.id === message.data.id));
    // A later message of the offline user becomes due after the read one: once its event is
    // written, the sweep has looked at the read message too.
    await s.r.publish(`rm.users.${offline}`, 'a later one');
    await waitForEvents(s.r, 'the second unread event', (events) => (ofUser(events, offline).filter((e) => e.type === 'unread').length === 2 ? true : undefined));

    const events = await readEvents(s.r);
    expect(ofUser(events, reader).filter((e) => e.type === 'unread')).toEqual([]);
    expect(ofUser(events, offline).filter((e) => e.type === 'unread' && e.id === unread.id)).toHaveLength(1);
    expect(await s.r.zcard('rm:unread')).toBe(0);
  });

  it('offline once another instance reaps the sockets of a SIGKILLed one', async () => {
    const user = uniqueId('reaped');
    const client = await s.client({ server: a });
    await client.identify(user);
    await waitForEvents(s.r, 'the online event', (events) => ofUser(events, user).find((e) => e.type === 'online'));

    a.kill('SIGKILL');
    await within(a.exited(), 10_000, 'the SIGKILLed instance to exit');
    await waitForEvents(s.r, 'the offline event written by the surviving instance', (events) => ofUser(events, user).find((e) => e.type === 'offline'), 20_000);
    expect(await connectionCount(s.r, user)).toBe(0);
    expect(ofUser(await readEvents(s.r), user)).toEqual([
      { type: 'online', user },
      { type: 'offline', user },
    ]);
  });

  it('counts what it wrote in redmessenger_events_total{type}', async () => {
    const text = await (await fetch(`${b.url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    let total = 0;
    for (const type of ['acked', 'unread', 'dropped', 'online', 'offline']) {
      const line = new RegExp(`^redmessenger_events_total\\{type="${type}"\\} (\\d+)$`, 'm').exec(text);
      expect([type, line !== null]).toEqual([type, true]);
      total += Number(line![1]);
    }
    // Which instance writes which event depends on where the sockets were and who holds shard 0 (unread).
    expect(total).toBeGreaterThan(0);
  });
});

describe('EVENTS_STREAM set, QUEUE_OVERFLOW=reject, QUEUE_TTL_SECONDS=1', () => {
  const s = useServer({ LOG_LEVEL: 'log', EVENTS_STREAM: STREAM, MAX_QUEUE_LENGTH: '2', QUEUE_OVERFLOW: 'reject', QUEUE_TTL_SECONDS: '1' }, OWN);

  it('dropped with reason expired, from the queue TTL sweep', async () => {
    const user = uniqueId('expired');
    await s.r.publish(`rm.users.${user}`, 'stale soon');
    const dropped = await waitForEvents(s.r, 'the expired drop', (events) => ofUser(events, user).find((e) => e.type === 'dropped'), 15_000);
    expect(dropped).toEqual({ type: 'dropped', user, count: '1', reason: 'expired' });
  });

  it('dropped with reason rejected', async () => {
    const user = uniqueId('rejected');
    const pipeline = s.r.pipeline();
    for (let i = 0; i < 5; i++) pipeline.publish(`rm.users.${user}`, `m${i}`);
    await pipeline.exec();

    const dropped = await waitForEvents(s.r, '3 messages refused', (events) => {
      const drops = ofUser(events, user).filter((e) => e.type === 'dropped');
      return drops.reduce((sum, e) => sum + Number(e.count), 0) === 3 ? drops : undefined;
    });
    for (const event of dropped) expect(event).toMatchObject({ type: 'dropped', user, reason: 'rejected' });
    expect(await s.r.llen(`rm:users:${user}:messages`)).toBe(2);
  });
});

describe('EVENTS_MAXLEN', () => {
  const s = useServer(
    { LOG_LEVEL: 'log', EVENTS_STREAM: STREAM, EVENTS_MAXLEN: '20' },
    {
      ...OWN,
      // Approximate trimming removes whole stream nodes: small nodes make the cap show on a few hundred entries.
      beforeServers: ({ r }) => r.config('SET', 'stream-node-max-entries', '10'),
    },
  );
  const { server } = s;

  it('keeps the stream approximately capped', async () => {
    const user = uniqueId('many');
    const client = await s.client({ server: server, autoAck: true });
    await client.identify(user);
    const pipeline = s.r.pipeline();
    for (let i = 0; i < 300; i++) pipeline.publish(`rm.users.${user}`, `m${i}`);
    await pipeline.exec();
    await client.messages(300, 20_000);

    await waitFor(async () => /^redmessenger_events_total\{type="acked"\} 300$/m.test(await (await fetch(`${server.url}/metrics`)).text()), 10_000, '300 acked events written');
    const length = await s.r.xlen(STREAM);
    expect(length).toBeGreaterThanOrEqual(20);
    expect(length).toBeLessThanOrEqual(20 + 10);
  });
});

describe('EVENTS_STREAM unset', () => {
  const s = useServer({ LOG_LEVEL: 'log', MAX_QUEUE_LENGTH: '2', QUEUE_TTL_SECONDS: '1' }, OWN);
  const { server } = s;

  it('writes no event: not one XADD reaches Redis, and no unread index exists', async () => {
    await s.r.config('RESETSTAT');
    const user = uniqueId('quiet');
    // Every fact that would be an event: drops, online, ack, offline, expiry.
    const pipeline = s.r.pipeline();
    for (let i = 0; i < 4; i++) pipeline.publish(`rm.users.${user}`, `m${i}`);
    await pipeline.exec();
    await waitFor(async () => (await s.r.llen(`rm:users:${user}:messages`)) === 2, 5000, 'the capped queue');
    const client = await s.client({ server: server, autoAck: true });
    await client.identify(user);
    await s.r.publish(`rm.users.${user}`, 'live');
    await client.next((f) => f.event === 'message' && f.data.payload === 'live');
    await client.close();
    await waitFor(async () => (await connectionCount(s.r, user)) === 0, 5000, 'the socket to be unregistered');
    const away = uniqueId('expiring');
    await s.r.publish(`rm.users.${away}`, 'to expire');
    await server.waitForLog(new RegExp(`${away}: 1 queued messages expired`), 15_000);

    const stats = (await s.r.info('commandstats')) as string;
    expect(stats).toMatch(/cmdstat_publish:/); // the statistics do count this run
    expect(stats).not.toMatch(/cmdstat_xadd:/);
    expect(await s.r.exists(STREAM, 'rm:unread')).toBe(0);
  });
});
