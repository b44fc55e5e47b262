import { isValidId, validCollapseKey, ID_RULE, COLLAPSE_RULE, TTL_RULE, MAX_TTL_SECONDS, type Publication } from './publication';

const FIELDS = ['to', 'group', 'payload', 'ttl', 'collapse'];

/**
 * An inbox stream entry's fields (flat: name, value, ...) as a publication, or why
 * it is not one (the reason goes with the entry to rm:inbox:dead).
 */
export function parseInboxEntry(flat: string[], maxPayloadBytes: number): Publication | { reason: string } {
  const fields = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const [name, value] = [flat[i], flat[i + 1]];
    if (!FIELDS.includes(name)) return { reason: `unknown field ${JSON.stringify(name.slice(0, 64))} (fields: ${FIELDS.join(', ')})` };
    if (fields.has(name)) return { reason: `field ${name} given twice` };
    fields.set(name, value);
  }
  const to = fields.get('to');
  const group = fields.get('group');
  const payload = fields.get('payload');
  if (to !== undefined && group !== undefined) return { reason: 'give exactly one of to and group, not both' };
  if (to === undefined && group === undefined) return { reason: 'to or group is missing' };
  if (to !== undefined && !isValidId(to)) return { reason: `to ${ID_RULE}` };
  if (group !== undefined && !isValidId(group)) return { reason: `group ${ID_RULE}` };
  if (payload === undefined) return { reason: 'payload is missing' };
  if (Buffer.byteLength(payload) > maxPayloadBytes) return { reason: `payload is larger than MAX_PUBLISH_BYTES (${maxPayloadBytes})` };
  const publication: Publication = { to, group, payload };
  const ttl = fields.get('ttl');
  if (ttl !== undefined) {
    if (!/^[1-9]\d{0,9}$/.test(ttl) || Number(ttl) > MAX_TTL_SECONDS) return { reason: `${TTL_RULE}, as a decimal string` };
    publication.ttl = Number(ttl);
  }
  const collapse = fields.get('collapse');
  if (collapse !== undefined) {
    if (!validCollapseKey(collapse)) return { reason: `collapse ${COLLAPSE_RULE}` };
    publication.collapseKey = collapse;
  }
  return publication;
}
