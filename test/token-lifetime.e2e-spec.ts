// Token lifetime (PROTOCOL.md 1.2, "Token lifetime (AUTH_MODE=jwt)") against real servers and
// Redis: a JWT without exp refused (accepted with AUTH_JWT_REQUIRE_EXP=false); TOKEN_EXPIRED and
// 4401 at exp with the owed messages back in the queue; refresh / refreshed moving the deadline;
// a refresh for another sub refused; keys from a JWKS endpoint served here, rotated without a
// restart, kept while the endpoint is down, and no keys at all refused with 4401.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, SignJWT, type JWK } from 'jose';
import { uniqueId } from './support/ids';
import { freePort, sleep } from './support/proc';
import { entryPayload, owedCount } from './support/queue-entries';
import { useServer } from './support/fixtures';
import type { TestServer } from './support/server';
import { metric } from './support/traffic';
import { TestClient } from './support/ws-client';
import { waitFor } from './support/wait';

jest.setTimeout(120_000);

const SECRET = 'an-hs256-secret-that-is-at-least-32-characters-long';
const now = () => Math.floor(Date.now() / 1000);

const log = { LOG_LEVEL: 'log' };
const s = useServer([
  { ...log, AUTH_MODE: 'jwt', AUTH_JWT_SECRET: SECRET, AUTH_CLOCK_SKEW_S: '0' },
  { ...log, AUTH_MODE: 'jwt', AUTH_JWT_SECRET: SECRET, AUTH_JWT_REQUIRE_EXP: 'false' },
  { ...log, AUTH_MODE: 'none' },
]);
// hs: HS256, AUTH_CLOCK_SKEW_S=0 so that expiry tests take seconds; lax: AUTH_JWT_REQUIRE_EXP=false; open: AUTH_MODE=none.
const [hs, lax, open] = s.servers;
const newServer = (env: Record<string, string>) => s.start({ ...log, ...env });

/** An HS256 token for `sub`; `exp` in seconds since the epoch, or null for none. */
function hsToken(sub: string, exp: number | null, secret = SECRET): Promise<string> {
  const jwt = new SignJWT({}).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setSubject(sub).setIssuedAt();
  if (exp !== null) jwt.setExpirationTime(exp);
  return jwt.sign(new TextEncoder().encode(secret));
}

/** A token signed by a JWKS key of ours, naming its kid. */
const kidToken = (sub: string, key: { kid: string; privateKey: KeyObject }, exp = now() + 300) =>
  new SignJWT({}).setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: key.kid }).setSubject(sub).setIssuedAt().setExpirationTime(exp).sign(key.privateKey);

async function identified(server: TestServer, id: string, token: string): Promise<TestClient> {
  const c = await TestClient.connect(server.wsUrl);
  await c.identify(id, token);
  return c;
}

/** Identify with `token` and expect error UNAUTHORIZED then close 4401; returns the error's message. */
async function refused(server: TestServer, id: string, token: string): Promise<string> {
  const c = await TestClient.connect(server.wsUrl);
  c.send('identify', { id, token });
  const close = await c.closed(10_000);
  expect({ events: c.frames.map((f) => f.event), close: close.code, code: c.frames[0]?.data.code }).toEqual({ events: ['error'], close: 4401, code: 'UNAUTHORIZED' });
  return c.frames[0].data.message;
}

describe('exp', () => {
  it('refuses a token without exp with 4401, and accepts it with AUTH_JWT_REQUIRE_EXP=false (no deadline then)', async () => {
    const id = uniqueId('noexp');
    await refused(hs, id, await hsToken(id, null));
    const c = await identified(lax, id, await hsToken(id, null));
    // With no exp there is nothing to refresh toward: a refresh is answered without one.
    c.send('refresh', { token: await hsToken(id, null) });
    expect((await c.next((f) => f.event === 'refreshed')).data).toEqual({});
    await c.close();
  });

  it('at exp: error TOKEN_EXPIRED, close 4401, and the owed messages back at the head of the queue in order', async () => {
    const id = uniqueId('expiring');
    const exp = now() + 3;
    const c = await identified(hs, id, await hsToken(id, exp));
    for (const p of ['one', 'two', 'three']) await s.r.publish(`rm.users.${id}`, p);
    expect((await c.messages(3)).map((m) => m.data.payload)).toEqual(['one', 'two', 'three']);
    await c.ack([(await c.messages(1))[0].data.id]); // the first is acked: it is not owed any more
    const close = await c.closed(10_000);
    const error = c.frames.find((f) => f.event === 'error');
    expect({ close: close.code, error: error?.data.code }).toEqual({ close: 4401, error: 'TOKEN_EXPIRED' });
    // Not before exp (the server's skew is 0; a second of rounding either way).
    expect(Date.now()).toBeGreaterThanOrEqual((exp - 1) * 1000);
    await waitFor(async () => (await s.r.llen(`rm:users:${id}:messages`)) === 2, 10_000, 'the two unacked messages back in the queue');
    expect((await s.r.lrange(`rm:users:${id}:messages`, 0, -1)).map(entryPayload)).toEqual(['two', 'three']);
    expect(await owedCount(s.r, id)).toBe(0);
    expect(await metric(hs, 'redmessenger_sockets_closed_total\\{cause="token_expired"\\}')).toBeGreaterThanOrEqual(1);
  });

  it('refresh before exp: refreshed with the new exp, and the socket lives past the old one and is served', async () => {
    const id = uniqueId('refresh');
    const c = await identified(hs, id, await hsToken(id, now() + 2));
    const exp = now() + 60;
    c.send('refresh', { token: await hsToken(id, exp) });
    expect((await c.next((f) => f.event !== 'message')).data).toEqual({ exp });
    await sleep(4000); // past the first token's exp
    expect(c.isOpen).toBe(true);
    await s.r.publish(`rm.users.${id}`, 'still here');
    expect((await c.messages(1))[0].data.payload).toBe('still here');
    expect(c.frames.filter((f) => f.event === 'error')).toEqual([]);
    await c.close();
  });

  it('a refreshed token expires in turn', async () => {
    const id = uniqueId('refresh2');
    const c = await identified(hs, id, await hsToken(id, now() + 60));
    c.send('refresh', { token: await hsToken(id, now() + 2) });
    await c.next((f) => f.event === 'refreshed');
    expect((await c.closed(10_000)).code).toBe(4401);
    expect(c.frames.map((f) => f.event === 'error' && f.data.code).filter(Boolean)).toEqual(['TOKEN_EXPIRED']);
  });

  it('a refresh for another sub, an expired, a forged or a garbage token: error UNAUTHORIZED and close 4401', async () => {
    const id = uniqueId('victim');
    for (const token of [await hsToken(uniqueId('other'), now() + 60), await hsToken(id, now() - 10), await hsToken(id, now() + 60, 'another-hs256-secret-at-least-32-characters-long!!'), 'garbage']) {
      const c = await identified(hs, id, await hsToken(id, now() + 60));
      c.send('refresh', { token });
      const close = await c.closed(10_000);
      expect({ close: close.code, events: c.frames.map((f) => f.event), code: c.frames[1]?.data.code }).toEqual({ close: 4401, events: ['ready', 'error'], code: 'UNAUTHORIZED' });
    }
  });

  it('a refresh whose token is not a string is an invalid frame (4400)', async () => {
    const id = uniqueId('badrefresh');
    for (const data of [{}, { token: 5 }, { token: null }]) {
      const c = await identified(hs, id, await hsToken(id, now() + 60));
      c.send('refresh', data);
      expect((await c.closed(10_000)).code).toBe(4400);
      expect(c.frames[1]?.data.code).toBe('BAD_FRAME');
    }
  });

  it('refresh before ready is a bad frame (4400); with AUTH_MODE=none it is an unknown event and the socket stays open', async () => {
    const early = await TestClient.connect(hs.wsUrl);
    early.send('refresh', { token: 'x' });
    expect((await early.closed(10_000)).code).toBe(4400);

    const id = uniqueId('none');
    const c = await TestClient.connect(open.wsUrl);
    await c.identify(id);
    c.send('refresh', { token: await hsToken(id, now() + 60) });
    expect((await c.next((f) => f.event === 'error')).data.code).toBe('UNKNOWN_EVENT');
    await s.r.publish(`rm.users.${id}`, 'open');
    expect((await c.messages(1))[0].data.payload).toBe('open');
    await c.close();
  });
});

/** A JWKS endpoint: serves `keys`, counts requests, can be stopped. */
async function jwksServer() {
  const state = { keys: [] as JWK[], requests: [] as number[] };
  const server = http.createServer((req, res) => {
    state.requests.push(Date.now());
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: state.keys }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  const stop = () => new Promise<void>((resolve) => (server.close(() => resolve()), server.closeAllConnections()));
  return { state, url, stop };
}

async function rsaKey(kid: string) {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  return { kid, privateKey, jwk };
}

describe('AUTH_JWKS_URL', () => {
  it('takes keys by kid beside AUTH_JWT_SECRET, rotates to a new kid without a restart (one fetch per 30 s at most), and keeps the cached keys while the endpoint is down', async () => {
    const endpoint = await jwksServer();
    const [a, b, c] = await Promise.all([rsaKey('key-a'), rsaKey('key-b'), rsaKey('key-c')]);
    endpoint.state.keys = [a.jwk];
    const server = await newServer({ AUTH_MODE: 'jwt', AUTH_JWT_SECRET: SECRET, AUTH_JWKS_URL: endpoint.url });
    const id = uniqueId('jwks');
    (await identified(server, id, await kidToken(id, a))).terminate();
    (await identified(server, id, await hsToken(id, now() + 60))).terminate(); // the secret still works beside it
    const hsWithKid = await new SignJWT({}).setProtectedHeader({ alg: 'HS256', kid: 'hs-1' }).setSubject(id).setExpirationTime('1m').sign(new TextEncoder().encode(SECRET));
    (await identified(server, id, hsWithKid)).terminate(); // HS256 goes to the secret, kid or not
    await refused(server, id, await kidToken(uniqueId('other'), a));
    expect(endpoint.state.requests.length).toBe(1); // fetched at start, cached since

    // Rotation: the provider now publishes key-b only. A token naming it makes the server fetch
    // again, but not sooner than 30 s after the last fetch.
    endpoint.state.keys = [b.jwk];
    await sleep(Math.max(0, endpoint.state.requests[0] + 30_500 - Date.now()));
    (await identified(server, id, await kidToken(id, b))).terminate();
    expect(endpoint.state.requests.length).toBe(2);
    // key-a is gone from the set: refused. An unknown kid again within 30 s: refused with no fetch.
    await refused(server, id, await kidToken(id, a));
    await refused(server, id, await kidToken(id, c));
    await refused(server, id, await kidToken(id, c));
    expect(endpoint.state.requests.length).toBe(2);

    // The endpoint goes away: the cached key-b still verifies.
    await endpoint.stop();
    (await identified(server, id, await kidToken(id, b))).terminate();
    await server.stop();
  });

  it('AUTH_JWKS_URL alone, the endpoint never answered: identifies refused with 4401 and a message saying why', async () => {
    const deadUrl = `http://127.0.0.1:${await freePort()}/jwks.json`;
    const server = await newServer({ AUTH_MODE: 'jwt', AUTH_JWKS_URL: deadUrl });
    const key = await rsaKey('key-a');
    const id = uniqueId('nokeys');
    expect(await refused(server, id, await kidToken(id, key))).toMatch(/no verification keys/);
    expect(server.logs()).toMatch(/AUTH_JWKS_URL: no key set fetched/);
    await server.stop();
  });
});
