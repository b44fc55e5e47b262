import { Injectable, Logger, Optional } from '@nestjs/common';
import { InjectMessengerOptions, type MessengerOptions } from '../config/messenger-options';
import type { EventType } from '../metrics/metrics.constants';
import { MetricsService } from '../metrics/metrics.service';
import { envelopeChannel, envelopeId, envelopeTs } from '../protocol/envelope';
import type { AbsenceCheck, MessageFact, RouteGroup } from '../queue/queue.service';
import type { RouteSummary } from '../queue/route-outcome';
import { QueueKeys } from '../redis/keys';
import type { RedisClient } from '../redis/lua-scripts';
import { InjectRedis } from '../redis/redis.constants';
import { DeliveryListener, type DropCause } from './delivery-listener';

/**
 * The facts of delivery, told to whoever listens: entries of EVENTS_STREAM (one
 * XADD each, from the instance that saw the fact, right after the script that made
 * it), the host application's DeliveryListener, and the unread index. Callers call
 * the fact's method where the fact is known; each method returns at once, costs
 * nothing that is off (no stream: not one Redis command; no listener: no call),
 * and never throws.
 */
@Injectable()
export class EventsService {
  private readonly logger = new Logger('Events');
  private readonly stream?: string;
  private readonly unreadAfterMs: number;
  /** NOTIFY_AFTER_SECONDS in ms (0: absences are not tracked). */
  readonly notifyAfterMs: number;
  /** NOTIFY_REPEAT_SECONDS in ms (0: one notify per absence). */
  readonly notifyRepeatMs: number;
  private failing = false;

  constructor(
    @InjectRedis() private readonly redis: RedisClient,
    @InjectMessengerOptions() private readonly options: MessengerOptions,
    private readonly keys: QueueKeys,
    private readonly metrics: MetricsService,
    @Optional() private readonly listener?: DeliveryListener,
  ) {
    this.stream = options.eventsStream || undefined;
    this.unreadAfterMs = this.stream ? options.unreadAfterSeconds * 1000 : 0;
    this.notifyAfterMs = this.stream ? options.notifyAfterSeconds * 1000 : 0;
    this.notifyRepeatMs = options.notifyRepeatSeconds * 1000;
  }

  /** Absence bookkeeping is on (EVENTS_STREAM and NOTIFY_AFTER_SECONDS > 0). */
  get tracksAbsences(): boolean {
    return this.notifyAfterMs > 0;
  }

  /** Unread bookkeeping is on (EVENTS_STREAM and UNREAD_AFTER_SECONDS > 0). */
  get tracksUnread(): boolean {
    return this.unreadAfterMs > 0;
  }

  /** Whether acks must say which messages they acked (the ack script answers more then). */
  get wantsAcks(): boolean {
    return this.stream !== undefined || this.listener?.acked !== undefined;
  }

  /** A message was sent to a socket of the user. */
  delivered(user: string, id: string, envelope: string): void {
    if (this.listener?.delivered) this.hook('delivered', { user, id, channel: envelopeChannel(envelope) ?? '' });
  }

  /** route.lua stored (or refused) a group of the user's messages. */
  routed(group: RouteGroup, route: RouteSummary): void {
    const { user, messages } = group;
    this.dropped(user, route.capped, route.capDrop);
    if (!route.stored) return;
    if (route.queued > 0 && this.listener?.queued) this.hook('queued', { user, count: route.queued });
    if (this.tracksAbsences) {
      const ts = envelopeTs(messages[0].envelope);
      if (ts !== undefined) this.checkAbsence(user, ts + this.notifyAfterMs);
    }
    if (!this.tracksUnread) return;
    // Every message of the group: one refused or replaced is simply not found when it is due.
    const scored: Array<number | string> = [];
    for (const { envelope } of messages) {
      const id = envelopeId(envelope);
      const ts = envelopeTs(envelope);
      if (id !== undefined && ts !== undefined) scored.push(ts + this.unreadAfterMs, `${user}|${id}`);
    }
    if (scored.length > 0) this.redis.zadd(this.keys.unreadIndex, ...scored).catch((error: Error) => this.failed('unread index', error));
  }

  /** Messages of the user were acked (as ack-5.lua answered: each once). */
  acked(user: string, facts: MessageFact[], now = Date.now()): void {
    if (facts.length === 0) return;
    for (const { id, ts, channel } of facts) {
      this.write('acked', ['user', user, 'id', id, 'channel', channel, 'latency_ms', ts > 0 ? Math.max(0, now - ts) : 0]);
      if (this.listener?.acked) this.hook('acked', { user, id, channel });
    }
    if (this.tracksUnread) {
      this.redis.zrem(this.keys.unreadIndex, ...facts.map(({ id }) => `${user}|${id}`)).catch((error: Error) => this.failed('unread index', error));
    }
  }

  dropped(user: string, count: number, reason: DropCause): void {
    if (count <= 0) return;
    this.write('dropped', ['user', user, 'count', count, 'reason', reason]);
    if (this.listener?.dropped) this.hook('dropped', { user, count, reason });
  }

  /** The user's first connection (on any instance) registered. */
  online(user: string): void {
    this.write('online', ['user', user]);
  }

  /** The user's last connection (on any instance) went. */
  offline(user: string): void {
    this.write('offline', ['user', user]);
  }

  unread(user: string, id: string, channel: string, ageSeconds: number): void {
    this.write('unread', ['user', user, 'id', id, 'channel', channel, 'age_s', ageSeconds]);
  }

  /** The user started or stopped looking (a socket's visibility, a socket came or went): an absence may start or end `after` from now. */
  lookingChanged(user: string): void {
    if (this.tracksAbsences) this.checkAbsence(user, Date.now() + this.notifyAfterMs);
  }

  /** What waits for a user in a notified absence changed (acked, retracted): it may have ended, or its count changed. */
  absenceChanged(user: string): void {
    if (this.tracksAbsences) this.checkAbsence(user, Date.now());
  }

  /** One absence's notify (see queue/lua/notify-5.lua for the fields). */
  notify(user: string, check: AbsenceCheck): void {
    // first_id and last_id are '' when no waiting message has an id (raw entries are counted, not named).
    this.write('notify', ['user', user, 'count', check.count, 'first_id', check.firstId, 'last_id', check.lastId, 'collapse_keys', check.collapseKeys, 'age_s', check.ageSeconds]);
  }

  resolved(user: string): void {
    this.write('resolved', ['user', user]);
  }

  /**
   * Files the user's absence check for `at` (ms) in `rm:notify`, or earlier if one is filed
   * already (ZADD LT): NotifyService decides when it falls due, from the user's keys alone.
   */
  private checkAbsence(user: string, at: number): void {
    this.redis.zadd(this.keys.notifyIndex, 'LT', at, user).catch((error: Error) => this.failed('the absence index', error));
  }

  private write(type: EventType, fields: Array<string | number>): void {
    if (!this.stream) return;
    this.redis.xadd(this.stream, 'MAXLEN', '~', this.options.eventsMaxLen, '*', 'type', type, ...fields).then(
      () => {
        this.metrics.event(type);
        this.failing = false;
      },
      (error: Error) => this.failed(`a ${type} event`, error),
    );
  }

  /** Once per outage, not once per event. */
  private failed(what: string, error: Error): void {
    if (!this.failing) this.logger.warn(`Writing ${what} to Redis failed (missing, never retried): ${error.message}`);
    this.failing = true;
  }

  private hook<K extends keyof DeliveryListener>(name: K, event: Parameters<NonNullable<DeliveryListener[K]>>[0]): void {
    const listener = this.listener!;
    try {
      const result = (listener[name] as (e: typeof event) => unknown).call(listener, event) as { then?: unknown } | undefined;
      if (result && typeof result.then === 'function') (result as Promise<unknown>).then(undefined, (error) => this.hookFailed(name, error));
    } catch (error) {
      this.hookFailed(name, error);
    }
  }

  private hookFailed(name: string, error: unknown): void {
    this.logger.error(`DeliveryListener.${name} failed (ignored): ${(error as Error)?.message ?? error}`);
  }
}
