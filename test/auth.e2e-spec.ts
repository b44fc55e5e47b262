// Auth e2e: AUTH_MODE none, key and jwt (HS256, RS256, ES256) against real servers, and the
// start refused when AUTH_MODE is missing in production or unknown.
// PROTOCOL.md point 8 (Auth), close codes 4401 (unauthorized, preceded by an `error` frame)
// and 4400 (a `token` present but not a string is an invalid frame).
import { generateKeyPairSync, KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { uniqueId } from './support/ids';
import { useServer } from './support/fixtures';
import type { TestServer } from './support/server';
import { CloseInfo, Frame, TestClient } from './support/ws-client';
import { within } from './support/wait';

jest.setTimeout(60_000);

const HS_SECRET = 'an-hs256-secret-that-is-at-least-32-characters-long';
const OTHER_SECRET = 'another-hs256-secret-at-least-32-characters-long!!';

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const rsaOther = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ecOther = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const pem = (key: KeyObject) => key.export({ type: 'spki', format: 'pem' }).toString();
const RSA_PEM = pem(rsa.publicKey);
const EC_PEM = pem(ec.publicKey);

const log = { LOG_LEVEL: 'log' };
const s = useServer([
  { ...log, AUTH_MODE: 'none' },
  { ...log, AUTH_MODE: '', NODE_ENV: 'development' }, // empty is unset: the default, none
  { ...log, AUTH_MODE: 'key' },
  { ...log, AUTH_MODE: 'jwt', AUTH_JWT_SECRET: HS_SECRET },
  { ...log, AUTH_MODE: 'jwt', AUTH_JWT_PUBLIC_KEY: RSA_PEM },
  { ...log, AUTH_MODE: 'jwt', AUTH_JWT_PUBLIC_KEY: EC_PEM },
]);
const [none, unset, key, hs, rs, es] = s.servers;
const newServer = (env: Record<string, string>) => s.start({ ...log, ...env });

const now = () => Math.floor(Date.now() / 1000);

/** A JWT signed with `alg` (HS256 takes a string secret, RS256/ES256 a private key). */
function sign(sub: string, alg: 'HS256' | 'RS256' | 'ES256', secret: string | KeyObject, exp: number | string = '5m'): Promise<string> {
  const k = typeof secret === 'string' ? new TextEncoder().encode(secret) : secret;
  return new SignJWT({}).setProtectedHeader({ alg, typ: 'JWT' }).setSubject(sub).setIssuedAt().setExpirationTime(exp).sign(k);
}

/** An unsigned JWT: {"alg":"none"}, empty signature. */
function unsigned(sub: string): string {
  const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub, iat: now(), exp: now() + 300 })}.`;
}

async function accepted(server: TestServer, id: string, token?: string): Promise<Frame> {
  const c = await TestClient.connect(server.wsUrl);
  try {
    const ready = await c.identify(id, token);
    expect(ready.data).toEqual(expect.objectContaining({ id, channel: `rm.users.${id}` }));
    return ready;
  } finally {
    await c.close();
  }
}

interface Refusal {
  error: unknown;
  close: CloseInfo;
}

/**
 * Sends identify with `data` and expects an `error` frame, then the close; never `ready`.
 * Returns the error frame's data and the close, to compare refusals.
 */
async function refused(server: TestServer, data: Record<string, unknown>, closeCode: number): Promise<Refusal> {
  const c = await TestClient.connect(server.wsUrl);
  c.send('identify', data);
  const close = await c.closed(10_000);
  const events = c.frames.map((f) => f.event);
  expect({ sent: data, events, close: close.code }).toEqual({ sent: data, events: ['error'], close: closeCode });
  const error = c.frames[0].data;
  expect(error).toEqual({ code: expect.any(String), message: expect.any(String) });
  if (closeCode === 4401) expect(error.code).toBe('UNAUTHORIZED');
  return { error, close };
}

const unauthorized = (server: TestServer, id: string, token?: unknown) => refused(server, token === undefined ? { id } : { id, token }, 4401);

describe('AUTH_MODE=none', () => {
  it('accepts an identify without a token', async () => {
    await accepted(none, uniqueId('none'));
  });

  it('is the default outside production (AUTH_MODE unset)', async () => {
    await accepted(unset, uniqueId('unset'));
  });

  it('refuses a token that is not a string (4400)', async () => {
    await refused(none, { id: uniqueId('none'), token: 5 }, 4400);
  });

  it('accepts a 900 KiB string token: the frame size (MAX_FRAME_BYTES) is the only limit', async () => {
    await accepted(none, uniqueId('none'), 't'.repeat(900 * 1024));
  });
});

describe('AUTH_MODE=key', () => {
  it('accepts the token equal to rm:users:<id>:key', async () => {
    const id = uniqueId('key');
    await s.r.set(`rm:users:${id}:key`, 'the-right-key ✓');
    await accepted(key, id, 'the-right-key ✓');
  });

  it('refuses a wrong token, a missing token and an id with no key stored, with UNAUTHORIZED then 4401', async () => {
    const id = uniqueId('key');
    await s.r.set(`rm:users:${id}:key`, 'the-right-key');
    await unauthorized(key, id, 'the-wrong-key');
    await unauthorized(key, id, 'the-right-ke'); // a prefix
    await unauthorized(key, id, 'the-right-key '); // longer
    await unauthorized(key, id, '');
    await unauthorized(key, id);
    const keyless = uniqueId('keyless');
    await unauthorized(key, keyless, 'anything');
    await unauthorized(key, keyless, '');
    await unauthorized(key, keyless);
    // The key of another id does not open this one.
    await unauthorized(key, keyless, 'the-right-key');
  });

  it('checks the key stored when the identify arrives', async () => {
    const id = uniqueId('key');
    await s.r.set(`rm:users:${id}:key`, 'first');
    await accepted(key, id, 'first');
    await s.r.set(`rm:users:${id}:key`, 'second');
    await unauthorized(key, id, 'first');
    await accepted(key, id, 'second');
    await s.r.del(`rm:users:${id}:key`);
    await unauthorized(key, id, 'second');
  });

  it('answers a failure identically whether or not the id has a key or queued messages', async () => {
    const known = uniqueId('known');
    await s.r.set(`rm:users:${known}:key`, 'known-key');
    await s.r.rpush(`rm:users:${known}:messages`, 'queued');
    const unknown = uniqueId('unknown');
    const a = await unauthorized(key, known, 'guess');
    const b = await unauthorized(key, unknown, 'guess');
    expect(b).toEqual(a);
    expect(await unauthorized(key, known)).toEqual(a);
    expect(await unauthorized(key, unknown)).toEqual(a);
    expect(await s.r.lrange(`rm:users:${known}:messages`, 0, -1)).toEqual(['queued']); // a refusal takes nothing
  });

  it('refuses a token that is not a string (4400), even the right key as a number', async () => {
    const id = uniqueId('key');
    await s.r.set(`rm:users:${id}:key`, '12345');
    await refused(key, { id, token: 12345 }, 4400);
    await refused(key, { id, token: null }, 4400);
    await refused(key, { id, token: ['12345'] }, 4400);
  });

  it('checks a 900 KiB token like any other: the right one passes, a wrong one gets 4401', async () => {
    const id = uniqueId('key');
    const big = 'k'.repeat(900 * 1024);
    await s.r.set(`rm:users:${id}:key`, big);
    await accepted(key, id, big);
    await unauthorized(key, id, `${big.slice(1)}x`);
  });
});

describe('AUTH_MODE=jwt, HS256 (AUTH_JWT_SECRET)', () => {
  it('accepts a valid token whose sub is the id', async () => {
    const id = uniqueId('hs');
    await accepted(hs, id, await sign(id, 'HS256', HS_SECRET));
  });

  it('refuses sub != id, expired, garbage, alg none, a wrong secret and a missing token with 4401', async () => {
    const id = uniqueId('hs');
    await unauthorized(hs, id, await sign(uniqueId('other'), 'HS256', HS_SECRET));
    await unauthorized(hs, id, await sign(id, 'HS256', HS_SECRET, now() - 120));
    await unauthorized(hs, id, 'garbage');
    await unauthorized(hs, id, 'a.b.c');
    await unauthorized(hs, id, unsigned(id));
    await unauthorized(hs, id, await sign(id, 'HS256', OTHER_SECRET));
    await unauthorized(hs, id, await sign(id, 'RS256', rsa.privateKey));
    await unauthorized(hs, id, '');
    await unauthorized(hs, id);
    // A valid token with its signature cut off, or its payload swapped for another id's.
    const good = await sign(id, 'HS256', HS_SECRET);
    await unauthorized(hs, id, good.slice(0, good.lastIndexOf('.') + 1));
    const other = uniqueId('other');
    const [h, , s] = good.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ sub: other, exp: now() + 300 })).toString('base64url')}.${s}`;
    await unauthorized(hs, other, forged);
  });

  it('refuses a 900 KiB string that is no JWT with 4401, not as a bad frame', async () => {
    await unauthorized(hs, uniqueId('hs'), 'j'.repeat(900 * 1024));
  });

  it('answers a failure identically whether or not the id exists', async () => {
    const known = uniqueId('known');
    await s.r.rpush(`rm:users:${known}:messages`, 'queued');
    await s.r.set(`rm:users:${known}:key`, 'irrelevant');
    const unknown = uniqueId('unknown');
    const token = await sign(uniqueId('someone'), 'HS256', HS_SECRET);
    const a = await unauthorized(hs, known, token);
    expect(await unauthorized(hs, unknown, token)).toEqual(a);
    expect(await unauthorized(hs, unknown, 'garbage')).toEqual(a);
    expect(await unauthorized(hs, known)).toEqual(a);
  });

  it('refuses a token that is not a string (4400)', async () => {
    await refused(hs, { id: uniqueId('hs'), token: 5 }, 4400);
    await refused(hs, { id: uniqueId('hs'), token: { alg: 'none' } }, 4400);
  });
});

describe('AUTH_MODE=jwt, RS256 (AUTH_JWT_PUBLIC_KEY)', () => {
  it('accepts a valid RS256 token whose sub is the id', async () => {
    const id = uniqueId('rs');
    await accepted(rs, id, await sign(id, 'RS256', rsa.privateKey));
  });

  it('refuses algorithm confusion (HS256 signed with the PEM as secret), alg none, another key, sub != id, expired', async () => {
    const id = uniqueId('rs');
    await unauthorized(rs, id, await sign(id, 'HS256', RSA_PEM));
    await unauthorized(rs, id, await sign(id, 'HS256', RSA_PEM.trim()));
    await unauthorized(rs, id, unsigned(id));
    await unauthorized(rs, id, await sign(id, 'RS256', rsaOther.privateKey));
    await unauthorized(rs, id, await sign(id, 'ES256', ec.privateKey));
    await unauthorized(rs, id, await sign(uniqueId('other'), 'RS256', rsa.privateKey));
    await unauthorized(rs, id, await sign(id, 'RS256', rsa.privateKey, now() - 120));
    await unauthorized(rs, id, 'garbage');
    await unauthorized(rs, id);
  });
});

describe('AUTH_MODE=jwt, ES256 (AUTH_JWT_PUBLIC_KEY)', () => {
  it('accepts a valid ES256 token whose sub is the id', async () => {
    const id = uniqueId('es');
    await accepted(es, id, await sign(id, 'ES256', ec.privateKey));
  });

  it('refuses algorithm confusion (HS256 signed with the PEM as secret), alg none, another key, sub != id, expired', async () => {
    const id = uniqueId('es');
    await unauthorized(es, id, await sign(id, 'HS256', EC_PEM));
    await unauthorized(es, id, unsigned(id));
    await unauthorized(es, id, await sign(id, 'ES256', ecOther.privateKey));
    await unauthorized(es, id, await sign(id, 'RS256', rsa.privateKey));
    await unauthorized(es, id, await sign(uniqueId('other'), 'ES256', ec.privateKey));
    await unauthorized(es, id, await sign(id, 'ES256', ec.privateKey, now() - 120));
    await unauthorized(es, id);
  });
});

describe('AUTH_MODE=jwt with AUTH_JWT_ISSUER, AUTH_JWT_AUDIENCE and AUTH_CLOCK_SKEW_S', () => {
  let strict: TestServer;
  const SKEW = 30;
  beforeAll(async () => {
    strict = await newServer({
      AUTH_MODE: 'jwt',
      AUTH_JWT_SECRET: HS_SECRET,
      AUTH_JWT_ISSUER: 'https://issuer.example',
      AUTH_JWT_AUDIENCE: 'redmessenger',
      AUTH_CLOCK_SKEW_S: String(SKEW),
    });
  });
  const token = (sub: string, claims: { iss?: string; aud?: string; iat?: number; exp?: number }) => {
    const jwt = new SignJWT({}).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setSubject(sub);
    if (claims.iss) jwt.setIssuer(claims.iss);
    if (claims.aud) jwt.setAudience(claims.aud);
    jwt.setIssuedAt(claims.iat ?? now());
    jwt.setExpirationTime(claims.exp ?? now() + 300);
    return jwt.sign(new TextEncoder().encode(HS_SECRET));
  };
  const good = { iss: 'https://issuer.example', aud: 'redmessenger' };

  it('accepts the configured issuer and audience', async () => {
    const id = uniqueId();
    await accepted(strict, id, await token(id, good));
  });

  it('refuses a wrong or missing iss or aud (4401)', async () => {
    const id = uniqueId();
    await unauthorized(strict, id, await token(id, { ...good, iss: 'https://evil.example' }));
    await unauthorized(strict, id, await token(id, { ...good, aud: 'someone-else' }));
    await unauthorized(strict, id, await token(id, { aud: good.aud }));
    await unauthorized(strict, id, await token(id, { iss: good.iss }));
  });

  it('tolerates clock skew up to AUTH_CLOCK_SKEW_S, and refuses beyond it', async () => {
    const id = uniqueId();
    await accepted(strict, id, await token(id, { ...good, exp: now() - (SKEW - 10) }));
    await unauthorized(strict, id, await token(id, { ...good, exp: now() - (SKEW + 10) }));
    await accepted(strict, id, await token(id, { ...good, iat: now() + (SKEW - 10) }));
    await unauthorized(strict, id, await token(id, { ...good, iat: now() + (SKEW + 60), exp: now() + 600 }));
  });

  it('never logs a token', async () => {
    const id = uniqueId();
    const secretToken = await token(id, good);
    await accepted(strict, id, secretToken);
    await unauthorized(strict, id, `${secretToken}x`);
    expect(strict.logs()).not.toContain(secretToken);
  });
});

describe('AUTH_MODE at start', () => {
  const refusesToStart = async (env: Record<string, string>) => {
    // Redis is reachable, so only the configuration can stop the start.
    const server = await s.start(env, { waitReady: false });
    const exit = await within(server.exited(), 20_000, `the server to exit with ${JSON.stringify(env)}`);
    expect(exit.code).not.toBe(0);
    expect(exit.code).not.toBeNull();
    expect(server.logs()).toMatch(/AUTH_MODE/);
    expect(server.logs()).not.toMatch(/listening on port/);
  };

  it('NODE_ENV=production without AUTH_MODE: the start fails with a message naming AUTH_MODE', async () => {
    await refusesToStart({ NODE_ENV: 'production', AUTH_MODE: '' });
  });

  it('AUTH_MODE=bogus: the start fails with a message naming AUTH_MODE', async () => {
    await refusesToStart({ AUTH_MODE: 'bogus' });
    await refusesToStart({ NODE_ENV: 'production', AUTH_MODE: 'bogus' });
  });

  it('NODE_ENV=production with AUTH_MODE=none set explicitly starts and accepts no token', async () => {
    const server = await newServer({ NODE_ENV: 'production', AUTH_MODE: 'none' });
    await accepted(server, uniqueId('prod'));
    await server.stop();
  });
});
