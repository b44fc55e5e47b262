import { Injectable } from '@nestjs/common';
import type { Redis, Result } from 'ioredis';
import { join } from 'node:path';
import { defineScripts } from '../redis/lua-scripts';
import { InjectRedis } from '../redis/redis.constants';
import { queueKeys } from './queue-keys';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    rmRoute(numKeys: number, ...args: (string | number)[]): Result<[number, number, string], Context>;
    rmAttach(...args: (string | number)[]): Result<[number, number], Context>;
    rmDetach(...args: string[]): Result<[number, number], Context>;
    rmAck(...args: string[]): Result<number, Context>;
    rmRead(...args: (string | number)[]): Result<string[], Context>;
  }
}

/** One message for one user, as the router hands it over. */
export interface Routed {
  user: string;
  channel: string;
  payload: string;
}

/** An owed message as read back: its position in the user's owed order, its id and its envelope. */
export interface OwedMessage {
  position: number;
  id: string;
  envelope: string;
}

/** Keys per message in route.lua, and the batch bound that keeps one script call short. */
const ROUTE_KEYS_PER_MESSAGE = 4;
export const ROUTE_BATCH = 500;

/**
 * The repository of a user's Redis keys. Each method is one atomic Lua script
 * (see `lua/`), so no step of delivery can be seen half done.
 */
@Injectable()
export class QueueService {
  private readonly keys = queueKeys;

  constructor(@InjectRedis() private readonly redis: Redis) {
    defineScripts(redis, join(__dirname, 'lua'), ['route.lua', 'attach-6.lua', 'detach-5.lua', 'ack-3.lua', 'read-2.lua']);
  }

  /** Routes up to ROUTE_BATCH messages in order: owed and announced if the user is connected, queued if not. */
  async route(batch: Routed[], receivedAt: number): Promise<{ delivered: number; queued: number; online: boolean[] }> {
    const keys: string[] = [this.keys.counter];
    const args: string[] = [this.keys.instanceChannelPrefix, String(receivedAt)];
    for (const { user, channel, payload } of batch) {
      keys.push(this.keys.queue(user), this.keys.owed(user), this.keys.owedData(user), this.keys.conns(user));
      args.push(user, JSON.stringify(channel), JSON.stringify(payload));
    }
    const [delivered, queued, flags] = await this.redis.rmRoute(1 + batch.length * ROUTE_KEYS_PER_MESSAGE, ...keys, ...args);
    return { delivered, queued, online: [...flags].map((flag) => flag === '1') };
  }

  /** Registers a connection and moves the queue behind what is owed; returns how many messages are owed now. */
  async attach(user: string, conn: string, instance: string, now = Date.now()): Promise<{ owed: number; moved: number }> {
    const [owed, moved] = await this.redis.rmAttach(
      this.keys.queue(user), this.keys.owed(user), this.keys.owedData(user), this.keys.conns(user),
      this.keys.counter, this.keys.instanceUsers(instance),
      conn, instance, user, JSON.stringify(this.keys.userChannel(user)), now, this.keys.instanceChannelPrefix,
    );
    return { owed, moved };
  }

  /**
   * Unregisters one connection (or, with conn '*', every connection of an instance);
   * when none is left, what is owed goes back to the head of the queue.
   */
  async detach(user: string, conn: string, instance: string): Promise<{ requeued: number; left: number }> {
    const [requeued, left] = await this.redis.rmDetach(
      this.keys.conns(user), this.keys.owed(user), this.keys.owedData(user), this.keys.queue(user),
      this.keys.instanceUsers(instance), conn, instance, user,
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

  /** Reads up to `limit` owed messages after `position`, oldest first. */
  async read(user: string, position: number, limit: number): Promise<OwedMessage[]> {
    const flat = await this.redis.rmRead(this.keys.owed(user), this.keys.owedData(user), position, limit);
    const out: OwedMessage[] = [];
    for (let i = 0; i < flat.length; i += 3) out.push({ position: Number(flat[i]), id: flat[i + 1], envelope: flat[i + 2] });
    return out;
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
