import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { InjectMessengerOptions, type MessengerOptions } from '../config/messenger-options';
import { MetricsService } from '../metrics/metrics.service';
import { parseControlLine } from '../protocol/control-lines';
import { QueueKeys } from '../redis/keys';
import { defineScripts, type RedisClient } from '../redis/lua-scripts';
import { InjectRedis } from '../redis/redis.constants';
import { SHARD_COUNT } from './shards';

/** A shard lease lasts this long unless renewed; renewals come every tick. A dead instance's shards move within about TTL + TICK. */
export const SHARD_TTL_MS = 1500;
const SHARD_TICK_MS = 300;
/**
 * A message of a shard being handed to this instance waits at most this long for the hand-over to
 * complete (the previous holder announces it once its last routes of the shard are stored). A
 * loaded machine or a Redis failover can delay that announcement by seconds; past this, the
 * message is dropped, so waiting longer only costs that shard's latency in the rare slow case.
 */
const HANDOVER_WAIT_MS = 10_000;
/** A message of a shard whose lease this instance could not renew (Redis away) waits this long for Redis to answer. */
const LAPSED_WAIT_MS = 30_000;

/** The answer to "whose is this message", asked as it is heard: an epoch to route it with, not ours, or wait for a hand-over. */
export const NOT_MINE = 0;
export const PENDING = -1;
/**
 * Heard while this instance held the shard with `epoch` but its lease had lapsed (Redis slow or
 * away, this process stalled): a value below PENDING that names the epoch. Only that epoch may
 * route the message: if the shard changed hands meanwhile, the holder in between heard it too.
 */
export const lapsed = (epoch: number): number => -2 - epoch;
/** The epoch a `lapsed(epoch)` value names (the mapping is its own inverse). */
const lapsedEpoch = lapsed;
export const isLapsed = (heard: number): boolean => heard <= -2;

/**
 * This instance's share of routing: the route shards it holds, under leases kept
 * in one Redis hash by shards-1.lua (rendezvous hashing over the live instances,
 * a new epoch per new holder, hand-overs announced in order with the published
 * messages on the control channel). `epochFor` is asked as each message is heard,
 * so ownership follows the stream: a holder handing a shard over routes what it
 * heard before the announcement, the new holder what it heard after.
 */
@Injectable()
export class ShardsService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(ShardsService.name);
  /** Shards routed here, with the epoch of their lease. */
  private readonly owned = new Map<number, number>();
  /** Shards being handed to this instance: their messages wait (PENDING) until the hand-over completes. */
  private readonly incoming = new Map<number, number>();
  /** Shards this instance announced handing over, until it has routed what it heard before the announcement. */
  private readonly handing = new Set<number>();
  /** Shards whose hand-over Redis announced for this instance, until the announcement is heard (then `handing`). */
  private readonly announced = new Set<number>();
  /**
   * Shards taken by a completion line ('t'), with how many ticks had been sent when it was
   * heard. The line comes on the subscriber connection and a tick's answer on the command
   * one: the answer to a tick Redis ran before the completion can arrive after the line, and
   * must not take the shard away again (this instance and the previous holder would both
   * ignore its messages until the next tick).
   */
  private readonly taken = new Map<number, number>();
  /** Hand-overs this instance finished routing up to their announcement, until a tick has told Redis (one may fail: Redis away). */
  private readonly completing = new Set<number>();
  private ticksSent = 0;
  private readonly waiters = new Set<() => void>();
  private leaseUntil = 0;
  private timer?: NodeJS.Timeout;
  private ticking?: Promise<void>;
  private leaving = false;
  private listening = false;
  private failing = false;

  constructor(
    @InjectRedis() private readonly redis: RedisClient,
    @InjectMessengerOptions() private readonly options: MessengerOptions,
    private readonly keys: QueueKeys,
    private readonly metrics: MetricsService,
  ) {
    defineScripts(redis);
  }

  get instanceId(): string {
    return this.options.instanceId;
  }

  /**
   * Takes part in the leases only once the router hears the published messages and the control
   * channel (`listen`): a hand-over to this instance announced before it listens would be missed,
   * and what is published between that announcement and the next tick routed by nobody.
   */
  onModuleInit(): void {
    this.timer = setInterval(() => void (this.listening && this.tick()), SHARD_TICK_MS);
  }

  /** The router's subscriptions are confirmed: join the routing instances now. */
  listen(): void {
    if (this.listening || this.leaving) return;
    this.listening = true;
    void this.tick();
  }

  onApplicationShutdown(): void {
    clearInterval(this.timer);
  }

  /** How many shards this instance routes now. */
  get held(): number {
    return this.owned.size;
  }

  /** True while this instance holds `shard` (shard 0's holder also runs the deployment-wide sweeps). */
  holds(shard: number): boolean {
    return this.owned.has(shard) && Date.now() < this.leaseUntil;
  }

  /**
   * The epoch to route a message of `shard` with, as it is heard now: the lease's
   * epoch, NOT_MINE, PENDING (a hand-over to this instance is under way), or `lapsed(epoch)`:
   * this instance held the shard but could not renew the lease in time (Redis away, the
   * process stalled). A lapsed lease is not assumed (another instance may hold it by now)
   * but asked of Redis again before the message is routed or dropped (`whenHeld`).
   */
  epochFor(shard: number): number {
    const epoch = this.owned.get(shard);
    if (epoch !== undefined) return Date.now() < this.leaseUntil ? epoch : lapsed(epoch);
    return this.incoming.has(shard) ? PENDING : NOT_MINE;
  }

  /**
   * Resolves with the epoch to route a message heard as `heard` (PENDING or `lapsed(epoch)`)
   * once this instance holds the shard, or NOT_MINE when it turns out not to: for a lapsed
   * one, also when the shard is held with a higher epoch by now (it changed hands in between,
   * and the holder in between routed what it heard: routing it again would store it twice).
   */
  async whenHeld(shard: number, heard = PENDING): Promise<number> {
    const started = Date.now();
    const heardEpoch = isLapsed(heard) ? lapsedEpoch(heard) : undefined;
    for (;;) {
      const epoch = this.owned.get(shard);
      const fresh = Date.now() < this.leaseUntil;
      // Held with a higher epoch now: another instance held the shard in between, and routed what
      // it heard. A lower one: Redis lost the leases (restarted empty), so nobody can have routed it.
      if (heardEpoch !== undefined && epoch !== undefined && epoch > heardEpoch) return NOT_MINE;
      if (epoch !== undefined && fresh && !this.incoming.has(shard)) return epoch;
      if (epoch === undefined && !this.incoming.has(shard)) return NOT_MINE;
      const waited = Date.now() - started;
      if (waited > (this.incoming.has(shard) ? HANDOVER_WAIT_MS : LAPSED_WAIT_MS)) break;
      if (!fresh) await this.tick();
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.waiters.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, 50);
        this.waiters.add(wake);
      });
    }
    this.incoming.delete(shard);
    return NOT_MINE;
  }

  /**
   * A line of the control channel (protocol/control-lines.ts), handled where it falls among the heard messages.
   * Returns the shard this instance must complete handing over once it has routed
   * everything heard before the line, or undefined.
   */
  control(line: string): number | undefined {
    const parsed = parseControlLine(line);
    if (!parsed || parsed.shard >= SHARD_COUNT) return undefined;
    const { kind, shard, epoch } = parsed;
    const toMe = parsed.to === this.instanceId;
    if (kind === 'handOver') {
      if (toMe) {
        this.incoming.set(shard, epoch + 1);
      } else if (this.owned.has(shard)) {
        this.owned.delete(shard);
        this.announced.delete(shard);
        this.handing.add(shard);
        return shard;
      }
    } else if (kind === 'taken' && toMe) {
      this.owned.set(shard, epoch);
      this.taken.set(shard, this.ticksSent);
      this.incoming.delete(shard);
      this.wake();
      // The lease is fresh as of the hand-over; the next tick renews it.
      this.leaseUntil = Math.max(this.leaseUntil, Date.now() + SHARD_TTL_MS / 2);
    }
    return undefined;
  }

  /** This instance has routed everything it heard before handing `shard` over: the new holder takes it now. */
  async complete(shard: number): Promise<void> {
    this.handing.delete(shard);
    this.completing.add(shard);
    await this.tick();
  }

  /** Shutting down: hand every shard over now (the router then routes up to each announcement and completes). */
  async leave(): Promise<void> {
    this.leaving = true;
    clearInterval(this.timer);
    await this.tick();
  }

  /**
   * True while a hand-over this instance announced is not complete yet, its announcement not
   * yet heard included: a router that stopped listening before it would drop what was
   * published between its leave and the announcement, which no one else routes.
   */
  get handingOver(): boolean {
    return this.handing.size > 0 || this.announced.size > 0;
  }

  private tick(): Promise<void> {
    if (!this.listening) return Promise.resolve(); // never joined: nothing held, nothing to leave
    const run = async () => {
      await this.ticking;
      const askedAt = Date.now();
      const tickNo = ++this.ticksSent;
      // Sent with every tick until one succeeds: a completion lost to a failed call would leave the new holder waiting.
      const completes = [...this.completing];
      try {
        const [, ...flat] = await this.metrics.timeRedis(
          'shards',
          this.redis.rmShards(this.keys.shards, this.instanceId, SHARD_TTL_MS, SHARD_COUNT, this.keys.controlChannel, this.leaving ? 'leave' : 'tick', ...completes),
        );
        for (const shard of completes) this.completing.delete(shard);
        this.apply(flat, askedAt, tickNo);
        if (this.failing) this.logger.log('Route shard leases are renewed again');
        this.failing = false;
      } catch (error) {
        if (!this.failing) this.logger.warn(`Renewing route shard leases failed: ${(error as Error).message}`);
        this.failing = true;
      }
    };
    const current = run();
    this.ticking = current;
    return current;
  }

  private apply(flat: number[], askedAt: number, tickNo: number): void {
    const held = new Map<number, { epoch: number; handing: boolean }>();
    for (let i = 0; i < flat.length; i += 3) held.set(flat[i], { epoch: flat[i + 1], handing: flat[i + 2] === 1 });
    const before = this.owned.size;
    for (const [shard, { epoch, handing }] of held) {
      // A shard being handed over stays as it is until its announcement is heard in order.
      if (handing && this.owned.has(shard) && !this.handing.has(shard)) this.announced.add(shard);
      if (handing || this.handing.has(shard)) continue;
      this.owned.set(shard, epoch);
      this.incoming.delete(shard);
    }
    // A shard taken after this tick was sent is missing from its answer only because Redis ran the tick first.
    const takenSince = (shard: number) => (this.taken.get(shard) ?? -1) >= tickNo;
    for (const shard of [...this.owned.keys()]) if (!held.has(shard) && !takenSince(shard)) this.owned.delete(shard);
    for (const shard of [...this.taken.keys()]) if (!takenSince(shard)) this.taken.delete(shard);
    for (const shard of [...this.handing]) if (!held.has(shard)) this.handing.delete(shard);
    for (const shard of [...this.announced]) if (!held.has(shard) || !this.owned.has(shard)) this.announced.delete(shard);
    // Counted from before the request: no lease in Redis outlives this.
    this.leaseUntil = askedAt + SHARD_TTL_MS;
    if (this.owned.size !== before) this.logger.log(`This instance now routes ${this.owned.size} of ${SHARD_COUNT} route shards`);
    this.metrics.setShards(this.owned.size);
    this.wake();
  }

  private wake(): void {
    for (const wake of [...this.waiters]) wake();
  }
}
