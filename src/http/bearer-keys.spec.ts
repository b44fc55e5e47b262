import { BearerKeys } from './bearer-keys';

describe('BearerKeys', () => {
  const keys = new BearerKeys(['first-key-0123456789', 'second-key-0123456789']);

  it.each([
    ['Bearer first-key-0123456789', 'first-key-0123456789'],
    ['Bearer second-key-0123456789', 'second-key-0123456789'],
    ['bearer  first-key-0123456789 ', 'first-key-0123456789'],
  ])('%j carries a key', (header, key) => expect(keys.match(header)).toBe(key));

  it.each([undefined, '', 'Bearer', 'Bearer first-key-012345678', 'Bearer first-key-0123456789x', 'Basic first-key-0123456789', 'Bearer a b'])('%j does not', (header) =>
    expect(keys.match(header)).toBeUndefined(),
  );

  it('no keys: none, and nothing matches', () => {
    expect(new BearerKeys([]).none).toBe(true);
    expect(keys.none).toBe(false);
    expect(new BearerKeys([]).match('Bearer x')).toBeUndefined();
  });
});
