import type { IncomingMessage } from 'node:http';

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
  const hops = (Array.isArray(forwarded) ? forwarded.join(',') : forwarded).split(',').map((hop) => bare(hop.trim())).filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) {
    if (!trustedProxies.includes(hops[i])) return hops[i];
  }
  return hops[0] ?? peer;
}
