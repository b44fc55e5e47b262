/** The fixed number of route shards: every instance must agree on it (a user's shard never changes). */
export const SHARD_COUNT = 64;

/** The shard of a user: FNV-1a of the id, a stable hash every instance computes alike. */
export function shardOf(user: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < user.length; i++) {
    hash ^= user.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % SHARD_COUNT;
}
