import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { InjectMessengerOptions, MessengerOptions } from '../config/messenger-options';
import { EventsService } from '../events/events.service';
import { MetricsService } from '../metrics/metrics.service';
import { QueueService } from '../queue/queue.service';
import { QueueKeys } from '../redis/keys';
import { defineScripts, type RedisClient } from '../redis/lua-scripts';
import { InjectRedis } from '../redis/redis.constants';

/** A dead instance's users returned per page (their detach calls go out together), and the time one reap tick may take. */
const REAP_PAGE = 200;
const REAP_BUDGET_MS = 250;
/** How often an instance waiting for a peer to let go of its reaper lease asks again. */
const LEASE_POLL_MS = 100;

/**
 * Which instances are alive, and the return of a dead instance's messages.
 * Every instance refreshes `rm:node:<instance>` (a key with a TTL) on a timer of its
 * own; an instance whose key expired is dead, and one living instance at a time (the
 * dead one's reaper lease) gives its sockets' owed messages back to their queues, a
 * page of users at a time within a time budget per tick. An instance that finds its
 * own key gone (a Redis stall or a partition longer than PRESENCE_TTL_MS: peers may
 * have reaped it) registers every socket it holds again. At start an instance first
 * reclaims what its own previous life (same instance id) left behind. (Who routes
 * what is ShardsService's.)
 */
@Injectable()
export class PresenceService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(PresenceService.name);
  /** This process's mark in its presence key and in the reaper leases it holds. */
  private readonly token = randomBytes(12).toString('hex');
  private beatTimer?: NodeJS.Timeout;
  private reapTimer?: NodeJS.Timeout;
  private beating = false;
  private reaping = false;
  /** The presence key was written in this life: found gone after that, it lapsed. */
  private registered = false;
  /** A lapse whose re-registration has yet to succeed. */
  private lapsed = false;
  private recovering?: Promise<void>;
  private ready = false;
  private readonly readyWaiters: Array<() => void> = [];
  private readonly lapseListeners: Array<() => Promise<void>> = [];
  private failing = false;
  private reapFailing = false;
  private readonly reapLogged = new Set<string>();
  /** This process holds its presence key (claimed at start): another value there is another process with our INSTANCE_ID. */
  private claimed = false;

  constructor(
    @InjectRedis() private readonly redis: RedisClient,
    private readonly queue: QueueService,
    private readonly keys: QueueKeys,
    @InjectMessengerOptions() private readonly options: MessengerOptions,
    private readonly events: EventsService,
    private readonly metrics: MetricsService,
  ) {
    defineScripts(redis);
  }

  /** Takes, renews (1: ours) or lets go of a job's lease (lease-1.lua). */
  private lease(key: string, release: '' | 'release' = ''): Promise<number> {
    return this.metrics.timeRedis('lease', this.redis.rmLease(key, this.token, this.options.presenceTtlMs, release));
  }

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

  /** Runs when this instance finds its presence had lapsed (peers may have unregistered its sockets): register them all again. */
  onLapse(listener: () => Promise<void>): void {
    this.lapseListeners.push(listener);
  }

  async onModuleInit(): Promise<void> {
    // With Redis up, a second process with our INSTANCE_ID stops here (the start fails, naming it).
    // Without Redis the server still starts, answers /health with 503, and claims at its first beat.
    await this.claim().catch((error: Error) => {
      if (error instanceof InstanceIdInUse) throw error;
    });
    void this.beat();
    this.beatTimer = setInterval(() => void this.beat(), this.options.heartbeatMs);
    this.reapTimer = setInterval(() => void this.reapTick(), this.options.heartbeatMs);
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.beatTimer);
    clearInterval(this.reapTimer);
    if (this.redis.status !== 'ready' || !this.claimed) return; // never another live process's key
    await Promise.all([this.redis.del(this.keys.instanceAlive(this.instanceId)), this.redis.srem(this.keys.instances, this.instanceId)]).catch(() => undefined);
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
      if (ttl > 0 && last === Infinity)
        this.logger.log(`INSTANCE_ID ${this.instanceId} has a presence key of another process: waiting up to ${ttl} ms for it to lapse (a crashed earlier life) or be refreshed (a live one)`);
      if (ttl > 0) last = ttl;
      await new Promise((resolve) => setTimeout(resolve, Math.min(this.options.heartbeatMs, 250)));
    }
    this.claimed = true;
  }

  /** Refreshes the presence key: on its own timer, so it never waits behind a reaping. */
  private async beat(): Promise<void> {
    if (this.beating) return;
    this.beating = true;
    try {
      if (!this.claimed) await this.claim();
      const [previous] = await Promise.all([
        this.redis.set(this.keys.instanceAlive(this.instanceId), this.token, 'PX', this.options.presenceTtlMs, 'GET'),
        this.redis.sadd(this.keys.instances, this.instanceId),
      ]);
      if (this.failing) this.logger.log('Presence refresh works again');
      this.failing = false;
      if (!this.registered) {
        this.registered = true;
        this.recover();
      } else if (previous === null || this.lapsed) {
        if (!this.lapsed) this.logger.warn(`This instance's presence lapsed (no refresh for PRESENCE_TTL_MS=${this.options.presenceTtlMs}): registering its sockets again`);
        this.lapsed = true;
        this.recover();
      }
    } catch (error) {
      // Once per outage, not once a second.
      if (!this.failing) this.logger.warn(`Presence refresh failed: ${(error as Error).message}`);
      this.failing = true;
    } finally {
      this.beating = false;
    }
  }

  /**
   * At start: reclaims the previous life's connections, then attaches may begin. After a
   * lapse: registers every socket again. Either way first waits until no peer is reaping
   * this instance (it holds the reaper lease until it sees the fresh presence key, at most a
   * page later), so nothing a reaper unregisters afterwards belongs to this life.
   */
  private recover(): void {
    this.recovering ??= (async () => {
      const lease = this.keys.instanceReaper(this.instanceId);
      try {
        while ((await this.lease(lease)) !== 1) await sleep(LEASE_POLL_MS);
        try {
          if (!this.ready) {
            while (await this.returnPage(this.instanceId));
            this.ready = true;
            this.readyWaiters.splice(0).forEach((resolve) => resolve());
          }
        } finally {
          await this.lease(lease, 'release').catch(() => 0);
        }
        if (this.lapsed) {
          this.lapsed = false;
          for (const listener of this.lapseListeners) await listener();
        }
      } catch (error) {
        // The next beat tries again.
        this.logger.warn(`Presence recovery failed: ${(error as Error).message}`);
        if (!this.ready) this.registered = false;
      } finally {
        this.recovering = undefined;
      }
    })();
  }

  /** Reaps dead peers for at most REAP_BUDGET_MS; what is left waits for the next tick. */
  private async reapTick(): Promise<void> {
    if (this.reaping || !this.ready) return;
    this.reaping = true;
    const deadline = Date.now() + REAP_BUDGET_MS;
    try {
      for (const instance of await this.redis.smembers(this.keys.instances)) {
        if (instance === this.instanceId || Date.now() >= deadline) continue;
        await this.reap(instance, deadline);
      }
      this.reapFailing = false;
    } catch (error) {
      if (!this.reapFailing) this.logger.warn(`Reaping dead instances failed: ${(error as Error).message}`);
      this.reapFailing = true;
    } finally {
      this.reaping = false;
    }
  }

  /** Returns a dead instance's users page by page until the deadline, holding its reaper lease: one instance reaps it at a time. */
  private async reap(instance: string, deadline: number): Promise<void> {
    const alive = this.keys.instanceAlive(instance);
    const lease = this.keys.instanceReaper(instance);
    if (await this.redis.exists(alive)) return;
    if ((await this.lease(lease)) !== 1) return; // another instance reaps it
    try {
      // Looked at before every page: an instance that came back registers its sockets again itself, once this lease is let go.
      while (Date.now() < deadline && !(await this.redis.exists(alive))) {
        if (!this.reapLogged.has(instance)) {
          this.reapLogged.add(instance);
          this.logger.warn(`Instance ${instance} stopped refreshing its presence; returning its messages to their queues`);
        }
        if (!(await this.returnPage(instance))) {
          await this.redis.srem(this.keys.instances, instance);
          this.reapLogged.delete(instance);
          return;
        }
        await this.lease(lease);
      }
    } finally {
      await this.lease(lease, 'release').catch(() => 0);
    }
  }

  /**
   * Unregisters every connection of `instance` for up to REAP_PAGE of its users (one
   * detach call each, sent together); users left with none get their owed messages back
   * in their queue. False when the instance had no user left.
   */
  private async returnPage(instance: string): Promise<boolean> {
    const users = await this.redis.srandmember(this.keys.instanceUsers(instance), REAP_PAGE);
    if (users.length === 0) return false;
    await Promise.all(
      users.map(async (user) => {
        const { requeued, left, removed, lookingChanged } = await this.queue.detach(user, '*', instance);
        if (left === 0 && removed > 0) this.events.offline(user);
        if (lookingChanged) this.events.lookingChanged(user);
        if (requeued > 0) this.logger.log(`${user}: Client is no longer online, recommitting ${requeued} messages to queue`);
      }),
    );
    await this.redis.srem(this.keys.instanceUsers(instance), ...users);
    return true;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Another live process runs with this INSTANCE_ID. */
export class InstanceIdInUse extends Error {
  constructor(instanceId: string) {
    super(`INSTANCE_ID ${instanceId} is in use by another running instance (its presence key is refreshed): give each process its own INSTANCE_ID`);
    this.name = 'InstanceIdInUse';
  }
}
