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
  return `{"rm":{"id":${JSON.stringify(id)},"channel":${JSON.stringify(channel)},"payload":${JSON.stringify(payload)}${ttlPart}${collapsePart},"ts":${ts}}}`;
}

const SENT = ',"sent":true}';
const HEAD = /^\{"rm":\{"id":"([^"\\]+)"/;
/** `ts` is the last field; a payload containing `"ts":` is JSON-escaped, so it cannot end the envelope this way. */
const CHANNEL = /^\{"rm":\{"id":"[^"\\]+","channel":"([^"\\]*)"/;
const TS_AT_END = /[{,]"ts":(\d{1,16})}(?:}|,"sent":true})$/;

/** The same envelope, marked as sent once (it goes back to a queue). */
export const markSent = (envelope: string): string => (envelope.endsWith(SENT) ? envelope : `${envelope.slice(0, -1)}${SENT}`);

/** The message id of an envelope, or undefined for a raw entry. */
export function envelopeId(envelope: string): string | undefined {
  return envelope.endsWith('}}') || envelope.endsWith(SENT) ? HEAD.exec(envelope)?.[1] : undefined;
}

/** The channel of an envelope (a channel needs no JSON escapes), or undefined for anything but an envelope. */
export function envelopeChannel(envelope: string): string | undefined {
  return envelopeId(envelope) === undefined ? undefined : CHANNEL.exec(envelope)?.[1];
}

/** When RedMessenger received the message (ms since the epoch), or undefined for anything but an envelope. */
export function envelopeTs(envelope: string): number | undefined {
  const match = TS_AT_END.exec(envelope);
  return match ? Number(match[1]) : undefined;
}

/** The wire frame of a message, built from its stored envelope without parsing it. */
export const messageFrame = (envelope: string): string =>
  `{"event":"message","data":${envelope.slice(6, envelope.endsWith(SENT) ? -SENT.length : -1)}}`;
