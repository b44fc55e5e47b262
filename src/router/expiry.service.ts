import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { InjectMessengerOptions, type MessengerOptions } from '../config/messenger-options';
import { EventsService } from '../events/events.service';
import { MetricsService } from '../metrics/metrics.service';
import { ShardsService } from '../presence/shards.service';
import { QueueService } from '../queue/queue.service';

const SWEEP_EVERY_MS = 5000;
const SWEEP_BATCH = 100;
const BUSIEST_REPORTED = 10;

/**
 * QUEUE_TTL_SECONDS: each queued message expires on its own age. The holder of
 * route shard 0 (one instance at a time) looks every few seconds at the queues whose oldest entry is past
 * the TTL, drops only the expired entries and counts them for the user's next
 * `ready`; a busy queue keeps no stale messages and an idle one loses no fresh ones.
 * The same pass reports the depth and age of the oldest queues as metrics.
 */
@Injectable()
export class ExpiryService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(ExpiryService.name);
  private timer?: NodeJS.Timeout;
  private sweeping = false;

  constructor(
    private readonly queue: QueueService,
    private readonly shards: ShardsService,
    @InjectMessengerOptions() private readonly options: MessengerOptions,
    private readonly metrics: MetricsService,
    private readonly events: EventsService,
  ) {}

  onModuleInit(): void {
    this.timer = setInterval(() => void this.sweep(), SWEEP_EVERY_MS);
  }

  onApplicationShutdown(): void {
    clearInterval(this.timer);
  }

  /** Expires what is due, then reports the oldest queues (the same index serves both); returns how many expired. */
  async sweep(now = Date.now()): Promise<number> {
    if (this.sweeping || !this.shards.holds(0)) return 0;
    this.sweeping = true;
    let total = 0;
    try {
      if (this.options.queueTtlSeconds > 0) {
        const due = await this.queue.queuedBefore(now - this.options.queueTtlSeconds * 1000, SWEEP_BATCH);
        for (const user of due) {
          const { expired } = await this.queue.expire(user, now);
          this.events.dropped(user, expired, 'expired');
          if (expired > 0) this.logger.log(`${user}: ${expired} queued messages expired (older than QUEUE_TTL_SECONDS=${this.options.queueTtlSeconds})`);
          total += expired;
        }
        this.metrics.expired(total);
      }
      this.metrics.setBusiestQueues(await this.queue.oldestQueues(BUSIEST_REPORTED, now));
    } catch (error) {
      this.logger.warn(`Expiring queued messages failed: ${(error as Error).message}`);
    } finally {
      this.sweeping = false;
    }
    return total;
  }
}
