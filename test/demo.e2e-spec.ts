// The demo page (DEMO=true) in headless Debian Chromium driven by playwright-core: two
// pages as two users, a message queued while a page is closed, a screenshot; and the
// SDK loaded as an ES module in the browser, receiving a published message and acking it.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { SignJWT } from 'jose';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { uniqueId } from './support/ids';
import { connectionCount, leftoverKeys } from './support/queue-entries';
import { startRedis, type TestRedis } from './support/redis';
import { startServer, type TestServer } from './support/server';
import { waitFor, within } from './support/wait';

jest.setTimeout(120_000);

const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--disable-quic', '--no-first-run',
];
const UI_TIMEOUT_MS = 15_000;
const SCREENSHOT = path.resolve(__dirname, '..', 'test-artifacts', 'demo.png');

let redis: TestRedis;
let r: Redis;
let server: TestServer;
let context: BrowserContext;
let profile: string;
const pageErrors: string[] = [];

beforeAll(async () => {
  redis = await startRedis();
  r = redis.client();
  server = await startServer({ REDIS_URL: redis.url, LOG_LEVEL: 'log', DEMO: 'true' });
  profile = mkdtempSync(path.join(os.tmpdir(), 'rm-chromium-'));
  // A persistent context because Playwright owns --user-data-dir: this is the fresh temp profile.
  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 30_000 });
  context.setDefaultTimeout(UI_TIMEOUT_MS);
});

afterAll(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await server?.stop();
  await redis?.close();
});

afterEach(() => {
  expect(pageErrors.splice(0)).toEqual([]);
});

async function openDemo(): Promise<Page> {
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`${server.url}/demo`);
  await page.waitForFunction(() => (globalThis as unknown as { demoReady?: boolean }).demoReady === true);
  return page;
}

async function identify(page: Page, id: string): Promise<void> {
  await page.fill('#user', id);
  await page.click('#connect');
  await page.locator('#state', { hasText: /^ready$/ }).waitFor();
}

const message = (page: Page, text: string) => page.locator('#messages li', { hasText: text });
const waitAllAcked = (id: string) => waitFor(async () => (await leftoverKeys(r, id)).length === 0, 10_000, `no owed or queued keys left for ${id}`);

describe('demo page', () => {
  it('two users: a message sent from one page appears in the other; one queued while a page was closed appears when it reconnects', async () => {
    const alice = uniqueId('alice');
    const bob = uniqueId('bob');
    const a = await openDemo();
    await identify(a, alice);
    let b = await openDemo();
    await identify(b, bob);

    await a.fill('#to', bob);
    await a.fill('#payload', 'hi bob');
    await a.click('#send-button');
    await a.locator('#sent', { hasText: `Sent to rm.users.${bob}` }).waitFor();
    const live = message(b, 'hi bob');
    await live.waitFor();
    expect(await live.innerText()).toMatch(new RegExp(`on rm\\.users\\.${bob.replace(/\./g, '\\.')}, \\d+\\.\\d s ago`));
    await waitAllAcked(bob);

    // Bob's page closes: his next message waits in Redis.
    await b.close();
    await waitFor(async () => (await connectionCount(r, bob)) === 0, 10_000, `${bob} to have no socket`);
    await a.fill('#payload', 'while you were away');
    await a.click('#send-button');
    await waitFor(async () => (await r.llen(`rm:users:${bob}:messages`)) === 1, 10_000, `one message queued for ${bob}`);

    b = await openDemo();
    await identify(b, bob);
    await b.locator('#ready', { hasText: `Connected as ${bob}: 1 queued` }).waitFor();
    const queued = message(b, 'while you were away');
    await queued.waitFor();
    expect(await queued.innerText()).toContain('queued while you were away');
    await waitAllAcked(bob);

    // And back: bob answers alice from the page.
    await b.fill('#to', alice);
    await b.fill('#payload', 'thanks alice');
    await b.click('#send-button');
    await message(a, 'thanks alice').waitFor();

    mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await b.screenshot({ path: SCREENSHOT, fullPage: true });

    // Disconnect shows in the state badge.
    await b.click('#disconnect');
    await b.locator('#state', { hasText: /^closed$/ }).waitFor();
    await a.close();
    await b.close();
  });

  it('the send form says why a bad recipient is refused (400 from POST /demo/messages)', async () => {
    const page = await openDemo();
    await page.fill('#to', 'not a valid id');
    await page.fill('#payload', 'x');
    await page.click('#send-button');
    await page.locator('#sent', { hasText: 'Not sent: to must be a user id' }).waitFor();

    const res = await fetch(`${server.url}/demo/messages`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ to: '.starts-with-dot', payload: 'x' }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string[] }).message).toEqual([expect.stringMatching(/^to must be a user id/)]);
    await page.close();
  });
});

describe('SDK in the browser', () => {
  it('loads as an ES module from the demo server, receives a published message and acks it', async () => {
    const id = uniqueId('browser');
    const page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${server.url}/demo`);
    // The browser's own WebSocket: no constructor passed. A string, so that ts-jest does not
    // turn the dynamic import() into a require().
    await page.evaluate(`(async () => {
      const { RedMessengerClient } = await import('/demo/client.js');
      const client = new RedMessengerClient({ url: ${JSON.stringify(server.wsUrl)}, id: ${JSON.stringify(id)} });
      window.received = new Promise((resolve) => client.on('message', (m) => resolve(m)));
      window.sdkClient = client;
      await client.connect();
    })()`);
    await r.publish(`rm.users.${id}`, 'to the browser');
    const received = await within(page.evaluate(() => (globalThis as unknown as { received: Promise<unknown> }).received), UI_TIMEOUT_MS, 'the message in the browser');
    expect(received).toEqual({ id: expect.any(String), channel: `rm.users.${id}`, payload: 'to the browser', ts: expect.any(Number) });
    await waitAllAcked(id);
    await page.evaluate(() => (globalThis as unknown as { sdkClient: { close(): void } }).sdkClient.close());
    await page.close();
  });
});

describe('SDK in the browser on a jwt server', () => {
  const SECRET = 'an-hs256-secret-that-is-at-least-32-characters-long';
  it('refreshes its token by itself and stays connected on one socket past the first token\'s exp', async () => {
    const jwtServer = await startServer({ REDIS_URL: redis.url, LOG_LEVEL: 'log', DEMO: 'true', AUTH_MODE: 'jwt', AUTH_JWT_SECRET: SECRET, AUTH_CLOCK_SKEW_S: '0' });
    try {
      const id = uniqueId('browser');
      const page = await context.newPage();
      page.on('pageerror', (e) => pageErrors.push(e.message));
      // The page's token function asks the test, as a page would ask its backend: 6 s tokens.
      let minted = 0;
      await page.exposeFunction('mintToken', () => {
        minted++;
        return new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(id).setIssuedAt().setExpirationTime('6s').sign(new TextEncoder().encode(SECRET));
      });
      await page.goto(`${jwtServer.url}/demo`);
      await page.evaluate(`(async () => {
        const { RedMessengerClient } = await import('/demo/client.js');
        const client = new RedMessengerClient({ url: ${JSON.stringify(jwtServer.wsUrl)}, id: ${JSON.stringify(id)}, token: () => window.mintToken() });
        window.log = [];
        client.on('state', (s) => window.log.push('state ' + s));
        client.on('error', (e) => window.log.push('error ' + e.code));
        window.received = new Promise((resolve) => client.on('message', (m) => resolve(m)));
        window.sdkClient = client;
        await client.connect();
      })()`);
      await new Promise((resolve) => setTimeout(resolve, 14_000)); // past the exp of the first two tokens
      await r.publish(`rm.users.${id}`, 'still connected');
      const received = await within(page.evaluate(() => (globalThis as unknown as { received: Promise<{ payload: string }> }).received), UI_TIMEOUT_MS, 'the message in the browser');
      expect(received.payload).toBe('still connected');
      expect(await page.evaluate(() => (globalThis as unknown as { log: string[] }).log)).toEqual(['state connecting', 'state ready']);
      expect(minted).toBeGreaterThanOrEqual(4);
      await page.evaluate(() => (globalThis as unknown as { sdkClient: { close(): void } }).sdkClient.close());
      await page.close();
    } finally {
      await jwtServer.stop();
    }
  });
});

describe('without DEMO', () => {
  it('serves no demo routes', async () => {
    const plain = await startServer({ REDIS_URL: redis.url, LOG_LEVEL: 'log' });
    try {
      expect((await fetch(`${plain.url}/demo`)).status).toBe(404);
      expect((await fetch(`${plain.url}/demo/client.js`)).status).toBe(404);
      const post = await fetch(`${plain.url}/demo/messages`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"to":"a","payload":"b"}' });
      expect(post.status).toBe(404);
    } finally {
      await plain.stop();
    }
  });
});
