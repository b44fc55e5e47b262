import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import { Cluster, ReplyError } from 'ioredis';
import calculateSlot from 'cluster-key-slot';
import { InjectMessengerOptions, type MessengerOptions } from '../config/messenger-options';
import { MetricsService } from '../metrics/metrics.service';
import type { RedisCommand } from '../metrics/metrics.constants';
import { InjectRedis } from '../redis/redis.constants';
import { defineScripts, ROUTE_DIRECT, type RedisClient } from '../redis/lua-scripts';
import { duplicateWithMoreTime } from '../redis/redis.module';
import { QueueKeys } from '../redis/keys';
import { MessageIds } from './message-ids';

type Args = (string | number)[];

/** One message to store for one user, as route.lua takes it. */
export interface StoredMessage {
  envelope: string;
  /** JSON of the collapse key, when the message has one. */
  collapseKey?: string;
  /** When a message with a ttl expires (ms since the epoch). */
  expiresAt?: number;
}

/**
 * A user's messages of one batch, in order. `epoch` fences them with the caller's
 * shard lease (0: not fenced, for the HTTP and inbox paths); `inboxEntry` is the
 * stream entry id of an inbox message, recognised if it comes again.
 */
export interface RouteGroup {
  user: string;
  messages: StoredMessage[];
  epoch: number;
  inboxEntry?: string;
  /** An HTTP request's idempotency record, kept with the user's keys: a repeat stores nothing (Repeated, Conflict). */
  idempotency?: Idempotency;
}

export interface Idempotency {
  /** Names the record (a digest of the API key and the Idempotency-Key): one of the user's keys. */
  scope: string;
  /** Digest of the request body (hex). */
  hash: string;
  /** What a repeat answers (the message id). */
  answer: string;
}

/** What route.lua did with a group (see its header). */
export enum RouteOutcome {
  Owed = 'o',
  Queued = 'q',
  QueuedNew = 'n',
  QueuedBehind = 'w',
  Fenced = 'f',
  Duplicate = 'd',
  /** The group's idempotency record says this request was stored before: nothing stored, `answer` is the first answer. */
  Repeated = 'r',
  /** The group's idempotency record holds another body: nothing stored. */
  Conflict = 'c',
  /** A key of the user is unusable (another type under our name): nothing stored; the result is an UnusableKeys error. */
  Unusable = 'x',
}

/** A user's keys cannot hold messages (a key of another type under our names): the same answer every time, until someone fixes them. */
export class UnusableKeys extends Error {
  constructor(
    readonly user: string,
    reason: string,
  ) {
    super(`the keys of ${user} are unusable: ${reason}`);
  }
}

export interface RouteResult {
  outcome: RouteOutcome;
  /** Owed position of the group's first message (Owed only). */
  position: number;
  dropped: number;
  refused: number;
  replaced: number;
  /** The calling instance holds a socket of the user: it hands the messages out itself. */
  mine: boolean;
  /** Repeated: the recorded answer. */
  answer?: string;
  /** Stored (what it asks of this instance still holds), but not on PUBLISH_WAIT_REPLICAS replicas in time. */
  unreplicated?: ReplicasBehind;
}

/** Owed messages as read back, with where to read next. */
export interface ReadResult {
  rows: Array<{ position: number; envelope: string }>;
  next: number;
  /** More may be owed than was read: read again. */
  more: boolean;
}

/** What an ack call took: how many were acked, which (with details: events on), and whether the user's absence had a notify. */
export interface AckResult {
  acked: number;
  details?: MessageFact[];
  notified: boolean;
}

/** A message as an ack or unread check found it (for events): its id, when it was stored (ms), its channel. */
export interface MessageFact {
  id: string;
  ts: number;
  channel: string;
}

/** What notify-5.lua decided for a user's absence. */
export interface AbsenceCheck {
  action?: 'notify' | 'resolved';
  /** When to check again (ms, Redis's clock), 0 for not until something changes. */
  next: number;
  count: number;
  firstId: string;
  lastId: string;
  /** A JSON array of the distinct collapse keys among the waiting messages (at most 10). */
  collapseKeys: string;
  ageSeconds: number;
}

/** The most messages, and bytes, of one route script call: keeps each call short for Redis. */
const CALL_MESSAGES = 1000;
const CALL_BYTES = 4 * 1024 * 1024;
/**
 * Items of one route waiting for Redis at once: enough to keep Redis busy while the next
 * call is built, few enough that what waits (a call's arguments, its written bytes) dies young in
 * the server's heap. A group message to 100,000 members: 4 calls of 1,000 out of 100, not all 100.
 */
const IN_FLIGHT_ITEMS = 4 * CALL_MESSAGES;
/** Queues filed in the index per ZADD: a short command for Redis, few for the server. */
const INDEX_CHUNK = 1000;
/** The most owed messages one detach call puts back in the queue (detach-5.lua pages). */
export const REQUEUE_PAGE = 1000;
/** Queued entries one call of an identify's ttl sweep reads (attach-5.lua, sweep-5.lua). */
export const SWEEP_PAGE = 1000;
/** Ids retracted after they were sent, kept for a user's next socket while it has none (retract-5.lua): the newest. */
export const RETRACTS_KEPT = 100;
/** A read's byte budget when SLOW_CONSUMER_BYTES is 0 (no slow-consumer limit). */
const DEFAULT_READ_BYTES = 8 * 1024 * 1024;

/** Fewer replicas than PUBLISH_WAIT_REPLICAS acknowledged a write in time: it is on the master, maybe not after a failover. */
export class ReplicasBehind extends Error {
  constructor(acked: number, wanted: number, timeoutMs: number) {
    super(`stored, but ${acked} of ${wanted} replicas acknowledged it within ${timeoutMs} ms (PUBLISH_WAIT_REPLICAS)`);
    this.name = 'ReplicasBehind';
  }
}

/**
 * The repository of a user's Redis keys. Each method is one atomic Lua script
 * (see `lua/`) touching one user's keys (route: the users of one slot), so no step
 * of delivery can be seen half done and every script runs on a Redis Cluster.
 * Every script call is timed here, in the one place that runs them.
 */
@Injectable()
export class QueueService implements OnApplicationShutdown {
  private readonly ttlMs: number;
  /** The most bytes of messages one read takes from Redis for a socket. */
  private readonly readBytes: number;
  readonly ids = new MessageIds();
  /**
   * With PUBLISH_WAIT_REPLICAS: the connection durable stores are written and WAITed on. WAIT
   * counts the writes of its own connection, and blocks it up to PUBLISH_WAIT_TIMEOUT_MS: on the
   * command connection it would hold every identify and ack behind it while a replica is away.
   */
  private readonly durable?: RedisClient;

  constructor(
    @InjectRedis() private readonly redis: RedisClient,
    @InjectMessengerOptions() private readonly options: MessengerOptions,
    readonly keys: QueueKeys,
    private readonly metrics: MetricsService,
  ) {
    defineScripts(redis);
    this.ttlMs = options.queueTtlSeconds * 1000;
    this.readBytes = options.slowConsumerBytes || DEFAULT_READ_BYTES;
    if (options.publishWaitReplicas > 0) {
      this.durable = duplicateWithMoreTime(redis, options.publishWaitTimeoutMs, 'durable');
      defineScripts(this.durable);
    }
  }

  onApplicationShutdown(): void {
    this.durable?.disconnect();
  }

  /**
   * Stores groups of messages (each group one user's, in order), in as few script
   * calls as the deployment allows: all users together on one Redis (split only to
   * keep calls short), one call per slot on a Cluster. The calls are pipelined;
   * each group's result is its own, so a caller retries only what failed (a Cluster
   * reshard, say), and a user's messages of one batch are always in one call. A user
   * whose keys are unusable gets an UnusableKeys error and costs the others nothing; a
   * call that Redis refused (a script error, which writes nothing: see route.lua) is
   * tried again one user at a time, so that error too is only its users'. `settled` is
   * told each group's result as its call is answered (a large batch is acted on while
   * Redis stores the rest).
   */
  async route(groups: RouteGroup[], instance: string, durable = false, settled?: (group: number, result: RouteResult | Error) => void): Promise<Array<RouteResult | Error>> {
    const results: Array<RouteResult | Error> = new Array(groups.length);
    const client = durable ? (this.durable ?? this.redis) : this.redis;
    const settle = (groupIndex: number, result: RouteResult | Error): void => {
      results[groupIndex] = result;
      settled?.(groupIndex, result);
    };
    // One call leaves with the other commands of its tick; several leave one by one, as they are made (ROUTE_DIRECT).
    const call = async (indexes: number[], several: boolean): Promise<void> => {
      let answer: Array<RouteResult | UnusableKeys>;
      let unreplicated: ReplicasBehind | undefined;
      try {
        answer = await this.time(
          'route',
          this.routeCall(
            indexes.map((i) => groups[i]),
            instance,
            several ? client.rmRouteDirect : client.rmRoute,
            client,
          ),
        );
        // A repeat wrote nothing, yet it waits too: the first try may have failed on this wait.
        unreplicated = client === this.durable ? await this.waitReplicas(this.keys.queue(groups[indexes[0]].user)) : undefined;
      } catch (error) {
        if (indexes.length > 1 && error instanceof ReplyError) await Promise.all(indexes.map((i) => call([i], several)));
        else for (const groupIndex of indexes) settle(groupIndex, error as Error);
        return;
      }
      indexes.forEach((groupIndex, j) => {
        const answered = answer[j];
        settle(groupIndex, unreplicated && !(answered instanceof Error) ? { ...answered, unreplicated } : answered);
      });
    };
    // A message goes once per call: a group's bytes are those of its messages the group before it in the call did not take.
    const size = (g: RouteGroup, before?: RouteGroup): [number, number] => [g.messages.length, g.messages.reduce((sum, m, i) => (before?.messages[i] === m ? sum : sum + m.envelope.length), 0)];
    await this.inCalls(groups, size, call, { items: IN_FLIGHT_ITEMS, pipelined: autoPipelined(client, ROUTE_DIRECT) });
    return results;
  }

  /**
   * Runs `call` for the groups of users' work in as few calls as the deployment allows,
   * pipelined: one per slot on a Cluster; on one Redis as few as keep each call under
   * CALL_MESSAGES items and CALL_BYTES (`size` of a group: its items, its bytes, after the group
   * before it in the same call, if any). With `inFlight`, calls start in order while fewer than
   * its items wait for Redis (one call at least); `several`: there is more than one call.
   */
  private async inCalls<G extends { user: string }>(
    groups: G[],
    size: (group: G, before?: G) => [number, number],
    call: (indexes: number[], several: boolean) => Promise<void>,
    inFlight?: { items: number; pipelined: boolean },
  ): Promise<void> {
    const calls: Array<{ indexes: number[]; items: number }> = [];
    if (this.keys.tagged) {
      const bySlot = new Map<number, { indexes: number[]; items: number }>();
      groups.forEach((group, i) => {
        const slot = calculateSlot(this.keys.queue(group.user));
        let slotCall = bySlot.get(slot);
        if (!slotCall) bySlot.set(slot, (slotCall = { indexes: [], items: 0 }));
        slotCall.indexes.push(i);
        slotCall.items += size(group)[0];
      });
      calls.push(...bySlot.values());
    } else {
      let indexes: number[] = [];
      let items = 0;
      let bytes = 0;
      groups.forEach((group, i) => {
        let [n, b] = size(group, indexes.length > 0 ? groups[i - 1] : undefined);
        if (indexes.length > 0 && (items + n > CALL_MESSAGES || bytes + b > CALL_BYTES)) {
          calls.push({ indexes, items });
          indexes = [];
          items = bytes = 0;
          [n, b] = size(group);
        }
        indexes.push(i);
        items += n;
        bytes += b;
      });
      if (indexes.length > 0) calls.push({ indexes, items });
    }
    const several = calls.length > 1;
    if (!inFlight || !several) return void (await Promise.all(calls.map(({ indexes }) => call(indexes, several))));
    const running = new Set<Promise<void>>();
    let waiting = 0;
    let failed: { error: unknown } | undefined;
    for (const { indexes, items } of calls) {
      // Calls auto-pipelined in one tick would leave and be answered together (a host application's client
      // may pipeline ROUTE_DIRECT): one tick each, so that every answer starts a call while Redis works on the others.
      if (running.size > 0 && inFlight.pipelined) await new Promise((resolve) => setImmediate(resolve));
      while (running.size > 0 && waiting + items > inFlight.items) await Promise.race(running);
      waiting += items;
      const started: Promise<void> = call(indexes, several)
        .catch((error: unknown) => void (failed ??= { error }))
        .finally(() => {
          waiting -= items;
          running.delete(started);
        });
      running.add(started);
    }
    await Promise.all(running);
    if (failed) throw failed.error;
  }

  /** WAIT on the connection that wrote key's slot (a Cluster: that key's master), for PUBLISH_WAIT_REPLICAS. */
  private async waitReplicas(key: string): Promise<ReplicasBehind | undefined> {
    const { publishWaitReplicas: wanted, publishWaitTimeoutMs: timeoutMs } = this.options;
    let node = this.durable!;
    if (node instanceof Cluster) {
      const address = node.slots[calculateSlot(key)]?.[0];
      const master = node.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === address);
      if (!master) throw new Error(`no connection to the master of ${key}'s slot to WAIT on`);
      node = master;
    }
    const acked = await node.wait(wanted, timeoutMs);
    return acked < wanted ? new ReplicasBehind(acked, wanted, timeoutMs) : undefined;
  }

  private async routeCall(groups: RouteGroup[], instance: string, script: RedisClient['rmRoute'], client: RedisClient): Promise<Array<RouteResult | UnusableKeys>> {
    const keys: string[] = [];
    const head: Args = [this.keys.instanceChannelPrefix, instance, this.options.maxQueueLength, this.options.queueOverflow === 'reject' ? '1' : '0', this.ttlMs, 0];
    // Each message once (members of a group message share its StoredMessage), numbered from 1.
    const numbers = new Map<StoredMessage, number>();
    const table: Args = [];
    // Runs of consecutive groups that take the same messages, epoch, inbox entry and idempotency value (see route.lua).
    const runs: Args = [];
    let run: RouteGroup | undefined;
    let runCount = 0;
    let runAt = 0;
    // Idempotency records go after every group's six keys; a run names its first group's.
    const recordKeys: string[] = [];
    for (const group of groups) {
      const { user, messages, idempotency: idem } = group;
      keys.push(...this.keys.userKeys(user), this.keys.collapseIndex(user));
      if (idem) recordKeys.push(this.keys.idempotency(user, idem.scope));
      if (run && sameRun(run, group)) {
        runs.push(user);
        runs[runAt] = ++runCount;
        continue;
      }
      run = group;
      runCount = 1;
      runAt = runs.length;
      runs.push(1, group.epoch, group.inboxEntry ?? '', idem ? 6 * groups.length + recordKeys.length : 0, idem ? `${idem.hash}|${idem.answer}` : '', messages.length);
      for (const m of messages) {
        let number = numbers.get(m);
        if (number === undefined) {
          numbers.set(m, (number = numbers.size + 1));
          table.push(m.collapseKey ?? '', m.expiresAt ?? '', m.envelope);
        }
        runs.push(number);
      }
      runs.push(user);
    }
    if (recordKeys.length > 0) keys.push(...recordKeys);
    head[5] = numbers.size;
    // ioredis flattens array arguments: no copy of a call's thousands of arguments here.
    const answer = await script.call(client, keys.length, keys as never, head as never, table as never, runs as never);
    const outcomes = answer[0];
    const results: Array<RouteResult | UnusableKeys> = new Array(groups.length);
    // Groups with something to say come with their figures; the others answer all 0 (route.lua).
    for (let i = 1; i < answer.length; i += 7) {
      const g = Number(answer[i]) - 1;
      const outcome = outcomes[g] as RouteOutcome;
      const said = String(answer[i + 6]);
      results[g] =
        outcome === RouteOutcome.Unusable
          ? new UnusableKeys(groups[g].user, said)
          : {
              outcome,
              position: Number(answer[i + 1]),
              dropped: Number(answer[i + 2]),
              refused: Number(answer[i + 3]),
              replaced: Number(answer[i + 4]),
              mine: answer[i + 5] === 1,
              answer: outcome === RouteOutcome.Repeated ? said : undefined,
            };
    }
    for (let g = 0; g < groups.length; g++) {
      if (results[g] !== undefined) continue;
      const outcome = outcomes[g] as RouteOutcome;
      results[g] = outcome === RouteOutcome.Unusable ? new UnusableKeys(groups[g].user, '') : plainResult(outcome);
    }
    return results;
  }

  /**
   * Registers a connection. Returns how many messages the user is owed (owed and
   * still queued: sockets take the queue over as they read), how many were
   * dropped or expired since the last identify, the position from which this
   * socket reads, the connections this one replaced past MAX_SOCKETS_PER_USER,
   * whether it is the user's first connection (on any instance), and how many
   * queued messages expired in this call. A ttl sweep the script began goes on
   * here, `page` entries per call, before the answer (its expired ones are this
   * `ready`'s: counted in dropped, not in owed). `retracted`: ids retracted after they were
   * sent while the user had no socket, for this one to be told (once). `visible`: what the
   * socket said (a new one is visible); `lookingChanged`: the user started or stopped looking.
   */
  async attach(
    user: string,
    conn: string,
    instance: string,
    { now = Date.now(), page = SWEEP_PAGE, visible = true, read = 0 }: { now?: number; page?: number; visible?: boolean; read?: number } = {},
  ): Promise<{
    owed: number;
    dropped: number;
    position: number;
    replaced: Array<{ conn: string; instance: string }>;
    first: boolean;
    expired: number;
    retracted: string[];
    lookingChanged: boolean;
    read?: ReadResult;
  }> {
    const cutoff = this.cutoff(now);
    const keys = this.keys.userKeys(user);
    const reading = read > 0 ? [read, JSON.stringify(this.keys.userChannel(user)), this.ids.rawPrefix(), this.readBytes] : [];
    const [owed, dropped, position, flat, before, expired, sweepFrom, earliest, retracted, lookingChanged, rows] = await this.time(
      'attach',
      this.redis.rmAttach(...keys, conn, instance, user, this.keys.instanceChannelPrefix, cutoff, this.options.maxSocketsPerUser, now, page, visible ? '1' : '0', ...reading),
    );
    let swept = 0;
    for (let from = sweepFrom, kept = earliest; from >= 0;) {
      const [n, next, soFar] = await this.time('attach', this.redis.rmSweep(...keys, from, page, cutoff, now, kept));
      swept += n;
      [from, kept] = [next, soFar];
    }
    const replaced = [];
    for (let i = 0; i < flat.length; i += 2) replaced.push({ conn: flat[i], instance: flat[i + 1] });
    return {
      owed: Math.max(0, owed - swept),
      dropped: dropped + swept,
      position,
      replaced,
      first: before === 0,
      expired: expired + swept,
      retracted: retracted ? retracted.split(',') : [],
      lookingChanged: lookingChanged === 1,
      // None while a sweep went on (the socket reads once it is done).
      read: rows.length > 0 ? readResult(rows) : undefined,
    };
  }

  /**
   * Unregisters one connection (or, with conn '*', every connection of an instance);
   * when none is left, what is owed goes back to the head of the queue, `page` per
   * script call (each call short for Redis; order holds between them, see detach-5.lua).
   * `removed` counts the connections unregistered (with none left: the user went offline).
   */
  async detach(user: string, conn: string, instance: string, page = REQUEUE_PAGE): Promise<{ requeued: number; left: number; removed: number; lookingChanged: boolean }> {
    let requeued = 0;
    let first: { left: number; removed: number; lookingChanged: boolean } | undefined;
    for (;;) {
      const [moved, left, headTs, removed, more, changed] = await this.time('detach', this.redis.rmDetach(...this.keys.userKeys(user), conn, instance, page));
      first ??= { left, removed, lookingChanged: changed === 1 };
      requeued += moved;
      // Each page goes in front of the one before: its head is older, so the index takes the lower score.
      if (moved > 0) await this.index(user, headTs, 'older');
      if (more === 0) return { requeued, ...first };
    }
  }

  /**
   * Acks ids (each with its owed position as this instance knows it, -1 if not) and,
   * when `read` is given, reads the next owed messages for that socket in the same call.
   * With `details` (events on), also answers which messages this call acked.
   */
  async ack(user: string, acks: Array<[string, number]>, instance: string, read?: { position: number; limit: number }, now = Date.now(), details = false): Promise<AckResult & { read?: ReadResult }> {
    const args: Args = [
      this.keys.instanceChannelPrefix,
      instance,
      user,
      read ? read.position : -1,
      read ? read.limit : 0,
      JSON.stringify(this.keys.userChannel(user)),
      now,
      this.cutoff(now),
      this.ttlMs,
      this.ids.rawPrefix(),
      details ? '1' : '0',
      this.readBytes,
    ];
    for (const [id, position] of acks) args.push(id, position);
    const [acked, notified, ...rest] = await this.time('ack', this.redis.rmAck(...this.keys.userKeys(user), ...args));
    const facts = details ? messageFacts(rest.pop() as unknown as Array<number | string>) : undefined;
    return { acked: Number(acked), read: read ? readResult(rest) : undefined, details: facts, notified: notified === 1 };
  }

  /**
   * Acks the ids of many users, none with a read (acks.lua): one call per slot on a Cluster, on
   * one Redis calls of up to CALL_MESSAGES ids. Each user's answer is its own: an UnusableKeys
   * error for a user whose keys are of another type (the others' acks are taken), the call's
   * error for each user of a call that failed (it wrote nothing).
   */
  async ackMany(groups: Array<{ user: string; acks: Array<[string, number]> }>, instance: string, details = false): Promise<Array<AckResult | Error>> {
    const results: Array<AckResult | Error> = new Array(groups.length);
    const call = async (indexes: number[]): Promise<void> => {
      const keys: string[] = [];
      const args: Args = [this.keys.instanceChannelPrefix, instance, details ? '1' : '0'];
      for (const i of indexes) {
        const { user, acks } = groups[i];
        keys.push(this.keys.owed(user), this.keys.state(user));
        args.push(user, acks.length);
        for (const [id, position] of acks) args.push(id, position);
      }
      try {
        const flat = await this.time('ack', this.redis.rmAcks(keys.length, keys as never, args as never));
        indexes.forEach((i, j) => {
          const [acked, notified, facts] = [Number(flat[3 * j]), flat[3 * j + 1], flat[3 * j + 2]];
          results[i] = acked < 0 ? new UnusableKeys(groups[i].user, String(facts)) : { acked, notified: notified === 1, details: details ? messageFacts(facts as Array<number | string>) : undefined };
        });
      } catch (error) {
        for (const i of indexes) results[i] = error as Error;
      }
    };
    await this.inCalls(groups, (g) => [g.acks.length, 0], call);
    return results;
  }

  /**
   * Reads up to `limit` owed messages from `position` on, oldest first; past the
   * end of what is owed, the next queued entries become owed and come too. At most about
   * SLOW_CONSUMER_BYTES of them at once (one at least): no more than a socket may hold unsent.
   */
  async read(user: string, position: number, limit: number, now = Date.now()): Promise<ReadResult> {
    const flat = await this.time(
      'read',
      this.redis.rmRead(...this.keys.userKeys(user), position, limit, JSON.stringify(this.keys.userChannel(user)), now, this.cutoff(now), this.ttlMs, this.ids.rawPrefix(), this.readBytes),
    );
    return readResult(flat);
  }

  /**
   * Retracts a message of a user (retract-5.lua): 'queued' (removed, never sent), 'sent' (no
   * longer owed; the sockets that were sent it are told), or undefined when the user has no
   * such message waiting (acked, retracted already, or never stored for the user).
   */
  async retract(user: string, id: string): Promise<'queued' | 'sent' | undefined> {
    const outcome = await this.time('retract', this.redis.rmRetract(...this.keys.userKeys(user), this.keys.instanceChannelPrefix, user, id, RETRACTS_KEPT));
    return outcome === 'q' ? 'queued' : outcome === 's' ? 'sent' : undefined;
  }

  /** Drops the expired head of a user's queue (QUEUE_TTL_SECONDS); returns how many went and how many are left. */
  /** A socket said whether the app is in front of the user (visibility-5.lua). */
  async visibility(user: string, conn: string, visible: boolean): Promise<{ registered: boolean; lookingChanged: boolean }> {
    const [registered, changed] = await this.time('visibility', this.redis.rmVisibility(...this.keys.userKeys(user), conn, visible ? '1' : '0'));
    return { registered: registered === 1, lookingChanged: changed === 1 };
  }

  /** Decides the user's absence now (notify-5.lua): a notify or resolved to write, and when to look again (Redis's clock, 0: on the next change). */
  async absence(user: string, afterMs: number, repeatMs: number, scan: number): Promise<AbsenceCheck> {
    const [action, next, count, firstId, lastId, collapseKeys, ageSeconds] = await this.time('notify', this.redis.rmNotify(...this.keys.userKeys(user), afterMs, repeatMs, scan));
    return { action: action === 'notify' || action === 'resolved' ? action : undefined, next: Number(next), count: Number(count), firstId, lastId, collapseKeys, ageSeconds: Number(ageSeconds) };
  }

  async expire(user: string, now = Date.now()): Promise<{ expired: number; left: number }> {
    const [expired, left, headTs] = await this.time('expire', this.redis.rmExpire(...this.keys.userKeys(user), this.cutoff(now), now, this.ttlMs));
    if (left === 0) await this.redis.zrem(this.keys.queueIndex, user);
    else await this.index(user, headTs || now, 'any');
    return { expired, left };
  }

  /**
   * Files a queue in the index of non-empty queues under the time of its oldest
   * entry. The index is global (one key), so it is written beside the user's
   * scripts, not in them: it is a hint for the expiry sweep and the metrics, never
   * what decides delivery. `how`: a new one or a lower score ('older': a requeue put
   * older entries at the head), or always ('any'); new queues: indexNew.
   */
  async index(user: string, oldestTs: number, how: 'older' | 'any'): Promise<void> {
    const score = oldestTs || Date.now();
    if (how === 'older') await this.redis.zadd(this.keys.queueIndex, 'LT', score, user);
    else await this.redis.zadd(this.keys.queueIndex, score, user);
  }

  /** Files new queues (not filed yet) under `ts`: one ZADD for many, as a group message to thousands of offline members makes them. */
  async indexNew(users: string[], ts = Date.now()): Promise<void> {
    for (let i = 0; i < users.length; i += INDEX_CHUNK) {
      const members = users.slice(i, i + INDEX_CHUNK).flatMap((user) => [ts, user]);
      await this.redis.zadd(this.keys.queueIndex, 'NX', ...members);
    }
  }

  /** Users whose oldest queued message is older than `before` (ms), oldest first, past the first `skip`. */
  queuedBefore(before: number, limit: number, skip = 0): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.queueIndex, '-inf', `(${before}`, 'LIMIT', skip, limit);
  }

  /** The users with the oldest queued messages: depth and age of the oldest, for metrics. */
  async oldestQueues(limit: number, now = Date.now()): Promise<Array<{ user: string; depth: number; oldestAgeSeconds: number }>> {
    const flat = await this.redis.zrange(this.keys.queueIndex, 0, limit - 1, 'WITHSCORES');
    const depths = await Promise.all(flat.filter((_, i) => i % 2 === 0).map((user) => this.redis.llen(this.keys.queue(user))));
    const out = [];
    for (let i = 0; i < flat.length; i += 2) {
      if (depths[i / 2] === 0) continue; // an index entry the sweep has not removed yet
      out.push({ user: flat[i], depth: depths[i / 2], oldestAgeSeconds: Math.max(0, (now - Number(flat[i + 1])) / 1000) });
    }
    return out;
  }

  /**
   * Which of `ids` the user still has unacked (owed, or queued), with their ts and
   * channel, looking at most `scan` entries deep into owed and into the queue.
   */
  async unacked(user: string, ids: string[], scan: number): Promise<MessageFact[]> {
    return messageFacts(await this.time('unread', this.redis.rmUnread(...this.keys.userKeys(user), scan, ...ids)));
  }

  /** Users with a connection registered by an instance (to reclaim after it died). */
  usersOf(instance: string): Promise<string[]> {
    return this.redis.smembers(this.keys.instanceUsers(instance));
  }

  /** Notes that `instance` holds (or no longer holds) sockets of `user`, for the reclaim after a crash. */
  async registerUser(instance: string, user: string, present: boolean): Promise<void> {
    if (present) await this.redis.sadd(this.keys.instanceUsers(instance), user);
    else await this.redis.srem(this.keys.instanceUsers(instance), user);
  }

  /** The members of groups, one SMEMBERS each (pipelined; on a Cluster each set lives in its own slot). */
  members(cids: string[]): Promise<string[][]> {
    return Promise.all(cids.map((cid) => this.redis.smembers(this.keys.members(cid))));
  }

  /** A Redis configuration value ([name, value]), for start-up advice; rejects where CONFIG is refused. */
  async config(name: string): Promise<string[] | undefined> {
    const client = this.redis instanceof Cluster ? this.redis.nodes('master')[0] : this.redis;
    return client ? ((await client.config('GET', name)) as string[]) : undefined;
  }

  /** Queued messages received before this time have expired (0: no expiry). */
  private cutoff(now: number): number {
    return this.ttlMs > 0 ? now - this.ttlMs : 0;
  }

  private time<T>(command: RedisCommand, call: Promise<T>): Promise<T> {
    return this.metrics.timeRedis(command, call);
  }
}

/** Whether the client auto-pipelines a command: calls of one tick then leave, and are answered, together. */
const autoPipelined = (client: RedisClient, command: string): boolean => Boolean(client.options.enableAutoPipelining) && !client.options.autoPipeliningIgnoredCommands?.includes(command);

/** Two groups route alike (one run of route.lua): the same messages (the same objects), epoch, inbox entry and idempotency value. */
function sameRun(a: RouteGroup, b: RouteGroup): boolean {
  if (a.epoch !== b.epoch || a.inboxEntry !== b.inboxEntry || a.messages.length !== b.messages.length) return false;
  const [x, y] = [a.idempotency, b.idempotency];
  if (x !== y && (!x || !y || x.hash !== y.hash || x.answer !== y.answer)) return false;
  for (let i = 0; i < a.messages.length; i++) if (a.messages[i] !== b.messages[i]) return false;
  return true;
}

/** The answer of a group with every figure 0 (most of a fan-out's): one shared, frozen object per outcome. */
const plainResults = new Map<RouteOutcome, RouteResult>();
function plainResult(outcome: RouteOutcome): RouteResult {
  let result = plainResults.get(outcome);
  if (!result) plainResults.set(outcome, (result = Object.freeze({ outcome, position: 0, dropped: 0, refused: 0, replaced: 0, mine: false, answer: undefined })));
  return result;
}

function readResult(flat: Array<number | string>): ReadResult {
  const rows = [];
  for (let i = 2; i < flat.length; i += 2) rows.push({ position: Number(flat[i]), envelope: String(flat[i + 1]) });
  return { more: Number(flat[0]) === 1, next: Number(flat[1]), rows };
}

function messageFacts(flat: Array<number | string>): MessageFact[] {
  const facts = [];
  for (let i = 0; i + 2 < flat.length; i += 3) facts.push({ id: String(flat[i]), ts: Number(flat[i + 1]), channel: String(flat[i + 2]) });
  return facts;
}
