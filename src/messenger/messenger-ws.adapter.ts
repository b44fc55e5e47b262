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

/** Each socket's frames, handled one after the other; a close waits for them (an ack just before it still counts). */
const frameQueues = new WeakMap<WebSocket, Promise<void>>();
export const framesHandled = (socket: WebSocket): Promise<void> => frameQueues.get(socket) ?? Promise.resolve();

/** A pong (or any frame) shows the peer is there: the heartbeat's clock. One function for every socket. */
function heard(this: WebSocket): void {
  const conn = Connection.of(this);
  if (conn) conn.heardAt = Date.now();
}

/** Decides, per socket and state, whether a parsed frame goes to its handler. */
export interface FrameScreen {
  /** Returns the validated data for the event's handler, or throws a FrameError. */
  screen(socket: WebSocket, frame: Frame): unknown;
  refuse(socket: WebSocket, error: FrameError): void;
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
        if (!origin || allowed.length === 0 || allowed.includes('*') || allowed.includes(origin)) done(true);
        else done(false, 403, 'Origin not allowed');
      },
    });
  }

  bindMessageHandlers(socket: WebSocket, handlers: MessageMappingProperties[], transform: (data: unknown) => Observable<unknown>): void {
    const conn = Connection.of(socket);
    socket.on('pong', heard);
    // A few handlers (identify, ack, refresh): a search of the socket's own list, no map per socket.
    socket.on('message', (raw: RawData, isBinary: boolean) => {
      if (!conn || conn.state === 'closed') return;
      const now = Date.now();
      conn.heardAt = now;
      if (!conn.takeFrame(now)) {
        conn.closeFor('rate_limited', new FrameError(ErrorCode.RateLimited, 'Too many frames per second; ack in batches', CloseCode.TooManyAttempts));
        conn.hold(Hold.Closed); // the rest of the flood stays in the kernel until the close grace ends the socket
        return;
      }
      // Frames are handled one at a time: a socket that sends faster than that waits in its own TCP window, not in memory here.
      if (++conn.framesWaiting >= MAX_FRAMES_WAITING) conn.hold(Hold.Frames);
      const handled = framesHandled(socket)
        .then(() => this.handle(socket, raw, isBinary, handlers, transform))
        .finally(() => {
          if (--conn.framesWaiting <= MAX_FRAMES_WAITING / 2) conn.release(Hold.Frames);
        });
      frameQueues.set(
        socket,
        handled.catch(() => undefined),
      );
    });
  }

  private async handle(socket: WebSocket, raw: RawData, isBinary: boolean, handlers: MessageMappingProperties[], transform: (data: unknown) => Observable<unknown>): Promise<void> {
    if (socket.readyState !== socket.OPEN || !this.screen) return;
    let data: unknown;
    let handler: MessageMappingProperties | undefined;
    try {
      const frame = parseFrame(raw as Buffer, isBinary);
      data = this.screen.screen(socket, frame);
      handler = handlers.find((candidate) => candidate.message === frame.event);
    } catch (error) {
      // Anything unexpected while reading a frame is still the client's bad frame, answered as such.
      this.screen.refuse(socket, error instanceof FrameError ? error : FrameError.badFrame('Frame could not be read'));
      return;
    }
    // Guards, filters and the handler run as Nest composes them; the handler sends its own frames.
    if (handler) await lastValueFrom(transform(await handler.callback(data, handler.message)), { defaultValue: undefined });
  }
}
