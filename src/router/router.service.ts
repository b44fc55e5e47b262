import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { InjectMessengerOptions, type MessengerOptions } from '../config/messenger-options';
import { RateLimitedLog } from '../logging/rate-limited-log';
import { MetricsService } from '../metrics/metrics.service';
import { buildEnvelope } from '../protocol/envelope';
import { GROUP_CHANNEL_PREFIX, USER_CHANNEL_PREFIX, isValidId } from '../protocol/ids';
import { QueueService, UnusableKeys, type RouteGroup, type StoredMessage } from '../queue/queue.service';
import { QueueKeys } from '../redis/keys';
import type { RedisClient } from '../redis/lua-scripts';
import { InjectRedisSubscriber } from '../redis/redis.constants';
import { StoreService } from '../store/store.service';
import { SHARD_COUNT, shardOf } from './shards';
import { ShardsService, NOT_MINE, isLapsed } from './shards.service';

/** A message as heard, with the epoch of the shard lease it was heard under (user messages). */
interface Heard {
  channel: string;
  payload: string;
  receivedAt: number;
  /** What it holds in the heap, as ROUTE_BUFFER_BYTES counts it (heldBytes). */
  bytes: number;
  /** User messages: the recipient's shard epoch (PENDING while a hand-over to this instance completes, `lapsed(epoch)` while the lease had lapsed). */
  epoch?: number;
  /** Group messages: which shards were this instance's when it was heard (members are known only later). */
  owned?: ReadonlyMap<number, number>;
}

/** A completion marker: everything heard before a hand-over announcement of this shard has been queued before it. */
interface HandOver {
  complete: number;
}

type Item = Heard | HandOver;
const isHandOver = (item: Item): item is HandOver => (item as HandOver).complete !== undefined;

/** The most messages, and bytes, routed in one batch (one round of pipelined script calls). */
const BATCH_MESSAGES = 5000;
const BATCH_BYTES = 16 * 1024 * 1024;
/** Tries of one batch's failed groups before they are given up (the last waits 100 * 2^8 ms): about a minute in all. */
const ROUTE_ATTEMPTS = 9;
/** How long a shutting-down instance waits for Redis to take its leave, and for its shards' hand-overs to complete. */
const LEAVE_ASK_MS = 1000;
const LEAVE_WAIT_MS = 3000;

/**
 * What one heard message holds in the heap besides its two strings, measured with Node 20
 * on x64 (heap used per item, after a full GC, of 300,000 items built as receive() builds
 * them: 90 B): the item object with its five fields, 64 B; its receivedAt, a boxed double,
 * 16 B; its slot in `pending`, 8 B; rounded up to 96 for the array's growth slack. A group
 * message's ownership snapshot is shared (ownedNow), so not counted per message.
 */
const ITEM_OVERHEAD_BYTES = 96;
/** A heap string: a 16-byte header, then 1 byte a character when every one is Latin-1, else 2; in 8-byte steps. */
const TWO_BYTE = /[^\u0000-\u00ff]/;
const stringBytes = (s: string): number => (16 + s.length * (TWO_BYTE.test(s) ? 2 : 1) + 7) & ~7;
/** What ROUTE_BUFFER_BYTES counts of a heard message: what it holds in the heap. */
const heldBytes = (channel: string, payload: string): number => ITEM_OVERHEAD_BYTES + stringBytes(channel) + stringBytes(payload);

/** The pub/sub output buffer limit docs/architecture.md advises (512 MiB hard). */
const PUBSUB_LIMIT_ADVISED = 512 * 1024 * 1024;

const PATTERNS = [`${USER_CHANNEL_PREFIX}*`, `${GROUP_CHANNEL_PREFIX}*`];

/**
 * Hears every PUBLISH on `rm.users.*` and `rm.channels.*` and routes the ones of
 * this instance's route shards (ShardsService): each user's messages go to one
 * instance at a time, which decides deliver-or-queue in Redis. The subscription is
 * read as fast as it arrives: what is heard waits in memory (bounded by
 * ROUTE_BUFFER_BYTES) and is routed in arrival order, in batches that grow with the
 * load (one round of pipelined script calls each), one batch at a time, so a group
 * message is never overtaken by a later message to one of its members.
 */
@Injectable()
export class RouterService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(RouterService.name);
  /** Lines a publisher can cause per message: at most one a second per kind. */
  private readonly warnings = new RateLimitedLog(this.logger);
  private pending: Item[] = [];
  private pendingBytes = 0;
  private draining: Promise<void> | null = null;
  /** The ownership snapshot group messages are heard with (ownedNow). */
  private owned?: ReadonlyMap<number, number>;
  private stopped = false;

  constructor(
    @InjectRedisSubscriber() private readonly subscriber: RedisClient,
    private readonly queue: QueueService,
    private readonly shards: ShardsService,
    private readonly store: StoreService,
    private readonly keys: QueueKeys,
    @InjectMessengerOptions() private readonly options: MessengerOptions,
    private readonly metrics: MetricsService,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.subscriber.on('pmessage', (_pattern: string, channel: string, payload: string) => this.receive(channel, payload));
    this.subscriber.on('message', (channel: string, line: string) => {
      if (channel === this.keys.controlChannel) this.control(line);
    });
    this.watchSubscriber();
    // ioredis resubscribes by itself after a reconnect.
    const join = (): Promise<void> =>
      Promise.all([this.subscriber.psubscribe(...PATTERNS), this.subscriber.subscribe(this.keys.controlChannel)]).then(
        // Hearing both now: take part in the route shards (hand-overs to this instance are heard).
        () => this.shards.listen(),
        (error: Error) => {
          // Refused (AUTH failed, say): ioredis will not send them again; this does, once Redis takes the connection.
          this.logger.error(`Cannot subscribe to ${PATTERNS.join(', ')} yet: ${error.message}`);
          this.subscriber.once('ready', () => void join());
        },
      );
    await Promise.race([join(), new Promise((r) => setTimeout(r, 3000))]);
    void this.checkPubsubLimit();
  }

  /**
   * Redis cuts a subscriber off once its output buffer passes `client-output-buffer-limit
   * pubsub` (32 MiB by default), and it writes at most 64 KiB to one client per event-loop
   * turn: a producer pipelining large messages faster than that overflows any subscriber,
   * however fast it reads. Say so at start when the limit is the default or lower.
   */
  private async checkPubsubLimit(): Promise<void> {
    let hard: number;
    try {
      const [, value] = (await this.queue.config('client-output-buffer-limit')) ?? [];
      hard = Number(/pubsub (\d+)/.exec(value ?? '')?.[1]);
    } catch {
      return; // managed Redis often refuses CONFIG: nothing to tell
    }
    if (hard > 0 && hard <= PUBSUB_LIMIT_ADVISED / 8) {
      this.logger.log(
        `Redis's client-output-buffer-limit for pubsub is ${Math.round(hard / 1048576)} MiB: a burst of PUBLISHes larger than that, pipelined faster than Redis flushes them, disconnects the subscriber and loses them; consider "client-output-buffer-limit pubsub 512mb 128mb 60" (see docs/architecture.md, Overload)`,
      );
    }
  }

  /**
   * Stops routing: hands this instance's shards to the others (each routes from the
   * hand-over on, so nothing heard is routed twice or lost), and resolves once
   * everything heard before the hand-overs is routed.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    // Redis may not answer (paused, away): then the others take the shards once the leases lapse.
    const left = await Promise.race([this.shards.leave().then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), LEAVE_ASK_MS))]);
    const deadline = Date.now() + LEAVE_WAIT_MS;
    while (left && this.shards.handingOver && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    this.stopped = true;
    await Promise.all([this.subscriber.punsubscribe(...PATTERNS), this.subscriber.unsubscribe(this.keys.controlChannel)]).catch(() => undefined);
    await this.draining;
  }

  async onApplicationShutdown(): Promise<void> {
    await this.stop();
  }

  /** A subscriber that drops was not there to hear what was published meanwhile: say so, once per outage. */
  private watchSubscriber(): void {
    // Watched once the app is up: the connection may be ready already.
    let up = this.subscriber.status === 'ready';
    this.subscriber.on('ready', () => (up = true));
    this.subscriber.on('close', () => {
      if (!up || this.stopped) return;
      up = false;
      this.metrics.subscriberLost();
      this.logger.warn('The pub/sub connection to Redis dropped: PUBLISHes sent until it is back are not heard and may be lost (the HTTP and inbox paths lose nothing)');
    });
  }

  private receive(channel: string, payload: string): void {
    if (this.stopped) return;
    const receivedAt = Date.now();
    const user = channel.startsWith(USER_CHANNEL_PREFIX);
    const epoch = user ? this.shards.epochFor(shardOf(channel.slice(USER_CHANNEL_PREFIX.length))) : undefined;
    if (epoch === NOT_MINE) return; // another instance routes this user
    const bytes = heldBytes(channel, payload);
    if (this.pendingBytes + bytes > this.options.routeBufferBytes) return this.overload();
    const item: Heard = user ? { channel, payload, receivedAt, bytes, epoch } : { channel, payload, receivedAt, bytes, owned: this.ownedNow() };
    this.pendingBytes += bytes;
    this.pending.push(item);
    this.draining ??= this.drain();
  }

  /** Hand-over lines take effect where they fall among the heard messages. */
  private control(line: string): void {
    const complete = this.shards.control(line);
    if (complete === undefined) return;
    this.pending.push({ complete });
    this.draining ??= this.drain();
  }

  /**
   * Which shards are this instance's as a group message is heard (its members are known only
   * later). Messages heard under the same ownership share one snapshot: a map of 64 shards
   * takes about 1.6 KB, many times a small message, and ownership changes only at hand-overs.
   */
  private ownedNow(): ReadonlyMap<number, number> {
    if (this.owned && this.stillOwned(this.owned)) return this.owned;
    const owned = new Map<number, number>();
    for (let shard = 0; shard < SHARD_COUNT; shard++) {
      const epoch = this.shards.epochFor(shard);
      if (epoch !== NOT_MINE) owned.set(shard, epoch);
    }
    return (this.owned = owned);
  }

  private stillOwned(snapshot: ReadonlyMap<number, number>): boolean {
    let mine = 0;
    for (let shard = 0; shard < SHARD_COUNT; shard++) {
      const epoch = this.shards.epochFor(shard);
      if (epoch === NOT_MINE) continue;
      if (snapshot.get(shard) !== epoch) return false;
      mine++;
    }
    return mine === snapshot.size;
  }

  /** Past ROUTE_BUFFER_BYTES, new messages are dropped, counted and logged (at most one line a second). */
  private overload(): void {
    this.metrics.dropped('overload');
    this.warnings.warn('overload', `Route buffer full (ROUTE_BUFFER_BYTES=${this.options.routeBufferBytes}): dropped a published message`);
  }

  private async drain(): Promise<void> {
    // Let the messages that arrived in the same read from the socket join the batch.
    await new Promise((resolve) => setImmediate(resolve));
    while (this.pending.length > 0) {
      const first = this.pending[0];
      if (isHandOver(first)) {
        this.pending.shift();
        await this.shards.complete(first.complete);
        continue;
      }
      const batch = this.takeBatch();
      this.metrics.setRouteBuffer(this.pendingBytes);
      await this.routeBatch(batch).catch((error: Error) => this.logger.error(`Routing ${batch.length} messages failed, dropping them: ${error.message}`));
    }
    this.metrics.setRouteBuffer(0);
    this.draining = null;
  }

  /** The next messages in arrival order, up to a hand-over marker or the batch bounds. */
  private takeBatch(): Heard[] {
    let n = 0;
    let bytes = 0;
    while (n < this.pending.length && n < BATCH_MESSAGES && bytes < BATCH_BYTES) {
      const item = this.pending[n];
      if (isHandOver(item)) break;
      bytes += item.bytes;
      n++;
    }
    this.pendingBytes -= bytes;
    return this.pending.splice(0, n) as Heard[];
  }

  private async routeBatch(batch: Heard[]): Promise<void> {
    const debug = Logger.isLevelEnabled('debug');
    if (debug) for (const { channel } of batch) this.logger.debug(`New message from channel ${channel}`);
    const groups = await this.group(batch);
    let todo = groups.map((_, i) => i);
    for (let attempt = 1; todo.length > 0; attempt++) {
      const results = await this.store.store(todo.map((i) => groups[i]));
      const failed: number[] = [];
      let error: Error | undefined;
      results.forEach((result, j) => {
        // Unusable keys answer the same on every try: those messages are counted and logged by the store, not retried.
        if (result instanceof Error && !(result instanceof UnusableKeys)) {
          failed.push(todo[j]);
          error = result;
        }
      });
      todo = failed;
      if (todo.length === 0) break;
      // Redis is back for the subscriber but not yet for commands, a Cluster reshards, say: retry in order.
      if (attempt >= ROUTE_ATTEMPTS) {
        const lost = todo.reduce((sum, i) => sum + groups[i].messages.length, 0);
        this.logger.error(`Routing ${lost} messages failed ${ROUTE_ATTEMPTS} times, dropping them: ${error?.message}`);
        return;
      }
      this.logger.warn(`Routing ${todo.length} users' messages failed (attempt ${attempt}), retrying: ${error?.message}`);
      await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
    }
  }

  /** A batch as one group per recipient and epoch, in arrival order; group messages expanded to this instance's members. */
  private async group(batch: Heard[]): Promise<RouteGroup[]> {
    const cids = [...new Set(batch.filter((m) => m.owned).map((m) => m.channel))].filter((channel) => this.validTarget(channel, GROUP_CHANNEL_PREFIX));
    const members = new Map<string, string[]>();
    if (cids.length > 0) {
      const sets = await this.withRetry(() => this.queue.members(cids.map((channel) => channel.slice(GROUP_CHANNEL_PREFIX.length))));
      // In SMEMBERS order: each member is a group of its own, so their order tells nothing (a sort of 100,000 ids took 30 ms).
      cids.forEach((channel, i) =>
        members.set(
          channel,
          sets[i].filter((member) => this.validMember(channel, member)),
        ),
      );
    }
    // Heard while a hand-over to this instance was under way, or while its lease had lapsed:
    // ask once per shard (and way it was heard) which epoch routes them, if any.
    const resolved = new Map<string, number>();
    const epochOf = async (shard: number, heard: number): Promise<number> => {
      const key = `${shard}|${heard}`;
      if (!resolved.has(key)) resolved.set(key, await this.shards.whenHeld(shard, heard));
      return resolved.get(key)!;
    };
    const byUser = new Map<string, RouteGroup>();
    const add = (user: string, epoch: number, message: StoredMessage, heard: number) => {
      // Heard under a lapsed lease and the shard changed hands since: the holder in between routed it.
      if (epoch === NOT_MINE && isLapsed(heard)) return;
      if (epoch === NOT_MINE) return this.warnings.warn('hand-over', `${user}: a hand-over of its route shard did not complete; a message heard meanwhile is dropped`);
      let group = byUser.get(user);
      if (!group) byUser.set(user, (group = { user, epoch, messages: [] }));
      group.epoch = Math.max(group.epoch, epoch);
      group.messages.push(message);
    };
    for (const { channel, payload, receivedAt, epoch, owned } of batch) {
      if (!owned) {
        if (!this.validTarget(channel, USER_CHANNEL_PREFIX)) continue;
        const user = channel.slice(USER_CHANNEL_PREFIX.length);
        const heard = epoch!;
        add(user, heard > 0 ? heard : await epochOf(shardOf(user), heard), { envelope: buildEnvelope({ id: this.queue.ids.next(), channel, payload, ts: receivedAt }) }, heard);
        continue;
      }
      // This instance's members, by the epoch they were heard with (each shard has its lease's): members of one
      // epoch come one after another, so route.lua takes them as one run (QueueService.route).
      const byEpoch = new Map<number, string[]>();
      for (const user of members.get(channel) ?? []) {
        const memberEpoch = owned.get(shardOf(user));
        if (memberEpoch === undefined) continue; // another instance routes this member
        let users = byEpoch.get(memberEpoch);
        if (!users) byEpoch.set(memberEpoch, (users = []));
        users.push(user);
      }
      if (byEpoch.size === 0) continue;
      // One message for every member: the same id, the same bytes, sent to Redis once per call.
      const message: StoredMessage = { envelope: buildEnvelope({ id: this.queue.ids.next(), channel, payload, ts: receivedAt }) };
      for (const [memberEpoch, users] of byEpoch) {
        for (const user of users) add(user, memberEpoch > 0 ? memberEpoch : await epochOf(shardOf(user), memberEpoch), message, memberEpoch);
      }
    }
    return [...byUser.values()];
  }

  private async withRetry<T>(call: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await call();
      } catch (error) {
        if (attempt >= ROUTE_ATTEMPTS) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
      }
    }
  }

  private validTarget(channel: string, prefix: string): boolean {
    if (isValidId(channel.slice(prefix.length))) return true;
    this.metrics.dropped('invalid_channel');
    this.warnings.warn('invalid channel', `Dropping message on invalid channel ${JSON.stringify(channel.slice(0, 200))}`);
    return false;
  }

  private validMember(channel: string, member: string): boolean {
    if (isValidId(member)) return true;
    this.metrics.dropped('invalid_member');
    this.warnings.warn('invalid member', `Skipping invalid member id ${JSON.stringify(member.slice(0, 200))} of ${channel}`);
    return false;
  }
}
