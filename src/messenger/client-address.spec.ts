import type { IncomingMessage } from 'node:http';
import { clientAddress } from './client-address';
import { RateLimiter } from './rate-limiter';

const request = (peer: string, forwarded?: string) =>
  ({ socket: { remoteAddress: peer }, headers: forwarded ? { 'x-forwarded-for': forwarded } : {} }) as unknown as IncomingMessage;

describe('clientAddress', () => {
  it('is the peer address when no proxy is trusted, whatever X-Forwarded-For says', () => {
    expect(clientAddress(request('::ffff:10.0.0.5', '1.2.3.4'), [])).toBe('10.0.0.5');
  });

  it('believes X-Forwarded-For from a trusted proxy, taking the right-most untrusted hop', () => {
    const proxies = ['10.0.0.1', '10.0.0.2'];
    expect(clientAddress(request('10.0.0.1', 'forged, 203.0.113.7, 10.0.0.2'), proxies)).toBe('203.0.113.7');
    expect(clientAddress(request('10.0.0.1'), proxies)).toBe('10.0.0.1');
  });

  it('ignores X-Forwarded-For from an untrusted peer', () => {
    expect(clientAddress(request('198.51.100.9', '203.0.113.7'), ['10.0.0.1'])).toBe('198.51.100.9');
  });
});

describe('RateLimiter', () => {
  it('lets a minute of allowance through, then refuses until tokens refill', () => {
    const limiter = new RateLimiter(3);
    const t0 = 1_000_000;

    expect([1, 2, 3, 4].map(() => limiter.take('a', t0))).toEqual([true, true, true, false]);
    expect(limiter.take('b', t0)).toBe(true);
    expect(limiter.take('a', t0 + 20_000)).toBe(true);
    expect(limiter.take('a', t0 + 20_000)).toBe(false);
  });

  it('never refuses when the limit is off', () => {
    const limiter = new RateLimiter(0);
    expect(Array.from({ length: 1000 }, () => limiter.take('a')).every(Boolean)).toBe(true);
  });
});
