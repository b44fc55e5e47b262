import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { InjectMessengerOptions, type MessengerOptions } from '../config/messenger-options';
import { EventsService } from '../events/events.service';
import { MetricsService } from '../metrics/metrics.service';
import { QueueService } from '../queue/queue.service';
import { SweepsService, type Sweep } from './sweeps.service';

const SWEEP_EVERY_MS = 5000;
/** One sweep stops taking new pages once this is spent (80% of its period), so sweeps never pile up. */
export const SWEEP_BUDGET_MS = 4000;
/** Due users taken per page, all expired at once (one script call each, pipelined): bounded concurrency. */
const SWEEP_PAGE = 200;
/** Users logged one by one per sweep; the rest in one line. */
const LOGGED_USERS = 10;
const BUSIEST_REPORTED = 10;

/**
 * QUEUE_TTL_SECONDS: each queued message expires on its own age. Every few seconds the
 * holder of route shard 0 (one instance at a time) takes the queues whose oldest entry is
 * past the TTL, oldest first, a page at a time, until none is due or SWEEP_BUDGET_MS is
 * spent; each script call drops only the user's expired entries and counts them for the
 * user's next `ready`. A busy queue keeps no stale messages and an idle one loses no fresh ones.
 * The same pass reports the depth and age of the oldest queues as metrics.
 */
@Injectable()
export class ExpiryService implements Sweep, OnModuleInit {
  readonly everyMs = SWEEP_EVERY_MS;
  readonly budgetMs = SWEEP_BUDGET_MS;
  private readonly logger = new Logger(ExpiryService.name);

  constructor(
    private readonly queue: QueueService,
    private readonly sweeps: SweepsService,
    @InjectMessengerOptions() private readonly options: MessengerOptions,
    private readonly metrics: MetricsService,
    private readonly events: EventsService,
  ) {}

  onModuleInit(): void {
    this.sweeps.register(this);
  }

  /** Expires what is due, then reports the oldest queues (the same index serves both); returns how many expired (0 when not run: see SweepsService.run). */
  sweep(now = Date.now()): Promise<number> {
    return this.sweeps.run(this, now);
  }

  /** One run (SweepsService calls it on shard 0's holder, never two at once). */
  async pass(now: number, more: () => boolean): Promise<number> {
    const tally = { expired: 0, users: 0, unlogged: 0, unloggedUsers: 0 };
    try {
      if (this.options.queueTtlSeconds > 0) await this.expireDue(now, more, tally);
      this.metrics.setBusiestQueues(await this.queue.oldestQueues(BUSIEST_REPORTED, now));
    } catch (error) {
      this.logger.warn(`Expiring queued messages failed: ${(error as Error).message}`);
    } finally {
      if (tally.unlogged > 0) {
        this.logger.log(`${tally.unlogged} queued messages of ${tally.unloggedUsers} more users expired (older than QUEUE_TTL_SECONDS=${this.options.queueTtlSeconds})`);
      }
    }
    return tally.expired;
  }

  /**
   * Pages through the due users until none is left or the budget is spent. A user done
   * leaves the due range (its queue emptied, or filed under its new head); one whose call
   * failed stays at the front of it, so the next page starts past those (`skip`) and
   * one bad key stalls nobody; the next sweep tries it again.
   */
  private async expireDue(now: number, more: () => boolean, tally: { expired: number; users: number; unlogged: number; unloggedUsers: number }): Promise<void> {
    const cutoff = now - this.options.queueTtlSeconds * 1000;
    let skip = 0;
    while (more()) {
      const due = await this.queue.queuedBefore(cutoff, SWEEP_PAGE, skip);
      const results = await Promise.all(due.map((user) => this.queue.expire(user, now).catch((error: Error) => error)));
      let expired = 0;
      results.forEach((result, i) => {
        const user = due[i];
        if (result instanceof Error) {
          skip++;
          this.logger.warn(`Expiring the queued messages of ${user} failed (tried again next sweep): ${result.message}`);
          return;
        }
        if (result.expired === 0) return;
        this.events.dropped(user, result.expired, 'expired');
        expired += result.expired;
        if (tally.users++ < LOGGED_USERS) {
          this.logger.log(`${user}: ${result.expired} queued messages expired (older than QUEUE_TTL_SECONDS=${this.options.queueTtlSeconds})`);
        } else {
          tally.unlogged += result.expired;
          tally.unloggedUsers++;
        }
      });
      this.metrics.expired(expired);
      tally.expired += expired;
      if (due.length < SWEEP_PAGE) break;
    }
  }
}
