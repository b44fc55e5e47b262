/**
 * Builds every Redis key and channel name RedMessenger uses; nothing else
 * concatenates them, and Lua scripts receive keys through KEYS only.
 * Ids must have passed `isValidId` first: a key is never built from raw input.
 */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;
export const isValidId = (id: unknown): boolean => typeof id === 'string' && ID_PATTERN.test(id);

export const USER_CHANNEL_PREFIX = 'rm.users.';
export const GROUP_CHANNEL_PREFIX = 'rm.channels.';

export class QueueKeys {
  readonly counter = 'rm:seq';
  readonly routerLease = 'rm:router';
  readonly instances = 'rm:nodes';
  /** Users with a non-empty queue, scored by the time of their oldest entry (for expiry and metrics). */
  readonly queueIndex = 'rm:queues';
  /** Pub/sub channel prefix on which an instance hears about its own sockets' users. */
  readonly instanceChannelPrefix = 'rm:instance:';

  queue = (id: string) => `rm:users:${id}:messages`;
  owed = (id: string) => `rm:users:${id}:owed`;
  owedData = (id: string) => `rm:users:${id}:owed:data`;
  conns = (id: string) => `rm:users:${id}:conns`;
  /** Messages dropped (queue cap) or expired (queue TTL) since the user's last identify. */
  dropped = (id: string) => `rm:users:${id}:dropped`;
  authKey = (id: string) => `rm:users:${id}:key`;
  members = (cid: string) => `rm:channels:${cid}:subscribers`;
  instanceAlive = (instance: string) => `rm:node:${instance}`;
  instanceUsers = (instance: string) => `rm:node:${instance}:users`;
  instanceChannel = (instance: string) => `${this.instanceChannelPrefix}${instance}`;
  userChannel = (id: string) => `${USER_CHANNEL_PREFIX}${id}`;
}

export const queueKeys = new QueueKeys();
