import type { IncomingMessage } from 'node:http';
import { clientAddress, rateBucket } from './client-address';
import { RateLimiter } from './rate-limiter';

const request = (peer: string, forwarded?: string) => ({ socket: { remoteAddress: peer }, headers: forwarded ? { 'x-forwarded-for': forwarded } : {} }) as unknown as IncomingMessage;

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

describe('rateBucket', () => {
  it.each([
    ['2001:db8:1:2::a', '2001:0db8:0001:0002::/64'],
    ['2001:DB8:1:2:ffff:ffff:ffff:ffff', '2001:0db8:0001:0002::/64'],
    ['2001:0db8:0001:0002:0000:0000:0000:0001', '2001:0db8:0001:0002::/64'],
    ['2001:db8::1', '2001:0db8:0000:0000::/64'],
    ['2001:db8:0:0:1::', '2001:0db8:0000:0000::/64'],
    ['::1', '0000:0000:0000:0000::/64'],
    ['::', '0000:0000:0000:0000::/64'],
    ['fe80::1%eth0', 'fe80:0000:0000:0000::/64'],
    ['64:ff9b::192.0.2.1', '0064:ff9b:0000:0000::/64'],
    ['1:2:3:4:5:6:192.0.2.1', '0001:0002:0003:0004::/64'],
  ])('%s is bucketed as its /64, %s', (address, bucket) => expect(rateBucket(address)).toBe(bucket));

  it.each([
    ['192.0.2.1', '192.0.2.1'],
    ['::ffff:192.0.2.1', '192.0.2.1'],
    ['::FFFF:c000:0201', '192.0.2.1'],
    ['0:0:0:0:0:ffff:192.0.2.1', '192.0.2.1'],
  ])('%s is an IPv4 bucket, %s', (address, bucket) => expect(rateBucket(address)).toBe(bucket));

  it('anything that is not an IP is its own bucket', () => {
    expect(rateBucket('unknown')).toBe('unknown');
    expect(rateBucket('')).toBe('');
  });
});

describe('RateLimiter', () => {
  it('counts the addresses of one IPv6 /64 in one bucket, and IPv4-mapped as IPv4', () => {
    const limiter = new RateLimiter(2);
    const t0 = 1_000_000;

    expect(limiter.take('2001:db8:1:2::a', t0)).toBe(true);
    expect(limiter.take('2001:db8:1:2:ffff::b', t0)).toBe(true);
    expect(limiter.take('2001:db8:1:2:abcd:ef01:2345:6789', t0)).toBe(false);
    expect(limiter.take('2001:db8:1:3::a', t0)).toBe(true);
    expect(limiter.take('192.0.2.1', t0)).toBe(true);
    expect(limiter.take('::ffff:192.0.2.1', t0)).toBe(true);
    expect(limiter.take('192.0.2.1', t0)).toBe(false);
  });

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
