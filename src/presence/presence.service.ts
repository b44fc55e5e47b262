import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { InjectMessengerOptions, MessengerOptions } from '../config/messenger-options';
import { EventsService } from '../events/events.service';
import { QueueKeys } from '../queue/queue-keys';
import { QueueService } from '../queue/queue.service';
import type { RedisClient } from '../redis/lua-scripts';
import { InjectRedis } from '../redis/redis.constants';

/**
 * Which instances are alive, and the return of a dead instance's messages.
 * Every instance refreshes `rm:node:<instance>` (a key with a TTL); an instance
 * whose key expired is dead, and any living instance gives its sockets' owed
 * messages back to their queues. At start an instance first reclaims what its own
 * previous life (same instance id) left behind. (Who routes what is ShardsService's.)
 */
@Injectable()
export class PresenceService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(PresenceService.name);
  private timer?: NodeJS.Timeout;
  private ready = false;
  private readonly readyWaiters: Array<() => void> = [];
  private ticking?: Promise<boolean>;
  private failing = false;
  /** This process's mark in its presence key: another value there is another process with our INSTANCE_ID. */
  private readonly token = randomBytes(12).toString('hex');
  private claimed = false;

  constructor(
    @InjectRedis() private readonly redis: RedisClient,
    private readonly queue: QueueService,
    private readonly keys: QueueKeys,
    @InjectMessengerOptions() private readonly options: MessengerOptions,
    private readonly events: EventsService,
  ) {}

  get instanceId(): string {
    return this.options.instanceId;
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

  async onModuleInit(): Promise<void> {
    // With Redis up, a second process with our INSTANCE_ID stops here (the start fails, naming it).
    // Without Redis the server still starts, answers /health with 503, and claims at its first refresh.
    await this.claim().catch((error: Error) => {
      if (error instanceof InstanceIdInUse) throw error;
    });
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.options.heartbeatMs);
  }

  /** Refreshes presence now (or joins the refresh under way); false when Redis could not be reached. */
  refresh(): Promise<boolean> {
    this.ticking ??= this.tick().finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    if (this.redis.status !== 'ready' || !this.claimed) return; // never another live process's key
    await Promise.all([this.redis.del(this.keys.instanceAlive(this.instanceId)), this.redis.srem(this.keys.instances, this.instanceId)]).catch(() => undefined);
  }

  private async tick(): Promise<boolean> {
    try {
      if (!this.ready) {
        await this.claim();
        await this.reclaim(this.instanceId);
        this.ready = true;
        this.readyWaiters.splice(0).forEach((resolve) => resolve());
      }
      await Promise.all([
        this.redis.set(this.keys.instanceAlive(this.instanceId), this.token, 'PX', this.options.presenceTtlMs),
        this.redis.sadd(this.keys.instances, this.instanceId),
      ]);
      await this.reapDeadInstances();
      if (this.failing) this.logger.log('Presence refresh works again');
      this.failing = false;
      return true;
    } catch (error) {
      // Once per outage, not once a second.
      if (!this.failing) this.logger.warn(`Presence refresh failed: ${(error as Error).message}`);
      this.failing = true;
      return false;
    }
  }

  /**
   * Takes this INSTANCE_ID's presence key for this process (SET NX). Held by another token, it
   * is either a crashed earlier life of this id (its key lapses within PRESENCE_TTL_MS, and then
   * it is ours) or a live process (it refreshes the key first: its TTL goes up), which we refuse
   * to run beside: two processes with one id would unregister each other's sockets.
   */
  private async claim(): Promise<void> {
    if (this.claimed) return;
    const key = this.keys.instanceAlive(this.instanceId);
    const deadline = Date.now() + this.options.presenceTtlMs + this.options.heartbeatMs;
    let last = Infinity;
    for (;;) {
      if (await this.redis.set(key, this.token, 'PX', this.options.presenceTtlMs, 'NX')) break;
      const ttl = await this.redis.pttl(key);
      if ((ttl > last && ttl > 0) || Date.now() > deadline) throw new InstanceIdInUse(this.instanceId);
      if (ttl > 0 && last === Infinity) this.logger.log(`INSTANCE_ID ${this.instanceId} has a presence key of another process: waiting up to ${ttl} ms for it to lapse (a crashed earlier life) or be refreshed (a live one)`);
      if (ttl > 0) last = ttl;
      await new Promise((resolve) => setTimeout(resolve, Math.min(this.options.heartbeatMs, 250)));
    }
    this.claimed = true;
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
      const { requeued, left, removed } = await this.queue.detach(user, '*', instance);
      if (left === 0 && removed > 0) this.events.offline(user);
      if (requeued > 0) this.logger.log(`${user}: Client is no longer online, recommitting ${requeued} messages to queue`);
      await this.queue.registerUser(instance, user, false);
    }
  }
}

/** Another live process runs with this INSTANCE_ID. */
export class InstanceIdInUse extends Error {
  constructor(instanceId: string) {
    super(`INSTANCE_ID ${instanceId} is in use by another running instance (its presence key is refreshed): give each process its own INSTANCE_ID`);
    this.name = 'InstanceIdInUse';
  }
}
