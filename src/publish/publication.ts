import { buildEnvelope } from '../protocol/envelope';
import { GROUP_CHANNEL_PREFIX, USER_CHANNEL_PREFIX, isValidId } from '../protocol/ids';
import type { StoredMessage } from '../queue/queue.service';

/** A message as the HTTP and inbox paths take it: for one user (`to`) or a group's members. */
export interface Publication {
  to?: string;
  group?: string;
  payload: string;
  /** Seconds the message may wait before it is first sent to a socket. */
  ttl?: number;
  collapseKey?: string;
}

/** The largest ttl taken (ten years): beyond it the number is a mistake, not a wish. */
export const MAX_TTL_SECONDS = 10 * 365 * 86400;
export const MAX_COLLAPSE_KEY_CHARS = 128;

export const TTL_RULE = `ttl must be an integer number of seconds from 1 to ${MAX_TTL_SECONDS}`;
export const COLLAPSE_RULE = `must be a string of 1 to ${MAX_COLLAPSE_KEY_CHARS} characters`;
export const ID_RULE = 'must be an id: 1 to 128 of A-Z a-z 0-9 . _ @ -, starting with a letter or a digit';

/** Characters as people count them (code points), not UTF-16 units. */
export const charCount = (s: string): number => [...s].length;

export const validTtl = (ttl: unknown): ttl is number => Number.isInteger(ttl) && (ttl as number) >= 1 && (ttl as number) <= MAX_TTL_SECONDS;
export const validCollapseKey = (key: unknown): key is string => typeof key === 'string' && key.length > 0 && charCount(key) <= MAX_COLLAPSE_KEY_CHARS;
export { isValidId };

/** The channel a publication's frames carry: the user's, or the group's. */
export const channelOf = (p: Publication): string => (p.to !== undefined ? `${USER_CHANNEL_PREFIX}${p.to}` : `${GROUP_CHANNEL_PREFIX}${p.group}`);

/** The stored form of a publication (one envelope for every recipient: the same id, the same bytes). */
export function storedMessage(p: Publication, id: string, ts: number): StoredMessage {
  const envelope = buildEnvelope({ id, channel: channelOf(p), payload: p.payload, ts, ttl: p.ttl, collapseKey: p.collapseKey });
  return {
    envelope,
    collapseKey: p.collapseKey === undefined ? undefined : JSON.stringify(p.collapseKey),
    expiresAt: p.ttl === undefined ? undefined : ts + p.ttl * 1000,
  };
}
