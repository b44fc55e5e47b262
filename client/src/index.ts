/**
 * @redmessenger/client: a RedMessenger connection that stays up. It identifies,
 * reconnects with backoff, hands messages to your handler in order and one at a
 * time, acks them (batched) once the handler has settled, and hands each id over
 * only once even when the server sends it again after a reconnect. With a token
 * function and a JWT, it refreshes the token ahead of its `exp`. It tells the server
 * whether the app is in front of the user (`visibility`): in browsers from
 * `document.visibilityState`, elsewhere from `setVisible()`.
 *
 * No dependencies: it runs on the platform's WebSocket (browsers, Node 22+) or on
 * a constructor you pass in (`ws` on Node 20).
 */

/** A `message` frame's data. */
export interface Message {
  id: string;
  channel: string;
  payload: string;
  /** When the server received the message (ms since the epoch). */
  ts: number;
  ttl?: number;
  collapseKey?: string;
}

/** A `ready` frame's data: `queued` messages are owed and follow; `dropped` were lost to a queue limit. */
export interface ReadyInfo {
  id: string;
  channel: string;
  queued: number;
  dropped: number;
}

export type State = 'connecting' | 'ready' | 'reconnecting' | 'closed';

/**
 * What went wrong. `code` is the server's error code (`UNAUTHORIZED`, `REPLACED`,
 * `TOO_MANY_ATTEMPTS`, ...) or one of the client's: `TRANSPORT` (could not connect,
 * or the connection dropped), `CLOSED` (the server closed without an error frame),
 * `TIMEOUT` (no `ready` in time), `HANDLER` (your handler threw), `TOKEN` (your
 * token function threw), `PROTOCOL` (a frame the client does not understand).
 * `TOKEN_EXPIRED` (the server's, close 4401) is not fatal: the client asks the token
 * function for a new token and reconnects.
 * `fatal` means the client stopped and will not reconnect by itself.
 */
export class RedMessengerError extends Error {
  readonly code: string;
  readonly closeCode?: number;
  readonly messageId?: string;
  readonly fatal: boolean;
  readonly cause?: unknown;

  constructor(code: string, message: string, extra: { closeCode?: number; messageId?: string; fatal?: boolean; cause?: unknown } = {}) {
    super(message);
    this.name = 'RedMessengerError';
    this.code = code;
    this.closeCode = extra.closeCode;
    this.messageId = extra.messageId;
    this.fatal = extra.fatal ?? false;
    this.cause = extra.cause;
  }
}

/** The part of a WebSocket the client uses: the browser's and `ws`'s both fit. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  // `any`: each platform has its own event classes; the client reads only data, code, reason, message.
  /* eslint-disable @typescript-eslint/no-explicit-any */
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  /* eslint-enable @typescript-eslint/no-explicit-any */
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ReconnectOptions {
  /** First backoff window; doubles per failed attempt up to maxDelayMs (full jitter: a random delay in the window). */
  initialDelayMs: number;
  maxDelayMs: number;
  /** Least wait after 4429 (too many attempts) or 1013 (server full, or Redis down). */
  busyDelayMs: number;
  /**
   * After 1001 (server shutting down, e.g. a rolling restart) the client waits between this
   * and twice this, at random, so that the clients of one instance do not all arrive at once.
   */
  shutdownDelayMs: number;
  /** A connection ready this long resets the backoff. */
  stableAfterMs: number;
}

export interface ClientOptions {
  url: string;
  id: string;
  /**
   * A string, or a function asked again before every (re)connect and, when it returns a JWT
   * with an `exp`, ahead of that `exp` (the new token is sent in a `refresh` frame).
   */
  token?: string | (() => string | Promise<string>);
  /** A WebSocket constructor (e.g. `ws` on Node 20); default: the global WebSocket. */
  WebSocket?: WebSocketConstructor;
  reconnect?: Partial<ReconnectOptions>;
  /** Acks of handled messages leave at most this long after the first of them... */
  ackDelayMs?: number;
  /** ...or as soon as this many are waiting. */
  ackBatchSize?: number;
  /** How many recent handled ids are remembered, to hand each id to the handler once. */
  dedupeSize?: number;
  /** From opening a socket to `ready`; past it the client gives up on that socket and retries. */
  readyTimeoutMs?: number;
}

export interface ClientEvents {
  /** Resolve (or return) when the message is handled: it is acked then. Throw to leave it unacked. */
  message: (message: Message) => unknown;
  ready: (info: ReadyInfo) => void;
  /** The server took a message back (DELETE /v1/messages/<id>): take down what showed it. A message not handled yet never reaches `message`. */
  retract: (id: string) => void;
  state: (state: State) => void;
  error: (error: RedMessengerError) => void;
}

export const DEFAULT_RECONNECT: ReconnectOptions = {
  initialDelayMs: 500,
  maxDelayMs: 30_000,
  busyDelayMs: 5_000,
  shutdownDelayMs: 5_000,
  stableAfterMs: 10_000,
};

/** Closes after which reconnecting cannot help: a bad frame, a refused token, a newer socket of the same id. */
const STOP_CODES: Record<number, string> = {
  4400: 'BAD_FRAME',
  4401: 'UNAUTHORIZED',
  4409: 'REPLACED',
};

/** Error frames after which the socket stays open. */
const NON_FATAL = new Set(['UNKNOWN_EVENT', 'BAD_ACK', 'UNAVAILABLE']);

/** A server older than 1.2 answers a `visibility` frame with this (the socket stays open): not worth an error event. */
const VISIBILITY_UNKNOWN = 'Unknown event "visibility"';

/** The part of a browser's `document` the client reads: whether the page is in front of the user, and when that changes. */
interface VisibilitySource {
  readonly visibilityState: string;
  addEventListener(type: 'visibilitychange', listener: () => void): void;
  removeEventListener(type: 'visibilitychange', listener: () => void): void;
}

/** The global `document` when it has what the client reads (browsers), else undefined (Node, workers, React Native). */
function visibilitySource(): VisibilitySource | undefined {
  const doc = (globalThis as { document?: Partial<VisibilitySource> }).document;
  return doc && typeof doc.visibilityState === 'string' && typeof doc.addEventListener === 'function' && typeof doc.removeEventListener === 'function' ? (doc as VisibilitySource) : undefined;
}

const OPEN = 1;
/** setTimeout's longest delay (about 24.8 days): a later refresh is reached in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** A refresh whose token function failed is tried again this much later (the server closes at exp meanwhile). */
const REFRESH_RETRY_MS = 5_000;
/** Refreshes at least this far apart: a token function that returns the same old token must not loop. */
const MIN_REFRESH_GAP_MS = 1_000;

/**
 * How long to wait before reconnect attempt number `attempt` (0-based) after a close
 * with `closeCode` (undefined: no close frame, e.g. could not connect).
 */
export function reconnectDelay(closeCode: number | undefined, attempt: number, o: ReconnectOptions, random: () => number = Math.random): number {
  const window = Math.min(o.maxDelayMs, o.initialDelayMs * 2 ** Math.min(attempt, 30));
  // Shutting down is a deploy, not a failure: come back, spread over [shutdownDelayMs, 2 shutdownDelayMs) so the
  // clients of one instance do not reach the load balancer's next pick at once (4429 storms).
  if (closeCode === 1001) return o.shutdownDelayMs + random() * o.shutdownDelayMs;
  // Refused for load: never sooner than busyDelayMs, so retries do not add to it.
  if (closeCode === 4429 || closeCode === 1013) return o.busyDelayMs + random() * Math.max(window, o.busyDelayMs);
  return random() * window;
}

/** The `exp` and `iat` (seconds) of a JWT, read without verifying it: only to know when to refresh. */
export function tokenTimes(token: string | undefined): { exp: number; iat?: number } | undefined {
  const payload = token?.split('.')[1];
  if (!payload) return undefined;
  try {
    // base64url to base64; atob accepts it unpadded. A non-ASCII claim comes out garbled, exp and iat do not.
    const claims = JSON.parse(atob(payload.replace(/-/g, '+').replace(/_/g, '/')));
    if (typeof claims?.exp !== 'number') return undefined;
    return { exp: claims.exp, iat: typeof claims.iat === 'number' ? claims.iat : undefined };
  } catch {
    return undefined;
  }
}

/**
 * When (ms since the epoch) to refresh a token that expires at `exp`: at 80% of its life
 * (from `iat`, else from `obtainedAt`) or 30 s before `exp`, whichever is sooner, but not
 * before half its life (a token of a few seconds is not refreshed at once, over and over).
 */
export function refreshAt(times: { exp: number; iat?: number }, obtainedAt: number): number {
  const exp = times.exp * 1000;
  const from = times.iat !== undefined ? Math.min(times.iat * 1000, obtainedAt) : obtainedAt;
  const life = exp - from;
  return Math.max(from + 0.5 * life, Math.min(from + 0.8 * life, exp - 30_000));
}

/** The last `max` ids added, in insertion order (a Set iterates oldest first). */
export class RecentIds {
  private readonly ids = new Set<string>();
  constructor(private readonly max: number) {}

  has(id: string): boolean {
    return this.ids.has(id);
  }

  add(id: string): void {
    this.ids.delete(id);
    this.ids.add(id);
    if (this.ids.size > this.max) this.ids.delete(this.ids.values().next().value as string);
  }

  get size(): number {
    return this.ids.size;
  }
}

type Listeners = { [K in keyof ClientEvents]: Set<ClientEvents[K]> };
type Timer = ReturnType<typeof setTimeout>;
type TimerName = 'retry' | 'ready' | 'stable' | 'ack' | 'refresh';
/** A token and when the token function gave it (ms), to time its refresh. */
type Obtained = { token?: string; at: number };

export class RedMessengerClient {
  private readonly options: ClientOptions;
  private readonly backoff: ReconnectOptions;
  private readonly WS: WebSocketConstructor;
  private readonly listeners: Listeners = { message: new Set(), ready: new Set(), retract: new Set(), state: new Set(), error: new Set() };
  private readonly recent: RecentIds;
  private current: State = 'closed';
  private stopped = true;
  private ws?: WebSocketLike;
  /** Generation of the current socket: messages and acks of an older one are stale. */
  private conn = 0;
  private attempt = 0;
  private opened = false;
  private transportError?: string;
  /** An error frame that a close is expected to follow; reported with that close. */
  private held?: RedMessengerError;
  private first?: { promise: Promise<void>; resolve: () => void; reject: (e: RedMessengerError) => void };
  private inbox: Array<{ message: Message; conn: number }> = [];
  private draining = false;
  private acks: string[] = [];
  private timers: Partial<Record<TimerName, Timer>> = {};
  /** The token the current socket identified with, then the one of its last refresh sent. */
  private token?: Obtained;
  /** Whether the app is in front of the user; a new socket counts as visible until told otherwise. */
  private isVisible = true;
  /** The browser's document while connect()ed, and the listener following its visibilitychange. */
  private readonly document = visibilitySource();
  private readonly onVisibilityChange = () => this.setVisible(this.document!.visibilityState === 'visible');

  constructor(options: ClientOptions) {
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) throw new TypeError('No WebSocket here: pass one, e.g. new RedMessengerClient({ ..., WebSocket }) with `import WebSocket from "ws"`');
    this.WS = WS;
    this.options = options;
    this.backoff = { ...DEFAULT_RECONNECT, ...options.reconnect };
    this.recent = new RecentIds(options.dedupeSize ?? 10_000);
    if (this.document) this.isVisible = this.document.visibilityState === 'visible';
  }

  get state(): State {
    return this.current;
  }

  /** Whether the server is (or, once ready, will be) told that the app is in front of the user. */
  get visible(): boolean {
    return this.isVisible;
  }

  /**
   * Tells the server whether the app is in front of the user (a `visibility` frame), when
   * it changes. While not ready it is remembered and sent after the next `ready` if not
   * visible (a new socket counts as visible). In browsers the client follows
   * `document.visibilityState` by itself; a call overrides it until the next change there.
   */
  setVisible(visible: boolean): void {
    visible = Boolean(visible);
    if (visible === this.isVisible) return;
    this.isVisible = visible;
    if (this.current === 'ready') this.sendVisibility();
  }

  on<K extends keyof ClientEvents>(event: K, listener: ClientEvents[K]): this {
    this.listeners[event].add(listener);
    return this;
  }

  off<K extends keyof ClientEvents>(event: K, listener: ClientEvents[K]): this {
    this.listeners[event].delete(listener);
    return this;
  }

  /**
   * Starts connecting (and keeps reconnecting). Resolves at the first `ready`; rejects
   * if the client stops before it (a refused token, a bad frame, replaced, or close()).
   */
  connect(): Promise<void> {
    if (!this.stopped) return this.first?.promise ?? Promise.resolve();
    this.stopped = false;
    this.attempt = 0;
    let resolve!: () => void;
    let reject!: (e: RedMessengerError) => void;
    const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
    this.first = { promise, resolve, reject };
    if (this.document) {
      this.document.addEventListener('visibilitychange', this.onVisibilityChange);
      this.isVisible = this.document.visibilityState === 'visible';
    }
    this.setState('connecting');
    void this.open();
    return promise;
  }

  /** Sends the acks still waiting, closes the socket and stops reconnecting. */
  close(): void {
    if (this.stopped) return;
    this.flushAcks();
    this.dropSocket();
    this.stop(new RedMessengerError('CLOSED', 'close() was called before the connection was ready', { fatal: true }));
  }

  // -------------------------------------------------------------------------
  // Connection

  private async open(): Promise<void> {
    const conn = ++this.conn;
    this.opened = false;
    this.transportError = undefined;
    let token: string | undefined;
    const at = Date.now();
    try {
      const t = this.options.token;
      token = typeof t === 'function' ? await t() : t;
    } catch (err) {
      if (conn !== this.conn || this.stopped) return;
      this.emitError(new RedMessengerError('TOKEN', `The token function failed: ${describe(err)}; retrying`, { cause: err }));
      return this.retry(undefined);
    }
    if (conn !== this.conn || this.stopped) return; // close() while the token was fetched
    this.token = { token, at };

    let ws: WebSocketLike;
    try {
      ws = new this.WS(this.options.url);
    } catch (err) {
      this.emitError(new RedMessengerError('TRANSPORT', `Cannot open a WebSocket to ${this.options.url}: ${describe(err)}`, { cause: err }));
      return this.retry(undefined);
    }
    this.ws = ws;
    this.timers.ready = setTimeout(() => {
      const timeout = new RedMessengerError('TIMEOUT', `No ready within ${this.readyTimeoutMs} ms; retrying`);
      this.dropSocket();
      this.lost(undefined, timeout);
    }, this.readyTimeoutMs);
    ws.onopen = () => {
      this.opened = true;
      ws.send(JSON.stringify({ event: 'identify', data: token === undefined ? { id: this.options.id } : { id: this.options.id, token } }));
    };
    ws.onmessage = (event) => this.onFrame(conn, event.data);
    // The close follows; keep the reason (Node's ws says ECONNREFUSED and the like, browsers say nothing).
    ws.onerror = (event) => (this.transportError = event?.message ?? event?.error?.message);
    ws.onclose = (event) => {
      if (conn !== this.conn) return;
      this.dropSocket();
      this.lost(typeof event?.code === 'number' ? event.code : undefined, undefined, event?.reason);
    };
  }

  private get readyTimeoutMs(): number {
    return this.options.readyTimeoutMs ?? 15_000;
  }

  private onFrame(conn: number, data: unknown): void {
    if (conn !== this.conn) return;
    let frame: { event?: unknown; data?: Record<string, unknown> };
    try {
      frame = JSON.parse(String(data));
    } catch {
      return this.emitError(new RedMessengerError('PROTOCOL', 'The server sent a frame that is not JSON'));
    }
    const d = frame?.data ?? {};
    switch (frame?.event) {
      case 'ready':
        return this.onReady(d);
      case 'refreshed':
        return this.scheduleRefresh(conn, Date.now() + MIN_REFRESH_GAP_MS);
      case 'retract': {
        const id = d.id;
        if (typeof id !== 'string') return this.emitError(new RedMessengerError('PROTOCOL', 'The server sent a retract without a string id'));
        // Not handled yet: it never reaches the handler (the server no longer owes it).
        this.inbox = this.inbox.filter((item) => item.message.id !== id);
        for (const fn of [...this.listeners.retract]) this.call(() => fn(id));
        return;
      }
      case 'message':
        if (typeof d.id !== 'string' || typeof d.payload !== 'string') {
          return this.emitError(new RedMessengerError('PROTOCOL', 'The server sent a message without a string id and payload'));
        }
        this.inbox.push({ message: d as unknown as Message, conn });
        void this.drain();
        return;
      case 'error': {
        const error = new RedMessengerError(String(d.code ?? 'ERROR'), String(d.message ?? 'error frame without a message'));
        // A server older than 1.2 does not know `visibility`; it stays open and the client goes on without it.
        if (this.current === 'ready' && error.code === 'UNKNOWN_EVENT' && error.message === VISIBILITY_UNKNOWN) return;
        // Before ready every error closes the socket, after it most do: report it with that close.
        if (this.current === 'ready' && NON_FATAL.has(error.code)) this.emitError(error);
        else this.held = error;
        return;
      }
      default:
        return this.emitError(new RedMessengerError('PROTOCOL', `Unknown event ${JSON.stringify(frame?.event)} from the server`));
    }
  }

  private onReady(d: Record<string, unknown>): void {
    this.clearTimers('ready');
    // The server counts a new socket as visible: say so if the app is not (before any listener runs).
    if (!this.isVisible) this.sendVisibility();
    this.timers.stable = setTimeout(() => (this.attempt = 0), this.backoff.stableAfterMs);
    this.setState('ready');
    this.scheduleRefresh(this.conn);
    const info: ReadyInfo = {
      id: String(d.id ?? this.options.id),
      channel: String(d.channel ?? ''),
      queued: Number(d.queued ?? 0),
      dropped: Number(d.dropped ?? 0),
    };
    for (const fn of [...this.listeners.ready]) this.call(() => fn(info));
    this.first?.resolve();
    this.first = undefined;
  }

  /** Detaches and closes the current socket; what it had delivered but not handled comes again. */
  private dropSocket(): void {
    const ws = this.ws;
    this.conn++;
    this.ws = undefined;
    this.inbox = [];
    this.acks = [];
    this.clearTimers('ready', 'stable', 'ack', 'refresh');
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    ws.onerror = () => undefined; // a late error event must not go unhandled (ws throws on those)
    try {
      if (ws.readyState <= OPEN) ws.close(1000);
    } catch {
      // already closing
    }
  }

  /** The socket is gone: report why, then stop or retry. */
  private lost(closeCode: number | undefined, error?: RedMessengerError, reason?: string): void {
    if (this.stopped) return;
    const held = this.held;
    this.held = undefined;
    // An expired token is not refused for good: the token function gives a new one at the reconnect.
    const stopCode = closeCode === undefined || held?.code === 'TOKEN_EXPIRED' ? undefined : STOP_CODES[closeCode];
    const fatal = stopCode !== undefined;
    const next = fatal ? 'not reconnecting' : 'reconnecting';
    if (!error) {
      if (held) {
        error = new RedMessengerError(held.code, `${held.message} (close ${closeCode}; ${next})`, { closeCode, fatal });
      } else if (fatal) {
        error = new RedMessengerError(stopCode, `Closed by the server with ${closeCode}${reason ? ` (${reason})` : ''}; ${next}`, { closeCode, fatal });
      } else if (closeCode === undefined || closeCode === 1006) {
        const what = this.opened ? 'The connection was lost' : `Could not connect to ${this.options.url}`;
        error = new RedMessengerError('TRANSPORT', `${what}${this.transportError ? ` (${this.transportError})` : ''}; ${next}`, { closeCode });
      } else {
        error = new RedMessengerError('CLOSED', `Closed by the server with ${closeCode}${reason ? ` (${reason})` : ''}; ${next}`, { closeCode });
      }
    }
    this.emitError(error);
    if (fatal) this.stop(error);
    else this.retry(closeCode);
  }

  private retry(closeCode: number | undefined): void {
    this.setState('reconnecting');
    const delay = reconnectDelay(closeCode, this.attempt++, this.backoff);
    this.clearTimers('retry');
    this.timers.retry = setTimeout(() => void this.open(), delay);
  }

  private stop(error: RedMessengerError): void {
    this.stopped = true;
    this.document?.removeEventListener('visibilitychange', this.onVisibilityChange);
    this.conn++;
    this.clearTimers('retry', 'ready', 'stable', 'ack', 'refresh');
    this.setState('closed');
    this.first?.reject(error);
    this.first = undefined;
  }

  // -------------------------------------------------------------------------
  // Token refresh (a socket does not outlive its token: the server closes it at exp)

  /** Arms the refresh of the current socket's token, if it came from a function and is a JWT with an `exp`. */
  private scheduleRefresh(conn: number, notBefore = 0): void {
    this.clearTimers('refresh');
    const times = tokenTimes(this.token?.token);
    if (typeof this.options.token !== 'function' || !times) return;
    const due = Math.max(notBefore, refreshAt(times, this.token!.at));
    const arm = () => {
      const wait = due - Date.now();
      this.timers.refresh = setTimeout(() => (Date.now() >= due ? void this.refresh(conn) : arm()), Math.max(0, Math.min(wait, MAX_TIMER_MS)));
    };
    arm();
  }

  /** Asks the token function for a new token and sends it; `refreshed` arms the next refresh. */
  private async refresh(conn: number): Promise<void> {
    const at = Date.now();
    let token: string;
    try {
      token = await (this.options.token as () => string | Promise<string>)();
    } catch (err) {
      if (conn !== this.conn) return;
      this.emitError(new RedMessengerError('TOKEN', `The token function failed: ${describe(err)}; retrying the refresh`, { cause: err }));
      this.timers.refresh = setTimeout(() => void this.refresh(conn), REFRESH_RETRY_MS);
      return;
    }
    if (conn !== this.conn || !this.ws || this.ws.readyState !== OPEN) return;
    this.token = { token, at };
    this.ws.send(JSON.stringify({ event: 'refresh', data: { token } }));
  }

  /** Tells the current socket whether the app is visible (after its `ready` only). */
  private sendVisibility(): void {
    if (!this.ws || this.ws.readyState !== OPEN) return; // the next ready says it
    this.ws.send(JSON.stringify({ event: 'visibility', data: { visible: this.isVisible } }));
  }

  // -------------------------------------------------------------------------
  // Messages and acks

  /** One message at a time, in arrival order; only ids whose handler succeeded are remembered and acked. */
  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      for (let item = this.inbox.shift(); item; item = this.inbox.shift()) {
        const { message, conn } = item;
        if (this.recent.has(message.id)) {
          this.ack(conn, message.id); // handled before; the server sent it again because our ack did not land
          continue;
        }
        try {
          const handlers = [...this.listeners.message];
          if (handlers.length === 0) throw new Error("no 'message' listener");
          for (const fn of handlers) await fn(message);
        } catch (err) {
          this.emitError(
            new RedMessengerError('HANDLER', `Message ${message.id}: the handler failed (${describe(err)}); it stays unacked and comes again at the next connect`, {
              messageId: message.id,
              cause: err,
            }),
          );
          continue;
        }
        this.recent.add(message.id);
        this.ack(conn, message.id);
      }
    } finally {
      this.draining = false;
    }
  }

  private ack(conn: number, id: string): void {
    // An ack belongs to the socket that delivered the message; if that one is gone, the
    // server sends the message again and the dedupe memory acks it then.
    if (conn !== this.conn) return;
    this.acks.push(id);
    if (this.acks.length >= (this.options.ackBatchSize ?? 100)) this.flushAcks();
    else this.timers.ack ??= setTimeout(() => this.flushAcks(), this.options.ackDelayMs ?? 10);
  }

  private flushAcks(): void {
    this.clearTimers('ack');
    if (this.acks.length === 0 || !this.ws || this.ws.readyState !== OPEN) return;
    this.ws.send(JSON.stringify({ event: 'ack', data: { ids: this.acks } }));
    this.acks = [];
  }

  private clearTimers(...keys: TimerName[]): void {
    for (const key of keys) {
      clearTimeout(this.timers[key]);
      this.timers[key] = undefined;
    }
  }

  // -------------------------------------------------------------------------
  // Events

  private setState(state: State): void {
    if (state === this.current) return;
    this.current = state;
    for (const fn of [...this.listeners.state]) this.call(() => fn(state));
  }

  private emitError(error: RedMessengerError): void {
    for (const fn of [...this.listeners.error]) {
      try {
        fn(error);
      } catch {
        // an error listener that throws has nowhere else to report to
      }
    }
  }

  /** Runs a listener; one that throws is reported on 'error' and does not break the client. */
  private call(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.emitError(new RedMessengerError('LISTENER', `A listener threw: ${describe(err)}`, { cause: err }));
    }
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
