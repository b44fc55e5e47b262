/**
 * The bounded label values of RedMessenger's metrics. A label value outside its
 * set is recorded as 'other', so a caller's mistake (or a user-controlled string)
 * can never create an unbounded number of series.
 */

/** Every RedMessenger metric's name starts with this. */
export const METRIC_PREFIX = 'redmessenger_';

/**
 * How an `identify` ended. `ok`: the socket is identified; `replaced`: it is
 * identified too, and took the place of an older socket of the user
 * (MAX_SOCKETS_PER_USER). The others are refusals: an invalid id, a token that
 * does not prove it, no identify in time, Redis unreachable, too many attempts.
 */
export const IDENTIFY_OUTCOMES = ['ok', 'invalid', 'unauthorized', 'timeout', 'unavailable', 'rate_limited', 'replaced'] as const;
export type IdentifyOutcome = (typeof IDENTIFY_OUTCOMES)[number];

/**
 * Why the server closed a socket on its own (not the client's close): `cut` (nothing heard for
 * PING_INTERVAL_MS + PING_TIMEOUT_MS), `rate_limited` (MAX_FRAMES_PER_SECOND), `slow_consumer`
 * (SLOW_CONSUMER_TIMEOUT_MS), `token_expired` (a JWT's exp passed without a refresh).
 */
export const SOCKET_CLOSE_CAUSES = ['cut', 'rate_limited', 'slow_consumer', 'token_expired'] as const;
export type SocketCloseCause = (typeof SOCKET_CLOSE_CAUSES)[number];

/** The outcomes after which the socket is identified (counted in `identified_connections`). */
export const IDENTIFIED_OUTCOMES: readonly IdentifyOutcome[] = ['ok', 'replaced'];

/** The identify outcome of an `error` frame code sent to a socket that is not yet `ready`. */
const OUTCOME_OF_ERROR_CODE: Record<string, IdentifyOutcome> = {
  INVALID_ID: 'invalid',
  UNAUTHORIZED: 'unauthorized',
  IDENTIFY_TIMEOUT: 'timeout',
  UNAVAILABLE: 'unavailable',
  TOO_MANY_ATTEMPTS: 'rate_limited',
};

/**
 * The identify outcome an `error` code stands for, when a socket that has not
 * reached `ready` is refused with it; undefined for codes that do not end an
 * identify (BAD_FRAME, NOT_IDENTIFIED, SERVER_FULL, ...).
 */
export function identifyOutcomeOf(code: string): IdentifyOutcome | undefined {
  return Object.prototype.hasOwnProperty.call(OUTCOME_OF_ERROR_CODE, code) ? OUTCOME_OF_ERROR_CODE[code] : undefined;
}

/**
 * The drop names, each written once. The queue cap (MAX_QUEUE_LENGTH) takes the oldest
 * messages (`overflow`, QUEUE_OVERFLOW=drop-oldest) or refuses the new ones (`rejected`).
 */
export const CAP_DROPS = ['overflow', 'rejected'] as const;
export type CapDrop = (typeof CAP_DROPS)[number];

/**
 * Why a user's messages were dropped, as a DeliveryListener and EVENTS_STREAM's `dropped`
 * entries tell it (the public DropCause): the queue cap, or their time to live.
 */
export const DROP_CAUSES = [...CAP_DROPS, 'expired'] as const;

/**
 * Why a message was not routed (`messages_dropped_total{reason}`): the queue cap, PUBLISH to an
 * invalid channel, invalid group member, the route buffer full (ROUTE_BUFFER_BYTES), or heard by
 * an instance whose shard lease had moved on to another that routed the user since (a take-over
 * window). Expired messages have a counter of their own (`messages_expired_total`).
 */
export const DROP_REASONS = [...CAP_DROPS, 'invalid_channel', 'invalid_member', 'overload', 'fenced', 'unusable_keys'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/** How a POST /v1/messages ended. */
export const HTTP_PUBLISH_OUTCOMES = ['accepted', 'duplicate', 'bad_request', 'unauthorized', 'too_large', 'conflict', 'unavailable'] as const;
export type HttpPublishOutcome = (typeof HTTP_PUBLISH_OUTCOMES)[number];

/** What became of an inbox stream entry: stored, already stored (a re-claimed entry), dead-lettered, or failed (retried). */
export const INBOX_OUTCOMES = ['stored', 'duplicate', 'dead', 'failed'] as const;
export type InboxOutcome = (typeof INBOX_OUTCOMES)[number];

/** What a timed Redis call ran: one of the Lua scripts (shards: the route shard leases; lease: a job's lease), or anything else. */
export const REDIS_COMMANDS = ['route', 'attach', 'detach', 'ack', 'read', 'expire', 'unread', 'retract', 'visibility', 'notify', 'shards', 'lease', 'other'] as const;
export type RedisCommand = (typeof REDIS_COMMANDS)[number];

/** The types of the entries written to EVENTS_STREAM (docs/events.md). */
export const EVENT_TYPES = ['acked', 'unread', 'dropped', 'online', 'offline', 'notify', 'resolved'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** The label value recorded for anything outside a bounded set. */
export const OTHER = 'other';

/** How many of the busiest queues are reported (ranks "1".."10"). */
export const BUSIEST_QUEUES = 10;

/** Publish (or receive) to ack: 1 ms … 60 s. */
export const DELIVERY_LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** One Redis round trip or script: 0.1 ms … 5 s. */
export const REDIS_DURATION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
