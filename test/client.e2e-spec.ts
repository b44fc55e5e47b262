// The client SDK (client/src, compiled here by ts-jest) against the real built server
// and a real Redis, on Node's `ws`: ready and queued, live messages, acks, a throwing
// handler, refused tokens, replacement, dedupe across a reconnect, and a server
// SIGKILLed mid-purge. The built ESM package itself is run once in a plain node process.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Redis } from 'ioredis';
import WebSocket from 'ws';
import { SignJWT } from 'jose';
import { RedMessengerClient, type ClientOptions, type Message, type RedMessengerError, type ReadyInfo, type State } from '../client/src/index';
import { uniqueId } from './support/ids';
import { sleep, trackChild } from './support/proc';
import { leftoverKeys, owedCount, owedIds } from './support/queue-entries';
import { startRedis, type TestRedis } from './support/redis';
import { startServer, type TestServer } from './support/server';
import { waitFor, within } from './support/wait';

jest.setTimeout(120_000);

const ROOT = path.resolve(__dirname, '..');
// Short backoffs so reconnects in these tests take milliseconds, not seconds.
const FAST = { initialDelayMs: 50, maxDelayMs: 500, busyDelayMs: 500, shutdownDelayMs: 200, stableAfterMs: 1000 };

/** `ws`, recording every socket it opens and every message frame those sockets receive. */
function recordingWebSocket() {
  const sockets: WebSocket[] = [];
  const openedAt: number[] = [];
  const messageIds: string[] = [];
  class Recording extends WebSocket {
    constructor(url: string) {
      super(url);
      sockets.push(this);
      openedAt.push(Date.now());
      this.on('message', (raw) => {
        const frame = JSON.parse(raw.toString());
        if (frame.event === 'message') messageIds.push(frame.data.id);
      });
    }
  }
  return { WebSocket: Recording, sockets, openedAt, messageIds };
}

/** A client with everything it reports recorded. */
function newClient(opts: Partial<ClientOptions> & { url: string; id: string }, handler?: (m: Message) => unknown) {
  const wire = recordingWebSocket();
  const client = new RedMessengerClient({ WebSocket: wire.WebSocket, reconnect: FAST, ...opts });
  const handled: Message[] = [];
  const errors: RedMessengerError[] = [];
  const states: State[] = [];
  const readies: ReadyInfo[] = [];
  client.on('message', async (m) => {
    if (handler) await handler(m);
    handled.push(m);
  });
  client.on('error', (e) => errors.push(e));
  client.on('state', (s) => states.push(s));
  client.on('ready', (r) => readies.push(r));
  clients.push(client);
  return { client, wire, handled, errors, states, readies, payloads: () => handled.map((m) => m.payload) };
}

const clients: RedMessengerClient[] = [];
const servers: TestServer[] = [];
let redis: TestRedis;
let r: Redis;

async function newServer(env: Record<string, string> = {}): Promise<TestServer> {
  const s = await startServer({ REDIS_URL: redis.url, LOG_LEVEL: 'log', ...env });
  servers.push(s);
  return s;
}

const range = (n: number, prefix = 'm') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

async function publish(id: string, payloads: string[]): Promise<void> {
  for (let i = 0; i < payloads.length; i += 500) {
    const p = r.pipeline();
    for (const payload of payloads.slice(i, i + 500)) p.publish(`rm.users.${id}`, payload);
    await p.exec();
  }
}

const waitQueued = (id: string, n: number) => waitFor(async () => (await r.llen(`rm:users:${id}:messages`)) === n, 10_000, `${n} messages queued for ${id}`);
/** Nothing owed, nothing queued: every message was acked. */
const waitAllAcked = (id: string, timeoutMs = 10_000) => waitFor(async () => (await leftoverKeys(r, id)).length === 0, timeoutMs, `no owed or queued keys left for ${id}`);

beforeAll(async () => {
  redis = await startRedis();
  r = redis.client();
});

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
  await redis?.close();
});

describe('client SDK on a server', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await newServer();
  });

  it('connect() resolves at ready with the queued count; queued then live messages arrive in order; acks empty what is owed', async () => {
    const id = uniqueId('sdk');
    await publish(id, range(3, 'q'));
    await waitQueued(id, 3);

    const c = newClient({ url: server.wsUrl, id });
    await within(c.client.connect(), 10_000, 'connect()');
    expect(c.readies).toEqual([{ id, channel: `rm.users.${id}`, queued: 3, dropped: 0 }]);
    expect(c.states).toEqual(['connecting', 'ready']);
    expect(c.client.state).toBe('ready');

    await waitFor(() => c.handled.length === 3, 10_000, '3 queued messages handled');
    await publish(id, range(4, 'live'));
    await waitFor(() => c.handled.length === 7, 10_000, '7 messages handled');
    expect(c.payloads()).toEqual([...range(3, 'q'), ...range(4, 'live')]);
    for (const m of c.handled) expect(m).toEqual({ id: expect.any(String), channel: `rm.users.${id}`, payload: m.payload, ts: expect.any(Number) });

    await waitAllAcked(id);
    expect(await owedCount(r, id)).toBe(0);
    c.client.close();
    expect(c.client.state).toBe('closed');

    // A fresh connection is owed nothing.
    const again = newClient({ url: server.wsUrl, id });
    await within(again.client.connect(), 10_000, 'second connect()');
    expect(again.readies[0].queued).toBe(0);
    expect(c.errors).toEqual([]);
  });

  it('hands messages over one at a time, awaiting each handler', async () => {
    const id = uniqueId('sdk');
    let running = 0;
    let most = 0;
    const c = newClient({ url: server.wsUrl, id }, async () => {
      most = Math.max(most, ++running);
      await sleep(5);
      running--;
    });
    await c.client.connect();
    await publish(id, range(30));
    await waitFor(() => c.handled.length === 30, 10_000, '30 messages handled');
    expect(most).toBe(1);
    expect(c.payloads()).toEqual(range(30));
    await waitAllAcked(id);
  });

  it('reports a throwing handler, leaves that message unacked, and hands it over again after a reconnect', async () => {
    const id = uniqueId('sdk');
    let failures = 0;
    const c = newClient({ url: server.wsUrl, id }, (m) => {
      if (m.payload === 'bad' && failures++ === 0) throw new Error('not today');
    });
    await c.client.connect();
    await publish(id, ['a', 'bad', 'b']);
    await waitFor(() => c.handled.length === 2, 10_000, 'a and b handled');
    expect(c.payloads()).toEqual(['a', 'b']);
    expect(c.errors).toHaveLength(1);
    const badId = c.errors[0].messageId!;
    expect(c.errors[0]).toMatchObject({ code: 'HANDLER', fatal: false, message: expect.stringContaining('not today') });

    // a and b acked; bad still owed.
    await waitFor(async () => (await owedIds(r, id)).join() === badId, 10_000, 'only the failed message owed');

    await server.restart(); // 1001, then the client comes back on its own
    await waitFor(() => c.handled.length === 3, 20_000, 'the failed message handled after the reconnect');
    expect(c.payloads()).toEqual(['a', 'b', 'bad']);
    expect(c.handled[2].id).toBe(badId);
    expect(c.readies.map((x) => x.queued)).toEqual([0, 1]);
    expect(c.states).toEqual(['connecting', 'ready', 'reconnecting', 'ready']);
    expect(c.errors.map((e) => e.closeCode)).toContain(1001);
    await waitAllAcked(id);
  });
});

describe('client SDK: stops where reconnecting cannot help', () => {
  it('4401: connect() rejects with UNAUTHORIZED, state closed, no further attempts; a token function is asked at each connect', async () => {
    const server = await newServer({ AUTH_MODE: 'key' });
    const id = uniqueId('sdk');
    const c = newClient({ url: server.wsUrl, id });

    const err = await within(
      c.client.connect().then(
        () => undefined,
        (e: RedMessengerError) => e,
      ),
      10_000,
      'connect() to settle',
    );
    expect(err).toMatchObject({ code: 'UNAUTHORIZED', closeCode: 4401, fatal: true, message: expect.stringMatching(/not reconnecting/) });
    expect(c.client.state).toBe('closed');
    expect(c.states).toEqual(['connecting', 'closed']);
    expect(c.errors).toEqual([err]);

    // Even once the key exists, the stopped client does not try again (FAST's longest wait is 500 ms).
    await r.set(`rm:users:${id}:key`, 'sesame');
    await sleep(1500);
    expect(c.wire.sockets).toHaveLength(1);
    expect(c.readies).toEqual([]);

    // With the right token, asked before every connect.
    let asked = 0;
    const ok = newClient({ url: server.wsUrl, id, token: async () => (asked++, 'sesame') });
    await within(ok.client.connect(), 10_000, 'connect() with the key');
    expect(asked).toBe(1);
    await server.restart();
    await waitFor(() => ok.readies.length === 2, 20_000, 'ready after the server restart');
    expect(asked).toBeGreaterThanOrEqual(2);
  });

  it('4409: a client replaced by a newer socket of its id stops instead of fighting it', async () => {
    const server = await newServer({ MAX_SOCKETS_PER_USER: '1' });
    const id = uniqueId('sdk');
    const older = newClient({ url: server.wsUrl, id });
    await older.client.connect();
    const newer = newClient({ url: server.wsUrl, id });
    await newer.client.connect();

    await waitFor(() => older.client.state === 'closed', 10_000, 'the older client to stop');
    expect(older.errors).toEqual([expect.objectContaining({ code: 'REPLACED', closeCode: 4409, fatal: true })]);
    await sleep(1500);
    expect(older.wire.sockets).toHaveLength(1);
    expect(newer.client.state).toBe('ready');
    expect(newer.states).toEqual(['connecting', 'ready']);

    await publish(id, ['to the newer one']);
    await waitFor(() => newer.handled.length === 1, 10_000, 'the newer client to get the message');
    expect(older.handled).toEqual([]);
  });
});

describe('client SDK while Redis is down', () => {
  it('1013 (identify while Redis is down): backs off at least busyDelayMs per retry, and gets ready once Redis is back', async () => {
    const own = await startRedis({ restartable: true });
    try {
      const server = await startServer({ REDIS_URL: own.url, LOG_LEVEL: 'log' });
      servers.push(server);
      await own.stop();
      const c = newClient({ url: server.wsUrl, id: uniqueId('sdk') });
      const connected = c.client.connect();
      await waitFor(() => c.wire.sockets.length >= 3, 20_000, 'three identify attempts');
      expect(c.errors.slice(0, 2)).toEqual([expect.objectContaining({ code: 'UNAVAILABLE', closeCode: 1013, fatal: false }), expect.objectContaining({ code: 'UNAVAILABLE', closeCode: 1013, fatal: false })]);
      expect(c.client.state).toBe('reconnecting');
      // setTimeout never fires early: each retry came at least busyDelayMs after the previous socket.
      for (let i = 1; i < 3; i++) expect(c.wire.openedAt[i] - c.wire.openedAt[i - 1]).toBeGreaterThanOrEqual(FAST.busyDelayMs);

      await own.start();
      await within(connected, 30_000, 'connect() once Redis is back');
      expect(c.client.state).toBe('ready');
    } finally {
      await own.close();
    }
  });
});

describe('client SDK through server crashes', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await newServer();
  });

  it('hands an id over once when the server sends it again after a reconnect (the ack never landed)', async () => {
    const id = uniqueId('sdk');
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let calls = 0;
    const c = newClient({ url: server.wsUrl, id }, async () => {
      calls++;
      await gate;
    });
    await c.client.connect();
    await publish(id, ['once']);
    await waitFor(() => calls === 1, 10_000, 'the handler to start');

    server.kill('SIGKILL');
    await waitFor(() => c.client.state === 'reconnecting', 10_000, 'the client to notice');
    release(); // handled now, but the socket that delivered it is gone: no ack reached the server
    await waitFor(() => c.handled.length === 1, 5000, 'the handler to finish');

    await server.restart();
    await waitFor(() => c.wire.messageIds.length === 2, 20_000, 'the message sent again after the reconnect');
    expect(new Set(c.wire.messageIds).size).toBe(1);
    await waitAllAcked(id); // the dedupe memory acks the copy
    expect(calls).toBe(1);
    expect(c.payloads()).toEqual(['once']);
  });

  it('handles 2,000 queued messages exactly once and in order through a SIGKILL and restart mid-purge', async () => {
    const id = uniqueId('sdk');
    const all = range(2000, 'p');
    await publish(id, all);
    await waitQueued(id, 2000);

    const c = newClient({ url: server.wsUrl, id }, () => sleep(1));
    await c.client.connect();
    expect(c.readies[0].queued).toBe(2000);
    await waitFor(() => c.handled.length >= 500, 30_000, '500 messages handled');

    server.kill('SIGKILL');
    await waitFor(() => c.client.state === 'reconnecting', 10_000, 'the client to notice');
    expect(c.handled.length).toBeLessThan(2000);
    await server.restart();

    await waitFor(() => c.handled.length >= 2000, 90_000, '2,000 messages handled');
    await waitAllAcked(id, 20_000);
    expect(c.handled.length).toBe(2000);
    expect(c.payloads()).toEqual(all);
    expect(new Set(c.handled.map((m) => m.id)).size).toBe(2000);
    // The crash did cost something: messages in flight came twice on the wire, and only once to the handler.
    expect(c.wire.messageIds.length).toBeGreaterThan(2000);
    expect(c.readies).toHaveLength(2);
    expect(c.readies[1].queued).toBeGreaterThan(0);
  });
});

describe('client SDK: token lifetime (AUTH_MODE=jwt)', () => {
  const SECRET = 'an-hs256-secret-that-is-at-least-32-characters-long';
  /** A 6 s HS256 token: the SDK refreshes it at half its life (3 s); the server (skew 0) closes at exp. */
  const shortToken = (sub: string) => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuedAt().setExpirationTime('6s').sign(new TextEncoder().encode(SECRET));
  let server: TestServer;
  beforeAll(async () => {
    server = await newServer({ AUTH_MODE: 'jwt', AUTH_JWT_SECRET: SECRET, AUTH_CLOCK_SKEW_S: '0' });
  });

  it("refreshes the token by itself: one socket, still served well past the first tokens' exp", async () => {
    const id = uniqueId('sdk');
    let asked = 0;
    const c = newClient({ url: server.wsUrl, id, token: () => (asked++, shortToken(id)) });
    await within(c.client.connect(), 10_000, 'connect()');
    await sleep(14_000); // past the exp of the first two tokens
    await publish(id, ['after refreshes']);
    await waitFor(() => c.handled.length === 1, 10_000, 'the message handled');
    expect(c.payloads()).toEqual(['after refreshes']);
    expect(c.wire.sockets).toHaveLength(1);
    expect(c.errors).toEqual([]);
    expect(asked).toBeGreaterThanOrEqual(4);
  });

  it('TOKEN_EXPIRED (the refresh failed) is not fatal: it reconnects with a new token and gets what was owed', async () => {
    const id = uniqueId('sdk');
    let asked = 0;
    // The first refresh fails (and its retry 5 s later comes too late): the server closes the socket at exp.
    const c = newClient({ url: server.wsUrl, id, token: () => (++asked === 2 || asked === 3 ? Promise.reject(new Error('IdP down')) : shortToken(id)) }, async () => {
      if (c.handled.length === 0) await new Promise(() => undefined); // never settles on the first socket: stays owed
    });
    await within(c.client.connect(), 10_000, 'connect()');
    await publish(id, ['owed']);
    await waitFor(() => c.errors.some((e) => e.code === 'TOKEN_EXPIRED'), 15_000, 'TOKEN_EXPIRED');
    await waitFor(() => c.readies.length === 2, 10_000, 'ready again');
    expect(c.errors.find((e) => e.code === 'TOKEN_EXPIRED')).toMatchObject({ closeCode: 4401, fatal: false });
    expect(c.errors.filter((e) => e.fatal)).toEqual([]);
    expect(c.readies[1].queued).toBe(1);
    expect(c.client.state).toBe('ready');
  });
});

describe('the built package', () => {
  it('imports as ESM in plain Node (exports, types) and receives and acks a message', async () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'client/package.json'), 'utf8'));
    expect(pkg.type).toBe('module');
    expect(pkg.dependencies ?? {}).toEqual({});
    for (const file of [pkg.exports['.'].default, pkg.exports['.'].types]) expect(existsSync(path.join(ROOT, 'client', file))).toBe(true);

    const server = await newServer();
    const id = uniqueId('sdk');
    const script = `
      import { RedMessengerClient } from '@redmessenger/client';
      import WebSocket from 'ws';
      const client = new RedMessengerClient({ url: process.argv[1], id: process.argv[2], WebSocket });
      client.on('ready', () => console.log('ready'));
      client.on('message', (m) => { console.log('message ' + m.payload); setTimeout(() => client.close(), 50); });
      await client.connect();`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, server.wsUrl, id], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    trackChild(child);
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));

    await waitFor(() => out.includes('ready'), 10_000, 'the child to be ready').catch((e: Error) => {
      throw new Error(`${e.message}; its output: ${out}`);
    });
    await publish(id, ['from node']);
    expect(await within(exited, 10_000, 'the child to exit after close()')).toBe(0);
    expect(out.trim().split('\n')).toEqual(['ready', 'message from node']);
    await waitAllAcked(id);
  });
});
