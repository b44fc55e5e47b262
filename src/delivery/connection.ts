import { Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { WebSocket } from 'ws';
import { RateLimitedLog } from '../logging/rate-limited-log';
import type { SocketCloseCause } from '../metrics/metrics.constants';
import { CloseCode, ErrorCode, FrameError } from '../protocol/frame-error';
import type { ServerEventMap } from '../protocol/server-events';
import type { ReadResult } from '../queue/queue.service';

export type ConnectionState = 'new' | 'identifying' | 'ready' | 'closed';

/** What every socket of an instance is held to: one object, shared by all of them. */
export interface SocketPolicy {
  /** Unsent bytes past which a socket is sent nothing more and read no further, until it drains to half. */
  slowConsumerBytes: number;
  slowConsumerTimeoutMs: number;
  /** Frames a socket may send per second, a burst of this many at once (0: no limit). */
  maxFramesPerSecond: number;
  /** A stalled socket drained to half: it may be sent its messages again. */
  drained(conn: Connection): void;
  /** The server closed a socket for cause. */
  closedFor(cause: SocketCloseCause): void;
}

/** Why reading from a socket is paused: its frames wait to be handled, or it does not take what it is sent. */
export enum Hold {
  Frames = 1,
  Unsent = 2,
  /** Closed for flooding: nothing it still sends is worth reading. */
  Closed = 4,
}

const connections = new WeakMap<WebSocket, Connection>();
const CLOSE_GRACE_MS = 2000;
/** Retracted ids a socket remembers, so a read under way when the retract came never sends one. */
const RETRACTED_REMEMBERED = 100;
/** How often a stalled socket is looked at. */
const DRAIN_CHECK_MS = 200;
/** One line a second per kind: many sockets can stall at once (a mobile network going bad). */
const warnings = new RateLimitedLog(new Logger('Connection'));

let created = 0;

/**
 * Connection ids sort by creation time (MAX_SOCKETS_PER_USER replaces the oldest):
 * the time in ms, a per-process counter, then randomness for uniqueness across instances.
 */
const newConnectionId = () => `${Date.now().toString(36).padStart(9, '0')}.${(created++ % 1_679_616).toString(36).padStart(4, '0')}.${randomUUID().slice(0, 8)}`;

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
  /** Sent and not acked yet, by id; made with the first message sent (an idle socket holds none). */
  private sent?: Map<string, Inflight>;
  mode: 'live' | 'backlog' = 'backlog';
  reading = false;
  /** A read is scheduled for the end of this tick (many notices, one read). */
  wakeScheduled = false;
  /** Writes are being held until the end of the tick (see `cork` in DeliveryService). */
  corked = false;
  /** Messages routed while a read was under way (or the socket identified), offered once it is done (none: undefined). */
  pending?: Array<{ position: number; envelope: string }>;
  /** The first owed messages, read by the attach script, sent right after `ready`. */
  firstRead?: ReadResult;
  /** Told to read again while it identified (a sync notice): its first read may be short of what waits. */
  resync = false;
  /** What the socket last said in a `visibility` frame (a socket counts as visible until it says otherwise). */
  visible = true;
  /** Retracted ids to tell the socket right after `ready` (retracted before it got there). */
  retractsDue?: string[];
  /** Retracted ids heard of lately (the newest RETRACTED_REMEMBERED): a read under way may still bring one, never sent. */
  retracted?: Set<string>;
  /** The attach under way or done (true once registered in Redis), so that a detach never overtakes it. */
  attached?: Promise<boolean>;
  detached?: Promise<void>;
  identifyTimer?: NodeJS.Timeout;
  /** Since when the socket has had too much unsent (SLOW_CONSUMER_BYTES), and the timer that watches it drain. */
  slowSince?: number;
  drainTimer?: NodeJS.Timeout;
  /** When anything (a frame, a pong) last arrived, and when the last ping went out (ms): the heartbeat's. */
  heardAt = Date.now();
  pingedAt = this.heardAt;
  /** The frame-rate bucket: frames the socket may still send, as of `tokensAt` (ms). */
  private tokens: number;
  private tokensAt = this.heardAt;
  /** Frames received and not yet handled, and why reading is paused (Hold flags). */
  framesWaiting = 0;
  /** Settles when the frames received so far are handled (none waiting: undefined). */
  framesDone?: Promise<void>;
  private holds = 0;

  constructor(
    readonly socket: WebSocket,
    /** address:port, for logs. */
    readonly remote: string,
    /** The client's address (X-Forwarded-For from a trusted proxy), for rate limits. */
    readonly address = remote,
    private readonly policy?: SocketPolicy,
  ) {
    connections.set(socket, this);
    this.tokens = policy?.maxFramesPerSecond ?? 0;
  }

  static of(socket: WebSocket): Connection | undefined {
    return connections.get(socket);
  }

  get open(): boolean {
    return this.socket.readyState === this.socket.OPEN;
  }

  send<E extends keyof ServerEventMap>(event: E, data: ServerEventMap[E]): void {
    if (this.open) this.write(JSON.stringify({ event, data }));
  }

  /** Writes one frame; past SLOW_CONSUMER_BYTES unsent, the socket is held (see `stalled`). */
  write(frame: string): void {
    this.socket.send(frame);
    if (this.policy && !this.drainTimer && this.socket.bufferedAmount > this.policy.slowConsumerBytes) this.stall(this.policy);
  }

  /** Has too much unsent: it is sent no messages (they wait in Redis) and read no frames until it drains to half. */
  get stalled(): boolean {
    return this.drainTimer !== undefined;
  }

  /** Takes one frame from the rate bucket (refilled continuously); false when the socket is over MAX_FRAMES_PER_SECOND. */
  takeFrame(now: number): boolean {
    const rate = this.policy?.maxFramesPerSecond ?? 0;
    if (rate === 0) return true;
    this.tokens = Math.min(rate, this.tokens + ((now - this.tokensAt) * rate) / 1000);
    this.tokensAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Reading from the socket is paused. */
  get held(): boolean {
    return this.holds !== 0;
  }

  /** Pauses reading from the socket for `reason` (the client's TCP window fills: it cannot send more). */
  hold(reason: Hold): void {
    if (this.holds === 0) this.socket.pause();
    this.holds |= reason;
  }

  release(reason: Hold): void {
    if ((this.holds & reason) === 0) return;
    this.holds &= ~reason;
    if (this.holds !== 0) return;
    this.socket.resume();
    this.heardAt = Date.now(); // nothing could arrive while paused: the heartbeat starts over
  }

  /** Closed by the server for `cause`: the `error` frame and close code of `error`, counted. */
  closeFor(cause: SocketCloseCause, error: FrameError): void {
    if (this.state === 'closed') return;
    this.policy?.closedFor(cause);
    this.refuse(error);
  }

  /**
   * A slow consumer: nothing more is sent to it and nothing more read from it until its unsent
   * bytes fall to half the limit; still stalled after SLOW_CONSUMER_TIMEOUT_MS, it is closed.
   */
  private stall(policy: SocketPolicy): void {
    this.slowSince = Date.now();
    this.mode = 'backlog';
    this.hold(Hold.Unsent);
    warnings.warn('stalled', `${this.user ?? this.remote}: socket ${this.remote} is not reading (${this.socket.bufferedAmount} bytes unsent); holding its messages in Redis`);
    this.drainTimer = setInterval(() => {
      if (!this.open) return clearInterval(this.drainTimer);
      if (this.socket.bufferedAmount <= policy.slowConsumerBytes / 2) {
        clearInterval(this.drainTimer);
        this.drainTimer = this.slowSince = undefined;
        this.release(Hold.Unsent);
        if (this.state === 'ready') policy.drained(this);
      } else if (Date.now() - this.slowSince! > policy.slowConsumerTimeoutMs) {
        clearInterval(this.drainTimer);
        warnings.warn('slow-consumer', `${this.user ?? this.remote}: closing socket ${this.remote}, still not reading after SLOW_CONSUMER_TIMEOUT_MS=${policy.slowConsumerTimeoutMs}`);
        this.closeFor('slow_consumer', new FrameError(ErrorCode.SlowConsumer, 'Not reading fast enough', CloseCode.PolicyViolation));
      }
    }, DRAIN_CHECK_MS);
  }

  /** Closed as cut (no close handshake: the peer is gone or unreachable); handled as any other close. */
  cut(): void {
    this.policy?.closedFor('cut');
    this.state = 'closed';
    clearTimeout(this.identifyTimer);
    clearInterval(this.drainTimer);
    this.socket.terminate();
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

  /** The messages sent and not acked yet (read only: markSent and unmarkSent change it). */
  get inflight(): ReadonlyMap<string, Inflight> {
    return this.sent ?? NONE_SENT;
  }

  markSent(id: string, inflight: Inflight): void {
    (this.sent ??= new Map()).set(id, inflight);
  }

  /** Forgets a sent message (acked, retracted); true if it was held. */
  unmarkSent(id: string): boolean {
    return this.sent?.delete(id) ?? false;
  }

  /**
   * A message of the user was retracted: the socket is told when it was sent it (or `every`:
   * when it may show it from a socket before it), and never sent it from now on.
   */
  retract(id: string, every: boolean): void {
    this.retracted ??= new Set();
    this.retracted.add(id);
    if (this.retracted.size > RETRACTED_REMEMBERED) this.retracted.delete(this.retracted.values().next().value!);
    const sent = this.unmarkSent(id);
    if (!sent && !every) return;
    if (this.state === 'ready') this.send('retract', { id });
    else if (this.state !== 'closed') (this.retractsDue ??= []).push(id);
  }

  /**
   * Read again from `position` (the oldest owed message). What the socket holds unacked stays
   * in `inflight`: read again, it is not sent twice, only found at its new position.
   */
  rewind(position: number): void {
    this.next = position;
    this.pending = undefined;
    this.mode = 'backlog';
  }
}

/** What an idle socket's inflight answers: one empty map for all of them. */
const NONE_SENT: ReadonlyMap<string, Inflight> = new Map();

/** A message sent and not yet acked: its owed position, and when RedMessenger received it (ms). */
export interface Inflight {
  position: number;
  ts?: number;
}
