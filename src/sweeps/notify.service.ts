import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { EventsService } from '../events/events.service';
import { QueueService } from '../queue/queue.service';
import { QueueKeys } from '../redis/keys';
import type { RedisClient } from '../redis/lua-scripts';
import { InjectRedis } from '../redis/redis.constants';
import { SweepsService, type Sweep } from './sweeps.service';
import { SWEEP_BUDGET_MS, UNREAD_SCAN } from './unread.service';

const SWEEP_EVERY_MS = 1000;
/** Users whose check fell due, taken per round (their checks run together: bounded concurrency). */
const ROUND = 500;

/**
 * NOTIFY_AFTER_SECONDS: one `notify` per absence, a `resolved` when it ends. What can start
 * or end an absence files the user in `rm:notify` under when to look (EventsService: a
 * message stored, a socket's visibility, a socket come or gone, an ack or retract in a
 * notified absence). Every second the holder of route shard 0 takes the users due, a round
 * at a time within SWEEP_BUDGET_MS; each is taken out of the index by one ZREM (only the
 * instance whose ZREM removed it goes on), decided by notify-5.lua from the user's keys
 * alone (so a visible socket on any instance counts), its event written, and filed again
 * for when the script says to look next (ZADD LT: a change filed meanwhile keeps its
 * earlier time). The script's 'N' field makes two checks of one absence write one notify.
 */
@Injectable()
export class NotifyService implements Sweep, OnModuleInit {
  readonly everyMs = SWEEP_EVERY_MS;
  readonly budgetMs = SWEEP_BUDGET_MS;
  private readonly logger = new Logger('Notify');

  constructor(
    @InjectRedis() private readonly redis: RedisClient,
    private readonly queue: QueueService,
    private readonly sweeps: SweepsService,
    private readonly keys: QueueKeys,
    private readonly events: EventsService,
  ) {}

  onModuleInit(): void {
    if (this.events.tracksAbsences) this.sweeps.register(this);
  }

  /** Decides the absences that fell due; returns how many events were written (0 when not run: see SweepsService.run). */
  sweep(now = Date.now()): Promise<number> {
    return this.sweeps.run(this, now);
  }

  /** One run (SweepsService calls it on shard 0's holder, never two at once). */
  async pass(now: number, more: () => boolean): Promise<number> {
    let written = 0;
    try {
      while (more()) {
        const due = await this.redis.zrangebyscore(this.keys.notifyIndex, '-inf', now, 'LIMIT', 0, ROUND);
        const counts = await Promise.all(due.map((user) => this.check(user)));
        written += counts.reduce((a, b) => a + b, 0);
        if (due.length < ROUND) break;
      }
    } catch (error) {
      this.logger.warn(`Checking absences failed: ${(error as Error).message}`);
    }
    return written;
  }

  private async check(user: string): Promise<number> {
    if ((await this.redis.zrem(this.keys.notifyIndex, user)) !== 1) return 0; // another instance took it
    try {
      const result = await this.queue.absence(user, this.events.notifyAfterMs, this.events.notifyRepeatMs, UNREAD_SCAN);
      if (result.next > 0) await this.redis.zadd(this.keys.notifyIndex, 'LT', result.next, user);
      if (result.action === 'notify') this.events.notify(user, result);
      else if (result.action === 'resolved') this.events.resolved(user);
      return result.action ? 1 : 0;
    } catch (error) {
      // Filed again a second from now: one user's bad keys stall nobody, and are tried again.
      this.logger.warn(`Checking the absence of ${user} failed (tried again): ${(error as Error).message}`);
      await this.redis.zadd(this.keys.notifyIndex, 'LT', Date.now() + SWEEP_EVERY_MS, user).catch(() => undefined);
      return 0;
    }
  }
}
