import { buildEnvelope, envelopeId, envelopeTs, markSent, messageFrame } from './envelope';

describe('envelopeTs', () => {
  const envelope = (payload: string, ts = 1795986163346) => `{"rm":{"id":"17","channel":"rm.users.u1","payload":${JSON.stringify(payload)},"ts":${ts}}}`;

  it('reads the ts of a stored envelope', () => {
    expect(envelopeTs(envelope('Hello, world!'))).toBe(1795986163346);
  });

  it('is not fooled by a payload that contains "ts":', () => {
    expect(envelopeTs(envelope('{"ts":1}}', 42))).toBe(42);
    expect(envelopeTs(`{"rm":{"id":"1","channel":"c","payload":"x\\",\\"ts\\":5}}"}}`)).toBeUndefined();
  });

  it('is undefined for a raw entry or a truncated envelope', () => {
    expect(envelopeTs('plain text')).toBeUndefined();
    expect(envelopeTs('{"rm":{"id":"1","ts":12')).toBeUndefined();
  });
});

describe('buildEnvelope', () => {
  const fields = { id: 'a1.x', channel: 'rm.users.u1', payload: 'Hi "there"\n✓', ts: 1795986163346 };

  it('holds the message frame data as its inner object, ts last', () => {
    const envelope = buildEnvelope({ ...fields, ttl: 60, collapseKey: 'score' });
    expect(JSON.parse(envelope)).toEqual({ rm: { ...fields, ttl: 60, collapseKey: 'score' } });
    expect(Object.keys(JSON.parse(envelope).rm)).toEqual(['id', 'channel', 'payload', 'ttl', 'collapseKey', 'ts']);
    expect(JSON.parse(messageFrame(envelope))).toEqual({ event: 'message', data: { ...fields, ttl: 60, collapseKey: 'score' } });
  });

  it('reads back its id and ts, also once marked sent', () => {
    const envelope = buildEnvelope(fields);
    const sent = markSent(envelope);
    expect(JSON.parse(sent)).toEqual({ rm: fields, sent: true });
    expect(markSent(sent)).toBe(sent);
    for (const e of [envelope, sent]) {
      expect(envelopeId(e)).toBe('a1.x');
      expect(envelopeTs(e)).toBe(fields.ts);
      expect(JSON.parse(messageFrame(e)).data).toEqual(fields);
    }
    expect(envelopeId('raw text')).toBeUndefined();
    expect(envelopeId('{"rm":{"id":"1"')).toBeUndefined();
  });
});
