import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { InjectMessengerOptions, MessengerOptions } from '../config/messenger-options';
import { PresenceService } from '../presence/presence.service';
import { queueKeys } from '../queue/queue-keys';
import { QueueService, messageFrame, type LocalDelivery } from '../queue/queue.service';
import { InjectRedis, InjectRedisSubscriber } from '../redis/redis.constants';
import { CloseCode, ErrorCode, FrameError } from '../messenger/frame-error';
import { Connection } from './connection';
import { MetricsService } from '../metrics/metrics.service';
import { envelopeTs } from '../metrics/envelope-ts';

/** How long an identify waits for presence to be ready (Redis reachable) before it is refused. */
const ATTACH_WAIT_MS = 5000;
/** How often a stalled socket is looked at. */
const DRAIN_CHECK_MS = 200;
/** The most owed messages read from Redis in one script call, and in a socket's first one. */
const FIRST_READ_CHUNK = 100;
const READ_CHUNK = 1000;

/**
 * Holds a socket's writes until the end of this tick, so a burst of messages
 * (a purge reads up to a thousand at once) leaves in one write, not one each.
 */
function cork(conn: Connection): void {
  const raw = (conn.socket as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
  if (!raw || conn.corked) return;
  conn.corked = true;
  raw.cork();
  process.nextTick(() => {
    conn.corked = false;
    raw.uncork();
  });
}

/**
 * Hands owed messages to this instance's identified sockets, in order, with at
 * most MAX_INFLIGHT unacked per socket. New messages come from the router's own
 * result when this instance routes (`deliver`), or as notices on the instance's
 * channel from the routing instance (`m|user|id|envelope`); other notices are
 * `a|user|ids` (acks taken by another instance), `s|user` (messages wait in a
 * queue the user's sockets must read) and `k|user|conn` (a socket replaced past
 * MAX_SOCKETS_PER_USER). Whatever a socket has no room for stays in Redis and is
 * read when acks free room.
 */
@Injectable()
export class DeliveryService implements OnModuleInit {
  private readonly logger = new Logger(DeliveryService.name);
  private readonly byUser = new Map<string, Set<Connection>>();

  constructor(
    private readonly queue: QueueService,
    private readonly presence: PresenceService,
    @InjectRedis() private readonly redis: Redis,
    @InjectRedisSubscriber() private readonly subscriber: Redis,
    @InjectMessengerOptions() private readonly options: MessengerOptions,
    private readonly metrics: MetricsService,
  ) {}

  onModuleInit(): void {
    const channel = queueKeys.instanceChannel(this.presence.instanceId);
    this.subscriber.on('message', (from: string, text: string) => {
      if (from === channel) this.notice(text);
    });
    this.subscriber.subscribe(channel).catch((error: Error) => this.logger.error(`Cannot subscribe to ${channel} yet: ${error.message}`));
    // Notices sent while a connection was down are gone, and Redis may have lost its data: start over,
    // reading owed only once the subscription is confirmed live (later messages then come as notices).
    this.onReconnect(this.subscriber, () =>
      this.subscriber.subscribe(channel).then(
        () => this.rewindAll(),
        (error: Error) => this.logger.error(`Cannot subscribe to ${channel} again: ${error.message}`),
      ),
    );
    this.onReconnect(this.redis, () => void this.reattachAll());
  }

  /**
   * Registers an identified socket; resolves with how many messages the user is
   * owed and how many were dropped or expired since the last identify (undefined
   * if the socket closed first).
   */
  async attach(conn: Connection, user: string): Promise<{ owed: number; dropped: number; replaced: number } | undefined> {
    conn.user = user;
    let result: { owed: number; dropped: number; replaced: number } | undefined;
    conn.attached = (async () => {
      await this.presence.whenReady(ATTACH_WAIT_MS);
      if (conn.state === 'closed') return false;
      let conns = this.byUser.get(user);
      if (!conns) this.byUser.set(user, (conns = new Set()));
      conns.add(conn);
      const { owed, dropped, replaced } = await this.metrics.timeRedis('attach', this.queue.attach(user, conn.id, this.presence.instanceId));
      result = { owed, dropped, replaced: replaced.length };
      return true;
    })();
    await conn.attached;
    return result;
  }

  /** Unregisters a closed socket, once; the user's last socket gives every owed message back to the queue. */
  detach(conn: Connection): Promise<void> {
    conn.detached ??= (async () => {
      const user = conn.user;
      if (!user || !conn.attached) return;
      const registered = await conn.attached.catch(() => true);
      const conns = this.byUser.get(user);
      conns?.delete(conn);
      if (conns?.size === 0) this.byUser.delete(user);
      if (!registered) return;
      const { requeued, left } = await this.metrics.timeRedis('detach', this.queue.detach(user, conn.id, this.presence.instanceId));
      this.metrics.requeued(requeued);
      if (left === 0 && requeued > 0) this.logger.log(`${user}: Client is no longer online, recommitting ${requeued} messages to queue`);
    })();
    return conn.detached;
  }

  /** Acks ids for a socket's user; every socket of the user forgets them and gets room. */
  async ack(conn: Connection, ids: string[]): Promise<void> {
    const user = conn.user!;
    const acked = await this.metrics.timeRedis('ack', this.queue.ack(user, ids, this.presence.instanceId));
    const now = Date.now();
    const latencies: number[] = [];
    for (const id of ids) {
      let ts: number | undefined;
      for (const other of this.byUser.get(user) ?? []) ts ??= other.inflight.get(id);
      if (ts !== undefined) latencies.push((now - ts) / 1000);
    }
    this.metrics.acked(acked, latencies.slice(0, acked));
    this.forget(user, ids);
  }

  /** Starts or continues sending what is owed to a socket, as far as its room allows. */
  async pump(conn: Connection): Promise<void> {
    while (conn.state === 'ready' && conn.mode === 'backlog' && !conn.reading) {
      // A socket's first read is small, so that many users identifying at once all get their first messages soon.
      const room = Math.min(this.options.maxInflight - conn.inflight.size, conn.position === 0 ? FIRST_READ_CHUNK : READ_CHUNK);
      if (room <= 0) return;
      conn.reading = true;
      let rows;
      try {
        rows = await this.metrics.timeRedis('read', this.queue.read(conn.user!, conn.position, room));
      } catch (error) {
        // Stays in backlog mode: the next ack, notice or reconnect reads again.
        this.logger.warn(`${conn.user}: reading owed messages failed: ${(error as Error).message}`);
        return;
      } finally {
        conn.reading = false;
      }
      let sent = 0;
      while (sent < rows.length && this.send(conn, rows[sent].position, rows[sent].id, rows[sent].envelope)) sent++;
      // The seed's per-message purge line names the message id, never its payload.
      if (Logger.isLevelEnabled('debug')) for (let i = 0; i < sent; i++) this.logger.debug(`${conn.user}: Purging message ${rows[i].id}`);
      const pending = conn.pending;
      conn.pending = [];
      if (sent < rows.length) return; // a slow consumer: the rest is read again once it drains
      if (rows.length < room) {
        // Everything owed up to the read is sent: newer notices can go straight out.
        conn.mode = 'live';
        for (const notice of pending) this.offer(conn, notice.position, notice.id, notice.envelope);
      }
    }
  }

  /** Hands out newly owed messages to the users' sockets here (from this instance's routing, or a notice). */
  deliver(messages: LocalDelivery[]): void {
    for (const { user, id, envelope } of messages) {
      for (const conn of this.byUser.get(user) ?? []) this.offer(conn, Number(id), id, envelope);
    }
  }

  /** The user's messages wait in Redis past what its sockets have read: they read again. */
  sync(user: string): void {
    for (const conn of this.byUser.get(user) ?? []) {
      conn.mode = 'backlog';
      void this.pump(conn);
    }
  }

  /** Parses and applies the notices of one PUBLISH on this instance's channel. */
  private notice(text: string): void {
    for (const line of text.split('\n')) {
      const userEnd = line.indexOf('|', 2);
      const user = userEnd < 0 ? line.slice(2) : line.slice(2, userEnd);
      const conns = this.byUser.get(user);
      if (!conns) continue;
      if (line[0] === 'm') {
        const idEnd = line.indexOf('|', userEnd + 1);
        this.deliver([{ user, id: line.slice(userEnd + 1, idEnd), envelope: line.slice(idEnd + 1) }]);
      } else if (line[0] === 'a') {
        this.forget(user, line.slice(userEnd + 1).split(','));
      } else if (line[0] === 'k') {
        // Past MAX_SOCKETS_PER_USER: the attach script already unregistered this one.
        const id = line.slice(userEnd + 1);
        for (const conn of conns) {
          if (conn.id === id) conn.refuse(new FrameError(ErrorCode.Replaced, 'Replaced by a newer socket of the same id', CloseCode.Replaced));
        }
      } else if (line[0] === 's') {
        this.sync(user);
      }
    }
  }

  private offer(conn: Connection, position: number, id: string, envelope: string): void {
    if (conn.state !== 'ready' || position <= conn.position) return;
    if (conn.reading) {
      conn.pending.push({ position, id, envelope });
    } else if (conn.mode === 'live' && conn.inflight.size < this.options.maxInflight && this.send(conn, position, id, envelope)) {
      // sent
    } else {
      // No room: it waits in Redis and is read when acks free room.
      conn.mode = 'backlog';
    }
  }

  /** Sends one owed message; false (and nothing sent) while the socket has too much unsent. */
  private send(conn: Connection, position: number, id: string, envelope: string): boolean {
    if (position <= conn.position || !conn.open) return true;
    if (conn.socket.bufferedAmount > this.options.slowConsumerBytes) {
      this.stall(conn);
      return false;
    }
    conn.position = position;
    conn.inflight.set(id, envelopeTs(envelope));
    cork(conn);
    conn.socket.send(messageFrame(envelope));
    this.metrics.delivered(1);
    return true;
  }

  /**
   * A slow consumer: nothing more is sent to it (its messages wait in Redis) until
   * its unsent bytes fall to half the limit; still stalled after
   * SLOW_CONSUMER_TIMEOUT_MS, it is closed and its messages go back to the queue.
   */
  private stall(conn: Connection): void {
    conn.mode = 'backlog';
    if (conn.drainTimer) return;
    conn.slowSince = Date.now();
    this.logger.warn(`${conn.user}: socket ${conn.remote} is not reading (${conn.socket.bufferedAmount} bytes unsent); holding its messages in Redis`);
    conn.drainTimer = setInterval(() => {
      if (!conn.open || conn.state !== 'ready') return clearInterval(conn.drainTimer);
      if (conn.socket.bufferedAmount <= this.options.slowConsumerBytes / 2) {
        clearInterval(conn.drainTimer);
        conn.drainTimer = conn.slowSince = undefined;
        void this.pump(conn);
      } else if (Date.now() - conn.slowSince! > this.options.slowConsumerTimeoutMs) {
        clearInterval(conn.drainTimer);
        this.logger.warn(`${conn.user}: closing socket ${conn.remote}, still not reading after SLOW_CONSUMER_TIMEOUT_MS=${this.options.slowConsumerTimeoutMs}`);
        conn.refuse(new FrameError(ErrorCode.SlowConsumer, 'Not reading fast enough', CloseCode.PolicyViolation));
      }
    }, DRAIN_CHECK_MS);
  }

  private forget(user: string, ids: string[]): void {
    for (const conn of this.byUser.get(user) ?? []) {
      for (const id of ids) conn.inflight.delete(id);
      void this.pump(conn);
    }
  }

  private rewindAll(): void {
    for (const conns of this.byUser.values()) {
      for (const conn of conns) {
        conn.rewind();
        void this.pump(conn);
      }
    }
  }

  /** After Redis came back: register every socket again (Redis may have restarted empty), then resend from the start. */
  private async reattachAll(): Promise<void> {
    for (const [user, conns] of this.byUser) {
      for (const conn of conns) {
        if (conn.state !== 'ready') continue;
        try {
          await this.queue.attach(user, conn.id, this.presence.instanceId);
        } catch (error) {
          this.logger.warn(`${user}: registering again after a Redis reconnect failed: ${(error as Error).message}`);
        }
      }
    }
    this.rewindAll();
  }

  private onReconnect(redis: Redis, then: () => void): void {
    let lost = false;
    redis.on('close', () => (lost = true));
    redis.on('ready', () => {
      if (lost) then();
      lost = false;
    });
  }
}
