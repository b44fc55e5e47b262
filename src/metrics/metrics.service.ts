import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import {
  BUSIEST_QUEUES,
  DELIVERY_LATENCY_BUCKETS,
  DROP_REASONS,
  HTTP_PUBLISH_OUTCOMES,
  INBOX_OUTCOMES,
  EVENT_TYPES,
  IDENTIFIED_OUTCOMES,
  IDENTIFY_OUTCOMES,
  METRIC_PREFIX,
  OTHER,
  REDIS_COMMANDS,
  REDIS_DURATION_BUCKETS,
  SOCKET_CLOSE_CAUSES,
  type DropReason,
  type HttpPublishOutcome,
  type InboxOutcome,
  type EventType,
  type IdentifyOutcome,
  type RedisCommand,
  type SocketCloseCause,
} from './metrics.constants';

/** One of the busiest user queues, as the app samples it (never the user id: ranks only). */
export interface BusyQueue {
  depth: number;
  oldestAgeSeconds: number;
}

/** `value` if it is one of `allowed`, else 'other'. */
function bounded<T extends string>(value: unknown, allowed: readonly T[]): T | typeof OTHER {
  return typeof value === 'string' && (allowed as readonly string[]).includes(value) ? (value as T) : OTHER;
}

/** A count to add: a finite number above zero, else nothing (counters never go down). */
const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n) && n > 0;

/** A gauge value: finite and not negative, else 0. */
const nonNegative = (n: unknown): number => (typeof n === 'number' && Number.isFinite(n) && n > 0 ? n : 0);

/**
 * RedMessenger's Prometheus metrics, on a registry of its own (never prom-client's
 * global one), so several applications in one process each count their own.
 * The rest of the server calls the plain methods below; `render()` is what
 * `GET /metrics` answers. No method ever throws: a bad argument is ignored or
 * recorded under the label 'other'.
 */
@Injectable()
export class MetricsService {
  /** The registry, for a host application that wants to merge it into its own (`Registry.merge`). */
  readonly registry = new Registry();

  private readonly connections = this.gauge('connections', 'Open WebSocket connections.');
  private readonly identifiedConnections = this.gauge('identified_connections', 'Open WebSocket connections that have identified.');
  private readonly identifyTotal = this.counter('identify_total', 'identify frames handled, by outcome.', ['outcome']);
  private readonly routedTotal = this.counter('messages_routed_total', 'Messages routed (one per recipient user).');
  private readonly deliveredTotal = this.counter('messages_delivered_total', 'Messages sent to a socket.');
  private readonly queuedTotal = this.counter('messages_queued_total', "Messages routed to an offline user's queue.");
  private readonly ackedTotal = this.counter('messages_acked_total', 'Messages acknowledged by a client.');
  private readonly requeuedTotal = this.counter('messages_requeued_total', 'Owed messages put back at the head of a queue.');
  private readonly droppedTotal = this.counter('messages_dropped_total', 'Messages dropped, by reason.', ['reason']);
  private readonly expiredTotal = this.counter('messages_expired_total', 'Messages removed because they expired.');
  private readonly eventsTotal = this.counter('events_total', 'Entries written to EVENTS_STREAM, by type.', ['type']);
  private readonly subscriberLostTotal = this.counter('subscriber_disconnects_total', 'Times the pub/sub connection dropped: PUBLISHes sent while it was down were not heard.');
  private readonly socketsClosedTotal = this.counter('sockets_closed_total', 'Sockets the server closed for cause, by cause.', ['cause']);
  private readonly routeBuffer = this.gauge('route_buffer_bytes', 'Bytes of heard messages waiting to be routed.');
  private readonly shardsHeld = this.gauge('route_shards', 'Route shards this instance holds.');
  private readonly deliveryLatency = new Histogram({
    name: `${METRIC_PREFIX}delivery_latency_seconds`,
    help: 'Time from receiving a published message to its ack.',
    buckets: DELIVERY_LATENCY_BUCKETS,
    registers: [this.registry],
  });
  private readonly redisDuration = new Histogram({
    name: `${METRIC_PREFIX}redis_command_duration_seconds`,
    help: 'Duration of Redis commands and scripts, by command.',
    labelNames: ['command'],
    buckets: REDIS_DURATION_BUCKETS,
    registers: [this.registry],
  });
  private readonly httpPublishTotal = this.counter('http_publish_total', 'POST /v1/messages requests, by outcome.', ['outcome']);
  private readonly inboxEntriesTotal = this.counter('inbox_entries_total', 'Inbox stream entries handled, by outcome.', ['outcome']);
  private readonly inboxLag = this.gauge('inbox_lag', 'Inbox entries not yet stored: pending in the consumer group plus not yet read.');
  private readonly queueDepth = this.gauge('queue_depth', 'Messages waiting for the busiest users, by rank (1 = busiest).', ['rank']);
  private readonly queueOldestAge = this.gauge('queue_oldest_age_seconds', 'Age of the oldest message of the busiest users, by rank.', ['rank']);

  private open = 0;
  private identifiedOpen = 0;
  private ranksSet = 0;

  constructor() {
    // Node.js process metrics, nodejs_eventloop_lag_seconds among them, under their standard names.
    collectDefaultMetrics({ register: this.registry });
    // Every bounded series exists from the start (at 0), so rate() and alerts see it before its first event.
    for (const outcome of IDENTIFY_OUTCOMES) this.identifyTotal.inc({ outcome }, 0);
    for (const reason of DROP_REASONS) this.droppedTotal.inc({ reason }, 0);
    for (const type of EVENT_TYPES) this.eventsTotal.inc({ type }, 0);
    for (const command of REDIS_COMMANDS) this.redisDuration.zero({ command });
    for (const outcome of HTTP_PUBLISH_OUTCOMES) this.httpPublishTotal.inc({ outcome }, 0);
    for (const outcome of INBOX_OUTCOMES) this.inboxEntriesTotal.inc({ outcome }, 0);
    for (const cause of SOCKET_CLOSE_CAUSES) this.socketsClosedTotal.inc({ cause }, 0);
  }

  /** The Content-Type of `render()`'s text (Prometheus text exposition format 0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Every metric in the Prometheus text exposition format. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** A WebSocket connection opened. */
  connectionOpened(): void {
    this.connections.set(++this.open);
  }

  /** A WebSocket connection closed (whether or not it had identified). */
  connectionClosed(): void {
    this.open = Math.max(0, this.open - 1);
    this.connections.set(this.open);
  }

  /** The server closed a socket for `cause` (a cut network, a flood, a slow consumer, an expired token). */
  socketClosed(cause: SocketCloseCause): void {
    this.socketsClosedTotal.inc({ cause });
  }

  /**
   * An identify ended with `outcome`. After `ok` or `replaced` the socket counts as
   * identified until `unidentified()`; call that when such a socket closes.
   */
  identified(outcome: IdentifyOutcome): void {
    const label = bounded(outcome, IDENTIFY_OUTCOMES);
    this.identifyTotal.inc({ outcome: label });
    if ((IDENTIFIED_OUTCOMES as readonly string[]).includes(label)) this.identifiedConnections.set(++this.identifiedOpen);
  }

  /** A socket counted as identified (`identified('ok' | 'replaced')`) closed. */
  unidentified(): void {
    this.identifiedOpen = Math.max(0, this.identifiedOpen - 1);
    this.identifiedConnections.set(this.identifiedOpen);
  }

  /** n messages routed (a group message counts once per member). */
  routed(n = 1): void {
    if (isCount(n)) this.routedTotal.inc(n);
  }

  /** n messages sent to a socket (a message sent to two sockets of a user counts twice). */
  delivered(n = 1): void {
    if (isCount(n)) this.deliveredTotal.inc(n);
  }

  /** n messages appended to an offline user's queue. */
  queued(n = 1): void {
    if (isCount(n)) this.queuedTotal.inc(n);
  }

  /**
   * n messages acked; `latenciesSeconds` (one per acked message, when known) are
   * observed in `delivery_latency_seconds`. A negative latency (clocks of two
   * instances apart) counts as 0; a value that is not a finite number is skipped.
   */
  acked(n: number, latenciesSeconds?: readonly number[]): void {
    if (isCount(n)) this.ackedTotal.inc(n);
    for (const latency of latenciesSeconds ?? []) {
      if (typeof latency === 'number' && Number.isFinite(latency)) this.deliveryLatency.observe(Math.max(0, latency));
    }
  }

  /** n owed messages went back to a queue (the user's last socket closed, or an instance died). */
  requeued(n: number): void {
    if (isCount(n)) this.requeuedTotal.inc(n);
  }

  /** n messages dropped for `reason` (anything outside the known reasons is recorded as 'other'). */
  dropped(reason: DropReason, n = 1): void {
    if (isCount(n)) this.droppedTotal.inc({ reason: bounded(reason, DROP_REASONS) }, n);
  }

  /** An entry of `type` was written to EVENTS_STREAM. */
  event(type: EventType): void {
    this.eventsTotal.inc({ type: bounded(type, EVENT_TYPES) });
  }

  subscriberLost(): void {
    this.subscriberLostTotal.inc();
  }

  setRouteBuffer(bytes: number): void {
    this.routeBuffer.set(nonNegative(bytes));
  }

  setShards(n: number): void {
    this.shardsHeld.set(nonNegative(n));
  }

  /** A POST /v1/messages ended with `outcome`. */
  httpPublished(outcome: HttpPublishOutcome): void {
    this.httpPublishTotal.inc({ outcome: bounded(outcome, HTTP_PUBLISH_OUTCOMES) });
  }

  /** n inbox entries ended with `outcome`. */
  inboxEntries(outcome: InboxOutcome, n = 1): void {
    if (isCount(n)) this.inboxEntriesTotal.inc({ outcome: bounded(outcome, INBOX_OUTCOMES) }, n);
  }

  setInboxLag(entries: number): void {
    this.inboxLag.set(nonNegative(entries));
  }

  /** n messages removed because they expired. */
  expired(n: number): void {
    if (isCount(n)) this.expiredTotal.inc(n);
  }

  /**
   * Times a Redis call under `command` and hands its result (or error) through
   * unchanged; failures are timed too. Start the call in the argument itself
   * (`timeRedis('ack', redis.rmAck(...))`) so the time covers all of it, or pass
   * a function returning the promise.
   */
  async timeRedis<T>(command: RedisCommand, call: Promise<T> | (() => Promise<T>)): Promise<T> {
    const start = process.hrtime.bigint();
    try {
      return await (typeof call === 'function' ? call() : call);
    } finally {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      this.redisDuration.observe({ command: bounded(command, REDIS_COMMANDS) }, seconds);
    }
  }

  /**
   * The busiest queues right now, at most BUSIEST_QUEUES (10) reported: rank "1"
   * is the deepest. Ranks the list does not fill are removed, so a rank that
   * empties disappears instead of keeping its last value.
   */
  setBusiestQueues(list: ReadonlyArray<BusyQueue>): void {
    const top = [...(Array.isArray(list) ? list : [])]
      .filter((queue) => queue && typeof queue.depth === 'number' && Number.isFinite(queue.depth))
      .sort((a, b) => b.depth - a.depth) // stable: equal depths keep the caller's order
      .slice(0, BUSIEST_QUEUES);
    top.forEach((queue, i) => {
      const rank = String(i + 1);
      this.queueDepth.set({ rank }, nonNegative(queue.depth));
      this.queueOldestAge.set({ rank }, nonNegative(queue.oldestAgeSeconds));
    });
    for (let i = top.length; i < this.ranksSet; i++) {
      const rank = String(i + 1);
      this.queueDepth.remove({ rank });
      this.queueOldestAge.remove({ rank });
    }
    this.ranksSet = top.length;
  }

  private counter<L extends string = never>(name: string, help: string, labelNames: L[] = []): Counter<L> {
    return new Counter<L>({ name: `${METRIC_PREFIX}${name}`, help, labelNames, registers: [this.registry] });
  }

  private gauge<L extends string = never>(name: string, help: string, labelNames: L[] = []): Gauge<L> {
    return new Gauge<L>({ name: `${METRIC_PREFIX}${name}`, help, labelNames, registers: [this.registry] });
  }
}
