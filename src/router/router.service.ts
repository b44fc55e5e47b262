import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { InjectMessengerOptions, type MessengerOptions } from '../config/messenger-options';
import { DeliveryService } from '../delivery/delivery.service';
import { PresenceService } from '../presence/presence.service';
import { GROUP_CHANNEL_PREFIX, USER_CHANNEL_PREFIX, isValidId, queueKeys } from '../queue/queue-keys';
import { DROP_OUTCOMES, QUEUED_OUTCOMES, QueueService, ROUTE_BATCH, Routed } from '../queue/queue.service';
import { InjectRedisSubscriber } from '../redis/redis.constants';
import { MetricsService } from '../metrics/metrics.service';

interface Published {
  channel: string;
  payload: string;
}

/** Tries of one batch before it is given up (the last waits 100 * 2^8 ms): about a minute in all. */
const ROUTE_ATTEMPTS = 9;

const PATTERNS = [`${USER_CHANNEL_PREFIX}*`, `${GROUP_CHANNEL_PREFIX}*`];

/**
 * Hears every PUBLISH on `rm.users.*` and `rm.channels.*` and, on the one
 * instance that holds the router lease, routes it: deliver or queue, decided in
 * Redis by one script. Messages are handled in arrival order, in batches (one
 * script call per batch), and one batch at a time, so a group message is never
 * overtaken by a later message to one of its members.
 */
@Injectable()
export class RouterService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(RouterService.name);
  private pending: Published[] = [];
  private draining: Promise<void> | null = null;
  private stopped = false;
  /** Per-message lines are built only when someone reads them. */
  private get debug(): boolean {
    return Logger.isLevelEnabled('debug');
  }

  constructor(
    @InjectRedisSubscriber() private readonly subscriber: Redis,
    private readonly queue: QueueService,
    private readonly presence: PresenceService,
    private readonly delivery: DeliveryService,
    @InjectMessengerOptions() private readonly options: MessengerOptions,
    private readonly metrics: MetricsService,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.subscriber.on('pmessage', (_pattern: string, channel: string, payload: string) => this.receive(channel, payload));
    // ioredis resubscribes by itself after a reconnect.
    const subscribed = this.subscriber.psubscribe(...PATTERNS).catch((error: Error) => {
      this.logger.error(`Cannot subscribe to ${PATTERNS.join(', ')} yet: ${error.message}`);
    });
    await Promise.race([Promise.all([subscribed, this.presence.firstRefresh]), new Promise((r) => setTimeout(r, 3000))]);
  }

  /** Stops routing; messages already received are routed before this resolves. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.subscriber.punsubscribe(...PATTERNS).catch(() => undefined);
    await this.draining;
  }

  async onApplicationShutdown(): Promise<void> {
    await this.stop();
  }

  private receive(channel: string, payload: string): void {
    if (this.stopped) return;
    this.pending.push({ channel, payload });
    this.draining ??= this.drain();
  }

  private async drain(): Promise<void> {
    // Let the messages that arrived in the same read from the socket join the batch.
    await new Promise((resolve) => setImmediate(resolve));
    let failures = 0;
    while (this.pending.length > 0) {
      const batch = this.pending;
      this.pending = [];
      try {
        // Whether this instance routes is asked of Redis whenever the lease may have lapsed (after
        // an outage, say), never assumed: a message is routed by the lease holder, and only by it.
        if (this.presence.followsRouter) continue; // another instance routes these
        if (!this.presence.isRouter && !(await this.presence.refresh())) throw new Error('cannot reach Redis to renew the router lease');
        if (!this.presence.isRouter) continue;
        await this.routeAll(batch);
        failures = 0;
      } catch (error) {
        // Redis is back for the subscriber but not yet for commands, say: retry in order, with backoff.
        failures++;
        if (failures > ROUTE_ATTEMPTS) {
          this.logger.error(`Routing ${batch.length} messages failed ${ROUTE_ATTEMPTS} times, dropping them: ${(error as Error).message}`);
          failures = 0;
          continue;
        }
        this.logger.warn(`Routing ${batch.length} messages failed (attempt ${failures}), retrying: ${(error as Error).message}`);
        this.pending = batch.concat(this.pending);
        await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** failures));
      }
    }
    this.draining = null;
  }

  private async routeAll(batch: Published[]): Promise<void> {
    const receivedAt = Date.now();
    const debug = this.debug;
    if (debug) for (const { channel } of batch) this.logger.debug(`New message from channel ${channel}`);
    const groups = [...new Set(batch.filter((m) => m.channel.startsWith(GROUP_CHANNEL_PREFIX)).map((m) => m.channel))]
      .filter((channel) => this.validTarget(channel, GROUP_CHANNEL_PREFIX));
    const members = new Map<string, string[]>();
    if (groups.length > 0) {
      const sets = await this.queue.members(groups.map((channel) => channel.slice(GROUP_CHANNEL_PREFIX.length)));
      groups.forEach((channel, i) => members.set(channel, sets[i].filter((member) => this.validMember(channel, member)).sort()));
    }

    const routed: Routed[] = [];
    for (const { channel, payload } of batch) {
      if (channel.startsWith(USER_CHANNEL_PREFIX)) {
        if (this.validTarget(channel, USER_CHANNEL_PREFIX)) {
          routed.push({ user: channel.slice(USER_CHANNEL_PREFIX.length), channel, payload });
        }
      } else {
        for (const user of members.get(channel) ?? []) routed.push({ user, channel, payload });
      }
    }
    for (let i = 0; i < routed.length; i += ROUTE_BATCH) {
      const slice = routed.slice(i, i + ROUTE_BATCH);
      const { queued, dropped, outcome, local, sync } = await this.metrics.timeRedis('route', this.queue.route(slice, receivedAt, this.presence.instanceId));
      this.delivery.deliver(local);
      sync.forEach((user) => this.delivery.sync(user));
      this.metrics.routed(slice.length);
      this.metrics.queued(queued);
      this.metrics.dropped(this.options.queueOverflow === 'reject' ? 'rejected' : 'overflow', dropped);
      if (dropped > 0) this.reportDrops(slice, outcome);
      if (!debug) continue;
      slice.forEach(({ user }, j) => {
        if (QUEUED_OUTCOMES.includes(outcome[j])) this.logger.debug(`Client is not online, queueing message in Redis (${queueKeys.queue(user)})`);
      });
    }
  }

  /** Queue caps are never silent: a line per user, and the count waits for the user's next `ready`. */
  private reportDrops(slice: Routed[], outcome: string): void {
    const byUser = new Map<string, number>();
    slice.forEach(({ user }, j) => {
      if (DROP_OUTCOMES.includes(outcome[j])) byUser.set(user, (byUser.get(user) ?? 0) + 1);
    });
    const what = this.options.queueOverflow === 'reject' ? 'refused new messages' : 'dropped its oldest messages';
    for (const [user, n] of byUser) {
      this.logger.warn(`${user}: queue full (MAX_QUEUE_LENGTH=${this.options.maxQueueLength}), ${what} (${n})`);
    }
  }

  private validTarget(channel: string, prefix: string): boolean {
    if (isValidId(channel.slice(prefix.length))) return true;
    this.metrics.dropped('invalid_channel');
    this.logger.warn(`Dropping message on invalid channel ${JSON.stringify(channel.slice(0, 200))}`);
    return false;
  }

  private validMember(channel: string, member: string): boolean {
    if (isValidId(member)) return true;
    this.metrics.dropped('invalid_member');
    this.logger.warn(`Skipping invalid member id ${JSON.stringify(member.slice(0, 200))} of ${channel}`);
    return false;
  }
}
