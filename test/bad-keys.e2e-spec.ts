/**
 * One user's unusable keys (a key of another type under our names: SET rm:users:x:messages foo)
 * cost only that user's messages, on every path: the other 99 users of the same route calls get
 * every message once, in order, promptly; the bad one's are counted and logged; HTTP answers an
 * error for that message only; an inbox entry for it is dead-lettered (store_failed) after three
 * tries and blocks nothing behind it.
 */
import { PUBLISH_KEY, postMessage } from './support/http-publish';
import { uniqueId } from './support/ids';
import { entryPayload } from './support/queue-entries';
import { useServer } from './support/fixtures';
import type { TestServer } from './support/server';
import { expectSequence, messagesOf, payloadsOf, range, sleep, withLogs } from './support/traffic';
import { waitFor } from './support/wait';
import type { TestClient } from './support/ws-client';

jest.setTimeout(120_000);

const q = (id: string) => `rm:users:${id}:messages`;
/** Well inside the router's old ~51 s of retries: the others are not held behind the bad key. */
const PROMPT_MS = 15_000;
const dropped = async (s: TestServer) => {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  return Number(/^redmessenger_messages_dropped_total\{reason="unusable_keys"\} (\S+)$/m.exec(text)?.[1] ?? 0);
};

describe('a WRONGTYPE key among 100 users', () => {
  const s = useServer({ LOG_LEVEL: 'log', PUBLISH_API_KEYS: PUBLISH_KEY }, { redis: { restartable: true } });
  const { server } = s;
  /** The online users' sockets, made in beforeAll: terminated after the suite. */
  const clients: TestClient[] = [];
  const users = Array.from({ length: 100 }, () => uniqueId('bk'));
  const bad = users[37];
  const good = users.filter((u) => u !== bad);
  /** Every other good user has a socket: owed and queued routes both share calls with the bad user. */
  const online = good.filter((_, i) => i % 2 === 0);
  const offline = good.filter((_, i) => i % 2 === 1);

  beforeAll(async () => {
    await s.r.set(q(bad), 'foo');
    for (const user of online) {
      const c = await s.client({ autoAck: true });
      clients.push(c);
      await c.identify(user);
    }
  });

  it('raw PUBLISH: the 99 others get every message once, in order, promptly; the bad one is counted and logged', async () => {
    await withLogs([server], async () => {
      // Round-robin over the users: every route call carries all 100 users.
      const p = s.r.pipeline();
      for (const payload of range(20)) for (const user of users) p.publish(`rm.users.${user}`, payload);
      await p.exec();

      await waitFor(async () => clients.every((c) => messagesOf(c).length >= 20), PROMPT_MS, 'the online users to get their 20 messages');
      await waitFor(async () => (await Promise.all(offline.map((u) => s.r.llen(q(u))))).every((n) => n >= 20), PROMPT_MS, 'the offline users to have 20 queued');
      await waitFor(async () => (await dropped(server)) === 20, PROMPT_MS, "the bad user's 20 messages counted");
      await sleep(500); // anything stored twice would show by now
      clients.forEach((c, i) => expectSequence(payloadsOf(messagesOf(c)), range(20), `online user ${online[i]}`));
      for (const user of offline) expectSequence((await s.r.lrange(q(user), 0, -1)).map(entryPayload), range(20), `offline user ${user}`);
      expect(await s.r.get(q(bad))).toBe('foo');
      const lines = server
        .logs()
        .split('\n')
        .filter((line) => line.includes(`keys of ${bad} are unusable`));
      expect(lines.length).toBeGreaterThanOrEqual(1);
      expect(lines.length).toBeLessThanOrEqual(5); // at most one line a second
      expect(lines[0]).toContain(`${q(bad)} is a string, not a list`);
    });
  });

  it("HTTP: an error for the bad user's message only", async () => {
    await withLogs([server], async () => {
      const answer = await postMessage(server.url, { to: bad, payload: 'http' });
      expect(answer.status).toBe(503);
      expect((await postMessage(server.url, { to: offline[0], payload: 'http' })).status).toBe(202);
      expect(await s.r.lindex(q(offline[0]), -1)).toContain('"payload":"http"');
    });
  });

  it('inbox: the entry for the bad user goes to rm:inbox:dead (store_failed) after three tries; the entries around it are stored once, in order', async () => {
    await withLogs([server], async () => {
      const [before, after] = [offline[1], offline[2]];
      await s.r.xadd('rm:inbox', '*', 'to', before, 'payload', 'i0');
      const deadId = await s.r.xadd('rm:inbox', '*', 'to', bad, 'payload', 'i1');
      await s.r.xadd('rm:inbox', '*', 'to', after, 'payload', 'i2');
      await s.r.xadd('rm:inbox', '*', 'to', before, 'payload', 'i3');
      await waitFor(async () => (await s.r.xlen('rm:inbox:dead')) === 1, PROMPT_MS, 'the entry dead-lettered');
      const [[, fields]] = await s.r.xrange('rm:inbox:dead', '-', '+');
      expect(fields).toEqual(['to', bad, 'payload', 'i1', 'reason', 'store_failed']);
      await waitFor(async () => Number((await s.r.xpending('rm:inbox', 'redmessenger'))[0]) === 0, PROMPT_MS, 'every entry acknowledged');
      expect((await s.r.lrange(q(before), -2, -1)).map(entryPayload)).toEqual(['i0', 'i3']);
      expect((await s.r.lrange(q(after), -1, -1)).map(entryPayload)).toEqual(['i2']);
      expect(await s.r.llen(q(before))).toBe(22);
      expect(server.logs()).toContain(`Inbox entry ${deadId} could not be stored 3 times`);
    });
  });
});
