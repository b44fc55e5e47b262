import { Injectable, Logger } from '@nestjs/common';
import { InjectMessengerOptions, type MessengerOptions } from '../config/messenger-options';
import { DeliveryService } from '../delivery/delivery.service';
import { EventsService } from '../events/events.service';
import { RateLimitedLog } from '../logging/rate-limited-log';
import type { CapDrop } from '../metrics/metrics.constants';
import { MetricsService } from '../metrics/metrics.service';
import { QueueService, UnusableKeys, type RouteGroup, type RouteResult } from '../queue/queue.service';
import { summarizeRoute, type RouteSummary } from '../queue/route-outcome';
import { QueueKeys } from '../redis/keys';

/** At most one log line this often about users whose keys are unusable. */
const UNUSABLE_LOG_MS = 1000;

/** What the queue cap did, as the warning says it. */
const CAPPED: Record<CapDrop, string> = { overflow: 'dropped its oldest messages', rejected: 'refused new messages' };

/**
 * Stores groups of messages (route.lua decides deliver-or-queue) and does what the
 * outcome asks of this instance: hand owed messages to its own sockets, wake them up
 * for a queue they read, index a new queue. Every publish path stores through here.
 */
@Injectable()
export class StoreService {
  private readonly logger = new Logger('StoreService');
  /** A publisher can fill many queues at once: one line a second per kind. */
  private readonly warnings = new RateLimitedLog(this.logger);
  private unusableLoggedAt = 0;
  private unusableSince = 0;

  constructor(
    private readonly queue: QueueService,
    private readonly delivery: DeliveryService,
    private readonly keys: QueueKeys,
    @InjectMessengerOptions() private readonly options: MessengerOptions,
    private readonly metrics: MetricsService,
    private readonly events: EventsService,
  ) {}

  /**
   * One result (or Error: nothing of that group stored) per group, in order. `durable`: the HTTP
   * and inbox paths, whose results say when fewer than PUBLISH_WAIT_REPLICAS replicas have them.
   */
  async store(groups: RouteGroup[], durable = false): Promise<Array<RouteResult | Error>> {
    const debug = Logger.isLevelEnabled('debug');
    const newQueues: string[] = [];
    // Each group as its call is answered: a group message's first members are delivered while Redis stores the others.
    const results = await this.queue.route(groups, this.options.instanceId, durable, (i, result) => {
      if (result instanceof UnusableKeys) this.unusable(result, groups[i].messages.length);
      else if (!(result instanceof Error) && this.apply(groups[i], result, debug).newQueue) newQueues.push(groups[i].user);
    });
    if (newQueues.length > 0) void this.queue.indexNew(newQueues).catch(() => undefined);
    return results;
  }

  /** A user's keys cannot take its messages (they are not stored): counted, and logged at most once a second. */
  private unusable(error: UnusableKeys, n: number): void {
    this.metrics.dropped('unusable_keys', n);
    this.unusableSince += n;
    const now = Date.now();
    if (now - this.unusableLoggedAt < UNUSABLE_LOG_MS) return;
    this.logger.error(`${error.message}; not stored (${this.unusableSince} messages to such users since the last line like this)`);
    this.unusableLoggedAt = now;
    this.unusableSince = 0;
  }

  /** Does what one group's outcome asks of this instance; answers the summary (a new queue is filed by the caller, with the others). */
  private apply(group: RouteGroup, result: RouteResult, debug: boolean): RouteSummary {
    const { user, messages } = group;
    const n = messages.length;
    const route = summarizeRoute(n, result);
    if (!route.routed) return route; // a repeat or conflict of an idempotency record: nothing stored
    this.events.routed(group, route);
    this.metrics.routed(n);
    this.metrics.dropped(route.capDrop, route.capped);
    if (route.capped > 0) {
      this.warnings.warn('queue-full', `${user}: queue full (MAX_QUEUE_LENGTH=${this.options.maxQueueLength}), ${CAPPED[route.capDrop]} (${route.capped})`);
    }
    if (route.handOut > 0)
      this.delivery.deliver(
        user,
        result.position,
        messages.slice(0, route.handOut).map((m) => m.envelope),
      );
    if (route.wake) this.delivery.sync(user);
    if (route.fenced) {
      this.metrics.dropped('fenced', n);
      this.logger.warn(`${user}: ${n} messages heard while this instance's route shard lease lapsed were routed by another instance meanwhile; dropped`);
    }
    if (!route.appended) return route;
    this.metrics.queued(route.queued);
    if (debug) for (let i = 0; i < n; i++) this.logger.debug(`Client is not online, queueing message in Redis (${this.keys.queue(user)})`);
    return route;
  }
}
