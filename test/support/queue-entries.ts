import type { Cluster, Redis } from 'ioredis';

// Reading queue entries back: a RedMessenger envelope {"rm":{...}}, or a raw entry that another program pushed.

/** The payload of a queue entry: the envelope's payload, or the raw entry itself. */
export function entryPayload(entry: string): string {
  try {
    const v = JSON.parse(entry);
    const inner = v && typeof v === 'object' ? (v.rm ?? v.rs) : undefined;
    if (inner && typeof inner.payload === 'string') return inner.payload;
  } catch {
    // not JSON: a raw entry
  }
  return entry;
}

/** The message id of an envelope; undefined for a raw entry (it gets its id when first moved). */
export function entryId(entry: string): string | undefined {
  try {
    const v = JSON.parse(entry);
    const inner = v && typeof v === 'object' ? (v.rm ?? v.rs) : undefined;
    if (inner && typeof inner.id === 'string') return inner.id;
  } catch {
    // raw
  }
  return undefined;
}

/** Keys of a user other than its state (connections, positions) and auth key: all gone once nothing is owed or queued. */
export async function leftoverKeys(r: Redis, id: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', `rm:users:${id}:*`, 'COUNT', 1000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found.filter((k) => !k.endsWith(':state') && !k.endsWith(':key')).sort();
}

/**
 * A user's Redis state as the data path keeps it (src/queue/lua/includes/state.lua):
 * `rm:users:<id>:owed` is a list of envelopes in owed order whose acked head is trimmed,
 * ids acked out of order wait in the state hash's `x`, and each connection is a `c:<conn>`
 * field of `rm:users:<id>:state`. Pass the key base for a Cluster (`rm:users:{<id>}`).
 */
const base = (id: string, tagged = false) => (tagged ? `rm:users:{${id}}` : `rm:users:${id}`);

/** How many messages the user is owed (sent or about to be, not yet acked). */
export async function owedCount(r: Redis | Cluster, id: string, tagged = false): Promise<number> {
  const [len, x] = await Promise.all([r.llen(`${base(id, tagged)}:owed`), r.hget(`${base(id, tagged)}:state`, 'x')]);
  return len - (x ? x.split(',').length : 0);
}

/** The ids the user is owed, in order. */
export async function owedIds(r: Redis | Cluster, id: string, tagged = false): Promise<string[]> {
  const [entries, x] = await Promise.all([r.lrange(`${base(id, tagged)}:owed`, 0, -1), r.hget(`${base(id, tagged)}:state`, 'x')]);
  const acked = new Set(x ? x.split(',') : []);
  return entries.map((e) => entryId(e)!).filter((e) => !acked.has(e));
}

/** How many connections of the user are registered, on every instance. */
export async function connectionCount(r: Redis | Cluster, id: string, tagged = false): Promise<number> {
  return (await r.hkeys(`${base(id, tagged)}:state`)).filter((field) => field.startsWith('c:')).length;
}
