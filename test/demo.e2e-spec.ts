// The demo page (DEMO=true) in headless Debian Chromium driven by playwright-core: two
// pages as two users, a message queued while a page is closed, a screenshot; a message
// taken back by its sender while unread on a hidden page, the visibility badge and the
// SDK's visibility frame; and the SDK loaded as an ES module in the browser, receiving a
// published message and acking it.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SignJWT } from 'jose';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { uniqueId } from './support/ids';
import { connectionCount, leftoverKeys } from './support/queue-entries';
import { useServer } from './support/fixtures';
import { startServer } from './support/server';
import { waitFor, within } from './support/wait';

jest.setTimeout(120_000);

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'];
const UI_TIMEOUT_MS = 15_000;
const SCREENSHOT = path.resolve(__dirname, '..', 'test-artifacts', 'demo.png');

let context: BrowserContext;
let profile: string;
const pageErrors: string[] = [];

// Declared before useServer, so that it runs before the fixture's afterAll stops the server.
afterAll(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

const s = useServer({ LOG_LEVEL: 'log', DEMO: 'true' });
const { server } = s;

beforeAll(async () => {
  profile = mkdtempSync(path.join(os.tmpdir(), 'rm-chromium-'));
  // A persistent context because Playwright owns --user-data-dir: this is the fresh temp profile.
  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 30_000 });
  context.setDefaultTimeout(UI_TIMEOUT_MS);
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
const sentMessage = (page: Page, text: string) => page.locator('#sent-messages li', { hasText: text });
/** Headless pages are always visible: this makes one look hidden (or visible again) to its scripts, as a background tab does. */
const setHidden = (page: Page, hidden: boolean) =>
  // A string: the test's tsconfig has no DOM types.
  page.evaluate(`(() => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => ${JSON.stringify(hidden ? 'hidden' : 'visible')} });
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => ${hidden} });
    document.dispatchEvent(new Event('visibilitychange'));
  })()`);
/** The frames a page sends on its WebSockets, parsed; listen before the page connects. */
function framesSent(page: Page): Array<{ event: string; data: Record<string, unknown> }> {
  const frames: Array<{ event: string; data: Record<string, unknown> }> = [];
  page.on('websocket', (ws) => ws.on('framesent', ({ payload }) => frames.push(JSON.parse(String(payload)))));
  return frames;
}
const waitAllAcked = (id: string) => waitFor(async () => (await leftoverKeys(s.r, id)).length === 0, 10_000, `no owed or queued keys left for ${id}`);

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
    await waitFor(async () => (await connectionCount(s.r, bob)) === 0, 10_000, `${bob} to have no socket`);
    await a.fill('#payload', 'while you were away');
    await a.click('#send-button');
    await waitFor(async () => (await s.r.llen(`rm:users:${bob}:messages`)) === 1, 10_000, `one message queued for ${bob}`);

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

  it('take back: unread on a hidden page, a message goes from it when its sender takes it back; a read one is too late; the visibility badge and frames', async () => {
    const alice = uniqueId('alice');
    const bob = uniqueId('bob');
    const a = await openDemo();
    await identify(a, alice);
    const b = await openDemo();
    const frames = framesSent(b);
    const visibility = () => frames.filter((f) => f.event === 'visibility').map((f) => f.data);
    await identify(b, bob);
    expect(await a.locator('#visibility').innerText()).toBe('visible');
    expect(await b.locator('#visibility').innerText()).toBe('visible');
    expect(visibility()).toEqual([]); // visible is what the server takes a new socket for

    // Bob's page goes to the background: the badge says so, and the SDK tells the server.
    await setHidden(b, true);
    await b.locator('#visibility', { hasText: /^hidden$/ }).waitFor();
    await waitFor(() => visibility().length > 0, 5_000, 'a visibility frame from the hidden page');
    expect(visibility()).toEqual([{ visible: false }]);

    // Sent to the hidden page: shown there, unread, so not acked. (Alice's page in front: a click on a page behind another waits about 2 s here.)
    await a.bringToFront();
    await a.fill('#to', bob);
    await a.fill('#payload', 'take me back');
    await a.click('#send-button');
    const shown = message(b, 'take me back');
    await shown.waitFor();
    expect(await shown.getAttribute('class')).toBe('unread');
    await new Promise((resolve) => setTimeout(resolve, 300)); // the SDK would have acked by now (10 ms) on a visible page
    expect(await s.r.llen(`rm:users:${bob}:owed`)).toBe(1);

    // Alice takes it back: it goes from bob's page, and nothing is owed any more.
    const id = await sentMessage(a, 'take me back').getAttribute('data-id');
    expect(id).toEqual(expect.any(String));
    expect(await shown.getAttribute('data-id')).toBe(id);
    await sentMessage(a, 'take me back').locator('button.take-back').click();
    await sentMessage(a, 'take me back').locator('.outcome', { hasText: 'taken back: gone from their screen' }).waitFor();
    await shown.waitFor({ state: 'detached' });
    await b.locator('#log li', { hasText: `taken back by its sender: #${id}` }).waitFor();
    await waitAllAcked(bob);

    // One more while hidden, then bob looks: read (acked) then, and too late to take back.
    await a.fill('#payload', 'read when you are back');
    await a.click('#send-button');
    const later = message(b, 'read when you are back');
    await later.waitFor();
    expect(await later.getAttribute('class')).toBe('unread');
    await setHidden(b, false);
    await b.locator('#visibility', { hasText: /^visible$/ }).waitFor();
    await waitFor(() => visibility().length === 2, 5_000, 'the second visibility frame');
    expect(visibility()).toEqual([{ visible: false }, { visible: true }]);
    await waitAllAcked(bob);
    expect(await later.getAttribute('class')).toBe('');
    await sentMessage(a, 'read when you are back').locator('button.take-back').click();
    await sentMessage(a, 'read when you are back').locator('.outcome', { hasText: 'too late: already read' }).waitFor();
    expect(await later.isVisible()).toBe(true);

    // Nothing but identify, acks and visibility went out; the socket stayed up throughout (the
    // server's answer to visibility, whatever it is, did not close it).
    expect([...new Set(frames.map((f) => f.event))].sort()).toEqual(['ack', 'identify', 'visibility']);
    expect(frames.filter((f) => f.event === 'identify')).toHaveLength(1);
    expect(await b.locator('#state').innerText()).toBe('ready');
    await a.close();
    await b.close();
  });

  it('the take-back route: 404 for an unknown message, 400 without a valid to, 200 queued for a user who is away', async () => {
    const unknown = await fetch(`${server.url}/demo/messages/no.such.id?to=${uniqueId('nobody')}`, { method: 'DELETE' });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { message: string }).message).toMatch(/^message no\.such\.id is not waiting for /);
    for (const query of ['', '?to=.starts-with-dot']) {
      const res = await fetch(`${server.url}/demo/messages/x${query}`, { method: 'DELETE' });
      expect(res.status).toBe(400);
    }
    // Queued (the user is away): taken back before it reached them.
    const user = uniqueId('away');
    const sent = await fetch(`${server.url}/demo/messages`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ to: user, payload: 'never mind' }) });
    expect(sent.status).toBe(202);
    const { id, channel } = (await sent.json()) as { id: string; channel: string };
    expect(channel).toBe(`rm.users.${user}`);
    expect(await s.r.llen(`rm:users:${user}:messages`)).toBe(1);
    const taken = await fetch(`${server.url}/demo/messages/${id}?to=${user}`, { method: 'DELETE' });
    expect([taken.status, await taken.json()]).toEqual([200, { retracted: 'queued' }]);
    expect(await s.r.llen(`rm:users:${user}:messages`)).toBe(0);
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
    await s.r.publish(`rm.users.${id}`, 'to the browser');
    const received = await within(
      page.evaluate(() => (globalThis as unknown as { received: Promise<unknown> }).received),
      UI_TIMEOUT_MS,
      'the message in the browser',
    );
    expect(received).toEqual({ id: expect.any(String), channel: `rm.users.${id}`, payload: 'to the browser', ts: expect.any(Number) });
    await waitAllAcked(id);
    await page.evaluate(() => (globalThis as unknown as { sdkClient: { close(): void } }).sdkClient.close());
    await page.close();
  });
});

describe('SDK in the browser on a jwt server', () => {
  const SECRET = 'an-hs256-secret-that-is-at-least-32-characters-long';
  it("refreshes its token by itself and stays connected on one socket past the first token's exp", async () => {
    const jwtServer = await startServer({ REDIS_URL: s.redis.url, LOG_LEVEL: 'log', DEMO: 'true', AUTH_MODE: 'jwt', AUTH_JWT_SECRET: SECRET, AUTH_CLOCK_SKEW_S: '0' });
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
      await s.r.publish(`rm.users.${id}`, 'still connected');
      const received = await within(
        page.evaluate(() => (globalThis as unknown as { received: Promise<{ payload: string }> }).received),
        UI_TIMEOUT_MS,
        'the message in the browser',
      );
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
    const plain = await startServer({ REDIS_URL: s.redis.url, LOG_LEVEL: 'log' });
    try {
      expect((await fetch(`${plain.url}/demo`)).status).toBe(404);
      expect((await fetch(`${plain.url}/demo/client.js`)).status).toBe(404);
      const post = await fetch(`${plain.url}/demo/messages`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"to":"a","payload":"b"}' });
      expect(post.status).toBe(404);
      expect((await fetch(`${plain.url}/demo/messages/x?to=a`, { method: 'DELETE' })).status).toBe(404);
    } finally {
      await plain.stop();
    }
  });
});
