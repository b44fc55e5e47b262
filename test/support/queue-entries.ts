import type { Redis } from 'ioredis';

// Reading queue entries back: a RedMessenger envelope {"rm":{...}}, or a raw entry that another program pushed.

/** The payload of a queue entry: the envelope's payload, or the raw entry itself. */
export function entryPayload(entry: string): string {
  try {
    const v = JSON.parse(entry);
    if (v && typeof v === 'object' && v.rm && typeof v.rm.payload === 'string') return v.rm.payload;
  } catch {
    // not JSON: a raw entry
  }
  return entry;
}

/** The message id of an envelope; undefined for a raw entry (it gets its id when first moved). */
export function entryId(entry: string): string | undefined {
  try {
    const v = JSON.parse(entry);
    if (v && typeof v === 'object' && v.rm && typeof v.rm.id === 'string') return v.rm.id;
  } catch {
    // raw
  }
  return undefined;
}

/** Keys of a user other than its connections and auth key: all gone once nothing is owed or queued. */
export async function leftoverKeys(r: Redis, id: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', `rm:users:${id}:*`, 'COUNT', 1000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found.filter((k) => !k.endsWith(':conns') && !k.endsWith(':key')).sort();
}
