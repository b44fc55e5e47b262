import { envelopeTs } from './envelope-ts';

describe('envelopeTs', () => {
  const envelope = (payload: string, ts = 1795986163346) =>
    `{"rm":{"id":"17","channel":"rm.users.u1","payload":${JSON.stringify(payload)},"ts":${ts}}}`;

  it("reads the ts of a stored envelope", () => {
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
