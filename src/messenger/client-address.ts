import type { IncomingMessage } from 'node:http';
import { isIPv4, isIPv6 } from 'node:net';

const bare = (address: string) => address.replace(/^::ffff:/, '');

/**
 * The client's address: the peer's, unless the peer is a trusted proxy, in which
 * case the right-most X-Forwarded-For entry that is not itself a trusted proxy
 * (entries further left are what the client claims, and can be forged).
 */
export function clientAddress(request: IncomingMessage, trustedProxies: string[]): string {
  const peer = bare(request.socket.remoteAddress ?? '');
  const forwarded = request.headers['x-forwarded-for'];
  if (!forwarded || !trustedProxies.includes(peer)) return peer;
  const hops = (Array.isArray(forwarded) ? forwarded.join(',') : forwarded)
    .split(',')
    .map((hop) => bare(hop.trim()))
    .filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) {
    if (!trustedProxies.includes(hops[i])) return hops[i];
  }
  return hops[0] ?? peer;
}

/**
 * The rate-limit bucket of an address: an IPv4 address is its own; an IPv6 address
 * counts as its /64 (one subscriber's usual allocation, so walking through the
 * addresses of one's own /64 gains nothing), as `2001:0db8:0000:0001::/64`. An
 * IPv4-mapped address (`::ffff:192.0.2.1`) is the IPv4 address. Anything else (not
 * an IP) is its own bucket.
 */
export function rateBucket(address: string): string {
  const ip = address.replace(/%.*$/, ''); // a zone (fe80::1%eth0) is not part of the address
  if (isIPv4(ip)) return ip;
  if (!isIPv6(ip)) return address;
  const groups = ipv6Groups(ip);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return [groups[6] >> 8, groups[6] & 0xff, groups[7] >> 8, groups[7] & 0xff].join('.');
  }
  return `${groups
    .slice(0, 4)
    .map((g) => g.toString(16).padStart(4, '0'))
    .join(':')}::/64`;
}

/** A valid IPv6 address's eight 16-bit groups (`::` expanded, a dotted IPv4 tail as two groups). */
function ipv6Groups(ip: string): number[] {
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  const text = dotted ? `${ip.slice(0, dotted.index)}${((+dotted[1] << 8) | +dotted[2]).toString(16)}:${((+dotted[3] << 8) | +dotted[4]).toString(16)}` : ip;
  const [head, tail] = text.split('::');
  const parse = (part?: string) => (part ? part.split(':').map((hex) => parseInt(hex, 16)) : []);
  const [before, after] = [parse(head), parse(tail)];
  return [...before, ...Array<number>(8 - before.length - after.length).fill(0), ...after];
}
