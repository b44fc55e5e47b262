import { userChannel } from '../protocol/ids';

export { ID_PATTERN, isValidId, USER_CHANNEL_PREFIX, GROUP_CHANNEL_PREFIX } from '../protocol/ids';

/**
 * Builds every Redis key and channel name RedMessenger uses; nothing else
 * concatenates them, and Lua scripts receive keys through KEYS only.
 * Ids must have passed `isValidId` first: a key is never built from raw input.
 *
 * On a Redis Cluster (`tagged`) the id goes in a hash tag, `rm:users:{user1}:messages`,
 * so that all of a user's keys share a slot and one script can touch them;
 * with one Redis (or Sentinel) the v1 names hold.
 */
export class QueueKeys {
  /** Shard leases and the heartbeats of the instances that route (one hash: one slot). */
  readonly shards = 'rm:shards';
  readonly instances = 'rm:nodes';
  /** Users with a non-empty queue, scored by the time of their oldest entry (a hint for expiry and metrics). */
  readonly queueIndex = 'rm:queues';
  /** Messages that become `unread` events unless acked first: `<user>|<id>` scored by when they are due (UNREAD_AFTER_SECONDS). */
  readonly unreadIndex = 'rm:unread';
  /** Users whose absence (NOTIFY_AFTER_SECONDS) must be checked, scored by when (ms). */
  readonly notifyIndex = 'rm:notify';
  /** Pub/sub channel prefix on which an instance hears about its own sockets' users. */
  readonly instanceChannelPrefix = 'rm:instance:';
  /** Pub/sub channel on which shard hand-overs are announced, in order with the published messages. */
  readonly controlChannel = 'rm:control';
  /** The inbox stream producers XADD to, its consumer group, dead letters, and the lease of the one instance reading it. */
  readonly inbox = 'rm:inbox';
  readonly inboxGroup = 'redmessenger';
  readonly inboxDead = 'rm:inbox:dead';
  readonly inboxLease = 'rm:inbox:lease';

  constructor(readonly tagged = false) {}

  private user = (id: string) => (this.tagged ? `rm:users:{${id}}` : `rm:users:${id}`);
  queue = (id: string) => `${this.user(id)}:messages`;
  /** Messages handed (or about to be handed) to the user's sockets and not acked, oldest first. */
  owed = (id: string) => `${this.user(id)}:owed`;
  /** The user's connections (`c:<conn>` -> instance), owed head position `b`, route epoch `e`, out-of-order acks `x`. */
  state = (id: string) => `${this.user(id)}:state`;
  /** Messages dropped (queue cap) or expired (queue TTL) since the user's last identify. */
  dropped = (id: string) => `${this.user(id)}:dropped`;
  /** The last inbox entry stored for the user, so a reclaimed entry is recognised. */
  inboxMark = (id: string) => `${this.user(id)}:inbox`;
  authKey = (id: string) => `${this.user(id)}:key`;
  /** Collapse key (JSON) -> the envelope queued with it, never sent: which queued message a newer one replaces (route.lua). */
  collapseIndex = (id: string) => `${this.user(id)}:collapse`;
  /** An HTTP publish's idempotency record for the user (scope: hex digest of API key and Idempotency-Key), 24 h. */
  idempotency = (id: string, scope: string) => `${this.user(id)}:idem:${scope}`;
  members = (cid: string) => (this.tagged ? `rm:channels:{${cid}}:subscribers` : `rm:channels:${cid}:subscribers`);
  /** An HTTP publish's first answer, whatever its target (so a key reused for another body is a 409), written once stored. */
  publishRecord = (scope: string) => `rm:idem:${scope}`;
  instanceAlive = (instance: string) => `rm:node:${instance}`;
  instanceUsers = (instance: string) => `rm:node:${instance}:users`;
  /** The lease of the one instance returning a dead instance's messages (reaping it), page by page. */
  instanceReaper = (instance: string) => `rm:node:${instance}:reaper`;
  instanceChannel = (instance: string) => `${this.instanceChannelPrefix}${instance}`;
  userChannel = userChannel;

  /** A user's keys in the order the scripts take them (queue, owed, state, dropped, inbox mark). */
  userKeys = (id: string): string[] => [this.queue(id), this.owed(id), this.state(id), this.dropped(id), this.inboxMark(id)];
}

/** The v1 key names (one Redis). */
export const queueKeys = new QueueKeys(false);
