// The SDK's pure parts (the backoff schedule, the bounded dedupe memory, when a token is
// refreshed), and its timing on a scripted socket with fake timers: the jittered reconnect
// after 1001, the refresh ahead of exp, TOKEN_EXPIRED as a reconnect, visibility.
// Its behaviour on a real server is in test/client.e2e-spec.ts.
import { DEFAULT_RECONNECT, RecentIds, RedMessengerClient, type RedMessengerError, reconnectDelay, refreshAt, tokenTimes, type WebSocketLike } from './index';

const o = { ...DEFAULT_RECONNECT, initialDelayMs: 100, maxDelayMs: 1600, busyDelayMs: 5000, shutdownDelayMs: 1000 };
const top = () => 0.999999;
const bottom = () => 0;

describe('reconnectDelay', () => {
  it('doubles the jitter window per attempt up to maxDelayMs (full jitter: anywhere from 0)', () => {
    expect([0, 1, 2, 3, 4, 5, 20, 5000].map((n) => Math.round(reconnectDelay(1006, n, o, top)))).toEqual([100, 200, 400, 800, 1600, 1600, 1600, 1600]);
    expect(reconnectDelay(undefined, 3, o, bottom)).toBe(0);
    expect(reconnectDelay(undefined, 3, o, () => 0.5)).toBe(400);
  });

  it('waits at least busyDelayMs after 4429 and 1013, longer as attempts grow', () => {
    for (const code of [4429, 1013]) {
      expect(reconnectDelay(code, 0, o, bottom)).toBe(5000);
      expect(Math.round(reconnectDelay(code, 0, o, top))).toBe(10000);
    }
    const slow = { ...o, maxDelayMs: 60_000 };
    expect(Math.round(reconnectDelay(4429, 10, slow, top))).toBe(65_000);
  });

  it('comes back between shutdownDelayMs and twice it after 1001, whatever the attempt', () => {
    expect(Math.round(reconnectDelay(1001, 0, o, top))).toBe(2000);
    expect(Math.round(reconnectDelay(1001, 10, o, top))).toBe(2000);
    expect(reconnectDelay(1001, 10, o, bottom)).toBe(1000);
    // The default spreads a rolling restart's clients over 5-10 s.
    expect(reconnectDelay(1001, 0, DEFAULT_RECONNECT, bottom)).toBe(5000);
    expect(Math.round(reconnectDelay(1001, 0, DEFAULT_RECONNECT, top))).toBe(10000);
  });
});

describe('RecentIds', () => {
  it('remembers the last max ids and forgets the oldest first', () => {
    const ids = new RecentIds(3);
    for (const id of ['a', 'b', 'c', 'd']) ids.add(id);
    expect(['a', 'b', 'c', 'd'].map((id) => ids.has(id))).toEqual([false, true, true, true]);
    expect(ids.size).toBe(3);
  });

  it('counts an id added again as recent', () => {
    const ids = new RecentIds(2);
    ids.add('a');
    ids.add('b');
    ids.add('a');
    ids.add('c');
    expect([ids.has('a'), ids.has('b'), ids.has('c')]).toEqual([true, false, true]);
  });

  it('stays bounded over many ids', () => {
    const ids = new RecentIds(10_000);
    for (let i = 0; i < 50_000; i++) ids.add(String(i));
    expect(ids.size).toBe(10_000);
    expect(ids.has('39999')).toBe(false);
    expect(ids.has('40000')).toBe(true);
  });
});

/** A JWT-shaped token with these claims (unsigned: the client never verifies). */
const jwt = (claims: object) => `e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;

describe('tokenTimes and refreshAt', () => {
  it('reads exp and iat from a JWT payload without verifying; anything else has none', () => {
    expect(tokenTimes(jwt({ sub: 'u', iat: 1000, exp: 1600 }))).toEqual({ exp: 1600, iat: 1000 });
    expect(tokenTimes(jwt({ sub: 'ü ✓ ~~~???>>>', exp: 1600 }))).toEqual({ exp: 1600, iat: undefined });
    for (const token of [undefined, '', 'a-plain-key', 'a.b.c', jwt({ sub: 'u' }), jwt({ exp: '1600' })]) expect(tokenTimes(token)).toBeUndefined();
  });

  it('refreshes at 80% of the life or 30 s before exp, whichever is sooner, but not before half the life', () => {
    expect(refreshAt({ iat: 1000, exp: 1600 }, 5_000_000)).toBe(1_480_000); // 10 min: at 8 min
    expect(refreshAt({ iat: 1000, exp: 1100 }, 5_000_000)).toBe(1_070_000); // 100 s: 30 s before
    expect(refreshAt({ iat: 1000, exp: 1040 }, 5_000_000)).toBe(1_020_000); // 40 s: at half
    expect(refreshAt({ exp: 1010 }, 1_000_000)).toBe(1_005_000); // no iat: from when it was obtained
  });
});

/** A scripted socket: records what the client sends; the test opens, answers and closes it. */
class FakeSocket implements WebSocketLike {
  static all: FakeSocket[] = [];
  readyState = 0;
  sent: Array<{ event: string; data: Record<string, unknown> }> = [];
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: unknown) => void) | null = null;
  onclose: ((event: unknown) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  send(data: string): void {
    this.sent.push(JSON.parse(data));
  }
  close(): void {
    this.readyState = 3;
  }
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  frame(event: string, data: object): void {
    this.onmessage?.({ data: JSON.stringify({ event, data }) });
  }
  /** The server closes: an optional error frame first, then the close. */
  serverClose(code: number, error?: { code: string; message: string }): void {
    if (error) this.frame('error', error);
    this.readyState = 3;
    this.onclose?.({ code, reason: '' });
  }
}

describe('RedMessengerClient timing (fake timers, scripted socket)', () => {
  let client: RedMessengerClient;
  let errors: RedMessengerError[];
  const last = () => FakeSocket.all[FakeSocket.all.length - 1];
  /** Lets the client's awaits (the token function) run. */
  const settle = () => jest.advanceTimersByTimeAsync(0);

  beforeEach(() => {
    jest.useFakeTimers({ now: 1_700_000_000_000 });
    FakeSocket.all = [];
    errors = [];
  });
  afterEach(() => {
    client?.close();
    jest.useRealTimers();
    jest.restoreAllMocks();
  });

  async function ready(token: string | (() => string) | undefined) {
    client = new RedMessengerClient({ url: 'ws://x/', id: 'u1', token, WebSocket: FakeSocket });
    client.on('error', (e) => errors.push(e));
    client.on('message', () => undefined);
    const connected = client.connect();
    await settle();
    last().open();
    last().frame('ready', { id: 'u1', channel: 'rm.users.u1', queued: 0 });
    await connected;
  }

  it('retract: emitted with the id; a message not handled yet never reaches the handler', async () => {
    client = new RedMessengerClient({ url: 'ws://x/', id: 'u1', WebSocket: FakeSocket });
    const handled: string[] = [];
    const retracted: string[] = [];
    let release!: () => void;
    client.on('message', (m) => {
      handled.push(m.id);
      if (m.id === 'm1') return new Promise<void>((resolve) => (release = resolve));
    });
    client.on('retract', (id) => retracted.push(id));
    const connected = client.connect();
    await settle();
    last().open();
    last().frame('ready', { id: 'u1', channel: 'rm.users.u1', queued: 0 });
    await connected;
    for (const id of ['m1', 'm2', 'm3']) last().frame('message', { id, channel: 'rm.users.u1', payload: id, ts: 1 });
    await settle();

    last().frame('retract', { id: 'm2' }); // waits behind m1's handler
    last().frame('retract', { id: 'm1' }); // handled already: the app takes it down
    release();
    await settle();

    expect(retracted).toEqual(['m2', 'm1']);
    expect(handled).toEqual(['m1', 'm3']);
  });

  it('after 1001 reconnects no sooner than 5 s and within 10 s, spread at random', async () => {
    for (const [random, at] of [
      [0, 5000],
      [0.5, 7500],
      [0.9999, 9999],
    ]) {
      jest.spyOn(Math, 'random').mockReturnValue(random);
      await ready(undefined);
      const before = FakeSocket.all.length;
      last().serverClose(1001);
      await jest.advanceTimersByTimeAsync(at - 1);
      expect(FakeSocket.all.length).toBe(before); // not yet
      await jest.advanceTimersByTimeAsync(1);
      expect(FakeSocket.all.length).toBe(before + 1);
      expect(client.state).toBe('reconnecting');
      client.close();
      jest.restoreAllMocks();
    }
  });

  it('refreshes ahead of exp with the token function, and again after each refreshed', async () => {
    let issued = 0;
    const token = jest.fn(() => {
      const iat = Math.floor(Date.now() / 1000);
      return jwt({ sub: 'u1', n: issued++, iat, exp: iat + 100 }); // 100 s: refresh 30 s before exp
    });
    await ready(token);
    const socket = last();
    expect(token).toHaveBeenCalledTimes(1);
    await jest.advanceTimersByTimeAsync(69_000);
    expect(socket.sent.filter((f) => f.event === 'refresh')).toEqual([]);
    await jest.advanceTimersByTimeAsync(1_000);
    const refresh = socket.sent.filter((f) => f.event === 'refresh');
    expect(refresh).toHaveLength(1);
    expect(tokenTimes(refresh[0].data.token as string)).toEqual({ iat: 1_700_000_070, exp: 1_700_000_170 });
    socket.frame('refreshed', { exp: 1_700_000_170 });
    await jest.advanceTimersByTimeAsync(70_000);
    expect(socket.sent.filter((f) => f.event === 'refresh')).toHaveLength(2);
    expect(FakeSocket.all).toHaveLength(1); // the same socket all along
    expect(errors).toEqual([]);
  });

  it('a token function that returns the same old token does not loop: refreshes stay 1 s apart', async () => {
    const now = Math.floor(Date.now() / 1000);
    const stale = jwt({ sub: 'u1', iat: now - 100, exp: now + 10 }); // past its refresh time already
    await ready(() => stale);
    const socket = last();
    const refreshes = () => socket.sent.filter((f) => f.event === 'refresh').length;
    for (let ms = 0; ms < 5000; ms += 100) {
      await jest.advanceTimersByTimeAsync(100);
      if (refreshes() > socket.sent.filter((f) => f.event === 'answered').length) {
        socket.sent.push({ event: 'answered', data: {} });
        socket.frame('refreshed', { exp: now + 10 });
      }
    }
    expect(refreshes()).toBeGreaterThanOrEqual(4);
    expect(refreshes()).toBeLessThanOrEqual(6);
  });

  it('TOKEN_EXPIRED then 4401 is not fatal: a new token from the function, and a reconnect', async () => {
    let n = 0;
    await ready(() => `token-${n++}`);
    last().serverClose(4401, { code: 'TOKEN_EXPIRED', message: 'The token has expired' });
    expect(errors.map((e) => [e.code, e.fatal])).toEqual([['TOKEN_EXPIRED', false]]);
    expect(client.state).toBe('reconnecting');
    await jest.advanceTimersByTimeAsync(1_000); // the first backoff window (500 ms)
    expect(FakeSocket.all).toHaveLength(2);
    last().open();
    expect(last().sent[0]).toEqual({ event: 'identify', data: { id: 'u1', token: 'token-1' } });
    // UNAUTHORIZED with 4401 still stops the client.
    last().serverClose(4401, { code: 'UNAUTHORIZED', message: 'refused' });
    expect(errors.map((e) => [e.code, e.fatal])[1]).toEqual(['UNAUTHORIZED', true]);
    expect(client.state).toBe('closed');
  });

  it('a string token, or a token that is no JWT, is never refreshed', async () => {
    await ready(jwt({ sub: 'u1', exp: Math.floor(Date.now() / 1000) + 60 }));
    await jest.advanceTimersByTimeAsync(120_000);
    expect(last().sent.filter((f) => f.event === 'refresh')).toEqual([]);
    client.close();
    await ready(() => 'a-plain-key');
    await jest.advanceTimersByTimeAsync(120_000);
    expect(last().sent.filter((f) => f.event === 'refresh')).toEqual([]);
  });
});

describe('visibility (fake timers, scripted socket)', () => {
  let client: RedMessengerClient | undefined;
  let errors: RedMessengerError[];
  const last = () => FakeSocket.all[FakeSocket.all.length - 1];
  const settle = () => jest.advanceTimersByTimeAsync(0);
  const visibility = (socket: FakeSocket) => socket.sent.filter((f) => f.event === 'visibility').map((f) => f.data);

  beforeEach(() => {
    jest.useFakeTimers({ now: 1_700_000_000_000 });
    FakeSocket.all = [];
    errors = [];
  });
  afterEach(() => {
    client?.close();
    client = undefined;
    delete (globalThis as { document?: unknown }).document;
    jest.useRealTimers();
    jest.restoreAllMocks();
  });

  function create(): RedMessengerClient {
    client = new RedMessengerClient({ url: 'ws://x/', id: 'u1', WebSocket: FakeSocket });
    client.on('error', (e) => errors.push(e));
    client.on('message', () => undefined);
    return client;
  }

  /** Opens the last socket and answers its identify with ready. */
  async function answerReady(): Promise<FakeSocket> {
    await settle();
    last().open();
    last().frame('ready', { id: 'u1', channel: 'rm.users.u1', queued: 0 });
    await settle();
    return last();
  }

  it('visible by default: nothing is sent at ready; a change after ready is sent at once, an unchanged call sends nothing', async () => {
    const c = create();
    expect(c.visible).toBe(true);
    const connected = c.connect();
    const socket = await answerReady();
    await connected;
    expect(socket.sent.map((f) => f.event)).toEqual(['identify']);

    c.setVisible(true); // unchanged
    expect(visibility(socket)).toEqual([]);
    c.setVisible(false);
    expect(c.visible).toBe(false);
    c.setVisible(false); // unchanged
    c.setVisible(true);
    c.setVisible(true); // unchanged
    expect(visibility(socket)).toEqual([{ visible: false }, { visible: true }]);
    expect(errors).toEqual([]);
  });

  it('hidden before ready: remembered, and sent right after ready (before the ready listeners run)', async () => {
    const c = create();
    const order: string[] = [];
    c.on('ready', () =>
      order.push(
        `ready listener after ${last()
          .sent.map((f) => f.event)
          .join(',')}`,
      ),
    );
    c.setVisible(false); // not connected: remembered, nothing to send to
    const connected = c.connect();
    await settle();
    last().open();
    c.setVisible(true); // connecting: remembered
    c.setVisible(false);
    expect(visibility(last())).toEqual([]);
    last().frame('ready', { id: 'u1', channel: 'rm.users.u1', queued: 0 });
    await connected;
    expect(last().sent).toEqual([
      { event: 'identify', data: { id: 'u1' } },
      { event: 'visibility', data: { visible: false } },
    ]);
    expect(order).toEqual(['ready listener after identify,visibility']);
  });

  it('hidden then visible again before ready: nothing is sent (a new socket counts as visible)', async () => {
    const c = create();
    const connected = c.connect();
    await settle();
    c.setVisible(false);
    c.setVisible(true);
    const socket = await answerReady();
    await connected;
    expect(visibility(socket)).toEqual([]);
  });

  it('re-sent after every reconnect while hidden; a change while reconnecting is remembered for the next ready', async () => {
    jest.spyOn(Math, 'random').mockReturnValue(0.5);
    const c = create();
    const connected = c.connect();
    const first = await answerReady();
    await connected;
    c.setVisible(false);
    expect(visibility(first)).toEqual([{ visible: false }]);

    first.serverClose(1006);
    expect(c.state).toBe('reconnecting');
    await jest.advanceTimersByTimeAsync(1_000);
    const second = await answerReady();
    expect(second).not.toBe(first);
    expect(visibility(second)).toEqual([{ visible: false }]); // the server took the new socket for visible

    second.serverClose(1006);
    c.setVisible(true); // while reconnecting: not sent anywhere, remembered
    expect(visibility(second)).toEqual([{ visible: false }]);
    await jest.advanceTimersByTimeAsync(2_000);
    const third = await answerReady();
    expect(visibility(third)).toEqual([]); // visible is what a new socket is taken for
    expect(c.visible).toBe(true);
  });

  it('a server that does not know visibility answers UNKNOWN_EVENT: no error event, the client stays ready; other UNKNOWN_EVENTs are still reported', async () => {
    const c = create();
    const connected = c.connect();
    const socket = await answerReady();
    await connected;
    c.setVisible(false);
    socket.frame('error', { code: 'UNKNOWN_EVENT', message: 'Unknown event "visibility"' });
    expect(errors).toEqual([]);
    expect(c.state).toBe('ready');
    socket.frame('error', { code: 'UNKNOWN_EVENT', message: 'Unknown event "other"' });
    expect(errors.map((e) => [e.code, e.fatal])).toEqual([['UNKNOWN_EVENT', false]]);
    expect(c.state).toBe('ready');
    // Still sends changes and still receives.
    c.setVisible(true);
    expect(visibility(socket)).toEqual([{ visible: false }, { visible: true }]);
  });

  it('in a browser: follows document.visibilityState (visibilitychange), hidden at connect is sent after ready, and stops listening at close()', async () => {
    const listeners = new Set<() => void>();
    const doc = {
      visibilityState: 'hidden',
      addEventListener: (type: string, fn: () => void) => type === 'visibilitychange' && listeners.add(fn),
      removeEventListener: (type: string, fn: () => void) => type === 'visibilitychange' && listeners.delete(fn),
    };
    const change = (state: string) => {
      doc.visibilityState = state;
      for (const fn of [...listeners]) fn();
    };
    (globalThis as { document?: unknown }).document = doc;

    const c = create();
    expect(c.visible).toBe(false); // read at construction
    const connected = c.connect();
    expect(listeners.size).toBe(1);
    const socket = await answerReady();
    await connected;
    expect(visibility(socket)).toEqual([{ visible: false }]);

    change('visible');
    change('visible'); // no change
    change('hidden');
    change('prerender'); // not in front of the user either: no change
    expect(visibility(socket)).toEqual([{ visible: false }, { visible: true }, { visible: false }]);
    expect(c.visible).toBe(false);

    c.setVisible(true); // the app may say otherwise, until the document's next change
    change('hidden');
    expect(visibility(socket)).toEqual([{ visible: false }, { visible: true }, { visible: false }, { visible: true }, { visible: false }]);

    c.close();
    expect(listeners.size).toBe(0);
    change('visible');
    expect(visibility(socket)).toHaveLength(5);
  });

  it('a document without visibilityState (not a browser page) is not followed', async () => {
    (globalThis as { document?: unknown }).document = { addEventListener: jest.fn(), removeEventListener: jest.fn() };
    const c = create();
    const connected = c.connect();
    const socket = await answerReady();
    await connected;
    expect(c.visible).toBe(true);
    expect(visibility(socket)).toEqual([]);
  });
});
