/**
 * The `ts` (ms since the epoch, when RedMessenger received the message) of a
 * stored envelope `{"rm":{"id":…,"channel":…,"payload":…,"ts":<ms>}}`, read
 * without parsing the payload: `ts` is the envelope's last field, and a payload
 * that contains `"ts":` is JSON-escaped, so it cannot end the envelope this way.
 * Undefined for anything else.
 */
const TS_AT_END = /[{,]"ts":(\d{1,16})}}$/;

export function envelopeTs(envelope: string): number | undefined {
  const match = TS_AT_END.exec(envelope);
  return match ? Number(match[1]) : undefined;
}
