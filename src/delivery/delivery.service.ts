import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { InjectMessengerOptions, MessengerOptions } from '../config/messenger-options';
import { MetricsService } from '../metrics/metrics.service';
import { PresenceService } from '../presence/presence.service';
import { EventsService } from '../events/events.service';
import { envelopeId, envelopeTs, messageFrame } from '../protocol/envelope';
import { CloseCode, ErrorCode, FrameError } from '../protocol/frame-error';
import { parseNotices } from '../protocol/notices';
import { QueueService, type AckResult, type ReadResult } from '../queue/queue.service';
import { QueueKeys } from '../redis/keys';
import type { RedisClient } from '../redis/lua-scripts';
import { InjectRedis, InjectRedisSubscriber } from '../redis/redis.constants';
import { Connection } from './connection';

/** How long an identify waits for presence to be ready (Redis reachable) before it is refused. */
const ATTACH_WAIT_MS = 5000;
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

/** Acks of one user gathered over a tick: one script call for all of its sockets' ack frames here. */
interface AckBatch {
  ids: Map<string, number>;
  conns: Set<Connection>;
  done: Array<{ resolve(): void; reject(error: Error): void }>;
}

/** A batch whose ids are forgotten here already, waiting for its acks.lua call. */
interface GatheredAck {
  user: string;
  batch: AckBatch;
  latencies: number[];
}

/**
 * Acks that need no read wait this long (or for this many users) to share one acks.lua call:
 * at a steady rate each ack frame acks a message or two, and every call has a fixed cost in
 * Redis and a write here. Nothing waits on them (the socket's room was freed here already);
 * a frame behind an ack on the same socket waits as long.
 */
const ACK_GATHER_MS = 5;
const ACK_GATHER_USERS = 500;

function settleAcks(batch: AckBatch, done: Promise<void>): void {
  done.then(
    () => batch.done.forEach((d) => d.resolve()),
    (error: Error) => batch.done.forEach((d) => d.reject(error)),
  );
}

/**
 * Hands owed messages to this instance's identified sockets, in order, with at
 * most MAX_INFLIGHT unacked per socket. New messages come from this instance's own
 * routing (`deliver`), or as notices on the instance's channel from the instance
 * that routed them (protocol/notices.ts: `m|user|position|envelope`); other notices are
 * `a|user|ids` (acks taken by another instance), `s|user` (messages wait in a
 * queue the user's sockets must read), `k|user|conn` (a socket replaced past
 * MAX_SOCKETS_PER_USER) and `r|user|id` (a message retracted: the sockets sent it
 * are told; `r|user|id|*`: every socket, it was sent to one before them). Whatever a socket has no room for stays in Redis and is
 * read when acks free room: the ack that frees it reads the next messages in the
 * same script call.
 */
@Injectable()
export class DeliveryService implements OnModuleInit {
  private readonly logger = new Logger(DeliveryService.name);
  /** Each user's sockets here: an array, not a Set (most users have one socket; an array of one costs a fifth). */
  private readonly byUser = new Map<string, Connection[]>();
  private acks = new Map<string, AckBatch>();
  private acksScheduled = false;
  private gathered: GatheredAck[] = [];
  private gatherTimer?: NodeJS.Timeout;
  /** The last gathered acks' call: a detach waits for it, so what was acked is not given back to the queue. */
  private lastGathered?: Promise<void>;

  constructor(
    private readonly queue: QueueService,
    private readonly presence: PresenceService,
    private readonly keys: QueueKeys,
    @InjectRedis() private readonly redis: RedisClient,
    @InjectRedisSubscriber() private readonly subscriber: RedisClient,
    @InjectMessengerOptions() private readonly options: MessengerOptions,
    private readonly metrics: MetricsService,
    private readonly events: EventsService,
  ) {}

  onModuleInit(): void {
    const channel = this.keys.instanceChannel(this.presence.instanceId);
    this.subscriber.on('message', (from: string, text: string) => {
      if (from === channel) this.notice(text);
    });
    this.subscriber.subscribe(channel).catch((error: Error) => this.logger.error(`Cannot subscribe to ${channel} yet: ${error.message}`));
    // Notices sent while a connection was down are gone, and Redis may have lost its data: register
    // every socket again and start over, reading owed only once the subscription is confirmed live.
    this.onReconnect(this.subscriber, () =>
      this.subscriber.subscribe(channel).then(
        () => this.reattachAll(),
        (error: Error) => this.logger.error(`Cannot subscribe to ${channel} again: ${error.message}`),
      ),
    );
    this.onReconnect(this.redis, () => void this.reattachAll());
    // Peers may have unregistered this instance's sockets while its presence had lapsed.
    this.presence.onLapse(() => this.reattachAll());
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
      // A literal of one: an array grown by push from empty reserves 17 slots, for the one socket most users have.
      const conns = this.byUser.get(user);
      if (!conns) this.byUser.set(user, [conn]);
      else if (!conns.includes(conn)) conns.push(conn);
      // Noted before the socket is registered, so a crash after it is always reclaimed.
      await this.queue.registerUser(this.presence.instanceId, user, true);
      // The first read comes with the registration: one round trip less for each identify.
      const read = Math.min(this.options.maxInflight, FIRST_READ_CHUNK);
      const attached = await this.queue.attach(user, conn.id, this.presence.instanceId, { visible: conn.visible, read });
      const { owed, dropped, position, replaced, first, expired, retracted, lookingChanged } = attached;
      conn.firstRead = attached.read;
      if (retracted.length > 0) (conn.retractsDue ??= []).push(...retracted);
      if (lookingChanged) this.events.lookingChanged(user);
      if (first) this.events.online(user);
      this.events.dropped(user, expired, 'expired');
      conn.next = position;
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
      if (this.gathered.length > 0) this.ackGathered();
      await this.lastGathered;
      const registered = await conn.attached.catch(() => true);
      const conns = this.byUser.get(user);
      const at = conns?.indexOf(conn) ?? -1;
      if (at >= 0) conns!.splice(at, 1);
      if (conns?.length === 0) this.byUser.delete(user);
      if (!registered) return;
      const { requeued, left, removed, lookingChanged } = await this.queue.detach(user, conn.id, this.presence.instanceId);
      if (left === 0 && removed > 0) this.events.offline(user);
      if (lookingChanged) this.events.lookingChanged(user);
      // Another socket of the user may have attached here meanwhile: then the user stays noted.
      if (!this.byUser.has(user)) await this.queue.registerUser(this.presence.instanceId, user, false);
      this.metrics.requeued(requeued);
      if (left === 0 && requeued > 0) this.logger.log(`${user}: Client is no longer online, recommitting ${requeued} messages to queue`);
    })();
    return conn.detached;
  }

  /**
   * A `visibility` frame: noted on the socket, and in Redis while absences are tracked
   * (NOTIFY_AFTER_SECONDS), where every instance's sockets of the user count.
   */
  async visibility(conn: Connection, visible: boolean): Promise<void> {
    if (conn.visible === visible) return;
    conn.visible = visible;
    if (!this.events.tracksAbsences || !(await conn.attached)) return;
    const { lookingChanged } = await this.queue.visibility(conn.user!, conn.id, visible);
    if (lookingChanged) this.events.lookingChanged(conn.user!);
  }

  /**
   * Acks ids for a socket's user; every socket of the user forgets them and gets
   * room. Ack frames of all the user's sockets here within a tick go in one call.
   * Only ids this socket was sent and has not acked count: the rest never reach Redis,
   * so an ack costs Redis work in proportion to what it really acks.
   */
  ack(conn: Connection, ids: string[]): Promise<void> {
    const owed = ids.filter((id) => conn.inflight.has(id));
    if (owed.length === 0) return Promise.resolve();
    const user = conn.user!;
    let batch = this.acks.get(user);
    if (!batch) this.acks.set(user, (batch = { ids: new Map(), conns: new Set(), done: [] }));
    for (const id of owed) batch.ids.set(id, -1);
    batch.conns.add(conn);
    if (!this.acksScheduled) {
      this.acksScheduled = true;
      setImmediate(() => this.flushAcks());
    }
    return new Promise((resolve, reject) => batch!.done.push({ resolve, reject }));
  }

  /**
   * The acks of this tick: a user whose acking socket waits for room acks and reads in one
   * call (ack-5.lua); the others, at a steady rate nearly all, go together (acks.lua: one
   * call per slot, not one per user).
   */
  private flushAcks(): void {
    const all = this.acks;
    this.acks = new Map();
    this.acksScheduled = false;
    const together: GatheredAck[] = [];
    for (const [user, batch] of all) {
      const latencies = this.forget(user, batch);
      if (batch.ids.size === 0) settleAcks(batch, Promise.resolve());
      else {
        // The acking socket that waits for room reads its next messages in the same call.
        const reader = [...batch.conns].find((conn) => this.readable(conn) > 0);
        if (reader) settleAcks(batch, this.ackAndRead(user, batch, latencies, reader));
        else together.push({ user, batch, latencies });
      }
    }
    if (together.length === 0) return;
    // Nothing waits on these (their sockets have room): gathered a little longer, they share a call.
    this.gathered.push(...together);
    if (this.gathered.length >= ACK_GATHER_USERS) this.ackGathered();
    else this.gatherTimer ??= setTimeout(() => this.ackGathered(), ACK_GATHER_MS);
  }

  private ackGathered(): void {
    clearTimeout(this.gatherTimer);
    this.gatherTimer = undefined;
    const together = this.gathered;
    this.gathered = [];
    const answers = this.queue.ackMany(
      together.map(({ user, batch }) => ({ user, acks: [...batch.ids] })),
      this.presence.instanceId,
      this.events.wantsAcks,
    );
    this.lastGathered = answers.then(
      () => undefined,
      () => undefined,
    );
    together.forEach(({ user, batch, latencies }, i) =>
      settleAcks(
        batch,
        answers.then((all) => {
          const answer = all[i];
          if (answer instanceof Error) throw answer;
          this.afterAck(user, answer, latencies);
        }),
      ),
    );
  }

  /**
   * Forgets a batch's ids on every socket of the user here (the room they free is read into
   * after the ack), keeping in the batch only the ids some socket here still held; answers the
   * publish-to-ack latencies of those.
   */
  private forget(user: string, batch: AckBatch, now = Date.now()): number[] {
    const latencies: number[] = [];
    const local = this.byUser.get(user) ?? [];
    for (const [id] of batch.ids) {
      let seen = false;
      for (const conn of local) {
        const sent = conn.inflight.get(id);
        if (!sent) continue;
        conn.unmarkSent(id);
        batch.ids.set(id, sent.position);
        if (!seen && sent.ts !== undefined) latencies.push((now - sent.ts) / 1000);
        seen = true;
      }
      // Acked meanwhile by another socket of the user (here, or elsewhere: an `a|` notice): nothing left to do.
      if (!seen) batch.ids.delete(id);
    }
    return latencies;
  }

  /** What an ack call took: told to events and metrics; the user's sockets here may read into the room. */
  private afterAck(user: string, answer: AckResult, latencies: number[], reader?: Connection): void {
    if (answer.details) this.events.acked(user, answer.details);
    // An absence with a notify written may have ended (nothing waits) or changed its count.
    if (answer.notified && answer.acked > 0) this.events.absenceChanged(user);
    this.metrics.acked(answer.acked, latencies.slice(0, answer.acked));
    for (const conn of this.byUser.get(user) ?? []) if (conn !== reader) this.wake(conn);
  }

  /** One user's acks, and the next messages for the acking socket that waits for room, in one call. */
  private async ackAndRead(user: string, batch: AckBatch, latencies: number[], reader: Connection): Promise<void> {
    const room = this.readable(reader);
    reader.reading = true;
    let answer: AckResult & { read?: ReadResult };
    try {
      answer = await this.queue.ack(user, [...batch.ids], this.presence.instanceId, { position: reader.next, limit: room }, Date.now(), this.events.wantsAcks);
    } finally {
      reader.reading = false;
    }
    // The reader too: acks that arrived while its read was under way freed more room, read it in one go.
    if (answer.read && this.took(reader, answer.read, room)) this.wake(reader);
    this.afterAck(user, answer, latencies, reader);
  }

  /** Starts or continues sending what is owed to a socket, as far as its room allows. */
  async pump(conn: Connection): Promise<void> {
    const first = conn.firstRead;
    if (first && conn.state === 'ready' && !conn.reading) {
      conn.firstRead = undefined;
      const room = this.readable(conn);
      // A sync heard while it identified: more may wait than the first read saw.
      if (!this.took(conn, first, room) && !conn.resync) return;
      conn.resync = false;
      conn.mode = 'backlog';
    }
    while (conn.state === 'ready' && conn.mode === 'backlog' && !conn.reading) {
      const room = this.readable(conn);
      if (room <= 0) return;
      conn.reading = true;
      let read: ReadResult;
      try {
        read = await this.queue.read(conn.user!, conn.next, room);
      } catch (error) {
        // Stays in backlog mode: the next ack, notice or reconnect reads again.
        this.logger.warn(`${conn.user}: reading owed messages failed: ${(error as Error).message}`);
        return;
      } finally {
        conn.reading = false;
      }
      if (!this.took(conn, read, room)) return;
    }
  }

  /** How many messages a backlog socket may read now (0: none, or it is busy or live). */
  private readable(conn: Connection): number {
    if (conn.state !== 'ready' || conn.mode !== 'backlog' || conn.reading || conn.stalled) return 0;
    // A socket's first read is small, so that many users identifying at once all get their first messages soon.
    const chunk = conn.hasRead ? READ_CHUNK : FIRST_READ_CHUNK;
    return Math.min(this.options.maxInflight - conn.inflight.size, chunk);
  }

  /**
   * Sends what a read returned; true when the socket may read again at once. A read
   * that came back short with nothing more owed puts the socket in live mode, and
   * what was routed meanwhile is offered.
   */
  private took(conn: Connection, read: ReadResult, room: number): boolean {
    conn.hasRead = true;
    const debug = Logger.isLevelEnabled('debug');
    let sent = 0;
    for (const { position, envelope } of read.rows) {
      if (!this.send(conn, position, envelope)) break; // a slow consumer: the rest is read again once it drains
      sent++;
      // The seed's per-message purge line names the message id, never its payload.
      if (debug) this.logger.debug(`${conn.user}: Purging message ${envelopeId(envelope)}`);
    }
    this.metrics.delivered(sent);
    if (sent < read.rows.length) return false;
    conn.next = Math.max(conn.next, read.next);
    const pending = conn.pending ?? [];
    conn.pending = undefined;
    if (read.more || read.rows.length >= room) return true;
    // Everything owed up to the read is sent: newer messages can go straight out.
    conn.mode = 'live';
    for (const { position, envelope } of pending) this.offer(conn, position, envelope);
    return false;
  }

  /** Hands out newly owed messages of a user (from position on) to its sockets here. */
  deliver(user: string, position: number, envelopes: string[]): void {
    const conns = this.byUser.get(user);
    if (!conns) return;
    for (const conn of conns) envelopes.forEach((envelope, i) => this.offer(conn, position + i, envelope));
  }

  /** The user's messages wait in Redis past what its sockets have read: they read again. */
  sync(user: string): void {
    for (const conn of this.byUser.get(user) ?? []) {
      if (conn.state === 'identifying') conn.resync = true;
      conn.mode = 'backlog';
      this.wake(conn);
    }
  }

  /** Parses (protocol/notices.ts) and applies the notices of one PUBLISH on this instance's channel. */
  private notice(text: string): void {
    for (const notice of parseNotices(text)) {
      const conns = this.byUser.get(notice.user);
      if (!conns) continue;
      switch (notice.kind) {
        case 'message':
          this.deliver(notice.user, notice.position, [notice.envelope]);
          break;
        case 'acked':
          for (const conn of conns) {
            for (const id of notice.ids) conn.unmarkSent(id);
            this.wake(conn);
          }
          break;
        case 'replaced':
          // Past MAX_SOCKETS_PER_USER: the attach script already unregistered this one.
          for (const conn of conns) {
            if (conn.id === notice.conn) conn.refuse(new FrameError(ErrorCode.Replaced, 'Replaced by a newer socket of the same id', CloseCode.Replaced));
          }
          break;
        case 'sync':
          this.sync(notice.user);
          break;
        case 'retracted':
          for (const conn of conns) {
            conn.retract(notice.id, notice.every);
            this.wake(conn); // room freed
          }
          break;
      }
    }
  }

  /** One newly owed message for a socket: sent now if it is next and there is room, else read later from Redis. */
  private offer(conn: Connection, position: number, envelope: string): void {
    if (conn.state === 'closed' || conn.state === 'new' || position < conn.next) return;
    // Identifying: routed after its attach script read, so offered after its first read.
    if (conn.reading || conn.state === 'identifying') {
      (conn.pending ??= []).push({ position, envelope });
    } else if (conn.mode === 'live' && position === conn.next && conn.inflight.size < this.options.maxInflight && this.send(conn, position, envelope)) {
      this.metrics.delivered(1);
    } else {
      // No room, or a gap before it: it waits in Redis and is read in order.
      conn.mode = 'backlog';
      this.wake(conn);
    }
  }

  /** Reads for a backlog socket at the end of this tick: many notices or acks, one read. */
  private wake(conn: Connection): void {
    if (conn.wakeScheduled || conn.state !== 'ready') return;
    conn.wakeScheduled = true;
    setImmediate(() => {
      conn.wakeScheduled = false;
      void this.pump(conn);
    });
  }

  /** Sends one owed message; false (and nothing sent) while the socket has too much unsent. */
  private send(conn: Connection, position: number, envelope: string): boolean {
    if (position < conn.next || !conn.open) return true;
    if (conn.stalled) {
      conn.mode = 'backlog';
      return false;
    }
    conn.next = position + 1;
    const id = envelopeId(envelope);
    if (id !== undefined && conn.retracted?.has(id)) return true; // read before the retract: never sent
    const held = id === undefined ? undefined : conn.inflight.get(id);
    if (held) {
      held.position = position; // read again after a rewind: the socket has it already, unacked
      return true;
    }
    if (id !== undefined) conn.markSent(id, { position, ts: envelopeTs(envelope) });
    cork(conn);
    conn.write(messageFrame(envelope));
    if (id !== undefined) this.events.delivered(conn.user!, id, envelope);
    return true;
  }

  /** After Redis came back: register every socket again (Redis may have restarted empty), then resend from the start. */
  private async reattachAll(): Promise<void> {
    for (const [user, conns] of this.byUser) {
      for (const conn of conns) {
        if (conn.state !== 'ready') continue;
        try {
          await this.queue.registerUser(this.presence.instanceId, user, true);
          const { position, retracted, lookingChanged } = await this.queue.attach(user, conn.id, this.presence.instanceId, { visible: conn.visible });
          if (lookingChanged) this.events.lookingChanged(user);
          for (const id of retracted) conn.retract(id, true);
          conn.rewind(position);
        } catch (error) {
          this.logger.warn(`${user}: registering again after a Redis reconnect failed: ${(error as Error).message}`);
          conn.rewind(conn.next);
        }
        this.wake(conn);
      }
    }
  }

  private onReconnect(redis: RedisClient, then: () => void): void {
    let lost = false;
    redis.on('close', () => (lost = true));
    redis.on('ready', () => {
      if (lost) then();
      lost = false;
    });
  }
}
