/**
 * Liveness (contract 1.2): a client behind a network that goes silent (no close frame,
 * no FIN) is noticed by the heartbeat and closed as cut; its owed messages go back to
 * the queue and the `offline` event is written. A client that answers pings is never cut.
 */
import { uniqueId } from './support/ids';
import { useServer } from './support/fixtures';
import { startProxy, type TcpProxy } from './support/tcp-proxy';
import { metric, sleep } from './support/traffic';
import { waitFor } from './support/wait';

const INTERVAL_MS = 500;
const TIMEOUT_MS = 500;
const CUT = 'redmessenger_sockets_closed_total\\{cause="cut"\\}';

describe('liveness: a cut network is noticed', () => {
  let proxy: TcpProxy;
  // Declared before useServer, so it runs before the fixture's afterAll stops the server.
  afterAll(() => proxy?.close());
  const s = useServer({ PING_INTERVAL_MS: String(INTERVAL_MS), PING_TIMEOUT_MS: String(TIMEOUT_MS), EVENTS_STREAM: 'rm:events', LOG_LEVEL: 'log' }, { keepClients: true });
  const { server } = s;

  beforeAll(async () => {
    proxy = await startProxy(server.port);
  });

  const events = async (user: string) =>
    (await s.r.xrange('rm:events', '-', '+'))
      .map(([, fields]) => Object.fromEntries(Array.from({ length: fields.length / 2 }, (_, i) => [fields[2 * i], fields[2 * i + 1]])))
      .filter((event) => event.user === user);

  it('closes a silent socket after PING_INTERVAL_MS + PING_TIMEOUT_MS, requeues what it owed and writes offline', async () => {
    const user = uniqueId('cut');
    const client = await s.client({ url: `ws://127.0.0.1:${proxy.port}/` });
    await client.identify(user);
    await s.r.publish(`rm.users.${user}`, 'owed while the network dies');
    const [message] = await client.messages(1);
    expect(await s.r.llen(`rm:users:${user}:messages`)).toBe(0); // owed, not queued

    const cutBefore = await metric(server, CUT);
    proxy.silence();
    const silencedAt = Date.now();
    // The contract's bound is interval + timeout (1 s here) plus the check's granularity; allow for a loaded machine.
    await waitFor(async () => (await s.r.llen(`rm:users:${user}:messages`)) === 1, 6000, 'the owed message back in the queue');
    const requeuedAfter = Date.now() - silencedAt;
    expect(JSON.parse((await s.r.lrange(`rm:users:${user}:messages`, 0, -1))[0]).rm).toMatchObject({ id: message.data.id, payload: 'owed while the network dies' });
    // Nothing was heard for interval + timeout before the close: it is not closed early.
    expect(requeuedAfter).toBeGreaterThanOrEqual(INTERVAL_MS);
    await waitFor(async () => (await events(user)).some((e) => e.type === 'offline'), 5000, 'the offline event');
    expect(await metric(server, CUT)).toBe(cutBefore + 1);
    expect(server.logs()).toMatch(new RegExp(`${user}: nothing heard from .* closing it as cut`));
    console.log(`liveness: owed message back in the queue ${requeuedAfter} ms after the network went silent`);
  });

  it('never cuts a client that answers pings, idle or busy', async () => {
    const idle = await s.client();
    const busy = await s.client({ autoAck: true });
    const [quiet, active] = [uniqueId('idle'), uniqueId('busy')];
    await idle.identify(quiet);
    await busy.identify(active);
    const cutBefore = await metric(server, CUT);
    // Six periods of interval + timeout: idle answers pings only; busy gets and acks messages.
    for (let i = 0; i < 30; i++) {
      await s.r.publish(`rm.users.${active}`, `m${i}`);
      await sleep(200);
    }
    await busy.messages(30);
    expect(idle.isOpen).toBe(true);
    expect(busy.isOpen).toBe(true);
    expect(await metric(server, CUT)).toBe(cutBefore);
  });

  it("never cuts live clients for the server's own stall (SIGSTOP longer than interval + timeout)", async () => {
    const clients2 = await Promise.all([0, 1, 2].map(() => s.client()));
    const users = clients2.map(() => uniqueId('stall'));
    await Promise.all(clients2.map((c, i) => c.identify(users[i])));
    const cutBefore = await metric(server, CUT);
    server.kill('SIGSTOP');
    await sleep(3 * (INTERVAL_MS + TIMEOUT_MS));
    server.kill('SIGCONT');
    // Long enough for a ping, its pong, and another check after the first one.
    await sleep(2 * (INTERVAL_MS + TIMEOUT_MS));
    expect(clients2.map((c) => c.isOpen)).toEqual([true, true, true]);
    expect(await metric(server, CUT)).toBe(cutBefore);
    await s.r.publish(`rm.users.${users[0]}`, 'still here');
    expect((await clients2[0].messages(1))[0].data.payload).toBe('still here');
  });
});
