import type { INestApplicationContext } from '@nestjs/common';
import { WsAdapter } from '@nestjs/platform-ws';
import type { MessageMappingProperties } from '@nestjs/websockets';
import { lastValueFrom, Observable } from 'rxjs';
import type { RawData, WebSocket } from 'ws';
import { Connection, Hold } from '../delivery/connection';
import { CloseCode, ErrorCode, FrameError } from '../protocol/frame-error';
import { Frame, parseFrame } from '../protocol/frames';

/** Frames of one socket waiting to be handled past which nothing more is read from it (resumed at half). */
const MAX_FRAMES_WAITING = 32;

/** Each socket's frames are handled one after the other; a close waits for them (an ack just before it still counts). */
export const framesHandled = (socket: WebSocket): Promise<void> => Connection.of(socket)?.framesDone ?? Promise.resolve();

/** What Nest bound for one socket: only its identify goes through Nest (AuthGuard), so it is let go once the identify is handled. */
interface NestBinding {
  handlers: MessageMappingProperties[];
  transform: (data: unknown) => Observable<unknown>;
}
const nestBindings = new WeakMap<WebSocket, NestBinding>();

/** A pong (or any frame) shows the peer is there: the heartbeat's clock. One function for every socket. */
function heard(this: WebSocket): void {
  const conn = Connection.of(this);
  if (conn) conn.heardAt = Date.now();
}

/** A 'message' listener that hands its socket (`this`, as the emitter calls it) to `handle`. */
function frameListener(handle: (socket: WebSocket, raw: RawData, isBinary: boolean) => void) {
  return function (this: WebSocket, raw: RawData, isBinary: boolean): void {
    handle(this, raw, isBinary);
  };
}

/** Decides, per socket and state, whether a parsed frame goes to its handler. */
export interface FrameScreen {
  /** Returns the validated data for the event's handler, or throws a FrameError. */
  screen(socket: WebSocket, frame: Frame): unknown;
  refuse(socket: WebSocket, error: FrameError): void;
  /**
   * Handles a screened frame that needs none of Nest's guards (those of a ready socket) and returns its promise, or
   * returns undefined for Nest's handler: an ack then costs no per-frame composition of guards, pipes and observables.
   */
  dispatch(socket: WebSocket, event: string, data: unknown): Promise<void> | undefined;
  /** Answers what a dispatched frame's handling threw, as the gateway's exception filter answers Nest's handlers. */
  fail(socket: WebSocket, error: unknown): void;
}

/**
 * Upgrades completed in one turn of the event loop, at most this long (ms). A reconnect storm
 * otherwise completes thousands in one poll phase while the listen queue overflows (the kernel
 * drops the handshakes past it, retried a second later) and the identifies already under way,
 * with their Redis answers, wait behind them. Paced, the first sockets get their messages at
 * once and the rest are accepted as fast as they come.
 */
const UPGRADE_TURN_MS = 2;

/** Completes upgrades first come, first served, a few milliseconds' worth per turn of the event loop. */
export class UpgradePacer {
  private readonly waiting: Array<() => void> = [];
  private scheduled = false;

  constructor(
    private readonly turnMs = UPGRADE_TURN_MS,
    private readonly now = () => performance.now(),
  ) {}

  admit(complete: () => void): void {
    this.waiting.push(complete);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.turn());
    }
  }

  private turn(): void {
    const until = this.now() + this.turnMs;
    let done = 0;
    while (done < this.waiting.length && this.now() < until) this.waiting[done++]();
    this.waiting.splice(0, done);
    if (this.waiting.length > 0) setImmediate(() => this.turn());
    else this.scheduled = false;
  }
}

export interface MessengerWsAdapterOptions {
  path: string;
  maxFrameBytes: number;
  /** Origin header values allowed to upgrade; empty allows any (clients that send no Origin, such as servers, always pass). */
  allowedOrigins: string[];
}

/**
 * The `ws` adapter with the contract's frame handling. The stock WsAdapter drops
 * invalid JSON and unknown events silently; here every frame is parsed strictly,
 * screened by the gateway (which answers bad ones with an `error` frame and the
 * close code), and handled one at a time per socket, in arrival order.
 * Frames over MAX_FRAME_BYTES are refused by `ws` itself (close 1009) before
 * they are buffered whole.
 */
export class MessengerWsAdapter extends WsAdapter {
  private screen?: FrameScreen;
  private readonly upgrades = new UpgradePacer();

  constructor(
    app: INestApplicationContext,
    private readonly settings: MessengerWsAdapterOptions,
  ) {
    super(app);
  }

  useScreen(screen: FrameScreen): void {
    this.screen = screen;
  }

  create(port: number, options: Record<string, unknown> = {}) {
    // UTF-8 is checked in parseFrame, so a bad frame gets the contract's answer rather than ws's 1007.
    return super.create(port, {
      ...options,
      path: this.settings.path,
      maxPayload: this.settings.maxFrameBytes,
      skipUTF8Validation: true,
      perMessageDeflate: false,
      verifyClient: ({ origin }: { origin?: string }, done: (ok: boolean, code?: number, message?: string) => void) => {
        const allowed = this.settings.allowedOrigins;
        // A browser page from elsewhere is refused before the upgrade: 403, no socket.
        if (!origin || allowed.length === 0 || allowed.includes('*') || allowed.includes(origin)) this.upgrades.admit(() => done(true));
        else done(false, 403, 'Origin not allowed');
      },
    });
  }

  bindMessageHandlers(socket: WebSocket, handlers: MessageMappingProperties[], transform: (data: unknown) => Observable<unknown>): void {
    nestBindings.set(socket, { handlers, transform });
    socket.on('pong', heard);
    socket.on('message', this.onFrame);
  }

  /** One listener for every socket of this adapter: an idle socket holds no closure of its own. */
  private readonly onFrame = frameListener((socket, raw, isBinary) => this.frame(socket, raw, isBinary));

  private frame(socket: WebSocket, raw: RawData, isBinary: boolean): void {
    const conn = Connection.of(socket);
    if (!conn || conn.state === 'closed') return;
    const now = Date.now();
    conn.heardAt = now;
    if (!conn.takeFrame(now)) {
      conn.closeFor('rate_limited', new FrameError(ErrorCode.RateLimited, 'Too many frames per second; ack in batches', CloseCode.TooManyAttempts));
      conn.hold(Hold.Closed); // the rest of the flood stays in the kernel until the close grace ends the socket
      return;
    }
    // Frames are handled one at a time: a socket that sends faster than that waits in its own TCP window, not in memory here.
    // With none waiting, this one is handled at once (no promise to chain on).
    const handled = conn.framesWaiting++ === 0 ? this.handle(socket, raw, isBinary) : framesHandled(socket).then(() => this.handle(socket, raw, isBinary));
    if (conn.framesWaiting >= MAX_FRAMES_WAITING) conn.hold(Hold.Frames);
    const done = (): void => {
      if (--conn.framesWaiting <= MAX_FRAMES_WAITING / 2) conn.release(Hold.Frames);
      if (conn.framesWaiting === 0) conn.framesDone = undefined; // all handled: an idle socket keeps no promise
    };
    conn.framesDone = handled.then(done, done);
  }

  /** A bad frame is refused, a failed handling answered (dispatched) or filtered (Nest's handler). */
  private async handle(socket: WebSocket, raw: RawData, isBinary: boolean): Promise<void> {
    const screen = this.screen;
    if (socket.readyState !== socket.OPEN || !screen) return;
    let frame: Frame;
    let data: unknown;
    try {
      frame = parseFrame(raw as Buffer, isBinary);
      data = screen.screen(socket, frame);
    } catch (error) {
      // Anything unexpected while reading a frame is still the client's bad frame, answered as such.
      screen.refuse(socket, error instanceof FrameError ? error : FrameError.badFrame('Frame could not be read'));
      return;
    }
    const dispatched = screen.dispatch(socket, frame.event, data);
    if (dispatched) return dispatched.catch((error: unknown) => screen.fail(socket, error));
    const binding = nestBindings.get(socket);
    const handler = binding?.handlers.find((candidate) => candidate.message === frame.event);
    if (!binding || !handler) return;
    // Guards, filters and the handler run as Nest composes them; the handler sends its own frames.
    try {
      await lastValueFrom(binding.transform(await handler.callback(data, handler.message)), { defaultValue: undefined });
    } finally {
      // A socket identifies once: nothing else of it goes through Nest.
      if (frame.event === 'identify') nestBindings.delete(socket);
    }
  }
}
