import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
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

  onModuleInit(): void {
    // Not awaited here: a server without Redis still starts, answers /health with 503, and retries.
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
    if (this.redis.status !== 'ready') return;
    await Promise.all([this.redis.del(this.keys.instanceAlive(this.instanceId)), this.redis.srem(this.keys.instances, this.instanceId)]).catch(() => undefined);
  }

  private async tick(): Promise<boolean> {
    try {
      if (!this.ready) {
        await this.reclaim(this.instanceId);
        this.ready = true;
        this.readyWaiters.splice(0).forEach((resolve) => resolve());
      }
      await Promise.all([
        this.redis.set(this.keys.instanceAlive(this.instanceId), '1', 'PX', this.options.presenceTtlMs),
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
