import { randomBytes } from 'node:crypto';

/**
 * Message ids, made by the instance that stores the message: a random tag of
 * this process, then a counter. No Redis round trip and no cross-slot counter on
 * a Cluster; unique over time, so a client's memory of recent ids never mistakes
 * a new message for one it handled (ids are never reused, also after a user's
 * keys were emptied and removed).
 */
export class MessageIds {
  private readonly tag = randomBytes(5).readUIntBE(0, 5).toString(36).padStart(8, '0');
  private count = 0;
  private calls = 0;

  next(): string {
    return `${this.tag}.${(++this.count).toString(36)}`;
  }

  /** A prefix unique to one script call, for the ids it gives raw entries (prefix + 1, 2, ...). */
  rawPrefix(): string {
    return `${this.tag}.r${(++this.calls).toString(36)}.`;
  }
}
