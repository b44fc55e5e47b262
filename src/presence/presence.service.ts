import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import type { Redis, Result } from 'ioredis';
import { join } from 'node:path';
import { InjectMessengerOptions, MessengerOptions } from '../config/messenger-options';
import { QueueService } from '../queue/queue.service';
import { queueKeys } from '../queue/queue-keys';
import { defineScripts } from '../redis/lua-scripts';
import { InjectRedis } from '../redis/redis.constants';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    rmLease(...args: (string | number)[]): Result<number, Context>;
  }
}

/**
 * Which instances are alive, which of them routes, and the return of a dead
 * instance's messages. Every instance refreshes `rm:node:<instance>` (a key with
 * a TTL); an instance whose key expired is dead, and any living instance gives
 * its sockets' owed messages back to their queues. At start an instance first
 * reclaims what its own previous life (same instance id) left behind.
 */
@Injectable()
export class PresenceService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(PresenceService.name);
  private readonly keys = queueKeys;
  private timer?: NodeJS.Timeout;
  /** Until when this instance holds the router lease (ms since the epoch), as of its last extension. */
  private leaseUntil = 0;
  private ready = false;
  private readonly readyWaiters: Array<() => void> = [];
  private ticking?: Promise<boolean>;
  private refreshedAt = 0;
  private failing = false;

  constructor(
    @InjectRedis() private readonly redis: Redis,
    private readonly queue: QueueService,
    @InjectMessengerOptions() private readonly options: MessengerOptions,
  ) {
    defineScripts(redis, join(__dirname, 'lua'), ['lease-1.lua']);
  }

  get instanceId(): string {
    return this.options.instanceId;
  }

  /** True while this instance holds the router lease. */
  get isRouter(): boolean {
    // A failed refresh does not end the lease: it lasts its time, so routing survives a Redis blip.
    return Date.now() < this.leaseUntil;
  }

  /** Resolves once this instance reclaimed its previous life's connections (it must not attach before). */
  whenReady(timeoutMs: number): Promise<void> {
    if (this.ready) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`Redis presence not ready within ${timeoutMs} ms`)), timeoutMs);
      this.readyWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** The first refresh, under way from module init: routing may start once it is done. */
  firstRefresh: Promise<boolean> = Promise.resolve(false);

  onModuleInit(): void {
    // Not awaited here: a server without Redis still starts, answers /health with 503, and retries.
    this.firstRefresh = this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.options.heartbeatMs);
  }

  /** True when a refresh within the last heartbeat found another instance routing. */
  get followsRouter(): boolean {
    return !this.isRouter && Date.now() - this.refreshedAt < this.options.heartbeatMs;
  }

  /**
   * Refreshes presence and the router lease now (or joins the refresh under way).
   * Resolves true when it worked, false when Redis could not be reached; `isRouter`
   * then says whether this instance routes.
   */
  refresh(): Promise<boolean> {
    this.ticking ??= this.tick().finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    if (this.redis.status !== 'ready') return;
    await this.redis
      .multi()
      .del(this.keys.instanceAlive(this.instanceId))
      .srem(this.keys.instances, this.instanceId)
      .eval("if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end", 1, this.keys.routerLease, this.instanceId)
      .exec()
      .catch(() => undefined);
  }

  private async tick(): Promise<boolean> {
    try {
      if (!this.ready) {
        await this.reclaim(this.instanceId);
        this.ready = true;
        this.readyWaiters.splice(0).forEach((resolve) => resolve());
      }
      await this.redis
        .multi()
        .set(this.keys.instanceAlive(this.instanceId), '1', 'PX', this.options.presenceTtlMs)
        .sadd(this.keys.instances, this.instanceId)
        .exec();
      const askedAt = Date.now();
      const leader = (await this.redis.rmLease(this.keys.routerLease, this.instanceId, this.options.presenceTtlMs)) === 1;
      if (leader !== this.isRouter) this.logger.log(leader ? 'This instance now routes published messages' : 'Another instance routes published messages');
      // Counted from before the request: the lease in Redis cannot outlive this.
      this.leaseUntil = leader ? askedAt + this.options.presenceTtlMs : 0;
      await this.reapDeadInstances();
      if (this.failing) this.logger.log('Presence refresh works again');
      this.failing = false;
      this.refreshedAt = Date.now();
      return true;
    } catch (error) {
      // Once per outage, not once a second.
      if (!this.failing) this.logger.warn(`Presence refresh failed: ${(error as Error).message}`);
      this.failing = true;
      return false;
    }
  }

  private async reapDeadInstances(): Promise<void> {
    const instances = await this.redis.smembers(this.keys.instances);
    for (const instance of instances) {
      if (instance === this.instanceId) continue;
      if (await this.redis.exists(this.keys.instanceAlive(instance))) continue;
      this.logger.warn(`Instance ${instance} stopped refreshing its presence; returning its messages to their queues`);
      await this.reclaim(instance);
      await this.redis.srem(this.keys.instances, instance);
    }
  }

  /** Unregisters every connection of `instance`; users left with none get their owed messages back in their queue. */
  private async reclaim(instance: string): Promise<void> {
    for (const user of await this.queue.usersOf(instance)) {
      const { requeued } = await this.queue.detach(user, '*', instance);
      if (requeued > 0) this.logger.log(`${user}: Client is no longer online, recommitting ${requeued} messages to queue`);
    }
  }
}
