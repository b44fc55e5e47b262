import { Injectable } from '@nestjs/common';
import type { Redis, Result } from 'ioredis';
import { join } from 'node:path';
import { defineScripts } from '../redis/lua-scripts';
import { InjectMessengerOptions, type MessengerOptions } from '../config/messenger-options';
import { InjectRedis } from '../redis/redis.constants';
import { queueKeys } from './queue-keys';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    rmRoute(numKeys: number, ...args: (string | number)[]): Result<[number, number, number, string, number], Context>;
    rmAttach(...args: (string | number)[]): Result<[number, number, string[]], Context>;
    rmDetach(...args: (string | number)[]): Result<[number, number], Context>;
    rmExpire(...args: (string | number)[]): Result<[number, number], Context>;
    rmAck(...args: string[]): Result<number, Context>;
    rmRead(...args: (string | number)[]): Result<Array<string | number>, Context>;
  }
}

/** One message for one user, as the router hands it over. */
export interface Routed {
  user: string;
  channel: string;
  payload: string;
}

/** Route outcomes (see `route`) of a message put in a queue, and of one that dropped older messages or itself. */
export const QUEUED_OUTCOMES = '0Qws';
export const DROP_OUTCOMES = 'xDdQ';

/** A routed message for a socket on the routing instance itself. */
export interface LocalDelivery {
  user: string;
  id: string;
  envelope: string;
}

/** An owed message as read back: its position in the user's owed order, its id and its envelope. */
export interface OwedMessage {
  position: number;
  id: string;
  envelope: string;
}

/** Keys per message in route.lua, and the batch bound that keeps one script call short. */
const ROUTE_KEYS_PER_MESSAGE = 5;
export const ROUTE_BATCH = 500;

/**
 * The repository of a user's Redis keys. Each method is one atomic Lua script
 * (see `lua/`), so no step of delivery can be seen half done.
 */
@Injectable()
export class QueueService {
  private readonly keys = queueKeys;

  private readonly ttlMs: number;

  constructor(
    @InjectRedis() private readonly redis: Redis,
    @InjectMessengerOptions() private readonly options: MessengerOptions,
  ) {
    defineScripts(redis, join(__dirname, 'lua'), ['route.lua', 'attach-6.lua', 'detach-6.lua', 'ack-3.lua', 'read-6.lua', 'expire-3.lua']);
    this.ttlMs = options.queueTtlSeconds * 1000;
  }

  /**
   * Routes up to ROUTE_BATCH messages in order: owed and announced if the user is
   * connected, queued if not. `outcome` has one letter per message (see route.lua):
   * '1' delivered, 'l' delivered with a socket on `instance`, '0' queued, 'D' 'd' 'Q'
   * the same after dropping older messages, 'x' refused (QUEUE_OVERFLOW=reject),
   * 'w' / 's' queued behind a queue that sockets (one of them on `instance`) still read.
   * Messages for `instance`'s own sockets are not announced: they come back in
   * `local`, with their ids and envelopes, for the caller to hand out, and `sync`
   * names the users whose sockets there must read the queue again.
   */
  async route(
    batch: Routed[],
    receivedAt: number,
    instance: string,
  ): Promise<{ delivered: number; queued: number; dropped: number; outcome: string; local: LocalDelivery[]; sync: string[] }> {
    const keys: string[] = [this.keys.counter, this.keys.queueIndex];
    const args: string[] = [
      this.keys.instanceChannelPrefix, String(receivedAt), String(this.options.maxQueueLength), this.options.queueOverflow,
      String(this.ttlMs), instance,
    ];
    const encoded: Array<[string, string]> = [];
    for (const { user, channel, payload } of batch) {
      const pair: [string, string] = [JSON.stringify(channel), JSON.stringify(payload)];
      encoded.push(pair);
      keys.push(this.keys.queue(user), this.keys.owed(user), this.keys.owedData(user), this.keys.conns(user), this.keys.dropped(user));
      args.push(user, pair[0], pair[1]);
    }
    const [delivered, queued, dropped, outcome, base] = await this.redis.rmRoute(2 + batch.length * ROUTE_KEYS_PER_MESSAGE, ...keys, ...args);
    const local: LocalDelivery[] = [];
    const sync: string[] = [];
    for (let i = 0; i < batch.length; i++) {
      if (outcome[i] === 's') sync.push(batch[i].user);
      if (outcome[i] !== 'l' && outcome[i] !== 'd') continue;
      const id = String(base + i + 1);
      // The same envelope as the script stored, built here rather than sent back.
      local.push({ user: batch[i].user, id, envelope: `{"rm":{"id":"${id}","channel":${encoded[i][0]},"payload":${encoded[i][1]},"ts":${receivedAt}}}` });
    }
    return { delivered, queued, dropped, outcome, local, sync };
  }

  /**
   * Registers a connection. Returns how many messages the user is owed (owed and
   * still queued: sockets take the queue over as they read), how many were
   * dropped or expired since the last identify, and the connections this one
   * replaced past MAX_SOCKETS_PER_USER.
   */
  async attach(
    user: string,
    conn: string,
    instance: string,
    now = Date.now(),
  ): Promise<{ owed: number; dropped: number; replaced: Array<{ conn: string; instance: string }> }> {
    const [owed, dropped, flat] = await this.redis.rmAttach(
      this.keys.queue(user), this.keys.owed(user), this.keys.conns(user),
      this.keys.instanceUsers(instance), this.keys.dropped(user), this.keys.queueIndex,
      conn, instance, user, this.keys.instanceChannelPrefix, this.cutoff(now), this.options.maxSocketsPerUser,
    );
    const replaced = [];
    for (let i = 0; i < flat.length; i += 2) replaced.push({ conn: flat[i], instance: flat[i + 1] });
    return { owed, dropped, replaced };
  }

  /** Drops the expired head of a user's queue (QUEUE_TTL_SECONDS); returns how many went and how many are left. */
  async expire(user: string, now = Date.now()): Promise<{ expired: number; left: number }> {
    const [expired, left] = await this.redis.rmExpire(
      this.keys.queue(user), this.keys.dropped(user), this.keys.queueIndex, user, this.cutoff(now), now, this.ttlMs,
    );
    return { expired, left };
  }

  /** Users whose oldest queued message is older than `before` (ms), oldest first. */
  async queuedBefore(before: number, limit: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.queueIndex, '-inf', `(${before}`, 'LIMIT', 0, limit);
  }

  /** The users with the oldest queued messages: depth and age of the oldest, for metrics. */
  async oldestQueues(limit: number, now = Date.now()): Promise<Array<{ user: string; depth: number; oldestAgeSeconds: number }>> {
    const flat = await this.redis.zrange(this.keys.queueIndex, 0, limit - 1, 'WITHSCORES');
    const pipeline = this.redis.pipeline();
    for (let i = 0; i < flat.length; i += 2) pipeline.llen(this.keys.queue(flat[i]));
    const depths = (await pipeline.exec()) ?? [];
    const out = [];
    for (let i = 0; i < flat.length; i += 2) {
      out.push({ user: flat[i], depth: Number(depths[i / 2]?.[1] ?? 0), oldestAgeSeconds: Math.max(0, (now - Number(flat[i + 1])) / 1000) });
    }
    return out;
  }

  /**
   * Unregisters one connection (or, with conn '*', every connection of an instance);
   * when none is left, what is owed goes back to the head of the queue.
   */
  async detach(user: string, conn: string, instance: string): Promise<{ requeued: number; left: number }> {
    const [requeued, left] = await this.redis.rmDetach(
      this.keys.conns(user), this.keys.owed(user), this.keys.owedData(user), this.keys.queue(user),
      this.keys.instanceUsers(instance), this.keys.queueIndex, conn, instance, user, Date.now(),
    );
    return { requeued, left };
  }

  /** Removes acked ids from what the user is owed; unknown ids are ignored. Returns how many were owed. */
  async ack(user: string, ids: string[], instance: string): Promise<number> {
    if (ids.length === 0) return 0;
    return this.redis.rmAck(
      this.keys.owed(user), this.keys.owedData(user), this.keys.conns(user),
      this.keys.instanceChannelPrefix, instance, user, ...ids,
    );
  }

  /**
   * Reads up to `limit` owed messages after `position`, oldest first; past the
   * end of what is owed, the next queued entries become owed and come too.
   */
  async read(user: string, position: number, limit: number, now = Date.now()): Promise<OwedMessage[]> {
    const flat = await this.redis.rmRead(
      this.keys.owed(user), this.keys.owedData(user), this.keys.queue(user), this.keys.counter, this.keys.dropped(user), this.keys.queueIndex,
      position, limit, user, JSON.stringify(this.keys.userChannel(user)), now, this.cutoff(now), this.ttlMs,
    );
    const out: OwedMessage[] = [];
    for (let i = 0; i < flat.length; i += 3) out.push({ position: Number(flat[i]), id: String(flat[i + 1]), envelope: String(flat[i + 2]) });
    return out;
  }

  /** Queued messages received before this time have expired (0: no expiry). */
  private cutoff(now: number): number {
    return this.ttlMs > 0 ? now - this.ttlMs : 0;
  }

  /** Users with a connection registered by an instance (to reclaim after it died). */
  usersOf(instance: string): Promise<string[]> {
    return this.redis.smembers(this.keys.instanceUsers(instance));
  }

  async members(cids: string[]): Promise<string[][]> {
    const pipeline = this.redis.pipeline();
    for (const cid of cids) pipeline.smembers(this.keys.members(cid));
    const results = (await pipeline.exec()) ?? [];
    return results.map(([error, members]) => {
      if (error) throw error;
      return members as string[];
    });
  }
}

/** The wire frame of a message, built from its stored envelope `{"rm":{...}}` without parsing it. */
export const messageFrame = (envelope: string): string => `{"event":"message","data":${envelope.slice(6, -1)}}`;
