import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { EventsService } from '../events/events.service';
import { QueueService } from '../queue/queue.service';
import { QueueKeys } from '../redis/keys';
import type { RedisClient } from '../redis/lua-scripts';
import { InjectRedis } from '../redis/redis.constants';
import { SweepsService, type Sweep } from './sweeps.service';

const SWEEP_EVERY_MS = 1000;
/** One sweep stops taking new rounds once this is spent (80% of its period), so sweeps never pile up. */
export const SWEEP_BUDGET_MS = 800;
/** Due messages taken per round, oldest first, their users checked at once (pipelined): bounded concurrency. */
const ROUND = 500;
/** How deep into a user's owed messages, and into its queue, a due message is looked for. */
export const UNREAD_SCAN = 1000;

/**
 * UNREAD_AFTER_SECONDS: a stored message is filed in `rm:unread` under the time it
 * becomes due (EventsService.routed) and leaves it when acked. Every second the
 * holder of route shard 0 (one instance at a time) takes the due ones, a round at a
 * time until none is due or SWEEP_BUDGET_MS is spent, asks each
 * user's keys which are still unacked (unread-5.lua: owed and not acked, or queued),
 * and writes one `unread` event for each of those. A message dropped, expired or
 * replaced before then is simply not found. Each member is removed before its
 * event is written, and only by the instance whose ZREM removed it: at most once.
 */
@Injectable()
export class UnreadService implements Sweep, OnModuleInit {
  readonly everyMs = SWEEP_EVERY_MS;
  readonly budgetMs = SWEEP_BUDGET_MS;
  private readonly logger = new Logger('Unread');

  constructor(
    @InjectRedis() private readonly redis: RedisClient,
    private readonly queue: QueueService,
    private readonly sweeps: SweepsService,
    private readonly keys: QueueKeys,
    private readonly events: EventsService,
  ) {}

  onModuleInit(): void {
    if (this.events.tracksUnread) this.sweeps.register(this);
  }

  /** Writes the `unread` events that are due; returns how many (0 when not run: see SweepsService.run). */
  sweep(now = Date.now()): Promise<number> {
    return this.sweeps.run(this, now);
  }

  /**
   * One run (SweepsService calls it on shard 0's holder, never two at once). A checked member
   * leaves the index whether found or not; the members of a user whose check failed stay at
   * the front of the due range, so the next round starts past them (`skip`) and the next
   * sweep tries them again: one bad key stalls nobody.
   */
  async pass(now: number, more: () => boolean): Promise<number> {
    let written = 0;
    try {
      let skip = 0;
      while (more()) {
        const due = await this.redis.zrangebyscore(this.keys.unreadIndex, '-inf', now, 'LIMIT', skip, ROUND);
        const byUser = new Map<string, string[]>();
        for (const member of due) {
          const bar = member.indexOf('|');
          const user = member.slice(0, bar);
          let ids = byUser.get(user);
          if (!ids) byUser.set(user, (ids = []));
          ids.push(member.slice(bar + 1));
        }
        const counts = await Promise.all(
          [...byUser].map(([user, ids]) =>
            this.check(user, ids, now).catch((error: Error) => {
              skip += ids.length;
              this.logger.warn(`Looking for unread messages of ${user} failed (tried again next sweep): ${error.message}`);
              return 0;
            }),
          ),
        );
        written += counts.reduce((a, b) => a + b, 0);
        if (due.length < ROUND) break;
      }
    } catch (error) {
      this.logger.warn(`Looking for unread messages failed: ${(error as Error).message}`);
    }
    return written;
  }

  private async check(user: string, ids: string[], now: number): Promise<number> {
    const found = new Map((await this.queue.unacked(user, ids, UNREAD_SCAN)).map((fact) => [fact.id, fact]));
    // Removed one by one: only the instance whose ZREM took a member writes its event.
    const removed = await Promise.all(ids.map((id) => this.redis.zrem(this.keys.unreadIndex, `${user}|${id}`)));
    let written = 0;
    ids.forEach((id, i) => {
      const fact = found.get(id);
      if (!fact || removed[i] !== 1) return;
      this.events.unread(user, id, fact.channel, Math.max(0, Math.floor((now - fact.ts) / 1000)));
      written++;
    });
    return written;
  }
}
