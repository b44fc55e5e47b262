import { Injectable, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { ShardsService } from '../router/shards.service';

/** The one timer's period: every sweep's period is a multiple of it. */
const TICK_MS = 1000;

/** A deployment-wide sweep: run every `everyMs` by the holder of route shard 0 (one instance at a time). */
export interface Sweep {
  /** How often it runs: a multiple of TICK_MS (1 s). */
  readonly everyMs: number;
  /** A run takes no new page once this is spent (80% of its period), so runs never pile up. */
  readonly budgetMs: number;
  /**
   * One run; resolves with what it did (a count), never rejects. It takes another page only
   * while `more()`: its budget is not spent and this instance still holds shard 0.
   */
  pass(now: number, more: () => boolean): Promise<number>;
}

/**
 * Runs the sweeps (queue expiry, `unread`, `notify`) on the holder of route shard 0, from
 * one timer: each sweep every its own period, with its own budget, never two runs of one
 * sweep at once (a run still going when its next falls due is not run again meanwhile).
 * The sweeps run side by side: a long expiry run does not hold up the one-second ones.
 */
@Injectable()
export class SweepsService implements OnModuleInit, OnApplicationShutdown {
  private readonly sweeps: Sweep[] = [];
  private readonly running = new Set<Sweep>();
  private timer?: NodeJS.Timeout;
  private ticks = 0;

  constructor(private readonly shards: ShardsService) {}

  /** Runs `sweep` every `sweep.everyMs` from now on (called from the sweep's onModuleInit). */
  register(sweep: Sweep): void {
    this.sweeps.push(sweep);
  }

  onModuleInit(): void {
    this.timer = setInterval(() => this.tick(), TICK_MS);
  }

  onApplicationShutdown(): void {
    clearInterval(this.timer);
  }

  /**
   * One run of `sweep`, now; 0 without running when this instance does not hold shard 0 or a
   * run of it is under way.
   */
  async run(sweep: Sweep, now = Date.now()): Promise<number> {
    if (this.running.has(sweep) || !this.shards.holds(0)) return 0;
    this.running.add(sweep);
    try {
      const deadline = Date.now() + sweep.budgetMs;
      return await sweep.pass(now, () => Date.now() < deadline && this.shards.holds(0));
    } finally {
      this.running.delete(sweep);
    }
  }

  private tick(): void {
    this.ticks++;
    for (const sweep of this.sweeps) if (this.ticks % Math.round(sweep.everyMs / TICK_MS) === 0) void this.run(sweep);
  }
}
