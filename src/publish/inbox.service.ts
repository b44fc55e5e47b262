import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { InjectMessengerOptions, type MessengerOptions } from '../config/messenger-options';
import { RateLimitedLog } from '../logging/rate-limited-log';
import { MetricsService } from '../metrics/metrics.service';
import { QueueKeys } from '../redis/keys';
import { defineScripts, type RedisClient } from '../redis/lua-scripts';
import { InjectRedis } from '../redis/redis.constants';
import { duplicateWithMoreTime } from '../redis/redis.module';
import { parseInboxEntry } from './inbox-entry';
import { PublishService, type Item } from './publish.service';
import { UnusableKeys } from '../queue/queue.service';
import type { Publication } from './publication';

/** The reading instance renews its lease every read; a dead one's lease lapses after this, and another takes over. */
const LEASE_MS = 5000;
/** How long one read waits for new entries (well inside the lease), and how many it takes. */
const BLOCK_MS = 1000;
const COUNT = 500;
/** How often an instance without the lease asks for it. */
const STANDBY_MS = 1000;
const LAG_EVERY_MS = 3000;
const DEAD_MAXLEN = 100_000;
/** Tries of an entry whose user's keys are unusable before it is dead-lettered (`store_failed`). */
const STORE_ATTEMPTS = 3;

type Entry = [id: string, fields: string[] | null];

/**
 * Reads the inbox stream rm:inbox as the consumer group `redmessenger` and stores its
 * entries. Every instance runs it; one at a time (the inbox lease) reads, so entries
 * for one user are stored in stream order. A new holder first claims every entry left
 * pending (by an instance that died or lost the lease) and stores those; the user's
 * inbox mark, checked in the same script that stores, makes a second store of an
 * entry a no-op. An entry is acknowledged only once stored (or dead-lettered).
 */
@Injectable()
export class InboxService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('Inbox');
  /** A producer can add invalid entries by the thousand: at most one line a second (each is in rm:inbox:dead). */
  private readonly warnings = new RateLimitedLog(this.logger);
  private readonly token = randomBytes(12).toString('hex');
  /** Blocking reads wait on a connection of their own, so the command connection never waits behind them. */
  private reader?: RedisClient;
  private running?: Promise<void>;
  private stopped = false;
  private holding = false;
  private lagTimer?: NodeJS.Timeout;
  private failingSince = 0;
  /** Entry id -> failed stores because of unusable keys (bounded: a handful of entries at a time). */
  private readonly storeFailures = new Map<string, number>();

  constructor(
    @InjectRedis() private readonly redis: RedisClient,
    @InjectMessengerOptions() private readonly options: MessengerOptions,
    private readonly keys: QueueKeys,
    private readonly publish: PublishService,
    private readonly metrics: MetricsService,
  ) {
    defineScripts(redis);
  }

  onApplicationBootstrap(): void {
    // Its command timeout counts from the end of the BLOCK.
    this.reader = duplicateWithMoreTime(this.redis, BLOCK_MS, 'inbox');
    this.running = this.run();
    this.lagTimer = setInterval(() => void this.refreshLag(), LAG_EVERY_MS);
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearInterval(this.lagTimer);
    // The batch being stored finishes (a blocked read ends within BLOCK_MS); then the lease goes at once.
    await Promise.race([this.running, sleep(BLOCK_MS + 2000)]);
    if (this.holding) await Promise.race([this.lease('release').catch(() => 0), sleep(500)]);
    this.reader?.disconnect();
  }

  private async run(): Promise<void> {
    let backoff = 200;
    while (!this.stopped) {
      try {
        if ((await this.lease()) !== 1) {
          if (this.holding) this.logger.log('Another instance reads the inbox now');
          this.holding = false;
          await sleep(STANDBY_MS);
          continue;
        }
        if (!this.holding) {
          await this.ensureGroup();
          this.logger.log(`Reading the inbox ${this.keys.inbox} (consumer group ${this.keys.inboxGroup})`);
          // Whatever is pending was read by an earlier holder (dead, or its lease lapsed): it goes first, in order.
          await this.claimPending();
          this.holding = true;
        }
        const entries = await this.read();
        if (entries.length > 0 && !this.stopped) await this.handle(entries);
        backoff = 200;
        if (this.failingSince) this.logger.log('Reading the inbox again');
        this.failingSince = 0;
      } catch (error) {
        // Redis away, or a store failed: start over from what the group holds (claim, then read).
        this.holding = false;
        if (!this.failingSince) {
          this.failingSince = Date.now();
          this.logger.warn(`Inbox: ${(error as Error).message}; retrying with backoff, from where the group left off`);
        }
        if ((error as Error).message.includes('NOGROUP')) await this.ensureGroup().catch(() => undefined);
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 5000);
      }
    }
  }

  private lease(release?: 'release'): Promise<number> {
    return this.metrics.timeRedis('lease', this.redis.rmLease(this.keys.inboxLease, this.token, LEASE_MS, release ?? ''));
  }

  /** From the beginning of the stream: entries added while no instance ran are not skipped. */
  private async ensureGroup(): Promise<void> {
    try {
      await this.redis.xgroup('CREATE', this.keys.inbox, this.keys.inboxGroup, '0', 'MKSTREAM');
      this.logger.log(`Created the consumer group ${this.keys.inboxGroup} of ${this.keys.inbox}`);
    } catch (error) {
      if (!(error as Error).message.includes('BUSYGROUP')) throw error;
    }
  }

  private async claimPending(): Promise<void> {
    let cursor = '0-0';
    let claimed = 0;
    do {
      const [next, entries, deleted] = (await this.redis.xautoclaim(this.keys.inbox, this.keys.inboxGroup, this.options.instanceId, 0, cursor, 'COUNT', COUNT)) as [string, Entry[], string[]?];
      cursor = next;
      // Entries deleted from the stream while pending (XDEL, trimming) have nothing to store.
      const gone = [...(deleted ?? []), ...entries.filter(([, fields]) => !fields).map(([id]) => id)];
      if (gone.length > 0) await this.redis.xack(this.keys.inbox, this.keys.inboxGroup, ...gone);
      const live = entries.filter(([, fields]) => fields);
      if (live.length > 0) await this.handle(live);
      claimed += live.length;
    } while (cursor !== '0-0' && !this.stopped);
    if (claimed > 0) this.logger.log(`Claimed ${claimed} inbox entries left pending by an earlier reader; stored each once`);
  }

  private async read(): Promise<Entry[]> {
    const answer = (await this.reader!.xreadgroup('GROUP', this.keys.inboxGroup, this.options.instanceId, 'COUNT', COUNT, 'BLOCK', BLOCK_MS, 'STREAMS', this.keys.inbox, '>')) as Array<[string, Entry[]]> | null;
    return answer?.[0]?.[1] ?? [];
  }

  /** Stores a batch in stream order, dead-letters the invalid entries, then acknowledges them all. */
  private async handle(entries: Entry[]): Promise<void> {
    const items: Item[] = [];
    const dead: Array<{ id: string; fields: string[]; reason: string }> = [];
    const now = Date.now();
    for (const [id, fields] of entries) {
      const parsed = parseInboxEntry(fields ?? [], this.options.maxPublishBytes);
      if ('reason' in parsed) dead.push({ id, fields: fields ?? [], reason: parsed.reason });
      else items.push({ publication: parsed as Publication, id: this.publish.newId(), ts: now, inboxEntry: id });
    }
    const results = await this.publish.storeAll(items);
    const failed = results.flatMap((result, i) => (result.failed ? [i] : []));
    if (failed.length > 0) {
      this.metrics.inboxEntries('failed', failed.length);
      // Unusable keys fail the same way each time: after STORE_ATTEMPTS such an entry is dead-lettered, blocking nothing behind it.
      const retry = failed.filter((i) => !(results[i].failed instanceof UnusableKeys) || this.failedAgain(items[i].inboxEntry!) < STORE_ATTEMPTS);
      if (retry.length > 0) throw new Error(`storing ${failed.length} of ${items.length} entries failed (${results[retry[0]].failed!.message})`);
      const fieldsOf = new Map(entries);
      for (const i of failed) {
        const id = items[i].inboxEntry!;
        this.storeFailures.delete(id);
        dead.push({ id, fields: fieldsOf.get(id) ?? [], reason: 'store_failed' });
      }
    }
    let duplicates = 0;
    results.forEach((result) => {
      if (result.stored === 0 && result.repeated > 0) duplicates++;
    });
    for (const { id, fields, reason } of dead) {
      await this.redis.xadd(this.keys.inboxDead, 'MAXLEN', '~', DEAD_MAXLEN, '*', ...fields, 'reason', reason);
      // The entry's id and why, never its payload.
      const why = reason === 'store_failed' ? `could not be stored ${STORE_ATTEMPTS} times: the recipient's keys are unusable` : `is not valid (${reason})`;
      this.warnings.warn('dead', `Inbox entry ${id} ${why}: moved to ${this.keys.inboxDead}`);
    }
    await this.redis.xack(this.keys.inbox, this.keys.inboxGroup, ...entries.map(([id]) => id));
    this.metrics.inboxEntries('stored', items.length - duplicates - failed.length);
    this.metrics.inboxEntries('duplicate', duplicates);
    this.metrics.inboxEntries('dead', dead.length);
    if (Logger.isLevelEnabled('debug')) this.logger.debug(`Stored ${items.length} inbox entries (${duplicates} stored before), ${dead.length} dead-lettered`);
  }

  /** Counts one more failed store of an entry; returns how many so far. */
  private failedAgain(entry: string): number {
    if (this.storeFailures.size > 10_000) this.storeFailures.clear();
    const n = (this.storeFailures.get(entry) ?? 0) + 1;
    this.storeFailures.set(entry, n);
    return n;
  }

  /** Entries not yet stored: pending in the group plus not yet read (XINFO GROUPS). */
  private async refreshLag(): Promise<void> {
    try {
      const groups = (await this.redis.xinfo('GROUPS', this.keys.inbox)) as Array<Array<string | number | null>>;
      for (const flat of groups) {
        const info = new Map<string, string | number | null>();
        for (let i = 0; i + 1 < flat.length; i += 2) info.set(String(flat[i]), flat[i + 1]);
        if (info.get('name') !== this.keys.inboxGroup) continue;
        this.metrics.setInboxLag(Number(info.get('pending') ?? 0) + Number(info.get('lag') ?? 0));
      }
    } catch {
      // No stream yet, or Redis away: the gauge keeps its last value.
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
