import { randomUUID } from 'node:crypto';
import type { WebSocket } from 'ws';
import { CloseCode, FrameError } from '../protocol/frame-error';
import type { ServerEventMap } from '../protocol/server-events';

export type ConnectionState = 'new' | 'identifying' | 'ready' | 'closed';

const connections = new WeakMap<WebSocket, Connection>();
const CLOSE_GRACE_MS = 2000;

let created = 0;

/**
 * Connection ids sort by creation time (MAX_SOCKETS_PER_USER replaces the oldest):
 * the time in ms, a per-process counter, then randomness for uniqueness across instances.
 */
const newConnectionId = () =>
  `${Date.now().toString(36).padStart(9, '0')}.${(created++ % 1_679_616).toString(36).padStart(4, '0')}.${randomUUID().slice(0, 8)}`;

/**
 * One WebSocket and what it has been sent. `next` is the owed position (absolute,
 * see the state's `b` in queue/lua) of the next message to send it; `inflight`
 * holds the ids sent and not yet acked, each with its position and when
 * RedMessenger received it. In `live` mode the socket has read all that is owed
 * and takes new messages as they are routed; in `backlog` mode it reads from
 * Redis as room allows.
 */
export class Connection {
  readonly id = newConnectionId();
  user?: string;
  state: ConnectionState = 'new';
  /** Reached `ready` once (counted in the identified-connections gauge until it closes). */
  identified = false;
  next = 0;
  /** Has read from Redis once (a socket's first read is small). */
  hasRead = false;
  readonly inflight = new Map<string, Inflight>();
  mode: 'live' | 'backlog' = 'backlog';
  reading = false;
  /** A read is scheduled for the end of this tick (many notices, one read). */
  wakeScheduled = false;
  /** Writes are being held until the end of the tick (see `cork` in DeliveryService). */
  corked = false;
  /** Messages routed while a read was under way, offered once it is done. */
  pending: Array<{ position: number; envelope: string }> = [];
  /** The attach under way or done (true once registered in Redis), so that a detach never overtakes it. */
  attached?: Promise<boolean>;
  detached?: Promise<void>;
  identifyTimer?: NodeJS.Timeout;
  /** Since when the socket has had too much unsent (SLOW_CONSUMER_BYTES), and the timer that watches it drain. */
  slowSince?: number;
  drainTimer?: NodeJS.Timeout;

  constructor(
    readonly socket: WebSocket,
    /** address:port, for logs. */
    readonly remote: string,
    /** The client's address (X-Forwarded-For from a trusted proxy), for rate limits. */
    readonly address = remote,
  ) {
    connections.set(socket, this);
  }

  static of(socket: WebSocket): Connection | undefined {
    return connections.get(socket);
  }

  get open(): boolean {
    return this.socket.readyState === this.socket.OPEN;
  }

  send<E extends keyof ServerEventMap>(event: E, data: ServerEventMap[E]): void {
    if (this.open) this.socket.send(JSON.stringify({ event, data }));
  }

  /** Answers a refused frame: an `error` frame, then the close if the refusal is fatal (always before `ready`). */
  refuse(error: FrameError): void {
    const refusal = this.state === 'ready' ? error : error.fatal();
    this.send('error', { code: refusal.code, message: refusal.message });
    if (refusal.close) this.close(refusal.close, refusal.code);
  }

  close(code: CloseCode, reason = ''): void {
    this.state = 'closed';
    clearTimeout(this.identifyTimer);
    clearInterval(this.drainTimer);
    if (this.socket.readyState === this.socket.OPEN || this.socket.readyState === this.socket.CONNECTING) {
      this.socket.close(code, reason);
      // A peer that does not answer the close (not reading, gone) must not hold the socket and its messages.
      setTimeout(() => this.socket.terminate(), CLOSE_GRACE_MS).unref();
    }
  }

  /**
   * Read again from `position` (the oldest owed message). What the socket holds unacked stays
   * in `inflight`: read again, it is not sent twice, only found at its new position.
   */
  rewind(position: number): void {
    this.next = position;
    this.pending = [];
    this.mode = 'backlog';
  }
}

/** A message sent and not yet acked: its owed position, and when RedMessenger received it (ms). */
export interface Inflight {
  position: number;
  ts?: number;
}
