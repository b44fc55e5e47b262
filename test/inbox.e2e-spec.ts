/**
 * The inbox stream rm:inbox (PROTOCOL v1.1): every entry stored exactly once and in
 * stream order per user, whichever instance reads it and even when the reader dies
 * with entries pending; invalid entries dead-lettered with their reason.
 */
import type { Redis } from 'ioredis';
import { uniqueId } from './support/ids';
import { warningsTold } from './support/logs';
import { entryPayload } from './support/queue-entries';
import { useServer } from './support/fixtures';
import { startRedis } from './support/redis';
import { startServer } from './support/server';
import { waitFor } from './support/wait';
import { TestClient } from './support/ws-client';

const payloads = async (r: Redis, id: string) => (await r.lrange(`rm:users:${id}:messages`, 0, -1)).map(entryPayload);
const acked = (r: Redis) =>
  waitFor(
    async () => {
      const groups = (await r.xinfo('GROUPS', 'rm:inbox')) as unknown[][];
      const info = groups.map((flat) => Object.fromEntries(Array.from({ length: flat.length / 2 }, (_, i) => [flat[2 * i], flat[2 * i + 1]])));
      const group = info.find((g) => g.name === 'redmessenger');
      return !!group && group.pending === 0 && group.lag === 0;
    },
    20_000,
    'every inbox entry read and acknowledged',
  );

describe('inbox stream rm:inbox', () => {
  const early = uniqueId('early');
  const s = useServer(
    {},
    {
      redis: { restartable: true }, // its own Redis: the stream is deployment-wide
      // Added while no instance ran: the group starts at the beginning of the stream.
      async beforeServers({ r }) {
        await r.xadd('rm:inbox', '*', 'to', early, 'payload', 'before any instance');
        await r.xadd('rm:inbox', '*', 'to', early, 'payload', 'still before');
      },
    },
  );
  const { server } = s;

  it('stores entries added before any instance started', async () => {
    await acked(s.r);

    expect(await payloads(s.r, early)).toEqual(['before any instance', 'still before']);
  });

  it('stores entries in stream order per user, with the message options', async () => {
    const [a, b] = [uniqueId(), uniqueId()];
    const pipeline = s.r.pipeline();
    for (let i = 0; i < 200; i++) pipeline.xadd('rm:inbox', '*', 'to', i % 2 ? a : b, 'payload', `m${i}`, ...(i === 0 ? ['ttl', '3600', 'collapse', 'c1'] : []));
    await pipeline.exec();
    await acked(s.r);

    expect(await payloads(s.r, a)).toEqual(Array.from({ length: 100 }, (_, i) => `m${2 * i + 1}`));
    expect(await payloads(s.r, b)).toEqual(Array.from({ length: 100 }, (_, i) => `m${2 * i}`));
    expect(JSON.parse((await s.r.lindex(`rm:users:${b}:messages`, 0))!).rm).toEqual({ id: expect.any(String), channel: `rm.users.${b}`, payload: 'm0', ttl: 3600, collapseKey: 'c1', ts: expect.any(Number) });
  });

  it('stores a group entry for every member, with the group channel', async () => {
    const cid = uniqueId('g');
    const members = [uniqueId('m'), uniqueId('m')];
    await s.r.sadd(`rm:channels:${cid}:subscribers`, ...members);

    await s.r.xadd('rm:inbox', '*', 'group', cid, 'payload', 'Meow!', 'ttl', '3600', 'collapse', 'score');
    await acked(s.r);

    for (const member of members) {
      expect(JSON.parse((await s.r.lindex(`rm:users:${member}:messages`, 0))!).rm).toMatchObject({ channel: `rm.channels.${cid}`, payload: 'Meow!', ttl: 3600, collapseKey: 'score' });
    }
  });

  it('delivers an entry to an online user', async () => {
    const id = uniqueId();
    const client = await TestClient.connect(server.wsUrl);
    try {
      await client.identify(id);
      await s.r.xadd('rm:inbox', '*', 'to', id, 'payload', 'live', 'collapse', 'k');

      const [message] = await client.messages(1, 10_000);
      expect(message.data).toEqual({ id: expect.any(String), channel: `rm.users.${id}`, payload: 'live', collapseKey: 'k', ts: expect.any(Number) });
    } finally {
      client.terminate();
    }
  });

  it('dead-letters each kind of invalid entry with its reason, acknowledged, blocking nothing behind it', async () => {
    const id = uniqueId();
    const bad: Array<[string[], RegExp]> = [
      [['to', id], /payload is missing/],
      [['to', id, 'group', 'cats', 'payload', 'x'], /exactly one of to and group/],
      [['to', 'no spaces allowed', 'payload', 'x'], /^to must be an id/],
      [['group', '-bad', 'payload', 'x'], /^group must be an id/],
      [['to', id, 'payload', 'x', 'ttl', '0'], /^ttl must be an integer/],
      [['to', id, 'payload', 'x', 'ttl', '1.5'], /^ttl must be an integer/],
      [['to', id, 'payload', 'x', 'collapse', 'k'.repeat(129)], /^collapse must be a string of 1 to 128/],
      [['payload', 'x'], /to or group is missing/],
      [['to', id, 'payload', 'x', 'colapse', 'k'], /unknown field "colapse"/],
    ];
    const ids: string[] = [];
    for (const [fields] of bad) ids.push((await s.r.xadd('rm:inbox', '*', ...fields))!);
    await s.r.xadd('rm:inbox', '*', 'to', id, 'payload', 'behind them');
    await acked(s.r);

    const dead = await s.r.xrange('rm:inbox:dead', '-', '+');
    bad.forEach(([fields, reason]) => {
      const entry = dead.find(([, deadFields]) => JSON.stringify(deadFields.slice(0, -2)) === JSON.stringify(fields));
      expect(entry).toBeDefined();
      expect(entry![1].slice(-2, -1)).toEqual(['reason']);
      expect(entry![1][entry![1].length - 1]).toMatch(reason);
    });
    // Logged at most one line a second, each saying how many more like it it stands for.
    expect(server.logs()).toContain(`Inbox entry ${ids[0]} is not valid`);
    await waitFor(() => warningsTold(server.logs(), /Inbox entry .* is not valid/) >= bad.length, 5000, 'the log to tell of every invalid entry');
    expect(await payloads(s.r, id)).toEqual(['behind them']);
    expect(server.logs()).not.toContain('no spaces allowed'); // the log names the entry, not its fields
    const metrics = await (await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    expect(Number(/^redmessenger_inbox_entries_total\{outcome="dead"\} (\d+)/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(bad.length);
  });

  it('resumes where the group left off after Redis was away', async () => {
    const id = uniqueId();
    await s.redis.stop();
    await server.waitForLog(/Inbox: .*retrying with backoff/, 10_000);
    await s.redis.start();

    await s.r.xadd('rm:inbox', '*', 'to', id, 'payload', 'after the outage');
    await acked(s.r);

    expect(await payloads(s.r, id)).toEqual(['after the outage']);
  });
});

describe('inbox: the reading instance is SIGKILLed with entries pending', () => {
  it('another instance claims them within 10 s and every entry is stored exactly once, in order per user', async () => {
    const redis = await startRedis();
    const r = redis.client();
    const victim = await startServer({ REDIS_URL: redis.url, INSTANCE_ID: 'victim' });
    const survivor = await startServer({ REDIS_URL: redis.url, INSTANCE_ID: 'survivor' });
    try {
      await victim.waitForLog(/Reading the inbox/, 10_000);
      // A large group makes the victim's store of its batch take a while: the entries stay pending meanwhile.
      const cid = uniqueId('big');
      const users = Array.from({ length: 20 }, () => uniqueId());
      const crowd = Array.from({ length: 20_000 }, (_, i) => `crowd-${cid}-${i}`);
      for (let i = 0; i < crowd.length; i += 5000) await r.sadd(`rm:channels:${cid}:subscribers`, ...crowd.slice(i, i + 5000));
      await r.sadd(`rm:channels:${cid}:subscribers`, ...users);
      const expected = new Map(users.map((user) => [user, [] as string[]]));
      const pipeline = r.pipeline();
      for (let round = 0; round < 30; round++) {
        if (round === 3) {
          pipeline.xadd('rm:inbox', '*', 'group', cid, 'payload', 'to the crowd');
          for (const user of users) expected.get(user)!.push('to the crowd');
        }
        for (const user of users) {
          pipeline.xadd('rm:inbox', '*', 'to', user, 'payload', `${user}#${round}`);
          expected.get(user)!.push(`${user}#${round}`);
        }
      }
      const watcher = redis.client();
      const pipelined = pipeline.exec();
      let pendingOnVictim = 0;
      await waitFor(
        async () => {
          const [count] = (await watcher.xpending('rm:inbox', 'redmessenger')) as [number];
          return count > 0;
        },
        10_000,
        'entries pending on the victim',
      );
      victim.kill('SIGKILL');
      await victim.exited();
      await pipelined;
      const consumers = (await watcher.xpending('rm:inbox', 'redmessenger'))[3] as Array<[string, string]> | null;
      pendingOnVictim = Number(consumers?.find(([name]) => name === 'victim')?.[1] ?? 0);
      expect(pendingOnVictim).toBeGreaterThan(0);
      const killedAt = Date.now();

      await survivor.waitForLog(/Claimed \d+ inbox entries left pending/, 15_000);
      expect(Date.now() - killedAt).toBeLessThan(10_000);
      await acked(r);

      for (const user of users) expect(await payloads(r, user)).toEqual(expected.get(user));
      for (const member of [crowd[0], crowd[9_999], crowd[19_999]]) expect(await payloads(r, member)).toEqual(['to the crowd']);
    } finally {
      await victim.stop().catch(() => undefined);
      await survivor.stop();
      await redis.close();
    }
  });
});
