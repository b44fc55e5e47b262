import { rateBucket } from './client-address';

/**
 * Token buckets by remote address (an IPv6 address by its /64: see rateBucket):
 * `perMinute` tokens, refilled evenly, so a burst of up to a minute's allowance
 * passes and a steady flood does not. Idle buckets are forgotten, so memory
 * follows the active addresses only.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private lastSweep = 0;

  constructor(private readonly perMinute: number) {}

  /** Takes one token for `address`'s bucket; false when none is left (always true when the limit is off). */
  take(address: string, now = Date.now()): boolean {
    if (this.perMinute <= 0) return true;
    this.sweep(now);
    const key = rateBucket(address);
    const bucket = this.buckets.get(key) ?? { tokens: this.perMinute, at: now };
    bucket.tokens = Math.min(this.perMinute, bucket.tokens + ((now - bucket.at) * this.perMinute) / 60_000);
    bucket.at = now;
    this.buckets.set(key, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** A bucket untouched for a minute is full again: drop it. */
  private sweep(now: number): void {
    if (now - this.lastSweep < 60_000) return;
    this.lastSweep = now;
    for (const [key, bucket] of this.buckets) if (now - bucket.at >= 60_000) this.buckets.delete(key);
  }
}
