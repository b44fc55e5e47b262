/**
 * The one owner of the stored message format. Entries RedMessenger writes to a
 * user's queue are JSON envelopes
 *
 *     {"rm":{"id":"…","channel":"…","payload":"…"[,"ttl":N][,"collapseKey":"…"],"ts":<ms>}}
 *
 * whose inner object is exactly the `data` of a `message` frame, so a stored
 * message is sent without being parsed or encoded again. An envelope that went
 * back to the queue after it was sent to a socket is marked sent,
 * `{"rm":{…},"sent":true}`, outside the inner object (so frames never show it):
 * the Lua scripts (queue/lua/includes/envelope.lua) then neither expire it by its
 * `ttl` nor replace it by a collapse key. Anything else in a queue is a raw payload.
 * The field order matters: `ts` is last, so it is read at the end without parsing.
 */
export interface EnvelopeFields {
  id: string;
  channel: string;
  payload: string;
  ts: number;
  ttl?: number;
  collapseKey?: string;
}

export function buildEnvelope({ id, channel, payload, ts, ttl, collapseKey }: EnvelopeFields): string {
  const ttlPart = ttl === undefined ? '' : `,"ttl":${ttl}`;
  const collapsePart = collapseKey === undefined ? '' : `,"collapseKey":${JSON.stringify(collapseKey)}`;
  // Ids are made here and channels are built from valid ids: neither needs escaping. Only
  // the payload is encoded, once per message (this runs for every message routed).
  return `{"rm":{"id":${plain(id)},"channel":${plain(channel)},"payload":${JSON.stringify(payload)}${ttlPart}${collapsePart},"ts":${ts}}}`;
}

/** A string that needs no JSON escapes quoted as is, anything else encoded. */
const SAFE = /^[A-Za-z0-9._@:{}-]*$/;
const plain = (text: string): string => (SAFE.test(text) ? `"${text}"` : JSON.stringify(text));

const SENT = ',"sent":true}';
const HEAD = '{"rm":{"id":"';
const TS = ',"ts":';
const CHANNEL_AT = '","channel":"';

/** The same envelope, marked as sent once (it goes back to a queue). */
export const markSent = (envelope: string): string => (envelope.endsWith(SENT) ? envelope : `${envelope.slice(0, -1)}${SENT}`);

/** The message id of an envelope, or undefined for a raw entry. */
// Read with indexOf and slices, not regular expressions: these run for every message sent.
export function envelopeId(envelope: string): string | undefined {
  if (!envelope.startsWith(HEAD) || !innerEnd(envelope)) return undefined;
  const end = envelope.indexOf('"', HEAD.length);
  const id = end > HEAD.length ? envelope.slice(HEAD.length, end) : '';
  return id && !id.includes('\\') ? id : undefined;
}

/** The channel of an envelope (a channel needs no JSON escapes), or undefined for anything but an envelope. */
export function envelopeChannel(envelope: string): string | undefined {
  const id = envelopeId(envelope);
  if (id === undefined) return undefined;
  const start = HEAD.length + id.length;
  if (!envelope.startsWith(CHANNEL_AT, start)) return undefined;
  const end = envelope.indexOf('"', start + CHANNEL_AT.length);
  return end < 0 ? undefined : envelope.slice(start + CHANNEL_AT.length, end);
}

/**
 * When RedMessenger received the message (ms since the epoch), or undefined for anything but
 * an envelope. `ts` is the inner object's last field; a payload containing `"ts":` is
 * JSON-escaped, so the last `,"ts":` of the envelope is always its own.
 */
export function envelopeTs(envelope: string): number | undefined {
  const end = innerEnd(envelope);
  if (!end) return undefined;
  const at = envelope.lastIndexOf(TS, end);
  const digits = at < 0 ? '' : envelope.slice(at + TS.length, end);
  return digits.length > 0 && digits.length <= 16 && /^\d+$/.test(digits) ? Number(digits) : undefined;
}

/** Where the inner object's closing brace is, or 0 for anything but an envelope's ending. */
function innerEnd(envelope: string): number {
  if (envelope.endsWith('}}')) return envelope.length - 2;
  if (envelope.endsWith(SENT) && envelope[envelope.length - SENT.length - 1] === '}') return envelope.length - SENT.length - 1;
  return 0;
}

/** The wire frame of a message, built from its stored envelope without parsing it. */
export const messageFrame = (envelope: string): string => `{"event":"message","data":${envelope.slice(6, envelope.endsWith(SENT) ? -SENT.length : -1)}}`;
