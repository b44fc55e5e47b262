// A WebSocket client for e2e tests: records every frame and waits for frames, acks or
// the close, each wait with a timeout whose message shows what did arrive.
import WebSocket from 'ws';

export interface Frame {
  event: string;
  data: any;
}

export interface ConnectOptions {
  headers?: Record<string, string>;
  /** Ack every 'message' frame as it arrives (acks batched per tick). */
  autoAck?: boolean;
  /** How long to wait for the handshake (default 5000 ms). */
  timeoutMs?: number;
}

export interface CloseInfo {
  code: number;
  reason: string;
}

/** Event name given to a frame that is not JSON of the {event, data} shape. */
export const UNPARSED = '(unparsed)';

const DEFAULT_TIMEOUT_MS = 5000;

export class TestClient {
  /** Every frame received, in order. */
  readonly frames: Frame[] = [];
  private readonly messageFrames: Frame[] = [];
  private cursor = 0; // frames before this index are consumed by next()
  private closeInfo?: CloseInfo;
  private lastError?: Error;
  private readonly wakeups = new Set<() => void>();
  private pendingAcks: string[] = [];

  private constructor(
    private readonly ws: WebSocket,
    private readonly autoAck: boolean,
  ) {
    // binaryType is 'nodebuffer', so every frame arrives as one Buffer.
    ws.on('message', (raw) => this.onFrame(parseFrame((raw as Buffer).toString('utf8'))));
    ws.on('close', (code, reason) => {
      this.closeInfo = { code, reason: reason.toString() };
      this.wake();
    });
    // Without a listener an 'error' would crash the test process; the close follows.
    ws.on('error', (err) => (this.lastError = err));
  }

  static connect(url: string, opts: ConnectOptions = {}): Promise<TestClient> {
    const ws = new WebSocket(url, { headers: opts.headers });
    const client = new TestClient(ws, opts.autoAck ?? false);
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      const settle = (why?: string): void => {
        clearTimeout(timer);
        ws.off('open', onOpen).off('error', onError).off('close', onClose);
        if (why === undefined) return resolve(client);
        ws.terminate();
        reject(new Error(`WebSocket connect to ${url} failed: ${why}`));
      };
      const onOpen = (): void => settle();
      const onError = (err: Error): void => settle(err.message); // e.g. "Unexpected server response: 401"
      const onClose = (code: number, reason: Buffer): void => settle(`closed before open (${code} ${reason})`);
      const timer = setTimeout(() => settle(`no handshake within ${timeoutMs} ms`), timeoutMs);
      ws.on('open', onOpen).on('error', onError).on('close', onClose);
    });
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(event: string, data: unknown): void {
    this.ws.send(JSON.stringify({ event, data }));
  }

  sendRaw(data: string | Buffer, opts: { binary?: boolean } = {}): void {
    this.ws.send(data, { binary: opts.binary ?? Buffer.isBuffer(data) });
  }

  ack(ids: string[]): void {
    this.send('ack', { ids });
  }

  /** The first frame after the last one next() returned that matches predicate. */
  next(predicate: (f: Frame) => boolean = () => true, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Frame> {
    return this.waitUntil(`next frame matching ${describeFn(predicate)}`, timeoutMs, true, () => {
      for (let i = this.cursor; i < this.frames.length; i++) {
        if (predicate(this.frames[i])) {
          this.cursor = i + 1;
          return this.frames[i];
        }
      }
      return undefined;
    });
  }

  /** The first n 'message' frames since connect, once that many have arrived. */
  messages(n: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Frame[]> {
    return this.waitUntil(`${n} 'message' frames`, timeoutMs, true, () => (this.messageFrames.length >= n ? this.messageFrames.slice(0, n) : undefined));
  }

  /** Sends identify; resolves with 'ready', rejects on an 'error' frame or a close. */
  async identify(id: string, token?: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Frame> {
    this.send('identify', token === undefined ? { id } : { id, token });
    let frame: Frame;
    try {
      frame = await this.next((f) => f.event === 'ready' || f.event === 'error', timeoutMs);
    } catch (err) {
      throw new Error(`identify as ${id} failed: ${(err as Error).message}`);
    }
    if (frame.event === 'error') {
      throw new Error(`identify as ${id} failed: error frame ${JSON.stringify(frame.data)}`);
    }
    return frame;
  }

  /** Resolves when the socket has closed (at once if it already has). */
  closed(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<CloseInfo> {
    return this.waitUntil('the socket to close', timeoutMs, false, () => this.closeInfo);
  }

  /** Close handshake; terminates if the server does not complete it in time. */
  async close(code = 1000): Promise<void> {
    if (this.closeInfo) return;
    this.ws.close(code);
    try {
      await this.closed();
    } catch {
      this.terminate();
      await this.closed();
    }
  }

  terminate(): void {
    this.ws.terminate();
  }

  private onFrame(frame: Frame): void {
    this.frames.push(frame);
    if (frame.event === 'message') {
      this.messageFrames.push(frame);
      if (this.autoAck && typeof frame.data?.id === 'string') this.queueAck(frame.data.id);
    }
    this.wake();
  }

  private queueAck(id: string): void {
    this.pendingAcks.push(id);
    if (this.pendingAcks.length > 1) return; // a flush is already scheduled
    setImmediate(() => {
      const ids = this.pendingAcks;
      this.pendingAcks = [];
      if (this.isOpen) this.ack(ids);
    });
  }

  private wake(): void {
    for (const w of [...this.wakeups]) w();
  }

  /**
   * Runs check now and after every frame or close until it returns a value. Rejects on
   * timeout, or on close when failOnClose (nothing more can arrive then).
   */
  private waitUntil<T>(what: string, timeoutMs: number, failOnClose: boolean, check: () => T | undefined): Promise<T> {
    return new Promise((resolve, reject) => {
      const finish = (err?: Error, value?: T): void => {
        clearTimeout(timer);
        this.wakeups.delete(attempt);
        if (err) reject(err);
        else resolve(value as T);
      };
      const attempt = (): void => {
        let value: T | undefined;
        try {
          value = check();
        } catch (err) {
          return finish(err as Error);
        }
        if (value !== undefined) finish(undefined, value);
        else if (failOnClose && this.closeInfo) finish(new Error(`Socket closed while waiting for ${what}. ${this.describe()}`));
      };
      const timer = setTimeout(() => finish(new Error(`Timed out after ${timeoutMs} ms waiting for ${what}. ${this.describe()}`)), timeoutMs);
      this.wakeups.add(attempt);
      attempt();
    });
  }

  /** What arrived so far, for error messages: count, last 5 frames, socket state. */
  private describe(): string {
    const last = this.frames.slice(-5).map((f) => truncate(JSON.stringify(f), 300));
    const state = this.closeInfo ? `closed ${this.closeInfo.code} ${JSON.stringify(this.closeInfo.reason)}` : this.isOpen ? 'open' : 'not open';
    const error = this.lastError ? `, last error: ${this.lastError.message}` : '';
    const counts = `Received ${this.frames.length} frame(s) (${this.messageFrames.length} 'message')`;
    return `${counts}${this.frames.length > 5 ? ', last 5' : ''}: [${last.join(', ')}]; socket ${state}${error}.`;
  }
}

function parseFrame(text: string): Frame {
  try {
    const v = JSON.parse(text);
    if (v && typeof v === 'object' && typeof v.event === 'string') return { event: v.event, data: v.data };
  } catch {
    // not JSON: recorded as unparsed below
  }
  return { event: UNPARSED, data: text };
}

function describeFn(fn: (f: Frame) => boolean): string {
  return truncate(fn.toString().replace(/\s+/g, ' '), 120);
}

function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max)}…`;
}
